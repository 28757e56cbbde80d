/*
 * arena-demo: the workload, run in a child process with one allocator.
 *
 * The incident it reproduces: a service loads a burst of small records
 * (rows from an ORM: each a row object and 2-4 field objects of mixed
 * sizes), uses them, keeps a small result that it allocates after the
 * burst (a summary and a cache entry), then frees the burst.  What matters
 * is how much memory the process still holds right after that free.
 *
 * Phases, each timed, RSS read from /proc/self/statm between them:
 *   load     allocate and fill every object, chained in one list
 *   use      walk the records (checksum, size histogram), then allocate
 *            the summary objects; they stay live until the end
 *   free     free the burst (with --keep, a random share of the records
 *            survives); RSS is read at once, with no sleep and no
 *            arena_release(): the allocator must give memory back by itself
 *
 * With --heap the burst is allocated in one arena_heap (the summary is not:
 * it outlives the burst), and the free phase is one arena_heap_destroy()
 * (the records that survive are first copied out, into the thread's own
 * heap).  With --map the child writes its heap map at the peak (after the
 * summary is allocated) and right after the free, each after the RSS
 * reading of that moment; the files are opened, with static stdio buffers,
 * before the first allocation, so that writing them needs no malloc.
 *
 * This file is the only one that calls arena_*, and only in the child.  The
 * child writes no stdio but the maps: with the brk backend, a glibc malloc
 * made by stdio would move the program break above libarena's arenas.
 */
#include "demo.h"

#include <arena.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Every object starts with this header; the rest is payload.  The first
 * object of a record (the row) has tag = number of objects in the record. */
struct obj {
    struct obj *next;
    uint32_t size;
    uint32_t tag;
};

_Static_assert(sizeof(struct obj) == 16, "object header is 16 bytes");

#define ROW_SIZE      48u       /* the row object in the size mix          */
#define SUMMARY_COUNT 6u

/* Sizes of the objects allocated after the burst: a summary, a size
 * histogram, a cache key, a cache entry, two index nodes.  The cache entry's
 * size class (480) is one the mix never uses, so it needs a fresh pool: it
 * lands in the newest arena, at the top of the break with the brk backend. */
static const uint32_t summary_sizes[SUMMARY_COUNT] = { 64, 256, 40, 480, 24, 120 };

struct rng { uint64_t s; };

static uint64_t rng_next(struct rng *r)        /* xorshift64* */
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

