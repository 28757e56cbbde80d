/*
 * Fault-injection sweep (suite core): every backend call a realistic
 * scenario makes is made to fail, one at a time, and the allocator must
 * cope.
 *
 * The scenario (one forked child per run, the counting fake backend of
 * fake_backend.h, a fake clock so that no decision depends on the
 * machine's speed):
 *   1. alloc and calloc across all 32 size classes, a few pools' worth of
 *      each, and large sizes (> 512 bytes, the system allocator's);
 *   2. realloc: grow and shrink across classes, small to large and back;
 *   3. free every other block, arena_release() with blocks live;
 *   4. a thread frees some of the main thread's blocks (remote frees),
 *      allocates blocks of every class and exits; they are handed to the
 *      main thread, which frees them later (adopting the dead heap);
 *   5. fork(): the child verifies everything it inherited, allocates and
 *      frees, frees everything, calls arena_release() and checks that no
 *      arena is left; the parent waits for it;
 *   6. the main thread allocates again, the clock jumps past the hold's
 *      decay, everything is freed, arena_release().
 * Throughout: an allocation succeeds or returns NULL with errno == ENOMEM
 * (docs/api.md); a failed realloc leaves its block untouched; every live
 * block is filled with a pattern tied to its id and verified before it is
 * freed or reallocated; ar_validate() (the invariant validator) passes
 * after every phase.  At the end, with nothing live, arena_release() has
 * given every arena back (the fake is a RELEASE_ANY backend, so the hold
 * policy keeps nothing past arena_release(), as in test_backend.c) -- but
 * for a release made to fail (EBUSY) in that very call, whose arena stays
 * cached: the next arena_release() must give it back.  The allocator's
 * stats agree with what the fake saw.
 *
 * The sweep: a run with no failure counts the calls of each kind, T_k.
 * Then, for each kind k (reserve, purge, release) and each n in 1..T_k, a
 * run in which the n-th call of kind k fails (reserve: NULL; purge: an
 * errno value, nothing purged; release: EBUSY, the region stays).  The
 * calls are counted across the scenario's child and the child it forks,
 * in a shared page (fake_faults_share()), so a failure can land in either
 * process.  The fork child runs to its end before the parent goes on, and
 * the clock is fake, so a run is the same as the counting run up to the
 * failure: the n-th call must happen, and is checked to have failed.
 *
 * Two policies are swept: the defaults (thread cache, learned hold) and
 * "eager" (no thread cache, every free pool purged at once, no empty arena
 * kept), which calls the backend at many more places.
 *
 * Prints "fault sweep: N failure points tried (R reserve, P purge, L
 * release)".  TEST_FAULT_STRIDE=s tries only every s-th failure point
 * (default 1: all of them).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "arena.h"
#include "backend.h"
#include "child.h"
#include "fake_backend.h"
#include "internal.h"

#define FLAGS (AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE)

/* ---- what a run reports to the test program (a MAP_SHARED page) ------- */

struct run_report {
    _Atomic uint64_t enomem;        /* allocations that returned NULL/ENOMEM */
    _Atomic uint64_t allocs;        /* allocation calls                      */
    _Atomic uint64_t verified;      /* blocks verified before a free         */
};
static struct run_report *report;

/* ---- the fake clock ----------------------------------------------------- */

static _Atomic uint64_t clock_ms = 1000000;

static uint64_t fake_clock(void)
{
    return atomic_load_explicit(&clock_ms, memory_order_relaxed);
}

static void clock_advance(uint64_t ms)
{
    atomic_fetch_add_explicit(&clock_ms, ms, memory_order_relaxed);
}

/* ---- the policies swept -------------------------------------------------- */

struct policy {
    const char *name;
    const char *env[4];                 /* NAME=value, NULL-terminated */
    unsigned burst;                     /* arenas in the bursts (0: none) */
};

/* "eager" purges every pool that empties, one call each: bursts would
 * only add hundreds of alike purge points, so it has none. */
