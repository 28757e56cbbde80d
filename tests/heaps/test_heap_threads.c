/*
 * Heaps and threads: 4 threads create, fill and destroy heaps in a loop,
 * with frees of each other's heap blocks, and no memory grows.
 *
 * Each cycle, in every thread i (barriers between the phases):
 *   1. create a heap, allocate objects of 0..600 bytes (1 in 64 between
 *      513 bytes and 64 KiB, 1 in 512 above an arena), write a pattern,
 *      post half of them to thread i+1's inbox;
 *   2. free every block in its own inbox (thread i-1's heap blocks,
 *      patterns checked), allocating one more block from its own heap for
 *      each, so frees into a heap race with its owner's allocation;
 *   3. destroy a heap: its own on even cycles, thread i+1's on odd ones
 *      (a destroy from another thread), while the threads that are done
 *      already create the next cycle's heaps.
 * The main thread runs the cycles in 10 chunks (threads started anew for
 * each) and, between chunks, checks that bytes_mapped, bytes_metadata and
 * arenas_live do not grow beyond what the first chunk reached, that no
 * user heap is left, that the arenas stay in the address range the first
 * chunk used (the registry keeps a map byte for every pool and a pointer
 * for every arena of the address space ever used, in pages that stay
 * resident: an allocator whose arenas wander through the address space
 * grows there) and, outside sanitizers and valgrind, that resident memory
 * does not grow.  At the end, with every heap destroyed and
 * arena_release() called, no arena is mapped at all.
 *
 * 10,000 cycles by default; 400 under sanitizers, 100 under valgrind
 * (HEAPS_CYCLES overrides).
 *
 * A second test does the same with one thread and the smallest heap (one
 * 16-byte block, one arena): 20,000 cycles must stay in one small address
 * range and, outside sanitizers and valgrind, 150,000 cycles must not grow
 * resident memory or metadata.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "heaps.h"
#include "internal.h"

#define NTHREADS 4
#define PER_CYCLE 64                    /* objects a thread allocates in phase 1 */
#define INBOX (PER_CYCLE / 2)
#define CHUNKS 10

struct blk {
    unsigned char *p;
    size_t n;
    uint64_t tag;
};

struct worker {
    unsigned id;
    uint64_t rng;
    uint64_t cycles;
    struct arena_heap *heap;            /* this cycle's */
    struct blk inbox[INBOX];            /* written by the previous thread */
    size_t inbox_n;
    uint64_t serial;
    uintptr_t lo, hi;                   /* arenas its blocks were in */
};

static struct worker workers[NTHREADS];
static pthread_barrier_t barrier;

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = test_rand(rng);
    if (r % 512 == 0)
        return ARENA + 1 + (size_t)(r >> 20) % ARENA;
    if (r % 64 == 0)
        return 513 + (size_t)(r >> 20) % (64 * KIB);
    return (size_t)(r >> 20) % 601;
}

static struct blk blk_new(struct worker *w)
{
    struct blk b;
    b.n = pick_size(&w->rng);
    b.tag = ((uint64_t)w->id << 48) | w->serial++;
    b.p = arena_heap_alloc(w->heap, b.n);
    CHECKF(b.p != NULL, "thread %u: arena_heap_alloc(%zu) failed", w->id, b.n);
    test_fill(b.p, b.n < 256 ? b.n : 256, b.tag);
    uintptr_t a = (uintptr_t)b.p & ~(uintptr_t)(ARENA - 1);
    if (w->lo == 0 || a < w->lo)
        w->lo = a;
    if (a + ARENA > w->hi)
        w->hi = a + ARENA;
    return b;
}

