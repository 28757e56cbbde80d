/*
 * The public API, size by size: alignment, usable size, contents,
 * calloc zeroing and overflow, realloc across the small/large boundary,
 * arena_set_backend.  Each test runs in a forked child (child.h).
 */
#include "arena.h"
#include "child.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* More than any address space can hold (2^48 bytes), but not a size
 * above SSIZE_MAX, which memory checkers flag as a caller bug. */
#define IMPOSSIBLE ((size_t)1 << 48)

#define ALIGNED16(p) (((uintptr_t)(p) & 15u) == 0)

static size_t class_size(size_t request)
{
    size_t c = request == 0 ? 0 : (request + 15) / 16 - 1;
    return (c + 1) * 16;
}

static const size_t large_sizes[] = { 513, 520, 1000, 4096, 100000, 1u << 20 };
#define N_LARGE (sizeof large_sizes / sizeof large_sizes[0])

static void check_small_block(void *p, size_t s)
{
    CHECKF(p != NULL, "arena_alloc(%zu) returned NULL", s);
    CHECKF(ALIGNED16(p), "arena_alloc(%zu) = %p is not 16-byte aligned", s, p);
    size_t u = arena_usable_size(p);
    CHECKF(u == class_size(s), "arena_usable_size(arena_alloc(%zu)) = %zu, "
           "class size is %zu", s, u, class_size(s));
}

/* Every size 0..512 and some large ones: allocate all, fill all, allocate
 * a second round, then verify the first round is untouched. */
static void child_every_size(void *arg)
{
    (void)arg;
    enum { NSMALL = ARENA_SMALL_MAX + 1 };
    static void *first[NSMALL], *second[NSMALL];
    static void *large[N_LARGE], *large2[N_LARGE];

    for (size_t s = 0; s < NSMALL; s++) {
        first[s] = arena_alloc(s);
        check_small_block(first[s], s);
        /* The whole usable size belongs to the caller. */
        test_fill(first[s], arena_usable_size(first[s]), 1000 + s);
    }
    for (size_t i = 0; i < N_LARGE; i++) {
        size_t s = large_sizes[i];
        large[i] = arena_alloc(s);
        CHECKF(large[i] != NULL, "arena_alloc(%zu) returned NULL", s);
        CHECKF(ALIGNED16(large[i]), "arena_alloc(%zu) = %p not aligned", s, large[i]);
        CHECKF(arena_usable_size(large[i]) >= s, "arena_usable_size of a "
               "%zu-byte block is %zu", s, arena_usable_size(large[i]));
        test_fill(large[i], s, 5000 + i);
    }
    for (size_t s = NSMALL; s-- > 0;) {
        second[s] = arena_alloc(s);
        check_small_block(second[s], s);
        test_fill(second[s], arena_usable_size(second[s]), 2000 + s);
    }
    for (size_t i = 0; i < N_LARGE; i++) {
        large2[i] = arena_alloc(large_sizes[i]);
        CHECK(large2[i] != NULL);
        test_fill(large2[i], large_sizes[i], 6000 + i);
    }
    for (size_t s = 0; s < NSMALL; s++) {
        CHECK_PATTERN(first[s], class_size(s), 1000 + s);
        CHECK_PATTERN(second[s], class_size(s), 2000 + s);
    }
    for (size_t i = 0; i < N_LARGE; i++) {
        CHECK_PATTERN(large[i], large_sizes[i], 5000 + i);
        CHECK_PATTERN(large2[i], large_sizes[i], 6000 + i);
    }
    /* Free every other block, allocate again, check the survivors. */
    for (size_t s = 0; s < NSMALL; s += 2) {
        arena_free(first[s]);
        first[s] = arena_alloc(s);
        check_small_block(first[s], s);
        test_fill(first[s], class_size(s), 3000 + s);
    }
    for (size_t s = 0; s < NSMALL; s++) {
        CHECK_PATTERN(first[s], class_size(s), (s % 2 ? 1000 : 3000) + s);
        CHECK_PATTERN(second[s], class_size(s), 2000 + s);
        arena_free(first[s]);
        arena_free(second[s]);
    }
    for (size_t i = 0; i < N_LARGE; i++) {
        arena_free(large[i]);
        arena_free(large2[i]);
    }
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    CHECK_EQ(st.large_live, 0);
}

static void test_every_size(void **state)
{
    (void)state;
    assert_int_equal(child_run("every_size", child_every_size, NULL), 0);
}

