/*
 * Observability: arena_get_class_stats on a known allocation pattern, the
 * `size` contract of the stats structures, and every stats call made while
 * other threads allocate and free (no crash, no TSan report, the identities
 * that hold within one snapshot do hold, the heap map parses).
 * Each scenario runs in a forked child (child.h).
 */
#include "arena.h"
#include "child.h"
#include "mapjson.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define POOL 4096u

static void get_stats(struct arena_stats *s)
{
    memset(s, 0, sizeof *s);
    s->size = sizeof *s;
    arena_get_stats(s);
}

static void get_classes(struct arena_class_stats cs[ARENA_NUM_CLASSES])
{
    memset(cs, 0, ARENA_NUM_CLASSES * sizeof cs[0]);
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++)
        cs[c].size = sizeof cs[c];
    CHECK_EQ(arena_get_class_stats(cs, ARENA_NUM_CLASSES), ARENA_NUM_CLASSES);
}

static uintptr_t pool_of(const void *p)
{
    return (uintptr_t)p & ~(uintptr_t)(POOL - 1);
}

/* ---- class stats: exact numbers for a known pattern ----------------------- */

/* For each class: 3n + r blocks (n = blocks per pool), so three pools are
 * filled and a fourth holds r; then the first pool's n blocks are freed
 * (the pool goes back to its arena) and every other block of the second
 * pool (it keeps n/2, rounded down).  With ARENA_TCACHE=0 every free
 * reaches its pool at once and nothing is cached.  Expected per class:
 *   pools_full 1 (the third), pools_partial 2 (the second and the fourth)
 *   blocks_live n/2 + n + r, blocks_free (n - n/2) + (n - r), cached 0
 *   occupancy: one pool in bucket 7, one in (n/2)*8/n, one in r*8/n. */
struct pattern {
    unsigned size;              /* requested (the class is its round-up) */
    unsigned r;
};
static const struct pattern patterns[] = {
    { 16, 100 }, { 40, 10 }, { 300, 5 }, { 512, 3 },
};
#define NPAT (sizeof patterns / sizeof patterns[0])

static unsigned bucket(unsigned live, unsigned n)
{
    unsigned b = live * 8 / n;
    return b > 7 ? 7 : b;
}

