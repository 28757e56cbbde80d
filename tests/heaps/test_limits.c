/*
 * Memory limits: arena_set_limit(soft, hard, on_soft, arg) and
 * ARENA_LIMIT=hard[,soft], each case in a forked child.
 *
 *   einval       hard below soft: EINVAL, and the limits stay as they were
 *   counted      what is counted: arena bytes mapped + large blocks
 *   hard-small   small blocks up to the hard limit: NULL with ENOMEM, for
 *                small and large requests, calloc, realloc and heaps; no
 *                live block changes; allocation works again after frees
 *   hard-large   the same with large (system allocator) blocks
 *   hard-heap    a heap at the hard limit borrows free pools of the thread
 *                heap's arenas, then gets NULL; its destroy gives them back
 *   soft-once    the callback runs once per crossing, outside every lock
 *                (ar_lock and the thread heap's set lock are free), may
 *                allocate, and is re-armed when the count drops below soft;
 *                also with 4 threads crossing together
 *   soft-release crossing soft first gives back what libarena holds free;
 *                when that brings the count below soft, no callback
 *   env-good     ARENA_LIMIT values that parse set the limits, silently
 *   env-bad      values that do not parse set nothing and print exactly one
 *                line on stderr, however many threads allocate
 *   env-call     arena_set_limit() before the first allocation wins over
 *                ARENA_LIMIT
 *   env-enforce  ARENA_LIMIT=4M is a hard limit; 8M,2M a soft one
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "heaps.h"
#include "internal.h"
#include "checked/death.h"

static void *table(size_t n)
{
    void *t = mmap(NULL, n * sizeof(void *), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t != MAP_FAILED);
    return t;
}

#define RUN(name, fn) assert_int_equal(child_run(name, fn, NULL), 0)

/* ---- EINVAL --------------------------------------------------------------- */

static void limits_are(uint64_t hard, uint64_t soft)
{
    struct arena_stats s = gstats();
    CHECK_EQ(s.limit_hard, hard);
    CHECK_EQ(s.limit_soft, soft);
}

static void child_einval(void *arg)
{
    (void)arg;
    CHECK(arena_alloc(16) != NULL);
    limits_are(0, 0);
    CHECK_EQ(arena_set_limit(2 * GIB, GIB, NULL, NULL), EINVAL);
    limits_are(0, 0);
    CHECK_EQ(arena_set_limit(GIB, 2 * GIB, NULL, NULL), 0);
    limits_are(2 * GIB, GIB);
    CHECK_EQ(arena_set_limit(3 * GIB, 2 * GIB, NULL, NULL), EINVAL);
    CHECK_EQ(arena_set_limit(GIB + 1, GIB, NULL, NULL), EINVAL);
    limits_are(2 * GIB, GIB);
    CHECK_EQ(arena_set_limit(GIB, GIB, NULL, NULL), 0);       /* equal is fine */
    limits_are(GIB, GIB);
    CHECK_EQ(arena_set_limit(5 * GIB, 0, NULL, NULL), 0);     /* soft alone */
    limits_are(0, 5 * GIB);
    CHECK_EQ(arena_set_limit(0, 0, NULL, NULL), 0);           /* none */
    limits_are(0, 0);
}

static void test_einval(void **state)
{
    (void)state;
    RUN("einval", child_einval);
}

/* ---- what is counted ------------------------------------------------------ */

static void counted_is_mapped_plus_large(void)
{
    struct arena_stats s = gstats();
    CHECK_EQ(s.limit_counted, s.bytes_mapped + s.large_bytes);
}

static void child_counted(void *arg)
{
    (void)arg;
    void *small = arena_alloc(48);
    CHECK(small != NULL);
    struct arena_stats s0 = gstats();
    CHECK_EQ(s0.limit_counted, ARENA);      /* one arena, nothing large */
    counted_is_mapped_plus_large();
    void *big = arena_alloc(100000);        /* the system allocator's */
    CHECK(big != NULL);
    struct arena_stats s1 = gstats();
    CHECK_EQ(s1.limit_counted, s0.limit_counted + arena_usable_size(big));
    counted_is_mapped_plus_large();
    struct arena_heap *h = arena_heap_new();  /* a heap's arenas count */
    CHECK(h != NULL);
    CHECK(arena_heap_alloc(h, 300000) != NULL);
    CHECK(arena_heap_alloc(h, 5000) != NULL);
    CHECK_EQ(gstats().limit_counted, s1.limit_counted + 3 * ARENA);
    counted_is_mapped_plus_large();
    arena_heap_destroy(h);
    arena_free(big);
    CHECK_EQ(gstats().limit_counted, s0.limit_counted);
    arena_free(small);
}