static const struct policy policies[] = {
    { "default", { NULL }, 4 },
    { "eager", { "ARENA_TCACHE=0", "ARENA_PURGE=eager", "ARENA_ARENA_CACHE=0", NULL }, 0 },
};
static const struct policy *policy;     /* the scenario's, in the child */

/* ---- live blocks ---------------------------------------------------------- */

struct blk {
    unsigned char *p;
    size_t size;
    uint64_t tag;
};

#define MAX_LIVE 16384
static struct blk live[MAX_LIVE];
static size_t nlive;
static uint64_t next_tag = 1;

/* The outcome of an allocating call: a block, or NULL with ENOMEM. */
static int got(void *p, int err, const char *what, size_t size)
{
    atomic_fetch_add_explicit(&report->allocs, 1, memory_order_relaxed);
    if (p != NULL)
        return 1;
    CHECKF(err == ENOMEM, "%s(%zu) returned NULL with errno %d, not ENOMEM", what, size, err);
    atomic_fetch_add_explicit(&report->enomem, 1, memory_order_relaxed);
    return 0;
}

static void track(struct blk *list, size_t *n, size_t cap, void *p, size_t size)
{
    CHECKF(*n < cap, "more than %zu live blocks", cap);
    CHECKF(((uintptr_t)p & 15) == 0, "block %p is not 16-byte aligned", p);
    struct blk *b = &list[(*n)++];
    b->p = p;
    b->size = size;
    b->tag = next_tag++;
    test_fill(p, size, b->tag);
}

/* alloc (how 0) or calloc (how 1) of size bytes, tracked if it succeeds. */
static void new_block(struct blk *list, size_t *n, size_t cap, size_t size, int how)
{
    void *p;
    int err;
    errno = 0;
    if (how == 0) {
        p = arena_alloc(size);
        err = errno;
        if (!got(p, err, "arena_alloc", size))
            return;
    } else {
        p = arena_calloc(1, size);
        err = errno;
        if (!got(p, err, "arena_calloc", size))
            return;
        const unsigned char *c = p;
        for (size_t i = 0; i < size; i++)
            CHECKF(c[i] == 0, "arena_calloc(1, %zu) = %p: byte %zu is %u", size, p, i, c[i]);
    }
    CHECKF(arena_usable_size(p) >= size, "usable size %zu of a %zu-byte block",
           arena_usable_size(p), size);
    track(list, n, cap, p, size);
}

static void verify(const struct blk *b)
{
    CHECK_PATTERN(b->p, b->size, b->tag);
}

/* Verify and free list[i]; the last entry takes its place. */
static void free_at(struct blk *list, size_t *n, size_t i)
{
    verify(&list[i]);
    atomic_fetch_add_explicit(&report->verified, 1, memory_order_relaxed);
    arena_free(list[i].p);
    list[i] = list[--*n];
}

static void verify_all(const struct blk *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        verify(&list[i]);
}

/* Realloc list[i] to size: on success the old bytes (up to the smaller
 * size) moved with it and the block is filled anew; on failure the old
 * block is untouched and stays. */
static void resize(struct blk *list, size_t i, size_t size)
{
    struct blk *b = &list[i];
    verify(b);
    errno = 0;
    void *q = arena_realloc(b->p, size);
    int err = errno;
    if (!got(q, err, "arena_realloc", size)) {
        verify(b);
        return;
    }
    size_t keep = b->size < size ? b->size : size;
    size_t off = test_verify(q, keep, b->tag);
    CHECKF(off == (size_t)-1, "arena_realloc(%p, %zu -> %zu) = %p: byte %zu not kept",
           (void *)b->p, b->size, size, q, off);
    b->p = q;
    b->size = size;
    b->tag = next_tag++;
    test_fill(q, size, b->tag);
}

/* A request of size class c: 16c+1 .. 16c+16 bytes. */
static size_t class_size(unsigned c, unsigned i)
{
    return 16u * c + 1u + (i * 7u) % 16u;
}

static const size_t large_sizes[] = { 513, 600, 1000, 4096, 9000, 70000 };
#define N_LARGE (sizeof large_sizes / sizeof large_sizes[0])

