/*
 * Steady state against the counting fake backend: the hold policy
 * (src/hold.c, src/arena.c) gives back what nothing reuses and stops
 * calling the backend for memory a program keeps reusing.
 *
 *   a. burst: a burst over many arenas that nothing reuses goes back
 *      right after its last free, down to the policy's floor (one empty
 *      arena kept by the heap, one in the global cache) and the arenas
 *      whose pools are still held: by the current pool, or by blocks
 *      waiting in the thread cache (freed in random order, the cache's
 *      last 128 blocks keep all 16 arenas: bounded by the cache, checked);
 *   b. rounds: the same batch allocated and freed six times: round 1's
 *      free gives back, round 2 may reserve again (the policy learns),
 *      rounds 3..6 make no backend call at all, and from round 2 on no
 *      free phase gives back what the next round takes again; contents
 *      intact;
 *   c. decay: after (b), many ARENA_DECAY_MS periods on the fake clock,
 *      then ordinary frees and allocations: what was kept goes back;
 *   d. churn: one thread, a working set of random sizes, free-one /
 *      allocate-one: after a warm-up, almost no backend call;
 *   e. fixed settings (ARENA_PURGE=N, ARENA_ARENA_CACHE=N) are bounds that
 *      learning does not move.
 *
 * The hold decays by a coarse clock; every scenario here replaces it with
 * a fake one (ar_clock_override) so that the time that passes is the
 * test's decision, not the machine's speed (valgrind, sanitizers).
 *
 *   TEST_CHURN_STEPS=n   steps of (d) (default 1,000,000; 200,000 under
 *                        valgrind or a sanitizer)
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "backend.h"
#include "child.h"
#include "fake_backend.h"
#include "internal.h"

#define FLAGS (AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE)
#define BLOCKS64_PER_ARENA (ARENA_ARENA_SIZE / 64)

/* ---- the fake clock ------------------------------------------------------ */

static _Atomic uint64_t clock_ms = 1000000;

static uint64_t fake_clock(void)
{
    return atomic_load_explicit(&clock_ms, memory_order_relaxed);
}

static void clock_advance(uint64_t ms)
{
    atomic_fetch_add_explicit(&clock_ms, ms, memory_order_relaxed);
}

static void install(void)
{
    ar_clock_override(fake_clock);
    int rc = fake_install(FLAGS);
    CHECKF(rc == 0, "ar_backend_use(fake) = %d", rc);
}

/* Every backend call so far. */
static uint64_t backend_calls(void)
{
    return fake.reserves + fake.releases + fake.purges;
}

static void check_stats_match_fake(const char *when)
{
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECKF(st.arenas_reserved == fake.reserves && st.arenas_released == fake.releases &&
               st.arenas_live == fake_live_regions() && st.bytes_purged == fake.purged_bytes,
           "%s: stats say %" PRIu64 " reserved, %" PRIu64 " released, %" PRIu64 " live, %" PRIu64
           " bytes purged; the backend saw %" PRIu64 ", %" PRIu64 ", %zu, %" PRIu64,
           when, st.arenas_reserved, st.arenas_released, st.arenas_live, st.bytes_purged,
           fake.reserves, fake.releases, fake_live_regions(), fake.purged_bytes);
    CHECK(st.pools_total == st.pools_used + st.pools_full + st.pools_empty + st.pools_large +
                             st.pools_free);
    CHECK(st.pools_free == st.pools_free_dirty + st.pools_free_purged);
}

static uint64_t pools_in_use(void)
{
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    return st.pools_used + st.pools_full + st.pools_empty;
}

