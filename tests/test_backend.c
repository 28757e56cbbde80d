/*
 * The arena layer against a counting, failing fake backend: an arena is
 * released exactly when its last block goes, the empty-arena cache is
 * bounded, a failed reservation is ENOMEM and nothing worse, purges never
 * touch live blocks, and an alloc/free loop does not thrash the backend.
 * Every scenario runs in a forked child (child.h) that installs the fake
 * before its first allocation.
 *
 * The registry forgets every arena before the backend gives it back
 * (checked by a backend that wraps the mmap one and looks at the registry
 * on every release).
 *
 *   TEST_ROUNDS=n   rounds of the no-thrash loop (default 100,000; 10,000
 *                   under valgrind or in a sanitizer build)
 */
#include "arena.h"
#include "backend.h"
#include "child.h"
#include "fake_backend.h"
#include "internal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ARENA_MASK (~(uintptr_t)(ARENA_ARENA_SIZE - 1))
#define POOL_MASK  (~(uintptr_t)(ARENA_POOL_SIZE - 1))
#define BLOCKS64_PER_ARENA (ARENA_ARENA_SIZE / 64)   /* 64 pools * 64 blocks */
#define BLOCKS64_PER_POOL  (ARENA_POOL_SIZE / 64)

static uintptr_t arena_of(const void *p) { return (uintptr_t)p & ARENA_MASK; }
static uintptr_t pool_of(const void *p) { return (uintptr_t)p & POOL_MASK; }

static void install(unsigned flags)
{
    int rc = fake_install(flags);
    CHECKF(rc == 0, "ar_backend_use(fake) = %d", rc);
}

static void shuffle(void **v, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(test_rand(rng) % i);
        void *t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* The thread cache keeps freed blocks in their pools for a while, so a
 * pool or arena empties later than its last arena_free().  Scenarios that
 * time releases and purges exactly turn it off; the *_tcache scenarios
 * check that with the cache on nothing is lost and nothing live is purged. */
static void tcache_off(void)
{
    setenv("ARENA_TCACHE", "0", 1);
}

static void tcache_default(void)
{
    unsetenv("ARENA_TCACHE");
}

/* The counters libarena reports agree with what the fake saw. */
static void check_stats_match_fake(void)
{
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.arenas_reserved, fake.reserves);
    CHECK_EQ(st.arenas_released, fake.releases);
    CHECK_EQ(st.arenas_live, fake_live_regions());
    CHECK_EQ(st.reserve_failures, fake.reserve_failures);
    CHECK_EQ(st.bytes_purged, fake.purged_bytes);
    CHECK(st.backend != NULL && strcmp(st.backend, "fake") == 0);
}

/* ---- a. an arena is released when, and only when, its last block goes -- */

static void child_release_when_empty(void *arg)
{
    (void)arg;
    setenv("ARENA_ARENA_CACHE", "0", 1);
    setenv("ARENA_PURGE", "off", 1);
    tcache_off();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);

    enum { MAX = 3 * BLOCKS64_PER_ARENA };
    static void *all[MAX], *first[MAX], *rest[MAX];
    size_t n = 0, nfirst = 0, nrest = 0;
    while (fake.reserves < 2) {
        CHECKF(n < MAX, "%zu blocks of 64 bytes did not fill an arena", n);
        all[n] = arena_alloc(64);
        CHECK(all[n] != NULL);
        test_fill(all[n], 64, (uintptr_t)all[n]);
        n++;
    }
    CHECK_EQ(fake.nregions, 2);
    uintptr_t a1 = fake.regions[0].base, a2 = fake.regions[1].base;
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = arena_of(all[i]);
        CHECKF(a == a1 || a == a2, "block %p is in no arena from the backend",
               all[i]);
        if (a == a1)
            first[nfirst++] = all[i];
        else
            rest[nrest++] = all[i];
    }
    CHECK(arena_of(all[n - 1]) == a2);
    /* Pool descriptors live outside the arena: every byte holds blocks. */
    CHECK_EQ(nfirst, BLOCKS64_PER_ARENA);
    check_stats_match_fake();

    uint64_t rng = 12345;
    shuffle(first, nfirst, &rng);
    for (size_t i = 0; i < nfirst; i++) {
        CHECK_PATTERN(first[i], 64, (uintptr_t)first[i]);
        arena_free(first[i]);
        if (i + 1 < nfirst)
            CHECKF(fake.releases == 0, "arena released after %zu of %zu "
                   "frees", i + 1, nfirst);
    }
    CHECKF(fake.releases == 1, "%llu releases after the first arena emptied",
           (unsigned long long)fake.releases);
    CHECK(!fake.regions[0].live);
    CHECK(fake.regions[1].live);
    check_stats_match_fake();

    for (size_t i = 0; i < nrest; i++) {
        CHECK_PATTERN(rest[i], 64, (uintptr_t)rest[i]);
        arena_free(rest[i]);
    }
    CHECK_LE(fake.releases, 2);
    check_stats_match_fake();
    size_t given = arena_release();
    CHECK_EQ(fake.releases, 2);
    CHECK_EQ(fake_live_regions(), 0);
    CHECK_GE(given, ARENA_ARENA_SIZE);
    check_stats_match_fake();
}

