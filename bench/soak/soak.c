/*
 * arena-soak: a long randomized run of libarena under threads, thread
 * turnover, cross-thread frees and fork(), checking every block.
 *
 * usage: arena-soak [--minutes M] [--seconds S] [--threads T] [--seed N]
 *
 *   --minutes M   how long to run (default 1)
 *   --seconds S   the same in seconds (for a short run; overrides --minutes)
 *   --threads T   worker threads alive at once (default 8)
 *   --seed N      the random seed (default: from the clock; printed)
 *
 * Each worker allocates blocks of random sizes (mostly small: 0..512
 * bytes, 1 in 8 large: up to 64 KiB, rarely 256 KiB) with arena_alloc,
 * arena_calloc (checked zeroed) and arena_realloc (checked that the old
 * bytes moved), and fills every block with a pattern tied to the block's
 * id.  Every free is preceded by a check of the whole block.  A block
 * goes to another thread through a shared exchange of slots: putting a
 * block in a slot takes out whatever block was there, which this thread
 * then verifies and frees (a cross-thread free).  A block in the exchange
 * carries its id and size in its first 16 bytes.  Workers end after a
 * random 0.1 to 1 s of wall time (so threads come and go as often in a
 * slow build), leaving some of their blocks in the exchange (outliving
 * their thread), and are replaced by new threads.  Every 2 seconds a worker forks: the child checks the blocks it
 * inherited, allocates, checks and frees more, calls arena_release() and
 * exits 0; the worker waits for it and checks its status.  The invariant
 * validator ar_validate() (linked in from the static library) runs in
 * each worker every 10,000 operations, in the main thread every second
 * and in each fork child.
 *
 * Any corrupted block, failed allocation or failed child ends the run
 * with a message and exit status 1.  Progress every 10 s; at the end the
 * counts (operations, frees verified, cross-thread frees, threads started,
 * forks) and a check that, everything freed, no block is live.
 *
 * The checked build (-Dchecked=true) adds the allocator's own checks of
 * every free and of every reused block: run the long soak there
 * (docs/hardening.md).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"

#ifndef SOAK_VALIDATE
#define SOAK_VALIDATE 0
#endif
#if SOAK_VALIDATE
/* The allocator's invariant validator: a hidden function of the static
 * library (src/heap.c); it aborts with a report if an invariant is broken. */
void ar_validate(void);
#define validate() ar_validate()
#else
#define validate() ((void)0)
#endif

/* ---- options and shared state ------------------------------------------- */

static unsigned opt_threads = 8;
static uint64_t opt_ms = 60000;
static uint64_t opt_seed;

#define EXCHANGE_SLOTS 4096
#define MAX_LOCAL 1500                  /* blocks a worker keeps */
#define MAX_THREADS 64
#define VALIDATE_EVERY 10000
#define FORK_EVERY_MS 2000
#define LIFE_MIN_MS 100                 /* a worker lives 100 ms .. 1 s */
#define LIFE_MAX_MS 1000
#define HEADER 16                       /* id and size, in an exchanged block */

static _Atomic(unsigned char *) exchange[EXCHANGE_SLOTS];

static _Atomic uint64_t next_id = 1;
static _Atomic uint64_t n_ops, n_frees_verified, n_cross_frees, n_threads_started,
    n_forks, n_fork_blocks, n_validations;
static _Atomic uint64_t next_fork_ms;
static _Atomic int stopping;
static uint64_t start_ms;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Report and end the run (any thread, or a fork child). */
static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, "arena-soak: ", 12);
    w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
    _exit(1);
}

/* ---- random numbers and patterns ------------------------------------------ */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Byte j of block `id` is byte j % 8 of word(id, j / 8). */
static inline uint64_t word(uint64_t h, size_t k)
{
    return h ^ ((uint64_t)(k + 1) * 0x9E3779B97F4A7C15ULL);
}

/* Fill bytes [from, to) of the block with its pattern. */
static void fill(unsigned char *p, size_t from, size_t to, uint64_t id)
{
    uint64_t h = mix(id);
    size_t j = from;
    while (j < to && (j & 7)) {
        uint64_t w = word(h, j / 8);
        p[j] = ((const unsigned char *)&w)[j & 7];
        j++;
    }
    for (; j + 8 <= to; j += 8) {
        uint64_t w = word(h, j / 8);
        memcpy(p + j, &w, 8);
    }
    for (; j < to; j++) {
        uint64_t w = word(h, j / 8);
        p[j] = ((const unsigned char *)&w)[j & 7];
    }
}

