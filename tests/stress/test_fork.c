/*
 * fork() while other threads allocate.
 *
 * Four worker threads allocate, free and pass blocks to each other without
 * pause.  Before that, each of them (and the main thread) allocated a set
 * of "published" blocks that stay untouched.  The main thread then forks
 * again and again while the workers keep running.  Each child has one
 * thread: the workers' heaps are orphans there.  The child checks the heap
 * counts, verifies the published blocks, allocates and fills blocks of its
 * own (which must not overlap anything live), frees the workers' published
 * blocks (orphan frees), starts two threads of its own, frees everything
 * it knows of, and _exits 0.  Its stdout and stderr go to a pipe that must
 * stay empty.  A child that deadlocks makes the test time out.
 *
 * In the parent, the workers keep going after every fork, and at the end
 * nothing is live and nothing is held.
 *
 * FORK_ROUNDS sets the number of forks.  Runs in a forked child itself.
 */
#include "stress.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define NWORKERS   4
#define NPUB       512          /* published blocks per thread             */
#define LIVE_CAP   1024
#define MAILBOX    512
#define CHILD_K    4000         /* blocks a child allocates                */
#define MAIN_ID    NWORKERS     /* tag owner number of the main thread     */

struct worker {
    unsigned id;
    uint64_t rng, serial;
    struct blk live[LIVE_CAP];
    size_t nlive;
    struct blk drained[MAILBOX];
    uint64_t allocs, frees;
};

static struct blk published[NWORKERS + 1][NPUB];
static struct worker workers[NWORKERS];
static struct mailbox mailboxes[NWORKERS];
static struct blk mailbox_items[NWORKERS][MAILBOX];
static atomic_int stop;
static pthread_barrier_t ready, finished;

static void drain(struct worker *w)
{
    w->frees += mailbox_free_all(&mailboxes[w->id], w->drained);
}

static void send_next(struct worker *w, struct blk b)
{
    if (!mailbox_put(&mailboxes[(w->id + 1) % NWORKERS], b)) {
        blk_free(b);
        w->frees++;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < NPUB; i++)
        published[w->id][i] = blk_alloc(stress_size(&w->rng), stress_tag(w->id, w->serial++));
    pthread_barrier_wait(&ready);
    for (uint64_t k = 0; !atomic_load_explicit(&stop, memory_order_relaxed); k++) {
        unsigned r = (unsigned)(test_rand(&w->rng) % 100);
        if (w->nlive == 0 || (r < 50 && w->nlive < LIVE_CAP)) {
            w->live[w->nlive++] =
                blk_alloc(stress_size(&w->rng), stress_tag(w->id, w->serial++));
            w->allocs++;
        } else {
            size_t i = (size_t)(test_rand(&w->rng) % w->nlive);
            struct blk b = w->live[i];
            w->live[i] = w->live[--w->nlive];
            if (r < 80) {
                blk_free(b);
                w->frees++;
            } else {
                send_next(w, b);
            }
        }
        if (k % 32 == 31)
            drain(w);
        if (k % STRESS_VALIDATE_EVERY == STRESS_VALIDATE_EVERY - 1)
            stress_validate();
    }
    while (w->nlive > 0) {
        blk_free(w->live[--w->nlive]);
        w->frees++;
    }
    pthread_barrier_wait(&finished);        /* nobody sends any more */
    drain(w);
    return NULL;
}

/* ---- in the forked child ----------------------------------------------- */

struct kid {
    unsigned id;
    uint64_t rng;
    struct blk *blocks;
    size_t n;
};

/* A thread started in the child: allocates blocks that the child's main
 * thread frees after this thread has exited. */
static void *kid_main(void *arg)
{
    struct kid *k = arg;
    for (size_t i = 0; i < k->n; i++)
        k->blocks[i] = blk_alloc(stress_size(&k->rng), stress_tag(100 + k->id, i));
    return NULL;
}

/* AddressSanitizer's own allocator (behind the system malloc that serves
 * large blocks) may have been locked by another thread at the fork, and
 * it has no fork handler in every version, so there the child keeps to
 * small blocks, leaves the large published ones alone and starts no
 * threads. */