static void shuffle(size_t *v, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(test_rand(rng) % i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---- a. a burst nothing reuses goes back at once ------------------------- */

struct burst_case {
    const char *name;
    int tcache;                 /* leave the thread cache on */
    int random_order;           /* free in random order, else in allocation order */
};

enum { BURST_ARENAS = 16, BURST_N = BURST_ARENAS * BLOCKS64_PER_ARENA };

static void child_burst(void *arg)
{
    const struct burst_case *bc = arg;
    if (!bc->tcache)
        setenv("ARENA_TCACHE", "0", 1);
    install();
    static void *b[BURST_N];
    static size_t order[BURST_N];
    for (size_t i = 0; i < BURST_N; i++) {
        b[i] = arena_alloc(64);
        CHECK(b[i] != NULL);
        test_fill(b[i], 64, i);
        order[i] = i;
    }
    CHECK_GE(fake.reserves, BURST_ARENAS);
    CHECK_EQ(fake.releases, 0);
    uint64_t rng = 0xb0b;
    if (bc->random_order)
        shuffle(order, BURST_N, &rng);
    for (size_t k = 0; k < BURST_N; k++) {
        size_t i = order[k];
        CHECK_PATTERN(b[i], 64, i);
        arena_free(b[i]);
    }
    /* Right after the last free, with no arena_release() and no clock
     * tick: the heap keeps one empty arena (empty_budget: 1 + nothing
     * learned), the global cache one more (cache_budget: max(1, 0)), and
     * an arena stays while a pool of it is held (the current pool keeps
     * its heap's hold; with the thread cache on, blocks in the cache keep
     * theirs). */
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    uint64_t held = st.pools_used + st.pools_full + st.pools_empty;
    child_note("burst (%s): %" PRIu64 " arenas reserved, %" PRIu64 " released, %zu live; "
               "%" PRIu64 " pools held, %" PRIu64 " blocks cached, %" PRIu64 " purge calls",
               bc->name, fake.reserves, fake.releases, fake_live_regions(), held,
               st.blocks_cached, fake.purges);
    CHECK_EQ(st.blocks_live, 0);
    CHECKF(fake_live_regions() <= 2 + held, "%zu arenas still held after the burst went, "
           "%" PRIu64 " pools in use", fake_live_regions(), held);
    /* A pool is held only as the current pool or for a block in the
     * thread cache (at most 128 of 64 bytes). */
    CHECK_LE(held, 1 + st.blocks_cached);
    CHECK_LE(st.blocks_cached, 128);
    if (!bc->tcache)
        CHECK_LE(held, 1);              /* only the current pool */
    else if (!bc->random_order)
        CHECK_LE(held, 3);              /* the cache holds the last blocks freed */
    /* Free pools beyond the floor were purged. */
    CHECK_LE(st.pools_free_dirty, 256);
    CHECK_GE(fake.releases + 2 + held, fake.reserves);
    check_stats_match_fake("after the burst");
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
    check_stats_match_fake("after arena_release");
}

static void test_burst(void **state)
{
    (void)state;
    static const struct burst_case cases[] = {
        { "no thread cache, allocation order", 0, 0 },
        { "no thread cache, random order", 0, 1 },
        { "thread cache, allocation order", 1, 0 },
        /* The cache's last 64..128 blocks are scattered: each keeps its
         * pool, and so its arena (bounded by the cache, not the burst). */
        { "thread cache, random order", 1, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(child_run(cases[i].name, child_burst, (void *)&cases[i]), 0);
}

/* ---- b. rounds of the same batch ------------------------------------------ */

enum { ROUND_N = 40000, ROUNDS = 6 };

/* The same batch every round: ROUND_N blocks of fixed sizes (about 4 to
 * 5 MiB, 18 to 20 arenas), freed in a new random order each round. */
struct batch {
    void *p[ROUND_N];
    uint16_t size[ROUND_N];
    size_t order[ROUND_N];
    uint64_t rng;
};

struct rounds_case {
    const char *name;
    int one_size;               /* 100-byte blocks only, else 16..512 */
    int tcache;                 /* thread cache on (the default) */
};

static void batch_init(struct batch *w, const struct rounds_case *rc)
{
    w->rng = 0x5eed;
    for (size_t i = 0; i < ROUND_N; i++) {
        uint64_t r = test_rand(&w->rng);
        /* mostly small: 3 in 4 are 16..128 bytes */
        w->size[i] = (uint16_t)(r % 4 == 0 ? 16 + r / 4 % 497 : 16 + r / 4 % 113);
        if (rc->one_size)
            w->size[i] = 100;
        w->order[i] = i;
    }
}

static void batch_alloc(struct batch *w, unsigned round)
{
    for (size_t i = 0; i < ROUND_N; i++) {
        w->p[i] = arena_alloc(w->size[i]);
        CHECK(w->p[i] != NULL);
        test_fill(w->p[i], w->size[i], (uint64_t)round << 32 | i);
    }
}

static void batch_free(struct batch *w, unsigned round)
{
    shuffle(w->order, ROUND_N, &w->rng);
    for (size_t k = 0; k < ROUND_N; k++) {
        size_t i = w->order[k];
        CHECK_PATTERN(w->p[i], w->size[i], (uint64_t)round << 32 | i);
        arena_free(w->p[i]);
        w->p[i] = NULL;
    }
}

struct counts {
    uint64_t reserves, releases, purges;
};

static struct counts counts_now(void)
{
    return (struct counts){ fake.reserves, fake.releases, fake.purges };
}

/* The ARENA_PURGE_MIN default: dirty free pools a heap keeps at least. */
#define PURGE_FLOOR 256u

static void rounds_setup(const struct rounds_case *rc)
{
    if (!rc->tcache)
        setenv("ARENA_TCACHE", "0", 1);
    install();
}

/* Rounds 1..ROUNDS under the default (auto) policy, with the fake clock
 * standing still; returns with the policy trained. */
static void run_rounds(struct batch *w, const struct rounds_case *rc)
{
    struct counts c[ROUNDS + 1];
    c[0] = counts_now();
    batch_init(w, rc);
    for (unsigned r = 1; r <= ROUNDS; r++) {
        batch_alloc(w, r);
        struct counts mid = counts_now();
        batch_free(w, r);
        c[r] = counts_now();
        struct arena_stats st;
        st.size = sizeof st;
        arena_get_stats(&st);
        child_note("  round %u: allocation: %" PRIu64 " reserves; free: %" PRIu64
                   " releases, %" PRIu64 " purges; %zu arenas live, %" PRIu64
                   " dirty free pools, %" PRIu64 " pools held, %" PRIu64 " blocks cached",
                   r, mid.reserves - c[r - 1].reserves, c[r].releases - mid.releases,
                   c[r].purges - mid.purges, fake_live_regions(), st.pools_free_dirty,
                   st.pools_used + st.pools_full + st.pools_empty, st.blocks_cached);
        CHECK_EQ(st.blocks_live, 0);
        check_stats_match_fake("after a round");
        /* Round 2's allocation taught the policy what comes back: from
         * then on a free phase purges and releases nothing (a purge there
         * makes no call in the next round, but faults its pages in again). */
        if (r >= 2)
            CHECKF(c[r].purges == mid.purges && c[r].releases == mid.releases,
                   "round %u's free gave back memory the next round takes again: "
                   "%" PRIu64 " purges, %" PRIu64 " releases", r, c[r].purges - mid.purges,
                   c[r].releases - mid.releases);
        if (r == 1) {
            /* Round 1's free gave back everything above the floor: free
             * pools beyond it were purged, and (with every block back in
             * its pool) the empty arenas beyond one in the heap and one
             * in the cache were released. */
            CHECKF(st.pools_free_dirty <= PURGE_FLOOR, "round 1 left %" PRIu64
                   " dirty free pools", st.pools_free_dirty);
            CHECK_GT(c[1].purges + c[1].releases, 0);
            if (!rc->tcache) {
                uint64_t held = st.pools_used + st.pools_full + st.pools_empty;
                CHECKF(fake_live_regions() <= 2 + held, "round 1 left %zu arenas, %" PRIu64
                       " pools held", fake_live_regions(), held);
            }
        }
    }
    /* From round 3 on, the backend is not called at all. */
    for (unsigned r = 3; r <= ROUNDS; r++)
        CHECKF(c[r].reserves == c[2].reserves && c[r].releases == c[2].releases &&
                   c[r].purges == c[2].purges,
               "round %u called the backend: %" PRIu64 " reserves, %" PRIu64 " releases, %"
               PRIu64 " purges since round 2", r, c[r].reserves - c[2].reserves,
               c[r].releases - c[2].releases, c[r].purges - c[2].purges);
}

static const struct rounds_case rounds_cases[] = {
    { "16..512 bytes, thread cache on", 0, 1 },
    { "100 bytes, no thread cache", 1, 0 },
};

static void child_rounds(void *arg)
{
    const struct rounds_case *rc = arg;
    rounds_setup(rc);
    static struct batch w;
    child_note("rounds (%s):", rc->name);
    run_rounds(&w, rc);
}

static void test_rounds(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rounds_cases / sizeof rounds_cases[0]; i++)
        assert_int_equal(child_run(rounds_cases[i].name, child_rounds,
                                   (void *)&rounds_cases[i]), 0);
}

/* ---- c. what was learned decays ------------------------------------------- */

/* The calling thread's heap: dirty free pools and the learned hold. */
static void heap_hold(unsigned *dirty, unsigned *learned)
{
    struct ar_heap *h = ar_tls_heap;
    CHECK(h != &ar_heap_none);
    pthread_mutex_lock(&h->arenas.lock);
    *dirty = h->arenas.dirty_pools;
    *learned = h->arenas.pools_hold.learned;
    pthread_mutex_unlock(&h->arenas.lock);
}

/* Ordinary traffic after a pause: 16 pools' worth of 64-byte blocks
 * allocated and freed, so that pools go back to their arenas (the thread
 * cache keeps at most 128 of them). */
static void a_little_traffic(void)
{
    enum { N = 16 * (ARENA_POOL_SIZE / 64) };
    static void *b[N];
    for (size_t i = 0; i < N; i++) {
        b[i] = arena_alloc(64);
        CHECK(b[i] != NULL);
        test_fill(b[i], 64, i);
    }
    for (size_t i = 0; i < N; i++) {
        CHECK_PATTERN(b[i], 64, i);
        arena_free(b[i]);
    }
}

static void child_decay(void *arg)
{
    const struct rounds_case *rc = arg;
    rounds_setup(rc);
    static struct batch w;
    child_note("decay (%s):", rc->name);
    run_rounds(&w, rc);

    unsigned dirty0, learned0, dirty, learned;
    heap_hold(&dirty0, &learned0);
    struct counts c0 = counts_now();
    /* The rounds taught the heap to keep more than the floor, and it does. */
    CHECK_GT(learned0, 0);
    CHECK_GT(dirty0, PURGE_FLOOR);

    /* One decay period: the hold halves, and the next pools that come
     * back find a budget of floor + learned + learned / 8 with the
     * halved learned. */
    clock_advance(ar_options.decay_ms);
    a_little_traffic();
    heap_hold(&dirty, &learned);
    struct counts c1 = counts_now();
    unsigned budget = PURGE_FLOOR + learned + learned / 8;
    child_note("  learned %u pools, %u dirty; one period later: learned %u, %u dirty, %" PRIu64
               " purges", learned0, dirty0, learned, dirty, c1.purges - c0.purges);
    CHECK_LE(learned, learned0 / 2);
    CHECK_LE(dirty, budget);
    if (dirty0 > PURGE_FLOOR + learned0 / 2 + learned0 / 16)
        CHECK_GT(c1.purges, c0.purges);

    /* Many periods with no reuse: everything learned is gone, and the
     * next slow paths give back down to the floor. */
    clock_advance(40 * (uint64_t)ar_options.decay_ms);
    a_little_traffic();
    heap_hold(&dirty, &learned);
    struct counts c2 = counts_now();
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    child_note("  40 periods later: learned %u, %u dirty in the heap, %" PRIu64
               " dirty in all; %" PRIu64 " purges, %" PRIu64 " releases; %zu arenas live, %"
               PRIu64 " of them empty", learned, dirty, st.pools_free_dirty,
               c2.purges - c1.purges, c2.releases - c1.releases, fake_live_regions(),
               st.arenas_empty);
    CHECK_EQ(learned, 0);
    /* What the rounds made the heap keep has gone back by now. */
    CHECK_GT(c2.purges + c2.releases, c0.purges + c0.releases);
    CHECK_LE(dirty, PURGE_FLOOR);
    /* The cache's empty arenas count too; it keeps one at most now. */
    CHECK_LE(st.pools_free_dirty, PURGE_FLOOR + 64);
    CHECK_EQ(st.blocks_live, 0);
    check_stats_match_fake("after decay");

    /* The program comes back: its batch still works, contents intact. */
    batch_alloc(&w, ROUNDS + 1);
    batch_free(&w, ROUNDS + 1);
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
    check_stats_match_fake("after arena_release");
}

static void test_decay(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rounds_cases / sizeof rounds_cases[0]; i++)
        assert_int_equal(child_run(rounds_cases[i].name, child_decay,
                                   (void *)&rounds_cases[i]), 0);
}

/* ---- d. steady churn ---------------------------------------------------------- */

/* One thread, SLOTS live blocks of 8..512 bytes (about 5 MiB, 22 arenas),
 * each step frees a random one and allocates a new random size in its
 * place.  The fake clock moves 1 ms every 100 steps, so the measured part
 * spans several decay periods (the hold's decay must not make a steady
 * program pay again).
 *
 * Why few calls: the live set's size is constant, so after the warm-up the
 * heap holds the pools and arenas it needs; the backend is called only
 * when a pool becomes entirely free and the heap's dirty pools exceed its
 * budget (at least 256), or an arena empties beyond the heap's one (no
 * arena empties while 20,000 random blocks are spread over it), or a
 * fresh arena is needed.  With random frees a pool rarely empties at all,
 * so the bound of 50 calls over 700,000 steps leaves a wide margin. */
static void child_churn(void *arg)
{
    (void)arg;
    install();
    enum { SLOTS = 20000 };
    static void *p[SLOTS];
    static uint16_t sz[SLOTS];
    static uint64_t tag[SLOTS];
    uint64_t steps = test_count("TEST_CHURN_STEPS", 1000000, 200000);
    uint64_t warm = steps * 3 / 10;
    uint64_t rng = 77, serial = 0;
    for (size_t i = 0; i < SLOTS; i++) {
        sz[i] = (uint16_t)(8 + test_rand(&rng) % 505);
        p[i] = arena_alloc(sz[i]);
        CHECK(p[i] != NULL);
        tag[i] = serial++;
        test_fill(p[i], 8, tag[i]);
    }
    struct counts c0 = counts_now();
    for (uint64_t s = 0; s < steps; s++) {
        if (s == warm)
            c0 = counts_now();
        if (s % 100 == 0)
            clock_advance(1);
        size_t i = (size_t)(test_rand(&rng) % SLOTS);
        CHECK_PATTERN(p[i], 8, tag[i]);
        arena_free(p[i]);
        sz[i] = (uint16_t)(8 + test_rand(&rng) % 505);
        p[i] = arena_alloc(sz[i]);
        CHECK(p[i] != NULL);
        tag[i] = serial++;
        test_fill(p[i], 8, tag[i]);
    }
    struct counts c1 = counts_now();
    uint64_t calls = (c1.reserves - c0.reserves) + (c1.releases - c0.releases) +
                     (c1.purges - c0.purges);
    child_note("churn: %" PRIu64 " steps, %d slots; %" PRIu64 " backend calls after a warm-up "
               "of %" PRIu64 " steps (%" PRIu64 " reserves, %" PRIu64 " releases, %" PRIu64
               " purges); %" PRIu64 " calls in all; %zu arenas live", steps, (int)SLOTS, calls,
               warm, c1.reserves - c0.reserves, c1.releases - c0.releases,
               c1.purges - c0.purges, backend_calls(), fake_live_regions());
    CHECK_LE(calls, 50);
    for (size_t i = 0; i < SLOTS; i++) {
        CHECK_PATTERN(p[i], 8, tag[i]);
        arena_free(p[i]);
    }
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    check_stats_match_fake("after churn");
}

static void test_churn(void **state)
{
    (void)state;
    assert_int_equal(child_run("churn", child_churn, NULL), 0);
}

/* ---- e. fixed settings are bounds ------------------------------------------------ */

/* ARENA_PURGE=8: the heap's dirty free pools are at most 8 after every
 * free, in every round: learning (which would keep 1,000 after round 2
 * under auto) does not lift a fixed budget; all free pools of the process
 * (the global cache's too) stay within it, and each round purges again. */
static void child_fixed_purge(void *arg)
{
    (void)arg;
    enum { LIMIT = 8 };
    setenv("ARENA_PURGE", "8", 1);
    static const struct rounds_case rc = { "ARENA_PURGE=8", 1, 0 };
    rounds_setup(&rc);
    static struct batch w;
    batch_init(&w, &rc);
    for (unsigned r = 1; r <= 4; r++) {
        batch_alloc(&w, r);
        struct counts c0 = counts_now();
        unsigned max_heap = 0;
        uint64_t max_all = 0;
        shuffle(w.order, ROUND_N, &w.rng);
        for (size_t k = 0; k < ROUND_N; k++) {
            size_t i = w.order[k];
            CHECK_PATTERN(w.p[i], w.size[i], (uint64_t)r << 32 | i);
            arena_free(w.p[i]);
            unsigned dirty, learned;
            heap_hold(&dirty, &learned);
            CHECKF(dirty <= LIMIT, "round %u: %u dirty free pools in the heap with "
                   "ARENA_PURGE=%d", r, dirty, LIMIT);
            if (dirty > max_heap)
                max_heap = dirty;
            if (k % 64 == 0 || k == ROUND_N - 1) {
                struct arena_stats st;
                st.size = sizeof st;
                arena_get_stats(&st);
                CHECKF(st.pools_free_dirty <= LIMIT, "round %u: %" PRIu64 " dirty free "
                       "pools with ARENA_PURGE=%d", r, st.pools_free_dirty, LIMIT);
                if (st.pools_free_dirty > max_all)
                    max_all = st.pools_free_dirty;
            }
        }
        struct counts c1 = counts_now();
        child_note("  ARENA_PURGE=8, round %u: at most %u dirty free pools in the heap, %"
                   PRIu64 " in all; %" PRIu64 " purges", r, max_heap, max_all,
                   c1.purges - c0.purges);
        CHECK_GT(c1.purges, c0.purges);
        CHECK_GE(max_heap, LIMIT / 2);      /* the budget is used, not 0 */
    }
    check_stats_match_fake("after the rounds");
}

/* ARENA_ARENA_CACHE=2: at most 2 empty arenas held after every free (the
 * heap keeps none of its own then; the global cache two), in every round:
 * the cache does not learn, so each round gives back again. */
static void child_fixed_cache(void *arg)
{
    (void)arg;
    enum { LIMIT = 2, ARENAS = 10, PER_ARENA = ARENA_ARENA_SIZE / 512, N = ARENAS * PER_ARENA };
    setenv("ARENA_ARENA_CACHE", "2", 1);
    setenv("ARENA_TCACHE", "0", 1);
    install();
    static void *b[N];
    static size_t order[N];
    uint64_t rng = 4242;
    for (size_t i = 0; i < N; i++)
        order[i] = i;
    for (unsigned r = 1; r <= 4; r++) {
        struct counts c0 = counts_now();
        for (size_t i = 0; i < N; i++) {
            b[i] = arena_alloc(512);
            CHECK(b[i] != NULL);
            test_fill(b[i], 512, (uint64_t)r << 32 | i);
        }
        struct counts c1 = counts_now();
        shuffle(order, N, &rng);
        uint64_t max_empty = 0;
        for (size_t k = 0; k < N; k++) {
            size_t i = order[k];
            CHECK_PATTERN(b[i], 512, (uint64_t)r << 32 | i);
            arena_free(b[i]);
            struct arena_stats st;
            st.size = sizeof st;
            arena_get_stats(&st);
            CHECKF(st.arenas_empty <= LIMIT, "round %u: %" PRIu64 " empty arenas held with "
                   "ARENA_ARENA_CACHE=%d", r, st.arenas_empty, LIMIT);
            if (st.arenas_empty > max_empty)
                max_empty = st.arenas_empty;
        }
        struct counts c2 = counts_now();
        uint64_t held = pools_in_use();
        child_note("  ARENA_ARENA_CACHE=2, round %u: %" PRIu64 " reserves, %" PRIu64
                   " releases; at most %" PRIu64 " empty arenas; %zu live at the end",
                   r, c1.reserves - c0.reserves, c2.releases - c1.releases, max_empty,
                   fake_live_regions());
        CHECK_EQ(max_empty, LIMIT);                   /* the cache is used */
        CHECK_LE(fake_live_regions(), LIMIT + held);
        /* Every round gives back all but the cache, and so pays again. */
        CHECK_GE(c2.releases - c1.releases, ARENAS - LIMIT - held);
        if (r > 1)
            CHECK_GE(c1.reserves - c0.reserves, ARENAS - LIMIT - held);
    }
    check_stats_match_fake("after the rounds");
}

static void test_fixed_purge(void **state)
{
    (void)state;
    assert_int_equal(child_run("fixed purge", child_fixed_purge, NULL), 0);
}

static void test_fixed_cache(void **state)
{
    (void)state;
    assert_int_equal(child_run("fixed cache", child_fixed_cache, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst),
        cmocka_unit_test(test_rounds),
        cmocka_unit_test(test_decay),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_fixed_purge),
        cmocka_unit_test(test_fixed_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
