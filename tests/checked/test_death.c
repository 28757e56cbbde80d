/*
 * Death tests (suite 'checked'): misuses of the allocator, each committed
 * in a forked child.  The parent asserts that the child died of SIGABRT and
 * that its stderr names the pointer and what is wrong.
 *
 * Built in every configuration.  With -Dchecked=true (ARENA_CHECKED) the
 * checked build's reports are tested; without it, what the release build
 * catches on its own (docs/hardening.md lists both).  Cases that only one
 * build detects are skipped in the other.
 *
 * Pointers are computed in the child, which announces the exact text it
 * expects before the misuse (death.h).  Sizes: a request of 40 or 48
 * bytes is served from size class 48 (85 blocks per 4 KiB pool).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "arena.h"
#include "internal.h"

#include "../child.h"
#include "death.h"

#ifndef ARENA_CHECKED
#define ARENA_CHECKED 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
/* From the sanitizer runtime (declared in compiler-rt's
 * allocator_interface.h, which gcc does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
/* The checked build's own detection is tested: ASan, which sees the
 * freed block poisoned, would report the write first (buggy.c tests that). */
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifdef TEST_TSAN
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Under ThreadSanitizer, malloc and free are its allocator's: it neither
 * reports a double free nor rejects a pointer it did not hand out (it
 * fails an internal CHECK instead). */
static void skip_under_tsan(void)
{
#ifdef TEST_TSAN
    print_message("SKIP: under ThreadSanitizer the system allocator is TSan's, which does not check frees\n");
    skip();
#endif
}

#define CLASS48 48u                     /* blocks per pool: 4096 / 48 = 85 */

#if HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

/* Under valgrind, malloc and free are memcheck's: it reports a bad free
 * and carries on, where glibc aborts. */
static void skip_under_valgrind(void)
{
#if HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND) {
        print_message("SKIP: under valgrind the system allocator is memcheck's, which reports a bad free and goes on\n");
        skip();
    }
#endif
    if (test_under_valgrind()) {
        print_message("SKIP: under valgrind the system allocator is memcheck's, which reports a bad free and goes on\n");
        skip();
    }
}

static const char *const no_tcache[] = { "ARENA_TCACHE=0", NULL };

static void skip_unless_checked(void)
{
    if (!ARENA_CHECKED) {
        print_message("SKIP: only the checked build (-Dchecked=true) detects this\n");
        skip();
    }
}

/* ---- misuses caught by every build ------------------------------------ */

/* A pointer inside one of our arenas, in a pool that no heap holds. */
static void misuse_free_unused_pool(void)
{
    char *p = arena_alloc(40);
    CHECK(p != NULL);
    struct ar_arena *a = ar_registry_arena(p);
    CHECK(a != NULL);
    unsigned i;
    for (i = 0; i < AR_POOLS; i++)
        if (ar_state_get(&a->pools[i]) == AR_POOL_FREE)
            break;
    CHECK(i < AR_POOLS);
    char *q = (char *)a->base + (size_t)i * AR_POOL_SIZE + 3 * CLASS48;
    death_expect("libarena: invalid free of %p: not an allocated block "
                 "(its pool is not in use)", (void *)q);
    arena_free(q);
}

static void test_free_unused_pool(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_free_unused_pool, NULL);
    death_assert_signal(&d, SIGABRT);
}

/* The only block of the current pool freed twice, thread cache off: in the
 * release build the pool's count runs through the heap's hold. */
static void misuse_double_free_current(void)
{
    void *p = arena_alloc(40);
    CHECK(p != NULL);
    arena_free(p);
    death_expect("libarena: double free of %p (size class 48)", p);
    arena_free(p);
}

static void test_double_free_no_tcache(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_double_free_current, no_tcache);
    death_assert_signal(&d, SIGABRT);
}

static void *alloc_one_and_exit(void *arg)
{
    void **out = arg;
    out[0] = arena_alloc(48);
    out[1] = NULL;
    return NULL;
}

/* A thread allocates a block and exits (its heap is dead, its pool an
 * orphan); the main thread frees the block twice.  The first free is a
 * remote free that makes the main thread take the dead heap over; the
 * second leaves fewer blocks out than wait on the pool's remote list: a
 * double free, in every build. */
static void misuse_orphan_free_twice(void)
{
    void *blk[2];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, alloc_one_and_exit, blk) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(blk[0] != NULL);
    arena_free(blk[0]);
    death_expect("libarena: double free of %p (size class 48)", blk[0]);
    arena_free(blk[0]);
}