static void test_counted(void **state)
{
    (void)state;
    RUN("counted", child_counted);
}

/* ---- hard limit: small blocks --------------------------------------------- */

#define MAXBLOCKS 200000

static void expect_enomem(void *p, const char *what)
{
    int e = errno;
    CHECKF(p == NULL, "%s succeeded at the hard limit", what);
    CHECKF(e == ENOMEM, "%s: errno %d, expected ENOMEM", what, e);
}

static void child_hard_small(void *arg)
{
    (void)arg;
    CHECK(arena_alloc(16) != NULL);
    uint64_t hard = gstats().limit_counted + 8 * ARENA;
    CHECK_EQ(arena_set_limit(0, hard, NULL, NULL), 0);
    unsigned char **p = table(MAXBLOCKS);
    size_t *sz = table(MAXBLOCKS);
    uint64_t rng = 3;
    size_t n = 0, fail_size = 0;
    for (; n < MAXBLOCKS; n++) {
        sz[n] = 16 + test_rand(&rng) % 497;
        errno = 0;
        p[n] = arena_alloc(sz[n]);
        if (p[n] == NULL) {
            expect_enomem(p[n], "arena_alloc");
            fail_size = sz[n];
            break;
        }
        test_fill(p[n], sz[n], n);
    }
    CHECKF(n < MAXBLOCKS, "no NULL after %zu blocks under a hard limit of %llu bytes", n,
           (unsigned long long)hard);
    struct arena_stats s = gstats();
    CHECK_LE(s.limit_counted, hard);
    CHECK_LE(s.bytes_mapped, hard);
    CHECK_GE(s.limit_refused, 1);
    uint64_t live = s.blocks_live;
    child_note("    hard limit %llu KiB: %zu small blocks, then NULL for %zu bytes",
               (unsigned long long)(hard >> 10), n, fail_size);

    /* Everything else that needs memory fails too, and changes nothing. */
    errno = 0;
    expect_enomem(arena_alloc(fail_size), "arena_alloc (again)");
    errno = 0;
    expect_enomem(arena_alloc(300000), "arena_alloc(300000)");
    errno = 0;
    expect_enomem(arena_calloc(1, 300000), "arena_calloc(1, 300000)");
    errno = 0;
    expect_enomem(arena_realloc(p[0], 300000), "arena_realloc(p, 300000)");
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    errno = 0;
    expect_enomem(arena_heap_alloc(h, 5000), "arena_heap_alloc(5000)");
    errno = 0;
    expect_enomem(arena_heap_alloc(h, 300000), "arena_heap_alloc(300000)");
    arena_heap_destroy(h);
    s = gstats();
    CHECK_EQ(s.blocks_live, live);
    CHECK_LE(s.limit_counted, hard);
    for (size_t i = 0; i < n; i++)
        CHECK_PATTERN(p[i], sz[i], i);

    /* Recovery: free the older 90%, no arena_release(): the refused
     * request makes libarena give back what is free, and succeeds. */
    size_t keep_from = n - n / 10;
    for (size_t i = 0; i < keep_from; i++)
        arena_free(p[i]);
    void *big = arena_alloc(300000);
    CHECK(big != NULL);
    memset(big, 7, 300000);
    CHECK(arena_alloc(fail_size) != NULL);
    for (size_t i = keep_from; i < n; i++)
        CHECK_PATTERN(p[i], sz[i], i);
    /* ... and small blocks again, up to the limit once more. */
    size_t again = 0;
    for (size_t i = 0; i < keep_from; i++, again++) {
        p[i] = arena_alloc(sz[i]);
        if (p[i] == NULL)
            break;
        test_fill(p[i], sz[i], i);
    }
    CHECK_GT(again, keep_from / 2);
    CHECK_LE(gstats().limit_counted, hard);
    for (size_t i = 0; i < again; i++)
        CHECK_PATTERN(p[i], sz[i], i);
    for (size_t i = keep_from; i < n; i++)
        CHECK_PATTERN(p[i], sz[i], i);
}

static void test_hard_small(void **state)
{
    (void)state;
    RUN("hard limit, small blocks", child_hard_small);
}