/* Many blocks of one class: no two overlap, all stay intact. */
static void child_many_blocks(void *arg)
{
    (void)arg;
    enum { N = 3000 };
    static void *b[N];
    for (size_t size = 16; size <= ARENA_SMALL_MAX; size += 112) {
        for (size_t i = 0; i < N; i++) {
            b[i] = arena_alloc(size);
            check_small_block(b[i], size);
            test_fill(b[i], size, size * N + i);
        }
        for (size_t i = 0; i < N; i++)
            CHECK_PATTERN(b[i], size, size * N + i);
        for (size_t i = 0; i < N; i += 3)
            arena_free(b[i]);
        for (size_t i = 0; i < N; i += 3) {
            b[i] = arena_alloc(size);
            check_small_block(b[i], size);
            test_fill(b[i], size, size * N + i + 7);
        }
        for (size_t i = 0; i < N; i++) {
            CHECK_PATTERN(b[i], size, size * N + i + (i % 3 == 0 ? 7 : 0));
            arena_free(b[i]);
        }
    }
}

static void test_many_blocks(void **state)
{
    (void)state;
    assert_int_equal(child_run("many_blocks", child_many_blocks, NULL), 0);
}

static void child_null(void *arg)
{
    (void)arg;
    arena_free(NULL);
    CHECK_EQ(arena_usable_size(NULL), 0);
    void *p = arena_alloc(24);
    CHECK(p != NULL);
    arena_free(NULL);
    CHECK_EQ(arena_usable_size(NULL), 0);
    arena_free(p);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
}

static void test_null(void **state)
{
    (void)state;
    assert_int_equal(child_run("null", child_null, NULL), 0);
}

static void check_zero(const void *p, size_t n, size_t nmemb, size_t size)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        CHECKF(b[i] == 0, "arena_calloc(%zu, %zu): byte %zu is 0x%02x",
               nmemb, size, i, b[i]);
}

/* calloc zeroes fresh blocks and blocks reused dirty, small and large. */
static void child_calloc(void *arg)
{
    (void)arg;
    enum { N = 200 };
    static void *b[N];
    static const size_t sizes[] = { 0, 1, 16, 17, 64, 100, 256, 500, 512,
                                    513, 1000, 4096, 100000 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t s = sizes[k];
        size_t n = s > 4096 ? 4 : N;
        /* Dirty a batch of blocks of this size, free them, calloc again:
         * at least some of the second batch reuses the dirty memory. */
        for (size_t i = 0; i < n; i++) {
            b[i] = arena_alloc(s);
            CHECK(b[i] != NULL);
            memset(b[i], 0xEE, arena_usable_size(b[i]));
        }
        for (size_t i = 0; i < n; i++)
            arena_free(b[i]);
        for (size_t i = 0; i < n; i++) {
            b[i] = arena_calloc(1, s);
            CHECKF(b[i] != NULL, "arena_calloc(1, %zu) returned NULL", s);
            CHECK(ALIGNED16(b[i]));
            CHECK_GE(arena_usable_size(b[i]), s);
            check_zero(b[i], s, 1, s);
            memset(b[i], 0x77, s);
        }
        for (size_t i = 0; i < n; i++)
            arena_free(b[i]);
    }
    /* Element counts and sizes that multiply to small and large totals. */
    static const size_t shapes[][2] = { { 0, 0 }, { 0, 100 }, { 100, 0 },
        { 3, 5 }, { 16, 32 }, { 32, 16 }, { 7, 73 }, { 1000, 1 },
        { 1, 1000 }, { 100, 100 } };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t n = shapes[k][0], s = shapes[k][1];
        void *p = arena_calloc(n, s);
        CHECKF(p != NULL, "arena_calloc(%zu, %zu) returned NULL", n, s);
        CHECK_GE(arena_usable_size(p), n * s);
        check_zero(p, n * s, n, s);
        arena_free(p);
    }
}

static void test_api_calloc(void **state)
{
    (void)state;
    assert_int_equal(child_run("calloc", child_calloc, NULL), 0);
}

