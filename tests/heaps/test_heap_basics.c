/*
 * Heaps with a lifetime (arena_heap_*): one heap at a time, in forked
 * children with a fresh allocator.
 *
 *   sizes        every size 0..600 and larger ones up to 3 MiB: alignment,
 *                usable size (class, whole pages, whole arenas), contents
 *   stats        arena_heap_get_stats() and arena_get_stats() give exact
 *                figures for a known pattern, through frees from another
 *                thread and the destroy; a short `size` is honoured
 *   realloc      arena_heap_realloc in place and moving, every kind of
 *                block, always inside the heap; arena_realloc moves a
 *                heap block into the calling thread's heap
 *   calloc       overflow, zeroed memory (also when reused), NULL heap
 *   remote       two threads free a heap's blocks while its owner keeps
 *                allocating from it
 *   destroy      every arena of the heap goes back to the OS (counted),
 *                a destroyed heap is reused, from another thread too
 *   rss          a heap of 1M objects: resident memory back within 1 MiB
 *                of the level before the heap, right after the destroy
 *                (plus the checked build's per-arena bitmaps; skipped
 *                under sanitizers and valgrind)
 *   unmapped     the address range of a huge block that was freed (or
 *                moved by realloc, or destroyed with its heap) can be
 *                mapped and used by anyone afterwards: under ASan, none
 *                of it is left poisoned
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "heaps.h"
#include "internal.h"

static void *table(size_t n)
{
    void *t = mmap(NULL, n * sizeof(void *), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t != MAP_FAILED);
    return t;
}

/* ---- every size --------------------------------------------------------- */

static const size_t big_sizes[] = {
    601, 1000, 4095, 4096, 4097, 8192, 12289, 65536, 100000, 262143, 262144,
    262145, 600000, 1u << 20, (3u << 20) + 5,
};
#define N_BIG (sizeof big_sizes / sizeof big_sizes[0])
#define N_SIZES (601 + N_BIG)

static size_t size_at(size_t i)
{
    return i <= 600 ? i : big_sizes[i - 601];
}

static void child_sizes(void *arg)
{
    (void)arg;
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    void *p[N_SIZES];
    uint64_t live = 0, bytes = 0, large = 0;
    for (size_t i = 0; i < N_SIZES; i++) {
        size_t n = size_at(i), want = heap_block_size(n);
        p[i] = arena_heap_alloc(h, n);
        CHECKF(p[i] != NULL, "arena_heap_alloc(%zu) failed", n);
        CHECKF(((uintptr_t)p[i] & 15) == 0, "%zu bytes: %p not 16-byte aligned", n, p[i]);
        CHECKF(arena_usable_size(p[i]) == want, "%zu bytes: usable size %zu, expected %zu", n,
               arena_usable_size(p[i]), want);
        if (n > ARENA_SMALL_MAX)        /* whole pages, or whole arenas */
            CHECKF(((uintptr_t)p[i] & ((n <= ARENA ? PAGE : ARENA) - 1)) == 0,
                   "%zu bytes: %p is not at the start of a page / arena", n, p[i]);
        test_fill(p[i], want, i);
        live++;
        bytes += want;
        large += n > ARENA_SMALL_MAX;
    }
    for (size_t i = 0; i < N_SIZES; i++)
        CHECK_PATTERN(p[i], heap_block_size(size_at(i)), i);
    struct arena_heap_stats s = hstats(h);
    CHECK_EQ(s.blocks_live, live);
    CHECK_EQ(s.bytes_live, bytes);
    CHECK_EQ(s.large_live, large);
    CHECK_EQ(s.bytes_mapped, s.arenas * ARENA);

    /* Every other block back, from the owner thread. */
    for (size_t i = 0; i < N_SIZES; i += 2) {
        CHECK_PATTERN(p[i], heap_block_size(size_at(i)), i);
        arena_free(p[i]);
        live--;
        bytes -= heap_block_size(size_at(i));
        large -= size_at(i) > ARENA_SMALL_MAX;
    }
    s = hstats(h);
    CHECK_EQ(s.blocks_live, live);
    CHECK_EQ(s.bytes_live, bytes);
    CHECK_EQ(s.large_live, large);
    for (size_t i = 1; i < N_SIZES; i += 2)
        CHECK_PATTERN(p[i], heap_block_size(size_at(i)), i);

    /* Size 0: distinct 16-byte blocks. */
    void *z1 = arena_heap_alloc(h, 0), *z2 = arena_heap_alloc(h, 0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    CHECK_EQ(arena_usable_size(z1), 16);
    arena_heap_destroy(h);
    CHECK_EQ(gstats().heaps_user, 0);
}

static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(child_run("sizes", child_sizes, NULL), 0);
}