static void class_exact_child(void *arg)
{
    (void)arg;
    setenv("ARENA_TCACHE", "0", 1);
    static void *blk[NPAT][3 * 256 + 100];
    for (unsigned k = 0; k < NPAT; k++) {
        unsigned bs = (patterns[k].size + 15) / 16 * 16, n = POOL / bs;
        for (unsigned i = 0; i < 3 * n + patterns[k].r; i++) {
            blk[k][i] = arena_alloc(patterns[k].size);
            CHECK(blk[k][i] != NULL);
        }
        /* The pattern as laid out: four pools, each run of n in one. */
        for (unsigned i = 0; i < 3 * n + patterns[k].r; i++)
            CHECKF(pool_of(blk[k][i]) == pool_of(blk[k][i - i % n]),
                   "%u-byte block %u is not in the pool of block %u", bs, i, i - i % n);
        for (unsigned q = 1; q < 4; q++)
            CHECK(pool_of(blk[k][q * n]) != pool_of(blk[k][(q - 1) * n]));
    }

    /* Before the frees: 3 full pools and 1 partial per class. */
    struct arena_class_stats cs[ARENA_NUM_CLASSES];
    get_classes(cs);
    for (unsigned k = 0; k < NPAT; k++) {
        unsigned bs = (patterns[k].size + 15) / 16 * 16, n = POOL / bs;
        const struct arena_class_stats *c = &cs[bs / 16 - 1];
        CHECK_EQ(c->block_size, bs);
        CHECK_EQ(c->pools_full, 3);
        CHECK_EQ(c->pools_partial, 1);
        CHECK_EQ(c->blocks_live, 3 * n + patterns[k].r);
        CHECK_EQ(c->blocks_free, n - patterns[k].r);
    }

    for (unsigned k = 0; k < NPAT; k++) {
        unsigned bs = (patterns[k].size + 15) / 16 * 16, n = POOL / bs;
        for (unsigned i = 0; i < n; i++)
            arena_free(blk[k][i]);
        for (unsigned i = n; i < 2 * n; i += 2)
            arena_free(blk[k][i]);
    }

    struct arena_stats st;
    get_classes(cs);
    get_stats(&st);
    uint64_t live = 0, bytes = 0, full = 0, partial = 0;
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++) {
        unsigned bs = (c + 1) * 16, n = POOL / bs;
        const struct pattern *pat = NULL;
        for (unsigned k = 0; k < NPAT; k++)
            if ((patterns[k].size + 15) / 16 * 16 == bs)
                pat = &patterns[k];
        const struct arena_class_stats *s = &cs[c];
        CHECK_EQ(s->size, sizeof *s);
        CHECK_EQ(s->block_size, bs);
        CHECK_EQ(s->blocks_cached, 0);
        uint64_t occ[8] = { 0 };
        if (pat == NULL) {
            CHECK_EQ(s->pools_full + s->pools_partial, 0);
            CHECK_EQ(s->blocks_live + s->blocks_free + s->bytes_resident, 0);
        } else {
            unsigned kept2 = n / 2;
            CHECKF(s->pools_full == 1 && s->pools_partial == 2,
                   "%u bytes: %" PRIu64 " full, %" PRIu64 " partial pools (1 and 2 expected)",
                   bs, s->pools_full, s->pools_partial);
            CHECK_EQ(s->blocks_live, kept2 + n + pat->r);
            CHECK_EQ(s->bytes_live, (uint64_t)(kept2 + n + pat->r) * bs);
            CHECK_EQ(s->blocks_free, (n - kept2) + (n - pat->r));
            CHECK_EQ(s->bytes_resident, 3 * POOL);
            occ[7]++;
            occ[bucket(kept2, n)]++;
            occ[bucket(pat->r, n)]++;
        }
        for (unsigned b = 0; b < 8; b++)
            CHECKF(s->occupancy[b] == occ[b], "%u bytes: occupancy[%u] = %" PRIu64
                   ", %" PRIu64 " expected", bs, b, s->occupancy[b], occ[b]);
        CHECK_EQ(s->blocks_live, st.blocks_live_class[c]);
        live += s->blocks_live;
        bytes += s->bytes_live;
        full += s->pools_full;
        partial += s->pools_partial;
    }
    /* The sums equal arena_get_stats. */
    CHECK_EQ(live, st.blocks_live);
    CHECK_EQ(bytes, st.bytes_live);
    CHECK_EQ(st.blocks_cached, 0);
    CHECK_EQ(full, st.pools_full);
    CHECK_EQ(partial, st.pools_used + st.pools_empty);
    CHECK_EQ(st.pools_full, NPAT);
    CHECK_EQ(st.pools_used, 2 * NPAT);
    CHECK_EQ(st.pools_empty, 0);
}

static void test_class_stats_exact(void **state)
{
    (void)state;
    assert_int_equal(child_run("class stats, known pattern", class_exact_child, NULL), 0);
}

/* With the thread cache on, freed blocks are cached, not live. */
static void class_cached_child(void *arg)
{
    (void)arg;
    setenv("ARENA_TCACHE", "8192", 1);
    static void *b[200];
    for (unsigned i = 0; i < 200; i++)
        CHECK((b[i] = arena_alloc(64)) != NULL);
    for (unsigned i = 0; i < 50; i++)
        arena_free(b[i]);
    struct arena_class_stats cs[ARENA_NUM_CLASSES];
    struct arena_stats st;
    get_classes(cs);
    get_stats(&st);
    const struct arena_class_stats *c = &cs[3];
    CHECK_EQ(c->block_size, 64);
    CHECK_EQ(c->blocks_live, 150);
    CHECK_EQ(c->blocks_live + c->blocks_cached + c->blocks_free,
             (c->pools_full + c->pools_partial) * (POOL / 64));
    CHECK_GE(c->blocks_cached, 50);
    CHECK_EQ(c->blocks_cached, st.blocks_cached);
    CHECK_EQ(st.blocks_live, 150);
}

static void test_class_stats_cached(void **state)
{
    (void)state;
    assert_int_equal(child_run("class stats, thread cache", class_cached_child, NULL), 0);
}

/* ---- the size contract ------------------------------------------------------ */

