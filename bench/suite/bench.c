/*
 * bench.c — the libarena benchmark workloads.
 *
 * One source, compiled three times:
 *   bench-arena   (BENCH_ARENA defined) calls arena_alloc / arena_free /
 *                 arena_realloc and is linked with libarena;
 *   bench-malloc  calls malloc / free / realloc.  Run plain it measures
 *                 glibc; run with LD_PRELOAD=<peer library> it measures that
 *                 peer.  Every allocator therefore runs in its own process.
 *   bench-null    (BENCH_NULL defined) calls null_alloc / null_free in
 *                 null_alloc.c, an allocator that does nothing (it hands out
 *                 one static buffer).  It runs `fixed` only: under callgrind
 *                 it gives the instructions of the loop and of the calls
 *                 themselves, which run.sh subtracts from every allocator's.
 *
 * The workload code, the sizes and the random sequence (a splitmix64
 * generator with fixed seeds) are identical in all binaries; only the three
 * b_alloc / b_free / b_realloc wrappers differ.  Every block is touched (its
 * first and last byte written, its first byte read back before the free).
 *
 * Usage:  bench-X SCENARIO [key=value ...]
 *
 *   fixed      size=64 n=...          tight alloc+free loop of one size
 *   churn      slots=100000 steps=... free a random slot, allocate 8..512 into it
 *   burst      dist=48|uniform n=...  allocate n blocks, then free them all
 *   survivors  n=... keep=100         the burst (48 B), 1 in `keep` stays alive
 *   realloc    strings=1024 steps=... grow strings 16 -> 512 in steps of 1..16
 *   threads    threads=T slots=... steps=...   T threads, each a private churn
 *   xthread    n=...                  a producer allocates, a consumer frees
 *   server     threads=2 slots=... steps=... handover=...   larson-style
 *   larson     workers=2 slots=20000 steps=20000 gens=30 max=1000
 *              W chains of threads; each thread churns its chain's slots
 *              (8..max B), starts its successor, hands the slots over, exits
 *   tstress    threads=4 rounds=20 iter=200 transfer=1000 local=1000
 *              rounds of T short-lived threads allocating batches, swapping
 *              objects through a shared transfer array (objects outlive
 *              their thread and round)
 *   rounds     n=300000 rounds=6 order=alloc|random wait_ms=1500
 *              allocate n blocks (16..512 B, every byte written), free them
 *              all; R times; then RSS every 100 ms for wait_ms
 *   heapdestroy n=1000000
 *              n blocks (16..512 B, every byte written) freed all at once
 *              by arena_heap_destroy (bench-arena only), against the same
 *              blocks freed one by one, and against the kernel's floor:
 *              munmap of as many resident bytes in one call
 *   records    records=2000000
 *              rows of 3..5 objects (48 B, then 16..300 B) linked in
 *              allocation order: allocated, walked without allocator calls,
 *              freed in order
 *
 * Every scenario also takes label=NAME: the variant printed on every line
 * (default: derived from the arguments), so that two cells of a scenario
 * that differ only in their environment can be told apart.
 *
 * Output, one fact per line, whitespace-separated (parsed by report.py):
 *   info    KEY VALUE
 *   result  SCENARIO VARIANT METRIC VALUE UNIT
 *   series  SCENARIO VARIANT PHASE T_MS RSS_KIB     (burst, survivors: phases
 *           alloc and free; rounds: phase wait, T_MS since the last free)
 *
 * Under strace, getppid() marks the start and the end of a scenario, so that
 * run.sh can count the allocator's system calls between the two marks.
 *
 * RSS is read from /proc/self/statm, the peak from VmHWM in
 * /proc/self/status.  Big pointer arrays are mapped directly with mmap and
 * touched before the baseline is read, so they do not go through the
 * allocator under test and cancel out of every "heap" figure.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#if defined(BENCH_ARENA)
#include "arena.h"
#elif defined(BENCH_NULL)
#include "null_alloc.h"
#else
#include <dlfcn.h>
#endif

/* ------------------------------------------------------------------ */
/* The allocator under test                                           */
/* ------------------------------------------------------------------ */

#if defined(BENCH_ARENA)
static inline void *b_alloc(size_t n) { return arena_alloc(n); }
static inline void b_free(void *p) { arena_free(p); }
static inline void *b_realloc(void *p, size_t n) { return arena_realloc(p, n); }
static const char *allocator_name(void) { return "libarena"; }
#elif defined(BENCH_NULL)
/* Out-of-line calls into null_alloc.c: the calls stay, the work does not. */
static inline void *b_alloc(size_t n) { return null_alloc(n); }
static inline void b_free(void *p) { null_free(p); }
static inline void *b_realloc(void *p, size_t n) { return null_realloc(p, n); }
static const char *allocator_name(void) { return "null"; }
#else
static inline void *b_alloc(size_t n) { return malloc(n); }
static inline void b_free(void *p) { free(p); }
static inline void *b_realloc(void *p, size_t n) { return realloc(p, n); }

/* Which malloc did the dynamic linker pick?  Each peer exports a symbol of
 * its own; run.sh checks the answer so a failed LD_PRELOAD cannot pass
 * unnoticed as glibc. */
static const char *allocator_name(void)
{
    if (dlsym(RTLD_DEFAULT, "mi_malloc") != NULL)
        return "mimalloc";
    if (dlsym(RTLD_DEFAULT, "mallctl") != NULL)
        return "jemalloc";
    if (dlsym(RTLD_DEFAULT, "tc_malloc") != NULL)
        return "tcmalloc";
    return "glibc";
}
#endif

/* Keep the compiler from eliding an alloc/free pair or the stores into a
 * block about to be freed. */
static inline void escape(void *p)
{
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

static volatile unsigned bench_sink;

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "bench: %s\n", what);
    exit(2);
}

static void *checked(void *p)
{
    if (p == NULL)
        die("allocation failed");
    return p;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Operations per second over [t0, t1] (never divides by zero). */
static double per_second(double ops, double t0, double t1)
{
    double s = (t1 > t0 ? t1 - t0 : 1.0) / 1e9;
    return ops / s;
}

/* splitmix64: tiny, fast, and the same sequence for every allocator. */
struct rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) by multiply-shift. */
static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#define SEED_SIZES 0x6c6962617265ull    /* fixed seeds: never change them */
#define SEED_PICKS 0x61726e6131ull

/* Sizes used by the scenarios. */
static inline size_t size_churn(struct rng *r) { return 8 + rng_below(r, 505); }     /* 8..512 */
static inline size_t size_uniform(struct rng *r) { return 16 + rng_below(r, 497); }  /* 16..512 */

static inline void touch(unsigned char *p, size_t n, unsigned v)
{
    p[0] = (unsigned char)v;
    p[n - 1] = (unsigned char)v;
}

/* Memory that does not come from the allocator under test, resident before
 * the baseline is taken. */
static void *big_array(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        die("mmap of a pointer array failed");
    memset(p, 0, bytes);
    return p;
}

static void big_array_free(void *p, size_t bytes)
{
    munmap(p, bytes);
}

/* ------------------------------------------------------------------ */
/* Resident memory                                                    */
/* ------------------------------------------------------------------ */

static int statm_fd = -1;
static uint64_t page_kib = 4;

static uint64_t rss_kib(void)
{
    char buf[128];
    ssize_t k = pread(statm_fd, buf, sizeof buf - 1, 0);
    if (k <= 0)
        die("cannot read /proc/self/statm");
    buf[k] = '\0';
    unsigned long long size = 0, res = 0;
    if (sscanf(buf, "%llu %llu", &size, &res) != 2)
        die("cannot parse /proc/self/statm");
    return (uint64_t)res * page_kib;
}

