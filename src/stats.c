/*
 * Stats: what libarena can tell about its memory, as numbers, as a report,
 * as Prometheus metrics and as a heap map.
 *
 * Totals and per-class numbers come from one walk (arena_get_stats and
 * arena_get_class_stats share it), taken under the global lock and each
 * heap's lock in turn, so they add up (the identities are in arena.h).  The
 * heap map and the fragmentation report come from a census: every arena in
 * address order with each pool's state, class and live count, copied under
 * the same locks into a temporary mapping and formatted after the locks are
 * dropped (printing may allocate, and so come back to libarena).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

static void gather(struct ar_counts *k)
{
    memset(k, 0, sizeof(*k));
    pthread_mutex_lock(&ar_lock);
    ar_arena_counts(k);
    ar_heaps_stats(k);
    k->st.bytes_metadata = ar_meta_bytes();
    pthread_mutex_unlock(&ar_lock);
    ar_limit_counts(&k->st);
    int64_t large = atomic_load_explicit(&ar_large_live, AR_RELAXED);
    k->st.large_live = large > 0 ? (uint64_t)large : 0;
    k->st.bytes_resident = (k->st.pools_total - k->st.pools_free_purged) * AR_POOL_SIZE;
    for (unsigned c = 0; c < AR_NCLASS; c++)
        k->cls[c].size = sizeof(k->cls[c]);
    k->st.size = sizeof(k->st);
}

/* Copy what the caller's struct has room for (its `size` field). */
static void copy_sized(void *out, const void *in, size_t in_size)
{
    size_t want = *(const size_t *)out;
    memcpy(out, in, want < in_size ? want : in_size);
    *(size_t *)out = want;
}

void arena_get_stats(struct arena_stats *out)
{
    struct ar_counts k;
    gather(&k);
    copy_sized(out, &k.st, sizeof(k.st));
}

/* The caller's array steps by its own sizeof(struct arena_class_stats),
 * which its first element's size field says. */
size_t arena_get_class_stats(struct arena_class_stats *out, size_t n)
{
    struct ar_counts k;
    gather(&k);
    size_t stride = n ? out[0].size : 0;
    for (size_t c = 0; c < n && c < AR_NCLASS; c++)
        copy_sized((char *)out + c * stride, &k.cls[c], sizeof(k.cls[c]));
    return AR_NCLASS;
}

/* ---- the census ---------------------------------------------------------- */

struct census {
    struct ar_census_arena *arenas;
    size_t n, bytes;
};

static int census_cmp(const void *key, const void *elem)
{
    uintptr_t base = *(const uintptr_t *)key, e = ((const struct ar_census_arena *)elem)->base;
    return base < e ? -1 : base > e;
}

/* A block in a thread cache is not live: take it off its pool's count. */
static void uncount_cached(void *b, void *arg)
{
    struct census *c = arg;
    uintptr_t base = (uintptr_t)b & ~(uintptr_t)(AR_ARENA_SIZE - 1);
    struct ar_census_arena *a = bsearch(&base, c->arenas, c->n, sizeof(*a), census_cmp);
    if (a == NULL)
        return;
    struct ar_census_pool *p = &a->pool[ar_pool_index_of(b)];
    if (p->state <= AR_POOL_FULL && p->state != AR_POOL_FREE && p->live > 0)
        p->live--;
}

static void census_free(struct census *c)
{
    if (c->arenas != NULL)
        munmap(c->arenas, c->bytes);
}

/* Take the census (0), or -1 with errno set. */
static int census_take(struct census *c)
{
    struct ar_counts k;
    gather(&k);
    size_t want = k.st.arenas_live + 16;
    for (;;) {
        c->bytes = (want * sizeof(struct ar_census_arena) + 4095) & ~(size_t)4095;
        c->arenas = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        if (c->arenas == MAP_FAILED) {
            c->arenas = NULL;
            return -1;
        }
        c->n = ar_census(c->arenas, want);
        if (c->n <= want)
            break;
        census_free(c);
        want = c->n + 16;
    }
    ar_heaps_cached(uncount_cached, c);
    return 0;
}