static void test_orphan_free_twice(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_orphan_free_twice, no_tcache);
    death_assert_signal(&d, SIGABRT);
}

struct remote {
    pthread_barrier_t bar;
    void *a;
};

/* Owner: allocate a block, let the main thread free it (twice), then
 * allocate until the pool's free list runs dry and the remote list is
 * taken over. */
static void *owner_thread(void *arg)
{
    struct remote *r = arg;
    r->a = arena_alloc(48);
    pthread_barrier_wait(&r->bar);
    pthread_barrier_wait(&r->bar);
    for (unsigned i = 0; i < 2 * AR_POOL_SIZE / CLASS48; i++)
        if (arena_alloc(48) == NULL)
            child_fail(__FILE__, __LINE__, "allocation failed");
    return NULL;
}

/* A block of a live thread freed twice by another thread (thread cache
 * off, so both frees go to the pool's remote list).  Checked build: the
 * second free is reported.  Release build: the remote list now loops; the
 * owner detects it when it takes the list over. */
static void misuse_remote_double_free(void)
{
    struct remote r;
    pthread_t t;
    CHECK(pthread_barrier_init(&r.bar, NULL, 2) == 0);
    CHECK(pthread_create(&t, NULL, owner_thread, &r) == 0);
    pthread_barrier_wait(&r.bar);
    CHECK(r.a != NULL);
    arena_free(r.a);
    death_expect("libarena: double free of %p (size class 48)", r.a);
    arena_free(r.a);
    pthread_barrier_wait(&r.bar);
    pthread_join(t, NULL);
}

static void test_remote_double_free(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_remote_double_free, no_tcache);
    death_assert_signal(&d, SIGABRT);
}

static void *alloc_two_and_exit(void *arg)
{
    void **out = arg;
    out[0] = arena_alloc(48);
    out[1] = arena_alloc(48);
    return NULL;
}

/* An orphan pool with two live blocks; the main thread frees the first one
 * twice.  Checked build: reported at once.  Release build: the counts still
 * look possible while the other block is out; the error surfaces,
 * misattributed, when that other block is freed. */
static void misuse_orphan_double_free(void)
{
    void *blk[2];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, alloc_two_and_exit, blk) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(blk[0] != NULL && blk[1] != NULL);
    arena_free(blk[0]);
    if (ARENA_CHECKED)
        death_expect("libarena: double free of %p (size class 48)", blk[0]);
    arena_free(blk[0]);
    /* The release build cannot tell yet: blk[1] is still out.  Its free
     * leaves fewer blocks out than wait on the remote list, so the pool's
     * counts expose the double free there. */
    death_expect("libarena: double free of %p (size class 48)", blk[1]);
    arena_free(blk[1]);
}

static void test_orphan_double_free(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_orphan_double_free, no_tcache);
    death_assert_signal(&d, SIGABRT);
}

/* ---- pointers that are not ours go to the system allocator ------------ */

/* Bytes the system allocator has handed out and not taken back.  glibc
 * counts blocks in its own per-thread cache as in use, so only a block it
 * maps on its own (1 MiB) shows there; ASan counts every block. */
