/*
 * Randomized differential test: a long random sequence of alloc, calloc,
 * realloc and free on a table of slots, checked against a model of what
 * every live block must contain.  Each block holds a pattern derived from
 * (slot, generation) that is verified before the block is freed or
 * reallocated, so any overlap, lost write or premature reuse shows up.
 *
 *   TEST_SEED=n   seed (printed; default fixed)
 *   TEST_OPS=n    operations per run (default 1,000,000: a few seconds
 *                 even under valgrind)
 */
#include "arena.h"
#include "child.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NSLOTS 4096
#define DEFAULT_SEED 0x5eed1234abcdULL

enum kind { KIND_SMALL, KIND_LARGE, KIND_EITHER };

struct slot {
    unsigned char *p;
    size_t size;
    uint32_t gen;
    enum kind kind;
};

struct run {
    const char *name;
    const char *env[3][2];   /* variables to set in the child */
    int expect_all_released; /* arena_release() empties everything */
};

static uint64_t seed;
static uint64_t nops;

static uint64_t tag_of(size_t slot, uint32_t gen)
{
    return ((uint64_t)slot << 32) | gen;
}

static size_t random_size(uint64_t *rng)
{
    uint64_t r = test_rand(rng);
    unsigned pick = (unsigned)(r % 100);
    r >>= 8;
    if (pick < 45)
        return (size_t)(r % 129);                 /* 0..128   */
    if (pick < 92)
        return (size_t)(r % (ARENA_SMALL_MAX + 1)); /* 0..512   */
    return ARENA_SMALL_MAX + 1 + (size_t)(r % (4096 - ARENA_SMALL_MAX));
}

static enum kind kind_of_new(size_t size)
{
    return size <= ARENA_SMALL_MAX ? KIND_SMALL : KIND_LARGE;
}

static void check_new_block(const struct slot *s, size_t i, const char *op)
{
    CHECKF(s->p != NULL, "op %s size %zu slot %zu returned NULL", op, s->size, i);
    CHECKF(((uintptr_t)s->p & 15u) == 0, "op %s size %zu: %p not aligned",
           op, s->size, (void *)s->p);
    CHECKF(arena_usable_size(s->p) >= s->size, "op %s size %zu: usable %zu",
           op, s->size, arena_usable_size(s->p));
}

static void check_counts(const struct slot *slots)
{
    uint64_t live = 0, small = 0, large = 0;
    for (size_t i = 0; i < NSLOTS; i++) {
        if (!slots[i].p)
            continue;
        live++;
        small += slots[i].kind == KIND_SMALL;
        large += slots[i].kind == KIND_LARGE;
    }
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live + st.large_live, live);
    CHECK_GE(st.blocks_live, small);
    CHECK_GE(st.large_live, large);
}