#define CANARY 0xA5

static size_t first_changed(const unsigned char *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (p[i] != CANARY)
            return i;
    return (size_t)-1;
}

/* arena_get_stats and arena_heap_get_stats write only `size` bytes: a
 * caller built against an older (smaller) header, and one whose struct is
 * larger than the library's. */
static void size_stats_child(void *arg)
{
    (void)arg;
    void *keep = arena_alloc(48);
    CHECK(keep != NULL);
    static unsigned char buf[sizeof(struct arena_stats) + 256];

    /* older caller: up to and including arenas_released */
    size_t small = offsetof(struct arena_stats, arenas_live);
    memset(buf, CANARY, sizeof buf);
    memcpy(buf, &small, sizeof small);
    arena_get_stats((struct arena_stats *)(void *)buf);
    size_t got;
    memcpy(&got, buf, sizeof got);
    CHECK_EQ(got, small);
    size_t bad = first_changed(buf, small, sizeof buf);
    CHECKF(bad == (size_t)-1, "arena_get_stats with size %zu wrote byte %zu", small, bad);
    struct arena_stats part;
    memcpy(&part, buf, small);
    CHECK(part.backend != NULL && strcmp(part.backend, "mmap") == 0);
    CHECK_GE(part.arenas_reserved, 1);

    /* newer caller: 64 bytes more than the library knows */
    size_t big = sizeof(struct arena_stats) + 64;
    memset(buf, CANARY, sizeof buf);
    memcpy(buf, &big, sizeof big);
    arena_get_stats((struct arena_stats *)(void *)buf);
    memcpy(&got, buf, sizeof got);
    CHECK_EQ(got, big);
    bad = first_changed(buf, sizeof(struct arena_stats), sizeof buf);
    CHECKF(bad == (size_t)-1, "arena_get_stats wrote byte %zu, beyond its struct", bad);
    struct arena_stats full;
    memcpy(&full, buf, sizeof full);
    CHECK_EQ(full.blocks_live, 1);

    /* arena_heap_get_stats: the same contract */
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    CHECK(arena_heap_alloc(h, 100) != NULL);
    small = offsetof(struct arena_heap_stats, bytes_live);
    memset(buf, CANARY, sizeof buf);
    memcpy(buf, &small, sizeof small);
    arena_heap_get_stats(h, (struct arena_heap_stats *)(void *)buf);
    bad = first_changed(buf, small, sizeof buf);
    CHECKF(bad == (size_t)-1, "arena_heap_get_stats with size %zu wrote byte %zu", small, bad);
    struct arena_heap_stats hs;
    memcpy(&hs, buf, small);
    CHECK_EQ(hs.blocks_live, 1);
    arena_heap_destroy(h);
    arena_free(keep);
}

static void test_size_stats(void **state)
{
    (void)state;
    assert_int_equal(child_run("size contract, stats", size_stats_child, NULL), 0);
}

/* arena_get_class_stats(out, n) with n below 32 writes n elements and
 * returns 32; a caller's struct larger than the library's is written up to
 * the library's size only. */
static void size_class_n_child(void *arg)
{
    (void)arg;
    CHECK(arena_alloc(32) != NULL);
    static struct arena_class_stats cs[ARENA_NUM_CLASSES];
    memset(cs, CANARY, sizeof cs);
    for (unsigned c = 0; c < 3; c++)
        cs[c].size = sizeof cs[c];
    CHECK_EQ(arena_get_class_stats(cs, 3), ARENA_NUM_CLASSES);
    for (unsigned c = 0; c < 3; c++) {
        CHECK_EQ(cs[c].size, sizeof cs[c]);
        CHECK_EQ(cs[c].block_size, (c + 1) * 16);
    }
    CHECK_EQ(cs[1].blocks_live, 1);
    size_t bad = first_changed((const unsigned char *)cs, 3 * sizeof cs[0], sizeof cs);
    CHECKF(bad == (size_t)-1, "arena_get_class_stats(out, 3) wrote byte %zu (element %zu)",
           bad, bad / sizeof cs[0]);
    CHECK_EQ(arena_get_class_stats(NULL, 0), ARENA_NUM_CLASSES);
}