/* ---- hard limit: large blocks --------------------------------------------- */

#define LARGE 100000

static void child_hard_large(void *arg)
{
    (void)arg;
    CHECK(arena_alloc(16) != NULL);
    uint64_t hard = gstats().limit_counted + 4 * MIB;
    CHECK_EQ(arena_set_limit(0, hard, NULL, NULL), 0);
    unsigned char *p[100];
    size_t n = 0;
    for (; n < 100; n++) {
        errno = 0;
        p[n] = arena_alloc(LARGE);
        if (p[n] == NULL) {
            expect_enomem(p[n], "arena_alloc(100000)");
            break;
        }
        test_fill(p[n], LARGE, n);
    }
    CHECK_LT(n, 100);
    CHECK_GE(n, 4 * MIB / (LARGE + 4096) - 1);
    struct arena_stats s = gstats();
    CHECK_LE(s.limit_counted, hard);
    CHECK_EQ(s.large_live, n);
    counted_is_mapped_plus_large();

    errno = 0;
    expect_enomem(arena_realloc(p[0], 2 * LARGE), "arena_realloc(p, 200000)");
    CHECK_PATTERN(p[0], LARGE, 0);
    errno = 0;
    expect_enomem(arena_calloc(LARGE, 1), "arena_calloc(100000, 1)");
    CHECK_EQ(gstats().large_live, n);
    /* Shrinking needs no memory. */
    unsigned char *q = arena_realloc(p[1], LARGE / 2);
    CHECK(q != NULL);
    CHECK_PATTERN(q, LARGE / 2, 1);
    p[1] = q;

    /* One block back: the same request works again. */
    arena_free(p[n - 1]);
    p[n - 1] = arena_alloc(LARGE);
    CHECK(p[n - 1] != NULL);
    test_fill(p[n - 1], LARGE, n - 1);
    CHECK_LE(gstats().limit_counted, hard);
    for (size_t i = 0; i < n; i++)
        CHECK_PATTERN(p[i], i == 1 ? LARGE / 2 : LARGE, i);
    for (size_t i = 0; i < n; i++)
        arena_free(p[i]);
    CHECK_EQ(gstats().large_live, 0);
}

static void test_hard_large(void **state)
{
    (void)state;
    RUN("hard limit, large blocks", child_hard_large);
}

/* ---- hard limit: a heap borrows, then gets NULL ---------------------------- */

#define THREAD_BLOCKS 20000

static void child_hard_heap(void *arg)
{
    (void)arg;
    /* The thread heap: 48-byte blocks (85 a pool); every other pool's
     * worth freed, so its arenas have free pools in between used ones. */
    void **t = table(THREAD_BLOCKS);
    for (size_t i = 0; i < THREAD_BLOCKS; i++) {
        CHECK((t[i] = arena_alloc(48)) != NULL);
        test_fill(t[i], 48, i);
    }
    for (size_t i = 0; i < THREAD_BLOCKS; i++)
        if ((i / 85) % 2 == 1) {
            arena_free(t[i]);
            t[i] = NULL;
        }
    struct arena_stats s0 = gstats();
    uint64_t hard = s0.limit_counted;       /* no new arena at all */
    CHECK_EQ(arena_set_limit(0, hard, NULL, NULL), 0);

    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    void **b = table(THREAD_BLOCKS);
    size_t got = 0;
    for (; got < THREAD_BLOCKS; got++) {
        errno = 0;
        b[got] = arena_heap_alloc(h, 48);
        if (b[got] == NULL) {
            expect_enomem(b[got], "arena_heap_alloc(48)");
            break;
        }
        test_fill(b[got], 48, ~got);
    }
    struct arena_stats s1 = gstats();
    child_note("    a heap at the hard limit got %zu blocks in %llu borrowed pools", got,
               (unsigned long long)(s1.pools_borrowed - s0.pools_borrowed));
    CHECK_GT(got, 0);
    CHECK_LT(got, THREAD_BLOCKS);
    CHECK_GT(s1.pools_borrowed, s0.pools_borrowed);
    CHECK_LE(s1.limit_counted, hard);
    errno = 0;
    expect_enomem(arena_heap_alloc(h, 5000), "arena_heap_alloc(5000)");
    struct arena_heap_stats hs = hstats(h);     /* checked at the end */
    for (size_t i = 0; i < got; i++)
        CHECK_PATTERN(b[i], 48, ~i);
    ar_validate();

    arena_heap_destroy(h);                  /* the borrowed pools go back */
    ar_validate();
    for (size_t i = 0; i < THREAD_BLOCKS; i++)
        if (t[i] != NULL)
            CHECK_PATTERN(t[i], 48, i);
    /* ... and the thread heap can use them again, under the same limit. */
    for (size_t i = 0; i < got; i++)
        CHECK((b[i] = arena_alloc(48)) != NULL);
    CHECK_LE(gstats().limit_counted, hard);
    ar_validate();
    /* The heap's figures include its blocks in borrowed pools. */
    child_note("    the heap's stats said %llu blocks live in %llu pools",
               (unsigned long long)hs.blocks_live, (unsigned long long)hs.pools);
    CHECK_EQ(hs.blocks_live, got);
    CHECK_EQ(hs.bytes_live, got * 48);
}

