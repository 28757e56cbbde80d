/*
 * Thread churn: ten thousand short-lived threads, eight at a time.
 *
 * Each thread, in one to four rounds, frees a few blocks left behind by
 * earlier threads (most of which have exited, so those blocks sit in
 * orphan pools), allocates a batch of blocks, frees some itself, leaves
 * some on a shared hand-off stack for the threads after it and sends some
 * to a long-lived consumer thread; it exits while those are still live.
 * The consumer and the later threads verify each block's pattern and free
 * it.
 *
 * Checked: no block is live at the end; no pool is left held by the heap
 * of a thread that exited; heaps are given back (heaps_live never exceeds
 * the threads alive, heaps_abandoned counts every thread); no arena is
 * left after arena_release(); and the process's resident memory is back
 * within a few MiB of where it started.
 *
 * CHURN_THREADS sets the number of short-lived threads.  Runs in forked
 * children.
 */
#include "stress.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define WINDOW       8          /* short-lived threads alive at once       */
#define MAX_BATCH    48         /* blocks a short-lived thread allocates   */
#define TAKE         16         /* hand-off blocks a thread frees first    */
#define HANDOFF_CAP  2048
#define CONSUMER_CAP 2048

/* Blocks left for the threads that come next. */
static struct {
    pthread_mutex_t lock;
    struct blk items[HANDOFF_CAP];
    size_t n;
} handoff = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The long-lived consumer's queue: producers wait while it is full. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t nonempty, nonfull;
    struct blk items[CONSUMER_CAP];
    size_t n;
    int stop;
    uint64_t freed;
} consumer = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .nonempty = PTHREAD_COND_INITIALIZER,
    .nonfull = PTHREAD_COND_INITIALIZER,
};

struct shortlived {
    unsigned id;
    uint64_t allocs, frees;     /* this thread's own counts */
};

static void *consumer_main(void *arg)
{
    (void)arg;
    static struct blk local[CONSUMER_CAP];
    for (;;) {
        pthread_mutex_lock(&consumer.lock);
        while (consumer.n == 0 && !consumer.stop)
            pthread_cond_wait(&consumer.nonempty, &consumer.lock);
        size_t n = consumer.n;
        int stop = consumer.stop;
        memcpy(local, consumer.items, n * sizeof(local[0]));
        consumer.n = 0;
        pthread_cond_broadcast(&consumer.nonfull);
        pthread_mutex_unlock(&consumer.lock);
        for (size_t i = 0; i < n; i++)
            blk_free(local[i]);
        consumer.freed += n;    /* only this thread writes it; read after join */
        if (n > 0)
            stress_validate();
        if (n == 0 && stop)
            return NULL;
    }
}

static void consumer_send(struct blk b)
{
    pthread_mutex_lock(&consumer.lock);
    while (consumer.n == CONSUMER_CAP)
        pthread_cond_wait(&consumer.nonfull, &consumer.lock);
    consumer.items[consumer.n++] = b;
    pthread_cond_signal(&consumer.nonempty);
    pthread_mutex_unlock(&consumer.lock);
}

/* One round of a short-lived thread's work. */
static void one_round(struct shortlived *t, uint64_t *rng, unsigned round)
{
    unsigned tagid = t->id & 0xffff;

    /* Blocks from earlier threads, most of them gone: orphan frees. */
    struct blk taken[TAKE];
    size_t ntaken = 0;
    pthread_mutex_lock(&handoff.lock);
    while (ntaken < TAKE && handoff.n > 0)
        taken[ntaken++] = handoff.items[--handoff.n];
    pthread_mutex_unlock(&handoff.lock);
    for (size_t i = 0; i < ntaken; i++)
        blk_free(taken[i]);
    t->frees += ntaken;

    struct blk mine[MAX_BATCH];
    unsigned m = 1 + (unsigned)(test_rand(rng) % MAX_BATCH);
    for (unsigned i = 0; i < m; i++) {
        /* The first one is small, so every thread makes a heap. */
        size_t size = i == 0 ? (size_t)(test_rand(rng) % 513) : stress_size(rng);
        mine[i] = blk_alloc(size, stress_tag(tagid, (uint64_t)round * MAX_BATCH + i));
    }
    t->allocs += m;
    unsigned kept = 0;
    for (unsigned i = 0; i < m; i++) {
        switch (test_rand(rng) % 4) {
        case 0:                             /* free it now */
            blk_free(mine[i]);
            t->frees++;
            break;
        case 1: {                           /* leave it for the next threads */
            int put = 0;
            pthread_mutex_lock(&handoff.lock);
            if (handoff.n < HANDOFF_CAP) {
                handoff.items[handoff.n++] = mine[i];
                put = 1;
            }
            pthread_mutex_unlock(&handoff.lock);
            if (!put) {
                blk_free(mine[i]);
                t->frees++;
            }
            break;
        }
        case 2:                             /* send it to the consumer */
            consumer_send(mine[i]);
            break;
        default:                            /* free it at the end of the round */
            mine[kept++] = mine[i];
            break;
        }
    }
    while (kept > 0) {
        blk_free(mine[--kept]);
        t->frees++;
    }
}

static void *short_main(void *arg)
{
    struct shortlived *t = arg;
    uint64_t rng = 0x243F6A8885A308D3ULL ^ ((uint64_t)(t->id + 1) * 0x9E3779B97F4A7C15ULL);
    unsigned rounds = 1 + (unsigned)(test_rand(&rng) % 4);
    for (unsigned round = 0; round < rounds; round++)
        one_round(t, &rng, round);
    stress_validate();
    return NULL;
}