/* ---- exact figures -------------------------------------------------------- */

struct free_job {
    void **p;
    size_t n;
};

static void *free_all(void *arg)
{
    struct free_job *j = arg;
    for (size_t i = 0; i < j->n; i++)
        arena_free(j->p[i]);
    return NULL;
}

static void free_from_thread(void **p, size_t n)
{
    struct free_job j = {p, n};
    pthread_t t;
    thread_start(&t, free_all, &j);
    thread_join(t);
}

static void child_stats(void *arg)
{
    (void)arg;
    struct arena_stats g0 = gstats();   /* nothing allocated yet */
    CHECK_EQ(g0.bytes_mapped, 0);
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    struct arena_heap_stats s = hstats(h);
    CHECK_EQ(s.blocks_live, 0);
    CHECK_EQ(s.pools, 0);
    CHECK_EQ(s.arenas, 0);
    CHECK_EQ(gstats().heaps_user, 1);

    /* 100 x 48 B: class 48 holds 85 blocks a pool -> 2 pools.
     * 10 x 200 B: class 208, 19 a pool -> 1 pool.
     * 5000 B: 2 whole pages.  300000 B: 2 whole arenas of its own. */
    void *b48[100], *b200[10];
    for (int i = 0; i < 100; i++) {
        CHECK((b48[i] = arena_heap_alloc(h, 48)) != NULL);
        test_fill(b48[i], 48, (uint64_t)i);
    }
    for (int i = 0; i < 10; i++)
        CHECK((b200[i] = arena_heap_alloc(h, 200)) != NULL);
    void *l = arena_heap_alloc(h, 5000);
    void *huge = arena_heap_alloc(h, 300000);
    CHECK(l != NULL && huge != NULL);
    s = hstats(h);
    CHECK_EQ(s.blocks_live, 112);
    CHECK_EQ(s.bytes_live, 100 * 48 + 10 * 208 + 8192 + 2 * ARENA);
    CHECK_EQ(s.large_live, 2);
    CHECK_EQ(s.pools, 2 + 1 + 2);
    CHECK_EQ(s.arenas, 1 + 2);
    CHECK_EQ(s.bytes_mapped, 3 * ARENA);
    struct arena_stats g = gstats();
    CHECK_EQ(g.bytes_mapped, 3 * ARENA);
    CHECK_EQ(g.arenas_live, 3);
    CHECK_EQ(g.heap_large_live, 2);
    CHECK_EQ(g.heaps_user, 1);
    CHECK_EQ(g.limit_counted, 3 * ARENA);   /* arenas only: no system block */

    /* A short `size`: the fields beyond it are left alone. */
    struct arena_heap_stats part;
    memset(&part, 0xa5, sizeof part);
    part.size = offsetof(struct arena_heap_stats, large_live);
    arena_heap_get_stats(h, &part);
    CHECK_EQ(part.size, offsetof(struct arena_heap_stats, large_live));
    CHECK_EQ(part.blocks_live, 112);
    CHECK_EQ(part.bytes_live, s.bytes_live);
    CHECK_EQ(part.large_live, 0xa5a5a5a5a5a5a5a5ull);
    CHECK_EQ(part.bytes_mapped, 0xa5a5a5a5a5a5a5a5ull);

    /* Frees from another thread count at once. */
    free_from_thread(b48, 50);
    s = hstats(h);
    CHECK_EQ(s.blocks_live, 62);
    CHECK_EQ(s.bytes_live, 50 * 48 + 10 * 208 + 8192 + 2 * ARENA);
    for (int i = 50; i < 100; i++)
        CHECK_PATTERN(b48[i], 48, (uint64_t)i);
    free_from_thread(&l, 1);              /* its pages go back to the heap */
    s = hstats(h);
    CHECK_EQ(s.large_live, 1);
    CHECK_EQ(s.pools, 3);
    CHECK_EQ(s.arenas, 3);
    free_from_thread(&huge, 1);           /* its arenas go back to the OS */
    s = hstats(h);
    CHECK_EQ(s.large_live, 0);
    CHECK_EQ(s.blocks_live, 60);
    CHECK_EQ(s.arenas, 1);
    g = gstats();
    CHECK_EQ(g.bytes_mapped, ARENA);
    CHECK_EQ(g.arenas_released, 2);

    /* The destroy: the last arena too, and the heap is gone. */
    arena_heap_destroy(h);
    g = gstats();
    CHECK_EQ(g.bytes_mapped, 0);
    CHECK_EQ(g.arenas_live, 0);
    CHECK_EQ(g.arenas_released, 3);
    CHECK_EQ(g.heaps_user, 0);
    CHECK_EQ(g.heap_large_live, 0);
    CHECK_EQ(g.limit_counted, 0);
}