static void test_hard_heap(void **state)
{
    (void)state;
    RUN("hard limit, heap borrowing", child_hard_heap);
}

/* ---- soft limit ------------------------------------------------------------ */

struct soft_ctx {
    uint64_t soft;
    bool single_thread;                 /* check the locks */
    atomic_uint calls;
    _Atomic uint64_t last_bytes;
    void *kept[16];                     /* one block the callback keeps, per call */
};

/* The callback: checks that no lock of libarena is held (a trylock of
 * the global lock and of this thread's heap's set lock succeeds, while
 * no other thread runs), then allocates small and large blocks, frees
 * some and keeps one. */
static void on_soft(size_t bytes, void *arg)
{
    struct soft_ctx *c = arg;
    unsigned k = atomic_fetch_add(&c->calls, 1);
    atomic_store(&c->last_bytes, bytes);
    CHECKF(bytes > c->soft, "on_soft(%zu): not above the soft limit %llu", bytes,
           (unsigned long long)c->soft);
    /* Only while no other thread runs: then a lock that is taken can only
     * be held by this thread, around the call. */
    if (c->single_thread) {
        CHECKF(pthread_mutex_trylock(&ar_lock) == 0, "on_soft called with the global lock held");
        pthread_mutex_unlock(&ar_lock);
    }
    struct ar_heap *h = ar_tls_heap;
    if (c->single_thread && h != &ar_heap_none) {
        CHECKF(pthread_mutex_trylock(&h->arenas.lock) == 0,
               "on_soft called with the thread heap's lock held");
        pthread_mutex_unlock(&h->arenas.lock);
    }
    void *a = arena_alloc(100), *b = arena_alloc(100000);
    CHECK(a != NULL && b != NULL);
    test_fill(a, 100, k);
    test_fill(b, 100000, k);
    struct arena_stats s = gstats();        /* takes the global lock */
    CHECK_GE(s.limit_counted, 100000);
    CHECK_PATTERN(a, 100, k);
    CHECK_PATTERN(b, 100000, k);
    arena_free(a);
    arena_free(b);
    if (k < 16)
        c->kept[k] = arena_alloc(64);
}

static struct soft_ctx soft_ctx;

/* Allocate 48-byte blocks into t until the count is `above` past soft. */
static size_t fill_past(void **t, size_t max, uint64_t soft, uint64_t above)
{
    size_t n = 0;
    while (n < max) {
        for (int i = 0; i < 1000 && n < max; i++, n++)
            CHECK((t[n] = arena_alloc(48)) != NULL);
        if (gstats().limit_counted > soft + above)
            return n;
    }
    CHECKF(0, "the count did not pass the soft limit: %zu blocks, %llu bytes counted", n,
           (unsigned long long)gstats().limit_counted);
    return n;
}

static void free_all(void **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        arena_free(t[i]);
}

struct soft_thread {
    pthread_barrier_t *go;
    size_t n;
    void **t;
};

static void *soft_worker(void *arg)
{
    struct soft_thread *w = arg;
    pthread_barrier_wait(w->go);
    for (w->n = 0; w->n < MAXBLOCKS / 4; w->n++)    /* 2.4 MB each */
        CHECK((w->t[w->n] = arena_alloc(48)) != NULL);
    return NULL;
}