static void test_size_class_n(void **state)
{
    (void)state;
    assert_int_equal(child_run("size contract, class stats n", size_class_n_child, NULL), 0);
}

/* A caller built against an older header whose struct arena_class_stats
 * ended after blocks_live passes an array of those smaller structs, each
 * with size set, as arena.h asks.  The library must fill each element of
 * the caller's array and write nothing past it. */
struct old_class_stats {
    size_t size;
    uint32_t block_size;
    uint64_t pools_full;
    uint64_t pools_partial;
    uint64_t blocks_live;
};

static void size_class_array_child(void *arg)
{
    (void)arg;
    CHECK(arena_alloc(32) != NULL);
    static unsigned char buf[ARENA_NUM_CLASSES * sizeof(struct arena_class_stats)];
    struct old_class_stats *old = (struct old_class_stats *)(void *)buf;
    size_t used = ARENA_NUM_CLASSES * sizeof old[0];
    memset(buf, CANARY, sizeof buf);
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++)
        old[c].size = sizeof old[c];
    CHECK_EQ(arena_get_class_stats((struct arena_class_stats *)(void *)buf, ARENA_NUM_CLASSES),
             ARENA_NUM_CLASSES);
    size_t bad = first_changed(buf, used, sizeof buf);
    CHECKF(bad == (size_t)-1, "arena_get_class_stats wrote byte %zu of a %zu-byte array of "
           "%zu-byte elements (each with size %zu): it steps through the caller's array by "
           "its own sizeof (%zu)", bad, used, sizeof old[0], sizeof old[0],
           sizeof(struct arena_class_stats));
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++) {
        CHECKF(old[c].size == sizeof old[c] && old[c].block_size == (c + 1) * 16,
               "element %u: size %zu, block_size %u", c, old[c].size, old[c].block_size);
        CHECK_EQ(old[c].blocks_live, c == 1 ? 1 : 0);
    }
}

static void test_size_class_array(void **state)
{
    (void)state;
    assert_int_equal(child_run("size contract, an older caller's class stats array",
                               size_class_array_child, NULL), 0);
}

/* ---- while other threads allocate ----------------------------------------- */

struct churn {
    pthread_t t;
    unsigned id;
    atomic_int *stop;
    pthread_barrier_t *start;   /* every thread and the main one */
    _Atomic uint64_t ops;
};

static void add_ops(struct churn *c, uint64_t n)
{
    atomic_store_explicit(&c->ops, atomic_load_explicit(&c->ops, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t ops_of(struct churn *ch, unsigned n)
{
    uint64_t ops = 0;
    for (unsigned i = 0; i < n; i++)
        ops += atomic_load_explicit(&ch[i].ops, memory_order_relaxed);
    return ops;
}

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    uint64_t seed = 0x1234567ULL * (c->id + 1);
    enum { SLOTS = 4096 };
    static _Thread_local void *slot[SLOTS];
    unsigned round = 0;
    pthread_barrier_wait(c->start);
    while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
        for (int k = 0; k < 256; k++) {
            uint64_t r = test_rand(&seed);
            size_t i = (size_t)(r % SLOTS);
            arena_free(slot[i]);
            /* Mostly 512-byte blocks (8 to a pool: pools go full and back
             * all the time), and a mix of other sizes. */
            size_t size = (r >> 32) % 4 ? 512 : 1 + (size_t)((r >> 40) % 600);
            slot[i] = arena_alloc(size);
            CHECK(slot[i] != NULL);
        }
        add_ops(c, 256);
        /* Now and then a user heap lives and dies, and a thread ends. */
        if (++round % 64 == 0) {
            struct arena_heap *h = arena_heap_new();
            CHECK(h != NULL);
            for (int k = 0; k < 50; k++)
                CHECK(arena_heap_alloc(h, k % 2 ? 100 : 6000) != NULL);
            arena_heap_destroy(h);
        }
    }
    for (size_t i = 0; i < SLOTS; i++) {
        arena_free(slot[i]);
        slot[i] = NULL;
    }
    return NULL;
}

/* What holds within one snapshot, whatever other threads do. */
static void check_snapshot(const struct arena_stats *s)
{
    CHECK_EQ(s->arenas_live, s->arenas_reserved - s->arenas_released);
    CHECK_EQ(s->bytes_mapped, s->arenas_live * ARENA_ARENA_SIZE);
    CHECK_EQ(s->pools_free, s->pools_free_dirty + s->pools_free_purged);
    uint64_t blocks = 0, bytes = 0;
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++) {
        blocks += s->blocks_live_class[c];
        bytes += s->blocks_live_class[c] * (c + 1) * 16;
    }
    CHECK_EQ(s->blocks_live, blocks);
    CHECK_EQ(s->bytes_live, bytes);
}