static void test_release_when_empty(void **state)
{
    (void)state;
    assert_int_equal(child_run("release_when_empty", child_release_when_empty, NULL), 0);
}

/* ---- b. at most ARENA_ARENA_CACHE empty arenas are kept ---------------- */

static size_t arenas_with_blocks(void **b, size_t n)
{
    uintptr_t seen[16];
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        if (!b[i])
            continue;
        uintptr_t a = arena_of(b[i]);
        size_t k = 0;
        while (k < ns && seen[k] != a)
            k++;
        if (k == ns) {
            CHECK(ns < 16);
            seen[ns++] = a;
        }
    }
    return ns;
}

static void child_arena_cache(void *arg)
{
    (void)arg;
    setenv("ARENA_ARENA_CACHE", "1", 1);
    setenv("ARENA_PURGE", "off", 1);
    tcache_off();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);

    enum { N = 3 * BLOCKS64_PER_ARENA };
    static void *b[N];
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < N; i++) {
            b[i] = arena_alloc(64);
            CHECK(b[i] != NULL);
        }
        CHECK_GE(fake.reserves, 3);
        CHECK_EQ(fake_live_regions(), 3);
        /* Free arena by arena (lowest region index first), checking the
         * bound after every free: the arenas held are those with live
         * blocks, the one the heap's current pool may pin, and one cached. */
        for (size_t r = 0; r < fake.nregions; r++) {
            if (!fake.regions[r].live)
                continue;
            for (size_t i = 0; i < N; i++) {
                if (!b[i] || arena_of(b[i]) != fake.regions[r].base)
                    continue;
                arena_free(b[i]);
                b[i] = NULL;
                size_t live = arenas_with_blocks(b, N);
                struct arena_stats st;
                st.size = sizeof st;
                arena_get_stats(&st);
                CHECKF(st.arenas_empty <= 1, "round %d: %llu empty arenas "
                       "kept with ARENA_ARENA_CACHE=1", round,
                       (unsigned long long)st.arenas_empty);
                CHECKF(fake_live_regions() <= live + 2, "round %d: %zu arenas "
                       "held, %zu have live blocks", round,
                       fake_live_regions(), live);
            }
        }
        for (size_t i = 0; i < N; i++)
            CHECK(b[i] == NULL);
        CHECKF(fake_live_regions() <= 2, "round %d: %zu arenas held with "
               "nothing live", round, fake_live_regions());
        /* ... and the cache is used: two arenas emptied, one is kept. */
        struct arena_stats st;
        st.size = sizeof st;
        arena_get_stats(&st);
        CHECKF(st.arenas_empty == 1, "round %d: %llu empty arenas kept with "
               "ARENA_ARENA_CACHE=1 after emptying several", round,
               (unsigned long long)st.arenas_empty);
        /* Two of the three emptied while the third still had blocks: one
         * of them must have gone back. */
        CHECK_GE(fake.releases, 1 + (uint64_t)round);
        check_stats_match_fake();
    }
    uint64_t before = fake.releases;
    size_t held = fake_live_regions();
    size_t given = arena_release();
    CHECK_GE(given, ARENA_ARENA_SIZE);
    CHECK_EQ(fake.releases, before + held);
    CHECK_EQ(fake_live_regions(), 0);
    check_stats_match_fake();
}

static void test_arena_cache(void **state)
{
    (void)state;
    assert_int_equal(child_run("arena_cache", child_arena_cache, NULL), 0);
}

/* ---- c. a failing reserve is ENOMEM, and the allocator recovers --------- */