/* The first wrong byte in [from, to), or (size_t)-1. */
static size_t check(const unsigned char *p, size_t from, size_t to, uint64_t id)
{
    uint64_t h = mix(id);
    for (size_t j = from; j < to; j++) {
        uint64_t w = word(h, j / 8);
        if (p[j] != ((const unsigned char *)&w)[j & 7])
            return j;
    }
    return (size_t)-1;
}

/* ---- blocks -------------------------------------------------------------- */

struct blk {
    unsigned char *p;
    size_t size;
    uint64_t id;
};

struct worker {
    uint64_t rng;
    struct blk local[MAX_LOCAL];
    size_t nlocal;
    uint64_t ops;
};

static void verify(const struct blk *b, const char *when)
{
    size_t off = check(b->p, 0, b->size, b->id);
    if (off != (size_t)-1)
        die("block %p (id %llu, %zu bytes) corrupted at offset %zu, found %s",
            (void *)b->p, (unsigned long long)b->id, b->size, off, when);
}

static size_t random_size(uint64_t *rng)
{
    uint64_t r = rnd(rng);
    unsigned pick = (unsigned)(r & 63);
    r >>= 6;
    if (pick < 32)
        return (size_t)(r % 129);              /* 0..128: half of them */
    if (pick < 56)
        return (size_t)(r % 513);              /* 0..512 */
    if (pick < 63)
        return 513 + (size_t)(r % (64 * 1024 - 512));   /* large */
    return 64 * 1024 + (size_t)(r % (192 * 1024));      /* up to 256 KiB */
}

static void need(void *p, const char *what, size_t size)
{
    if (p == NULL)
        die("%s(%zu) failed: %s", what, size, strerror(errno));
}

static void new_block_of(struct worker *w, size_t size)
{
    uint64_t id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    unsigned char *p;
    if (rnd(&w->rng) % 4 == 0) {
        p = arena_calloc(1, size);
        need(p, "arena_calloc", size);
        for (size_t j = 0; j < size; j++)
            if (p[j] != 0)
                die("arena_calloc(1, %zu) = %p: byte %zu is %u", size, (void *)p, j, p[j]);
    } else {
        p = arena_alloc(size);
        need(p, "arena_alloc", size);
    }
    if ((uintptr_t)p & 15)
        die("block %p is not 16-byte aligned", (void *)p);
    fill(p, 0, size, id);
    w->local[w->nlocal++] = (struct blk){ p, size, id };
}

static void new_block(struct worker *w)
{
    new_block_of(w, random_size(&w->rng));
}

static void free_local(struct worker *w, size_t i)
{
    verify(&w->local[i], "at its free");
    arena_free(w->local[i].p);
    atomic_fetch_add_explicit(&n_frees_verified, 1, memory_order_relaxed);
    w->local[i] = w->local[--w->nlocal];
}

static void resize(struct worker *w, size_t i)
{
    struct blk *b = &w->local[i];
    verify(b, "before a realloc");
    size_t size = random_size(&w->rng);
    unsigned char *q = arena_realloc(b->p, size);
    need(q, "arena_realloc", size);
    size_t keep = b->size < size ? b->size : size;
    size_t off = check(q, 0, keep, b->id);
    if (off != (size_t)-1)
        die("arena_realloc(%p, %zu -> %zu) = %p: byte %zu did not move with the block",
            (void *)b->p, b->size, size, (void *)q, off);
    if (size > b->size)
        fill(q, b->size, size, b->id);
    b->p = q;
    b->size = size;
}

/* An exchanged block: its id and size in its first 16 bytes (the size
 * stored mixed with the id, so a corrupted header is caught too), the
 * pattern after them. */