/* Blocks of every class: `pools` pools' worth of class c (at most 64
 * blocks of it, so the scenario stays small), alloc and calloc in turn. */
static void fill_classes(struct blk *list, size_t *n, size_t cap, unsigned pools, unsigned salt)
{
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        unsigned per_pool = AR_POOL_SIZE / (16u * (c + 1));
        unsigned k = per_pool < 64 ? per_pool : 64;
        for (unsigned i = 0; i < pools * k; i++)
            new_block(list, n, cap, class_size(c, i + salt), (int)((i + c + salt) & 1));
    }
    for (unsigned i = 0; i < N_LARGE; i++)
        new_block(list, n, cap, large_sizes[i], (int)((i + salt) & 1));
}

/* A burst over several arenas that nothing reuses: blocks of 512 bytes
 * (8 per pool, 512 per arena), verified and freed at once, so the arenas
 * come from the backend and go back to it.  `arenas` is for a policy
 * whose `burst` is 4, scaled to the policy's. */
static void burst(unsigned arenas)
{
    static struct blk b[8 * 512];
    size_t n = 0;
    arenas = arenas * policy->burst / 4;
    CHECK(arenas <= 8);
    for (unsigned i = 0; i < arenas * 512u; i++)
        new_block(b, &n, 8 * 512, 512 - (i & 15), (int)(i % 7 == 0));
    while (n > 0)
        free_at(b, &n, n - 1);
}

/* ---- invariants and leaks ------------------------------------------------ */

static void validate(const char *when)
{
    (void)when;
    ar_validate();                      /* aborts with a report if broken */
}

/* Everything is freed: arena_release() gives every arena back, but for a
 * release made to fail during that call (its arena stays cached, EBUSY),
 * which the next arena_release() gives back. */
static void release_all_and_check(const char *who)
{
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECKF(st.blocks_live == 0, "%s: %llu blocks live after everything was freed", who,
           (unsigned long long)st.blocks_live);
    uint64_t failed_before = fake.release_failures;
    arena_release();
    size_t left = fake_live_regions();
    uint64_t failed_now = fake.release_failures - failed_before;
    CHECKF(left <= failed_now, "%s: %zu arenas still reserved after arena_release() with "
           "nothing live (%llu releases failed in that call)", who, left,
           (unsigned long long)failed_now);
    if (left > 0) {
        arena_release();
        CHECKF(fake_live_regions() == 0, "%s: %zu arenas still reserved after a second "
               "arena_release()", who, fake_live_regions());
    }
    validate(who);
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.arenas_live, fake_live_regions());
    CHECK_EQ(st.arenas_reserved, fake.reserves);
    CHECK_EQ(st.arenas_released, fake.releases);
    CHECK_EQ(st.reserve_failures, fake.reserve_failures);
    CHECK_EQ(st.bytes_purged, fake.purged_bytes);
}

/* ---- the thread ------------------------------------------------------------ */

#define MAX_THREAD 2048
struct handoff {
    struct blk *victims;                /* main's blocks it frees */
    size_t nvictims;
    struct blk out[MAX_THREAD];         /* its own, handed to main */
    size_t nout;
};

static void *thread_main(void *arg)
{
    struct handoff *h = arg;
    /* Remote frees into the main thread's pools. */
    while (h->nvictims > 0)
        free_at(h->victims, &h->nvictims, h->nvictims - 1);
    fill_classes(h->out, &h->nout, MAX_THREAD, 1, 3);
    burst(2);
    /* Free a few of its own: its pools get local frees before it exits. */
    for (size_t i = 0; i < h->nout; i += 5)
        free_at(h->out, &h->nout, i);
    verify_all(h->out, h->nout);
    return NULL;                        /* the heap dies with live blocks */
}

/* ---- the fork child ------------------------------------------------------- */

