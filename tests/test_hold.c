/*
 * hold.c on its own, with a fake clock (ar_clock_override): the arithmetic
 * of ar_hold_given / ar_hold_fresh / ar_hold_keep and its decay.
 *
 *   - a unit that comes fresh from the OS is a mistake only while
 *     something was given back: `learned` grows by min(fresh, given) and
 *     `given` shrinks by as much;
 *   - keep = max(floor, learned);
 *   - both counters halve once per ar_options.decay_ms of the clock, with
 *     the remainder of a period carried over; after 32 periods or more
 *     they are 0; a clock that goes back does not decay anything;
 *   - the counters saturate instead of wrapping;
 *   - ARENA_DECAY_MS sets the period (ar_options_read, in a forked child).
 *
 * No allocation is made: the hold is a plain structure.  The clock
 * override is process-wide, so every test sets the time it needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "child.h"
#include "internal.h"

static uint64_t now_ms;

static uint64_t fake_now(void)
{
    return now_ms;
}

/* The clock starts far from 0: a stamp of 0 means "never looked". */
#define T0 1000000u

static int setup(void **state)
{
    (void)state;
    ar_options.decay_ms = 1000;
    now_ms = T0;
    ar_clock_override(fake_now);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ar_clock_override(NULL);
    ar_options.decay_ms = 1000;
    return 0;
}