static size_t system_bytes_in_use(void)
{
#if defined(TEST_ASAN) || defined(TEST_TSAN)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

static void foreign_pointers(void)
{
    void *mine = arena_alloc(48);       /* the allocator is running */
    CHECK(mine != NULL);
    static const size_t sizes[] = { 24, 48, 200, 512, 4000, (size_t)1 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        CHECK(p != NULL);
        CHECK(ar_registry_arena(p) == NULL);
        memset(p, 0x5a, sizes[i]);
        size_t before = system_bytes_in_use();
        arena_free(p);
        size_t after = system_bytes_in_use();
#if !defined(TEST_ASAN) && !defined(TEST_TSAN)
        if (sizes[i] < ((size_t)1 << 20))
            continue;
#endif
        CHECKF(after + sizes[i] <= before,
               "arena_free of a %zu-byte malloc block: system allocator in use %zu -> %zu",
               sizes[i], before, after);
    }
    arena_free(mine);
}

static void test_foreign_pointer_to_system(void **state)
{
    (void)state;
    skip_under_valgrind();
    struct death d;
    death_run(&d, foreign_pointers, NULL);
    death_assert_exit(&d, 0);
}

/* A small malloc block passed to arena_free and then to free: the system
 * allocator sees the second free as a double free, so the first one
 * reached it. */
static void misuse_foreign_then_free(void)
{
    void *mine = arena_alloc(48);
    CHECK(mine != NULL);
    void *p = malloc(40);
    CHECK(p != NULL);
    arena_free(p);
    free(p);
}

static void test_foreign_pointer_freed(void **state)
{
    (void)state;
    skip_under_valgrind();
    skip_under_tsan();
    struct death d;
    death_run(&d, misuse_foreign_then_free, NULL);
    print_message("    child stderr: %s", d.out);
#ifdef TEST_ASAN
    if (WIFEXITED(d.status) && WEXITSTATUS(d.status) != 0 &&
        death_output_has(&d, "attempting double-free"))
        return;
#else
    if (WIFSIGNALED(d.status) && WTERMSIG(d.status) == SIGABRT &&
        death_output_has(&d, "double free"))
        return;
#endif
    print_message("child stderr:\n%s\n", d.out);
    fail_msg("free() after arena_free() of a malloc block was not a double free");
}

/* A pointer into an arena's metadata (a pool descriptor).  Descriptors
 * live outside the arenas, so the registry does not know the pointer; every
 * build recognises libarena's metadata memory before handing a foreign
 * pointer to the system allocator, and reports it. */
static void misuse_free_metadata(void)
{
    char *p = arena_alloc(48);
    CHECK(p != NULL);
    struct ar_arena *a = ar_registry_arena(p);
    CHECK(a != NULL);
    CHECK(ar_registry_arena(&a->pools[1]) == NULL);
    death_expect("libarena: invalid free of %p: it points into libarena's metadata",
                 (void *)&a->pools[1]);
    arena_free(&a->pools[1]);
}

static void test_free_metadata(void **state)
{
    (void)state;
    skip_under_valgrind();
    skip_under_tsan();
    struct death d;
    death_run(&d, misuse_free_metadata, NULL);
    print_message("    child stderr: %s", d.out);
    death_assert_signal(&d, SIGABRT);
}

/* The same block freed twice in a row with the thread cache on: the free
 * fast path compares the block with the head of its cache (every build). */
static void misuse_double_free_cached(void)
{
    void *p = arena_alloc(40);
    CHECK(p != NULL);
    arena_free(p);
    death_expect("libarena: double free of %p (size class 48)", p);
    arena_free(p);
}

static void test_double_free_cached(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_double_free_cached, NULL);
    death_assert_signal(&d, SIGABRT);
}

/* ---- forged free-list links (every build) ------------------------------ */

/* A write after free that plants a pointer in a freed block's first 8
 * bytes, where a block on a pool's local or remote free list keeps its
 * link.  Links are stored encoded (next ^ block address ^ a per-process
 * secret) and checked when followed, so the planted word decodes to an
 * address that is not a block of the pool: the allocator must abort with
 * "corrupted free list" and never hand out the planted address.  Blocks in
 * a thread cache carry no link (the cache is an array in libarena's
 * metadata), so a word planted in one changes nothing.
 *
 * Sanitizers: ASan sees a freed block as poisoned and valgrind memcheck
 * (in a -Dvalgrind=true build) as freed, so either would report the write
 * itself first.  The test marks the 8 bytes addressable before writing
 * them (as misuse_write_after_free does), so that what is tested is
 * libarena's own check, in every configuration.  The checked build fills
 * freed blocks with 0xdf past their first 8 bytes only, so a write into
 * the link word is not a "write to freed block" there: it reports the same
 * corrupted link. */

#if HAVE_VALGRIND_H
#include <valgrind/memcheck.h>
#define VG_WRITABLE(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#else
#define VG_WRITABLE(p, n) ((void)(p), (void)(n))
#endif

/* The child exits with this when the allocator returned the forged
 * address (instead of dying of SIGABRT). */
#define FORGED_RETURNED 42

/* An aligned address outside every arena: what an attacker would plant. */
static _Alignas(64) unsigned char forged_target[4096];

static void forge_link(void *block, const void *target)
{
    uintptr_t w = (uintptr_t)target;
    UNPOISON(block, sizeof w);
    VG_WRITABLE(block, sizeof w);
    memcpy(block, &w, sizeof w);
}

/* Allocate size-byte blocks until `limit`; the process must abort before.
 * Returning `forged` ends the child with FORGED_RETURNED. */
