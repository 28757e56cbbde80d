/*
 * The legacy brk backend, for real: arenas come from the program break,
 * one live block in the topmost arena pins every arena below it, and the
 * break moves down only once the top arenas are empty.
 *
 * Each scenario runs in a forked child (child.h) with ARENA_BACKEND=brk.
 * The child prints nothing through stdio and the glibc malloc is not
 * called between measurements (libarena's metadata comes from mmap), so
 * only libarena moves the break.
 */
#include "arena.h"
#include "backend.h"
#include "internal.h"
#include "child.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ARENA_MASK (~(uintptr_t)(ARENA_ARENA_SIZE - 1))
#define BLOCKS64_PER_ARENA (ARENA_ARENA_SIZE / 64)
#define N_ARENAS 3
#define N (N_ARENAS * BLOCKS64_PER_ARENA)

static uintptr_t arena_of(const void *p) { return (uintptr_t)p & ARENA_MASK; }
static uintptr_t brk_now(void) { return (uintptr_t)sbrk(0); }

struct brk_setup {
    void *b[N];
    uintptr_t arenas[N_ARENAS];   /* ascending */
    uintptr_t brk_start;          /* before the first allocation */
    uintptr_t brk_full;           /* after three arenas          */
};

static void check_syscalls_match(void)
{
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    /* The stats add libarena's metadata calls to the backend's. */
    struct ar_syscalls sc;
    uint64_t meta_mmap, meta_madvise;
    ar_backend_brk.calls(ar_backend_brk.ctx, &sc);
    ar_meta_calls(&meta_mmap, &meta_madvise);
    CHECK_EQ(st.calls_brk, sc.brk);
    CHECK_EQ(st.calls_mmap, sc.mmap + meta_mmap);
    CHECK_EQ(st.calls_munmap, sc.munmap);
    CHECK_EQ(st.calls_madvise, sc.madvise + meta_madvise);
    CHECK(st.backend != NULL && strcmp(st.backend, "brk") == 0);
}

/* Fill three arenas with 64-byte blocks, all carved from the break. */
static void setup(struct brk_setup *s)
{
    setenv("ARENA_BACKEND", "brk", 1);
    unsetenv("ARENA_ARENA_CACHE");
    unsetenv("ARENA_PURGE");
    s->brk_start = brk_now();
    for (size_t i = 0; i < N; i++) {
        s->b[i] = arena_alloc(64);
        CHECK(s->b[i] != NULL);
        test_fill(s->b[i], 64, i);
    }
    s->brk_full = brk_now();
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.arenas_reserved, N_ARENAS);
    CHECK_EQ(st.arenas_live, N_ARENAS);
    CHECK_GE(st.calls_brk, 1);
    /* Arenas come from the break: the only mmap calls are libarena's
     * metadata chunks. */
    uint64_t meta_mmap, meta_madvise;
    ar_meta_calls(&meta_mmap, &meta_madvise);
    CHECK_EQ(st.calls_mmap, meta_mmap);
    CHECK_EQ(st.calls_munmap, 0);
    check_syscalls_match();
    /* The arenas really are the break's memory. */
    CHECK_GE(s->brk_full, s->brk_start + N_ARENAS * ARENA_ARENA_SIZE);
    size_t na = 0;
    for (size_t i = 0; i < N; i++) {
        uintptr_t p = (uintptr_t)s->b[i];
        CHECKF(p >= s->brk_start && p + 64 <= s->brk_full, "block %p outside "
               "the break [%p, %p)", s->b[i], (void *)s->brk_start,
               (void *)s->brk_full);
        uintptr_t a = arena_of(s->b[i]);
        size_t k = 0;
        while (k < na && s->arenas[k] != a)
            k++;
        if (k == na) {
            CHECK(na < N_ARENAS);
            s->arenas[na++] = a;
        }
    }
    CHECK_EQ(na, N_ARENAS);
    for (size_t i = 0; i + 1 < na; i++)        /* sort ascending */
        for (size_t j = i + 1; j < na; j++)
            if (s->arenas[j] < s->arenas[i]) {
                uintptr_t t = s->arenas[i];
                s->arenas[i] = s->arenas[j];
                s->arenas[j] = t;
            }
    CHECK_LE(s->arenas[N_ARENAS - 1] + ARENA_ARENA_SIZE, s->brk_full);
}