static void test_stats(void **state)
{
    (void)state;
    assert_int_equal(child_run("stats", child_stats, NULL), 0);
}

/* ---- realloc -------------------------------------------------------------- */

/* p is h's only block, of `bytes` bytes (size class or pages). */
static void only_block(struct arena_heap *h, void *p, size_t bytes)
{
    struct arena_heap_stats s = hstats(h);
    CHECKF(s.blocks_live == 1 && s.bytes_live == bytes,
           "block %p: the heap has %llu blocks of %llu bytes, expected 1 of %zu", p,
           (unsigned long long)s.blocks_live, (unsigned long long)s.bytes_live, bytes);
    CHECK_EQ(arena_usable_size(p), bytes);
}

static void child_realloc(void *arg)
{
    (void)arg;
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    char *p = arena_heap_realloc(h, NULL, 48);   /* NULL: an allocation */
    CHECK(p != NULL);
    test_fill(p, 48, 1);
    only_block(h, p, 48);

    /* In place: fits its class and uses more than half of it. */
    CHECK(arena_heap_realloc(h, p, 40) == p);
    CHECK(arena_heap_realloc(h, p, 25) == p);
    CHECK(arena_heap_realloc(h, p, 48) == p);
    CHECK_PATTERN(p, 48, 1);

    /* Moving, and staying in the heap: shrink to half, grow, to pages,
     * to more pages, to whole arenas, back to a small block. */
    static const size_t steps[] = {24, 400, 3000, 20000, 400000, 100, 0};
    size_t have = 48;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        char *q = arena_heap_realloc(h, p, n);
        CHECKF(q != NULL, "arena_heap_realloc(%zu -> %zu) failed", have, n);
        CHECKF(q != p, "arena_heap_realloc(%zu -> %zu) stayed in place", have, n);
        size_t kept = have < n ? have : n;
        CHECK_PATTERN(q, kept, 1);
        only_block(h, q, heap_block_size(n));
        test_fill(q, heap_block_size(n), 1);
        p = q;
        have = heap_block_size(n);
    }

    /* Large blocks in place: whole pages, at least half used. */
    p = arena_heap_realloc(h, p, 5000);         /* 8192 */
    CHECK(p != NULL);
    test_fill(p, 8192, 2);
    CHECK(arena_heap_realloc(h, p, 8192) == p);
    CHECK(arena_heap_realloc(h, p, 4097) == p);
    only_block(h, p, 8192);
    CHECK_PATTERN(p, 8192, 2);
    p = arena_heap_realloc(h, p, 600000);       /* 3 arenas */
    CHECK(p != NULL);
    CHECK_PATTERN(p, 8192, 2);
    CHECK(arena_heap_realloc(h, p, 3 * ARENA) == p);
    CHECK(arena_heap_realloc(h, p, 2 * ARENA - 1000) == p);
    only_block(h, p, 3 * ARENA);
    arena_free(p);
    CHECK_EQ(hstats(h).blocks_live, 0);

    /* arena_realloc of a heap block that must move: the new block comes
     * from the calling thread's heap (a pool a thread cache may take:
     * the registry maps it to its class + 1; a user heap's pools to 0). */
    char *a = arena_heap_alloc(h, 64);
    CHECK(a != NULL);
    CHECK_EQ(ar_registry_map(a), 0);
    test_fill(a, 64, 3);
    CHECK(arena_realloc(a, 60) == a);           /* in place */
    char *b = arena_realloc(a, 300);
    CHECK(b != NULL && b != a);
    CHECK_PATTERN(b, 64, 3);
    CHECK_EQ(ar_registry_map(b), 304 / 16);
    CHECK_EQ(hstats(h).blocks_live, 0);
    arena_free(b);

    /* arena_realloc of a heap's large block: also into the thread's. */
    a = arena_heap_alloc(h, 10000);
    CHECK(a != NULL);
    test_fill(a, 10000, 4);
    b = arena_realloc(a, 200);
    CHECK(b != NULL && b != a);
    CHECK_PATTERN(b, 200, 4);
    CHECK_EQ(ar_registry_map(b), 208 / 16);
    CHECK_EQ(hstats(h).blocks_live, 0);
    arena_free(b);
    arena_heap_destroy(h);
}