static void child_reserve_failure(void *arg)
{
    (void)arg;
    setenv("ARENA_ARENA_CACHE", "1", 1);
    tcache_default();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);

    /* Failing from the very first allocation. */
    fake.fail_always = 1;
    errno = 0;
    CHECK(arena_alloc(64) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_GE(fake.reserve_failures, 1);
    errno = 0;
    CHECK(arena_calloc(2, 16) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(arena_realloc(NULL, 100) == NULL);
    CHECK_EQ(errno, ENOMEM);
    void *big = arena_alloc(4096);
    CHECK(big != NULL);
    test_fill(big, 4096, 4096);
    check_stats_match_fake();

    /* Recovers; fill one arena completely, then fail again. */
    fake.fail_always = 0;
    enum { N = BLOCKS64_PER_ARENA + 1 };
    static void *b[N];
    size_t n = 0;
    b[n] = arena_alloc(64);
    CHECK(b[n] != NULL);
    test_fill(b[n], 64, n);
    n++;
    CHECK_EQ(fake.reserves, 1);
    fake.fail_always = 1;
    for (;;) {
        CHECKF(n < N, "more than %zu blocks of 64 bytes in one arena", n);
        errno = 0;
        b[n] = arena_alloc(64);
        if (!b[n])
            break;
        test_fill(b[n], 64, n);
        n++;
    }
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(n, BLOCKS64_PER_ARENA);
    CHECK_EQ(fake.reserves, 1);
    /* Other classes need a pool, and there is none. */
    errno = 0;
    CHECK(arena_alloc(16) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(arena_calloc(1, 300) == NULL);
    CHECK_EQ(errno, ENOMEM);
    /* A realloc that needs a new block fails and leaves the old one. */
    errno = 0;
    CHECK(arena_realloc(b[0], 200) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_PATTERN(b[0], 64, 0);
    /* Large requests do not need the backend. */
    void *big2 = arena_alloc(4096);
    CHECK(big2 != NULL);
    test_fill(big2, 4096, 4097);
    void *big3 = arena_realloc(b[1], 1000);   /* small -> large works */
    CHECK(big3 != NULL);
    CHECK_PATTERN(big3, 64, 1);
    b[1] = NULL;
    /* A freed block is reused without asking the backend. */
    void *again = arena_alloc(64);
    CHECK(again != NULL);
    test_fill(again, 64, 1);
    b[1] = again;
    check_stats_match_fake();

    /* The backend recovers: so does the allocator. */
    fake.fail_always = 0;
    void *p = arena_alloc(64);
    CHECK(p != NULL);
    CHECK_EQ(fake.reserves, 2);
    test_fill(p, 64, 999999);
    void *q = arena_alloc(16);
    CHECK(q != NULL);
    for (size_t i = 0; i < n; i++)
        CHECK_PATTERN(b[i], 64, i);
    CHECK_PATTERN(big, 4096, 4096);
    CHECK_PATTERN(big2, 4096, 4097);
    CHECK_PATTERN(big3, 64, 1);
    CHECK_PATTERN(p, 64, 999999);
    for (size_t i = 0; i < n; i++)
        arena_free(b[i]);
    arena_free(p);
    arena_free(q);
    arena_free(big);
    arena_free(big2);
    arena_free(big3);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    CHECK_EQ(st.large_live, 0);
    check_stats_match_fake();

    /* Fail exactly the next two reserves: the third attempt succeeds. */
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
    fake.fail_next = 2;
    uint64_t failures = fake.reserve_failures;
    int nulls = 0;
    p = NULL;
    for (int attempt = 0; attempt < 3 && !p; attempt++) {
        errno = 0;
        p = arena_alloc(32);
        if (!p) {
            CHECK_EQ(errno, ENOMEM);
            nulls++;
        }
    }
    CHECK(p != NULL);
    CHECK_GE(nulls, 1);
    CHECK_EQ(fake.fail_next, 0);
    CHECK_EQ(fake.reserve_failures, failures + 2);
    arena_free(p);
    check_stats_match_fake();
}

static void test_reserve_failure(void **state)
{
    (void)state;
    assert_int_equal(child_run("reserve_failure", child_reserve_failure, NULL), 0);
}

/* ---- d. purge policy ---------------------------------------------------- */

#define D_POOLS64  12
#define D_POOLS256 4
#define D_N64  (D_POOLS64 * BLOCKS64_PER_POOL)
#define D_N256 (D_POOLS256 * (ARENA_POOL_SIZE / 256))

struct purge_work {
    void *b64[D_N64];
    void *b256[D_N256];
    size_t checked;   /* purge log entries already checked */
};

static void fill_pools(struct purge_work *w, uint64_t salt)
{
    for (size_t i = 0; i < D_N64; i++) {
        if (w->b64[i])
            continue;
        w->b64[i] = arena_alloc(64);
        CHECK(w->b64[i] != NULL);
        test_fill(w->b64[i], 64, salt + i);
    }
    for (size_t i = 0; i < D_N256; i++) {
        if (w->b256[i])
            continue;
        w->b256[i] = arena_alloc(256);
        CHECK(w->b256[i] != NULL);
        test_fill(w->b256[i], 256, salt + 100000 + i);
    }
}

static int range_holds(uintptr_t base, size_t size, const void *p)
{
    return (uintptr_t)p >= base && (uintptr_t)p < base + size;
}

/* No purge logged since the last call covers a live block. */
static void check_new_purges(struct purge_work *w)
{
    for (; w->checked < fake.npurge_log; w->checked++) {
        const struct fake_purge *pg = &fake.purge_log[w->checked];
        for (size_t i = 0; i < D_N64; i++)
            CHECKF(!w->b64[i] || !range_holds(pg->base, pg->size, w->b64[i]),
                   "purge(%p, %zu) covers live block %p",
                   (void *)pg->base, pg->size, w->b64[i]);
        for (size_t i = 0; i < D_N256; i++)
            CHECKF(!w->b256[i] || !range_holds(pg->base, pg->size, w->b256[i]),
                   "purge(%p, %zu) covers live block %p",
                   (void *)pg->base, pg->size, w->b256[i]);
    }
}

static int purged(uintptr_t pool)
{
    for (size_t k = 0; k < fake.npurge_log; k++)
        if (range_holds(fake.purge_log[k].base, fake.purge_log[k].size,
                        (void *)pool))
            return 1;
    return 0;
}

static void verify_all(struct purge_work *w, uint64_t salt)
{
    for (size_t i = 0; i < D_N64; i++)
        if (w->b64[i])
            CHECK_PATTERN(w->b64[i], 64, salt + i);
    for (size_t i = 0; i < D_N256; i++)
        if (w->b256[i])
            CHECK_PATTERN(w->b256[i], 256, salt + 100000 + i);
}

/* Free every block but b64[0], in random order, checking purges as we go.
 * Returns the number of distinct pools emptied (not holding b64[0]). */
static size_t free_all_but_one(struct purge_work *w, uint64_t salt, uint64_t seed)
{
    void *order[D_N64 + D_N256];
    size_t n = 0;
    for (size_t i = 1; i < D_N64; i++)
        order[n++] = w->b64[i];
    for (size_t i = 0; i < D_N256; i++)
        order[n++] = w->b256[i];
    uint64_t rng = seed;
    shuffle(order, n, &rng);
    verify_all(w, salt);
    uintptr_t keep_pool = pool_of(w->b64[0]);
    uintptr_t pools[D_POOLS64 + D_POOLS256 + 2];
    size_t npools = 0;
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < D_N64; i++)
            if (w->b64[i] == order[k])
                w->b64[i] = NULL;
        for (size_t i = 0; i < D_N256; i++)
            if (w->b256[i] == order[k])
                w->b256[i] = NULL;
        uintptr_t pool = pool_of(order[k]);
        size_t j = 0;
        while (j < npools && pools[j] != pool)
            j++;
        if (j == npools && pool != keep_pool) {
            CHECK(npools < sizeof pools / sizeof pools[0]);
            pools[npools++] = pool;
        }
        arena_free(order[k]);
        check_new_purges(w);
    }
    CHECK_EQ(fake.releases, 0);
    return npools;
}

static void child_purge_eager(void *arg)
{
    (void)arg;
    setenv("ARENA_PURGE", "eager", 1);
    tcache_off();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);
    static struct purge_work w;

    fill_pools(&w, 0);
    CHECK_EQ(fake.reserves, 1);
    CHECK_EQ(fake.purges, 0);
    size_t emptied = free_all_but_one(&w, 0, 1);
    CHECK_EQ(emptied, D_POOLS64 + D_POOLS256 - 1);
    /* Every emptied pool but the heap's current one per class is purged. */
    size_t npurged = 0;
    for (size_t k = 0; k < fake.nregions; k++) {
        if (!fake.regions[k].live)
            continue;
        for (uintptr_t pool = fake.regions[k].base;
             pool < fake.regions[k].base + ARENA_ARENA_SIZE; pool += ARENA_POOL_SIZE)
            npurged += purged(pool);
    }
    CHECKF(npurged + 2 >= emptied, "only %zu of %zu emptied pools purged",
           npurged, emptied);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.pools_free_dirty, 0);
    CHECK_GE(st.pools_purged, npurged);
    CHECK_EQ(st.pools_free_purged, st.pools_free);
    check_stats_match_fake();

    /* Purged pools come back into use and work (the fake wrote junk over
     * them, so a stale free list would show). */
    fill_pools(&w, 7);
    /* b64[0] kept its old pattern, everything else is new. */
    CHECK_PATTERN(w.b64[0], 64, 0);
    for (size_t i = 1; i < D_N64; i++)
        CHECK_PATTERN(w.b64[i], 64, 7 + i);
    for (size_t i = 0; i < D_N256; i++)
        CHECK_PATTERN(w.b256[i], 256, 7 + 100000 + i);
    CHECK_EQ(fake.reserves, 1);
    test_fill(w.b64[0], 64, 7);
    /* Second round, different order. */
    free_all_but_one(&w, 7, 2);
    fill_pools(&w, 7);
    verify_all(&w, 7);
    for (size_t i = 0; i < D_N64; i++)
        arena_free(w.b64[i]);
    for (size_t i = 0; i < D_N256; i++)
        arena_free(w.b256[i]);
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
    check_stats_match_fake();
}