#define CHILD_SYS_MALLOC_OK (!STRESS_ASAN)

static void child_body(unsigned round)
{
    struct arena_stats s0, s1, s2;
    /* The arena sets were locked across fork(): consistent here. */
    stress_validate();
    s0.size = sizeof s0;
    arena_get_stats(&s0);
    stress_check_identities(&s0, "child, after fork");
    /* Only the forking thread exists here; the workers' heaps are gone. */
    SCHECK_EQ(s0.heaps_live, 1);
    SCHECK_EQ(s0.heaps_abandoned, NWORKERS);

    for (unsigned t = 0; t <= NWORKERS; t++)
        for (unsigned i = 0; i < NPUB; i++)
            blk_verify(published[t][i]);

    /* New blocks: counted exactly, and apart from every live block. */
    static struct blk mine[CHILD_K];
    uint64_t rng = 0xC0FFEEULL + round, small = 0, large = 0;
    for (unsigned i = 0; i < CHILD_K; i++) {
        size_t size = stress_size(&rng);
        if (!CHILD_SYS_MALLOC_OK && size > ARENA_SMALL_MAX)
            size -= ARENA_SMALL_MAX;
        mine[i] = blk_alloc(size, stress_tag(200, (uint64_t)round << 20 | i));
        if (mine[i].size <= ARENA_SMALL_MAX)
            small++;
        else
            large++;
    }
    s1.size = sizeof s1;
    arena_get_stats(&s1);
    stress_check_identities(&s1, "child, after allocating");
    SCHECK_EQ(s1.blocks_live - s0.blocks_live, small);
    SCHECK_EQ(s1.large_live - s0.large_live, large);
    for (unsigned t = 0; t <= NWORKERS; t++)
        for (unsigned i = 0; i < NPUB; i++)
            blk_verify(published[t][i]);

    /* The workers' blocks live in orphan pools here. */
    uint64_t freed_small = 0;
    for (unsigned t = 0; t <= NWORKERS; t++)
        for (unsigned i = 0; i < NPUB; i++) {
            int small_blk = published[t][i].size <= ARENA_SMALL_MAX;
            freed_small += small_blk;
            if (small_blk || CHILD_SYS_MALLOC_OK)
                blk_free(published[t][i]);
        }
    for (unsigned i = 0; i < CHILD_K; i++)
        blk_verify(mine[i]);
    s2.size = sizeof s2;
    arena_get_stats(&s2);
    stress_check_identities(&s2, "child, after the orphan frees");
    SCHECK_LE(s2.blocks_live, s1.blocks_live);
    SCHECK_GE(s2.blocks_live + freed_small, s1.blocks_live);

    /* Threads started in the child get heaps (maybe the workers' old
     * descriptors) and free blocks of this thread and of each other.
     * ThreadSanitizer does not support threads after a multi-threaded
     * fork, so its build skips this part. */
    if (!STRESS_TSAN && CHILD_SYS_MALLOC_OK) {
        struct kid kids[2];
        pthread_t tid[2];
        for (unsigned t = 0; t < 2; t++) {
            kids[t].id = t;
            kids[t].rng = rng + t;
            kids[t].n = 300;
            kids[t].blocks = calloc(kids[t].n, sizeof(struct blk));
            CHECK(kids[t].blocks != NULL);
            stress_thread_start(&tid[t], kid_main, &kids[t]);
        }
        for (unsigned t = 0; t < 2; t++)
            stress_thread_join(tid[t]);
        s1.size = sizeof s1;
        arena_get_stats(&s1);
        SCHECK_EQ(s1.heaps_live, 1);
        SCHECK_EQ(s1.heaps_abandoned, NWORKERS + 2);
        for (unsigned t = 0; t < 2; t++) {
            for (size_t i = 0; i < kids[t].n; i++)
                blk_free(kids[t].blocks[i]);
            free(kids[t].blocks);
        }
    }

    for (unsigned i = 0; i < CHILD_K; i++)
        blk_free(mine[i]);
    stress_validate();
    s1.size = sizeof s1;
    arena_get_stats(&s1);
    stress_check_identities(&s1, "child, at the end");
    SCHECK_EQ(s1.blocks_live, s2.blocks_live - small);
    arena_release();
    s1.size = sizeof s1;
    arena_get_stats(&s1);
    stress_check_identities(&s1, "child, after arena_release");
}