static const char *pool_state_name(const struct ar_census_pool *p)
{
    switch (p->state) {
    case AR_CENSUS_FREE_DIRTY:
        return "free-dirty";
    case AR_CENSUS_FREE_PURGED:
        return "free-purged";
    case AR_POOL_LARGE:
    case AR_POOL_TAIL:
    case AR_CENSUS_HUGE:
        return "large";
    default:
        if (p->owner != NULL && ar_heap_is_dead(p->owner))
            return "orphan";
        return p->state == AR_POOL_CURRENT ? "current"
               : p->state == AR_POOL_FULL  ? "full"
                                           : "used";
    }
}

int arena_write_heap_map(FILE *out)
{
    struct census c;
    if (census_take(&c) != 0)
        return -1;
    struct ar_counts k;
    gather(&k);
    fprintf(out, "{\"backend\": \"%s\", \"arenas\": [", k.st.backend);
    for (size_t i = 0; i < c.n; i++) {
        fprintf(out, "%s\n  {\"base\": \"%#" PRIxPTR "\", \"pools\": [", i ? "," : "",
                c.arenas[i].base);
        for (unsigned j = 0; j < AR_POOLS; j++) {
            const struct ar_census_pool *p = &c.arenas[i].pool[j];
            bool free = p->state == AR_CENSUS_FREE_DIRTY || p->state == AR_CENSUS_FREE_PURGED;
            fprintf(out, "%s{\"state\": \"%s\", \"block_size\": %" PRIu32 ", \"live\": %" PRIu32 "}",
                    j ? ", " : "", pool_state_name(p), free ? 0 : p->bytes, p->live);
        }
        fputs("]}", out);
    }
    fputs("\n]}\n", out);
    census_free(&c);
    return ferror(out) ? (errno = EIO, -1) : 0;
}

/* ---- the fragmentation report ---------------------------------------------- */

/* Meshing (merging two partly used pools of a class whose live blocks sit at
 * different offsets into one page) is estimated, never done.  With the live
 * blocks of each pool at independent, uniformly random offsets, a pool with
 * b live blocks fits into a page holding a live blocks (of n) without
 * overlap with probability C(n-a, b) / C(n, b).  Pools are taken from the
 * sparsest up and each goes into the first page where that probability is
 * at least one half; every pool that found one is a page freed. */
static double mesh_chance(unsigned n, unsigned a, unsigned b)
{
    if (a + b > n)
        return 0;
    double p = 1;
    for (unsigned t = 0; t < b; t++)
        p *= (double)(n - a - t) / (double)(n - t);
    return p;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

#define AR_MESH_TARGETS 256

static uint64_t mesh_estimate(uint32_t *live, size_t n, unsigned nblocks)
{
    qsort(live, n, sizeof(*live), cmp_u32);
    unsigned target[AR_MESH_TARGETS];
    unsigned targets = 0;
    uint64_t freed = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned k = live[i], t;
        if (k == 0 || k > nblocks / 2)
            continue;
        for (t = 0; t < targets; t++)
            if (mesh_chance(nblocks, target[t], k) >= 0.5)
                break;
        if (t < targets) {
            target[t] += k;
            freed++;
        } else if (targets < AR_MESH_TARGETS) {
            target[targets++] = k;
        }
    }
    return freed;
}

static const char *human(uint64_t bytes, char *buf, size_t len)
{
    static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, len, "%.1f %s", v, unit[u]);
    return buf;
}

/* Per class: live and resident bytes, the waste between them, the share of
 * pools under a quarter full, and what meshing might free. */
