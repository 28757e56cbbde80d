/*
 * arena-demo: the program a new user runs first.
 *
 * It reproduces the incident libarena exists for: a service loads a burst
 * of small records, keeps a small result allocated after the burst, frees
 * the burst, and its resident memory stays high.  The same workload runs
 * three times, each in its own child process so the numbers do not mix:
 * libarena with the mmap backend, libarena with the legacy brk backend, and
 * glibc malloc.  The parent prints an aligned table and one sentence per
 * allocator; optionally a CSV file and a PNG chart of RSS over time.
 *
 * The parent never calls arena_*; see workload.c for the child's side.
 */
#include "demo.h"
#include "../heapmap/draw.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_RECORDS 2500000ull      /* x 3-5 objects: ~10 million objects */
#define QUICK_RECORDS   200000ull
#define MAX_RECORDS     100000000ull
#define SAMPLE_PERIOD   0.010           /* seconds between RSS samples        */

/* Every run there can be, in the order they run; without --heap only the
 * three that free object by object. */
static const struct demo_run_spec all_runs[DEMO_MAX_RUNS] = {
    { DEMO_ARENA_MMAP, 0, "libarena mmap", "libarena-mmap", "mmap", "#1b9e77" },
    { DEMO_ARENA_MMAP, 1, "libarena mmap heap", "libarena-mmap-heap", "mmap-heap", "#66c2a5" },
    { DEMO_ARENA_BRK, 0, "libarena brk", "libarena-brk", "brk", "#d95f02" },
    { DEMO_ARENA_BRK, 1, "libarena brk heap", "libarena-brk-heap", "brk-heap", "#fc8d62" },
    { DEMO_GLIBC, 0, "glibc malloc", "glibc-malloc", NULL, "#7570b3" },
};

static const struct demo_run_spec *specs[DEMO_MAX_RUNS];
static size_t nruns;

static void usage(FILE *f)
{
    fprintf(f,
"usage: arena-demo [--records N] [--size BYTES] [--keep PCT] [--quick]\n"
"                  [--csv FILE] [--plot FILE.png] [--map PREFIX] [--heap]\n"
"                  [--help]\n"
"\n"
"Loads a burst of small records (3-5 objects each, like rows from an ORM),\n"
"keeps a small summary allocated after the burst, frees the burst, and\n"
"shows how much memory is still resident.  The same workload runs three\n"
"times, each in its own child process: libarena with the mmap backend,\n"
"libarena with the legacy brk backend, and glibc malloc.\n"
"\n"
"  --records N      records in the burst (default %llu: about 10 million\n"
"                   objects, about 1 GiB)\n"
"  --size BYTES     every object is BYTES long (16..512) instead of the mix\n"
"                   (a 48-byte row and fields of 16..300 bytes)\n"
"  --keep PCT       a random PCT%% (0..100) of the records survives the free,\n"
"                   not only the summary\n"
"  --quick          a small burst (%llu records), for tests\n"
"  --csv FILE       also write the results to FILE as CSV\n"
"  --plot FILE.png  sample RSS every 10 ms and draw the runs with gnuplot\n"
"  --map PREFIX     write each libarena run's heap map at the peak and right\n"
"                   after the free (PREFIX-mmap-peak.json, PREFIX-mmap-free.json,\n"
"                   PREFIX-brk-peak.json, PREFIX-brk-free.json) and draw the\n"
"                   four side by side in PREFIX.png (with --heap also the\n"
"                   heap runs' maps, PREFIX-*-heap-*.json, in PREFIX-heap.png)\n"
"  --heap           also run each libarena backend with the burst in one\n"
"                   arena_heap, destroyed in one call instead of freed object\n"
"                   by object, and compare the free phase\n"
"  --help           print this help and exit\n"
"\n"
"Exit status: 0 on success, 1 when a run failed, 2 on bad usage.\n",
            DEFAULT_RECORDS, QUICK_RECORDS);
}

static void bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "arena-demo: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    usage(stderr);
    exit(2);
}