static void test_purge_eager(void **state)
{
    (void)state;
    assert_int_equal(child_run("purge_eager", child_purge_eager, NULL), 0);
}

static void child_purge_off(void *arg)
{
    (void)arg;
    setenv("ARENA_PURGE", "off", 1);
    tcache_off();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);
    static struct purge_work w;

    fill_pools(&w, 0);
    free_all_but_one(&w, 0, 1);
    CHECK_EQ(fake.purges, 0);
    test_fill(w.b64[0], 64, 3);
    fill_pools(&w, 3);
    free_all_but_one(&w, 3, 2);
    CHECK_EQ(fake.purges, 0);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_GE(st.pools_free_dirty, D_POOLS64 + D_POOLS256 - 3);
    check_stats_match_fake();

    size_t given = arena_release();
    CHECK_GT(fake.purges, 0);
    check_new_purges(&w);
    CHECK_EQ(fake_live_regions(), 1);
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.pools_free_dirty, 0);
    CHECK_EQ(st.pools_free_purged, st.pools_free);
    CHECK_EQ(st.pools_free, 63);    /* only b64[0]'s pool is in use */
    CHECK_EQ(given, fake.purged_bytes);
    CHECK_PATTERN(w.b64[0], 64, 3);
    check_stats_match_fake();

    /* Reuse after the purge. */
    fill_pools(&w, 11);
    CHECK_PATTERN(w.b64[0], 64, 3);
    for (size_t i = 1; i < D_N64; i++)
        CHECK_PATTERN(w.b64[i], 64, 11 + i);
    for (size_t i = 0; i < D_N256; i++)
        CHECK_PATTERN(w.b256[i], 256, 11 + 100000 + i);
    for (size_t i = 0; i < D_N64; i++)
        arena_free(w.b64[i]);
    for (size_t i = 0; i < D_N256; i++)
        arena_free(w.b256[i]);
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
    check_stats_match_fake();
}

