/*
 * Stats: one snapshot, taken under the global lock and each heap's lock in
 * turn, and a report whose lines add up (the identities are listed in
 * include/arena.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void arena_get_stats(struct arena_stats *out)
{
    struct arena_stats st;
    memset(&st, 0, sizeof(st));
    pthread_mutex_lock(&ar_lock);
    ar_arena_counts(&st);
    ar_heaps_stats(&st);
    st.bytes_metadata = ar_meta_bytes();
    pthread_mutex_unlock(&ar_lock);
    ar_limit_counts(&st);
    int64_t large = atomic_load_explicit(&ar_large_live, AR_RELAXED);
    st.large_live = large > 0 ? (uint64_t)large : 0;
    *out = st;
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

void arena_print_stats(FILE *f)
{
    struct arena_stats s;
    char b1[32], b2[32], b3[32], b4[32];
    arena_get_stats(&s);
    fprintf(f, "libarena stats (backend %s)\n", s.backend);
    fprintf(f, "arenas   reserved %" PRIu64 "  released %" PRIu64 "  live %" PRIu64
               "  (empty %" PRIu64 ")\n",
            s.arenas_reserved, s.arenas_released, s.arenas_live, s.arenas_empty);
    fprintf(f, "memory   mapped %s  peak %s  metadata %s\n",
            human(s.bytes_mapped, b1, sizeof b1), human(s.bytes_mapped_peak, b2, sizeof b2),
            human(s.bytes_metadata, b3, sizeof b3));
    fprintf(f, "pools    total %" PRIu64 " = used %" PRIu64 " + full %" PRIu64 " + empty %" PRIu64
               " + free %" PRIu64 "  (free: dirty %" PRIu64 " + purged %" PRIu64 ")\n",
            s.pools_total, s.pools_used, s.pools_full, s.pools_empty, s.pools_free,
            s.pools_free_dirty, s.pools_free_purged);
    fprintf(f, "purged   pools %" PRIu64 "  bytes %s (since start)\n", s.pools_purged,
            human(s.bytes_purged, b4, sizeof b4));
    fprintf(f, "backend  mmap %" PRIu64 "  munmap %" PRIu64 "  brk %" PRIu64 "  madvise %" PRIu64
               "  reserve failures %" PRIu64 "\n",
            s.calls_mmap, s.calls_munmap, s.calls_brk, s.calls_madvise, s.reserve_failures);
    fprintf(f, "heaps    live %" PRIu64 "  ended %" PRIu64 "  reused %" PRIu64 "  adopted %" PRIu64
               "  global lock taken %" PRIu64 "\n",
            s.heaps_live, s.heaps_abandoned, s.heaps_reused, s.heaps_adopted, s.locks_global);
    fprintf(f, "cache    blocks %" PRIu64 " (freed, kept by their threads for reuse)\n",
            s.blocks_cached);
    fprintf(f, "large    live %" PRIu64 "  bytes %s\n", s.large_live,
            human(s.large_bytes, b1, sizeof b1));
    if (s.limit_hard || s.limit_soft)
        fprintf(f, "limits   counted %s  hard %s  soft %s  refused %" PRIu64
                   "  soft calls %" PRIu64 "\n",
                human(s.limit_counted, b1, sizeof b1), human(s.limit_hard, b2, sizeof b2),
                human(s.limit_soft, b3, sizeof b3), s.limit_refused, s.limit_soft_calls);
    fprintf(f, "%-8s %6s %12s %14s\n", "class", "size", "blocks", "bytes");
    for (unsigned c = 0; c < AR_NCLASS; c++)
        if (s.blocks_live_class[c] != 0)
            fprintf(f, "%-8u %6zu %12" PRIu64 " %14" PRIu64 "\n", c, ar_class_size(c),
                    s.blocks_live_class[c], s.blocks_live_class[c] * ar_class_size(c));
    fprintf(f, "%-8s %6s %12" PRIu64 " %14" PRIu64 "\n", "total", "", s.blocks_live, s.bytes_live);
}