/* Fork one child; it must exit 0 and write nothing. */
static void fork_round(unsigned round)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    CHECKF(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0 || dup2(fds[1], STDERR_FILENO) < 0)
            _exit(125);
        close(fds[1]);
        child_body(round);
        _exit(0);
    }
    close(fds[1]);
    static char out[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], out + len, sizeof out - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof out - 1) {        /* keep the start, drop the rest */
            char sink[512];
            while (read(fds[0], sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    close(fds[0]);
    out[len] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0)
        CHECKF(errno == EINTR, "waitpid: %s", strerror(errno));
    if (len > 0)
        child_note("  fork %u: the child wrote:\n%s", round, out);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "fork %u: the child ended with wait status %#x", round, status);
    CHECKF(len == 0, "fork %u: the child wrote %zu bytes", round, len);
}

static void run_fork(void *arg)
{
    (void)arg;
    unsigned rounds = (unsigned)stress_count("FORK_ROUNDS", 40, 4, 2);
    child_note("  %d threads allocating; %u forks", NWORKERS, rounds);
    double t0 = stress_now();

    uint64_t rng = 0xF0F0F0F0ULL;
    for (unsigned i = 0; i < NPUB; i++)
        published[MAIN_ID][i] = blk_alloc(stress_size(&rng), stress_tag(MAIN_ID, i));

    CHECK(pthread_barrier_init(&ready, NULL, NWORKERS + 1) == 0);
    CHECK(pthread_barrier_init(&finished, NULL, NWORKERS) == 0);
    pthread_t tid[NWORKERS];
    for (unsigned t = 0; t < NWORKERS; t++)
        mailbox_init(&mailboxes[t], mailbox_items[t], MAILBOX);
    for (unsigned t = 0; t < NWORKERS; t++) {
        workers[t].id = t;
        workers[t].rng = 0xABCDEF12345ULL * (t + 1);
        stress_thread_start(&tid[t], worker_main, &workers[t]);
    }
    pthread_barrier_wait(&ready);           /* published blocks are in place */

    unsigned step = rounds / 10 ? rounds / 10 : 1;
    for (unsigned r = 0; r < rounds; r++) {
        fork_round(r);
        if (r % step == step - 1)
            child_note("  step %u of %u: %u forks done", (r + 1) / step, rounds / step, r + 1);
    }

    atomic_store(&stop, 1);
    for (unsigned t = 0; t < NWORKERS; t++)
        stress_thread_join(tid[t]);
    uint64_t allocs = 0, frees = 0;
    for (unsigned t = 0; t < NWORKERS; t++) {
        allocs += workers[t].allocs;
        frees += workers[t].frees;
        mailbox_destroy(&mailboxes[t]);
    }
    CHECK_EQ(allocs, frees);
    stress_validate();
    for (unsigned t = 0; t <= NWORKERS; t++)
        for (unsigned i = 0; i < NPUB; i++)
            blk_free(published[t][i]);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&finished);

    struct arena_stats s;
    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "parent, at the end");
    SCHECK_EQ(s.blocks_live, 0);
    SCHECK_EQ(s.large_live, 0);
    SCHECK_EQ(s.heaps_live, 1);
    SCHECK_EQ(s.heaps_abandoned, NWORKERS);
    arena_release();
    s.size = sizeof s;
    arena_get_stats(&s);
    stress_check_identities(&s, "parent, after arena_release");
    SCHECK_EQ(s.pools_used + s.pools_full + s.pools_empty, 0);
    SCHECK_EQ(s.arenas_live, 0);
    child_note("  workers made %" PRIu64 " allocations meanwhile; %.1f s", allocs,
               stress_now() - t0);
}

static void test_fork(void **state)
{
    (void)state;
    assert_int_equal(child_run("fork while threads allocate", run_fork, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