static void run_churn(void *arg)
{
    (void)arg;
    uint64_t rss0 = test_rss_bytes();
    uint64_t n = stress_count("CHURN_THREADS", 10000, 5, 2);
    child_note("  %" PRIu64 " short-lived threads, %d at a time; resident at start %" PRIu64
               " KiB", n, WINDOW, rss0 / 1024);
    double t0 = stress_now();

    pthread_t consumer_tid;
    stress_thread_start(&consumer_tid, consumer_main, NULL);

    pthread_t tid[WINDOW];
    struct shortlived *ts = calloc(n, sizeof(*ts));
    CHECK(ts != NULL);
    uint64_t step = n / 10 ? n / 10 : 1;
    uint64_t peak_heaps = 0;
    struct arena_stats prev, s;
    prev.size = sizeof prev;
    arena_get_stats(&prev);
    for (uint64_t i = 0; i < n; i++) {
        unsigned slot = (unsigned)(i % WINDOW);
        if (i >= WINDOW)
            stress_thread_join(tid[slot]);
        ts[i].id = (unsigned)i;
        stress_thread_start(&tid[slot], short_main, &ts[i]);
        s.size = sizeof s;
        arena_get_stats(&s);
        stress_check_identities(&s, "during churn");
        stress_check_monotonic(&prev, &s);
        /* At most the WINDOW short-lived threads and the consumer (which
         * only frees, and may or may not have a heap for that). */
        SCHECK_LE(s.heaps_live, WINDOW + 1);
        if (s.heaps_live > peak_heaps)
            peak_heaps = s.heaps_live;
        prev = s;
        if (i % step == step - 1)
            child_note("  step %" PRIu64 " of 10: %" PRIu64 " threads started; arenas live %"
                       PRIu64 ", heaps live %" PRIu64 ", abandoned %" PRIu64, (i + 1) / step,
                       i + 1, s.arenas_live, s.heaps_live, s.heaps_abandoned);
    }
    for (uint64_t i = n > WINDOW ? n - WINDOW : 0; i < n; i++)
        stress_thread_join(tid[i % WINDOW]);

    /* Every short-lived thread is gone: what is left on the hand-off stack
     * lives in orphan pools.  This thread has no heap either. */
    uint64_t main_frees = 0;
    pthread_mutex_lock(&handoff.lock);
    while (handoff.n > 0) {
        blk_free(handoff.items[--handoff.n]);
        main_frees++;
    }
    pthread_mutex_unlock(&handoff.lock);

    pthread_mutex_lock(&consumer.lock);
    consumer.stop = 1;
    pthread_cond_signal(&consumer.nonempty);
    pthread_mutex_unlock(&consumer.lock);
    stress_thread_join(consumer_tid);

    uint64_t allocs = 0, frees = main_frees + consumer.freed;
    for (uint64_t i = 0; i < n; i++) {
        allocs += ts[i].allocs;
        frees += ts[i].frees;
    }
    free(ts);
    CHECK_EQ(allocs, frees);
    stress_validate();

    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "after churn");
    SCHECK_EQ(s.blocks_live, 0);
    SCHECK_EQ(s.large_live, 0);
    /* Only this thread is left; every short-lived thread's heap was
     * given up (and the consumer's, if it had one). */
    SCHECK_LE(s.heaps_live, 1);
    SCHECK_GE(s.heaps_abandoned, n);
    SCHECK_LE(s.heaps_abandoned, n + 1);
    uint64_t peak = s.bytes_mapped_peak;

    arena_release();
    stress_validate();
    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "after arena_release");
    /* No pool is still held for a thread that is gone. */
    SCHECK_EQ(s.pools_used + s.pools_full + s.pools_empty, 0);
    SCHECK_EQ(s.arenas_live, 0);
    SCHECK_EQ(s.bytes_mapped, 0);

    uint64_t rss1 = test_rss_bytes();
    int64_t grew = (int64_t)rss1 - (int64_t)rss0;
    child_note("  %" PRIu64 " blocks allocated; peak heaps %" PRIu64 ", peak mapped %" PRIu64
               " KiB; resident %" PRIu64 " KiB at start, %" PRIu64 " KiB at the end (%+" PRId64
               " KiB); %.1f s", allocs, peak_heaps, peak / 1024, rss0 / 1024, rss1 / 1024,
               grew / 1024, stress_now() - t0);
    /* The sanitizers and valgrind keep per-thread state of their own for
     * every thread that ever ran; there only libarena's own figures above
     * count, and the log says the resident-memory check was not made. */
    const char *tool = STRESS_TSAN ? "ThreadSanitizer"
                     : STRESS_ASAN ? "AddressSanitizer"
                     : test_under_valgrind() ? "valgrind" : NULL;
    if (tool != NULL)
        child_note("  resident-memory check skipped: %s keeps state of its own for every "
                   "thread that ran (libarena's bytes_mapped is 0, checked above)", tool);
    else
        CHECKF(grew <= 8 << 20, "resident memory grew by %" PRId64 " KiB", grew / 1024);
}

static void test_churn(void **state)
{
    (void)state;
    assert_int_equal(child_run("thread churn", run_churn, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