static void child_soft_once(void *arg)
{
    (void)arg;
    CHECK(arena_alloc(16) != NULL);
    struct soft_ctx *c = &soft_ctx;
    c->soft = gstats().limit_counted + 4 * ARENA;
    c->single_thread = true;
    CHECK_EQ(arena_set_limit(c->soft, 0, on_soft, c), 0);
    void **t = table(MAXBLOCKS);

    /* Crossing 1: well past soft, one call. */
    size_t n = fill_past(t, MAXBLOCKS, c->soft, 3 * MIB);
    CHECK_EQ(atomic_load(&c->calls), 1);
    CHECK_EQ(gstats().limit_soft_calls, 1);
    CHECK_GT(atomic_load(&c->last_bytes), c->soft);
    /* Back below soft (frees and a release), then crossing 2. */
    free_all(t, n);
    arena_release();
    CHECK_LT(gstats().limit_counted, c->soft);
    CHECK_EQ(atomic_load(&c->calls), 1);
    n = fill_past(t, MAXBLOCKS, c->soft, 3 * MIB);
    CHECK_EQ(atomic_load(&c->calls), 2);
    free_all(t, n);
    arena_release();
    CHECK_LT(gstats().limit_counted, c->soft);

    /* Crossing 3: four threads cross together, one call. */
    enum { T = 4 };
    c->single_thread = false;
    pthread_barrier_t go;
    CHECK(pthread_barrier_init(&go, NULL, T) == 0);
    struct soft_thread w[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct soft_thread){&go, 0, t + (size_t)i * (MAXBLOCKS / 4)};
        thread_start(&th[i], soft_worker, &w[i]);
    }
    for (int i = 0; i < T; i++)
        thread_join(th[i]);
    pthread_barrier_destroy(&go);
    CHECK_GT(gstats().limit_counted, c->soft + 4 * MIB);
    CHECK_EQ(atomic_load(&c->calls), 3);
    CHECK_EQ(gstats().limit_soft_calls, 3);
    for (unsigned k = 0; k < 3; k++)
        CHECK(c->kept[k] != NULL);
}

static void test_soft_once(void **state)
{
    (void)state;
    RUN("soft limit, once per crossing", child_soft_once);
}

static void child_soft_release(void *arg)
{
    (void)arg;
    void **t = table(MAXBLOCKS);
    for (size_t i = 0; i < MAXBLOCKS; i++)
        CHECK((t[i] = arena_alloc(48)) != NULL);
    free_all(t, MAXBLOCKS);
    struct arena_stats s0 = gstats();       /* empty arenas held for reuse */
    CHECK_GE(s0.arenas_empty, 1);
    struct soft_ctx *c = &soft_ctx;
    c->soft = s0.limit_counted + 100000;
    CHECK_EQ(arena_set_limit(c->soft, 0, on_soft, c), 0);
    void *big = arena_alloc(200000);        /* crosses soft by ~100 KB */
    CHECK(big != NULL);
    struct arena_stats s1 = gstats();
    child_note("    before: %llu KiB counted (%llu empty arenas); after crossing: %llu KiB",
               (unsigned long long)(s0.limit_counted >> 10),
               (unsigned long long)s0.arenas_empty,
               (unsigned long long)(s1.limit_counted >> 10));
    CHECK_LT(s1.bytes_mapped, s0.bytes_mapped);  /* given back ... */
    CHECK_LE(s1.limit_counted, c->soft);
    CHECK_EQ(atomic_load(&c->calls), 0);         /* ... so no callback */
    CHECK_EQ(s1.limit_soft_calls, 0);
    arena_free(big);
}

static void test_soft_release(void **state)
{
    (void)state;
    RUN("soft limit, give back first", child_soft_release);
}

/* ---- ARENA_LIMIT ------------------------------------------------------------ */

struct env_case {
    const char *value;
    uint64_t hard, soft;                /* good values */
};

static const struct env_case good[] = {
    {"512M", 512 * MIB, 0},
    {"2G,1536M", 2 * GIB, 1536 * MIB},
    {"1g,512k", GIB, 512 * KIB},
    {"1048576", MIB, 0},
    {"0,64M", 0, 64 * MIB},
    {"4T", (uint64_t)4 << 40, 0},
    {"1G,1G", GIB, GIB},
};

static const char *const bad[] = {
    "512X", "abc", "1G,2G", "1G,", ",1G", "-5M", "1.5G", "12MB", " 1G",
    "99999999999999999999", "20000000T", "1G,2M,3M",
};

static const struct env_case *cur_case;