static void alloc_until_abort(size_t size, const void *forged, unsigned limit)
{
    for (unsigned i = 0; i < limit; i++) {
        void *q = arena_alloc(size);
        if (q == forged) {
            child_note("the allocator returned the forged address %p after %u allocations",
                       q, i + 1);
            _exit(FORGED_RETURNED);
        }
        CHECKF(q != NULL, "allocation %u failed", i + 1);
    }
    child_fail(__FILE__, __LINE__, "%u allocations of %zu bytes after the link was forged: "
               "no report", limit, size);
}

static void assert_forged_abort(const struct death *d)
{
    if (WIFEXITED(d->status) && WEXITSTATUS(d->status) == FORGED_RETURNED) {
        print_message("child stderr:\n%s\n", d->out);
        fail_msg("the allocator handed out the forged address");
    }
    death_assert_signal(d, SIGABRT);
}

enum forged_kind { FORGED_STATIC, FORGED_OTHER_CLASS, FORGED_LIVE_BLOCK };
static enum forged_kind forged_kind;    /* set before death_run */

/* The address planted: outside every arena, a live block of another size
 * class (a pool of class 208), or a live block of the same pool (the
 * aim of such a write: one block handed out twice). */
static const void *forged_address(void *same_pool_live)
{
    switch (forged_kind) {
    case FORGED_OTHER_CLASS: {
        void *other = arena_alloc(200);
        CHECK(other != NULL);
        CHECK(ar_registry_arena(other) != NULL);
        return other;
    }
    case FORGED_LIVE_BLOCK:
        return same_pool_live;
    default:
        return forged_target;
    }
}

/* Thread cache off: a freed block goes straight onto its pool's local
 * free list, at its head, and the next allocation of the class takes it,
 * following (decoding) its link. */
static void misuse_forge_local(void)
{
    void *blk[8];
    for (int i = 0; i < 8; i++)
        CHECK((blk[i] = arena_alloc(48)) != NULL);
    const void *forged = forged_address(blk[5]);
    char *pool = (char *)((uintptr_t)blk[3] & ~(uintptr_t)(AR_POOL_SIZE - 1));
    arena_free(blk[3]);
    forge_link(blk[3], forged);
    death_expect("libarena: corrupted free list (local) in pool %p (size class 48): "
                 "the link in %p points to ", (void *)pool, blk[3]);
    alloc_until_abort(48, forged, 4 * AR_POOL_SIZE / CLASS48);
}

static void run_forge_local(enum forged_kind kind)
{
    struct death d;
    forged_kind = kind;
    death_run(&d, misuse_forge_local, no_tcache);
    assert_forged_abort(&d);
}

static void test_forged_local_link(void **state)
{
    (void)state;
    run_forge_local(FORGED_STATIC);
}

static void test_forged_local_link_other_class(void **state)
{
    (void)state;
    run_forge_local(FORGED_OTHER_CLASS);
}

static void test_forged_local_link_live_block(void **state)
{
    (void)state;
    run_forge_local(FORGED_LIVE_BLOCK);
}

/* Thread cache on: blocks reach their pools' local lists when the cache
 * overflows and its oldest half is flushed.  Every other one of 400
 * blocks is freed (their pools keep live blocks, so none goes back); the
 * head of a pool's local list gets the forged link.  Allocating on empties
 * the cache, then refills from the class's pools, which all come before a
 * new pool. */
static void misuse_forge_flushed(void)
{
    enum { N = 400 };
    static void *blk[N];
    for (int i = 0; i < N; i++)
        CHECK((blk[i] = arena_alloc(48)) != NULL);
    const void *forged = forged_address(blk[N - 1]);
    for (int i = 0; i < N; i += 2)
        arena_free(blk[i]);
    void *head = NULL;
    struct ar_pool *pool = NULL;
    for (int i = 1; i < N && head == NULL; i += 2) {
        struct ar_arena *a = ar_registry_arena(blk[i]);
        CHECK(a != NULL);
        pool = ar_pool_of(a, blk[i]);
        head = pool->free;
    }
    CHECKF(head != NULL, "no pool of class 48 has a local free list after %d frees "
           "(the thread cache did not flush?)", N / 2);
    forge_link(head, forged);
    death_expect("libarena: corrupted free list (local) in pool %p (size class 48): "
                 "the link in %p points to ", (void *)ar_pool_base(pool), head);
    alloc_until_abort(48, forged, 4 * N);
}

static void test_forged_flushed_link(void **state)
{
    (void)state;
    struct death d;
    forged_kind = FORGED_STATIC;
    death_run(&d, misuse_forge_flushed, NULL);
    assert_forged_abort(&d);
}