static void exchange_free(unsigned char *p)
{
    uint64_t id, sz;
    memcpy(&id, p, 8);
    memcpy(&sz, p + 8, 8);
    sz ^= mix(id ^ 0x5A5A5A5A5A5A5A5AULL);
    if (id == 0 || id >= atomic_load_explicit(&next_id, memory_order_relaxed) ||
        sz < HEADER || sz > 256 * 1024 + 1024)
        die("exchanged block %p: header corrupted (id %llu, size %llu)", (void *)p,
            (unsigned long long)id, (unsigned long long)sz);
    size_t off = check(p, HEADER, (size_t)sz, id);
    if (off != (size_t)-1)
        die("exchanged block %p (id %llu, %llu bytes) corrupted at offset %zu", (void *)p,
            (unsigned long long)id, (unsigned long long)sz, off);
    arena_free(p);
    atomic_fetch_add_explicit(&n_frees_verified, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_cross_frees, 1, memory_order_relaxed);
}

/* Put local block i into a random slot; free what was there. */
static void hand_over(struct worker *w, size_t i)
{
    struct blk b = w->local[i];
    if (b.size < HEADER)
        return;
    verify(&b, "before it was handed over");
    uint64_t sz = (uint64_t)b.size ^ mix(b.id ^ 0x5A5A5A5A5A5A5A5AULL);
    memcpy(b.p, &b.id, 8);
    memcpy(b.p + 8, &sz, 8);
    w->local[i] = w->local[--w->nlocal];
    unsigned slot = (unsigned)(rnd(&w->rng) % EXCHANGE_SLOTS);
    unsigned char *old = atomic_exchange_explicit(&exchange[slot], b.p, memory_order_acq_rel);
    if (old != NULL)
        exchange_free(old);
}

/* ---- fork ------------------------------------------------------------------ */

/* AddressSanitizer's allocator (GCC 12's, clang 14's) does not take its
 * locks around fork(): a child forked while another thread was inside
 * malloc or free hangs at its first malloc or free of the system
 * allocator.  libarena's own paths are fork-safe (its atfork handlers), so
 * under ASan a fork child only allocates and frees blocks of libarena's
 * size classes, and leaves the large ones (the system allocator's) alone. */
#if defined(__SANITIZE_ADDRESS__)
#define CHILD_SMALL_ONLY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHILD_SMALL_ONLY 1
#endif
#endif
#ifndef CHILD_SMALL_ONLY
#define CHILD_SMALL_ONLY 0
#endif

/* Free local block i in a fork child, or, under ASan, drop a large one
 * (it goes with the child's address space). */
static void child_free(struct worker *w, size_t i)
{
    if (CHILD_SMALL_ONLY && w->local[i].size > ARENA_SMALL_MAX) {
        verify(&w->local[i], "in a fork child");
        w->local[i] = w->local[--w->nlocal];
        return;
    }
    free_local(w, i);
}

static void fork_child(struct worker *w)
{
    for (size_t i = 0; i < w->nlocal; i++)
        verify(&w->local[i], "in a fork child");
    for (size_t i = 0; i < w->nlocal; i += 2)
        child_free(w, i);
    size_t base = w->nlocal;
    for (int i = 0; i < 300 && w->nlocal < MAX_LOCAL; i++) {
        size_t size = random_size(&w->rng);
        if (CHILD_SMALL_ONLY)
            size %= ARENA_SMALL_MAX + 1;
        new_block_of(w, size);
    }
    for (size_t i = base; i < w->nlocal; i++)
        verify(&w->local[i], "in a fork child");
    while (w->nlocal > 0)
        child_free(w, w->nlocal - 1);
    arena_release();
    validate();
    _exit(0);
}

static void maybe_fork(struct worker *w, uint64_t now)
{
    uint64_t due = atomic_load_explicit(&next_fork_ms, memory_order_relaxed);
    if (now < due || atomic_load_explicit(&stopping, memory_order_relaxed))
        return;
    if (!atomic_compare_exchange_strong(&next_fork_ms, &due, now + FORK_EVERY_MS))
        return;                         /* another worker forks this time */
    uint64_t blocks = w->nlocal;
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0)
        fork_child(w);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("a fork child failed (wait status 0x%x)", status);
    atomic_fetch_add_explicit(&n_forks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_fork_blocks, blocks, memory_order_relaxed);
}

/* ---- workers ----------------------------------------------------------------- */