static void test_purge_off(void **state)
{
    (void)state;
    assert_int_equal(child_run("purge_off", child_purge_off, NULL), 0);
}

/* ARENA_PURGE=N: dirty free pools stay at most N; contiguous ones are
 * purged together. */
static void child_purge_threshold(void *arg)
{
    (void)arg;
    enum { LIMIT = 8, POOLS = 24 };
    setenv("ARENA_PURGE", "8", 1);
    tcache_off();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);
    static void *b[POOLS * BLOCKS64_PER_POOL];
    size_t n = POOLS * BLOCKS64_PER_POOL;
    for (size_t i = 0; i < n; i++) {
        b[i] = arena_alloc(64);
        CHECK(b[i] != NULL);
        test_fill(b[i], 64, i);
    }
    CHECK_EQ(fake.reserves, 1);
    /* Keep one block (pool of b[0]); free the others pool by pool. */
    uint64_t max_dirty = 0;
    for (size_t i = 1; i < n; i++) {
        CHECK_PATTERN(b[i], 64, i);
        arena_free(b[i]);
        struct arena_stats st;
        st.size = sizeof st;
        arena_get_stats(&st);
        CHECKF(st.pools_free_dirty <= LIMIT, "%llu dirty free pools with "
               "ARENA_PURGE=%d", (unsigned long long)st.pools_free_dirty, LIMIT);
        if (st.pools_free_dirty > max_dirty)
            max_dirty = st.pools_free_dirty;
    }
    /* The policy lets pools stay dirty up to the limit before purging. */
    CHECK_GE(max_dirty, LIMIT - 1);
    CHECK_GT(fake.purges, 0);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECKF(fake.purges < st.pools_purged, "%llu purge calls for %llu pools: "
           "contiguous pools are not purged together",
           (unsigned long long)fake.purges, (unsigned long long)st.pools_purged);
    for (size_t k = 0; k < fake.npurge_log; k++)
        CHECKF(!range_holds(fake.purge_log[k].base, fake.purge_log[k].size, b[0]),
               "purge(%p, %zu) covers the live block %p",
               (void *)fake.purge_log[k].base, fake.purge_log[k].size, b[0]);
    CHECK_PATTERN(b[0], 64, 0);
    check_stats_match_fake();
    arena_free(b[0]);
}

