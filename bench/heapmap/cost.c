/*
 * heapmap-cost: what the observability calls cost with many live blocks.
 *
 * Allocates N blocks (default 1,000,000) of random sizes 16..512 bytes,
 * then times each call (median, min and max of R runs): arena_get_stats,
 * arena_get_class_stats, arena_write_metrics and arena_write_heap_map to
 * /dev/null, arena_write_heap_map to a memory stream, and arena_print_stats
 * (the report with the fragmentation table) to /dev/null.  Then the same
 * again while T other threads (default 2) allocate and free.  The target:
 * a map or the metrics of a heap with 1M live blocks in under 50 ms (the
 * verdict column compares the median wall time).  The cpu column is the
 * calling thread's CPU time: with more threads than cores, wall time also
 * counts the time spent waiting for a core.
 *
 * usage: heapmap-cost [--blocks N] [--runs R] [--threads T] [--quick]
 */
#include <arena.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: on 2 shared cores with other threads
 * running, wall time includes waiting for a core. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)         /* xorshift64* */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static FILE *devnull;
static struct arena_stats stats;
static struct arena_class_stats cls[ARENA_NUM_CLASSES];

static int op_get_stats(void)
{
    stats.size = sizeof stats;
    arena_get_stats(&stats);
    return 0;
}

static int op_class_stats(void)
{
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++)
        cls[c].size = sizeof cls[c];
    return arena_get_class_stats(cls, ARENA_NUM_CLASSES) == ARENA_NUM_CLASSES ? 0 : -1;
}

static int op_metrics(void)
{
    return arena_write_metrics(devnull);
}

static int op_map(void)
{
    return arena_write_heap_map(devnull);
}

static size_t memstream_bytes;

static int op_map_memstream(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return -1;
    int rc = arena_write_heap_map(f);
    if (fclose(f) != 0)
        rc = -1;
    memstream_bytes = len;
    free(buf);
    return rc;
}

static int op_print_stats(void)
{
    arena_print_stats(devnull);
    return ferror(devnull) ? -1 : 0;
}

static const struct {
    const char *name;
    int (*fn)(void);
    int target;                 /* the 50 ms target applies */
} ops[] = {
    { "arena_get_stats", op_get_stats, 0 },
    { "arena_get_class_stats", op_class_stats, 0 },
    { "arena_write_metrics (/dev/null)", op_metrics, 1 },
    { "arena_write_heap_map (/dev/null)", op_map, 1 },
    { "arena_write_heap_map (memory stream)", op_map_memstream, 1 },
    { "arena_print_stats (/dev/null)", op_print_stats, 0 },
};
#define NOPS (sizeof ops / sizeof ops[0])

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- threads allocating meanwhile ---------------------------------------- */

static atomic_int stop;
static atomic_uint_fast64_t churn_ops;

static void *churn(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
    enum { SLOTS = 20000 };
    void **slot = calloc(SLOTS, sizeof *slot);
    if (slot == NULL)
        return NULL;
    uint64_t n = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int k = 0; k < 1000; k++) {
            uint64_t r = rnd(&seed);
            size_t i = (size_t)(r % SLOTS);
            arena_free(slot[i]);
            slot[i] = arena_alloc(16 + (size_t)((r >> 32) % 497));
        }
        n += 1000;
    }
    for (size_t i = 0; i < SLOTS; i++)
        arena_free(slot[i]);
    free(slot);
    atomic_fetch_add(&churn_ops, n);
    return NULL;
}

static int measure(const char *title, unsigned runs, double *median_out)
{
    double *t = malloc(2 * runs * sizeof *t), *c = t + runs;
    if (t == NULL)
        return -1;
    printf("\n%s\n", title);
    printf("%-38s %10s %10s %10s %11s  %s\n", "call", "median ms", "min ms", "max ms",
           "cpu med ms", "");
    int bad = 0;
    for (size_t o = 0; o < NOPS; o++) {
        fprintf(stderr, "heapmap-cost: timing %s, %u runs ...\n", ops[o].name, runs);
        for (unsigned r = 0; r < runs; r++) {
            double t0 = now(), c0 = cpu_now();
            if (ops[o].fn() != 0) {
                fprintf(stderr, "heapmap-cost: %s failed: %s\n", ops[o].name, strerror(errno));
                bad = 1;
            }
            t[r] = (now() - t0) * 1e3;
            c[r] = (cpu_now() - c0) * 1e3;
        }
        qsort(t, runs, sizeof *t, cmp_double);
        qsort(c, runs, sizeof *c, cmp_double);
        double cmed = runs % 2 ? c[runs / 2] : (c[runs / 2 - 1] + c[runs / 2]) / 2;
        double med = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
        median_out[o] = med;
        printf("%-38s %10.3f %10.3f %10.3f %11.3f  %s\n", ops[o].name, med, t[0], t[runs - 1],
               cmed,
               ops[o].target ? (med < 50 ? "under 50 ms" : "OVER 50 ms") : "");
    }
    free(t);
    return bad ? -1 : 0;
}

