/*
 * Stats under threads: four threads allocate and free in bursts (each
 * burst takes up to several arenas, and gives them back), pass blocks to
 * each other and call arena_release(), while the main thread takes
 * snapshot after snapshot with arena_get_stats() and sometimes calls
 * arena_release() and arena_print_stats() itself.
 *
 * Every snapshot must satisfy the identities that hold even while other
 * threads allocate, because the arena and pool counts come from one walk
 * under the lock:
 *   arenas_live  = arenas_reserved - arenas_released
 *   bytes_mapped = arenas_live * 256 KiB
 *   pools_total  = arenas_live * 64 = used + full + empty + free
 * (and the sums over the size classes); counters that only grow never go
 * down between snapshots.  After the threads have joined no block is
 * live, and after arena_release() no arena is left.
 *
 * STATS_BURSTS sets the bursts per thread.  Runs in forked children.
 */
#include "stress.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NWORKERS  4
#define MAX_BURST 20000         /* 20000 blocks of up to 512 B: many arenas */
#define MAILBOX   4096

struct worker {
    unsigned id;
    uint64_t bursts;
    uint64_t rng, serial;
    struct blk *blocks;         /* [MAX_BURST] */
    struct blk drained[MAILBOX];
    uint64_t allocs, frees;
};

static struct worker workers[NWORKERS];
static struct mailbox mailboxes[NWORKERS];
static struct blk mailbox_items[NWORKERS][MAILBOX];
static pthread_barrier_t finished;
static atomic_uint running;

static void drain(struct worker *w)
{
    w->frees += mailbox_free_all(&mailboxes[w->id], w->drained);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (uint64_t b = 0; b < w->bursts; b++) {
        size_t n = 1 + (size_t)(test_rand(&w->rng) % MAX_BURST);
        /* Small blocks only in half of the bursts, so that they fill pools. */
        int small_only = (test_rand(&w->rng) & 1) != 0;
        for (size_t i = 0; i < n; i++) {
            size_t size = stress_size(&w->rng);
            if (small_only && size > ARENA_SMALL_MAX)
                size -= ARENA_SMALL_MAX;
            w->blocks[i] = blk_alloc(size, stress_tag(w->id, w->serial++));
        }
        w->allocs += n;
        /* Free in random order; a quarter goes to the next thread. */
        struct mailbox *next = &mailboxes[(w->id + 1) % NWORKERS];
        while (n > 0) {
            size_t i = (size_t)(test_rand(&w->rng) % n);
            struct blk blk = w->blocks[i];
            w->blocks[i] = w->blocks[--n];
            if (test_rand(&w->rng) % 4 != 0 || !mailbox_put(next, blk)) {
                blk_free(blk);
                w->frees++;
            }
            if (n % 256 == 0)
                drain(w);
        }
        if (b % 8 == 7)
            arena_release();
        if (b % 4 == 3)
            stress_validate();
        if (w->id == 0 && b % (w->bursts / 10 ? w->bursts / 10 : 1) == 0)
            child_note("  step %" PRIu64 " of 10: thread 0 at burst %" PRIu64 " of %" PRIu64,
                       b / (w->bursts / 10 ? w->bursts / 10 : 1) + 1, b + 1, w->bursts);
    }
    pthread_barrier_wait(&finished);        /* nobody sends any more */
    drain(w);
    atomic_fetch_sub(&running, 1);
    return NULL;
}

struct scenario {
    const char *purge, *cache;
};