static void *alloc_some(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        CHECK(arena_alloc(32) != NULL);
    return NULL;
}

static void env_child(void)
{
    /* From three threads, for the one-line check. */
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        thread_start(&t[i], alloc_some, NULL);
    alloc_some(NULL);
    for (int i = 0; i < 2; i++)
        thread_join(t[i]);
    limits_are(cur_case->hard, cur_case->soft);
}

/* The lines of d's stderr that libarena wrote. */
static int libarena_lines(const struct death *d)
{
    int n = 0;
    for (const char *s = d->out; (s = strstr(s, "libarena:")) != NULL; s++)
        n++;
    return n;
}

static void test_env_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char var[64];
        snprintf(var, sizeof var, "ARENA_LIMIT=%s", good[i].value);
        const char *env[] = {var, NULL};
        cur_case = &good[i];
        struct death d;
        death_run(&d, env_child, env);
        if (libarena_lines(&d) != 0)
            print_message("%s: stderr: %s\n", var, d.out);
        death_assert_exit(&d, 0);
        assert_int_equal(libarena_lines(&d), 0);
    }
}

static void test_env_bad(void **state)
{
    (void)state;
    static const struct env_case none = {"", 0, 0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char var[64], want[256];
        snprintf(var, sizeof var, "ARENA_LIMIT=%s", bad[i]);
        snprintf(want, sizeof want,
                 "libarena: ARENA_LIMIT=%s is not hard[,soft] with soft <= hard "
                 "(sizes such as 512M or 2G); no limit set\n", bad[i]);
        const char *env[] = {var, NULL};
        cur_case = &none;
        struct death d;
        death_run(&d, env_child, env);
        death_assert_exit(&d, 0);
        if (libarena_lines(&d) != 1 || strstr(d.out, want) == NULL)
            print_message("%s: stderr: %s\n", var, d.out);
        assert_int_equal(libarena_lines(&d), 1);
        assert_non_null(strstr(d.out, want));
    }
}

static void set_limit_first(void)
{
    CHECK_EQ(arena_set_limit(0, 2 * GIB, NULL, NULL), 0);
    CHECK(arena_alloc(32) != NULL);
    limits_are(2 * GIB, 0);
}

static void test_env_call_wins(void **state)
{
    (void)state;
    const char *env[] = {"ARENA_LIMIT=1G", NULL};
    struct death d;
    death_run(&d, set_limit_first, env);
    death_assert_exit(&d, 0);
    assert_int_equal(libarena_lines(&d), 0);
}

static void env_enforced(void)
{
    void **t = table(MAXBLOCKS);
    size_t n = 0;
    for (; n < MAXBLOCKS; n++) {
        errno = 0;
        if ((t[n] = arena_alloc(48)) == NULL) {
            expect_enomem(t[n], "arena_alloc(48) under ARENA_LIMIT=4M");
            break;
        }
    }
    CHECK_LT(n, MAXBLOCKS);
    struct arena_stats s = gstats();
    CHECK_EQ(s.limit_hard, 4 * MIB);
    CHECK_LE(s.limit_counted, 4 * MIB);
    CHECK_GE(s.limit_counted, 4 * MIB - ARENA);
}

static void env_soft(void)
{
    void **t = table(MAXBLOCKS);
    fill_past(t, MAXBLOCKS, 2 * MIB, 4 * MIB);
    struct arena_stats s = gstats();
    CHECK_EQ(s.limit_soft, 2 * MIB);
    CHECK_EQ(s.limit_soft_calls, 1);        /* counted, with no callback set */
}

static void test_env_enforced(void **state)
{
    (void)state;
    const char *env[] = {"ARENA_LIMIT=4M", NULL};
    struct death d;
    death_run(&d, env_enforced, env);
    death_assert_exit(&d, 0);
    const char *env2[] = {"ARENA_LIMIT=8M,2M", NULL};
    death_run(&d, env_soft, env2);
    death_assert_exit(&d, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_einval),
        cmocka_unit_test(test_counted),
        cmocka_unit_test(test_hard_small),
        cmocka_unit_test(test_hard_large),
        cmocka_unit_test(test_hard_heap),
        cmocka_unit_test(test_soft_once),
        cmocka_unit_test(test_soft_release),
        cmocka_unit_test(test_env_good),
        cmocka_unit_test(test_env_bad),
        cmocka_unit_test(test_env_call_wins),
        cmocka_unit_test(test_env_enforced),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