static unsigned long long arg_num(const char *opt, const char *v, unsigned long long lo,
                                  unsigned long long hi)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v < '0' || *v > '9' || errno || *end || x < lo || x > hi) {
        fprintf(stderr, "heapmap-cost: %s wants a number from %llu to %llu, not '%s'\n"
                "usage: heapmap-cost [--blocks N] [--runs R] [--threads T] [--quick]\n",
                opt, lo, hi, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    unsigned long long blocks = 1000000, runs = 9, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            blocks = 50000;
            runs = 3;
        } else if (i + 1 < argc && strcmp(argv[i], "--blocks") == 0) {
            blocks = arg_num("--blocks", argv[++i], 1, 100000000);
        } else if (i + 1 < argc && strcmp(argv[i], "--runs") == 0) {
            runs = arg_num("--runs", argv[++i], 1, 1000);
        } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
            threads = arg_num("--threads", argv[++i], 0, 64);
        } else {
            fprintf(stderr, "usage: heapmap-cost [--blocks N] [--runs R] [--threads T] "
                            "[--quick]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    devnull = fopen("/dev/null", "w");
    if (devnull == NULL) {
        perror("heapmap-cost: /dev/null");
        return 1;
    }
    fprintf(stderr, "heapmap-cost: allocating %llu blocks of 16..512 bytes ...\n", blocks);
    void **p = malloc(blocks * sizeof *p);
    if (p == NULL)
        return 1;
    uint64_t seed = 0x5eedf00dULL;
    for (unsigned long long i = 0; i < blocks; i++) {
        p[i] = arena_alloc(16 + (size_t)(rnd(&seed) % 497));
        if (p[i] == NULL) {
            fprintf(stderr, "heapmap-cost: out of memory after %llu blocks\n", i);
            return 1;
        }
    }
    op_get_stats();
    printf("heapmap-cost: %" PRIu64 " live blocks (%.1f MiB of size classes) in %" PRIu64
           " arenas (%" PRIu64 " pools), backend %s; median of %llu runs\n",
           stats.blocks_live, (double)stats.bytes_live / 1048576.0, stats.arenas_live,
           stats.pools_total, stats.backend, runs);

    double alone[NOPS], busy[NOPS];
    int bad = measure("alone (no other thread)", (unsigned)runs, alone) != 0;
    printf("(the heap map is %zu bytes of JSON)\n", memstream_bytes);

    if (threads > 0) {
        pthread_t *t = calloc(threads, sizeof *t);
        if (t == NULL)
            return 1;
        fprintf(stderr, "heapmap-cost: starting %llu threads that allocate and free ...\n",
                threads);
        for (unsigned long long i = 0; i < threads; i++)
            if (pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)) != 0) {
                fprintf(stderr, "heapmap-cost: cannot start a thread\n");
                return 1;
            }
        double t0 = now();
        char title[120];
        snprintf(title, sizeof title, "while %llu other threads allocate and free", threads);
        bad |= measure(title, (unsigned)runs, busy) != 0;
        atomic_store(&stop, 1);
        for (unsigned long long i = 0; i < threads; i++)
            pthread_join(t[i], NULL);
        double secs = now() - t0;
        printf("(those threads made %.1f million alloc+free pairs in %.2f s meanwhile)\n",
               (double)atomic_load(&churn_ops) / 1e6, secs);
        free(t);
    }
    fprintf(stderr, "heapmap-cost: freeing ...\n");
    for (unsigned long long i = 0; i < blocks; i++)
        arena_free(p[i]);
    free(p);
    fclose(devnull);
    return bad;
}
