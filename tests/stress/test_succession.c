/*
 * Threads that come and go, and threads that stay: what the per-heap core
 * promises about them.
 *
 *   no_global_lock  two threads churn private working sets: after the
 *                   warm-up the global lock is not taken (locks_global);
 *   reuse           a thread exits with blocks live; the next new thread
 *                   takes its dead heap and allocates from its partly
 *                   used pools, with no new arena;
 *   adopt_live      a live thread frees a dead thread's blocks: it adopts
 *                   the dead heap (heaps_adopted), and afterwards every
 *                   pool and arena goes back;
 *   adopt_fresh     the same from a thread that never allocated: it takes
 *                   a dead heap on its first free and adopts the other;
 *   larson          generations of threads, each inheriting the previous
 *                   generation's live blocks, freeing and replacing them:
 *                   mapped arenas do not grow with the generations,
 *                   nothing is lost, the invariants hold (ar_validate);
 *   borrow          with every reserve failing after the first arena, a
 *                   second thread borrows pools from the first thread's
 *                   arena, and they go back there;
 *   validate_concurrent  ar_validate in one thread while another takes
 *                   and returns pools: no invariant it checks may be
 *                   broken by a moment of the other thread's work.
 *
 * Each runs in a forked child.  Scenarios whose backend calls come from
 * one thread at a time use the counting fake backend; the others the mmap
 * backend and arena_get_stats.
 *
 *   SUCC_STEPS=n       churn steps per thread in no_global_lock
 *                      (default 400,000, less under sanitizers/valgrind)
 *   SUCC_GENERATIONS=n generations in larson (default 90)
 *   SUCC_ROUNDS=n      replacements per thread and generation in larson
 *                      (default 20,000, less under sanitizers/valgrind)
 *   SUCC_CHURN_ROUNDS=n rounds of the pool-churning thread in
 *                      validate_concurrent (default 200,000, less ditto)
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

#include "backend.h"
#include "fake_backend.h"
#include "internal.h"

#define FLAGS (AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE)
#define POOL_MASK (~(uintptr_t)(ARENA_POOL_SIZE - 1))

static void install_fake(void)
{
    int rc = fake_install(FLAGS);
    CHECKF(rc == 0, "ar_backend_use(fake) = %d", rc);
}

static struct arena_stats stats(void)
{
    struct arena_stats s;
    s.size = sizeof s;
    arena_get_stats(&s);
    return s;
}

static uint64_t pools_held(const struct arena_stats *s)
{
    return s->pools_used + s->pools_full + s->pools_empty;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    stress_thread_start(&t, fn, arg);
    stress_thread_join(t);
}

/* ---- no global lock in steady state --------------------------------------- */

struct churner {
    unsigned id;
    uint64_t steps, warm;
    pthread_barrier_t *barrier;
    uint64_t locks_before, locks_after;     /* thread 0 reads them */
};

enum { CHURN_SLOTS = 6000 };

static void *churn_main(void *arg)
{
    struct churner *c = arg;
    static struct blk slots[2][CHURN_SLOTS];
    struct blk *s = slots[c->id];
    uint64_t rng = 0xC0FFEEu + c->id, serial = 0;
    for (size_t i = 0; i < CHURN_SLOTS; i++)
        s[i] = blk_alloc(8 + test_rand(&rng) % 505, stress_tag(c->id, serial++));
    for (uint64_t k = 0; k < c->steps; k++) {
        if (k == c->warm) {
            /* Both threads are past their warm-up before the count
             * starts, and both still churn until it ends. */
            pthread_barrier_wait(c->barrier);
            if (c->id == 0)
                c->locks_before = stats().locks_global;
            pthread_barrier_wait(c->barrier);
        }
        size_t i = (size_t)(test_rand(&rng) % CHURN_SLOTS);
        blk_free(s[i]);
        s[i] = blk_alloc(8 + test_rand(&rng) % 505, stress_tag(c->id, serial++));
    }
    pthread_barrier_wait(c->barrier);
    if (c->id == 0)
        c->locks_after = stats().locks_global;
    pthread_barrier_wait(c->barrier);
    for (size_t i = 0; i < CHURN_SLOTS; i++)
        blk_free(s[i]);
    return NULL;
}