static uint64_t status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        die("cannot open /proc/self/status");
    char line[256];
    size_t klen = strlen(key);
    unsigned long long v = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtoull(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return (uint64_t)v;
}

/* Reset the peak (VmHWM) to the current RSS; silently ignored where the
 * kernel does not support it. */
static void reset_peak(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "5", 1) != 1) {
            /* older kernel: the peak then includes start-up, which is tiny */
        }
        close(fd);
    }
}

/* ------------------------------------------------------------------ */
/* Output                                                             */
/* ------------------------------------------------------------------ */

static const char *cur_scenario = "";
static char cur_variant[32] = "-";
static const char *variant_label;       /* label=NAME, NULL if not given */

static const char *variant(void)
{
    return variant_label != NULL ? variant_label : cur_variant;
}

static void result(const char *metric, double value, const char *unit)
{
    printf("result %s %s %s %.6g %s\n", cur_scenario, variant(), metric, value, unit);
}

#define SERIES_POINTS 100

struct series {
    double t0;
    uint64_t every;
};

static void series_point(const struct series *s, const char *phase)
{
    printf("series %s %s %s %.3f %llu\n", cur_scenario, variant(), phase,
           (now_ns() - s->t0) / 1e6, (unsigned long long)rss_kib());
}

#if defined(BENCH_ARENA)
static struct arena_stats stats_before;
#endif

/* A system call no allocator makes: under strace it marks where the
 * scenario starts and ends (see run.sh).  Costs one syscall per run. */
static void strace_mark(void)
{
    bench_sink += (unsigned)getppid();
}

static void scenario_begin(void)
{
#if defined(BENCH_ARENA)
    stats_before.size = sizeof stats_before;
    arena_get_stats(&stats_before);
#endif
    strace_mark();
}

/* Backend system calls made during the scenario (libarena only). */
static void scenario_end(void)
{
    strace_mark();
#if defined(BENCH_ARENA)
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    result("calls_mmap", (double)(st.calls_mmap - stats_before.calls_mmap), "calls");
    result("calls_munmap", (double)(st.calls_munmap - stats_before.calls_munmap), "calls");
    result("calls_madvise", (double)(st.calls_madvise - stats_before.calls_madvise), "calls");
    result("calls_brk", (double)(st.calls_brk - stats_before.calls_brk), "calls");
    result("arena_mapped_peak_kib", (double)st.bytes_mapped_peak / 1024.0, "KiB");
#endif
}

/* ------------------------------------------------------------------ */
/* Arguments: key=value                                               */
/* ------------------------------------------------------------------ */

static int g_argc;
static char **g_argv;

static const char *arg_str(const char *key, const char *def)
{
    size_t klen = strlen(key);
    for (int i = 2; i < g_argc; i++)
        if (strncmp(g_argv[i], key, klen) == 0 && g_argv[i][klen] == '=')
            return g_argv[i] + klen + 1;
    return def;
}

static uint64_t arg_u64(const char *key, uint64_t def)
{
    const char *s = arg_str(key, NULL);
    if (s == NULL)
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s) {
        fprintf(stderr, "bench: bad value for %s: %s\n", key, s);
        exit(2);
    }
    return (uint64_t)v;
}

static void check_args(const char *const *known)
{
    for (int i = 2; i < g_argc; i++) {
        int ok = strncmp(g_argv[i], "label=", 6) == 0 && g_argv[i][6] != '\0';
        for (const char *const *k = known; *k != NULL; k++) {
            size_t klen = strlen(*k);
            if (strncmp(g_argv[i], *k, klen) == 0 && g_argv[i][klen] == '=')
                ok = 1;
        }
        if (!ok) {
            fprintf(stderr, "bench: unknown argument for %s: %s\n", g_argv[1], g_argv[i]);
            exit(2);
        }
    }
}

/* ------------------------------------------------------------------ */
/* fixed: tight alloc+free loop of one size                           */
/* ------------------------------------------------------------------ */

static void run_fixed(void)
{
    static const char *const known[] = {"size", "n", NULL};
    check_args(known);
    size_t size = (size_t)arg_u64("size", 64);
    uint64_t n = arg_u64("n", 10000000);
    if (size == 0 || size > 512 || n == 0)
        die("fixed: need 1 <= size <= 512 and n > 0");
    snprintf(cur_variant, sizeof cur_variant, "%zu", size);
    scenario_begin();

    /* warm up: the first pool / page / thread cache is not part of a pair */
    for (unsigned i = 0; i < 1000; i++) {
        unsigned char *p = checked(b_alloc(size));
        touch(p, size, i);
        escape(p);
        b_free(p);
    }
    double t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        unsigned char *p = checked(b_alloc(size));
        touch(p, size, (unsigned)i);
        escape(p);
        b_free(p);
    }
    double t1 = now_ns();
    result("ns_per_pair", (t1 - t0) / (double)n, "ns");
    result("pairs", (double)n, "pairs");
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* churn: a working set of live slots, random free + random alloc     */
/* ------------------------------------------------------------------ */

struct churn_job {
    uint64_t slots, steps, seed;
    pthread_barrier_t *barrier;     /* NULL: single-threaded */
    double t_start, t_end;
    unsigned sum;
};

static void *churn_body(void *arg)
{
    struct churn_job *job = arg;
    struct rng r = {job->seed};
    size_t bytes = job->slots * sizeof(unsigned char *);
    unsigned char **slot = big_array(bytes);
    unsigned sum = 0;

    for (uint64_t i = 0; i < job->slots; i++) {
        size_t n = size_churn(&r);
        slot[i] = checked(b_alloc(n));
        touch(slot[i], n, (unsigned)i);
    }
    if (job->barrier != NULL)
        pthread_barrier_wait(job->barrier);
    job->t_start = now_ns();
    for (uint64_t s = 0; s < job->steps; s++) {
        uint32_t i = rng_below(&r, (uint32_t)job->slots);
        sum += slot[i][0];
        b_free(slot[i]);
        size_t n = size_churn(&r);
        slot[i] = checked(b_alloc(n));
        touch(slot[i], n, (unsigned)s);
    }
    job->t_end = now_ns();
    for (uint64_t i = 0; i < job->slots; i++)
        b_free(slot[i]);
    big_array_free(slot, bytes);
    job->sum = sum;
    return NULL;
}