struct slot {
    pthread_t thread;
    int running;                        /* started, not joined (main only) */
    _Atomic int done;                   /* the worker has returned */
    uint64_t seed;
};

static struct slot slots[MAX_THREADS];
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;

static void *worker_main(void *arg)
{
    struct slot *s = arg;
    struct worker *w = malloc(sizeof *w);
    if (w == NULL)
        die("malloc of a worker: %s", strerror(errno));
    w->rng = s->seed;
    w->nlocal = 0;
    w->ops = 0;
    /* Its life: wall time, so that threads come and go as often in a
     * build that runs 100 times slower (ThreadSanitizer, valgrind). */
    uint64_t end = now_ms() + LIFE_MIN_MS + rnd(&w->rng) % (LIFE_MAX_MS - LIFE_MIN_MS);
    size_t target = 50 + (size_t)(rnd(&w->rng) % (MAX_LOCAL - 50));
    while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
        unsigned op = (unsigned)(rnd(&w->rng) % 16);
        if (w->nlocal == 0 || (op < 7 && w->nlocal < target) || w->nlocal == MAX_LOCAL - 1) {
            if (w->nlocal < MAX_LOCAL - 1)
                new_block(w);
            else
                free_local(w, (size_t)(rnd(&w->rng) % w->nlocal));
        } else if (op < 12) {
            free_local(w, (size_t)(rnd(&w->rng) % w->nlocal));
        } else if (op < 14) {
            hand_over(w, (size_t)(rnd(&w->rng) % w->nlocal));
        } else {
            resize(w, (size_t)(rnd(&w->rng) % w->nlocal));
        }
        w->ops++;
        if (w->ops % 64 == 0) {
            atomic_fetch_add_explicit(&n_ops, 64, memory_order_relaxed);
            uint64_t now = now_ms();
            if (now >= end)
                break;
            maybe_fork(w, now);
        }
        if (w->ops % VALIDATE_EVERY == 0) {
            validate();
            atomic_fetch_add_explicit(&n_validations, 1, memory_order_relaxed);
        }
        if (w->ops % 25000 == 0)
            arena_release();
    }
    atomic_fetch_add_explicit(&n_ops, w->ops % 64, memory_order_relaxed);
    /* Exit with live blocks: some go to the exchange for other threads,
     * the rest are freed here. */
    while (w->nlocal > 0) {
        size_t i = w->nlocal - 1;
        if (rnd(&w->rng) % 4 == 0 && !atomic_load_explicit(&stopping, memory_order_relaxed))
            hand_over(w, i);
        if (w->nlocal > i)
            free_local(w, i);
    }
    free(w);
    pthread_mutex_lock(&done_lock);
    atomic_store(&s->done, 1);
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

static void start(struct slot *s, uint64_t *rng)
{
    s->seed = rnd(rng);
    atomic_store(&s->done, 0);
    int rc = pthread_create(&s->thread, NULL, worker_main, s);
    if (rc != 0)
        die("pthread_create: %s", strerror(rc));
    s->running = 1;
    atomic_fetch_add_explicit(&n_threads_started, 1, memory_order_relaxed);
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: arena-soak [--minutes M] [--seconds S] [--threads T] [--seed N]\n");
    exit(2);
}

static uint64_t number(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        usage();
    return v;
}

