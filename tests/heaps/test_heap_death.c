/*
 * Misuses of heaps, each committed in a forked child whose stderr is
 * captured (the harness of tests/checked: death.h).
 *
 * Checked build (-Dchecked=true) only, skipped in the others:
 *   - a free into a destroyed heap is named: "libarena: free of %p into a
 *     destroyed heap", for a small block, a large block (whole pages) and
 *     a huge block (whole arenas), from the owner thread or another one.
 * Every build:
 *   - a destroyed heap's handle is rejected by arena_heap_alloc and by a
 *     second arena_heap_destroy;
 *   - arena_heap_realloc of a block that is not the heap's is rejected;
 *   - no false alarm: a system allocator block (a request above 512
 *     bytes) that the kernel placed where a destroyed heap used to be is
 *     freed normally.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "heaps.h"
#include "checked/death.h"

#ifndef ARENA_CHECKED
#define ARENA_CHECKED 0
#endif

static void skip_unless_checked(void)
{
    if (!ARENA_CHECKED) {
        print_message("skipped: only the checked build (-Dchecked=true) names this\n");
        skip();
    }
}

/* A heap with blocks of every kind, destroyed; the one of `size` bytes
 * is returned. */
static void *block_of_destroyed_heap(size_t size)
{
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    void *keep = NULL;
    static const size_t sizes[] = {48, 300, 5000, 600000};
    for (int round = 0; round < 20; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = arena_heap_alloc(h, sizes[i]);
            CHECK(p != NULL);
            if (sizes[i] == size && round == 10)
                keep = p;
        }
    CHECK(keep != NULL);
    arena_heap_destroy(h);
    return keep;
}

static void misuse_free_small(void)
{
    void *p = block_of_destroyed_heap(48);
    death_expect("libarena: free of %p into a destroyed heap", p);
    arena_free(p);
}

static void misuse_free_large(void)
{
    void *p = block_of_destroyed_heap(5000);
    death_expect("libarena: free of %p into a destroyed heap", p);
    arena_free(p);
}

static void misuse_free_huge(void)
{
    void *p = block_of_destroyed_heap(600000);
    death_expect("libarena: free of %p into a destroyed heap", p);
    arena_free(p);
}

static void *free_it(void *p)
{
    arena_free(p);
    return NULL;
}

static void misuse_free_from_thread(void)
{
    void *p = block_of_destroyed_heap(300);
    death_expect("libarena: free of %p into a destroyed heap", p);
    pthread_t t;
    thread_start(&t, free_it, p);
    thread_join(t);
}

static void test_free_small(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_free_small, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void test_free_large(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_free_large, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void test_free_huge(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_free_huge, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void test_free_from_thread(void **state)
{
    (void)state;
    skip_unless_checked();
    struct death d;
    death_run(&d, misuse_free_from_thread, NULL);
    death_assert_signal(&d, SIGABRT);
}

/* ---- every build ---------------------------------------------------------- */

static void misuse_alloc_destroyed(void)
{
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    CHECK(arena_heap_alloc(h, 10) != NULL);
    arena_heap_destroy(h);
    death_expect("libarena: arena_heap_alloc(%p): not a live heap", (void *)h);
    (void)arena_heap_alloc(h, 10);
}

static void misuse_destroy_twice(void)
{
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    arena_heap_destroy(h);
    death_expect("libarena: arena_heap_destroy(%p): not a live heap", (void *)h);
    arena_heap_destroy(h);
}

static void misuse_realloc_other_heap(void)
{
    struct arena_heap *a = arena_heap_new(), *b = arena_heap_new();
    CHECK(a != NULL && b != NULL);
    void *p = arena_heap_alloc(b, 100);
    CHECK(p != NULL);
    death_expect("libarena: arena_heap_realloc(%p, %p): not a block of this heap", (void *)a, p);
    (void)arena_heap_realloc(a, p, 200);
}

static void misuse_realloc_thread_block(void)
{
    struct arena_heap *a = arena_heap_new();
    CHECK(a != NULL);
    void *p = arena_alloc(100);         /* the thread's heap, not a */
    CHECK(p != NULL);
    death_expect("libarena: arena_heap_realloc(%p, %p): not a block of this heap", (void *)a, p);
    (void)arena_heap_realloc(a, p, 200);
}

static void test_alloc_destroyed(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_alloc_destroyed, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void test_destroy_twice(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_destroy_twice, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void test_realloc_other_heap(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_realloc_other_heap, NULL);
    death_assert_signal(&d, SIGABRT);
}

static void test_realloc_thread_block(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, misuse_realloc_thread_block, NULL);
    death_assert_signal(&d, SIGABRT);
}

/* Not a misuse: large requests go to the system allocator, whose blocks
 * the kernel may place where a destroyed heap's arenas were.  Freeing
 * them must work (the child exits 0).  When no block lands there (a
 * sanitizer's or valgrind's allocator), there is nothing to check. */
static void system_block_in_destroyed_range(void)
{
    struct arena_heap *h = arena_heap_new();
    CHECK(h != NULL);
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < 20000; i++) {
        uintptr_t p = (uintptr_t)arena_heap_alloc(h, 200);
        CHECK(p != 0);
        lo = p < lo ? p : lo;
        hi = p + 200 > hi ? p + 200 : hi;
    }
    arena_heap_destroy(h);
    char *b[8];
    int inside = 0;
    for (int i = 0; i < 8; i++) {       /* all first: glibc maps each one */
        b[i] = arena_alloc(MIB);
        CHECK(b[i] != NULL);
        memset(b[i], i, MIB);
        inside += (uintptr_t)b[i] >= lo && (uintptr_t)b[i] < hi;
    }
    child_note("%d of 8 system blocks of 1 MiB are where the destroyed heap was", inside);
    for (int i = 0; i < 8; i++)
        arena_free(b[i]);
}

static void test_system_block_in_destroyed_range(void **state)
{
    (void)state;
    struct death d;
    death_run(&d, system_block_in_destroyed_range, NULL);
    print_message("    child stderr: %s", d.out);
    death_assert_exit(&d, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_small),
        cmocka_unit_test(test_free_large),
        cmocka_unit_test(test_free_huge),
        cmocka_unit_test(test_free_from_thread),
        cmocka_unit_test(test_alloc_destroyed),
        cmocka_unit_test(test_destroy_twice),
        cmocka_unit_test(test_realloc_other_heap),
        cmocka_unit_test(test_realloc_thread_block),
        cmocka_unit_test(test_system_block_in_destroyed_range),
    };
    print_message("libarena heap misuse tests, %s build\n", ARENA_CHECKED ? "checked" : "release");
    return cmocka_run_group_tests_name("heap-death", tests, NULL, NULL);
}
