/*
 * The background purger (arena_purger_start / arena_purger_stop) against
 * the counting fake backend.
 *
 *   gives_back  a burst the policy keeps (ARENA_PURGE=off: dirty free
 *               pools and an empty arena stay after the free) is given
 *               back by the purger alone: dirty free pools reach 0, the
 *               empty arenas go down to the cache's one (purged), and the
 *               backend saw the purges and releases; arena_purger_stop()
 *               returns and ends the thread;
 *   api         EINVAL for a delay of 0; a second start changes the
 *               delay and starts no second thread; stop twice is fine;
 *   restart     a second start with a short delay takes effect while the
 *               purger sleeps out a long one.
 *
 * The main thread only polls arena_get_stats (which takes the locks)
 * while the purger runs, and reads the fake backend's counters only after
 * arena_purger_stop() has joined the thread.  Waiting is polling with a
 * generous deadline (20 s), never a sleep taken as synchronisation.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "arena.h"
#include "backend.h"
#include "child.h"
#include "fake_backend.h"

#define FLAGS (AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE)
#define DEADLINE_MS 20000

static void install(void)
{
    int rc = fake_install(FLAGS);
    CHECKF(rc == 0, "ar_backend_use(fake) = %d", rc);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = { 0, (long)ms * 1000000L };
    nanosleep(&ts, NULL);
}

/* Threads of this process (/proc/self/task). */
static unsigned thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Wait until the process has n threads: a joined thread leaves
 * /proc/self/task a moment after pthread_join returns. */
static void expect_threads(unsigned n, int line)
{
    uint64_t t0 = now_ms();
    unsigned have;
    while ((have = thread_count()) != n) {
        if (now_ms() - t0 >= DEADLINE_MS)
            child_fail(__FILE__, line, "%u threads, expected %u", have, n);
        pause_ms(5);
    }
}
#define EXPECT_THREADS(n) expect_threads((n), __LINE__)

static void *nothing(void *arg)
{
    return arg;
}

/* The threads of this process before the purger: a sanitizer runtime
 * starts a thread of its own with the first pthread_create, so one is
 * made (and joined) first. */
static unsigned baseline_threads(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, nothing, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    unsigned n = thread_count();
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < DEADLINE_MS) {   /* the joined one leaves /proc */
        unsigned m = thread_count();
        if (m < n)
            n = m;
        else if (m == n)
            break;
        pause_ms(5);
    }
    return n;
}

/* A burst over 6 arenas of 64-byte blocks, all freed (thread cache off,
 * so every block is back in its pool). */
enum { BURST = 6 * (ARENA_ARENA_SIZE / 64) };

static void burst(void)
{
    static void *b[BURST];
    for (size_t i = 0; i < BURST; i++) {
        b[i] = arena_alloc(64);
        CHECK(b[i] != NULL);
        test_fill(b[i], 64, i);
    }
    for (size_t i = 0; i < BURST; i++) {
        CHECK_PATTERN(b[i], 64, i);
        arena_free(b[i]);
    }
}

/* Poll until nothing free is dirty and at most one empty arena is held
 * (the global cache's floor).  Returns the milliseconds it took, or fails
 * the child at the deadline. */
static uint64_t wait_given_back(const char *what)
{
    uint64_t t0 = now_ms();
    struct arena_stats st;
    for (;;) {
        st.size = sizeof st;
        arena_get_stats(&st);
        if (st.pools_free_dirty == 0 && st.arenas_empty <= 1)
            return now_ms() - t0;
        CHECKF(now_ms() - t0 < DEADLINE_MS, "%s: after %d ms the purger has not given "
               "back: %" PRIu64 " dirty free pools, %" PRIu64 " empty arenas", what,
               DEADLINE_MS, st.pools_free_dirty, st.arenas_empty);
        pause_ms(10);
    }
}