/* A whole decimal number in [lo, hi], or bad usage. */
static uint64_t parse_uint(const char *opt, const char *s, uint64_t lo,
                           uint64_t hi)
{
    char msg[160];
    if (*s < '0' || *s > '9') {
        snprintf(msg, sizeof msg, "%s wants a positive whole number, not '%%s'", opt);
        bad_usage(msg, s);
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        snprintf(msg, sizeof msg, "%s must be a whole number from %llu to %llu, not '%%s'",
                 opt, (unsigned long long)lo, (unsigned long long)hi);
        bad_usage(msg, s);
    }
    return v;
}

static double parse_pct(const char *opt, const char *s)
{
    char msg[160];
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < 0.0
        || v > 100.0) {
        snprintf(msg, sizeof msg, "%s must be a percentage from 0 to 100, not '%%s'", opt);
        bad_usage(msg, s);
    }
    return v;
}

/* Fails early, before a minute of work, when an output file cannot be
 * written. */
static void check_writable(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "arena-demo: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fclose(f);
}

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
    double v = (double)b;
    if (b < 1024)
        snprintf(buf, len, "%llu B", (unsigned long long)b);
    else if (b < 1024ull * 1024)
        snprintf(buf, len, "%.1f KiB", v / 1024);
    else if (b < 1024ull * 1024 * 1024)
        snprintf(buf, len, "%.1f MiB", v / (1024.0 * 1024));
    else
        snprintf(buf, len, "%.2f GiB", v / (1024.0 * 1024 * 1024));
}

/* Share of the memory the burst added that is still resident after the free,
 * in percent; negative when it cannot be told (no growth was measured). */
static double held_pct(const struct demo_result *r)
{
    if (r->rss_peak <= r->rss_before)
        return -1.0;
    double grown = (double)(r->rss_peak - r->rss_before);
    double held = r->rss_after > r->rss_before
                ? (double)(r->rss_after - r->rss_before) : 0.0;
    return 100.0 * held / grown;
}

struct run {
    struct demo_result res;
    int have_result;
    char status[160];           /* why the run failed, when it did */
    struct demo_series series;
};