static void wait_all(void)
{
    int rc = pthread_barrier_wait(&barrier);
    CHECKF(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "pthread_barrier_wait: %d", rc);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct worker *next = &workers[(w->id + 1) % NTHREADS];
    for (uint64_t c = 0; c < w->cycles; c++) {
        w->heap = arena_heap_new();
        CHECKF(w->heap != NULL, "thread %u: arena_heap_new failed", w->id);
        struct blk mine[PER_CYCLE];
        for (size_t i = 0; i < PER_CYCLE; i++)
            mine[i] = blk_new(w);
        for (size_t i = 0; i < INBOX; i++)
            next->inbox[i] = mine[2 * i];
        next->inbox_n = INBOX;
        wait_all();
        /* Read before the next barrier: after it, the next thread may
         * already have made its next cycle's heap. */
        struct arena_heap *victim = c % 2 == 0 ? w->heap : next->heap;
        for (size_t i = 0; i < w->inbox_n; i++) {
            struct blk b = w->inbox[i];
            CHECK_PATTERN(b.p, b.n < 256 ? b.n : 256, b.tag);
            arena_free(b.p);
            (void)blk_new(w);           /* left for the destroy */
        }
        w->inbox_n = 0;
        for (size_t i = 1; i < PER_CYCLE; i += 2)
            CHECK_PATTERN(mine[i].p, mine[i].n < 256 ? mine[i].n : 256, mine[i].tag);
        wait_all();
        arena_heap_destroy(victim);
    }
    return NULL;
}

/* 1 (and a note) when value is above its bound. */
static int growth(const char *what, uint64_t value, uint64_t bound)
{
    if (value <= bound)
        return 0;
    child_note("    GROWTH: %s %llu, above %llu", what, (unsigned long long)value,
               (unsigned long long)bound);
    return 1;
}