/* The clock hook is what ar_now_ms reads, and NULL restores the real one. */
static void test_clock_override(void **state)
{
    (void)state;
    now_ms = 42;
    assert_int_equal(ar_now_ms(), 42);
    now_ms = 43;
    assert_int_equal(ar_now_ms(), 43);
    /* Restored: the monotonic clock in milliseconds (coarse: allow for
     * its tick and for a slow machine; the fake reads 43). */
    ar_clock_override(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t mono = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    uint64_t real = ar_now_ms();
    assert_true(real + 1000 >= mono && real <= mono + 1000);
    ar_clock_override(fake_now);
    now_ms = T0;
}

static void test_fresh_without_given_learns_nothing(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_fresh(&h, 100);
    assert_int_equal(h.learned, 0);
    assert_int_equal(h.given, 0);
    assert_int_equal(ar_hold_keep(&h, 7), 7);
    assert_int_equal(ar_hold_keep(&h, 0), 0);
}

static void test_given_fresh_keep(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_given(&h, 10);
    assert_int_equal(h.given, 10);
    assert_int_equal(h.learned, 0);
    /* Giving back is not itself a mistake. */
    assert_int_equal(ar_hold_keep(&h, 3), 3);

    ar_hold_fresh(&h, 4);               /* 4 of the 10 were needed again */
    assert_int_equal(h.learned, 4);
    assert_int_equal(h.given, 6);
    assert_int_equal(ar_hold_keep(&h, 3), 4);
    assert_int_equal(ar_hold_keep(&h, 5), 5);   /* the floor wins */

    ar_hold_fresh(&h, 100);             /* only the 6 still given count */
    assert_int_equal(h.learned, 10);
    assert_int_equal(h.given, 0);
    ar_hold_fresh(&h, 100);             /* nothing given back: no mistake */
    assert_int_equal(h.learned, 10);
    assert_int_equal(ar_hold_keep(&h, 0), 10);

    ar_hold_given(&h, 2);
    ar_hold_given(&h, 3);
    assert_int_equal(h.given, 5);
    ar_hold_fresh(&h, 1);
    assert_int_equal(h.learned, 11);
    assert_int_equal(h.given, 4);
    /* keep() only reads: asking twice changes nothing. */
    assert_int_equal(ar_hold_keep(&h, 0), 11);
    assert_int_equal(ar_hold_keep(&h, 0), 11);
    assert_int_equal(h.given, 4);
}

/* What was given back long ago has decayed and is no longer a mistake
 * to take fresh again: learned grows by what was given recently only. */
static void test_learns_only_recent(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_given(&h, 64);
    now_ms += 3 * 1000;                 /* three halvings: 64 -> 8 */
    ar_hold_fresh(&h, 64);
    assert_int_equal(h.learned, 8);
    assert_int_equal(h.given, 0);

    struct ar_hold g = {0};
    ar_hold_given(&g, 64);
    now_ms += 40 * 1000;                /* long gone */
    ar_hold_fresh(&g, 64);
    assert_int_equal(g.learned, 0);
    assert_int_equal(ar_hold_keep(&g, 1), 1);
}

static void test_halves_per_period(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_given(&h, 1024);
    ar_hold_fresh(&h, 512);             /* learned 512, given 512 */
    assert_int_equal(h.learned, 512);
    assert_int_equal(h.given, 512);

    now_ms += 999;                      /* not a whole period yet */
    assert_int_equal(ar_hold_keep(&h, 0), 512);
    now_ms += 1;                        /* one period */
    assert_int_equal(ar_hold_keep(&h, 0), 256);
    assert_int_equal(h.given, 256);
    now_ms += 2000;                     /* two more */
    assert_int_equal(ar_hold_keep(&h, 0), 64);
    assert_int_equal(h.given, 64);

    /* The rest of a period carries over: 600 + 600 ms is one halving,
     * not zero (each look alone is less than a period). */
    now_ms += 600;
    assert_int_equal(ar_hold_keep(&h, 0), 64);
    now_ms += 600;
    assert_int_equal(ar_hold_keep(&h, 0), 32);
    now_ms += 799;                      /* 200 ms were carried: 999 < 1000 */
    assert_int_equal(ar_hold_keep(&h, 0), 32);
    now_ms += 1;
    assert_int_equal(ar_hold_keep(&h, 0), 16);

    /* ar_hold_given and ar_hold_fresh decay first, too. */
    now_ms += 1000;                     /* learned 8, given 8 */
    ar_hold_fresh(&h, 3);
    assert_int_equal(h.learned, 11);
    assert_int_equal(h.given, 5);
    now_ms += 1000;                     /* learned 5, given 2 */
    ar_hold_given(&h, 10);
    assert_int_equal(h.learned, 5);
    assert_int_equal(h.given, 12);
}

/* A new mistake does not reset the decay of what was learned before:
 * the period runs from the last halving, not from the last call. */
static void test_calls_do_not_delay_decay(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_given(&h, 100);
    ar_hold_fresh(&h, 100);
    for (int i = 0; i < 9; i++) {       /* a call every 100 ms */
        now_ms += 100;
        ar_hold_given(&h, 1);
        ar_hold_fresh(&h, 1);
    }
    assert_int_equal(h.learned, 109);
    now_ms += 100;                      /* 1000 ms since the first look */
    assert_int_equal(ar_hold_keep(&h, 0), 54);
}

static void test_full_decay(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_given(&h, UINT32_MAX);
    ar_hold_fresh(&h, UINT32_MAX);
    assert_int_equal(h.learned, UINT32_MAX);
    now_ms += 31 * 1000;                /* 31 halvings leave the top bit */
    assert_int_equal(ar_hold_keep(&h, 0), 1);
    now_ms += 1000;
    assert_int_equal(ar_hold_keep(&h, 0), 0);

    struct ar_hold g = {0};
    ar_hold_given(&g, UINT32_MAX);
    ar_hold_fresh(&g, 1000);
    now_ms += 32 * 1000;                /* 32 or more: everything goes */
    assert_int_equal(ar_hold_keep(&g, 0), 0);
    assert_int_equal(g.given, 0);

    struct ar_hold k = {0};
    ar_hold_given(&k, 5000);
    ar_hold_fresh(&k, 5000);
    now_ms += (uint64_t)1000 * 1000 * 1000;   /* a very long idle */
    assert_int_equal(ar_hold_keep(&k, 256), 256);  /* the floor stays */
    assert_int_equal(k.learned, 0);
    /* ...and learning starts again from there. */
    ar_hold_given(&k, 3);
    ar_hold_fresh(&k, 3);
    assert_int_equal(ar_hold_keep(&k, 0), 3);
}

static void test_floor(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    assert_int_equal(ar_hold_keep(&h, 256), 256);
    ar_hold_given(&h, 300);
    ar_hold_fresh(&h, 300);
    assert_int_equal(ar_hold_keep(&h, 256), 300);
    now_ms += 1000;                     /* 150 < the floor */
    assert_int_equal(ar_hold_keep(&h, 256), 256);
    assert_int_equal(h.learned, 150);
    assert_int_equal(ar_hold_keep(&h, 100), 150);
    assert_int_equal(ar_hold_keep(&h, UINT32_MAX), UINT32_MAX);
}

/* A clock that goes back (a fork child's copy, a test's override) is
 * taken as the new reference: nothing decays, nothing wraps. */
static void test_clock_backwards(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_given(&h, 80);
    ar_hold_fresh(&h, 80);
    now_ms -= 5000;
    assert_int_equal(ar_hold_keep(&h, 0), 80);
    assert_int_equal(h.stamp, now_ms);
    now_ms += 1000;
    assert_int_equal(ar_hold_keep(&h, 0), 40);
}

static void test_saturates(void **state)
{
    (void)state;
    struct ar_hold h = {0};
    ar_hold_given(&h, UINT32_MAX - 5);
    ar_hold_given(&h, 100);
    assert_int_equal(h.given, UINT32_MAX);
    ar_hold_fresh(&h, UINT32_MAX);
    ar_hold_given(&h, UINT32_MAX);
    ar_hold_fresh(&h, UINT32_MAX);      /* learned would pass 2^32 */
    assert_int_equal(h.learned, UINT32_MAX);
    assert_int_equal(ar_hold_keep(&h, 0), UINT32_MAX);
}

/* ar_options.decay_ms is the period. */
static void test_decay_period_option(void **state)
{
    (void)state;
    ar_options.decay_ms = 50;
    struct ar_hold h = {0};
    ar_hold_given(&h, 64);
    ar_hold_fresh(&h, 64);
    now_ms += 49;
    assert_int_equal(ar_hold_keep(&h, 0), 64);
    now_ms += 1;
    assert_int_equal(ar_hold_keep(&h, 0), 32);
    now_ms += 150;
    assert_int_equal(ar_hold_keep(&h, 0), 4);
    ar_options.decay_ms = 1000;
}

/* ARENA_DECAY_MS reaches ar_options.decay_ms (read at first use; here by
 * calling the reader in a child, where the environment may change). */
static void child_decay_env(void *arg)
{
    (void)arg;
    setenv("ARENA_DECAY_MS", "250", 1);
    ar_options_read();
    CHECK_EQ(ar_options.decay_ms, 250);
    struct ar_hold h = {0};
    ar_hold_given(&h, 16);
    ar_hold_fresh(&h, 16);
    now_ms += 250;
    CHECK_EQ(ar_hold_keep(&h, 0), 8);
    now_ms += 500;
    CHECK_EQ(ar_hold_keep(&h, 0), 2);
    /* 0 and junk are ignored: the period stays. */
    setenv("ARENA_DECAY_MS", "0", 1);
    ar_options_read();
    CHECK_EQ(ar_options.decay_ms, 250);
    setenv("ARENA_DECAY_MS", "12ms", 1);
    ar_options_read();
    CHECK_EQ(ar_options.decay_ms, 250);
}

static void test_decay_env(void **state)
{
    (void)state;
    assert_int_equal(child_run("decay_env", child_decay_env, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clock_override, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_without_given_learns_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_given_fresh_keep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_learns_only_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halves_per_period, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls_do_not_delay_decay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_decay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_backwards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saturates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decay_period_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decay_env, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