static void fork_child_work(void)
{
    verify_all(live, nlive);
    for (size_t i = 0; i < nlive; i += 2)
        free_at(live, &nlive, i);
    fill_classes(live, &nlive, MAX_LIVE, 1, 5);
    burst(2);
    validate("fork child, after its allocations");
    while (nlive > 0)
        free_at(live, &nlive, nlive - 1);
    release_all_and_check("fork child");
}

static void fork_and_wait(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECKF(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        fork_child_work();
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        CHECKF(errno == EINTR, "waitpid: %s", strerror(errno));
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the fork child failed (wait status 0x%x)", status);
}

/* ---- the scenario ------------------------------------------------------- */


static void scenario(void *arg)
{
    const struct policy *pol = arg;
    policy = pol;
    for (const char *const *e = pol->env; *e != NULL; e++)
        putenv((char *)*e);
    setenv("ARENA_DECAY_MS", "1000", 1);
    ar_clock_override(fake_clock);
    int rc = fake_install(FLAGS);
    CHECKF(rc == 0, "ar_backend_use(fake) = %d", rc);

    /* 1. every class, and large blocks */
    fill_classes(live, &nlive, MAX_LIVE, 3, 0);
    validate("after the first allocations");

    /* 2. realloc: up a class, down to half or less (moves), to large and
     * back to small */
    for (size_t i = 0; i < nlive; i += 3) {
        size_t s = live[i].size;
        size_t to;
        switch ((i / 3) % 4) {
        case 0: to = s + 16; break;
        case 1: to = s / 3 + 1; break;
        case 2: to = s <= 512 ? 700 + s : 100; break;
        default: to = s <= 512 ? s : 40; break;
        }
        resize(live, i, to);
    }
    verify_all(live, nlive);
    validate("after the reallocs");

    /* 3. free every other block; give back what is free with blocks live */
    for (size_t i = 0; i < nlive; i++)
        free_at(live, &nlive, i);       /* the last one moves into i: skipped */
    clock_advance(20);
    arena_release();
    verify_all(live, nlive);
    validate("after freeing half and arena_release()");
    burst(4);
    verify_all(live, nlive);
    validate("after a burst");

    /* 4. a thread: remote frees, its own blocks handed over at exit */
    static struct handoff h;
    static struct blk victims[MAX_LIVE];
    h.nvictims = 0;
    h.nout = 0;
    for (size_t i = 0; i < nlive; i += 4) {
        victims[h.nvictims++] = live[i];
        live[i] = live[--nlive];
    }
    h.victims = victims;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_main, &h) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    for (size_t i = 0; i < h.nout; i++) {
        CHECK(nlive < MAX_LIVE);
        live[nlive++] = h.out[i];
    }
    verify_all(live, nlive);
    clock_advance(20);
    validate("after the thread exited");

    /* 5. fork */
    fork_and_wait();
    verify_all(live, nlive);

    /* 6. allocate again, let the hold decay, free everything */
    fill_classes(live, &nlive, MAX_LIVE, 1, 7);
    for (size_t i = 0; i < nlive; i += 2)
        free_at(live, &nlive, i);
    burst(4);                           /* the same again: the hold learns */
    clock_advance(5000);                /* past several decay periods */
    fill_classes(live, &nlive, MAX_LIVE, 1, 9);
    burst(2);
    validate("after the last allocations");
    while (nlive > 0)
        free_at(live, &nlive, nlive - 1);
    release_all_and_check("scenario");
}

/* ---- the sweep ---------------------------------------------------------- */

static void report_reset(void)
{
    atomic_store(&report->enomem, 0);
    atomic_store(&report->allocs, 0);
    atomic_store(&report->verified, 0);
}