/* One block in the topmost arena keeps every arena. */
static void child_top_pins(void *arg)
{
    (void)arg;
    static struct brk_setup s;
    setup(&s);
    uintptr_t top = s.arenas[N_ARENAS - 1];
    size_t keep = N;
    for (size_t i = 0; i < N; i++) {
        CHECK_PATTERN(s.b[i], 64, i);
        if (keep == N && arena_of(s.b[i]) == top) {
            keep = i;
            continue;
        }
        arena_free(s.b[i]);
    }
    CHECK(keep < N);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 1);
    CHECK_EQ(st.arenas_released, 0);
    CHECK_EQ(brk_now(), s.brk_full);

    /* Even asking for it gives no arena back: the break cannot move down
     * past a live block. */
    arena_release();
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.arenas_released, 0);
    CHECK_EQ(st.arenas_live, N_ARENAS);
    CHECK_EQ(brk_now(), s.brk_full);
    CHECK_PATTERN(s.b[keep], 64, keep);
    check_syscalls_match();

    /* The freed arenas below are reused, not taken anew. */
    for (size_t i = 0; i < N; i++) {
        if (i == keep)
            continue;
        s.b[i] = arena_alloc(64);
        CHECK(s.b[i] != NULL);
        test_fill(s.b[i], 64, i + 1);
    }
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.arenas_reserved, N_ARENAS);
    CHECK_EQ(brk_now(), s.brk_full);
    for (size_t i = 0; i < N; i++) {
        if (i == keep)
            continue;
        CHECK_PATTERN(s.b[i], 64, i + 1);
        arena_free(s.b[i]);
    }
    arena_release();
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.arenas_released, 0);

    /* The last block goes: now the arenas go back from the top down. */
    uint64_t brk_calls = st.calls_brk;
    CHECK_PATTERN(s.b[keep], 64, keep);
    arena_free(s.b[keep]);
    arena_release();
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    CHECK_EQ(st.arenas_released, N_ARENAS);
    CHECK_EQ(st.arenas_live, 0);
    CHECK_GT(st.calls_brk, brk_calls);
    uintptr_t end = brk_now();
    CHECKF(end <= s.arenas[0], "break at %p, lowest arena at %p",
           (void *)end, (void *)s.arenas[0]);
    CHECK_GE(end, s.brk_start);
    check_syscalls_match();
}

static void test_top_pins(void **state)
{
    (void)state;
    assert_int_equal(child_run("brk top arena pins all", child_top_pins, NULL), 0);
}

/* One block in the lowest arena keeps only that arena: those above it are
 * given back and the break moves down to it. */
static void child_bottom_pins(void *arg)
{
    (void)arg;
    static struct brk_setup s;
    setup(&s);
    uintptr_t bottom = s.arenas[0];
    size_t keep = N;
    for (size_t i = 0; i < N; i++) {
        CHECK_PATTERN(s.b[i], 64, i);
        if (keep == N && arena_of(s.b[i]) == bottom) {
            keep = i;
            continue;
        }
        arena_free(s.b[i]);
    }
    arena_release();
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 1);
    CHECK_EQ(st.arenas_released, N_ARENAS - 1);
    CHECK_EQ(st.arenas_live, 1);
    uintptr_t end = brk_now();
    CHECKF(end < s.brk_full, "break did not move down (%p)", (void *)end);
    CHECKF(end <= bottom + ARENA_ARENA_SIZE, "break at %p, live arena ends at %p",
           (void *)end, (void *)(bottom + ARENA_ARENA_SIZE));
    CHECK_PATTERN(s.b[keep], 64, keep);
    check_syscalls_match();

    /* Growing again takes new arenas from the break. */
    void *more[BLOCKS64_PER_ARENA + 1];
    for (size_t i = 0; i < BLOCKS64_PER_ARENA + 1; i++) {
        more[i] = arena_alloc(64);
        CHECK(more[i] != NULL);
        test_fill(more[i], 64, 50000 + i);
    }
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_GE(st.arenas_reserved, N_ARENAS + 1);
    CHECK_GT(brk_now(), end);
    for (size_t i = 0; i < BLOCKS64_PER_ARENA + 1; i++) {
        CHECK_PATTERN(more[i], 64, 50000 + i);
        arena_free(more[i]);
    }
    arena_free(s.b[keep]);
    arena_release();
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.arenas_live, 0);
    CHECK_LE(brk_now(), bottom);
    check_syscalls_match();
}

static void test_bottom_pins(void **state)
{
    (void)state;
    assert_int_equal(child_run("brk bottom arena pins itself", child_bottom_pins, NULL), 0);
}

/* Someone else moving the break above our arenas must not break us: the
 * arenas under the foreign memory are kept, nothing is corrupted. */
static void child_foreign_brk(void *arg)
{
    (void)arg;
    static struct brk_setup s;
    setup(&s);
    void *foreign = sbrk(4096);
    CHECK(foreign != (void *)-1);
    memset(foreign, 0x5A, 4096);
    for (size_t i = 0; i < N; i++) {
        CHECK_PATTERN(s.b[i], 64, i);
        arena_free(s.b[i]);
    }
    arena_release();
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    /* The foreign page is still there and untouched. */
    CHECK_GE(brk_now(), (uintptr_t)foreign + 4096);
    for (size_t i = 0; i < 4096; i++)
        CHECK_EQ(((unsigned char *)foreign)[i], 0x5A);
    /* And the kept arenas still serve allocations. */
    void *p = arena_alloc(64);
    CHECK(p != NULL);
    test_fill(p, 64, 1);
    CHECK_PATTERN(p, 64, 1);
    arena_free(p);
    check_syscalls_match();
}

static void test_foreign_brk(void **state)
{
    (void)state;
    assert_int_equal(child_run("brk moved by someone else", child_foreign_brk, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_pins),
        cmocka_unit_test(test_bottom_pins),
        cmocka_unit_test(test_foreign_brk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
