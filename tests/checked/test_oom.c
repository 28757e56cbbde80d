/*
 * Out of memory (suite 'checked'): when no memory can be had, allocations
 * return NULL with errno = ENOMEM, nothing crashes, blocks allocated
 * earlier keep their contents, and allocation works again once memory has
 * been freed.
 *
 * Two sources of failure, each in a forked child (child.h):
 *   - the fake backend (tests/fake_backend.h) refusing reserves;
 *   - setrlimit(RLIMIT_AS) a few MiB above the child's current size, so
 *     that every mmap (arenas, metadata, the system allocator's large
 *     blocks) eventually fails.  Skipped under AddressSanitizer and
 *     valgrind, which need address space of their own.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "arena.h"
#include "backend.h"

#include "../child.h"
#include "../fake_backend.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

#if HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

static int under_valgrind(void)
{
#if HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND)
        return 1;
#endif
    return test_under_valgrind();
}

#define FAKE_FLAGS (AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE)
#define BLOCKS_PER_ARENA (64u * 85u)    /* class 48: 85 blocks per pool */

struct blk {
    unsigned char *p;
    size_t size;
};

static struct blk table[1u << 18];

static void fill(size_t i)
{
    test_fill(table[i].p, table[i].size, i * 7919u + table[i].size);
}

static void verify(size_t i)
{
    CHECK_PATTERN(table[i].p, table[i].size, i * 7919u + table[i].size);
}

/* Allocate size bytes with errno cleared first.  A NULL must come with
 * ENOMEM. */
static void *try_alloc(size_t size)
{
    errno = 0;
    void *p = arena_alloc(size);
    if (p == NULL)
        CHECKF(errno == ENOMEM, "arena_alloc(%zu) = NULL with errno %d, not ENOMEM", size, errno);
    return p;
}

/* ---- the failing fake backend ----------------------------------------- */

static void child_fake_fail_always(void *arg)
{
    (void)arg;
    CHECK_EQ(fake_install(FAKE_FLAGS), 0);

    /* One arena's worth of blocks of class 48, from the one arena the
     * backend gives. */
    size_t n = 0;
    for (; n < 1000; n++) {
        table[n].size = 48;
        CHECK((table[n].p = try_alloc(48)) != NULL);
        fill(n);
    }
    CHECK_EQ(fake.reserves, 1);

    fake.fail_always = 1;
    size_t nulls = 0;
    while (n < BLOCKS_PER_ARENA + 100) {
        unsigned char *p = try_alloc(48);
        if (p == NULL) {
            nulls++;
            break;
        }
        table[n].p = p;
        table[n].size = 48;
        fill(n);
        n++;
    }
    CHECK_EQ(nulls, 1);
    CHECK_EQ(n, BLOCKS_PER_ARENA);      /* every pool of the arena is used */
    CHECK_GE(fake.reserve_failures, 1);

    /* Every entry point fails cleanly while the backend refuses. */
    for (int k = 0; k < 3; k++) {
        CHECK(try_alloc(48) == NULL);
        CHECK(try_alloc(0) == NULL);
        CHECK(try_alloc(1) == NULL);
        CHECK(try_alloc(512) == NULL);
        errno = 0;
        CHECK(arena_calloc(3, 16) == NULL);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(arena_realloc(NULL, 100) == NULL);
        CHECK_EQ(errno, ENOMEM);
        /* realloc into a class with no pool: NULL, the block untouched */
        errno = 0;
        CHECK(arena_realloc(table[5].p, 300) == NULL);
        CHECK_EQ(errno, ENOMEM);
        verify(5);
    }
    /* Large requests do not need the backend. */
    void *big = arena_alloc(100000);
    CHECK(big != NULL);
    arena_free(big);

    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_GE(st.reserve_failures, 1);
    CHECK_EQ(st.arenas_live, 1);
    CHECK_EQ(st.blocks_live, BLOCKS_PER_ARENA);

    for (size_t i = 0; i < n; i++)
        verify(i);

    /* Free the first 50 pools' worth of blocks: whole pools go back to the
     * arena (all but the few blocks the thread cache keeps) and the other
     * 31 classes can have them, without a new reserve. */
    size_t freed = 50 * 85;
    for (size_t i = 0; i < freed; i++)
        arena_free(table[i].p);
    uint64_t reserves = fake.reserves;
    for (size_t k = 0; k < 200; k++) {
        size_t size = 16 + 16 * (k % 32);
        void *p = try_alloc(size);
        CHECKF(p != NULL, "allocation %zu (%zu bytes) failed after frees", k, size);
        memset(p, 0xee, size);
        arena_free(p);
    }
    unsigned char *moved = arena_realloc(table[freed].p, 300);
    CHECK(moved != NULL);
    CHECK_PATTERN(moved, 48, freed * 7919u + 48);
    table[freed].p = moved;
    CHECK_EQ(fake.reserves, reserves);
    for (size_t i = freed + 1; i < n; i++)
        verify(i);

    /* The backend works again: more arenas come. */
    fake.fail_always = 0;
    for (size_t k = 0; k < 2 * BLOCKS_PER_ARENA; k++)
        CHECK(try_alloc(64) != NULL);
    CHECK_GT(fake.reserves, reserves);
}