static void child_calloc_overflow(void *arg)
{
    (void)arg;
    static const size_t bad[][2] = {
        { SIZE_MAX / 2 + 1, 2 },
        { 2, SIZE_MAX / 2 + 1 },
        { SIZE_MAX, SIZE_MAX },
        { SIZE_MAX, 2 },
        { SIZE_MAX / 16 + 1, 16 },
        { (size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4) },
        { SIZE_MAX / 3 + 1, 3 },
    };
    /* Once before and once after the allocator started. */
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            errno = 0;
            void *p = arena_calloc(bad[k][0], bad[k][1]);
            CHECKF(p == NULL, "arena_calloc(%zu, %zu) = %p, expected NULL",
                   bad[k][0], bad[k][1], p);
            CHECKF(errno == ENOMEM, "arena_calloc(%zu, %zu): errno %d, "
                   "expected ENOMEM", bad[k][0], bad[k][1], errno);
        }
        void *q = arena_alloc(32);
        CHECK(q != NULL);
        arena_free(q);
    }
    /* Requests no allocator can satisfy fail cleanly too.  (Valgrind
     * reports sizes above SSIZE_MAX as an error of the caller: skip those.) */
    errno = 0;
    CHECK(arena_alloc(IMPOSSIBLE) == NULL);
    CHECK_EQ(errno, ENOMEM);
    if (!test_under_valgrind()) {
        errno = 0;
        CHECK(arena_alloc(SIZE_MAX) == NULL);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(arena_alloc(SIZE_MAX - 4096) == NULL);
        CHECK_EQ(errno, ENOMEM);
    }
    /* The allocator stays usable. */
    void *p = arena_calloc(4, 4);
    CHECK(p != NULL);
    check_zero(p, 16, 4, 4);
    arena_free(p);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    CHECK_EQ(st.large_live, 0);
}

static void test_calloc_overflow(void **state)
{
    (void)state;
    assert_int_equal(child_run("calloc_overflow", child_calloc_overflow, NULL), 0);
}

/* realloc from size a to size b keeps min(a, b) bytes. */
static void check_realloc(size_t a, size_t b, uint64_t tag)
{
    void *p = arena_alloc(a);
    CHECKF(p != NULL, "arena_alloc(%zu) returned NULL", a);
    test_fill(p, a, tag);
    /* Some neighbours so an in-place grow cannot clobber anybody. */
    void *n1 = arena_alloc(a);
    CHECK(n1 != NULL);
    test_fill(n1, a, tag + 1);
    void *q = arena_realloc(p, b);
    CHECKF(q != NULL, "arena_realloc(%zu -> %zu) returned NULL", a, b);
    CHECKF(ALIGNED16(q), "arena_realloc(%zu -> %zu) = %p not aligned", a, b, q);
    CHECKF(arena_usable_size(q) >= b, "arena_realloc(%zu -> %zu): usable "
           "size %zu", a, b, arena_usable_size(q));
    size_t keep = a < b ? a : b;
    CHECK_PATTERN(q, keep, tag);
    /* The whole new size is writable. */
    test_fill(q, b, tag + 2);
    void *n2 = arena_alloc(b);
    CHECK(n2 != NULL);
    test_fill(n2, b, tag + 3);
    CHECK_PATTERN(q, b, tag + 2);
    CHECK_PATTERN(n1, a, tag + 1);
    arena_free(q);
    arena_free(n1);
    arena_free(n2);
}