static void run_churn(void)
{
    static const char *const known[] = {"slots", "steps", NULL};
    check_args(known);
    struct churn_job job = {0};
    job.slots = arg_u64("slots", 100000);
    job.steps = arg_u64("steps", 5000000);
    job.seed = SEED_SIZES;
    if (job.slots == 0 || job.slots > UINT32_MAX || job.steps == 0)
        die("churn: need slots > 0 and steps > 0");
    snprintf(cur_variant, sizeof cur_variant, "%llu", (unsigned long long)job.slots);
    scenario_begin();
    churn_body(&job);
    bench_sink = job.sum;
    result("ns_per_pair", (job.t_end - job.t_start) / (double)job.steps, "ns");
    result("pairs", (double)job.steps, "pairs");
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* threads: T threads, each a churn on private slots                  */
/* ------------------------------------------------------------------ */

static void run_threads(void)
{
    static const char *const known[] = {"threads", "slots", "steps", NULL};
    check_args(known);
    unsigned t = (unsigned)arg_u64("threads", 2);
    uint64_t slots = arg_u64("slots", 100000);
    uint64_t steps = arg_u64("steps", 2000000);
    if (t == 0 || t > 256 || slots == 0 || slots > UINT32_MAX || steps == 0)
        die("threads: need 1 <= threads <= 256, slots > 0, steps > 0");
    snprintf(cur_variant, sizeof cur_variant, "%u", t);
    scenario_begin();

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, t + 1);
    struct churn_job *jobs = calloc(t, sizeof *jobs);
    pthread_t *tid = calloc(t, sizeof *tid);
    if (jobs == NULL || tid == NULL)
        die("out of memory");
    for (unsigned i = 0; i < t; i++) {
        jobs[i].slots = slots;
        jobs[i].steps = steps;
        jobs[i].seed = SEED_SIZES + i;
        jobs[i].barrier = &barrier;
        if (pthread_create(&tid[i], NULL, churn_body, &jobs[i]) != 0)
            die("pthread_create failed");
    }
    pthread_barrier_wait(&barrier);
    double t0 = 0, t1 = 0;      /* earliest start, latest end over threads */
    unsigned sum = 0;
    for (unsigned i = 0; i < t; i++) {
        pthread_join(tid[i], NULL);
        if (i == 0 || jobs[i].t_start < t0)
            t0 = jobs[i].t_start;
        if (i == 0 || jobs[i].t_end > t1)
            t1 = jobs[i].t_end;
        sum += jobs[i].sum;
    }
    bench_sink = sum;
    double ops = (double)steps * t;
    result("ops_per_s", per_second(ops, t0, t1), "ops/s");
    result("ns_per_pair", (t1 - t0) / ops, "ns");
    result("nproc", (double)sysconf(_SC_NPROCESSORS_ONLN), "cores");
    pthread_barrier_destroy(&barrier);
    free(jobs);
    free(tid);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* burst and survivors                                                */
/* ------------------------------------------------------------------ */

static void burst_common(int uniform, uint64_t n, uint64_t keep_one_in)
{
    size_t bytes = n * sizeof(unsigned char *);
    unsigned char **ptr = big_array(bytes);
    struct rng r = {SEED_SIZES};
    struct rng pick = {SEED_PICKS};
    unsigned sum = 0;
    double requested = 0;

    reset_peak();
    uint64_t base = rss_kib();
    result("rss_base_kib", (double)base, "KiB");

    struct series ser = {now_ns(), n / SERIES_POINTS ? n / SERIES_POINTS : 1};
    series_point(&ser, "alloc");
    double t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        size_t sz = uniform ? size_uniform(&r) : 48;
        requested += (double)sz;
        ptr[i] = checked(b_alloc(sz));
        touch(ptr[i], sz, (unsigned)i);
        if ((i + 1) % ser.every == 0)
            series_point(&ser, "alloc");
    }
    double t1 = now_ns();
    uint64_t peak = status_kib("VmHWM");
    uint64_t live = 0;
    double live_bytes = 0;
    series_point(&ser, "free");
    double t2 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        sum += ptr[i][0];
        if (keep_one_in != 0 && rng_below(&pick, (uint32_t)keep_one_in) == 0) {
            ptr[live++] = ptr[i];       /* stays alive; i >= live always */
        } else {
            b_free(ptr[i]);
        }
        if ((i + 1) % ser.every == 0)
            series_point(&ser, "free");
    }
    double t3 = now_ns();
    uint64_t after = rss_kib();         /* right after the last free */
    uint64_t peak2 = status_kib("VmHWM");
    if (peak2 > peak)
        peak = peak2;
    bench_sink = sum;

    double heap_peak = (double)peak - (double)base;
    double heap_after = (double)after - (double)base;
    result("ns_per_obj", (t1 - t0 + t3 - t2) / (double)n, "ns");
    result("alloc_ns_per_obj", (t1 - t0) / (double)n, "ns");
    result("free_ns_per_obj", (t3 - t2) / (double)n, "ns");
    result("objects", (double)n, "objects");
    result("requested_kib", requested / 1024.0, "KiB");
    result("rss_peak_kib", (double)peak, "KiB");
    result("rss_after_free_kib", (double)after, "KiB");
    result("heap_peak_kib", heap_peak, "KiB");
    result("heap_after_free_kib", heap_after, "KiB");
    result("held_pct", heap_peak > 0 ? 100.0 * heap_after / heap_peak : 0.0, "%");
    result("peak_per_requested", heap_peak * 1024.0 / requested, "x");
    if (keep_one_in != 0) {
        live_bytes = (double)live * 48.0;
        result("live_objects", (double)live, "objects");
        result("live_kib", live_bytes / 1024.0, "KiB");
        result("after_free_per_live", live_bytes > 0 ? heap_after * 1024.0 / live_bytes : 0.0, "x");
        for (uint64_t i = 0; i < live; i++)
            b_free(ptr[i]);
        result("heap_after_all_kib", (double)rss_kib() - (double)base, "KiB");
    }
    big_array_free(ptr, bytes);
}

static void run_burst(void)
{
    static const char *const known[] = {"dist", "n", NULL};
    check_args(known);
    const char *dist = arg_str("dist", "48");
    int uniform;
    if (strcmp(dist, "48") == 0)
        uniform = 0;
    else if (strcmp(dist, "uniform") == 0)
        uniform = 1;
    else
        die("burst: dist must be 48 or uniform");
    uint64_t n = arg_u64("n", uniform ? 5000000 : 10000000);
    if (n == 0)
        die("burst: need n > 0");
    snprintf(cur_variant, sizeof cur_variant, "%s", dist);
    scenario_begin();
    burst_common(uniform, n, 0);
    scenario_end();
}