static void test_fake_backend_fails(void **state)
{
    (void)state;
    assert_int_equal(child_run("fake_fail_always", child_fake_fail_always, NULL), 0);
}

static void *thread_alloc(void *arg)
{
    int *err = arg;
    errno = 0;
    void *p = arena_alloc(32);
    *err = p == NULL ? errno : 0;
    arena_free(p);
    return p;
}

/* The very first reserve fails: the first allocation returns NULL, the
 * next one works.  A new thread whose first allocation fails exits
 * cleanly. */
static void child_fake_fail_first(void *arg)
{
    (void)arg;
    CHECK_EQ(fake_install(FAKE_FLAGS), 0);
    fake.fail_next = 1;
    CHECK(try_alloc(48) == NULL);
    CHECK_EQ(fake.reserve_failures, 1);
    void *p = try_alloc(48);
    CHECK(p != NULL);
    memset(p, 1, 48);

    fake.fail_always = 1;
    /* class 32 needs a second pool: the arena has 63 free, no reserve */
    pthread_t t;
    int err = -1;
    void *got;
    CHECK_EQ(pthread_create(&t, NULL, thread_alloc, &err), 0);
    CHECK_EQ(pthread_join(t, &got), 0);
    CHECK(got != NULL);
    CHECK_EQ(err, 0);

    /* Use up the arena's pools with threads' worth of class-16 blocks,
     * then a new thread gets ENOMEM. */
    size_t n = 0;
    while (n < sizeof table / sizeof table[0]) {
        void *q = try_alloc(16);
        if (q == NULL)
            break;
        table[n++].p = q;
    }
    CHECK(n < sizeof table / sizeof table[0]);
    err = 0;
    CHECK_EQ(pthread_create(&t, NULL, thread_alloc, &err), 0);
    CHECK_EQ(pthread_join(t, &got), 0);
    CHECK(got == NULL);
    CHECK_EQ(err, ENOMEM);

    fake.fail_always = 0;
    CHECK_EQ(pthread_create(&t, NULL, thread_alloc, &err), 0);
    CHECK_EQ(pthread_join(t, &got), 0);
    CHECK(got != NULL);
    for (size_t i = 0; i < n; i++)
        arena_free(table[i].p);
    for (size_t i = 0; i < 48; i++)
        CHECK_EQ(((unsigned char *)p)[i], 1);
    arena_free(p);
}

static void test_fake_backend_fails_first(void **state)
{
    (void)state;
    assert_int_equal(child_run("fake_fail_first", child_fake_fail_first, NULL), 0);
}

/* ---- RLIMIT_AS -------------------------------------------------------- */