static void print_fragmentation(FILE *f, const struct ar_counts *k)
{
    struct census c;
    uint32_t *live = NULL;
    size_t live_bytes = 0;
    if (census_take(&c) == 0) {
        live_bytes = (c.n * AR_POOLS * sizeof(*live) + 4095) & ~(size_t)4095;
        live = mmap(NULL, live_bytes ? live_bytes : 4096, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (live == MAP_FAILED)
            live = NULL;
    }
    fprintf(f, "fragmentation (resident = pools in use x 4 KiB; meshing estimated, nothing moved)\n");
    fprintf(f, "%6s %12s %12s %12s %7s %9s %12s\n", "class", "live", "resident", "waste",
            "waste%", "pools<25%", "mesh frees");
    uint64_t tl = 0, tr = 0, tm = 0;
    char b1[32], b2[32], b3[32], b4[32];
    for (unsigned cl = 0; cl < AR_NCLASS; cl++) {
        const struct arena_class_stats *s = &k->cls[cl];
        uint64_t pools = s->pools_full + s->pools_partial;
        if (pools == 0)
            continue;
        uint64_t mesh = 0;
        if (live != NULL) {
            size_t n = 0;
            for (size_t i = 0; i < c.n; i++)
                for (unsigned j = 0; j < AR_POOLS; j++) {
                    const struct ar_census_pool *p = &c.arenas[i].pool[j];
                    if (p->state >= AR_POOL_CURRENT && p->state <= AR_POOL_FULL && p->cls == cl)
                        live[n++] = p->live;
                }
            mesh = mesh_estimate(live, n, ar_class_blocks(cl));
        }
        uint64_t waste = s->bytes_resident > s->bytes_live ? s->bytes_resident - s->bytes_live : 0;
        fprintf(f, "%6u %12s %12s %12s %6.1f%% %8.1f%% %12s\n", s->block_size,
                human(s->bytes_live, b1, sizeof b1), human(s->bytes_resident, b2, sizeof b2),
                human(waste, b3, sizeof b3),
                s->bytes_resident ? 100.0 * (double)waste / (double)s->bytes_resident : 0.0,
                100.0 * (double)(s->occupancy[0] + s->occupancy[1]) / (double)pools,
                human(mesh * AR_POOL_SIZE, b4, sizeof b4));
        tl += s->bytes_live;
        tr += s->bytes_resident;
        tm += mesh;
    }
    uint64_t waste = tr > tl ? tr - tl : 0;
    fprintf(f, "%6s %12s %12s %12s %6.1f%% %9s %12s\n", "total", human(tl, b1, sizeof b1),
            human(tr, b2, sizeof b2), human(waste, b3, sizeof b3),
            tr ? 100.0 * (double)waste / (double)tr : 0.0, "",
            human(tm * AR_POOL_SIZE, b4, sizeof b4));
    if (live != NULL)
        munmap(live, live_bytes ? live_bytes : 4096);
    census_free(&c);
}

void arena_print_stats(FILE *f)
{
    struct ar_counts k;
    gather(&k);
    const struct arena_stats *s = &k.st;
    char b1[32], b2[32], b3[32], b4[32];
    fprintf(f, "libarena stats (backend %s)\n", s->backend);
    fprintf(f, "arenas   reserved %" PRIu64 "  released %" PRIu64 "  live %" PRIu64
               "  (empty %" PRIu64 ")\n",
            s->arenas_reserved, s->arenas_released, s->arenas_live, s->arenas_empty);
    fprintf(f, "memory   mapped %s  peak %s  resident %s  metadata %s\n",
            human(s->bytes_mapped, b1, sizeof b1), human(s->bytes_mapped_peak, b2, sizeof b2),
            human(s->bytes_resident, b3, sizeof b3), human(s->bytes_metadata, b4, sizeof b4));
    fprintf(f, "pools    total %" PRIu64 " = used %" PRIu64 " + full %" PRIu64 " + empty %" PRIu64
               " + large %" PRIu64 " + free %" PRIu64 "  (free: dirty %" PRIu64 " + purged %" PRIu64
               ")\n",
            s->pools_total, s->pools_used, s->pools_full, s->pools_empty, s->pools_large,
            s->pools_free, s->pools_free_dirty, s->pools_free_purged);
    fprintf(f, "purged   pools %" PRIu64 "  bytes %s (since start)\n", s->pools_purged,
            human(s->bytes_purged, b1, sizeof b1));
    fprintf(f, "syscalls mmap %" PRIu64 "  munmap %" PRIu64 "  brk %" PRIu64 "  madvise %" PRIu64
               "  reserve failures %" PRIu64 "\n",
            s->calls_mmap, s->calls_munmap, s->calls_brk, s->calls_madvise, s->reserve_failures);
    fprintf(f, "heaps    live %" PRIu64 "  ended %" PRIu64 "  reused %" PRIu64 "  adopted %" PRIu64
               "  user %" PRIu64 "  global lock taken %" PRIu64 "\n",
            s->heaps_live, s->heaps_abandoned, s->heaps_reused, s->heaps_adopted, s->heaps_user,
            s->locks_global);
    fprintf(f, "cache    blocks %" PRIu64 " (freed, kept by their threads for reuse)\n",
            s->blocks_cached);
    fprintf(f, "large    live %" PRIu64 "  bytes %s  (user heaps' large blocks %" PRIu64 ")\n",
            s->large_live, human(s->large_bytes, b1, sizeof b1), s->heap_large_live);
    if (s->limit_hard || s->limit_soft)
        fprintf(f, "limits   counted %s  hard %s  soft %s  refused %" PRIu64
                   "  soft calls %" PRIu64 "\n",
                human(s->limit_counted, b1, sizeof b1), human(s->limit_hard, b2, sizeof b2),
                human(s->limit_soft, b3, sizeof b3), s->limit_refused, s->limit_soft_calls);
    fprintf(f, "%-8s %6s %12s %14s\n", "class", "size", "blocks", "bytes");
    for (unsigned c = 0; c < AR_NCLASS; c++)
        if (s->blocks_live_class[c] != 0)
            fprintf(f, "%-8u %6zu %12" PRIu64 " %14" PRIu64 "\n", c, ar_class_size(c),
                    s->blocks_live_class[c], s->blocks_live_class[c] * ar_class_size(c));
    fprintf(f, "%-8s %6s %12" PRIu64 " %14" PRIu64 "\n", "total", "", s->blocks_live,
            s->bytes_live);
    print_fragmentation(f, &k);
}

/* ---- Prometheus metrics ------------------------------------------------------ */

static void metric_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP libarena_%s %s\n# TYPE libarena_%s %s\n", name, help, name, type);
}