static void test_forged_flushed_link_other_class(void **state)
{
    (void)state;
    struct death d;
    forged_kind = FORGED_OTHER_CLASS;
    death_run(&d, misuse_forge_flushed, NULL);
    assert_forged_abort(&d);
}

static void *free_one(void *arg)
{
    arena_free(arg);
    return NULL;
}

/* A block freed by another thread that never allocated (no heap, no
 * cache): it goes onto its pool's remote list, whose links are encoded
 * the same way.  The owner takes the list over when its cache and the
 * pool's local list run dry, and follows the forged link then. */
static void misuse_forge_remote(void)
{
    void *blk[8];
    for (int i = 0; i < 8; i++)
        CHECK((blk[i] = arena_alloc(48)) != NULL);
    const void *forged = forged_address(blk[5]);
    char *pool = (char *)((uintptr_t)blk[3] & ~(uintptr_t)(AR_POOL_SIZE - 1));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_one, blk[3]) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    struct ar_pool *p = ar_pool_of(ar_registry_arena(blk[3]), blk[3]);
    CHECKF(atomic_load(&p->remote) == (uintptr_t)blk[3],
           "the block freed by the other thread is not at the head of its pool's remote list");
    forge_link(blk[3], forged);
    death_expect("libarena: corrupted free list (remote) in pool %p (size class 48): "
                 "the link in %p points to ", (void *)pool, blk[3]);
    alloc_until_abort(48, forged, 4 * AR_POOL_SIZE / CLASS48);
}

static void test_forged_remote_link(void **state)
{
    (void)state;
    struct death d;
    forged_kind = FORGED_STATIC;
    death_run(&d, misuse_forge_remote, NULL);
    assert_forged_abort(&d);
}

static void test_forged_remote_link_other_class(void **state)
{
    (void)state;
    struct death d;
    forged_kind = FORGED_OTHER_CLASS;
    death_run(&d, misuse_forge_remote, NULL);
    assert_forged_abort(&d);
}

static void test_forged_remote_link_no_tcache(void **state)
{
    (void)state;
    struct death d;
    forged_kind = FORGED_LIVE_BLOCK;
    death_run(&d, misuse_forge_remote, no_tcache);
    assert_forged_abort(&d);
}

/* A block in the thread cache has no link: the planted word is not read.
 * The block comes back as the next allocation (the cache is a stack), and
 * neither it nor any later allocation is the planted address.  The child
 * exits 0 in every build (the checked build's fill starts after the first
 * 8 bytes, so it has nothing to report either). */
static void forge_cached(void)
{
    void *blk[8];
    for (int i = 0; i < 8; i++)
        CHECK((blk[i] = arena_alloc(48)) != NULL);
    arena_free(blk[3]);
    forge_link(blk[3], forged_target);
    void *q = arena_alloc(48);
    CHECKF(q == blk[3], "the cached block %p did not come back first (got %p)", blk[3], q);
    for (unsigned i = 0; i < 4 * AR_POOL_SIZE / CLASS48; i++) {
        void *r = arena_alloc(48);
        CHECK(r != NULL);
        CHECKF(r != (void *)forged_target, "the forged address came back");
    }
}

static void test_forged_cached_block(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, forge_cached, NULL);
    death_assert_exit(&d, 0);
}

/* ---- checked build only ----------------------------------------------- */

static void misuse_double_free(void)
{
    void *p = arena_alloc(48);
    void *q = arena_alloc(48);
    CHECK(p != NULL && q != NULL);
    arena_free(p);
    arena_free(q);
    death_expect("libarena: double free of %p (size class 48)", p);
    arena_free(p);
}

static void test_double_free(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_double_free, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void misuse_double_free_live_pool(void)
{
    void *blk[10];
    for (int i = 0; i < 10; i++)
        CHECK((blk[i] = arena_alloc(48)) != NULL);
    arena_free(blk[4]);
    death_expect("libarena: double free of %p (size class 48)", blk[4]);
    arena_free(blk[4]);
}

/* Thread cache off, other blocks live: the release build's count check
 * cannot see this one. */
static void test_double_free_live_pool(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_double_free_live_pool, no_tcache);
    death_assert_signal(&d, SIGABRT);
}

static void misuse_interior(void)
{
    char *p = arena_alloc(48);
    CHECK(p != NULL);
    death_expect("libarena: invalid free of %p: not the start of a block "
                 "(size class 48, the block there starts at %p)", (void *)(p + 16), (void *)p);
    arena_free(p + 16);
}