static void check_classes(const struct arena_class_stats *cs)
{
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++) {
        const struct arena_class_stats *s = &cs[c];
        uint64_t pools = s->pools_full + s->pools_partial, occ = 0;
        CHECK_EQ(s->block_size, (c + 1) * 16);
        CHECK_EQ(s->bytes_live, s->blocks_live * s->block_size);
        CHECK_EQ(s->bytes_resident, pools * POOL);
        for (unsigned b = 0; b < 8; b++)
            occ += s->occupancy[b];
        CHECK_EQ(occ, pools);
        CHECK_LE(s->blocks_live + s->blocks_cached, pools * (POOL / s->block_size));
    }
}

/* A map taken while threads work: it parses, its arenas are in address
 * order, and no pool has more live blocks than it holds. */
static void check_map_text(const char *text, size_t len)
{
    struct heap_map m;
    char err[256];
    CHECKF(map_parse(text, len, &m, err, sizeof err) == 0, "the heap map does not parse: %s",
           err);
    CHECKF(m.over_capacity == 0, "the heap map has %" PRIu64 " pools with more live blocks "
           "than the pool holds", m.over_capacity);
    CHECK(strcmp(m.backend, "mmap") == 0);
    map_free(&m);
}

static void concurrent_child(void *arg)
{
    unsigned nthreads = (unsigned)(uintptr_t)arg;
    if (nthreads == 2)
        setenv("ARENA_TCACHE", "0", 1);     /* every free reaches its pool */
    atomic_int stop = 0;
    struct churn ch[4];
    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, nthreads + 1) == 0);
    for (unsigned i = 0; i < nthreads; i++) {
        ch[i] = (struct churn){ .id = i, .stop = &stop, .start = &start };
        CHECK(pthread_create(&ch[i].t, NULL, churn_main, &ch[i]) == 0);
    }
    pthread_barrier_wait(&start);
    /* At least `rounds` snapshots, and on until the threads have made
     * 100,000 allocations meanwhile (the snapshots overlap their work). */
    unsigned rounds = (unsigned)test_count("OBSERVE_ROUNDS", 200, 20), r;
    for (r = 0; r < rounds || (ops_of(ch, nthreads) < 100000 && r < 100 * rounds); r++) {
        struct arena_stats s;
        struct arena_class_stats cs[ARENA_NUM_CLASSES];
        get_stats(&s);
        check_snapshot(&s);
        get_classes(cs);
        check_classes(cs);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        CHECK(f != NULL);
        switch (r % 3) {
        case 0:
            CHECK_EQ(arena_write_heap_map(f), 0);
            break;
        case 1:
            CHECK_EQ(arena_write_metrics(f), 0);
            break;
        default:
            arena_print_stats(f);
            break;
        }
        CHECK(fclose(f) == 0);
        if (r % 3 == 0)
            check_map_text(buf, len);
        else if (r % 3 == 1)
            CHECK(strstr(buf, "# TYPE libarena_arenas_live gauge\n") != NULL);
        else
            CHECK(strstr(buf, "fragmentation") != NULL);
        free(buf);
    }
    uint64_t during = ops_of(ch, nthreads);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < nthreads; i++)
        CHECK(pthread_join(ch[i].t, NULL) == 0);
    pthread_barrier_destroy(&start);
    uint64_t ops = ops_of(ch, nthreads);
    CHECKF(during > 0, "the threads made no allocation while %u snapshots were taken", r);
    /* Quiet again: the full identities, and the map adds up. */
    struct arena_stats s;
    get_stats(&s);
    check_snapshot(&s);
    CHECK_EQ(s.pools_total, s.arenas_live * 64);
    CHECK_EQ(s.pools_total, s.pools_used + s.pools_full + s.pools_empty + s.pools_large +
                                s.pools_free);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    CHECK_EQ(arena_write_heap_map(f), 0);
    CHECK(fclose(f) == 0);
    struct heap_map m;
    char err[256];
    CHECKF(map_parse(buf, len, &m, err, sizeof err) == 0, "the heap map: %s", err);
    CHECK_EQ(m.n, s.arenas_live);
    CHECK_EQ(m.live_blocks, s.blocks_live);
    map_free(&m);
    free(buf);
    child_note("%u threads: %" PRIu64 " allocations during %u snapshots (%" PRIu64 " in all)",
               nthreads, during, r, ops);
}

