/*
 * Stress: eight threads run millions of random operations in total, with
 * cross-thread frees.
 *
 * Each thread allocates blocks of random sizes (0..600, mostly small),
 * fills each with a pattern derived from (thread, serial), frees some of
 * its own blocks, reallocates some, and hands about a quarter of them to
 * other threads through per-thread inboxes (mutex + condition variable).
 * A receiver verifies the pattern and frees the block: a remote free into
 * a pool the sender owns, or, once the sender has exited, an orphan free.
 * At the end everything is freed; after all threads have joined no block
 * is live, and after arena_release() no pool is held and no arena is left.
 *
 * STRESS_OPS sets the total number of operations (all threads together),
 * STRESS_THREADS the number of threads.  Runs in forked children.
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

#define MAX_THREADS 64
#define LIVE_CAP    2048        /* own blocks a thread keeps at most      */
#define BATCH       32          /* blocks sent to one inbox in one go     */
#define INBOX_CAP   8192        /* beyond this the sender frees them      */
#define DRAIN_EVERY 64          /* operations between inbox drains        */

struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct blk *items;
    size_t n;
    int all_done;               /* every thread has sent its last block   */
};

struct worker {
    unsigned id;
    uint64_t ops;
    uint64_t rng;
    struct blk *live;
    size_t nlive;
    struct blk *batch;          /* [nthreads][BATCH]                      */
    unsigned *nbatch;           /* [nthreads]                             */
    struct blk *drained;        /* [INBOX_CAP]: a copy of the inbox       */
    uint64_t serial;
    /* counts, checked by the main thread after the join */
    uint64_t allocs, frees, sent, received, overflow;
};

static unsigned nthreads;
static struct inbox inboxes[MAX_THREADS];
static struct worker workers[MAX_THREADS];
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned finished;

static void inbox_init(struct inbox *q)
{
    CHECK(pthread_mutex_init(&q->lock, NULL) == 0);
    CHECK(pthread_cond_init(&q->cond, NULL) == 0);
    q->items = calloc(INBOX_CAP, sizeof(*q->items));
    CHECK(q->items != NULL);
    q->n = 0;
    q->all_done = 0;
}

static void inbox_destroy(struct inbox *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->items);
}

/* Hand w's batch for `to` over; what does not fit, w frees itself. */
static void flush_batch(struct worker *w, unsigned to)
{
    struct blk *b = &w->batch[(size_t)to * BATCH];
    unsigned n = w->nbatch[to];
    if (n == 0)
        return;
    struct inbox *q = &inboxes[to];
    pthread_mutex_lock(&q->lock);
    size_t room = INBOX_CAP - q->n;
    unsigned put = n < room ? n : (unsigned)room;
    memcpy(&q->items[q->n], b, put * sizeof(*b));
    q->n += put;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    w->sent += put;
    for (unsigned i = put; i < n; i++) {
        blk_free(b[i]);
        w->frees++;
        w->overflow++;
    }
    w->nbatch[to] = 0;
}

/* Take everything in w's inbox, verify it and free it.  With `wait`, block
 * until something arrives or every thread is done.  Returns the number of
 * blocks taken, or -1 when the inbox is empty and will stay empty. */
static long drain(struct worker *w, int wait)
{
    struct inbox *q = &inboxes[w->id];
    pthread_mutex_lock(&q->lock);
    while (wait && q->n == 0 && !q->all_done)
        pthread_cond_wait(&q->cond, &q->lock);
    size_t n = q->n;
    int done = q->all_done;
    memcpy(w->drained, q->items, n * sizeof(*q->items));
    q->n = 0;
    pthread_mutex_unlock(&q->lock);
    for (size_t i = 0; i < n; i++) {
        struct blk b = w->drained[i];
        CHECKF((unsigned)(b.tag >> 48) != w->id, "thread %u received its own block", w->id);
        blk_free(b);
    }
    w->received += n;
    w->frees += n;
    return n == 0 && done ? -1 : (long)n;
}

