/*
 * Threads: four threads allocate blocks of random sizes, fill them, free
 * half themselves and hand the other half to the next thread through a
 * queue; the receiver verifies and frees them (a cross-thread free).  The
 * queue nodes are libarena blocks too.  Threads exit while blocks they
 * allocated are still live elsewhere, and a second wave of threads reuses
 * or drains their heaps.  At the end nothing is live.
 *
 * Also: fork() while other threads allocate, and while another thread
 * makes the very first allocation, leaves the child usable.
 *
 * Runs in forked children (child.h).  TEST_OPS scales the work (blocks per
 * thread, default 200,000; 20,000 under valgrind or a sanitizer),
 * FORK_START_ROUNDS the fork-during-start rounds (300; 30).
 */
#include "arena.h"
#include "child.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define NTHREADS 4

struct msg {
    struct msg *next;
    unsigned char *p;
    size_t size;
    uint64_t tag;
    int done;          /* the sender has finished */
};

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    struct msg *head, *tail;
};

struct worker {
    int id;
    uint64_t ops;
    uint64_t seed;
    struct queue *in, *out;
    uint64_t received, sent;
};

static struct queue queues[NTHREADS];

static void queue_init(struct queue *q)
{
    CHECK(pthread_mutex_init(&q->lock, NULL) == 0);
    CHECK(pthread_cond_init(&q->nonempty, NULL) == 0);
    q->head = q->tail = NULL;
}

static void queue_push(struct queue *q, struct msg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
}

/* Take one message; wait for one when block is set. */
static struct msg *queue_pop(struct queue *q, int block)
{
    pthread_mutex_lock(&q->lock);
    while (block && !q->head)
        pthread_cond_wait(&q->nonempty, &q->lock);
    struct msg *m = q->head;
    if (m) {
        q->head = m->next;
        if (!q->head)
            q->tail = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    return m;
}

static size_t random_size(uint64_t *rng)
{
    uint64_t r = test_rand(rng);
    if (r % 20 == 0)
        return ARENA_SMALL_MAX + 1 + (size_t)((r >> 8) % 3000);
    return (size_t)((r >> 8) % (ARENA_SMALL_MAX + 1));
}

/* Verify and free a received message; returns 1 for the end marker. */
static int consume(struct worker *w, struct msg *m)
{
    int done = m->done;
    if (!done) {
        CHECK_PATTERN(m->p, m->size, m->tag);
        arena_free(m->p);
        w->received++;
    }
    arena_free(m);
    return done;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = w->seed;
    enum { KEEP = 64 };
    unsigned char *mine[KEEP] = { 0 };
    size_t mine_size[KEEP] = { 0 };
    uint64_t mine_tag[KEEP] = { 0 };
    int in_done = 0;

    for (uint64_t i = 0; i < w->ops; i++) {
        size_t size = random_size(&rng);
        uint64_t tag = ((uint64_t)w->id << 56) ^ (w->seed << 20) ^ i;
        unsigned char *p = arena_alloc(size);
        CHECKF(p != NULL, "thread %d: arena_alloc(%zu) failed", w->id, size);
        test_fill(p, size, tag);
        if (test_rand(&rng) & 1) {
            struct msg *m = arena_alloc(sizeof *m);
            CHECK(m != NULL);
            m->p = p;
            m->size = size;
            m->tag = tag;
            m->done = 0;
            queue_push(w->out, m);
            w->sent++;
        } else {
            /* Keep a few blocks for a while, free them locally later. */
            size_t k = (size_t)(test_rand(&rng) % KEEP);
            if (mine[k]) {
                CHECK_PATTERN(mine[k], mine_size[k], mine_tag[k]);
                arena_free(mine[k]);
            }
            mine[k] = p;
            mine_size[k] = size;
            mine_tag[k] = tag;
        }
        /* Drain what has arrived so far, without waiting. */
        if (i % 16 == 0) {
            struct msg *m;
            while (!in_done && (m = queue_pop(w->in, 0)) != NULL)
                in_done = consume(w, m);
        }
    }
    for (size_t k = 0; k < KEEP; k++) {
        if (mine[k]) {
            CHECK_PATTERN(mine[k], mine_size[k], mine_tag[k]);
            arena_free(mine[k]);
        }
    }
    struct msg *end = arena_alloc(sizeof *end);
    CHECK(end != NULL);
    end->done = 1;
    queue_push(w->out, end);
    while (!in_done)
        in_done = consume(w, queue_pop(w->in, 1));
    return NULL;
}

static void run_wave(uint64_t ops, uint64_t seed)
{
    pthread_t tid[NTHREADS];
    static struct worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ .id = i, .ops = ops, .seed = seed + 7919u * (uint64_t)i,
                                .in = &queues[i], .out = &queues[(i + 1) % NTHREADS] };
    }
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&tid[i], NULL, worker_main, &w[i]) == 0);
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_join(tid[i], NULL) == 0);
    for (int i = 0; i < NTHREADS; i++) {
        CHECK_EQ(w[i].sent, w[(i + 1) % NTHREADS].received);
        CHECK(queues[i].head == NULL);
    }
}