static void test_concurrent_2(void **state)
{
    (void)state;
    assert_int_equal(child_run("stats calls while 2 threads allocate (no thread cache)",
                               concurrent_child, (void *)(uintptr_t)2), 0);
}

static void test_concurrent_4(void **state)
{
    (void)state;
    assert_int_equal(child_run("stats calls while 4 threads allocate",
                               concurrent_child, (void *)(uintptr_t)4), 0);
}

/* The heap map while pools go full and back: two threads each hold 64
 * blocks of 512 bytes (8 to a pool) and free and allocate one at a time
 * with no thread cache, so their pools go FULL -> USED -> FULL with every
 * call.  No pool in a map may have more live blocks than it holds.  (The
 * census reads a pool's count and its state one after the other, while the
 * owner changes both: read across a change, the count keeps or loses the
 * FULL bias and comes out near 2^30 or 3 * 2^30.  arena_get_stats clamps
 * such a count to the pool's size; the census does not.) */
static void *flip_main(void *arg)
{
    struct churn *c = arg;
    enum { N = 64 };
    void *s[N];
    for (int i = 0; i < N; i++)
        CHECK((s[i] = arena_alloc(512)) != NULL);
    pthread_barrier_wait(c->start);
    uint64_t x = 0x9e3779b97f4a7c15ULL * (c->id + 1);
    while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
        unsigned i = (unsigned)(test_rand(&x) % N);
        arena_free(s[i]);
        CHECK((s[i] = arena_alloc(512)) != NULL);
        add_ops(c, 1);
    }
    for (int i = 0; i < N; i++)
        arena_free(s[i]);
    return NULL;
}

static void map_flip_child(void *arg)
{
    (void)arg;
    setenv("ARENA_TCACHE", "0", 1);
    atomic_int stop = 0;
    struct churn ch[2];
    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, 3) == 0);
    for (unsigned i = 0; i < 2; i++) {
        ch[i] = (struct churn){ .id = i, .stop = &stop, .start = &start };
        CHECK(pthread_create(&ch[i].t, NULL, flip_main, &ch[i]) == 0);
    }
    pthread_barrier_wait(&start);
    unsigned maps = (unsigned)test_count("OBSERVE_MAPS", 60000, 500), r;
    uint64_t over = 0, worst = 0;
    for (r = 0; r < maps && over == 0; r++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        CHECK(f != NULL);
        CHECK_EQ(arena_write_heap_map(f), 0);
        CHECK(fclose(f) == 0);
        struct heap_map m;
        char err[256];
        CHECKF(map_parse(buf, len, &m, err, sizeof err) == 0, "the heap map: %s", err);
        over = m.over_capacity;
        for (size_t a = 0; a < m.n; a++)
            for (unsigned j = 0; j < MAP_POOLS; j++) {
                const struct map_pool *p = &m.arenas[a].pool[j];
                if (p->state != MAP_LARGE && p->block_size && p->live > worst)
                    worst = p->live;
            }
        map_free(&m);
        free(buf);
    }
    uint64_t during = ops_of(ch, 2);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < 2; i++)
        CHECK(pthread_join(ch[i].t, NULL) == 0);
    pthread_barrier_destroy(&start);
    CHECKF(over == 0, "heap map %u of %u: %" PRIu64 " pool(s) of 512-byte blocks (8 to a "
           "pool) with more live blocks than the pool holds: up to %" PRIu64, r, maps, over,
           worst);
    child_note("%u maps while pools went full and back %" PRIu64 " times: live never above 8",
               maps, during);
}