static void child_no_global_lock(void *arg)
{
    (void)arg;
    uint64_t steps = stress_count("SUCC_STEPS", 400000, 20, 4);
    pthread_barrier_t barrier;
    CHECK(pthread_barrier_init(&barrier, NULL, 2) == 0);
    struct churner c[2];
    pthread_t t[2];
    for (unsigned i = 0; i < 2; i++) {
        c[i] = (struct churner){ .id = i, .steps = steps, .warm = steps / 4, .barrier = &barrier };
        stress_thread_start(&t[i], churn_main, &c[i]);
    }
    for (unsigned i = 0; i < 2; i++)
        stress_thread_join(t[i]);
    pthread_barrier_destroy(&barrier);
    struct arena_stats s = stats();
    uint64_t grew = c[0].locks_after - c[0].locks_before;
    child_note("no_global_lock: 2 threads x %" PRIu64 " steps over %d live blocks each: "
               "locks_global %" PRIu64 " after the warm-up, %" PRIu64 " over the last %" PRIu64
               " steps; %" PRIu64 " in all, %" PRIu64 " arenas reserved", steps, CHURN_SLOTS,
               c[0].locks_before, grew, steps - steps / 4, s.locks_global, s.arenas_reserved);
    /* Warm-up took it (heaps made, arenas obtained): the counter counts. */
    CHECK_GT(c[0].locks_before, 0);
    /* Steady state: pools come and go between a heap and its own arenas
     * under the heap's lock; the global lock is for whole arenas, and a
     * working set of constant size needs no new one and empties none
     * (random frees leave no arena empty).  A few for the odd arena that
     * does empty. */
    CHECK_LE(grew, 4);
    SCHECK_EQ(s.blocks_live, 0);
    stress_check_identities(&s, "after no_global_lock");
    ar_validate();
}

/* ---- a new thread reuses a dead heap ---------------------------------------- */

enum { LEFT = 1000 };
static struct blk left[LEFT];

static void *leave_blocks(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < LEFT; i++)
        left[i] = blk_alloc(64, stress_tag(1, i));
    return NULL;
}

struct newcomer {
    struct blk b[16];
    int shares_pool;
};

static void *newcomer_main(void *arg)
{
    struct newcomer *n = arg;
    for (size_t i = 0; i < 16; i++)
        n->b[i] = blk_alloc(64, stress_tag(2, i));
    uintptr_t pool = (uintptr_t)n->b[0].p & POOL_MASK;
    for (size_t i = 0; i < LEFT; i++)
        if (((uintptr_t)left[i].p & POOL_MASK) == pool)
            n->shares_pool = 1;
    return NULL;
}

static void *free_newcomer(void *arg)
{
    struct newcomer *n = arg;
    for (size_t i = 0; i < 16; i++)
        blk_free(n->b[i]);
    return NULL;
}

static void child_reuse(void *arg)
{
    (void)arg;
    install_fake();
    run_thread(leave_blocks, NULL);
    struct arena_stats s0 = stats();
    SCHECK_EQ(s0.heaps_live, 0);
    SCHECK_EQ(s0.heaps_abandoned, 1);
    SCHECK_EQ(s0.blocks_live, LEFT);
    uint64_t reserves = fake.reserves;

    static struct newcomer n;
    run_thread(newcomer_main, &n);
    struct arena_stats s1 = stats();
    child_note("reuse: the dead thread left %d blocks in %zu arenas; the new thread's blocks "
               "share its pools: %s; heaps_reused %" PRIu64, LEFT, fake_live_regions(),
               n.shares_pool ? "yes" : "no", s1.heaps_reused);
    SCHECK_EQ(s1.heaps_reused, s0.heaps_reused + 1);
    CHECK(n.shares_pool);                    /* its partly used pool */
    CHECK_EQ(fake.reserves, reserves);       /* no new arena */
    SCHECK_EQ(s1.blocks_live, LEFT + 16);

    /* A dead heap with nothing live is reused too (no heap is made). */
    run_thread(free_newcomer, &n);
    struct arena_stats s2 = stats();
    SCHECK_EQ(s2.heaps_reused, s1.heaps_reused + 1);
    SCHECK_EQ(s2.bytes_metadata, s1.bytes_metadata);
    for (size_t i = 0; i < LEFT; i++)
        blk_free(left[i]);
    arena_release();
    struct arena_stats s3 = stats();
    SCHECK_EQ(s3.blocks_live, 0);
    SCHECK_EQ(pools_held(&s3), 0);
    CHECK_EQ(fake_live_regions(), 0);
    stress_check_identities(&s3, "after reuse");
    ar_validate();
}

/* ---- adoption ------------------------------------------------------------------ */

enum { ORPHANS = 5000 };
static struct blk orphans[2][ORPHANS];