static void test_interior_pointer(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_interior, NULL);
    death_assert_signal(&d, SIGABRT);
}

/* 85 blocks of 48 bytes fill 4080 bytes of a pool: the last 16 bytes are
 * no block at all. */
static void misuse_pool_tail(void)
{
    char *p = arena_alloc(48);
    CHECK(p != NULL);
    char *base = (char *)((uintptr_t)p & ~(uintptr_t)(AR_POOL_SIZE - 1));
    char *tail = base + 85 * CLASS48;
    death_expect("libarena: invalid free of %p: not the start of a block "
                 "(size class 48, the block there starts at %p)", (void *)tail,
                 (void *)(base + 84 * CLASS48));
    arena_free(tail);
}

static void test_pool_tail(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_pool_tail, NULL);
    death_assert_signal(&d, SIGABRT);
}

/* Write into a freed block, then allocate it again (it comes back first:
 * thread caches and pool free lists are last in, first out). */
static void misuse_write_after_free(void)
{
    unsigned char *p = arena_alloc(48);
    CHECK(p != NULL);
    memset(p, 1, 48);
    arena_free(p);
    UNPOISON(p, 48);
    p[20] = 0x42;
    death_expect("libarena: write to freed block %p (size class 48) at offset 20", (void *)p);
    void *q = arena_alloc(48);
    child_fail(__FILE__, __LINE__, "the block came back (%p) without a report", q);
}

static void test_write_after_free(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_write_after_free, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void test_write_after_free_no_tcache(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_write_after_free, no_tcache);
    death_assert_signal(&d, SIGABRT);
}

/* An overflow from one block into its free neighbour. */
static void misuse_overflow_into_free(void)
{
    unsigned char *a = arena_alloc(48);
    unsigned char *b = arena_alloc(48);
    CHECK(a != NULL && b != NULL);
    CHECKF(b == a + CLASS48, "blocks %p and %p are not neighbours", (void *)a, (void *)b);
    arena_free(b);
    UNPOISON(b, 48);
    memset(a, 0x77, 48 + 30);           /* 30 bytes too many */
    death_expect("libarena: write to freed block %p (size class 48) at offset 8", (void *)b);
    void *q = arena_alloc(48);
    child_fail(__FILE__, __LINE__, "the block came back (%p) without a report", q);
}

static void test_overflow_into_free(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_overflow_into_free, NULL);
    death_assert_signal(&d, SIGABRT);
}

/* The same misuses through realloc: it frees the old block. */
static void misuse_realloc_then_free(void)
{
    void *p = arena_alloc(48);
    CHECK(p != NULL);
    void *q = arena_realloc(p, 200);
    CHECK(q != NULL && q != p);
    death_expect("libarena: double free of %p (size class 48)", p);
    arena_free(p);
}

static void test_free_after_realloc(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_realloc_then_free, NULL);
    death_assert_signal(&d, SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_unused_pool),
        cmocka_unit_test(test_double_free_no_tcache),
        cmocka_unit_test(test_orphan_free_twice),
        cmocka_unit_test(test_remote_double_free),
        cmocka_unit_test(test_orphan_double_free),
        cmocka_unit_test(test_foreign_pointer_to_system),
        cmocka_unit_test(test_foreign_pointer_freed),
        cmocka_unit_test(test_free_metadata),
        cmocka_unit_test(test_double_free_cached),
        cmocka_unit_test(test_double_free),
        cmocka_unit_test(test_double_free_live_pool),
        cmocka_unit_test(test_interior_pointer),
        cmocka_unit_test(test_pool_tail),
        cmocka_unit_test(test_write_after_free),
        cmocka_unit_test(test_write_after_free_no_tcache),
        cmocka_unit_test(test_overflow_into_free),
        cmocka_unit_test(test_free_after_realloc),
        cmocka_unit_test(test_forged_local_link),
        cmocka_unit_test(test_forged_local_link_other_class),
        cmocka_unit_test(test_forged_local_link_live_block),
        cmocka_unit_test(test_forged_flushed_link),
        cmocka_unit_test(test_forged_flushed_link_other_class),
        cmocka_unit_test(test_forged_remote_link),
        cmocka_unit_test(test_forged_remote_link_other_class),
        cmocka_unit_test(test_forged_remote_link_no_tcache),
        cmocka_unit_test(test_forged_cached_block),
    };
    print_message("libarena death tests, %s build\n", ARENA_CHECKED ? "checked" : "release");
    return cmocka_run_group_tests_name("checked", tests, NULL, NULL);
}