/* The process's address-space size in bytes (what RLIMIT_AS limits). */
static size_t vm_size(void)
{
    char buf[128];
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    size_t pages = 0;
    CHECK(fgets(buf, sizeof buf, f) != NULL);
    fclose(f);
    CHECK(sscanf(buf, "%zu", &pages) == 1);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Sizes cycled through: every size class range, and large blocks that
 * go to the system allocator. */
static const size_t rl_sizes[] = { 1, 16, 40, 48, 100, 200, 256, 300, 512, 700, 2000, 24 };
#define RL_NSIZES (sizeof rl_sizes / sizeof rl_sizes[0])
#define RL_HEADROOM ((size_t)12 << 20)

static void child_rlimit(void *arg)
{
    (void)arg;
    void *warm = arena_alloc(48);       /* heap and first arena exist */
    CHECK(warm != NULL);
    void *warm_big = malloc(1 << 20);   /* and the system allocator's arena */
    free(warm_big);

    size_t limit = vm_size() + RL_HEADROOM;
    struct rlimit rl = { limit, limit };
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    child_note("RLIMIT_AS set to %zu MiB (%zu MiB above the current size)", limit >> 20,
               RL_HEADROOM >> 20);

    size_t n = 0, nulls = 0, first_null = 0;
    const size_t cap = sizeof table / sizeof table[0];
    /* Until the small sizes stop succeeding: then keep trying every size
     * for a while; every failure must be a clean ENOMEM. */
    for (size_t k = 0; n < cap && (nulls == 0 || k < first_null + 20 * RL_NSIZES); k++) {
        size_t size = rl_sizes[k % RL_NSIZES];
        unsigned char *p = try_alloc(size);
        if (p == NULL) {
            if (nulls++ == 0)
                first_null = k;
            continue;
        }
        table[n].p = p;
        table[n].size = size;
        fill(n);
        n++;
    }
    CHECKF(n < cap, "%zu blocks under a %zu MiB limit without a failure", n, limit >> 20);
    CHECK_GT(nulls, 0);
    child_note("%zu blocks allocated, then %zu allocations failed with ENOMEM", n, nulls);

    /* Once memory is exhausted, every class without a free block fails. */
    size_t fails = 0;
    void *extra[RL_NSIZES * 4];
    size_t nextra = 0;
    for (size_t k = 0; k < RL_NSIZES * 4; k++) {
        void *p = try_alloc(rl_sizes[k % RL_NSIZES]);
        if (p == NULL)
            fails++;
        else
            extra[nextra++] = p;
    }
    CHECK_GT(fails, 0);
    errno = 0;
    CHECK(arena_calloc(1, (size_t)64 << 20) == NULL);
    CHECK_EQ(errno, ENOMEM);

    for (size_t i = 0; i < n; i++)
        verify(i);

    /* Free every other block, then the same mix of sizes must succeed. */
    for (size_t i = 0; i < n; i += 2)
        arena_free(table[i].p);
    for (size_t i = 0; i < nextra; i++)
        arena_free(extra[i]);
    for (size_t i = 0; i < n; i += 2) {
        table[i].p = try_alloc(table[i].size);
        CHECKF(table[i].p != NULL, "allocation of %zu bytes failed after frees", table[i].size);
        fill(i);
    }
    for (size_t i = 0; i < n; i++)
        verify(i);
    for (size_t i = 0; i < n; i++)
        arena_free(table[i].p);
    arena_free(warm);
    arena_release();
    CHECK(try_alloc(48) != NULL);
}

static void test_rlimit_as(void **state)
{
    (void)state;
#ifdef TEST_ASAN
    print_message("skipped: AddressSanitizer needs more address space than RLIMIT_AS leaves\n");
    skip();
#endif
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifdef TEST_TSAN
    print_message("skipped: ThreadSanitizer needs more address space than RLIMIT_AS leaves\n");
    skip();
#endif
    if (under_valgrind()) {
        print_message("skipped under valgrind\n");
        skip();
    }
    assert_int_equal(child_run("rlimit_as", child_rlimit, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake_backend_fails),
        cmocka_unit_test(test_fake_backend_fails_first),
        cmocka_unit_test(test_rlimit_as),
    };
    return cmocka_run_group_tests_name("oom", tests, NULL, NULL);
}