static void test_purge_threshold(void **state)
{
    (void)state;
    assert_int_equal(child_run("purge_threshold", child_purge_threshold, NULL), 0);
}

/* Purge needs AR_BACKEND_AUTO_PURGE: without it only arena_release purges. */
static void child_purge_needs_flag(void *arg)
{
    (void)arg;
    setenv("ARENA_PURGE", "eager", 1);
    tcache_off();
    install(AR_BACKEND_RELEASE_ANY);
    static struct purge_work w;
    fill_pools(&w, 0);
    free_all_but_one(&w, 0, 5);
    CHECK_EQ(fake.purges, 0);
    arena_release();
    CHECK_GT(fake.purges, 0);
    check_new_purges(&w);
    CHECK_PATTERN(w.b64[0], 64, 0);
    arena_free(w.b64[0]);
}

static void test_purge_needs_flag(void **state)
{
    (void)state;
    assert_int_equal(child_run("purge_needs_flag", child_purge_needs_flag, NULL), 0);
}

/* ---- e. an alloc/free loop does not thrash the backend -----------------
 * Even rounds allocate exactly one arena's worth of 64-byte blocks; odd
 * rounds one pool more, so the round spills into a second arena and the
 * first one empties when everything is freed: without the empty-arena
 * cache every odd round would reserve and release an arena. */

static void child_no_thrash(void *arg)
{
    (void)arg;
    unsetenv("ARENA_ARENA_CACHE");
    tcache_default();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);
    uint64_t rounds = test_count("TEST_ROUNDS", 100000, 10000);
    enum { MAXN = BLOCKS64_PER_ARENA + BLOCKS64_PER_POOL };
    static void *b[MAXN];
    uint64_t step = rounds / 5 ? rounds / 5 : 1;
    for (uint64_t r = 0; r < rounds; r++) {
        if (r % step == 0)
            child_note("no_thrash: step %llu of 5: round %llu of %llu",
                       (unsigned long long)(r / step + 1),
                       (unsigned long long)r, (unsigned long long)rounds);
        size_t N = r % 2 ? MAXN : BLOCKS64_PER_ARENA;
        for (size_t i = 0; i < N; i++) {
            b[i] = arena_alloc(64);
            CHECK(b[i] != NULL);
            *(uint64_t *)b[i] = r;
        }
        if ((r / 2) % 2) {
            for (size_t i = 0; i < N; i++) {
                CHECK_EQ(*(uint64_t *)b[i], r);
                arena_free(b[i]);
            }
        } else {
            for (size_t i = N; i-- > 0;) {
                CHECK_EQ(*(uint64_t *)b[i], r);
                arena_free(b[i]);
            }
        }
        CHECKF(fake.reserves <= 2, "round %llu: %llu reserves",
               (unsigned long long)r, (unsigned long long)fake.reserves);
    }
    CHECK_LE(fake.reserves, 2);
    CHECK_LE(fake.releases, 1);
    check_stats_match_fake();
}