static void progress(int i, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void progress(int i, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "run %d of %zu: %s: ", i + 1, nruns, specs[i]->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int read_msg(int fd, struct demo_msg *m)
{
    char *p = (char *)m;
    size_t got = 0;
    while (got < sizeof *m) {
        ssize_t n = read(fd, p + got, sizeof *m - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static void run_one(int i, const struct demo_config *cfg, int sample,
                    struct run *run)
{
    int res_pipe[2], hold_pipe[2];
    if (pipe(res_pipe) != 0 || pipe(hold_pipe) != 0) {
        snprintf(run->status, sizeof run->status, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(run->status, sizeof run->status, "fork: %s", strerror(errno));
        close(res_pipe[0]); close(res_pipe[1]);
        close(hold_pipe[0]); close(hold_pipe[1]);
        return;
    }
    if (pid == 0) {
        close(res_pipe[0]);
        close(hold_pipe[1]);
        demo_child_run(specs[i], cfg, res_pipe[1]);
        close(res_pipe[1]);
        /* Stay alive, holding the summary, until the parent has sampled
         * the plateau after the free; then exit. */
        char c;
        for (;;) {
            ssize_t n = read(hold_pipe[0], &c, 1);
            if (n == 0 || (n < 0 && errno != EINTR))
                break;
        }
        exit(0);
    }
    close(res_pipe[1]);
    close(hold_pipe[0]);

    double start = demo_now();
    double next_sample = start;
    double hold_until = 0.0;
    struct pollfd pfd = { .fd = res_pipe[0], .events = POLLIN, .revents = 0 };
    for (;;) {
        double now = demo_now();
        if (run->have_result && now >= hold_until)
            break;
        if (sample && now >= next_sample) {
            uint64_t rss = demo_rss(pid);
            if (rss > 0)
                demo_series_add(&run->series, now - start,
                                (double)rss / (1024.0 * 1024.0));
            while (next_sample <= now)
                next_sample += SAMPLE_PERIOD;
        }
        int timeout = -1;
        if (sample) {
            double until = run->have_result && hold_until < next_sample
                         ? hold_until : next_sample;
            timeout = (int)((until - demo_now()) * 1000.0 + 0.999);
            if (timeout < 0)
                timeout = 0;
        } else if (run->have_result) {
            break;
        }
        int n = poll(&pfd, 1, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0 || run->have_result)
            continue;
        struct demo_msg m;
        if (read_msg(res_pipe[0], &m) != 0) {
            /* The child is gone without a result: waitpid says why. */
            break;
        }
        now = demo_now();
        switch (m.kind) {
        case DEMO_MSG_LOADING:
            progress(i, "loading %llu records ...",
                     (unsigned long long)cfg->records);
            break;
        case DEMO_MSG_USING:
            progress(i, "using them, keeping a summary ...");
            break;
        case DEMO_MSG_FREEING:
            if (sample) {
                run->series.marked = 1;
                run->series.mark_t = now - start;
                run->series.mark_mib = (double)demo_rss(pid) / (1024.0 * 1024.0);
            }
            progress(i, "freeing the burst ...");
            break;
        case DEMO_MSG_RESULT:
            run->res = m.result;
            run->have_result = 1;
            /* Sample the plateau after the free for a while, so the chart
             * shows what the process keeps, not its exit. */
            hold_until = now + fmax(0.3, 0.15 * (now - start));
            break;
        default:
            break;
        }
    }
    close(hold_pipe[1]);
    close(res_pipe[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (run->have_result && !run->res.ok) {
        char err[sizeof run->res.error];
        memcpy(err, run->res.error, sizeof err);
        err[sizeof err - 1] = '\0';
        snprintf(run->status, sizeof run->status, "%s", err);
        run->have_result = 0;
    } else if (!run->have_result) {
        if (WIFSIGNALED(st))
            snprintf(run->status, sizeof run->status,
                     "the child was killed by signal %d (%s)%s", WTERMSIG(st),
                     strsignal(WTERMSIG(st)),
                     WTERMSIG(st) == SIGKILL ? ": out of memory?" : "");
        else
            snprintf(run->status, sizeof run->status,
                     "the child exited with status %d without a result",
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    if (run->have_result) {
        char after[32];
        fmt_bytes(after, sizeof after, run->res.rss_after);
        progress(i, "done: load %.2f s, free %.2f s, %s resident after the free",
                 run->res.load_s, run->res.free_s, after);
    } else {
        progress(i, "FAILED: %s", run->status);
    }
}

/* ---- the table ---- */

enum { COL_NAME, COL_BEFORE, COL_PEAK, COL_AFTER, COL_HELD, COL_LOAD, COL_FREE,
       COL_MMAP, COL_MUNMAP, COL_BRK, COL_MADVISE, COL_RESERVED, COL_RELEASED,
       NUM_COLS };

static const char *const col_top[NUM_COLS] = {
    "", "RSS", "RSS", "RSS after", "held", "load", "free",
    "calls", "calls", "calls", "calls", "arenas", "arenas"
};
static const char *const col_bottom[NUM_COLS] = {
    "allocator", "before", "peak", "free", "after", "s", "s",
    "mmap", "munmap", "brk", "madvise", "reserved", "released"
};

static void print_table(const struct run *runs)
{
    char cell[DEMO_MAX_RUNS][NUM_COLS][32];
    size_t width[NUM_COLS];

    for (size_t i = 0; i < nruns; i++) {
        const struct run *r = &runs[i];
        const struct demo_result *x = &r->res;
        for (int c = 0; c < NUM_COLS; c++)
            snprintf(cell[i][c], sizeof cell[i][c], "-");
        snprintf(cell[i][COL_NAME], sizeof cell[i][COL_NAME], "%s", specs[i]->name);
        if (!r->have_result) {
            snprintf(cell[i][COL_BEFORE], sizeof cell[i][COL_BEFORE], "failed");
            continue;
        }
        fmt_bytes(cell[i][COL_BEFORE], 32, x->rss_before);
        fmt_bytes(cell[i][COL_PEAK], 32, x->rss_peak);
        fmt_bytes(cell[i][COL_AFTER], 32, x->rss_after);
        double h = held_pct(x);
        if (h >= 0)
            snprintf(cell[i][COL_HELD], 32, "%.1f%%", h);
        snprintf(cell[i][COL_LOAD], 32, "%.2f", x->load_s);
        snprintf(cell[i][COL_FREE], 32, "%.2f", x->free_s);
        if (x->have_stats) {
            snprintf(cell[i][COL_MMAP], 32, "%llu", (unsigned long long)x->calls_mmap);
            snprintf(cell[i][COL_MUNMAP], 32, "%llu", (unsigned long long)x->calls_munmap);
            snprintf(cell[i][COL_BRK], 32, "%llu", (unsigned long long)x->calls_brk);
            snprintf(cell[i][COL_MADVISE], 32, "%llu", (unsigned long long)x->calls_madvise);
            snprintf(cell[i][COL_RESERVED], 32, "%llu", (unsigned long long)x->arenas_reserved);
            snprintf(cell[i][COL_RELEASED], 32, "%llu", (unsigned long long)x->arenas_released);
        }
    }
    for (int c = 0; c < NUM_COLS; c++) {
        width[c] = strlen(col_top[c]);
        if (strlen(col_bottom[c]) > width[c])
            width[c] = strlen(col_bottom[c]);
        for (size_t i = 0; i < nruns; i++)
            if (strlen(cell[i][c]) > width[c])
                width[c] = strlen(cell[i][c]);
    }
    /* The first column is left-aligned, the numbers right-aligned. */
    for (int line = 0; line < 2 + (int)nruns; line++) {
        for (int c = 0; c < NUM_COLS; c++) {
            const char *s = line == 0 ? col_top[c]
                          : line == 1 ? col_bottom[c] : cell[line - 2][c];
            if (c == 0)
                printf("%-*s", (int)width[c], s);
            else
                printf("  %*s", (int)width[c], s);
        }
        printf("\n");
    }
}

/* ---- one sentence per allocator ---- */

/* The --heap run's sentence: its free phase against the per-object run's. */
static void print_heap_sentence(const struct run *runs, size_t i)
{
    const struct demo_result *x = &runs[i].res;
    const struct run *ref = NULL;
    for (size_t j = 0; j < nruns; j++)
        if (specs[j]->alloc == specs[i]->alloc && !specs[j]->heap && runs[j].have_result)
            ref = &runs[j];
    char after[32], ref_after[32];
    fmt_bytes(after, sizeof after, x->rss_after);
    printf("%s: the burst lived in one arena_heap; arena_heap_destroy() freed it in "
           "%.3f s", specs[i]->name, x->free_s);
    if (ref != NULL) {
        fmt_bytes(ref_after, sizeof ref_after, ref->res.rss_after);
        printf(" against %.3f s for %llu frees one by one", ref->res.free_s,
               (unsigned long long)ref->res.objects);
        if (x->free_s > 0)
            printf(" (%.0fx faster)", ref->res.free_s / x->free_s);
        printf("; %s resident after it, against %s", after, ref_after);
    } else {
        printf("; %s resident after it", after);
    }
    printf(" (%llu of %llu arenas given back).\n", (unsigned long long)x->arenas_released,
           (unsigned long long)x->arenas_reserved);
}

static void print_sentences(const struct run *runs, const struct demo_config *cfg)
{
    for (size_t si = 0; si < nruns; si++) {
        const struct run *r = &runs[si];
        const struct demo_result *x = &r->res;
        const char *const name = specs[si]->name;
        enum demo_alloc i = specs[si]->alloc;
        if (!r->have_result) {
            printf("%s: the run failed: %s.\n", name, r->status);
            continue;
        }
        if (specs[si]->heap) {
            print_heap_sentence(runs, si);
            continue;
        }
        char after[32], given[32], burst[32];
        uint64_t grown = x->rss_peak > x->rss_before ? x->rss_peak - x->rss_before : 0;
        uint64_t back = x->rss_peak > x->rss_after ? x->rss_peak - x->rss_after : 0;
        fmt_bytes(after, sizeof after, x->rss_after);
        fmt_bytes(given, sizeof given, back);
        fmt_bytes(burst, sizeof burst, grown);
        double h = held_pct(x);
        unsigned long long kept_arenas = (unsigned long long)
            (x->arenas_reserved - x->arenas_released);
        const char *who = cfg->keep_pct > 0 ? "the summary and the kept records"
                                            : "the summary";

        if (h < 0) {
            printf("%s: the burst did not grow the resident memory measurably "
                   "(%s resident after the free).\n", name, after);
        } else if (i == DEMO_ARENA_MMAP) {
            if (h < 10.0) {
                char meta[32];
                fmt_bytes(meta, sizeof meta, x->bytes_metadata);
                printf("%s: gave back %s of the %s burst at once: each arena "
                       "was unmapped as soon as its last block was freed "
                       "(%llu of %llu arenas, %llu munmap calls%s); %s stays "
                       "resident, libarena's own metadata included (%s).\n",
                       name, given, burst,
                       (unsigned long long)x->arenas_released,
                       (unsigned long long)x->arenas_reserved,
                       (unsigned long long)x->calls_munmap,
                       x->calls_madvise ? ", free pools in the other arenas "
                                          "purged with madvise" : "",
                       after, meta);
            } else
                printf("%s: %s still resident (%.1f%% of the burst): %llu "
                       "arenas still hold live blocks of %s, so only the "
                       "free pools inside them could go back (%llu madvise "
                       "calls) and %llu empty arenas were unmapped.\n",
                       name, after, h, kept_arenas, who,
                       (unsigned long long)x->calls_madvise,
                       (unsigned long long)x->arenas_released);
        } else if (i == DEMO_ARENA_BRK) {
            if (h >= 50.0)
                printf("%s: %s still resident (%.1f%% of the burst): the break "
                       "cannot move below the %s, so the freed arenas stay "
                       "with the process for reuse (%llu of %llu arenas given "
                       "back).\n",
                       name, after, h,
                       cfg->keep_pct > 0 ? "arenas that hold the summary and "
                                           "the kept records"
                                         : "arena that holds the summary",
                       (unsigned long long)x->arenas_released,
                       (unsigned long long)x->arenas_reserved);
            else
                printf("%s: gave back %s (%.1f%% still resident): %llu empty "
                       "arenas at the top of the break were given back.\n",
                       name, given, h,
                       (unsigned long long)x->arenas_released);
        } else {
            if (h >= 50.0)
                printf("%s: %s still resident (%.1f%% of the burst): the freed "
                       "chunks stay in glibc's free lists inside its heap, and "
                       "the heap cannot shrink below the summary, allocated at "
                       "its top after the burst.\n",
                       name, after, h);
            else
                printf("%s: gave back %s (%.1f%% still resident).\n",
                       name, given, h);
        }
    }
}

static int write_csv(const char *path, const struct run *runs,
                     const struct demo_config *cfg)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "arena-demo: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "allocator,status,records,objects,burst_bytes,records_kept,"
               "rss_before,rss_peak,rss_after_free,held_pct,load_s,free_s,"
               "calls_mmap,calls_munmap,calls_brk,calls_madvise,"
               "arenas_reserved,arenas_released\n");
    for (size_t i = 0; i < nruns; i++) {
        const struct run *r = &runs[i];
        const struct demo_result *x = &r->res;
        if (!r->have_result) {
            fprintf(f, "%s,failed,%llu,,,,,,,,,,,,,,,\n", specs[i]->key,
                    (unsigned long long)cfg->records);
            continue;
        }
        fprintf(f, "%s,ok,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.2f,%.4f,%.4f",
                specs[i]->key, (unsigned long long)cfg->records,
                (unsigned long long)x->objects,
                (unsigned long long)x->burst_bytes,
                (unsigned long long)x->records_kept,
                (unsigned long long)x->rss_before,
                (unsigned long long)x->rss_peak,
                (unsigned long long)x->rss_after,
                held_pct(x), x->load_s, x->free_s);
        if (x->have_stats)
            fprintf(f, ",%llu,%llu,%llu,%llu,%llu,%llu\n",
                    (unsigned long long)x->calls_mmap,
                    (unsigned long long)x->calls_munmap,
                    (unsigned long long)x->calls_brk,
                    (unsigned long long)x->calls_madvise,
                    (unsigned long long)x->arenas_reserved,
                    (unsigned long long)x->arenas_released);
        else
            fprintf(f, ",,,,,,\n");
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "arena-demo: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* --map: the four maps of the per-object runs (with_heap: of the heap
 * runs) side by side, mmap then brk, each at the peak and after the free.
 * Returns 0, or -1 when a map is missing or the drawing failed (not when
 * gnuplot is missing: one line says so). */
static int draw_maps(const struct demo_config *cfg, const struct run *runs, int with_heap,
                     int printed)
{
    static char path[4][4200], caption[4][160];
    const char *paths[4], *captions[4];
    size_t n = 0;
    for (size_t i = 0; i < nruns; i++) {
        if (specs[i]->tag == NULL || specs[i]->heap != with_heap)
            continue;
        if (!runs[i].have_result) {
            printf("\nheap maps of %s: not drawn, the run failed\n", specs[i]->name);
            return -1;
        }
        for (int w = 0; w < 2 && n < 4; w++, n++) {
            demo_map_path(path[n], sizeof path[n], cfg->map_prefix, specs[i]->tag,
                          w ? "free" : "peak");
            snprintf(caption[n], sizeof caption[n], "%s, %s", specs[i]->name,
                     w ? "right after the free" : "at the peak");
            paths[n] = path[n];
            captions[n] = caption[n];
        }
    }
    char png[4200], title[200];
    snprintf(png, sizeof png, "%s%s.png", cfg->map_prefix, with_heap ? "-heap" : "");
    snprintf(title, sizeof title, "arena-demo: heap maps of %llu records%s, at the peak and "
             "right after the free", (unsigned long long)cfg->records,
             with_heap ? " in one arena_heap" : "");
    struct heapmap_opts o = { png, title, NULL, 0 };
    int rc = heapmap_draw(&o, n, paths, captions);
    if (rc == 0) {
        printf("%sheap maps written to %s-*.json, drawn in %s\n", printed ? "" : "\n",
               cfg->map_prefix, png);
        fflush(stdout);
        return 0;
    }
    if (rc == HEAPMAP_NO_GNUPLOT) {
        printf("%sheap maps written to %s-*.json (gnuplot is not installed: not drawn)\n",
               printed ? "" : "\n", cfg->map_prefix);
        return 0;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct demo_config cfg = { DEFAULT_RECORDS, 0, 0.0, 0x5eed2014a110cULL, NULL };
    int records_given = 0, quick = 0, heap = 0;
    const char *csv = NULL, *png = NULL;

    static const struct option longopts[] = {
        { "records", required_argument, NULL, 'r' },
        { "size",    required_argument, NULL, 's' },
        { "keep",    required_argument, NULL, 'k' },
        { "quick",   no_argument,       NULL, 'q' },
        { "csv",     required_argument, NULL, 'c' },
        { "plot",    required_argument, NULL, 'p' },
        { "map",     required_argument, NULL, 'm' },
        { "heap",    no_argument,       NULL, 'H' },
        { "help",    no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    opterr = 0;
    for (;;) {
        int opt = getopt_long(argc, argv, ":h", longopts, NULL);
        if (opt == -1)
            break;
        switch (opt) {
        case 'r':
            cfg.records = parse_uint("--records", optarg, 1, MAX_RECORDS);
            records_given = 1;
            break;
        case 's':
            cfg.fixed_size = (unsigned)parse_uint("--size", optarg, 16, 512);
            break;
        case 'k':
            cfg.keep_pct = parse_pct("--keep", optarg);
            break;
        case 'q':
            quick = 1;
            break;
        case 'c':
            csv = optarg;
            break;
        case 'p':
            png = optarg;
            break;
        case 'm':
            cfg.map_prefix = optarg;
            break;
        case 'H':
            heap = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            bad_usage("%s needs a value", argv[optind - 1]);
            break;
        default:
            bad_usage("unknown option '%s'", argv[optind - 1]);
            break;
        }
    }
    if (optind < argc)
        bad_usage("unexpected argument '%s'", argv[optind]);
    if (quick && !records_given)
        cfg.records = QUICK_RECORDS;
    if (csv != NULL && *csv == '\0')
        bad_usage("%s needs a file name", "--csv");
    if (png != NULL && *png == '\0')
        bad_usage("%s needs a file name", "--plot");
    if (cfg.map_prefix != NULL && *cfg.map_prefix == '\0')
        bad_usage("%s needs a file name prefix", "--map");
    for (size_t i = 0; i < DEMO_MAX_RUNS; i++)
        if (heap || !all_runs[i].heap)
            specs[nruns++] = &all_runs[i];
    if (csv != NULL)
        check_writable(csv);
    if (png != NULL)
        check_writable(png);
    if (cfg.map_prefix != NULL)
        for (size_t i = 0; i < nruns; i++) {
            if (specs[i]->tag == NULL)
                continue;
            char path[4200];
            demo_map_path(path, sizeof path, cfg.map_prefix, specs[i]->tag, "peak");
            check_writable(path);
            demo_map_path(path, sizeof path, cfg.map_prefix, specs[i]->tag, "free");
            check_writable(path);
        }
    signal(SIGPIPE, SIG_IGN);           /* a pipe to a dead child or gnuplot */

    if (cfg.fixed_size)
        printf("arena-demo: %llu records of 3-5 objects of %u bytes each, "
               "then a summary of 6 objects allocated after the burst.\n",
               (unsigned long long)cfg.records, cfg.fixed_size);
    else
        printf("arena-demo: %llu records of 3-5 objects each (a 48-byte row "
               "and fields of 16..300 bytes), then a summary of 6 objects "
               "allocated after the burst.\n", (unsigned long long)cfg.records);
    if (cfg.keep_pct > 0)
        printf("%g%% of the records survive the free.\n", cfg.keep_pct);
    if (heap)
        printf("Each libarena backend also runs with the burst in one arena_heap, "
               "destroyed at once instead of freed object by object.\n");
    printf("Each allocator runs in its own child process.\n");

    static struct run runs[DEMO_MAX_RUNS];
    for (size_t i = 0; i < nruns; i++)
        run_one((int)i, &cfg, png != NULL, &runs[i]);

    int failed = 0;
    const struct demo_result *first = NULL;
    for (size_t i = 0; i < nruns; i++) {
        if (!runs[i].have_result) {
            failed = 1;
            continue;
        }
        if (first == NULL)
            first = &runs[i].res;
        if (runs[i].res.have_stats &&
            strcmp(runs[i].res.backend, specs[i]->alloc == DEMO_ARENA_MMAP ? "mmap" : "brk") != 0)
            fprintf(stderr, "arena-demo: warning: %s ran with backend '%s'\n",
                    specs[i]->name, runs[i].res.backend);
    }

    printf("\n");
    if (first != NULL) {
        char req[32];
        fmt_bytes(req, sizeof req, first->burst_bytes);
        printf("burst: %llu objects, %s requested; 'held after' is the share "
               "of the memory the burst added that is still resident right "
               "after the free.\n\n",
               (unsigned long long)first->objects, req);
    }
    print_table(runs);
    printf("\n");
    print_sentences(runs, &cfg);

    int status = failed ? 1 : 0;
    if (csv != NULL) {
        if (write_csv(csv, runs, &cfg) != 0)
            status = 1;
        else
            printf("\nresults written to %s\n", csv);
    }
    if (png != NULL) {
        struct demo_series series[DEMO_MAX_RUNS];
        for (size_t i = 0; i < nruns; i++)
            series[i] = runs[i].series;
        char title[160];
        snprintf(title, sizeof title,
                 "arena-demo: resident memory while %llu records are loaded, "
                 "used and freed", (unsigned long long)cfg.records);
        fflush(stdout);
        if (demo_plot(png, series, specs, nruns, title) == 0) {
            printf("%schart written to %s\n", csv ? "" : "\n", png);
        } else {
            unlink(png);                /* the empty file check_writable made */
            if (demo_have_program("gnuplot"))
                status = 1;
        }
    }
    if (cfg.map_prefix != NULL) {
        fflush(stdout);
        for (int with_heap = 0; with_heap <= heap; with_heap++)
            if (draw_maps(&cfg, runs, with_heap, csv != NULL || png != NULL) != 0)
                status = 1;
    }
    for (size_t i = 0; i < nruns; i++)
        demo_series_free(&runs[i].series);
    return status;
}