static void child_threads(void *arg)
{
    (void)arg;
    uint64_t ops = test_count("TEST_OPS", 200000, 20000);
    for (int i = 0; i < NTHREADS; i++)
        queue_init(&queues[i]);
    for (int wave = 0; wave < 3; wave++) {
        child_note("threads: step %d of 3: %d threads x %llu blocks", wave + 1,
                   NTHREADS, (unsigned long long)ops);
        run_wave(ops, 1000u + (uint64_t)wave);
        struct arena_stats st;
        st.size = sizeof st;
        arena_get_stats(&st);
        CHECKF(st.blocks_live == 0, "wave %d: %llu small blocks live after all "
               "threads freed everything", wave, (unsigned long long)st.blocks_live);
        CHECK_EQ(st.large_live, 0);
        /* The threads are gone: so are their thread caches. */
        CHECKF(st.blocks_cached == 0, "wave %d: %llu blocks still in thread "
               "caches after their threads exited", wave,
               (unsigned long long)st.blocks_cached);
        CHECK_EQ(st.pools_used + st.pools_full, 0);
        CHECK_GE(st.heaps_abandoned, (uint64_t)NTHREADS * (wave + 1));
    }
    /* Everything is free, whichever thread owned it: all of it goes back. */
    arena_release();
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECKF(st.arenas_live == 0, "%llu arenas held after arena_release() with "
           "nothing live", (unsigned long long)st.arenas_live);
    CHECK_EQ(st.pools_total, 0);
}

static void test_threads(void **state)
{
    (void)state;
    assert_int_equal(child_run("threads", child_threads, NULL), 0);
}

/* fork() while other threads allocate leaves the child usable. */
static volatile int stop_churn;

static void *churn_main(void *arg)
{
    uint64_t rng = (uintptr_t)arg;
    void *slots[256] = { 0 };
    while (!__atomic_load_n(&stop_churn, __ATOMIC_RELAXED)) {
        size_t k = (size_t)(test_rand(&rng) % 256);
        arena_free(slots[k]);
        /* Small sizes only: a large block would take the system malloc's
         * locks, and not every malloc (e.g. ASan's) survives fork() with
         * them held.  libarena's own fork safety is what is tested. */
        slots[k] = arena_alloc((size_t)(test_rand(&rng) % (ARENA_SMALL_MAX + 1)));
        CHECK(slots[k] != NULL);
    }
    for (size_t k = 0; k < 256; k++)
        arena_free(slots[k]);
    return NULL;
}

static void child_fork(void *arg)
{
    (void)arg;
    enum { CHURNERS = 3, FORKS = 50 };
    pthread_t tid[CHURNERS];
    for (int i = 0; i < CHURNERS; i++)
        CHECK(pthread_create(&tid[i], NULL, churn_main, (void *)(uintptr_t)(i + 1)) == 0);
    for (int f = 0; f < FORKS; f++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(20);   /* a deadlock in the child ends as SIGALRM */
            void *b[100];
            for (int i = 0; i < 100; i++) {
                b[i] = arena_alloc((size_t)(i * 7) % (ARENA_SMALL_MAX + 1));
                if (!b[i])
                    _exit(2);
                test_fill(b[i], (size_t)(i * 7) % (ARENA_SMALL_MAX + 1), (uint64_t)i);
            }
            for (int i = 0; i < 100; i++) {
                if (test_verify(b[i], (size_t)(i * 7) % (ARENA_SMALL_MAX + 1),
                                (uint64_t)i) != (size_t)-1)
                    _exit(3);
                arena_free(b[i]);
            }
            struct arena_stats st;
            st.size = sizeof st;
            arena_get_stats(&st);
            (void)st;
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork %d: child "
               "ended with wait status 0x%x", f, status);
    }
    __atomic_store_n(&stop_churn, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < CHURNERS; i++)
        CHECK(pthread_join(tid[i], NULL) == 0);
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    CHECK_EQ(st.blocks_live, 0);
    CHECK_EQ(st.large_live, 0);
}

static void test_fork(void **state)
{
    (void)state;
    assert_int_equal(child_run("fork with threads", child_fork, NULL), 0);
}

/* fork() while another thread makes the process's very first allocation:
 * whatever locks that first allocation takes must not be inherited
 * locked.  Each round is a fresh process, so the allocator starts there. */
static void child_fork_during_start(void *arg)
{
    (void)arg;
    enum { CHURNERS = 2 };
    pthread_t tid[CHURNERS];
    __atomic_store_n(&stop_churn, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < CHURNERS; i++)
        CHECK(pthread_create(&tid[i], NULL, churn_main, (void *)(uintptr_t)(i + 1)) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(10);   /* a lock inherited locked ends as SIGALRM */
        void *p = arena_alloc(64);
        if (!p)
            _exit(2);
        arena_free(p);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    __atomic_store_n(&stop_churn, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < CHURNERS; i++)
        CHECK(pthread_join(tid[i], NULL) == 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork during the "
           "first allocation: child ended with wait status 0x%x%s", status,
           WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM
               ? " (SIGALRM: deadlocked)" : "");
}

static void test_fork_during_start(void **state)
{
    (void)state;
    uint64_t rounds = test_count("FORK_START_ROUNDS", 300, 30);
    for (uint64_t r = 0; r < rounds; r++)
        assert_int_equal(child_run("fork during start", child_fork_during_start, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_fork_during_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