static void test_no_thrash(void **state)
{
    (void)state;
    assert_int_equal(child_run("no_thrash", child_no_thrash, NULL), 0);
}

/* ---- with the thread cache on ------------------------------------------- */

/* Freed blocks may wait in the thread cache, but arena_release() hands
 * them back: an arena whose blocks were all freed is released then. */
static void child_release_tcache(void *arg)
{
    (void)arg;
    setenv("ARENA_ARENA_CACHE", "0", 1);
    setenv("ARENA_PURGE", "off", 1);
    tcache_default();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);

    enum { MAX = 3 * BLOCKS64_PER_ARENA };
    static void *all[MAX];
    size_t n = 0;
    while (fake.reserves < 2) {
        CHECK(n < MAX);
        all[n] = arena_alloc(64);
        CHECK(all[n] != NULL);
        test_fill(all[n], 64, (uintptr_t)all[n]);
        n++;
    }
    uintptr_t a1 = fake.regions[0].base;
    for (size_t i = 0; i < n; i++) {
        if (arena_of(all[i]) != a1)
            continue;
        CHECK_PATTERN(all[i], 64, (uintptr_t)all[i]);
        arena_free(all[i]);
        all[i] = NULL;
    }
    CHECK_LE(fake.releases, 1);
    arena_release();
    CHECKF(!fake.regions[0].live, "the first arena is still held after all "
           "its blocks were freed and arena_release() ran");
    CHECK(fake.regions[1].live);
    check_stats_match_fake();
    for (size_t i = 0; i < n; i++) {
        if (!all[i])
            continue;
        CHECK_PATTERN(all[i], 64, (uintptr_t)all[i]);
        arena_free(all[i]);
    }
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
    check_stats_match_fake();
}

static void test_release_tcache(void **state)
{
    (void)state;
    assert_int_equal(child_run("release_tcache", child_release_tcache, NULL), 0);
}

/* Eager purge with the thread cache on: a pool whose blocks wait in the
 * cache is not empty and must not be purged (the fake overwrites purged
 * pools, so a purged cached block would break the cache's list). */
static void check_purges_since(size_t *checked, unsigned char **b,
                               const size_t *size, size_t n, int round)
{
    for (; *checked < fake.npurge_log; (*checked)++) {
        const struct fake_purge *pg = &fake.purge_log[*checked];
        for (size_t j = 0; j < n; j++)
            CHECKF(!b[j] || !range_holds(pg->base, pg->size, b[j]),
                   "round %d: purge(%p, %zu) covers live block %p (%zu bytes)",
                   round, (void *)pg->base, pg->size, (void *)b[j], size[j]);
    }
}

static void child_purge_tcache(void *arg)
{
    (void)arg;
    setenv("ARENA_PURGE", "eager", 1);
    tcache_default();
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);
    enum { N = 3000 };
    static unsigned char *b[N];
    static size_t size[N];
    static uint64_t tag[N];
    uint64_t rng = 99, serial = 0;
    size_t checked = 0;
    for (int round = 0; round < 30; round++) {
        for (size_t i = 0; i < N; i++) {
            if (b[i])
                continue;
            static const size_t sizes[] = { 16, 48, 64, 256, 512 };
            size[i] = sizes[test_rand(&rng) % 5];
            tag[i] = ++serial;
            b[i] = arena_alloc(size[i]);
            CHECK(b[i] != NULL);
            test_fill(b[i], size[i], tag[i]);
            check_purges_since(&checked, b, size, N, round);
        }
        /* No block was handed out twice. */
        for (size_t i = 0; i < N; i++)
            CHECK_PATTERN(b[i], size[i], tag[i]);
        /* Free most, keep a scattered few. */
        for (size_t i = 0; i < N; i++) {
            if (test_rand(&rng) % 10 == 0)
                continue;
            CHECK_PATTERN(b[i], size[i], tag[i]);
            arena_free(b[i]);
            b[i] = NULL;
            check_purges_since(&checked, b, size, N, round);
        }
        if (round % 10 == 9) {
            arena_release();
            check_purges_since(&checked, b, size, N, round);
        }
    }
    CHECK_GT(fake.purges, 0);
    for (size_t i = 0; i < N; i++) {
        if (!b[i])
            continue;
        CHECK_PATTERN(b[i], size[i], tag[i]);
        arena_free(b[i]);
    }
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
    check_stats_match_fake();
}