static void run_survivors(void)
{
    static const char *const known[] = {"n", "keep", NULL};
    check_args(known);
    uint64_t n = arg_u64("n", 10000000);
    uint64_t keep = arg_u64("keep", 100);
    if (n == 0 || keep == 0 || keep > UINT32_MAX)
        die("survivors: need n > 0 and keep > 0");
    snprintf(cur_variant, sizeof cur_variant, "48");
    scenario_begin();
    burst_common(0, n, keep);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* realloc: strings growing 16 -> 512 bytes in small steps            */
/* ------------------------------------------------------------------ */

static void run_realloc(void)
{
    static const char *const known[] = {"strings", "steps", NULL};
    check_args(known);
    uint64_t strings = arg_u64("strings", 1024);
    uint64_t steps = arg_u64("steps", 5000000);
    if (strings == 0 || strings > UINT32_MAX || steps == 0)
        die("realloc: need strings > 0 and steps > 0");
    snprintf(cur_variant, sizeof cur_variant, "16-512");
    scenario_begin();

    struct rng r = {SEED_SIZES};
    unsigned char **str = checked(calloc(strings, sizeof *str));
    size_t *len = checked(calloc(strings, sizeof *len));
    for (uint64_t i = 0; i < strings; i++) {
        str[i] = checked(b_alloc(16));
        len[i] = 16;
        touch(str[i], 16, (unsigned)i);
    }
    uint64_t reallocs = 0;
    double t0 = now_ns();
    for (uint64_t s = 0; s < steps; s++) {
        uint32_t i = rng_below(&r, (uint32_t)strings);
        size_t grow = 1 + rng_below(&r, 16);
        unsigned char *p = str[i];
        size_t n = len[i] + grow;
        if (n > 512) {                  /* done growing: start a new string */
            b_free(p);
            n = 16;
            p = checked(b_alloc(n));
            p[0] = (unsigned char)s;
        } else {
            unsigned char first = p[0];
            p = checked(b_realloc(p, n));
            if (p[0] != first)
                die("realloc lost the contents of a block");
            reallocs++;
        }
        p[n - 1] = (unsigned char)s;
        str[i] = p;
        len[i] = n;
    }
    double t1 = now_ns();
    for (uint64_t i = 0; i < strings; i++)
        b_free(str[i]);
    free(str);
    free(len);
    result("ns_per_op", (t1 - t0) / (double)steps, "ns");
    result("reallocs", (double)reallocs, "calls");
    result("ops", (double)steps, "ops");
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* xthread: a producer allocates, a consumer frees                    */
/* ------------------------------------------------------------------ */

#define RING_SIZE 4096u     /* power of two */
#define RING_BATCH 64u      /* the producer publishes this many at a time */

/* A single-producer, single-consumer ring.  Publishing in batches keeps the
 * two threads from bouncing the head and tail cache lines on every block,
 * so the time measured is mostly the allocator's. */
struct ring {
    _Alignas(64) _Atomic uint64_t head;   /* written by the producer */
    _Alignas(64) _Atomic uint64_t tail;   /* written by the consumer */
    _Alignas(64) unsigned char *slot[RING_SIZE];
    uint64_t n;
    unsigned sum;
};

static inline void spin_wait(unsigned *spins)
{
    if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __asm__ __volatile__("pause");
#endif
    } else {
        sched_yield();
    }
}

static void *xthread_consumer(void *arg)
{
    struct ring *q = arg;
    uint64_t tail = 0;
    unsigned sum = 0;
    while (tail < q->n) {
        uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
        unsigned spins = 0;
        while (head == tail) {
            spin_wait(&spins);
            head = atomic_load_explicit(&q->head, memory_order_acquire);
        }
        for (; tail < head; tail++) {
            unsigned char *p = q->slot[tail & (RING_SIZE - 1)];
            sum += p[0];
            b_free(p);
        }
        atomic_store_explicit(&q->tail, tail, memory_order_release);
    }
    q->sum = sum;
    return NULL;
}

static void run_xthread(void)
{
    static const char *const known[] = {"n", NULL};
    check_args(known);
    uint64_t n = arg_u64("n", 10000000);
    if (n == 0)
        die("xthread: need n > 0");
    snprintf(cur_variant, sizeof cur_variant, "1to1");
    scenario_begin();

    struct ring *q = big_array(sizeof *q);
    q->n = n;
    struct rng r = {SEED_SIZES};
    reset_peak();
    uint64_t base = rss_kib();
    pthread_t tid;
    double t0 = now_ns();
    if (pthread_create(&tid, NULL, xthread_consumer, q) != 0)
        die("pthread_create failed");
    uint64_t tail = 0;
    for (uint64_t head = 0; head < n; head++) {
        size_t sz = size_churn(&r);
        unsigned char *p = checked(b_alloc(sz));
        touch(p, sz, (unsigned)head);
        unsigned spins = 0;
        while (head - tail >= RING_SIZE) {
            tail = atomic_load_explicit(&q->tail, memory_order_acquire);
            if (head - tail >= RING_SIZE)
                spin_wait(&spins);
        }
        q->slot[head & (RING_SIZE - 1)] = p;
        if ((head + 1) % RING_BATCH == 0 || head + 1 == n)
            atomic_store_explicit(&q->head, head + 1, memory_order_release);
    }
    pthread_join(tid, NULL);
    double t1 = now_ns();
    bench_sink = q->sum;
    uint64_t end = rss_kib();
    uint64_t peak = status_kib("VmHWM");
    result("ops_per_s", per_second((double)n, t0, t1), "ops/s");
    result("ns_per_obj", (t1 - t0) / (double)n, "ns");
    result("objects", (double)n, "objects");
    result("rss_base_kib", (double)base, "KiB");
    result("rss_peak_kib", (double)peak, "KiB");
    result("rss_end_kib", (double)end, "KiB");
    result("heap_end_kib", (double)end - (double)base, "KiB");
    big_array_free(q, sizeof *q);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* server: larson-style.  T threads each work on an array of slots    */
/* (free a random slot, allocate 8..512 into it); every `handover`    */
/* steps a thread swaps its array with the one in a shared mailbox,   */
/* so most frees hit blocks that another thread allocated.            */
/* ------------------------------------------------------------------ */

struct server_shared {
    _Atomic(unsigned char **) mailbox;
    pthread_barrier_t barrier;
    uint64_t slots, steps, handover;
};

struct server_job {
    struct server_shared *sh;
    unsigned char **own;        /* array the thread starts with */
    uint64_t seed;
    double t_start, t_end;
    unsigned sum;
    unsigned char **last;       /* array the thread ends with */
};

static void fill_slots(unsigned char **a, uint64_t slots, struct rng *r)
{
    for (uint64_t i = 0; i < slots; i++) {
        size_t n = size_churn(r);
        a[i] = checked(b_alloc(n));
        touch(a[i], n, (unsigned)i);
    }
}

static void *server_body(void *arg)
{
    struct server_job *job = arg;
    struct server_shared *sh = job->sh;
    struct rng r = {job->seed};
    unsigned char **a = job->own;
    unsigned sum = 0;

    fill_slots(a, sh->slots, &r);
    pthread_barrier_wait(&sh->barrier);
    job->t_start = now_ns();
    for (uint64_t s = 0; s < sh->steps; s++) {
        uint32_t i = rng_below(&r, (uint32_t)sh->slots);
        sum += a[i][0];
        b_free(a[i]);
        size_t n = size_churn(&r);
        a[i] = checked(b_alloc(n));
        touch(a[i], n, (unsigned)s);
        if ((s + 1) % sh->handover == 0)
            a = atomic_exchange(&sh->mailbox, a);
    }
    job->t_end = now_ns();
    job->last = a;
    job->sum = sum;
    return NULL;
}

static void run_server(void)
{
    static const char *const known[] = {"threads", "slots", "steps", "handover", NULL};
    check_args(known);
    unsigned t = (unsigned)arg_u64("threads", 2);
    struct server_shared sh;
    sh.slots = arg_u64("slots", 20000);
    sh.steps = arg_u64("steps", 2000000);
    sh.handover = arg_u64("handover", 1000);
    if (t == 0 || t > 256 || sh.slots == 0 || sh.slots > UINT32_MAX || sh.steps == 0 ||
        sh.handover == 0)
        die("server: need 1 <= threads <= 256 and slots, steps, handover > 0");
    snprintf(cur_variant, sizeof cur_variant, "%u", t);
    scenario_begin();

    size_t bytes = sh.slots * sizeof(unsigned char *);
    unsigned char ***arrays = checked(calloc(t + 1, sizeof *arrays));
    for (unsigned i = 0; i <= t; i++)
        arrays[i] = big_array(bytes);
    reset_peak();
    uint64_t base = rss_kib();

    struct rng r = {SEED_SIZES + 1000};
    fill_slots(arrays[t], sh.slots, &r);     /* the mailbox's array: main thread's blocks */
    atomic_init(&sh.mailbox, arrays[t]);
    pthread_barrier_init(&sh.barrier, NULL, t + 1);
    struct server_job *jobs = checked(calloc(t, sizeof *jobs));
    pthread_t *tid = checked(calloc(t, sizeof *tid));
    for (unsigned i = 0; i < t; i++) {
        jobs[i].sh = &sh;
        jobs[i].own = arrays[i];
        jobs[i].seed = SEED_SIZES + i;
        if (pthread_create(&tid[i], NULL, server_body, &jobs[i]) != 0)
            die("pthread_create failed");
    }
    pthread_barrier_wait(&sh.barrier);
    double t0 = 0, t1 = 0;      /* earliest start, latest end over threads */
    unsigned sum = 0;
    for (unsigned i = 0; i < t; i++) {
        pthread_join(tid[i], NULL);
        if (i == 0 || jobs[i].t_start < t0)
            t0 = jobs[i].t_start;
        if (i == 0 || jobs[i].t_end > t1)
            t1 = jobs[i].t_end;
        sum += jobs[i].sum;
    }
    bench_sink = sum;
    uint64_t live = rss_kib();
    /* the main thread frees what is left: T + 1 arrays of blocks */
    for (unsigned i = 0; i < t; i++)
        for (uint64_t k = 0; k < sh.slots; k++)
            b_free(jobs[i].last[k]);
    unsigned char **rest = atomic_load(&sh.mailbox);
    for (uint64_t k = 0; k < sh.slots; k++)
        b_free(rest[k]);
    uint64_t end = rss_kib();
    uint64_t peak = status_kib("VmHWM");

    double ops = (double)sh.steps * t;
    result("ops_per_s", per_second(ops, t0, t1), "ops/s");
    result("ns_per_pair", (t1 - t0) / ops, "ns");
    result("rss_base_kib", (double)base, "KiB");
    result("rss_peak_kib", (double)peak, "KiB");
    result("rss_live_kib", (double)live, "KiB");
    result("rss_end_kib", (double)end, "KiB");
    result("heap_end_kib", (double)end - (double)base, "KiB");
    pthread_barrier_destroy(&sh.barrier);
    for (unsigned i = 0; i <= t; i++)
        big_array_free(arrays[i], bytes);
    free(arrays);
    free(jobs);
    free(tid);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* larson: chains of threads that inherit their predecessor's objects */
/*                                                                    */
/* W chains run side by side.  Each chain owns an array of slots that */
/* the main thread fills (8..1000 B).  A chain's thread runs `steps`  */
/* churn steps on it, then starts its successor, which takes over the */
/* array (and the rng), and exits.  The successor joins its           */
/* predecessor only after its own steps, so the old thread exits      */
/* while the new one already allocates, as in larson.  After `gens`   */
/* generations the last thread of each chain reports to the main      */
/* thread, which joins it, reads RSS with every object still live,    */
/* then frees them.                                                   */
/* ------------------------------------------------------------------ */

static uint32_t larson_max = 1000;     /* max=: the largest size */
static inline size_t size_larson(struct rng *r) { return 8 + rng_below(r, larson_max - 7); }  /* 8..max */

struct larson_shared {
    uint64_t slots, steps, gens;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned chains_done;
};

struct larson_chain {
    struct larson_shared *sh;
    unsigned char **slot;
    struct rng r;               /* travels with the array: sizes do not depend on timing */
    uint64_t gen;               /* generations finished */
    pthread_t prev;             /* the running thread's predecessor (if has_prev) */
    int has_prev;
    pthread_t last;             /* the chain's last thread, joined by the main thread */
    double t_end;
    unsigned sum;
};

static void *larson_worker(void *arg)
{
    struct larson_chain *c = arg;
    struct larson_shared *sh = c->sh;
    unsigned sum = c->sum;

    for (uint64_t s = 0; s < sh->steps; s++) {
        uint32_t i = rng_below(&c->r, (uint32_t)sh->slots);
        sum += c->slot[i][0];
        b_free(c->slot[i]);
        size_t n = size_larson(&c->r);
        c->slot[i] = checked(b_alloc(n));
        touch(c->slot[i], n, (unsigned)s);
    }
    c->sum = sum;
    if (c->has_prev && pthread_join(c->prev, NULL) != 0)
        die("larson: pthread_join failed");
    c->gen++;
    if (c->gen < sh->gens) {
        pthread_t next;
        c->prev = pthread_self();
        c->has_prev = 1;
        if (pthread_create(&next, NULL, larson_worker, c) != 0)
            die("larson: pthread_create failed");
        return NULL;            /* c now belongs to the successor */
    }
    c->t_end = now_ns();
    c->last = pthread_self();
    pthread_mutex_lock(&sh->mu);
    sh->chains_done++;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
    return NULL;
}

static void run_larson(void)
{
    static const char *const known[] = {"workers", "slots", "steps", "gens", "max", NULL};
    check_args(known);
    unsigned w = (unsigned)arg_u64("workers", 2);
    uint64_t max = arg_u64("max", 1000);
    if (max < 8 || max > 1000000)
        die("larson: need 8 <= max <= 1000000");
    larson_max = (uint32_t)max;
    struct larson_shared sh;
    sh.slots = arg_u64("slots", 20000);
    sh.steps = arg_u64("steps", 20000);
    sh.gens = arg_u64("gens", 30);
    if (w == 0 || w > 256 || sh.slots == 0 || sh.slots > UINT32_MAX || sh.steps == 0 ||
        sh.gens == 0)
        die("larson: need 1 <= workers <= 256 and slots, steps, gens > 0");
    snprintf(cur_variant, sizeof cur_variant, "%u", w);
    scenario_begin();

    size_t bytes = sh.slots * sizeof(unsigned char *);
    struct larson_chain *chain = big_array(w * sizeof *chain);
    for (unsigned k = 0; k < w; k++)
        chain[k].slot = big_array(bytes);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    sh.chains_done = 0;
    reset_peak();
    uint64_t base = rss_kib();

    for (unsigned k = 0; k < w; k++) {
        chain[k].sh = &sh;
        chain[k].r.s = SEED_SIZES + 100 + k;
        for (uint64_t i = 0; i < sh.slots; i++) {
            size_t n = size_larson(&chain[k].r);
            chain[k].slot[i] = checked(b_alloc(n));
            touch(chain[k].slot[i], n, (unsigned)i);
        }
    }
    double t0 = now_ns();
    for (unsigned k = 0; k < w; k++) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, larson_worker, &chain[k]) != 0)
            die("larson: pthread_create failed");
    }
    pthread_mutex_lock(&sh.mu);
    while (sh.chains_done < w)
        pthread_cond_wait(&sh.cv, &sh.mu);
    pthread_mutex_unlock(&sh.mu);
    double t1 = t0;
    unsigned sum = 0;
    for (unsigned k = 0; k < w; k++) {
        if (pthread_join(chain[k].last, NULL) != 0)
            die("larson: pthread_join failed");
        if (chain[k].t_end > t1)
            t1 = chain[k].t_end;
        sum += chain[k].sum;
    }
    uint64_t live = rss_kib();          /* every thread gone, every object live */
    uint64_t peak = status_kib("VmHWM");
    for (unsigned k = 0; k < w; k++) {
        for (uint64_t i = 0; i < sh.slots; i++) {
            sum += chain[k].slot[i][0];
            b_free(chain[k].slot[i]);
        }
    }
    uint64_t end = rss_kib();
    bench_sink = sum;

    double pairs = (double)sh.steps * (double)sh.gens * w;
    result("pairs_per_s", per_second(pairs, t0, t1), "pairs/s");
    result("ns_per_pair", (t1 - t0) / pairs, "ns");
    result("pairs", pairs, "pairs");
    result("threads_started", (double)sh.gens * w, "threads");
    result("rss_base_kib", (double)base, "KiB");
    result("rss_live_kib", (double)live, "KiB");
    result("rss_peak_kib", (double)peak, "KiB");
    result("rss_end_kib", (double)end, "KiB");
    result("heap_live_kib", (double)live - (double)base, "KiB");
    result("heap_peak_kib", (double)peak - (double)base, "KiB");
    result("heap_end_kib", (double)end - (double)base, "KiB");
    pthread_cond_destroy(&sh.cv);
    pthread_mutex_destroy(&sh.mu);
    for (unsigned k = 0; k < w; k++)
        big_array_free(chain[k].slot, bytes);
    big_array_free(chain, w * sizeof *chain);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* tstress: rounds of short-lived threads that pass objects around    */
/*                                                                    */
/* Each round starts T threads and joins them.  A thread allocates    */
/* batches (1..64 objects; 99% 8..512 B, 1% 513..8192 B; every byte   */
/* written), keeps them in a local array of bounded size (when full,  */
/* a random old one is freed), and swaps a few with random slots of a */
/* shared transfer array; what comes back is freed or kept.  At its   */
/* end a thread frees what it holds; the transfer array keeps its     */
/* objects for the threads of later rounds, and the main thread frees */
/* what is left at the very end.                                      */
/* ------------------------------------------------------------------ */

static inline size_t size_tstress(struct rng *r)
{
    if (rng_below(r, 100) == 0)
        return 513 + rng_below(r, 8192 - 513 + 1);     /* 513..8192 */
    return 8 + rng_below(r, 505);                       /* 8..512 */
}

/* Every byte is written: the size in the first four, (size & 255) in the
 * rest, so a free can check the last byte of a block that may have been
 * allocated by another thread in another round. */
static unsigned char *tstress_new(struct rng *r)
{
    size_t n = size_tstress(r);
    unsigned char *p = checked(b_alloc(n));
    uint32_t n32 = (uint32_t)n;
    memset(p, (unsigned char)n, n);
    memcpy(p, &n32, sizeof n32);
    return p;
}

static unsigned tstress_free(unsigned char *p)
{
    uint32_t n;
    memcpy(&n, p, sizeof n);
    if (n < 8 || n > 8192 || p[n - 1] != (unsigned char)n)
        die("tstress: a block was overwritten");
    unsigned v = p[n - 1];
    b_free(p);
    return v;
}

struct tstress_shared {
    _Atomic(unsigned char *) *transfer;
    uint64_t nxfer, iter, cap;
};

struct tstress_job {
    struct tstress_shared *sh;
    unsigned char **local;      /* cap entries, mapped by the main thread */
    uint64_t seed;
    uint64_t allocs;
    unsigned sum;
};

static void *tstress_body(void *arg)
{
    struct tstress_job *job = arg;
    struct tstress_shared *sh = job->sh;
    struct rng r = {job->seed};
    unsigned char **local = job->local;
    uint64_t n = 0, allocs = 0;
    unsigned sum = 0;

    for (uint64_t it = 0; it < sh->iter; it++) {
        uint32_t batch = 1 + rng_below(&r, 64);
        for (uint32_t b = 0; b < batch; b++) {
            unsigned char *p = tstress_new(&r);
            allocs++;
            if (n < sh->cap) {
                local[n++] = p;
            } else {
                uint32_t k = rng_below(&r, (uint32_t)n);
                sum += tstress_free(local[k]);
                local[k] = p;
            }
        }
        uint32_t swaps = 1 + rng_below(&r, 4);
        for (uint32_t s = 0; s < swaps && n > 0; s++) {
            uint32_t k = rng_below(&r, (uint32_t)n);
            uint32_t j = rng_below(&r, (uint32_t)sh->nxfer);
            unsigned char *old = atomic_exchange(&sh->transfer[j], local[k]);
            if (old != NULL && rng_below(&r, 2) == 0) {
                local[k] = old;                 /* keep what came back */
            } else {
                if (old != NULL)
                    sum += tstress_free(old);
                local[k] = local[--n];
            }
        }
    }
    for (uint64_t k = 0; k < n; k++)
        sum += tstress_free(local[k]);
    job->allocs = allocs;
    job->sum = sum;
    return NULL;
}

static void run_tstress(void)
{
    static const char *const known[] = {"threads", "rounds", "iter", "transfer", "local", NULL};
    check_args(known);
    unsigned t = (unsigned)arg_u64("threads", 4);
    uint64_t rounds = arg_u64("rounds", 20);
    struct tstress_shared sh;
    sh.iter = arg_u64("iter", 200);
    sh.nxfer = arg_u64("transfer", 1000);
    sh.cap = arg_u64("local", 1000);
    if (t == 0 || t > 256 || rounds == 0 || sh.iter == 0 || sh.nxfer == 0 ||
        sh.nxfer > UINT32_MAX || sh.cap == 0 || sh.cap > UINT32_MAX)
        die("tstress: need 1 <= threads <= 256 and rounds, iter, transfer, local > 0");
    snprintf(cur_variant, sizeof cur_variant, "%u", t);
    scenario_begin();

    size_t xbytes = sh.nxfer * sizeof *sh.transfer;
    size_t lbytes = sh.cap * sizeof(unsigned char *);
    sh.transfer = big_array(xbytes);
    for (uint64_t j = 0; j < sh.nxfer; j++)
        atomic_init(&sh.transfer[j], NULL);
    struct tstress_job *jobs = big_array(t * sizeof *jobs);
    pthread_t *tid = big_array(t * sizeof *tid);
    for (unsigned i = 0; i < t; i++)
        jobs[i].local = big_array(lbytes);
    reset_peak();
    uint64_t base = rss_kib();

    uint64_t allocs = 0;
    unsigned sum = 0;
    double t0 = now_ns();
    for (uint64_t rd = 0; rd < rounds; rd++) {
        for (unsigned i = 0; i < t; i++) {
            jobs[i].sh = &sh;
            jobs[i].seed = SEED_SIZES + rd * 1000 + i;
            if (pthread_create(&tid[i], NULL, tstress_body, &jobs[i]) != 0)
                die("tstress: pthread_create failed");
        }
        for (unsigned i = 0; i < t; i++) {
            if (pthread_join(tid[i], NULL) != 0)
                die("tstress: pthread_join failed");
            allocs += jobs[i].allocs;
            sum += jobs[i].sum;
        }
    }
    double t1 = now_ns();
    uint64_t left = 0;
    for (uint64_t j = 0; j < sh.nxfer; j++) {
        unsigned char *p = atomic_load(&sh.transfer[j]);
        if (p != NULL) {
            sum += tstress_free(p);
            left++;
        }
    }
    uint64_t end = rss_kib();
    uint64_t peak = status_kib("VmHWM");
    bench_sink = sum;

    result("wall_ms", (t1 - t0) / 1e6, "ms");
    result("ns_per_alloc", (t1 - t0) / (double)allocs, "ns");
    result("allocs", (double)allocs, "allocs");
    result("threads_started", (double)rounds * t, "threads");
    result("transfer_left", (double)left, "objects");
    result("rss_base_kib", (double)base, "KiB");
    result("rss_peak_kib", (double)peak, "KiB");
    result("rss_end_kib", (double)end, "KiB");
    result("heap_peak_kib", (double)peak - (double)base, "KiB");
    result("heap_end_kib", (double)end - (double)base, "KiB");
    for (unsigned i = 0; i < t; i++)
        big_array_free(jobs[i].local, lbytes);
    big_array_free(tid, t * sizeof *tid);
    big_array_free(jobs, t * sizeof *jobs);
    big_array_free(sh.transfer, xbytes);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* rounds: batch work, then idle                                      */
/*                                                                    */
/* R rounds of: allocate n blocks (16..512 B, every byte written),    */
/* then free them all (in allocation order or in one fixed random     */
/* order).  Then the program idles for wait_ms and reads RSS every    */
/* 100 ms: how much memory does the allocator keep while nothing      */
/* happens, and does a background purger give it back?               */
/* ------------------------------------------------------------------ */

#define ROUNDS_MAX 1000u

static void sleep_until(double t_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(t_ns / 1e9);
    ts.tv_nsec = (long)(t_ns - (double)ts.tv_sec * 1e9);
    if (ts.tv_nsec < 0)
        ts.tv_nsec = 0;
    if (ts.tv_nsec > 999999999)
        ts.tv_nsec = 999999999;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void run_rounds(void)
{
    static const char *const known[] = {"n", "rounds", "order", "wait_ms", NULL};
    check_args(known);
    uint64_t n = arg_u64("n", 300000);
    uint64_t rounds = arg_u64("rounds", 6);
    uint64_t wait_ms = arg_u64("wait_ms", 1500);
    const char *order = arg_str("order", "alloc");
    int random_order;
    if (strcmp(order, "alloc") == 0)
        random_order = 0;
    else if (strcmp(order, "random") == 0)
        random_order = 1;
    else
        die("rounds: order must be alloc or random");
    if (n == 0 || n > UINT32_MAX || rounds == 0 || rounds > ROUNDS_MAX || wait_ms > 3600000)
        die("rounds: need 0 < n < 2^32, 1 <= rounds <= 1000, wait_ms <= 3600000");
    snprintf(cur_variant, sizeof cur_variant, "%s", order);
    scenario_begin();

    size_t pbytes = n * sizeof(unsigned char *);
    size_t obytes = n * sizeof(uint32_t);
    unsigned char **ptr = big_array(pbytes);
    uint32_t *perm = big_array(obytes);
    for (uint64_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    if (random_order) {         /* Fisher-Yates with the fixed seed */
        struct rng pick = {SEED_PICKS};
        for (uint64_t i = n - 1; i > 0; i--) {
            uint32_t j = rng_below(&pick, (uint32_t)(i + 1));
            uint32_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
    }
    struct rng r = {SEED_SIZES};
    unsigned sum = 0;
    double requested = 0, total_ns = 0;
    reset_peak();
    uint64_t base = rss_kib();
    result("rss_base_kib", (double)base, "KiB");

    double t_free = 0;
    for (uint64_t rd = 0; rd < rounds; rd++) {
        double t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
            size_t sz = size_uniform(&r);
            if (rd == 0)
                requested += (double)sz;
            ptr[i] = checked(b_alloc(sz));
            memset(ptr[i], (int)((i + rd) & 255), sz);
        }
        for (uint64_t i = 0; i < n; i++) {
            unsigned char *p = ptr[perm[i]];
            sum += p[0];
            b_free(p);
        }
        t_free = now_ns();
        char name[48];
        snprintf(name, sizeof name, "round%llu_ns_per_obj", (unsigned long long)(rd + 1));
        result(name, (t_free - t0) / (double)n, "ns");
        total_ns += t_free - t0;
    }
    uint64_t after = rss_kib();         /* right after the last free */
    uint64_t peak = status_kib("VmHWM");
    bench_sink = sum;

    /* idle: RSS every 100 ms, time counted from the end of the last free */
    struct series ser = {t_free, 1};
    printf("series %s %s wait 0.000 %llu\n", cur_scenario, variant(), (unsigned long long)after);
    uint64_t at_end = after;
    for (uint64_t ms = 100; ms <= wait_ms; ms += 100) {
        sleep_until(t_free + (double)ms * 1e6);
        at_end = rss_kib();
        series_point(&ser, "wait");
    }
    if (wait_ms % 100 != 0) {
        sleep_until(t_free + (double)wait_ms * 1e6);
        at_end = rss_kib();
        series_point(&ser, "wait");
    }

    double heap_peak = (double)peak - (double)base;
    double heap_after = (double)after - (double)base;
    double heap_wait = (double)at_end - (double)base;
    result("ns_per_obj", total_ns / ((double)n * (double)rounds), "ns");
    result("objects", (double)n, "objects");
    result("rounds", (double)rounds, "rounds");
    result("requested_kib", requested / 1024.0, "KiB");
    result("rss_peak_kib", (double)peak, "KiB");
    result("rss_after_free_kib", (double)after, "KiB");
    result("rss_after_wait_kib", (double)at_end, "KiB");
    result("heap_peak_kib", heap_peak, "KiB");
    result("heap_after_free_kib", heap_after, "KiB");
    result("heap_after_wait_kib", heap_wait, "KiB");
    result("held_pct_now", heap_peak > 0 ? 100.0 * heap_after / heap_peak : 0.0, "%");
    result("held_pct_after_wait", heap_peak > 0 ? 100.0 * heap_wait / heap_peak : 0.0, "%");
    result("wait_ms", (double)wait_ms, "ms");
    big_array_free(perm, obytes);
    big_array_free(ptr, pbytes);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* heapdestroy: free n objects at once                                */
/*                                                                    */
/* bench-arena, in this order:                                        */
/*   destroy   an arena_heap gets n blocks of 16..512 B (every byte   */
/*             written); then arena_heap_destroy, timed, and RSS      */
/*             right after it                                         */
/*   floor     as many bytes as the heap made resident, mapped with   */
/*             mmap in 4 KiB pages (like arenas: THP off while they   */
/*             fault in), every byte written, then one munmap, timed: */
/*             what the kernel needs to give that memory back         */
/*   heapfree  the same blocks in a new heap, freed one by one with   */
/*             arena_free; then the emptied heap destroyed (timed     */
/*             apart: that is when its memory goes back)              */
/*   free      the same blocks from the allocator (arena_alloc),      */
/*             freed one by one                                       */
/* bench-malloc: free (malloc / free), then floor for the bytes that  */
/* made resident.  Sizes: one fixed sequence for every phase.         */
/* ------------------------------------------------------------------ */

static double ms_since(double t0)
{
    return (now_ns() - t0) / 1e6;
}

/* n blocks from alloc_fn (every byte written) into ptr. */
static double fill_blocks(unsigned char **ptr, uint64_t n, void *(*alloc_fn)(size_t, void *),
                          void *ctx)
{
    struct rng r = {SEED_SIZES};
    double requested = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t sz = size_uniform(&r);
        requested += (double)sz;
        unsigned char *p = checked(alloc_fn(sz, ctx));
        memset(p, (int)(i & 255), sz);
        if (ptr != NULL)
            ptr[i] = p;
    }
    return requested;
}

static void *alloc_plain(size_t n, void *ctx)
{
    (void)ctx;
    return b_alloc(n);
}

/* One munmap of `kib` resident KiB; returns its time in ms.  The pages
 * are 4 KiB ones whatever the transparent-hugepage setting (THP off for
 * the process while they are faulted in), like libarena's.  MAP_POPULATE
 * marks the mapping as the harness's for run.sh's strace count. */
static double unmap_floor(uint64_t kib)
{
    size_t bytes = (size_t)kib * 1024;
    if (bytes == 0)
        return 0;
    int thp_was_off = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1;
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    unsigned char *q = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (q == MAP_FAILED)
        die("heapdestroy: mmap for the floor failed");
    memset(q, 1, bytes);
    if (!thp_was_off)
        prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
    escape(q);
    double t0 = now_ns();
    munmap(q, bytes);
    return ms_since(t0);
}

#if defined(BENCH_ARENA)
static void *alloc_heap(size_t n, void *ctx)
{
    return arena_heap_alloc(ctx, n);
}

static uint64_t munmap_calls(void)
{
    struct arena_stats st;
    st.size = sizeof st;
    arena_get_stats(&st);
    return st.calls_munmap;
}
#endif

static void run_heapdestroy(void)
{
    static const char *const known[] = {"n", NULL};
    check_args(known);
    uint64_t n = arg_u64("n", 1000000);
    if (n == 0 || n > UINT32_MAX)
        die("heapdestroy: need 0 < n < 2^32");
    snprintf(cur_variant, sizeof cur_variant, "16-512");
    scenario_begin();
    size_t pbytes = n * sizeof(unsigned char *);
    unsigned char **ptr = big_array(pbytes);
    double requested = 0, free_ms;
    uint64_t floor_kib;

#if defined(BENCH_ARENA)
    /* destroy */
    uint64_t base = rss_kib();
    struct arena_heap *h = arena_heap_new();
    if (h == NULL)
        die("arena_heap_new failed");
    requested = fill_blocks(NULL, n, alloc_heap, h);
    uint64_t full = rss_kib();
    uint64_t calls0 = munmap_calls();
    double t0 = now_ns();
    arena_heap_destroy(h);
    double destroy_ms = ms_since(t0);
    uint64_t after = rss_kib();
    uint64_t calls = munmap_calls() - calls0;
    floor_kib = full > base ? full - base : 0;

    /* floor */
    double floor_ms = unmap_floor(floor_kib);

    /* heapfree */
    h = arena_heap_new();
    if (h == NULL)
        die("arena_heap_new failed");
    fill_blocks(ptr, n, alloc_heap, h);
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        arena_free(ptr[i]);
    double heap_free_ms = ms_since(t0);
    t0 = now_ns();
    arena_heap_destroy(h);              /* the emptied heap's memory back */
    double heap_free_destroy_ms = ms_since(t0);

    /* free */
    fill_blocks(ptr, n, alloc_plain, NULL);
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        b_free(ptr[i]);
    free_ms = ms_since(t0);

    result("destroy_ms", destroy_ms, "ms");
    result("destroy_ns_per_obj", destroy_ms * 1e6 / (double)n, "ns");
    result("destroy_munmap_calls", (double)calls, "calls");
    result("rss_base_kib", (double)base, "KiB");
    result("rss_full_kib", (double)full, "KiB");
    result("rss_after_destroy_kib", (double)after, "KiB");
    result("heap_full_kib", (double)full - (double)base, "KiB");
    result("heap_after_destroy_kib", (double)after - (double)base, "KiB");
    result("heap_free_ms", heap_free_ms, "ms");
    result("heap_free_destroy_ms", heap_free_destroy_ms, "ms");
    result("floor_ms", floor_ms, "ms");
    result("destroy_per_floor", floor_ms > 0 ? destroy_ms / floor_ms : 0, "x");
    result("destroy_per_heap_free", heap_free_ms > 0 ? destroy_ms / heap_free_ms : 0, "x");
    result("destroy_per_free", destroy_ms / (free_ms > 0 ? free_ms : 1e-9), "x");
#else
    /* free, then the floor for what that made resident */
    uint64_t base = rss_kib();
    requested = fill_blocks(ptr, n, alloc_plain, NULL);
    uint64_t full = rss_kib();
    double t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        b_free(ptr[i]);
    free_ms = ms_since(t0);
    floor_kib = full > base ? full - base : 0;
    result("floor_ms", unmap_floor(floor_kib), "ms");
#endif
    result("free_ms", free_ms, "ms");
    result("free_ns_per_obj", free_ms * 1e6 / (double)n, "ns");
    result("floor_kib", (double)floor_kib, "KiB");
    result("objects", (double)n, "objects");
    result("requested_kib", requested / 1024.0, "KiB");
    big_array_free(ptr, pbytes);
    scenario_end();
}

/* ------------------------------------------------------------------ */
/* records: rows of mixed sizes, allocated together, walked and freed */
/* ------------------------------------------------------------------ */

/* Every object starts with the link to the next one, in allocation order:
 * the shape of a service that loads rows (a 48-byte row and 2..4 fields of
 * 16..300 bytes, as in arena-demo), reads them in order, and frees them in
 * order.  Size classes put the objects of one row in as many pools, so
 * walking the list jumps between pools where an allocator that places
 * mixed sizes side by side walks memory in order: the walk is timed alone
 * (no allocator call in it) to show what the layout costs. */
struct record_obj {
    struct record_obj *next;
    uint64_t size;
};

static void run_records(void)
{
    static const char *const known[] = {"records", NULL};
    check_args(known);
    uint64_t records = arg_u64("records", 2000000);
    if (records == 0 || records > UINT32_MAX)
        die("records: need 0 < records < 2^32");
    snprintf(cur_variant, sizeof cur_variant, "mixed");
    scenario_begin();

    struct rng r = {SEED_SIZES};
    struct record_obj head = {NULL, 0}, *tail = &head;
    uint64_t objects = 0;
    double t0 = now_ns();
    for (uint64_t i = 0; i < records; i++) {
        uint32_t count = 3 + rng_below(&r, 3);             /* 3..5 objects */
        for (uint32_t k = 0; k < count; k++) {
            size_t size = k == 0 ? 48 : 16 + rng_below(&r, 285);     /* 16..300 */
            struct record_obj *o = checked(b_alloc(size));
            o->next = NULL;
            o->size = size;
            ((unsigned char *)o)[size - 1] = (unsigned char)k;
            tail->next = o;
            tail = o;
            objects++;
        }
    }
    double t1 = now_ns();
    uint64_t sum = 0;
    for (struct record_obj *o = head.next; o != NULL; o = o->next)
        sum += o->size;
    double t2 = now_ns();
    for (struct record_obj *o = head.next; o != NULL;) {
        struct record_obj *next = o->next;
        b_free(o);
        o = next;
    }
    double t3 = now_ns();
    if (sum == 0)
        die("records: the walk read nothing");
    result("alloc_ns_per_obj", (t1 - t0) / (double)objects, "ns");
    result("walk_ns_per_obj", (t2 - t1) / (double)objects, "ns");
    result("free_ns_per_obj", (t3 - t2) / (double)objects, "ns");
    result("objects", (double)objects, "objects");
    scenario_end();
}

/* ------------------------------------------------------------------ */

struct scenario {
    const char *name;
    void (*run)(void);
};

static const struct scenario scenarios[] = {
    {"fixed", run_fixed},         {"churn", run_churn},     {"burst", run_burst},
    {"survivors", run_survivors}, {"realloc", run_realloc}, {"threads", run_threads},
    {"xthread", run_xthread},     {"server", run_server},       {"larson", run_larson},
    {"tstress", run_tstress},     {"rounds", run_rounds},       {"heapdestroy", run_heapdestroy},
    {"records", run_records},
};

int main(int argc, char **argv)
{
    g_argc = argc;
    g_argv = argv;
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCENARIO [key=value ...]\nscenarios:", argv[0]);
        for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
            fprintf(stderr, " %s", scenarios[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    statm_fd = open("/proc/self/statm", O_RDONLY);
    if (statm_fd < 0)
        die("cannot open /proc/self/statm");
    long pg = sysconf(_SC_PAGESIZE);
    page_kib = pg > 0 ? (uint64_t)pg / 1024 : 4;

#if defined(BENCH_NULL)
    if (strcmp(argv[1], "fixed") != 0) {
        fprintf(stderr, "bench-null: only the fixed scenario is meaningful without an allocator\n");
        return 2;
    }
#endif
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], "label=", 6) == 0)
            variant_label = argv[i] + 6;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        if (strcmp(argv[1], scenarios[i].name) == 0) {
            cur_scenario = scenarios[i].name;
            printf("info allocator %s\n", allocator_name());
            scenarios[i].run();
            printf("info done 1\n");
            return fflush(stdout) == 0 ? 0 : 1;
        }
    }
    fprintf(stderr, "bench: unknown scenario '%s'\n", argv[1]);
    return 2;
}