static void one_op(struct worker *w)
{
    unsigned r = (unsigned)(test_rand(&w->rng) % 100);
    if (w->nlive == 0 || (r < 50 && w->nlive < LIVE_CAP)) {
        size_t size = stress_size(&w->rng);
        w->live[w->nlive++] = blk_alloc(size, stress_tag(w->id, w->serial++));
        w->allocs++;
        return;
    }
    size_t i = (size_t)(test_rand(&w->rng) % w->nlive);
    struct blk b = w->live[i];
    if (r < 70) {                           /* free one of ours */
        blk_free(b);
        w->frees++;
        w->live[i] = w->live[--w->nlive];
    } else if (r < 75) {                    /* move it to another size */
        size_t size = stress_size(&w->rng);
        blk_verify(b);
        unsigned char *q = arena_realloc(b.p, size);
        CHECKF(q != NULL, "arena_realloc(%p, %zu) failed", (void *)b.p, size);
        size_t keep = size < b.size ? size : b.size;
        size_t off = test_verify(q, keep, b.tag);
        CHECKF(off == (size_t)-1, "arena_realloc lost byte %zu of %zu", off, keep);
        CHECKF(arena_usable_size(q) >= size, "realloc: usable %zu < %zu",
               arena_usable_size(q), size);
        b.p = q;
        b.size = (uint32_t)size;
        b.tag = stress_tag(w->id, w->serial++);
        test_fill(q, size, b.tag);
        w->live[i] = b;
    } else {                                /* give it to another thread */
        unsigned to = (unsigned)(test_rand(&w->rng) % (nthreads - 1));
        if (to >= w->id)
            to++;
        w->batch[(size_t)to * BATCH + w->nbatch[to]++] = b;
        w->live[i] = w->live[--w->nlive];
        if (w->nbatch[to] == BATCH)
            flush_batch(w, to);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t step = w->ops / 10 ? w->ops / 10 : 1;
    for (uint64_t k = 0; k < w->ops; k++) {
        one_op(w);
        if (k % DRAIN_EVERY == DRAIN_EVERY - 1)
            drain(w, 0);
        if (k % STRESS_VALIDATE_EVERY == STRESS_VALIDATE_EVERY - 1)
            stress_validate();
        if (w->id == 0 && k % step == step - 1)
            child_note("  step %" PRIu64 " of 10: thread 0 did %" PRIu64 " of %" PRIu64
                       " operations", (k + 1) / step, k + 1, w->ops);
    }
    for (unsigned t = 0; t < nthreads; t++)
        flush_batch(w, t);
    while (w->nlive > 0) {
        blk_free(w->live[--w->nlive]);
        w->frees++;
    }
    /* The last thread to finish sending tells every inbox. */
    pthread_mutex_lock(&done_lock);
    if (++finished == nthreads)
        for (unsigned t = 0; t < nthreads; t++) {
            pthread_mutex_lock(&inboxes[t].lock);
            inboxes[t].all_done = 1;
            pthread_cond_broadcast(&inboxes[t].cond);
            pthread_mutex_unlock(&inboxes[t].lock);
        }
    pthread_mutex_unlock(&done_lock);
    while (drain(w, 1) >= 0)
        ;
    stress_validate();
    return NULL;
}

struct scenario {
    const char *purge;          /* ARENA_PURGE, or NULL for the default   */
    const char *cache;          /* ARENA_ARENA_CACHE, or NULL             */
    uint64_t ops_default;
};

static void run_stress(void *arg)
{
    const struct scenario *sc = arg;
    if (sc->purge)
        setenv("ARENA_PURGE", sc->purge, 1);
    if (sc->cache)
        setenv("ARENA_ARENA_CACHE", sc->cache, 1);
    nthreads = (unsigned)test_env_u64("STRESS_THREADS", 8);
    CHECKF(nthreads >= 2 && nthreads <= MAX_THREADS, "STRESS_THREADS must be 2..%d",
           MAX_THREADS);
    uint64_t total = stress_count("STRESS_OPS", sc->ops_default, 25, 8);
    uint64_t seed = test_env_u64("STRESS_SEED", 0x5eed5eedULL);
    child_note("  %u threads, %" PRIu64 " operations in total, seed %#" PRIx64
               ", ARENA_PURGE=%s, ARENA_ARENA_CACHE=%s", nthreads, total, seed,
               sc->purge ? sc->purge : "(default)", sc->cache ? sc->cache : "(default)");
    double t0 = stress_now();

    pthread_t tid[MAX_THREADS];
    for (unsigned t = 0; t < nthreads; t++) {
        inbox_init(&inboxes[t]);
        struct worker *w = &workers[t];
        memset(w, 0, sizeof(*w));
        w->id = t;
        w->ops = total / nthreads;
        w->rng = seed ^ ((uint64_t)(t + 1) * 0x9E3779B97F4A7C15ULL);
        w->live = calloc(LIVE_CAP, sizeof(*w->live));
        w->batch = calloc((size_t)nthreads * BATCH, sizeof(*w->batch));
        w->nbatch = calloc(nthreads, sizeof(*w->nbatch));
        w->drained = calloc(INBOX_CAP, sizeof(*w->drained));
        CHECK(w->live && w->batch && w->nbatch && w->drained);
    }
    finished = 0;
    for (unsigned t = 0; t < nthreads; t++)
        stress_thread_start(&tid[t], worker_main, &workers[t]);
    for (unsigned t = 0; t < nthreads; t++)
        stress_thread_join(tid[t]);

    uint64_t allocs = 0, frees = 0, sent = 0, received = 0, overflow = 0;
    for (unsigned t = 0; t < nthreads; t++) {
        struct worker *w = &workers[t];
        allocs += w->allocs;
        frees += w->frees;
        sent += w->sent;
        received += w->received;
        overflow += w->overflow;
        CHECK_EQ(w->nlive, 0);
        free(w->live);
        free(w->batch);
        free(w->nbatch);
        free(w->drained);
        inbox_destroy(&inboxes[t]);
    }
    CHECK_EQ(allocs, frees);
    CHECK_EQ(sent, received);
    CHECK_GT(received, 0);
    stress_validate();

    struct arena_stats s;
    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "after join");
    SCHECK_EQ(s.blocks_live, 0);
    SCHECK_EQ(s.bytes_live, 0);
    SCHECK_EQ(s.large_live, 0);
    SCHECK_EQ(s.heaps_live, 0);             /* this thread never allocated */
    SCHECK_EQ(s.heaps_abandoned, nthreads);
    SCHECK_EQ(s.pools_used + s.pools_full + s.pools_empty, 0);
    uint64_t peak = s.bytes_mapped_peak, reserved = s.arenas_reserved;

    size_t released = arena_release();
    stress_validate();
    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "after arena_release");
    SCHECK_EQ(s.blocks_live, 0);
    SCHECK_EQ(s.pools_used + s.pools_full, 0);
    SCHECK_EQ(s.pools_empty, 0);
    SCHECK_EQ(s.arenas_live, 0);            /* mmap gives back every arena */
    SCHECK_EQ(s.pools_free_dirty, 0);
    child_note("  %" PRIu64 " allocations, %" PRIu64 " handed to another thread, %" PRIu64
               " freed by the sender (inbox full); arenas reserved %" PRIu64
               ", peak %" PRIu64 " KiB; arena_release gave back %zu KiB; %.1f s",
               allocs, sent, overflow, reserved, peak / 1024, released / 1024,
               stress_now() - t0);
}

static void test_stress_default(void **state)
{
    (void)state;
    static const struct scenario sc = { NULL, NULL, 60000000 };
    assert_int_equal(child_run("stress (default options)", run_stress, (void *)&sc), 0);
}

/* Every pool purged as it comes back and no empty arena cached: arenas
 * are reserved and released all the time under the other threads. */
static void test_stress_eager(void **state)
{
    (void)state;
    static const struct scenario sc = { "eager", "0", 10000000 };
    assert_int_equal(child_run("stress (ARENA_PURGE=eager, ARENA_ARENA_CACHE=0)", run_stress,
                               (void *)&sc), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_default),
        cmocka_unit_test(test_stress_eager),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