static void child_realloc(void *arg)
{
    (void)arg;
    /* NULL behaves as arena_alloc. */
    void *p = arena_realloc(NULL, 40);
    check_small_block(p, 40);
    test_fill(p, 40, 1);
    arena_free(p);
    p = arena_realloc(NULL, 3000);
    CHECK(p != NULL);
    CHECK_GE(arena_usable_size(p), 3000);
    arena_free(p);

    static const size_t pairs[][2] = {
        /* small -> small, same class, grow and shrink */
        { 1, 16 }, { 16, 1 }, { 17, 32 }, { 24, 20 },
        /* small -> small, other class */
        { 16, 500 }, { 500, 16 }, { 100, 101 }, { 256, 255 }, { 33, 512 },
        { 512, 0 }, { 0, 512 },
        /* small <-> large */
        { 100, 2000 }, { 512, 513 }, { 513, 512 }, { 2000, 100 }, { 0, 100000 },
        { 100000, 1 },
        /* large -> large */
        { 2000, 100000 }, { 100000, 2000 }, { 513, 514 }, { 4096, 1u << 20 },
        { 1u << 20, 600 },
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
        check_realloc(pairs[k][0], pairs[k][1], 100 + 10 * k);

    /* A chain of reallocs through every small size and back. */
    size_t cur = 1;
    p = arena_alloc(cur);
    test_fill(p, cur, 77);
    for (size_t s = 2; s <= 700; s += 3) {
        p = arena_realloc(p, s);
        CHECK(p != NULL);
        CHECK_PATTERN(p, cur, 77);
        test_fill(p, s, 77);
        cur = s;
    }
    for (size_t s = cur; s >= 1; s = s > 5 ? s - 5 : 0) {
        p = arena_realloc(p, s);
        CHECK(p != NULL);
        CHECK_PATTERN(p, s, 77);
        if (s <= 5)
            break;
    }
    arena_free(p);

    /* A block growing one byte at a time from 16 to 512 moves to a class
     * at least a quarter larger each time it outgrows one: 12 moves
     * (16 32 48 64 80 112 144 192 240 304 384 480 512), not one per
     * 16-byte class (31); every block it gets stays more than half used. */
    p = arena_alloc(16);
    test_fill(p, 16, 78);
    size_t moves = 0;
    for (size_t s = 17; s <= ARENA_SMALL_MAX; s++) {
        void *q = arena_realloc(p, s);
        CHECK(q != NULL);
        CHECK_PATTERN(q, s - 1, 78);
        size_t usable = arena_usable_size(q);
        CHECKF(usable >= s && s > usable / 2, "realloc to %zu: usable %zu", s, usable);
        moves += q != p;
        p = q;
        test_fill(p, s, 78);
    }
    CHECKF(moves == 12, "growing 16 -> 512 bytes by 1 moved %zu times", moves);
    arena_free(p);

    /* A failed realloc leaves the block alone. */
    p = arena_alloc(64);
    test_fill(p, 64, 5);
    errno = 0;
    CHECK(arena_realloc(p, IMPOSSIBLE) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_PATTERN(p, 64, 5);
    void *big = arena_alloc(1000);
    CHECK(big != NULL);
    test_fill(big, 1000, 6);
    errno = 0;
    CHECK(arena_realloc(big, IMPOSSIBLE) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_PATTERN(big, 1000, 6);
    arena_free(big);
    errno = 0;
    CHECK(arena_realloc(p, test_under_valgrind() ? IMPOSSIBLE : SIZE_MAX) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_PATTERN(p, 64, 5);
    arena_free(p);

    /* arena_free takes what calloc and realloc return, any size. */
    void *c1 = arena_calloc(3, 7);
    void *c2 = arena_calloc(10, 1000);
    void *r1 = arena_realloc(arena_alloc(10), 300);
    void *r2 = arena_realloc(arena_alloc(300), 3000);
    void *r3 = arena_realloc(arena_alloc(3000), 30);
    CHECK(c1 && c2 && r1 && r2 && r3);
    arena_free(c1);
    arena_free(c2);
    arena_free(r1);
    arena_free(r2);
    arena_free(r3);

    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    CHECK_EQ(st.large_live, 0);
}

static void test_api_realloc(void **state)
{
    (void)state;
    assert_int_equal(child_run("realloc", child_realloc, NULL), 0);
}

static void child_set_backend(void *arg)
{
    const char *name = arg;
    unsetenv("ARENA_BACKEND");
    CHECK_EQ(arena_set_backend("no-such-backend"), EINVAL);
    CHECK_EQ(arena_set_backend(""), EINVAL);
    /* Choosing a backend twice before starting is fine. */
    CHECK_EQ(arena_set_backend(name[0] == 'm' ? "brk" : "mmap"), 0);
    CHECK_EQ(arena_set_backend(name), 0);
    void *p = arena_alloc(64);
    CHECK(p != NULL);
    test_fill(p, 64, 9);
    CHECK_EQ(arena_set_backend("mmap"), EBUSY);
    CHECK_EQ(arena_set_backend("brk"), EBUSY);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK(st.backend != NULL);
    CHECKF(strcmp(st.backend, name) == 0, "stats backend is \"%s\", "
           "expected \"%s\"", st.backend, name);
    CHECK_PATTERN(p, 64, 9);
    arena_free(p);
}

static void test_set_backend_mmap(void **state)
{
    (void)state;
    assert_int_equal(child_run("set_backend(mmap)", child_set_backend, "mmap"), 0);
}

static void test_set_backend_brk(void **state)
{
    (void)state;
    assert_int_equal(child_run("set_backend(brk)", child_set_backend, "brk"), 0);
}

/* Anything that starts the allocator makes the backend choice final. */
static void child_busy_after(void *arg)
{
    int which = *(const int *)arg;
    void *p = NULL;
    switch (which) {
    case 0: p = arena_alloc(1); break;
    case 1: p = arena_calloc(2, 8); break;
    case 2: p = arena_realloc(NULL, 8); break;
    }
    CHECK(p != NULL);
    CHECK_EQ(arena_set_backend("mmap"), EBUSY);
    arena_free(p);
    CHECK_EQ(arena_set_backend("brk"), EBUSY);
}

static void test_set_backend_busy(void **state)
{
    (void)state;
    for (int which = 0; which < 3; which++)
        assert_int_equal(child_run("set_backend busy", child_busy_after, &which), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_size),
        cmocka_unit_test(test_many_blocks),
        cmocka_unit_test(test_null),
        cmocka_unit_test(test_api_calloc),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_api_realloc),
        cmocka_unit_test(test_set_backend_mmap),
        cmocka_unit_test(test_set_backend_brk),
        cmocka_unit_test(test_set_backend_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