static void test_map_live_within_pool(void **state)
{
    (void)state;
    assert_int_equal(child_run("heap map while pools go full and back", map_flip_child, NULL),
                     0);
}

/* With the brk backend, arena_heap_destroy() keeps the heap's arenas (the
 * break cannot go down below the arena of a block allocated later) and
 * purges nothing (the brk backend purges only on arena_release()).  Their
 * pools were written and are still resident: the stats and the heap map
 * must count them as free-dirty, not as free-purged. */
static void brk_destroy_child(void *arg)
{
    (void)arg;
    CHECK_EQ(arena_set_backend("brk"), 0);
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    for (int i = 0; i < 20000; i++) {
        char *p = arena_heap_alloc(h, 256);
        CHECK(p != NULL);
        memset(p, 1, 256);
    }
    void *late = arena_alloc(64);       /* above the heap's arenas */
    CHECK(late != NULL);
    struct arena_heap_stats hs;
    memset(&hs, 0, sizeof hs);
    hs.size = sizeof hs;
    arena_heap_get_stats(h, &hs);
    CHECK_GE(hs.pools, 20000 / 16);
    struct arena_stats before, after;
    get_stats(&before);
    arena_heap_destroy(h);
    get_stats(&after);
    CHECK(strcmp(after.backend, "brk") == 0);
    CHECK_EQ(after.calls_madvise, before.calls_madvise);    /* nothing purged */
    CHECK_EQ(after.pools_purged, before.pools_purged);
    CHECKF(after.pools_free_dirty >= before.pools_free_dirty + hs.pools,
           "brk, after arena_heap_destroy: %" PRIu64 " free-dirty and %" PRIu64 " free-purged "
           "pools, bytes_resident %" PRIu64 " KiB; the heap had %" PRIu64 " pools, written "
           "and not purged (pools_purged %" PRIu64 ", madvise calls %" PRIu64 " unchanged)",
           after.pools_free_dirty, after.pools_free_purged, after.bytes_resident / 1024,
           hs.pools, after.pools_purged, after.calls_madvise);
    arena_free(late);
}

static void test_brk_destroy_resident(void **state)
{
    (void)state;
    assert_int_equal(child_run("brk: a destroyed heap's pools are dirty", brk_destroy_child,
                               NULL), 0);
}

/* Two threads allocate and free, and nothing else happens: what the
 * stats tests above run beside, without them.  Under ThreadSanitizer it
 * shows whether allocation itself is race-free (meson runs it as its own
 * test, observe-threads, without the suppression the others have). */
static void threads_alone_child(void *arg)
{
    (void)arg;
    atomic_int stop = 0;
    struct churn ch[2];
    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, 3) == 0);
    for (unsigned i = 0; i < 2; i++) {
        ch[i] = (struct churn){ .id = i, .stop = &stop, .start = &start };
        CHECK(pthread_create(&ch[i].t, NULL, churn_main, &ch[i]) == 0);
    }
    pthread_barrier_wait(&start);
    uint64_t want = test_count("OBSERVE_OPS", 400000, 40000);
    /* Wait for the threads' work (no sleep: the main thread gives up its
     * core to them until they are done). */
    while (ops_of(ch, 2) < want)
        sched_yield();
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < 2; i++)
        CHECK(pthread_join(ch[i].t, NULL) == 0);
    pthread_barrier_destroy(&start);
    child_note("2 threads alone: %" PRIu64 " allocations", ops_of(ch, 2));
}

static void test_threads_alone(void **state)
{
    (void)state;
    assert_int_equal(child_run("2 threads allocate, no stats call", threads_alone_child, NULL),
                     0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "threads-alone") == 0) {
        const struct CMUnitTest alone[] = { cmocka_unit_test(test_threads_alone) };
        return cmocka_run_group_tests(alone, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_stats_exact),
        cmocka_unit_test(test_class_stats_cached),
        cmocka_unit_test(test_size_stats),
        cmocka_unit_test(test_size_class_n),
        cmocka_unit_test(test_size_class_array),
        cmocka_unit_test(test_concurrent_2),
        cmocka_unit_test(test_concurrent_4),
        cmocka_unit_test(test_map_live_within_pool),
        cmocka_unit_test(test_brk_destroy_resident),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