static void *leave_orphans(void *arg)
{
    unsigned which = (unsigned)(uintptr_t)arg;
    uint64_t rng = 99 + which;
    for (size_t i = 0; i < ORPHANS; i++)
        orphans[which][i] = blk_alloc(8 + test_rand(&rng) % 505, stress_tag(10 + which, i));
    return NULL;
}

static void free_orphans(unsigned which)
{
    uint64_t rng = 7;
    size_t order[ORPHANS];
    for (size_t i = 0; i < ORPHANS; i++)
        order[i] = i;
    for (size_t i = ORPHANS; i > 1; i--) {
        size_t j = (size_t)(test_rand(&rng) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < ORPHANS; i++)
        blk_free(orphans[which][order[i]]);
}

static void check_all_back(const char *when)
{
    arena_release();
    struct arena_stats s = stats();
    stress_check_identities(&s, when);
    SCHECK_EQ(s.blocks_live, 0);
    SCHECK_EQ(pools_held(&s), 0);
    SCHECK_EQ(s.arenas_live, 0);
    CHECK_EQ(fake_live_regions(), 0);
    ar_validate();
}

/* A live thread (this one, which has a heap) frees a dead thread's blocks. */
static void child_adopt_live(void *arg)
{
    (void)arg;
    install_fake();
    struct blk mine = blk_alloc(100, stress_tag(0, 0));   /* a live heap */
    run_thread(leave_orphans, (void *)(uintptr_t)0);
    struct arena_stats s0 = stats();
    SCHECK_EQ(s0.heaps_abandoned, 1);
    SCHECK_EQ(s0.heaps_adopted, 0);
    free_orphans(0);
    struct arena_stats s1 = stats();
    child_note("adopt_live: %d blocks of a dead thread freed by a live one: heaps_adopted %"
               PRIu64 ", heaps_reused %" PRIu64 "; %" PRIu64 " arenas live", ORPHANS,
               s1.heaps_adopted, s1.heaps_reused, s1.arenas_live);
    SCHECK_EQ(s1.heaps_adopted, 1);
    SCHECK_EQ(s1.heaps_reused, 0);
    SCHECK_EQ(s1.blocks_live, 1);
    ar_validate();
    blk_free(mine);
    check_all_back("after adopt_live");
}

/* Two threads leave orphans from two heaps: the first waits (alive, so
 * the second cannot take its heap) until the second has exited; then it
 * exits too.  One exit at a time: their backend calls never overlap. */
static pthread_mutex_t go_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cond = PTHREAD_COND_INITIALIZER;
static int allocated0, go0;

static void *leave_orphans_and_wait(void *arg)
{
    leave_orphans(arg);
    pthread_mutex_lock(&go_lock);
    allocated0 = 1;
    pthread_cond_broadcast(&go_cond);
    while (!go0)
        pthread_cond_wait(&go_cond, &go_lock);
    pthread_mutex_unlock(&go_lock);
    return NULL;
}

/* A thread that never allocated frees the blocks of two dead threads. */
static void *free_two(void *arg)
{
    (void)arg;
    CHECK(ar_tls_heap == &ar_heap_none);
    free_orphans(0);
    CHECK(ar_tls_heap != &ar_heap_none);     /* took a heap on the way */
    free_orphans(1);
    ar_validate();
    return NULL;
}

static void child_adopt_fresh(void *arg)
{
    (void)arg;
    install_fake();
    pthread_t first;
    stress_thread_start(&first, leave_orphans_and_wait, (void *)(uintptr_t)0);
    pthread_mutex_lock(&go_lock);
    while (!allocated0)
        pthread_cond_wait(&go_cond, &go_lock);
    pthread_mutex_unlock(&go_lock);
    run_thread(leave_orphans, (void *)(uintptr_t)1);
    pthread_mutex_lock(&go_lock);
    go0 = 1;
    pthread_cond_broadcast(&go_cond);
    pthread_mutex_unlock(&go_lock);
    stress_thread_join(first);
    struct arena_stats s0 = stats();
    SCHECK_EQ(s0.heaps_abandoned, 2);
    SCHECK_EQ(s0.heaps_reused, 0);
    SCHECK_EQ(s0.blocks_live, 2 * ORPHANS);
    run_thread(free_two, NULL);
    struct arena_stats s1 = stats();
    child_note("adopt_fresh: a thread that never allocated freed %d blocks of two dead "
               "threads: heaps_reused %" PRIu64 ", heaps_adopted %" PRIu64 "; %" PRIu64
               " arenas live", 2 * ORPHANS, s1.heaps_reused, s1.heaps_adopted, s1.arenas_live);
    /* Its first free took the newest dead heap (the first thread's, which
     * exited last: the block's own) and a later one adopted the other. */
    SCHECK_EQ(s1.heaps_reused, 1);
    SCHECK_EQ(s1.heaps_adopted, 1);
    SCHECK_EQ(s1.blocks_live, 0);
    SCHECK_EQ(s1.heaps_live, 0);
    /* It exited with nothing live: what its heap kept free is within the
     * policy (no pool is held by anyone). */
    SCHECK_EQ(pools_held(&s1), 0);
    check_all_back("after adopt_fresh");
}

/* ---- Larson: generations inherit the live blocks ------------------------------ */

enum { L_THREADS = 4, L_SLOTS = 2000 };

struct heir {
    unsigned id, gen;
    uint64_t rounds;
    struct blk *slots;              /* L_SLOTS, inherited */
    uint64_t serial;
};

static void *heir_main(void *arg)
{
    struct heir *h = arg;
    uint64_t rng = (uint64_t)h->gen * 1000003u + h->id;
    for (uint64_t k = 0; k < h->rounds; k++) {
        size_t i = (size_t)(test_rand(&rng) % L_SLOTS);
        blk_free(h->slots[i]);
        h->slots[i] = blk_alloc(8 + test_rand(&rng) % 505, stress_tag(h->id, h->serial++));
    }
    /* Exit with every slot live: the next generation inherits them. */
    return NULL;
}

static void *first_main(void *arg)
{
    struct heir *h = arg;
    uint64_t rng = 5 + h->id;
    for (size_t i = 0; i < L_SLOTS; i++)
        h->slots[i] = blk_alloc(8 + test_rand(&rng) % 505, stress_tag(h->id, h->serial++));
    return NULL;
}

static void child_larson(void *arg)
{
    (void)arg;
    unsigned gens = (unsigned)test_env_u64("SUCC_GENERATIONS", 90);
    uint64_t rounds = stress_count("SUCC_ROUNDS", 20000, 10, 4);
    static struct blk slots[L_THREADS][L_SLOTS];
    static struct heir heirs[L_THREADS];
    /* Generation 0 allocates the first live set; this thread never
     * allocates, so every heap is a thread's that ends. */
    for (unsigned t = 0; t < L_THREADS; t++)
        heirs[t] = (struct heir){ .id = t, .rounds = rounds, .slots = slots[t] };
    uint64_t early_max = 0, late_max = 0;
    for (unsigned g = 0; g <= gens; g++) {
        pthread_t tid[L_THREADS];
        for (unsigned t = 0; t < L_THREADS; t++) {
            heirs[t].gen = g;
            stress_thread_start(&tid[t], g == 0 ? first_main : heir_main, &heirs[t]);
        }
        for (unsigned t = 0; t < L_THREADS; t++)
            stress_thread_join(tid[t]);
        ar_validate();
        struct arena_stats s = stats();
        stress_check_identities(&s, "after a generation");
        SCHECK_EQ(s.blocks_live, L_THREADS * L_SLOTS);
        SCHECK_EQ(s.heaps_live, 0);
        SCHECK_EQ(s.heaps_abandoned, (uint64_t)(g + 1) * L_THREADS);
        if (g >= gens / 3 && g < 2 * gens / 3 && s.arenas_live > early_max)
            early_max = s.arenas_live;
        if (g >= 2 * gens / 3 && s.arenas_live > late_max)
            late_max = s.arenas_live;
        if (g == 1 || g % 10 == 0 || g == gens)
            child_note("  generation %u: %" PRIu64 " arenas live (%" PRIu64 " empty); pools: %"
                       PRIu64 " in use, %" PRIu64 " free (%" PRIu64 " dirty); %" PRIu64
                       " blocks live; heaps reused %" PRIu64 ", adopted %" PRIu64, g,
                       s.arenas_live, s.arenas_empty, pools_held(&s), s.pools_free,
                       s.pools_free_dirty, s.blocks_live, s.heaps_reused, s.heaps_adopted);
    }
    /* Where the arenas are: heap by heap (every heap is dead now). */
    for (struct ar_heap *h = atomic_load(&ar_all_heaps); h != NULL;
         h = atomic_load(&h->next_all)) {
        pthread_mutex_lock(&h->arenas.lock);
        child_note("  heap %p: %u pools held; %u arenas, %u of them empty; %u pools in use, "
                   "%u dirty free; learned %u", (void *)h, h->pools, h->arenas.arenas,
                   h->arenas.empty_arenas, h->arenas.pools_in_use, h->arenas.dirty_pools,
                   h->arenas.pools_hold.learned);
        pthread_mutex_unlock(&h->arenas.lock);
    }
    struct arena_stats s = stats();
    child_note("larson: %u generations of %d threads, %" PRIu64 " replacements each: at most %"
               PRIu64 " arenas live in the middle third of the generations, %" PRIu64
               " in the last third",
               gens, L_THREADS, rounds, early_max, late_max);
    /* New threads take dead heaps instead of making new ones.  A heap is
     * made only when no dead heap is on the lists: every heap is then live
     * or being adopted (merged into a live thread's heap, at most one per
     * live thread), so at most 2 x L_THREADS heaps are ever made, however
     * many generations run. */
    uint64_t made = s.heaps_abandoned + s.heaps_live - s.heaps_reused;
    CHECKF(made <= 2 * L_THREADS, "%" PRIu64 " heaps made for %u generations of %d threads "
           "(%" PRIu64 " reused)", made, gens + 1, L_THREADS, s.heaps_reused);
    for (unsigned t = 0; t < L_THREADS; t++)
        for (size_t i = 0; i < L_SLOTS; i++)
            blk_free(slots[t][i]);
    arena_release();
    s = stats();
    stress_check_identities(&s, "after larson");
    SCHECK_EQ(s.blocks_live, 0);
    SCHECK_EQ(pools_held(&s), 0);
    SCHECK_EQ(s.arenas_live, 0);
    ar_validate();
    /* Mapped memory follows the live set, not the number of generations:
     * once the heaps have spread the live set over their pools (the first
     * third: about 30 generations here), the last third needs no more than
     * the middle third did, plus one arena per thread for the pools of
     * classes that drift between heaps. */
    if (gens >= 8)
        CHECKF(late_max <= early_max + L_THREADS, "arenas live grew from %" PRIu64 " to %"
               PRIu64 " over %u generations (a live set of %d blocks)", early_max, late_max,
               gens, L_THREADS * L_SLOTS);
}

/* ---- borrowing when the OS gives no more ----------------------------------------- */

enum { B_POOLS = 3, B_PER_POOL = ARENA_POOL_SIZE / 64 };

struct borrower {
    struct ar_arenas *lender;
    uintptr_t lender_base;
    int in_lender, back_in_lender;
    uint64_t borrowed;
};

static int pool_is_free(const void *p)
{
    struct ar_arena *a = ar_registry_arena(p);
    struct ar_arenas *s = atomic_load(&a->set);
    pthread_mutex_lock(&s->lock);
    int free = (a->free_mask >> ar_pool_index_of(p)) & 1;
    pthread_mutex_unlock(&s->lock);
    return free;
}

static void *borrower_main(void *arg)
{
    struct borrower *b = arg;
    static struct blk blocks[B_POOLS * B_PER_POOL];
    size_t n = B_POOLS * B_PER_POOL;
    for (size_t i = 0; i < n; i++)
        blocks[i] = blk_alloc(64, stress_tag(3, i));
    b->borrowed = stats().pools_borrowed;
    b->in_lender = 1;
    for (size_t i = 0; i < n; i++) {
        struct ar_arena *a = ar_registry_arena(blocks[i].p);
        if (a == NULL || a->base != b->lender_base || atomic_load(&a->set) != b->lender)
            b->in_lender = 0;
    }
    for (size_t i = 0; i < n; i++)
        blk_free(blocks[i]);
    /* The pools emptied (all but the current one, which keeps its heap's
     * hold) are free again in the lender's arena, held by its set. */
    b->back_in_lender = 0;
    for (size_t i = 0; i < n; i += B_PER_POOL)
        b->back_in_lender += pool_is_free(blocks[i].p);
    ar_validate();
    return NULL;
}

static void child_borrow(void *arg)
{
    (void)arg;
    setenv("ARENA_TCACHE", "0", 1);    /* exact pool counts */
    setenv("ARENA_PURGE", "off", 1);   /* no purge: backend calls under one lock only */
    install_fake();
    struct blk mine = blk_alloc(64, stress_tag(0, 0));
    CHECK_EQ(fake.reserves, 1);
    fake.fail_always = 1;              /* the OS gives no more */
    struct borrower b = { .lender = &ar_tls_heap->arenas,
                          .lender_base = fake.regions[0].base };
    run_thread(borrower_main, &b);
    struct arena_stats s = stats();
    child_note("borrow: %" PRIu64 " pools borrowed, %" PRIu64 " reserves failed; all in the "
               "lender's arena: %s; %d of %d back in it right after the frees",
               b.borrowed, fake.reserve_failures, b.in_lender ? "yes" : "no",
               b.back_in_lender, B_POOLS);
    CHECK_EQ(b.borrowed, B_POOLS);
    CHECK(b.in_lender);
    CHECK_GE(b.back_in_lender, B_POOLS - 1);
    CHECK_GE(fake.reserve_failures, B_POOLS);
    CHECK_EQ(fake.reserves, 1);
    /* The borrower exited: its current pool went back too.  The lender's
     * arena holds this thread's pool and nothing else. */
    SCHECK_EQ(s.pools_borrowed, B_POOLS);
    SCHECK_EQ(pools_held(&s), 1);
    SCHECK_EQ(s.pools_free, 63);
    SCHECK_EQ(s.arenas_live, 1);
    stress_check_identities(&s, "after borrowing");
    ar_validate();
    /* ... and the lender uses those pools itself, still without the OS. */
    static struct blk again[(B_POOLS + 1) * B_PER_POOL];
    for (size_t i = 0; i < sizeof again / sizeof again[0]; i++)
        again[i] = blk_alloc(64, stress_tag(0, i + 1));
    CHECK_EQ(fake.reserves, 1);
    for (size_t i = 0; i < sizeof again / sizeof again[0]; i++)
        blk_free(again[i]);
    blk_free(mine);
    fake.fail_always = 0;
    arena_release();
    s = stats();
    SCHECK_EQ(pools_held(&s), 0);
    CHECK_EQ(fake_live_regions(), 0);
    ar_validate();
}

/* ---- ar_validate while another thread works ------------------------------------------ */

/* ar_validate is called by the stress tests and the fuzzer under load: it
 * must hold at every moment another thread can produce.  Here one thread
 * takes and returns pools as fast as it can (512-byte blocks, no thread
 * cache: every 8 blocks a pool comes from its arena, every free of a
 * pool's last block returns one) while this thread validates. */
static _Atomic int churn_stop;
static _Atomic uint64_t churn_rounds;

static void *pool_churn(void *arg)
{
    (void)arg;
    void *b[64];
    while (!atomic_load_explicit(&churn_stop, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++) {
            b[i] = arena_alloc(512);
            CHECK(b[i] != NULL);
        }
        for (int i = 0; i < 64; i++)
            arena_free(b[i]);
        atomic_fetch_add_explicit(&churn_rounds, 1, memory_order_relaxed);
    }
    return NULL;
}

static void child_validate_concurrent(void *arg)
{
    (void)arg;
    setenv("ARENA_TCACHE", "0", 1);
    uint64_t want = stress_count("SUCC_CHURN_ROUNDS", 200000, 20, 4);
    pthread_t t;
    stress_thread_start(&t, pool_churn, NULL);
    /* Validate until the other thread has done its rounds (it gets the
     * locks between two validations). */
    uint64_t n = 0;
    double t0 = stress_now();
    while (atomic_load_explicit(&churn_rounds, memory_order_relaxed) < want) {
        ar_validate();
        n++;
        CHECKF(stress_now() - t0 < 120, "the churning thread did only %" PRIu64 " rounds "
               "in 120 s", atomic_load(&churn_rounds));
    }
    atomic_store(&churn_stop, 1);
    stress_thread_join(t);
    child_note("validate_concurrent: %" PRIu64 " validations while another thread did %" PRIu64
               " rounds of 8 pools taken and returned", n, atomic_load(&churn_rounds));
    ar_validate();
}

/* ---- cmocka ------------------------------------------------------------------------ */

#define CHILD_TEST(name)                                                     \
    static void test_##name(void **state)                                    \
    {                                                                        \
        (void)state;                                                         \
        assert_int_equal(child_run(#name, child_##name, NULL), 0);           \
    }

CHILD_TEST(no_global_lock)
CHILD_TEST(reuse)
CHILD_TEST(adopt_live)
CHILD_TEST(adopt_fresh)
CHILD_TEST(larson)
CHILD_TEST(borrow)
CHILD_TEST(validate_concurrent)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_global_lock),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_adopt_live),
        cmocka_unit_test(test_adopt_fresh),
        cmocka_unit_test(test_larson),
        cmocka_unit_test(test_borrow),
        cmocka_unit_test(test_validate_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