double demo_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t demo_rss(pid_t pid)
{
    char path[64];
    char buf[128];
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/statm");
    else
        snprintf(path, sizeof path, "/proc/%ld/statm", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* "size resident shared text lib data dt", in pages */
    char *p = buf;
    (void)strtoull(p, &p, 10);
    uint64_t resident = strtoull(p, NULL, 10);
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Size of a field object in the mix: mostly short values, some longer
 * text, a few blobs; all served by the small-object allocator (<= 512). */
static uint32_t field_size(struct rng *r)
{
    uint64_t x = rng_next(r);
    unsigned pick = (unsigned)(x % 100);
    x >>= 8;
    if (pick < 50)
        return 16 + (uint32_t)(x % 49);        /* 16 .. 64   */
    if (pick < 85)
        return 65 + (uint32_t)(x % 128);       /* 65 .. 192  */
    return 193 + (uint32_t)(x % 108);          /* 193 .. 300 */
}

static void fail(int fd, struct demo_msg *m, const char *what);

struct allocator {
    void *(*alloc)(size_t);
    void (*free)(void *);
};

static struct arena_heap *burst_heap;   /* --heap */

static void *burst_heap_alloc(size_t size)
{
    return arena_heap_alloc(burst_heap, size);
}

void demo_map_path(char *buf, size_t len, const char *prefix, const char *tag,
                   const char *when)
{
    snprintf(buf, len, "%s-%s-%s.json", prefix, tag, when);
}

/* Opens a map file before the first allocation, with a static buffer. */
static FILE *open_map(const struct demo_config *cfg, const struct demo_run_spec *run,
                      const char *when, char *buf, size_t buflen, int out,
                      struct demo_msg *m)
{
    char path[4200];
    demo_map_path(path, sizeof path, cfg->map_prefix, run->tag, when);
    FILE *f = fopen(path, "w");
    if (f == NULL || setvbuf(f, buf, _IOFBF, buflen) != 0) {
        char msg[100];
        snprintf(msg, sizeof msg, "cannot write the heap map %s-%s.json", run->tag, when);
        fail(out, m, msg);
    }
    return f;
}

static void write_map(FILE *f, int out, struct demo_msg *m)
{
    if (arena_write_heap_map(f) != 0 || fclose(f) != 0)
        fail(out, m, "writing a heap map failed");
}

static void send_msg(int fd, const struct demo_msg *m)
{
    const char *p = (const char *)m;
    size_t left = sizeof *m;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(3);                   /* the parent is gone */
        p += n;
        left -= (size_t)n;
    }
}

static void send_kind(int fd, int kind)
{
    struct demo_msg m;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    send_msg(fd, &m);
}

static void fail(int fd, struct demo_msg *m, const char *what)
{
    m->kind = DEMO_MSG_RESULT;
    m->result.ok = 0;
    snprintf(m->result.error, sizeof m->result.error, "%s", what);
    send_msg(fd, m);
    _exit(1);
}

static struct obj *new_obj(const struct allocator *a, uint32_t size,
                           uint32_t tag, uint64_t serial)
{
    struct obj *o = a->alloc(size);
    if (o == NULL)
        return NULL;
    o->next = NULL;
    o->size = size;
    o->tag = tag;
    /* Fill the payload as a loader would: every byte is written. */
    memset(o + 1, (int)(serial & 0x7f) + 1, size - sizeof *o);
    return o;
}

void demo_child_run(const struct demo_run_spec *run, const struct demo_config *cfg,
                    int out)
{
    static struct demo_msg m;           /* static: keeps the stack small */
    static char peak_buf[1 << 16], free_buf[1 << 16];
    struct demo_result *res = &m.result;
    struct allocator a;
    void *(*summary_alloc)(size_t);
    enum demo_alloc which = run->alloc;
    FILE *map_peak = NULL, *map_free = NULL;

    memset(&m, 0, sizeof m);
    if (which == DEMO_GLIBC) {
        a.alloc = malloc;
        a.free = free;
        summary_alloc = malloc;
    } else {
        if (cfg->map_prefix != NULL) {
            map_peak = open_map(cfg, run, "peak", peak_buf, sizeof peak_buf, out, &m);
            map_free = open_map(cfg, run, "free", free_buf, sizeof free_buf, out, &m);
        }
        const char *name = which == DEMO_ARENA_MMAP ? "mmap" : "brk";
        /* The demo picks the backend itself, whatever the environment says. */
        unsetenv("ARENA_BACKEND");
        int rc = arena_set_backend(name);
        if (rc != 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "arena_set_backend(\"%s\") failed: %s",
                     name, strerror(rc));
            fail(out, &m, msg);
        }
        a.alloc = arena_alloc;
        a.free = arena_free;
        summary_alloc = arena_alloc;
        if (run->heap) {
            burst_heap = arena_heap_new();
            if (burst_heap == NULL)
                fail(out, &m, "arena_heap_new() failed");
            a.alloc = burst_heap_alloc;
        }
    }

    struct rng sizes = { cfg->seed };
    struct rng keep = { cfg->seed ^ 0x9E3779B97F4A7C15ULL };
    struct obj head = { NULL, 0, 0 };
    struct obj *tail = &head;
    uint64_t objects = 0, bytes = 0;

    res->rss_before = demo_rss(0);

    /* load */
    send_kind(out, DEMO_MSG_LOADING);
    double t0 = demo_now();
    for (uint64_t r = 0; r < cfg->records; r++) {
        uint32_t count = 3 + (uint32_t)(rng_next(&sizes) % 3);   /* 3..5 */
        for (uint32_t i = 0; i < count; i++) {
            uint32_t size = cfg->fixed_size ? cfg->fixed_size
                          : i == 0 ? ROW_SIZE : field_size(&sizes);
            struct obj *o = new_obj(&a, size, i == 0 ? count : 0, objects);
            if (o == NULL) {
                char msg[96];
                snprintf(msg, sizeof msg,
                         "out of memory after %llu objects",
                         (unsigned long long)objects);
                fail(out, &m, msg);
            }
            tail->next = o;
            tail = o;
            objects++;
            bytes += size;
        }
    }
    double t1 = demo_now();
    uint64_t rss_loaded = demo_rss(0);

    /* use: read every record, then keep a small result */
    send_kind(out, DEMO_MSG_USING);
    uint64_t hist[ARENA_NUM_CLASSES + 1];
    memset(hist, 0, sizeof hist);
    uint64_t sum = 0;
    for (struct obj *o = head.next; o != NULL; o = o->next) {
        unsigned c = (o->size + 15) / 16 - 1;
        hist[c < ARENA_NUM_CLASSES ? c : ARENA_NUM_CLASSES]++;
        sum = sum * 31 + o->size;
        if (o->size > sizeof *o)        /* a 16-byte object has no payload */
            sum += ((const unsigned char *)(o + 1))[0];
    }
    void *summary[SUMMARY_COUNT];
    for (unsigned i = 0; i < SUMMARY_COUNT; i++) {
        summary[i] = summary_alloc(summary_sizes[i]);
        if (summary[i] == NULL)
            fail(out, &m, "out of memory allocating the summary");
        memset(summary[i], 0, summary_sizes[i]);
    }
    memcpy(summary[0], &sum, sizeof sum);
    memcpy(summary[1], hist, sizeof hist < 256 ? sizeof hist : 256);
    snprintf(summary[2], 40, "report:%llu", (unsigned long long)objects);
    double t2 = demo_now();
    uint64_t rss_used = demo_rss(0);
    if (map_peak != NULL)
        write_map(map_peak, out, &m);

    /* free the burst */
    send_kind(out, DEMO_MSG_FREEING);
    struct obj kept = { NULL, 0, 0 };
    struct obj *kept_tail = &kept;
    uint64_t kept_records = 0;
    uint64_t keep_below = (uint64_t)(cfg->keep_pct * 10000.0 + 0.5);
    double t3 = demo_now();
    struct obj *o = keep_below > 0 || burst_heap == NULL ? head.next : NULL;
    while (o != NULL) {
        uint32_t count = o->tag ? o->tag : 1;
        int survive = keep_below > 0 && rng_next(&keep) % 1000000 < keep_below;
        if (survive)
            kept_records++;
        for (uint32_t i = 0; i < count && o != NULL; i++) {
            struct obj *next = o->next;
            if (survive && burst_heap != NULL) {
                /* copied out of the heap that is about to go */
                struct obj *c = summary_alloc(o->size);
                if (c == NULL)
                    fail(out, &m, "out of memory copying a kept record");
                memcpy(c, o, o->size);
                c->next = NULL;
                kept_tail->next = c;
                kept_tail = c;
            } else if (survive) {
                kept_tail->next = o;
                kept_tail = o;
                o->next = NULL;
            } else if (burst_heap == NULL) {
                a.free(o);
            }
            o = next;
        }
    }
    if (burst_heap != NULL) {
        arena_heap_destroy(burst_heap);
        burst_heap = NULL;
    }
    double t4 = demo_now();
    res->rss_after = demo_rss(0);       /* at once: no sleep, no release */
    if (map_free != NULL)
        write_map(map_free, out, &m);

    res->objects = objects;
    res->burst_bytes = bytes;
    res->records_kept = kept_records;
    res->summary_objects = SUMMARY_COUNT;
    res->checksum = sum ^ ((const uint64_t *)summary[0])[0];
    res->rss_peak = rss_loaded > rss_used ? rss_loaded : rss_used;
    res->load_s = t1 - t0;
    res->use_s = t2 - t1;
    res->free_s = t4 - t3;

    if (which != DEMO_GLIBC) {
        struct arena_stats st;
        st.size = sizeof st;
        arena_get_stats(&st);
        res->have_stats = 1;
        snprintf(res->backend, sizeof res->backend, "%s",
                 st.backend ? st.backend : "?");
        res->calls_mmap = st.calls_mmap;
        res->calls_munmap = st.calls_munmap;
        res->calls_brk = st.calls_brk;
        res->calls_madvise = st.calls_madvise;
        res->arenas_reserved = st.arenas_reserved;
        res->arenas_released = st.arenas_released;
        res->arenas_live = st.arenas_live;
        res->bytes_mapped_after = st.bytes_mapped;
        res->bytes_mapped_peak = st.bytes_mapped_peak;
        res->bytes_metadata = st.bytes_metadata;
        res->pools_purged = st.pools_purged;
        res->bytes_purged = st.bytes_purged;
    }
    res->ok = 1;
    m.kind = DEMO_MSG_RESULT;
    send_msg(out, &m);
    /* The summary and the kept records stay live until the process exits. */
}