static void run_chunk(uint64_t cycles)
{
    pthread_t t[NTHREADS];
    CHECK(pthread_barrier_init(&barrier, NULL, NTHREADS) == 0);
    for (unsigned i = 0; i < NTHREADS; i++) {
        workers[i].cycles = cycles;
        thread_start(&t[i], worker_run, &workers[i]);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        thread_join(t[i]);
    pthread_barrier_destroy(&barrier);
}

static void child_cycles(void *arg)
{
    (void)arg;
    uint64_t total = test_env_u64("HEAPS_CYCLES",
                                  test_under_valgrind() ? 100 : test_instrumented() ? 400 : 10000);
    uint64_t per = total / CHUNKS > 0 ? total / CHUNKS : 1;
    for (unsigned i = 0; i < NTHREADS; i++) {
        workers[i].id = i;
        workers[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
    }
    struct arena_stats first = {0};
    uint64_t first_span = 0, first_rss = 0;
    int grew = 0;
    for (unsigned k = 0; k < CHUNKS; k++) {
        run_chunk(per);
        struct arena_stats s = gstats();
        uintptr_t lo = UINTPTR_MAX, hi = 0;
        for (unsigned i = 0; i < NTHREADS; i++) {
            lo = workers[i].lo < lo ? workers[i].lo : lo;
            hi = workers[i].hi > hi ? workers[i].hi : hi;
        }
        uint64_t span = hi - lo, rss = test_rss_bytes();
        child_note("    step %u of %u: %llu cycles x %d threads done; mapped %llu KiB, "
                   "metadata %llu KiB, arenas live %llu, released %llu; arenas seen in "
                   "%llu MiB of address space; RSS %llu KiB",
                   k + 1, CHUNKS, (unsigned long long)(per * (k + 1)), NTHREADS,
                   (unsigned long long)(s.bytes_mapped >> 10),
                   (unsigned long long)(s.bytes_metadata >> 10),
                   (unsigned long long)s.arenas_live, (unsigned long long)s.arenas_released,
                   (unsigned long long)(span >> 20), (unsigned long long)(rss >> 10));
        CHECK_EQ(s.heaps_user, 0);
        CHECK_EQ(s.heap_large_live, 0);
        if (k == 0) {
            first = s;
            first_span = span;
            first_rss = rss;
            continue;
        }
        /* Growth is noted here and fails the test at the end, so that
         * every cycle runs (under the sanitizers too). */
        grew |= growth("bytes_mapped", s.bytes_mapped, first.bytes_mapped);
        grew |= growth("arenas_live", s.arenas_live, first.arenas_live);
        grew |= growth("bytes_metadata", s.bytes_metadata, first.bytes_metadata);
        grew |= growth("address span", span, 2 * first_span + 64 * MIB);
        if (!test_instrumented())
            grew |= growth("RSS", rss, first_rss + MIB);
    }
    ar_validate();
    arena_release();
    struct arena_stats s = gstats();
    CHECK_EQ(s.arenas_live, 0);
    CHECK_EQ(s.bytes_mapped, 0);
    CHECK_EQ(s.limit_counted, 0);
    CHECK_GE(s.arenas_released, per * CHUNKS * NTHREADS);  /* at least one a heap */
    CHECKF(!grew, "memory grew across the cycles (see GROWTH above)");
}

static void test_cycles(void **state)
{
    (void)state;
    assert_int_equal(child_run("4 threads x heap cycles", child_cycles, NULL), 0);
}

/* One thread, the smallest heap: one 16-byte block in one arena. */
static uintptr_t tiny_cycle(void)
{
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    void *p = arena_heap_alloc(h, 16);
    CHECK(p != NULL);
    arena_heap_destroy(h);
    return (uintptr_t)p & ~(uintptr_t)(ARENA - 1);
}

static void child_tiny_cycles(void *arg)
{
    (void)arg;
    uint64_t n = test_env_u64("HEAPS_TINY_CYCLES", test_under_valgrind() ? 2000 : 20000);
    for (int i = 0; i < 100; i++)
        (void)tiny_cycle();
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (uint64_t i = 0; i < n; i++) {
        uintptr_t a = tiny_cycle();
        lo = a < lo ? a : lo;
        hi = a + ARENA > hi ? a + ARENA : hi;
    }
    child_note("    %llu cycles: the heap's arena was in %llu KiB of address space",
               (unsigned long long)n, (unsigned long long)((hi - lo) >> 10));
    /* The checked build keeps the ranges of the last 32 destroyed heaps
     * reserved (inaccessible), so that a free into one is named; with the
     * alignment gaps between them that is up to 64 arenas more. */
#if ARENA_CHECKED
    int grew = growth("address span", hi - lo, 32 * MIB);
#else
    int grew = growth("address span", hi - lo, 16 * MIB);
#endif
    if (test_instrumented()) {
        CHECKF(!grew, "the heaps wandered through the address space (see GROWTH above)");
        return;
    }
    /* What wandering costs: registry pages and leaves (metadata). */
    uint64_t rss0 = test_rss_bytes(), md0 = gstats().bytes_metadata;
    uint64_t more = test_env_u64("HEAPS_TINY_CYCLES_RSS", 150000);
    for (uint64_t i = 0; i < more; i++)
        (void)tiny_cycle();
    uint64_t rss1 = test_rss_bytes(), md1 = gstats().bytes_metadata;
    child_note("    %llu more cycles: RSS %llu -> %llu KiB, metadata %llu -> %llu KiB",
               (unsigned long long)more, (unsigned long long)(rss0 >> 10),
               (unsigned long long)(rss1 >> 10), (unsigned long long)(md0 >> 10),
               (unsigned long long)(md1 >> 10));
    grew |= growth("RSS", rss1, rss0 + MIB);
    grew |= growth("bytes_metadata", md1, md0);
    CHECKF(!grew, "memory grew across the cycles (see GROWTH above)");
}

static void test_tiny_cycles(void **state)
{
    (void)state;
    assert_int_equal(child_run("1 thread x tiny heap cycles", child_tiny_cycles, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_cycles),
        cmocka_unit_test(test_cycles),
    };
    return cmocka_run_group_tests_name("heaps-threads", tests, NULL, NULL);
}