static void print_counts(const char *what, uint64_t elapsed_ms)
{
    printf("%s %llu.%llu s: %llu operations, %llu frees verified (%llu cross-thread), "
           "%llu threads started, %llu forks, %llu validations\n",
           what, (unsigned long long)(elapsed_ms / 1000), (unsigned long long)(elapsed_ms % 1000 / 100),
           (unsigned long long)atomic_load(&n_ops), (unsigned long long)atomic_load(&n_frees_verified),
           (unsigned long long)atomic_load(&n_cross_frees),
           (unsigned long long)atomic_load(&n_threads_started),
           (unsigned long long)atomic_load(&n_forks), (unsigned long long)atomic_load(&n_validations));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int seeded = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--minutes") == 0)
            opt_ms = number(argv[++i]) * 60000;
        else if (strcmp(argv[i], "--seconds") == 0)
            opt_ms = number(argv[++i]) * 1000;
        else if (strcmp(argv[i], "--threads") == 0)
            opt_threads = (unsigned)number(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0) {
            opt_seed = number(argv[++i]);
            seeded = 1;
        } else
            usage();
    }
    if (opt_threads == 0 || opt_threads > MAX_THREADS || opt_ms == 0) {
        fprintf(stderr, "arena-soak: --threads must be 1..%d and the duration above 0\n",
                MAX_THREADS);
        return 2;
    }
    if (!seeded)
        opt_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("arena-soak: %u threads for %llu s, seed %llu%s\n", opt_threads,
           (unsigned long long)(opt_ms / 1000), (unsigned long long)opt_seed,
           SOAK_VALIDATE ? ", ar_validate() on" : "");
    fflush(stdout);

    uint64_t rng = opt_seed;
    start_ms = now_ms();
    atomic_store(&next_fork_ms, start_ms + (opt_ms < 2 * FORK_EVERY_MS ? opt_ms / 3 : FORK_EVERY_MS));
    for (unsigned i = 0; i < opt_threads; i++)
        start(&slots[i], &rng);

    uint64_t steps = (opt_ms + 9999) / 10000, step = 0;
    uint64_t next_progress = start_ms + 10000, next_validate = start_ms + 1000;
    for (;;) {
        uint64_t now = now_ms();
        int over = now - start_ms >= opt_ms;
        if (over)
            atomic_store(&stopping, 1);
        /* Join the workers that ended; replace them while time is left. */
        unsigned alive = 0;
        for (unsigned i = 0; i < opt_threads; i++) {
            struct slot *s = &slots[i];
            if (s->running && atomic_load(&s->done)) {
                int rc = pthread_join(s->thread, NULL);
                if (rc != 0)
                    die("pthread_join: %s", strerror(rc));
                s->running = 0;
            }
            if (!s->running && !over)
                start(s, &rng);
            alive += s->running != 0;
        }
        if (over && alive == 0)
            break;
        if (now >= next_validate) {
            validate();
            atomic_fetch_add_explicit(&n_validations, 1, memory_order_relaxed);
            next_validate = now + 1000;
        }
        if (now >= next_progress) {
            char what[64];
            snprintf(what, sizeof what, "step %llu of %llu:", (unsigned long long)++step,
                     (unsigned long long)steps);
            print_counts(what, now - start_ms);
            next_progress += 10000;
        }
        /* Wait for a worker to end, or for the next tick (progress,
         * validation, the deadline): at most 100 ms. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&done_lock);
        int any = 0;
        for (unsigned i = 0; i < opt_threads && !any; i++)
            any = slots[i].running && atomic_load(&slots[i].done);
        if (!any)
            pthread_cond_timedwait(&done_cond, &done_lock, &until);
        pthread_mutex_unlock(&done_lock);
    }

    /* Every worker has ended: what is left in the exchange is freed here. */
    for (unsigned i = 0; i < EXCHANGE_SLOTS; i++) {
        unsigned char *p = atomic_exchange(&exchange[i], NULL);
        if (p != NULL)
            exchange_free(p);
    }
    arena_release();
    validate();
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    uint64_t elapsed = now_ms() - start_ms;
    print_counts("arena-soak: done in", elapsed);
    printf("arena-soak: %llu blocks inherited by fork children; at the end %llu small and %llu "
           "large blocks live, %llu arenas held, %llu reserved and %llu released in all\n",
           (unsigned long long)atomic_load(&n_fork_blocks), (unsigned long long)st.blocks_live,
           (unsigned long long)st.large_live, (unsigned long long)st.arenas_live,
           (unsigned long long)st.arenas_reserved, (unsigned long long)st.arenas_released);
    if (st.blocks_live != 0 || st.large_live != 0)
        die("blocks still live after every block was freed: %llu small, %llu large",
            (unsigned long long)st.blocks_live, (unsigned long long)st.large_live);
    if (atomic_load(&n_threads_started) <= opt_threads || atomic_load(&n_forks) == 0)
        die("the run was too short to replace a thread and fork (%llu threads, %llu forks)",
            (unsigned long long)atomic_load(&n_threads_started),
            (unsigned long long)atomic_load(&n_forks));
    printf("arena-soak: OK\n");
    return 0;
}