static void test_purge_tcache(void **state)
{
    (void)state;
    assert_int_equal(child_run("purge_tcache", child_purge_tcache, NULL), 0);
}

/* ---- the contract of ar_backend_use ------------------------------------- */

static void child_backend_use_busy(void *arg)
{
    (void)arg;
    install(AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE);
    void *p = arena_alloc(8);
    CHECK(p != NULL);
    CHECK(fake_region_of(p) >= 0);
    CHECK_EQ(ar_backend_use(&ar_backend_mmap), EBUSY);
    CHECK_EQ(arena_set_backend("mmap"), EBUSY);
    void *q = arena_alloc(8);
    CHECK(fake_region_of(q) >= 0);
    arena_free(p);
    arena_free(q);
}

static void test_backend_use_busy(void **state)
{
    (void)state;
    assert_int_equal(child_run("backend_use_busy", child_backend_use_busy, NULL), 0);
}

/* ---- the registry forgets an arena before the backend releases it ------
 * Otherwise, between the munmap and the registry update, another thread's
 * mmap may get the range, and a free of its memory would be taken for one
 * of libarena's blocks.  This backend forwards to the mmap one and checks,
 * at every release, that no arena of the range is still in the registry. */

static unsigned long long checked_releases, stale_entries;

static int regcheck_release(void *ctx, void *p, size_t size)
{
    for (size_t off = 0; off < size; off += ARENA_ARENA_SIZE) {
        const char *a = (const char *)p + off;
        struct ar_arena *desc = ar_registry_arena(a);
        if (desc != NULL || ar_registry_map(a) != 0 || ar_registry_map(a + ARENA_ARENA_SIZE - 1) != 0)
            stale_entries++;
    }
    checked_releases++;
    return ar_backend_mmap.release(ctx, p, size);
}

static void child_registry_before_release(void *arg)
{
    (void)arg;
    static struct ar_backend regcheck;
    regcheck = ar_backend_mmap;
    regcheck.name = "regcheck";
    regcheck.release = regcheck_release;    /* the rest is the mmap backend's */
    setenv("ARENA_ARENA_CACHE", "0", 1);
    CHECK_EQ(ar_backend_use(&regcheck), 0);

    enum { N = 3 * BLOCKS64_PER_ARENA };
    static void *b[N];
    for (int round = 0; round < 3; round++) {
        /* Arenas of a thread heap, emptied and released. */
        for (size_t i = 0; i < N; i++)
            CHECK((b[i] = arena_alloc(64)) != NULL);
        for (size_t i = 0; i < N; i++)
            arena_free(b[i]);
        /* A huge block (a reservation of whole arenas), freed. */
        void *huge = arena_alloc(3 * ARENA_ARENA_SIZE);
        CHECK(huge != NULL);
        arena_free(huge);
        /* A heap's arenas, small and large blocks, given back at its destroy. */
        struct arena_heap *h = arena_heap_new();
        CHECK(h != NULL);
        for (size_t i = 0; i < N / 4; i++)
            CHECK(arena_heap_alloc(h, 16 + (i % 32) * 16) != NULL);
        CHECK(arena_heap_alloc(h, 40000) != NULL);
        CHECK(arena_heap_alloc(h, 2 * ARENA_ARENA_SIZE) != NULL);
        arena_heap_destroy(h);
        arena_release();
    }
    child_note("registry before release: %llu releases checked, %llu stale registry entries",
               checked_releases, stale_entries);
    CHECK_GE(checked_releases, 9);
    CHECK_EQ(stale_entries, 0);
}

static void test_registry_before_release(void **state)
{
    (void)state;
    assert_int_equal(child_run("registry_before_release", child_registry_before_release, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_when_empty),
        cmocka_unit_test(test_arena_cache),
        cmocka_unit_test(test_reserve_failure),
        cmocka_unit_test(test_purge_eager),
        cmocka_unit_test(test_purge_off),
        cmocka_unit_test(test_purge_threshold),
        cmocka_unit_test(test_purge_needs_flag),
        cmocka_unit_test(test_no_thrash),
        cmocka_unit_test(test_release_tcache),
        cmocka_unit_test(test_purge_tcache),
        cmocka_unit_test(test_backend_use_busy),
        cmocka_unit_test(test_registry_before_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