static void test_realloc_kinds(void **state)
{
    (void)state;
    assert_int_equal(child_run("realloc", child_realloc, NULL), 0);
}

/* ---- calloc, NULL heap ---------------------------------------------------- */

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

static void child_calloc(void *arg)
{
    (void)arg;
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    errno = 0;
    CHECK(arena_heap_calloc(h, SIZE_MAX / 2, 3) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(arena_heap_calloc(h, SIZE_MAX, SIZE_MAX) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(arena_heap_calloc(h, (SIZE_MAX >> 4) + 2, 16) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(hstats(h).blocks_live, 0);
    void *z = arena_heap_calloc(h, 0, 5);
    CHECK(z != NULL);
    arena_free(z);

    /* Dirty blocks of class 304 and a dirty 2-page run, freed; calloc
     * must hand out zeros wherever its block comes from. */
    void *d[40];
    for (int i = 0; i < 40; i++) {
        CHECK((d[i] = arena_heap_alloc(h, 300)) != NULL);
        memset(d[i], 0xff, 304);
    }
    void *big = arena_heap_alloc(h, 8192);
    CHECK(big != NULL);
    memset(big, 0xff, 8192);
    for (int i = 0; i < 40; i++)
        arena_free(d[i]);
    arena_free(big);
    for (int i = 0; i < 40; i++) {
        unsigned char *c = arena_heap_calloc(h, 10, 30);
        CHECK(c != NULL);
        CHECK(all_zero(c, 300));
    }
    unsigned char *c = arena_heap_calloc(h, 2, 4096);
    CHECK(c != NULL);
    CHECK(all_zero(c, 8192));
    c = arena_heap_calloc(h, 3, 100000);
    CHECK(c != NULL);
    CHECK(all_zero(c, 300000));
    arena_heap_destroy(h);

    /* A NULL heap: EINVAL, and nothing happens. */
    errno = 0;
    CHECK(arena_heap_alloc(NULL, 10) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(arena_heap_calloc(NULL, 2, 10) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(arena_heap_realloc(NULL, NULL, 10) == NULL);
    CHECK_EQ(errno, EINVAL);
    arena_heap_destroy(NULL);
    struct arena_heap_stats s;
    memset(&s, 0xa5, sizeof s);
    s.size = sizeof s;
    arena_heap_get_stats(NULL, &s);
    CHECK_EQ(s.blocks_live, 0);
    CHECK_EQ(s.arenas, 0);
    CHECK_EQ(s.bytes_mapped, 0);
}

static void test_calloc_zero(void **state)
{
    (void)state;
    assert_int_equal(child_run("calloc", child_calloc, NULL), 0);
}

/* ---- frees from other threads while the owner allocates ------------------- */

#define REMOTE_N 20000

struct remote_job {
    void **p;
    size_t from, n, step;               /* p[from], p[from + step], ... */
    size_t *sizes;
};

static void *remote_free(void *arg)
{
    struct remote_job *j = arg;
    for (size_t k = 0, i = j->from; k < j->n; k++, i += j->step) {
        CHECK_PATTERN(j->p[i], j->sizes[i], i);
        arena_free(j->p[i]);
    }
    return NULL;
}

static void child_remote(void *arg)
{
    (void)arg;
    size_t n = (size_t)test_count("HEAPS_REMOTE_N", REMOTE_N, REMOTE_N / 10);
    void **p = table(2 * n);
    size_t *sizes = table(2 * n);
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    uint64_t rng = 42;
    for (size_t i = 0; i < n; i++) {
        sizes[i] = test_rand(&rng) % 64 == 0 ? 513 + test_rand(&rng) % 20000
                                             : test_rand(&rng) % 513;
        CHECK((p[i] = arena_heap_alloc(h, sizes[i])) != NULL);
        test_fill(p[i], sizes[i], i);
    }
    /* Two threads free the first n blocks (even and odd) while this one,
     * the owner, allocates n more from the same heap. */
    struct remote_job even = {p, 0, n / 2, 2, sizes}, odd = {p, 1, n / 2, 2, sizes};
    pthread_t t1, t2;
    thread_start(&t1, remote_free, &even);
    thread_start(&t2, remote_free, &odd);
    for (size_t i = n; i < 2 * n; i++) {
        sizes[i] = test_rand(&rng) % 64 == 0 ? 513 + test_rand(&rng) % 20000
                                             : test_rand(&rng) % 513;
        CHECK((p[i] = arena_heap_alloc(h, sizes[i])) != NULL);
        test_fill(p[i], sizes[i], i);
    }
    thread_join(t1);
    thread_join(t2);
    uint64_t bytes = 0;
    for (size_t i = n; i < 2 * n; i++) {
        CHECK_PATTERN(p[i], sizes[i], i);
        bytes += heap_block_size(sizes[i]);
    }
    struct arena_heap_stats s = hstats(h);
    CHECK_EQ(s.blocks_live, n);
    CHECK_EQ(s.bytes_live, bytes);
    ar_validate();
    arena_heap_destroy(h);
    struct arena_stats g = gstats();
    CHECK_EQ(g.heaps_user, 0);
    CHECK_EQ(g.heap_large_live, 0);
    munmap(p, 2 * n * sizeof(void *));
    munmap(sizes, 2 * n * sizeof(void *));
}

static void test_remote(void **state)
{
    (void)state;
    assert_int_equal(child_run("remote frees", child_remote, NULL), 0);
}

/* ---- destroy: every arena back to the OS ---------------------------------- */

struct fill_job {
    struct arena_heap *h;
    size_t small, large, huge;
};

static void *fill_heap(void *arg)
{
    struct fill_job *j = arg;
    uint64_t rng = 7;
    for (size_t i = 0; i < j->small; i++) {
        size_t n = test_rand(&rng) % 513;
        char *p = arena_heap_alloc(j->h, n);
        CHECK(p != NULL);
        memset(p, 1, n);
    }
    for (size_t i = 0; i < j->large; i++)
        CHECK(arena_heap_alloc(j->h, 513 + test_rand(&rng) % 200000) != NULL);
    for (size_t i = 0; i < j->huge; i++)
        CHECK(arena_heap_alloc(j->h, ARENA + 1 + test_rand(&rng) % (2 * ARENA)) != NULL);
    return NULL;
}

static void *destroy_heap(void *arg)
{
    arena_heap_destroy(arg);
    return NULL;
}

static void child_destroy(void *arg)
{
    (void)arg;
    struct arena_stats g0 = gstats();
    CHECK_EQ(g0.arenas_live, 0);
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    struct fill_job j = {h, 50000, 40, 3};
    fill_heap(&j);
    struct arena_heap_stats s = hstats(h);
    CHECK_EQ(s.blocks_live, 50000 + 40 + 3);
    CHECK_EQ(s.large_live, 43);
    struct arena_stats g1 = gstats();
    CHECK_EQ(g1.bytes_mapped, s.bytes_mapped);
    CHECK_EQ(g1.arenas_live, s.arenas);
    uint64_t md = g1.bytes_metadata;
    arena_heap_destroy(h);
    struct arena_stats g2 = gstats();
    CHECK_EQ(g2.arenas_released, s.arenas);
    CHECK_EQ(g2.arenas_live, 0);
    CHECK_EQ(g2.bytes_mapped, 0);
    CHECK_EQ(g2.heaps_user, 0);
    CHECK_EQ(g2.heap_large_live, 0);
    CHECK_EQ(g2.limit_counted, 0);
    CHECK_LT(g2.calls_munmap - g1.calls_munmap, s.arenas);  /* adjacent ones together */
    CHECK_LE(g2.bytes_metadata, md);
    child_note("    destroy: %llu arenas given back in %llu munmap calls",
               (unsigned long long)s.arenas,
               (unsigned long long)(g2.calls_munmap - g1.calls_munmap));

    /* The next heap reuses the destroyed one's descriptor: no metadata
     * grows.  Filled by one thread and destroyed by another. */
    struct arena_heap *h2 = arena_heap_new();
    CHECK(h2 != NULL);
    struct fill_job j2 = {h2, 5000, 10, 1};
    pthread_t t;
    thread_start(&t, fill_heap, &j2);
    thread_join(t);
    s = hstats(h2);
    CHECK_EQ(s.blocks_live, 5011);
    CHECK_EQ(gstats().heaps_user, 1);
    thread_start(&t, destroy_heap, h2);
    thread_join(t);
    struct arena_stats g3 = gstats();
    CHECK_EQ(g3.arenas_live, 0);
    CHECK_EQ(g3.heaps_user, 0);
    CHECK_EQ(g3.arenas_released - g2.arenas_released, s.arenas);
    CHECK_LE(g3.bytes_metadata, md);
}

static void test_destroy(void **state)
{
    (void)state;
    assert_int_equal(child_run("destroy", child_destroy, NULL), 0);
}

/* ---- resident memory right after the destroy ------------------------------ */

#define RSS_OBJECTS 1000000

static void child_rss(void *arg)
{
    (void)arg;
    struct arena_heap *warm = arena_heap_new();   /* the heap descriptors, */
    CHECK(warm != NULL);                         /* registry leaf and such */
    CHECK(arena_heap_alloc(warm, 16) != NULL);
    arena_heap_destroy(warm);
    uint64_t before = test_rss_bytes();
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    uint64_t rng = 11, requested = 0;
    for (size_t i = 0; i < RSS_OBJECTS; i++) {
        size_t n = 16 + test_rand(&rng) % 497;
        char *p = arena_heap_alloc(h, n);
        CHECK(p != NULL);
        memset(p, (int)i, n);
        requested += n;
    }
    for (size_t i = 0; i < 50; i++) {            /* and some large blocks */
        size_t n = 600 + test_rand(&rng) % (1u << 20);
        char *p = arena_heap_alloc(h, n);
        CHECK(p != NULL);
        memset(p, (int)i, n);
        requested += n;
    }
    uint64_t full = test_rss_bytes();
    arena_heap_destroy(h);
    uint64_t after = test_rss_bytes();
    /* The checked build's arena headers carry a bitmap of handed-out
     * blocks (2 KiB each), metadata kept for reuse like the headers. */
    uint64_t allowance = MIB;
#if ARENA_CHECKED
    allowance += gstats().bytes_mapped_peak / ARENA * sizeof(((struct ar_arena *)0)->ck_live);
#endif
    child_note("    RSS before the heap %llu KiB, full %llu KiB (%llu KiB requested), "
               "right after the destroy %llu KiB (allowed: %llu KiB more than before)",
               (unsigned long long)(before >> 10), (unsigned long long)(full >> 10),
               (unsigned long long)(requested >> 10), (unsigned long long)(after >> 10),
               (unsigned long long)(allowance >> 10));
    CHECK_GE(full, before + requested);
    CHECK_LE(after, before + allowance);
}

static void test_rss(void **state)
{
    (void)state;
    if (test_instrumented()) {
        print_message("skipped: under %s, resident memory measures the tool, not libarena\n",
                      test_under_valgrind() ? "valgrind" : "a sanitizer");
        skip();
    }
    assert_int_equal(child_run("rss", child_rss, NULL), 0);
}

/* ---- a huge block's range, after it went back to the OS ------------------ */

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* Map [p, p + n) again, as some other code could, and write all of it. */
static void map_again_and_write(void *p, size_t n, const char *how)
{
    void *q = mmap(p, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (q != MAP_FAILED && q != p) {    /* a kernel that takes the flag as a hint */
        munmap(q, n);
        q = MAP_FAILED;
    }
    if (q == MAP_FAILED) {
        child_note("    %s: the range could not be mapped again: not checked", how);
        return;
    }
    memset(q, 0x5a, n);
    munmap(q, n);
}

static void child_unmapped(void *arg)
{
    (void)arg;
    size_t n = 3 * ARENA - 1000;
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    char *p = arena_heap_alloc(h, n);
    CHECK(p != NULL);
    memset(p, 1, n);
    arena_free(p);
    map_again_and_write(p, 3 * ARENA, "freed");

    p = arena_heap_alloc(h, n);
    CHECK(p != NULL);
    memset(p, 2, n);
    char *q = arena_heap_realloc(h, p, 100);
    CHECK(q != NULL && q != p);
    map_again_and_write(p, 3 * ARENA, "moved by realloc");

    p = arena_heap_alloc(h, n);
    CHECK(p != NULL);
    memset(p, 3, n);
    arena_heap_destroy(h);
    map_again_and_write(p, 3 * ARENA, "destroyed");
}

static void test_unmapped(void **state)
{
    (void)state;
    assert_int_equal(child_run("unmapped huge block", child_unmapped, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_realloc_kinds),
        cmocka_unit_test(test_calloc_zero),
        cmocka_unit_test(test_remote),
        cmocka_unit_test(test_destroy),
        cmocka_unit_test(test_rss),
        cmocka_unit_test(test_unmapped),
    };
    return cmocka_run_group_tests_name("heaps", tests, NULL, NULL);
}