static void setup_shared(void)
{
    assert_int_equal(fake_faults_share(), 0);
    if (report == NULL) {
        void *p = mmap(NULL, sizeof *report, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        assert_true(p != MAP_FAILED);
        report = p;
    }
}

static uint64_t tried_total[FAKE_NCALLS];
static uint64_t enomem_total;

static void sweep(const struct policy *pol)
{
    setup_shared();
    uint64_t stride = test_env_u64("TEST_FAULT_STRIDE", 1);
    if (stride == 0)
        stride = 1;

    /* The counting run. */
    fake_faults_reset();
    report_reset();
    int rc = child_run(pol->name, scenario, (void *)pol);
    if (rc != 0)
        fail_msg("policy %s: the scenario failed with no fault injected", pol->name);
    uint64_t total[FAKE_NCALLS];
    for (int k = 0; k < FAKE_NCALLS; k++) {
        total[k] = atomic_load(&fake_faults->calls[k]);
        assert_int_equal(atomic_load(&fake_faults->failed[k]), 0);
    }
    print_message("policy %s: %llu allocating calls, %llu blocks verified and freed; "
                  "backend calls: %llu reserve, %llu purge, %llu release\n", pol->name,
                  (unsigned long long)atomic_load(&report->allocs),
                  (unsigned long long)atomic_load(&report->verified),
                  (unsigned long long)total[FAKE_RESERVE], (unsigned long long)total[FAKE_PURGE],
                  (unsigned long long)total[FAKE_RELEASE]);
    /* The scenario must reach every kind of call, or the sweep proves
     * nothing about it. */
    for (int k = 0; k < FAKE_NCALLS; k++)
        if (total[k] == 0)
            fail_msg("policy %s: the scenario made no %s call", pol->name,
                     fake_call_name((enum fake_call)k));

    uint64_t points = 0;
    for (int k = 0; k < FAKE_NCALLS; k++)
        points += (total[k] + stride - 1) / stride;
    uint64_t done = 0, enomem = 0;
    for (int k = 0; k < FAKE_NCALLS; k++) {
        for (uint64_t n = 1; n <= total[k]; n += stride) {
            fake_faults_reset();
            report_reset();
            fake_fail_call((enum fake_call)k, n);
            char name[64];
            snprintf(name, sizeof name, "%s, %s %llu", pol->name,
                     fake_call_name((enum fake_call)k), (unsigned long long)n);
            rc = child_run(name, scenario, (void *)pol);
            if (rc != 0)
                fail_msg("policy %s: the scenario failed when %s call %llu of %llu failed",
                         pol->name, fake_call_name((enum fake_call)k), (unsigned long long)n,
                         (unsigned long long)total[k]);
            uint64_t failed = atomic_load(&fake_faults->failed[k]);
            if (failed != 1)
                fail_msg("policy %s: %s call %llu was not made (%llu calls of that kind, "
                         "%llu in the counting run): the scenario is not deterministic",
                         pol->name, fake_call_name((enum fake_call)k), (unsigned long long)n,
                         (unsigned long long)atomic_load(&fake_faults->calls[k]),
                         (unsigned long long)total[k]);
            enomem += atomic_load(&report->enomem);
            tried_total[k]++;
            if (++done % 50 == 0 || done == points)
                print_message("policy %s: step %llu of %llu failure points\n", pol->name,
                              (unsigned long long)done, (unsigned long long)points);
        }
    }
    enomem_total += enomem;
    print_message("policy %s: %llu failure points, %llu allocations returned NULL/ENOMEM\n",
                  pol->name, (unsigned long long)done, (unsigned long long)enomem);
}

static void test_sweep_default(void **state)
{
    (void)state;
    sweep(&policies[0]);
}

static void test_sweep_eager(void **state)
{
    (void)state;
    sweep(&policies[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_default),
        cmocka_unit_test(test_sweep_eager),
    };
    int failed = cmocka_run_group_tests_name("faults", tests, NULL, NULL);
    uint64_t n = tried_total[FAKE_RESERVE] + tried_total[FAKE_PURGE] + tried_total[FAKE_RELEASE];
    printf("fault sweep: %llu failure points tried (%llu reserve, %llu purge, %llu release); "
           "%llu allocations returned NULL/ENOMEM\n",
           (unsigned long long)n, (unsigned long long)tried_total[FAKE_RESERVE],
           (unsigned long long)tried_total[FAKE_PURGE],
           (unsigned long long)tried_total[FAKE_RELEASE], (unsigned long long)enomem_total);
    return failed;
}