static void child_gives_back(void *arg)
{
    (void)arg;
    setenv("ARENA_PURGE", "off", 1);
    setenv("ARENA_TCACHE", "0", 1);
    install();
    burst();
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    uint64_t purges0 = fake.purges, releases0 = fake.releases;
    child_note("gives_back: after the burst, before the purger: %" PRIu64 " dirty free pools, "
               "%" PRIu64 " empty arenas, %zu arenas live", st.pools_free_dirty,
               st.arenas_empty, fake_live_regions());
    /* What the policy keeps: the heap one empty arena, the cache one,
     * purge off keeps every free pool dirty. */
    CHECK_GE(st.pools_free_dirty, 128);
    CHECK_EQ(st.arenas_empty, 2);
    CHECK_EQ(purges0, 0);

    unsigned threads0 = baseline_threads();
    CHECK_EQ(arena_purger_start(50), 0);
    CHECK_EQ(thread_count(), threads0 + 1);
    uint64_t took = wait_given_back("gives_back");
    arena_purger_stop();
    EXPECT_THREADS(threads0);
    st.size = sizeof st;
    arena_get_stats(&st);
    child_note("gives_back: the purger (50 ms) gave back in %" PRIu64 " ms: %" PRIu64
               " purge calls, %" PRIu64 " releases; now %" PRIu64 " dirty, %" PRIu64
               " empty arenas, %zu live", took, fake.purges - purges0,
               fake.releases - releases0, st.pools_free_dirty, st.arenas_empty,
               fake_live_regions());
    CHECK_GT(fake.purges, purges0);
    CHECK_GT(fake.releases, releases0);      /* one empty arena went to the OS */
    CHECK_EQ(st.pools_free_dirty, 0);
    CHECK_EQ(st.pools_free_purged, st.pools_free);
    /* left: the arena of the heap's current pool, and the cache's one */
    CHECK_LE(fake_live_regions(), 2);
    CHECK_EQ(st.arenas_reserved, fake.reserves);
    CHECK_EQ(st.arenas_released, fake.releases);
    CHECK_EQ(st.bytes_purged, fake.purged_bytes);

    /* The purged memory is reused and works (the fake wrote junk). */
    burst();
    arena_release();
    CHECK_EQ(fake_live_regions(), 0);
}

static void child_api(void *arg)
{
    (void)arg;
    install();
    unsigned threads0 = baseline_threads();
    CHECK_EQ(arena_purger_start(0), EINVAL);
    CHECK_EQ(thread_count(), threads0);
    arena_purger_stop();                     /* not running: nothing to do */
    CHECK_EQ(arena_purger_start(1000), 0);
    CHECK_EQ(thread_count(), threads0 + 1);
    CHECK_EQ(arena_purger_start(20), 0);     /* a new delay, the same thread */
    CHECK_EQ(thread_count(), threads0 + 1);
    CHECK_EQ(arena_purger_start(0), EINVAL); /* and the thread stays */
    CHECK_EQ(thread_count(), threads0 + 1);
    arena_purger_stop();
    EXPECT_THREADS(threads0);
    arena_purger_stop();
    CHECK_EQ(thread_count(), threads0);
    /* It starts again after a stop. */
    CHECK_EQ(arena_purger_start(30), 0);
    CHECK_EQ(thread_count(), threads0 + 1);
    arena_purger_stop();
    EXPECT_THREADS(threads0);
}

/* The thread ids of this process (/proc/self/task); returns how many. */
static unsigned thread_ids(long *ids, unsigned max)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max)
        if (e->d_name[0] != '.')
            ids[n++] = strtol(e->d_name, NULL, 10);
    closedir(d);
    return n;
}

/* The state letter of thread tid (/proc/self/task/tid/stat), or 0. */
static char thread_state(long tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' ? rp[2] : 0;
}

static void child_restart(void *arg)
{
    (void)arg;
    setenv("ARENA_PURGE", "off", 1);
    setenv("ARENA_TCACHE", "0", 1);
    install();
    long before[64], after[64];
    unsigned nbefore = thread_ids(before, 64);

    /* A purger that looks every 5 minutes, asleep in its wait ... */
    CHECK_EQ(arena_purger_start(600000), 0);
    unsigned nafter = thread_ids(after, 64);
    long tid = 0;
    for (unsigned i = 0; i < nafter; i++) {
        int old = 0;
        for (unsigned k = 0; k < nbefore; k++)
            old |= after[i] == before[k];
        if (!old)
            tid = after[i];
    }
    CHECK(tid != 0);
    uint64_t t0 = now_ms();
    while (thread_state(tid) != 'S') {
        CHECKF(now_ms() - t0 < DEADLINE_MS, "the purger thread never went to sleep");
        pause_ms(5);
    }
    /* ... is told to look every 50 ms, then there is work for it. */
    CHECK_EQ(arena_purger_start(50), 0);
    burst();
    uint64_t took = wait_given_back("restart (600000 ms, then 50 ms)");
    child_note("restart: given back %" PRIu64 " ms after the delay went from 600000 to 50 ms",
               took);
    arena_purger_stop();
}

static void test_gives_back(void **state)
{
    (void)state;
    assert_int_equal(child_run("purger gives back", child_gives_back, NULL), 0);
}

static void test_api(void **state)
{
    (void)state;
    assert_int_equal(child_run("purger api", child_api, NULL), 0);
}

static void test_restart(void **state)
{
    (void)state;
    assert_int_equal(child_run("purger restart", child_restart, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gives_back),
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