static void child_random(void *arg)
{
    const struct run *run = arg;
    for (size_t i = 0; i < 3 && run->env[i][0]; i++)
        setenv(run->env[i][0], run->env[i][1], 1);

    static struct slot slots[NSLOTS];
    uint64_t rng = seed ? seed : DEFAULT_SEED;
    uint64_t step = nops / 4 ? nops / 4 : 1;

    for (uint64_t op = 0; op < nops; op++) {
        if (op % step == 0 && nops >= 100000)
            child_note("%s: step %llu of 4: %llu ops done", run->name,
                       (unsigned long long)(op / step + 1),
                       (unsigned long long)op);
        if (op % 65536 == 0)
            check_counts(slots);
        uint64_t r = test_rand(&rng);
        size_t i = (size_t)(r % NSLOTS);
        unsigned what = (unsigned)((r >> 32) % 100);
        struct slot *s = &slots[i];

        if (!s->p) {
            s->size = random_size(&rng);
            s->gen++;
            s->kind = kind_of_new(s->size);
            if (what < 60) {
                s->p = arena_alloc(s->size);
                check_new_block(s, i, "alloc");
            } else if (what < 85) {
                /* calloc with a random split of the size into n * m */
                size_t n = s->size ? 1 + (size_t)(r >> 48) % 4 : 0;
                size_t m = n ? s->size / n : 0;
                s->size = n * m;
                s->kind = kind_of_new(s->size);
                s->p = arena_calloc(n, m);
                check_new_block(s, i, "calloc");
                for (size_t k = 0; k < s->size; k++)
                    CHECKF(s->p[k] == 0, "calloc(%zu, %zu) = %p: byte %zu "
                           "is 0x%02x", n, m, (void *)s->p, k, s->p[k]);
            } else {
                s->p = arena_realloc(NULL, s->size);
                check_new_block(s, i, "realloc(NULL)");
            }
            test_fill(s->p, s->size, tag_of(i, s->gen));
            continue;
        }

        CHECK_PATTERN(s->p, s->size, tag_of(i, s->gen));
        if (what < 50) {
            arena_free(s->p);
            s->p = NULL;
        } else if (what < 80) {
            size_t nsize = random_size(&rng);
            unsigned char *q = arena_realloc(s->p, nsize);
            CHECKF(q != NULL, "realloc(%p, %zu -> %zu) returned NULL",
                   (void *)s->p, s->size, nsize);
            size_t keep = nsize < s->size ? nsize : s->size;
            CHECK_PATTERN(q, keep, tag_of(i, s->gen));
            enum kind k = kind_of_new(nsize);
            if (s->kind != KIND_SMALL && k == KIND_SMALL)
                k = KIND_EITHER;  /* large -> small may stay where it is */
            s->p = q;
            s->size = nsize;
            s->kind = k;
            s->gen++;
            check_new_block(s, i, "realloc");
            test_fill(s->p, s->size, tag_of(i, s->gen));
        } else {
            /* free and allocate the slot again at once */
            arena_free(s->p);
            s->size = random_size(&rng);
            s->gen++;
            s->kind = kind_of_new(s->size);
            s->p = arena_alloc(s->size);
            check_new_block(s, i, "alloc");
            test_fill(s->p, s->size, tag_of(i, s->gen));
        }
    }

    check_counts(slots);
    for (size_t i = 0; i < NSLOTS; i++) {
        if (!slots[i].p)
            continue;
        CHECK_PATTERN(slots[i].p, slots[i].size, tag_of(i, slots[i].gen));
        arena_free(slots[i].p);
        slots[i].p = NULL;
    }
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    CHECK_EQ(st.large_live, 0);
    for (size_t c = 0; c < ARENA_NUM_CLASSES; c++)
        CHECKF(st.blocks_live_class[c] == 0, "class %zu: %llu blocks live",
               c, (unsigned long long)st.blocks_live_class[c]);
    /* Freed blocks may still wait in the thread cache (in their pools);
     * arena_release() hands them back, then no pool holds a block. */
    uint64_t held = st.arenas_live;
    size_t given = arena_release();
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_cached, 0);
    CHECK_EQ(st.pools_used + st.pools_full + st.pools_empty, 0);
    CHECK_EQ(st.pools_free_dirty, 0);
    if (run->expect_all_released) {
        CHECKF(st.arenas_live == 0, "%llu arenas still held after "
               "arena_release() with nothing live",
               (unsigned long long)st.arenas_live);
        /* Every arena held went back and is counted as given back. */
        CHECK_GE(given, held * ARENA_ARENA_SIZE);
    }
}

static void run_variant(const struct run *run)
{
    printf("[ INFO     ] %s: seed %llu (TEST_SEED), %llu ops (TEST_OPS)\n",
           run->name, (unsigned long long)seed, (unsigned long long)nops);
    assert_int_equal(child_run(run->name, child_random, (void *)run), 0);
}

static void test_random_default(void **state)
{
    (void)state;
    static const struct run run = {
        "random(mmap, defaults)",
        { { "ARENA_BACKEND", "mmap" } },
        1,
    };
    run_variant(&run);
}

static void test_random_eager(void **state)
{
    (void)state;
    static const struct run run = {
        "random(mmap, purge eager, no arena cache)",
        { { "ARENA_BACKEND", "mmap" }, { "ARENA_PURGE", "eager" },
          { "ARENA_ARENA_CACHE", "0" } },
        1,
    };
    run_variant(&run);
}

static void test_random_brk(void **state)
{
    (void)state;
    static const struct run run = {
        "random(brk)",
        { { "ARENA_BACKEND", "brk" } },
        0,
    };
    run_variant(&run);
}

int main(void)
{
    seed = test_env_u64("TEST_SEED", DEFAULT_SEED);
    if (seed == 0)
        seed = DEFAULT_SEED;
    nops = test_env_u64("TEST_OPS", 1000000);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_default),
        cmocka_unit_test(test_random_eager),
        cmocka_unit_test(test_random_brk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
