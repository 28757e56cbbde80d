/*
 * arena-demo: shared definitions.
 *
 * The parent (main.c) parses the options, forks one child per allocator,
 * samples the child's resident memory for the plot, and prints the table.
 * It never calls arena_*.  Each child runs the workload (workload.c) with
 * one allocator and sends what it measured back over a pipe as fixed-size
 * messages (each one write(), smaller than PIPE_BUF, so never split).
 */
#ifndef DEMO_H
#define DEMO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum demo_alloc {
    DEMO_ARENA_MMAP,            /* libarena, mmap backend        */
    DEMO_ARENA_BRK,             /* libarena, legacy brk backend  */
    DEMO_GLIBC,                 /* glibc malloc / free           */
    DEMO_NUM_ALLOCS
};

struct demo_config {
    uint64_t records;           /* records in the burst                    */
    unsigned fixed_size;        /* 0: the size mix; else every object size */
    double keep_pct;            /* share of records that survive the free  */
    uint64_t seed;
    const char *map_prefix;     /* --map: heap maps PREFIX-TAG-peak.json and
                                   PREFIX-TAG-free.json; NULL: none        */
};

/* One run: an allocator, and for libarena whether the burst goes into one
 * arena_heap that is destroyed instead of freed object by object (--heap). */
struct demo_run_spec {
    enum demo_alloc alloc;
    int heap;
    const char *name;           /* "libarena mmap heap"                    */
    const char *key;            /* "libarena-mmap-heap" (CSV)              */
    const char *tag;            /* "mmap-heap" (map files); NULL for glibc */
    const char *colour;         /* in the chart                            */
};
#define DEMO_MAX_RUNS 5

/* The heap map file of a run: PREFIX-TAG-WHEN.json (when: "peak", "free"). */
void demo_map_path(char *buf, size_t len, const char *prefix, const char *tag,
                   const char *when);

/* What a child measured.  Sizes in bytes, times in seconds. */
struct demo_result {
    int ok;
    char error[120];
    char backend[16];           /* from arena_get_stats, "" for glibc      */

    uint64_t objects;           /* objects allocated in the burst          */
    uint64_t burst_bytes;       /* bytes requested in the burst            */
    uint64_t records_kept;      /* records that survived the free (--keep) */
    uint64_t summary_objects;   /* objects allocated after the burst       */
    uint64_t checksum;          /* computed in the use phase               */

    uint64_t rss_before, rss_peak, rss_after;
    double load_s, use_s, free_s;

    int have_stats;             /* the libarena fields below are filled    */
    uint64_t calls_mmap, calls_munmap, calls_brk, calls_madvise;
    uint64_t arenas_reserved, arenas_released, arenas_live;
    uint64_t bytes_mapped_after, bytes_mapped_peak, bytes_metadata;
    uint64_t pools_purged, bytes_purged;
};

enum demo_msg_kind {
    DEMO_MSG_LOADING = 1,       /* child started the load phase            */
    DEMO_MSG_USING,             /* load done, using the records            */
    DEMO_MSG_FREEING,           /* summary allocated, freeing the burst    */
    DEMO_MSG_RESULT             /* measurements in .result                 */
};

struct demo_msg {
    int kind;
    struct demo_result result;
};

/* workload.c: runs in the child.  Measures, sends messages on fd 'out'. */
void demo_child_run(const struct demo_run_spec *run, const struct demo_config *cfg,
                    int out);

/* Resident set size of process pid (0: this process), in bytes, read from
 * /proc/PID/statm without allocating.  0 when it cannot be read. */
uint64_t demo_rss(pid_t pid);

/* Monotonic clock in seconds. */
double demo_now(void);

/* plot.c */
struct demo_series {
    double *t;                  /* seconds since the child started         */
    double *mib;                /* resident MiB                            */
    size_t n, cap;
    int marked;                 /* the free phase started at mark_t        */
    double mark_t, mark_mib;
};
int demo_series_add(struct demo_series *s, double t, double mib);
void demo_series_free(struct demo_series *s);

/* Draws the n series (one per run) into a PNG with gnuplot.  Returns 0, or
 * -1 after printing one line that says why (e.g. gnuplot is not installed). */
int demo_plot(const char *png, const struct demo_series *series,
              const struct demo_run_spec *const *runs, size_t n, const char *title);

/* True when an executable named prog is found on PATH. */
int demo_have_program(const char *prog);

#endif /* DEMO_H */