static void run_stats(void *arg)
{
    const struct scenario *sc = arg;
    if (sc->purge)
        setenv("ARENA_PURGE", sc->purge, 1);
    if (sc->cache)
        setenv("ARENA_ARENA_CACHE", sc->cache, 1);
    uint64_t bursts = stress_count("STATS_BURSTS", 300, 10, 4);
    child_note("  %d threads, %" PRIu64 " bursts each; ARENA_PURGE=%s, ARENA_ARENA_CACHE=%s",
               NWORKERS, bursts, sc->purge ? sc->purge : "(default)",
               sc->cache ? sc->cache : "(default)");
    double t0 = stress_now();
    FILE *devnull = fopen("/dev/null", "w");
    CHECK(devnull != NULL);

    CHECK(pthread_barrier_init(&finished, NULL, NWORKERS) == 0);
    pthread_t tid[NWORKERS];
    atomic_store(&running, NWORKERS);
    for (unsigned t = 0; t < NWORKERS; t++)
        mailbox_init(&mailboxes[t], mailbox_items[t], MAILBOX);
    for (unsigned t = 0; t < NWORKERS; t++) {
        struct worker *w = &workers[t];
        w->id = t;
        w->bursts = bursts;
        w->rng = 0x51A75ULL * (t + 1);
        w->blocks = calloc(MAX_BURST, sizeof(*w->blocks));
        CHECK(w->blocks != NULL);
        stress_thread_start(&tid[t], worker_main, w);
    }

    struct arena_stats prev, s;
    prev.size = sizeof prev;
    arena_get_stats(&prev);
    uint64_t snapshots = 0, max_arenas = 0, max_live = 0, releases = 0;
    while (atomic_load(&running) > 0) {
        s.size = sizeof s;
        arena_get_stats(&s);
        stress_check_identities(&s, "while threads allocate");
        stress_check_monotonic(&prev, &s);
        SCHECK_LE(s.heaps_live, NWORKERS);   /* this thread has no heap */
        if (s.arenas_live > max_arenas)
            max_arenas = s.arenas_live;
        if (s.blocks_live > max_live)
            max_live = s.blocks_live;
        prev = s;
        snapshots++;
        if (snapshots % 64 == 0) {
            arena_release();
            releases++;
            stress_validate();
        }
        if (snapshots % 1024 == 0)
            arena_print_stats(devnull);
    }
    for (unsigned t = 0; t < NWORKERS; t++)
        stress_thread_join(tid[t]);
    fclose(devnull);

    uint64_t allocs = 0, frees = 0;
    for (unsigned t = 0; t < NWORKERS; t++) {
        allocs += workers[t].allocs;
        frees += workers[t].frees;
        free(workers[t].blocks);
        mailbox_destroy(&mailboxes[t]);
    }
    pthread_barrier_destroy(&finished);
    CHECK_EQ(allocs, frees);
    CHECK_GT(snapshots, 0);
    stress_validate();

    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "after join");
    stress_check_monotonic(&prev, &s);
    SCHECK_EQ(s.blocks_live, 0);
    SCHECK_EQ(s.large_live, 0);
    SCHECK_EQ(s.heaps_live, 0);
    SCHECK_EQ(s.heaps_abandoned, NWORKERS);
    SCHECK_EQ(s.pools_used + s.pools_full + s.pools_empty, 0);
    arena_release();
    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "after arena_release");
    SCHECK_EQ(s.arenas_live, 0);
    child_note("  %" PRIu64 " snapshots, %" PRIu64 " arena_release calls by the reader; up to %"
               PRIu64 " arenas and %" PRIu64 " blocks live; %" PRIu64 " reserved, %" PRIu64
               " released; %.1f s", snapshots, releases, max_arenas, max_live,
               s.arenas_reserved, s.arenas_released, stress_now() - t0);
}

static void test_stats_default(void **state)
{
    (void)state;
    static const struct scenario sc = { NULL, NULL };
    assert_int_equal(child_run("stats under threads (default options)", run_stats,
                               (void *)&sc), 0);
}

static void test_stats_eager(void **state)
{
    (void)state;
    static const struct scenario sc = { "eager", "0" };
    assert_int_equal(child_run("stats under threads (ARENA_PURGE=eager, ARENA_ARENA_CACHE=0)",
                               run_stats, (void *)&sc), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_default),
        cmocka_unit_test(test_stats_eager),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