static void metric(FILE *f, const char *name, const char *labels, const char *backend,
                   uint64_t v)
{
    fprintf(f, "libarena_%s{backend=\"%s\"%s%s} %" PRIu64 "\n", name, backend,
            *labels ? "," : "", labels, v);
}

static void one(FILE *f, const char *name, const char *type, const char *help, const char *be,
                uint64_t v)
{
    metric_head(f, name, type, help);
    metric(f, name, "", be, v);
}

int arena_write_metrics(FILE *f)
{
    struct ar_counts k;
    gather(&k);
    const struct arena_stats *s = &k.st;
    const char *be = s->backend;
    char lab[48];
    one(f, "arenas_reserved_total", "counter", "Arenas reserved from the backend.", be,
        s->arenas_reserved);
    one(f, "arenas_released_total", "counter", "Arenas given back to the backend.", be,
        s->arenas_released);
    one(f, "arenas_live", "gauge", "Arenas held now.", be, s->arenas_live);
    one(f, "bytes_mapped", "gauge", "Bytes of arenas held now.", be, s->bytes_mapped);
    one(f, "bytes_mapped_peak", "gauge", "Highest bytes_mapped seen.", be, s->bytes_mapped_peak);
    one(f, "bytes_resident", "gauge",
        "Estimate: pools in use and dirty free pools, 4 KiB each.", be, s->bytes_resident);
    one(f, "bytes_live", "gauge", "Bytes of small blocks handed out (size-class bytes).", be,
        s->bytes_live);
    one(f, "bytes_metadata", "gauge", "Bytes of metadata mapped and not purged.", be,
        s->bytes_metadata);
    one(f, "large_blocks_live", "gauge", "Blocks above 512 bytes from the system allocator.", be,
        s->large_live);
    one(f, "large_bytes_live", "gauge", "Usable bytes of those blocks.", be, s->large_bytes);
    one(f, "blocks_cached", "gauge", "Freed blocks kept in thread caches.", be, s->blocks_cached);
    metric_head(f, "pools", "gauge", "Pools by state.");
    static const char *const names[] = { "used", "full", "empty", "large", "free_dirty",
                                         "free_purged" };
    const uint64_t pools[] = { s->pools_used, s->pools_full, s->pools_empty, s->pools_large,
                               s->pools_free_dirty, s->pools_free_purged };
    for (unsigned i = 0; i < 6; i++) {
        snprintf(lab, sizeof lab, "state=\"%s\"", names[i]);
        metric(f, "pools", lab, be, pools[i]);
    }
    one(f, "pools_purged_total", "counter", "Pools purged (pages given back).", be,
        s->pools_purged);
    one(f, "bytes_purged_total", "counter", "Bytes purged.", be, s->bytes_purged);
    metric_head(f, "syscalls_total", "counter", "System calls for memory, by kind.");
    static const char *const calls[] = { "mmap", "munmap", "brk", "madvise" };
    const uint64_t nc[] = { s->calls_mmap, s->calls_munmap, s->calls_brk, s->calls_madvise };
    for (unsigned i = 0; i < 4; i++) {
        snprintf(lab, sizeof lab, "call=\"%s\"", calls[i]);
        metric(f, "syscalls_total", lab, be, nc[i]);
    }
    one(f, "heaps_live", "gauge", "Thread heaps in use.", be, s->heaps_live);
    one(f, "heaps_user", "gauge", "Heaps made by arena_heap_new, live.", be, s->heaps_user);
    one(f, "locks_global_total", "counter", "Times allocation took the global lock.", be,
        s->locks_global);
    one(f, "limit_counted_bytes", "gauge", "What the memory limits apply to.", be,
        s->limit_counted);
    one(f, "limit_refused_total", "counter", "Allocations the hard limit refused.", be,
        s->limit_refused);
    static const struct {
        const char *name, *help;
        size_t off;
    } per_class[] = {
        { "class_blocks_live", "Blocks of the class handed out.",
          offsetof(struct arena_class_stats, blocks_live) },
        { "class_bytes_live", "Bytes of the class handed out.",
          offsetof(struct arena_class_stats, bytes_live) },
        { "class_bytes_resident", "Pools of the class in use, 4 KiB each.",
          offsetof(struct arena_class_stats, bytes_resident) },
        { "class_blocks_free", "Free blocks inside the class's pools in use.",
          offsetof(struct arena_class_stats, blocks_free) },
        { "class_blocks_cached", "Blocks of the class in thread caches.",
          offsetof(struct arena_class_stats, blocks_cached) },
    };
    for (unsigned i = 0; i < sizeof per_class / sizeof per_class[0]; i++) {
        metric_head(f, per_class[i].name, "gauge", per_class[i].help);
        for (unsigned c = 0; c < AR_NCLASS; c++) {
            snprintf(lab, sizeof lab, "class=\"%zu\"", ar_class_size(c));
            metric(f, per_class[i].name, lab, be,
                   *(const uint64_t *)((const char *)&k.cls[c] + per_class[i].off));
        }
    }
    return ferror(f) ? (errno = EIO, -1) : 0;
}
