/*
 * libarena — a small-object allocator that gives memory back.
 *
 * Objects of up to ARENA_SMALL_MAX bytes are served from 4 KiB pools inside
 * 256 KiB arenas obtained from the OS; an arena whose last block is freed is
 * given back.  Larger requests are passed to the system allocator.  Every
 * function here is safe to call from any thread.
 *
 * This is the only header a user includes.  See docs/api.md.
 */
#ifndef ARENA_H
#define ARENA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ARENA_API __attribute__((visibility("default")))
#else
#define ARENA_API
#endif

#define ARENA_VERSION_MAJOR 0
#define ARENA_VERSION_MINOR 1

#define ARENA_SMALL_MAX   512u            /* largest request served from pools */
#define ARENA_NUM_CLASSES 32u             /* size classes 16, 32, ..., 512     */
#define ARENA_POOL_SIZE   4096u
#define ARENA_ARENA_SIZE  (256u * 1024u)

/* Allocation.  All returned pointers are 16-byte aligned.  On failure they
 * return NULL with errno = ENOMEM and the allocator stays usable. */
ARENA_API void  *arena_alloc(size_t size);            /* size 0 -> a 16-byte block */
ARENA_API void   arena_free(void *p);                  /* NULL: no-op; any size     */
ARENA_API void  *arena_calloc(size_t n, size_t size);  /* n*size overflow -> NULL   */
ARENA_API void  *arena_realloc(void *p, size_t size);  /* p NULL -> alloc           */
ARENA_API size_t arena_usable_size(const void *p);     /* NULL -> 0                 */

/* Give back to the OS everything that is free right now: cached empty
 * arenas, empty pools inside live arenas, and the calling thread's empty
 * pools.  Returns the number of bytes given back.  (libarena's malloc_trim.) */
ARENA_API size_t arena_release(void);

/* The background purger (off by default): a thread that gives back memory
 * that stayed free for delay_ms, so an idle process returns what it held.
 * Returns 0, EINVAL for delay_ms 0, or EAGAIN if the thread cannot start;
 * a second call changes the delay.  ARENA_PURGER=1 starts it when the
 * library is loaded (delay ARENA_PURGE_DELAY_MS, default 1000).  A child
 * of fork() has no purger until it starts one. */
ARENA_API int arena_purger_start(unsigned delay_ms);
ARENA_API void arena_purger_stop(void);

/* Memory limits.  Counted: the bytes of arenas libarena has mapped, plus
 * the large blocks it has handed out.  0 means no limit.
 *   hard_bytes  an allocation that would take the count above it returns
 *               NULL with errno = ENOMEM (after libarena gave back what it
 *               holds free); nothing else changes, and allocation works
 *               again as soon as memory is freed.
 *   soft_bytes  when an allocation takes the count above it, libarena
 *               gives back what it holds free (as arena_release does); if
 *               the count is still above, it calls on_soft(count, arg)
 *               once per crossing, outside any lock (on_soft may allocate).
 * Returns 0, or EINVAL when hard_bytes is not 0 and soft_bytes is above it.
 * ARENA_LIMIT=hard[,soft] (e.g. 2G,1536M) sets them at start-up. */
ARENA_API int arena_set_limit(size_t soft_bytes, size_t hard_bytes,
                              void (*on_soft)(size_t bytes, void *arg), void *arg);

/* Choose where arenas come from: "mmap" (default) or "brk" (the legacy
 * break-based backend, kept to show the old failure).  Must be called before
 * the first allocation.  Returns 0, EINVAL for an unknown name, or EBUSY once
 * the allocator has started.  The environment variable ARENA_BACKEND does the
 * same at first use. */
ARENA_API int arena_set_backend(const char *name);

/* Counters.  Every figure is a snapshot; the identities below hold for a
 * snapshot taken while no other thread allocates:
 *   arenas_live  = arenas_reserved - arenas_released
 *   bytes_mapped = arenas_live * ARENA_ARENA_SIZE
 *   pools_total  = arenas_live * 64
 *                = pools_used + pools_full + pools_empty + pools_large + pools_free
 *   pools_free   = pools_free_dirty + pools_free_purged
 *   blocks_live  = sum of blocks_live_class[]
 *   bytes_live   = sum of blocks_live_class[c] * (c + 1) * 16
 *
 * The structure starts with `size`, which the caller sets to
 * sizeof(struct arena_stats): a library with more counters than the
 * caller's header knows writes only the first `size` bytes, so programs
 * built against an older header keep working. */
struct arena_stats {
    size_t size;                        /* set by the caller                  */
    const char *backend;                /* "mmap", "brk", or a test backend   */

    uint64_t arenas_reserved;           /* taken from the backend, ever       */
    uint64_t arenas_released;           /* given back to the backend, ever    */
    uint64_t arenas_live;               /* held now                           */
    uint64_t arenas_empty;              /* held now with no pool in use       */
    uint64_t bytes_mapped;              /* arenas_live * 256 KiB              */
    uint64_t bytes_mapped_peak;         /* highest bytes_mapped seen          */
    uint64_t bytes_metadata;            /* descriptors, registry, heaps       */
    uint64_t bytes_resident;            /* an estimate: pools in use and dirty
                                           free pools, 4 KiB each (pages
                                           libarena has had touched and has
                                           not given back)                   */

    uint64_t pools_total;               /* arenas_live * 64                   */
    uint64_t pools_used;                /* held by a heap, some blocks live,
                                           some free                         */
    uint64_t pools_full;                /* held by a heap, no block free      */
    uint64_t pools_empty;               /* held by a heap, no block live      */
    uint64_t pools_large;               /* in a user heap's large block       */
    uint64_t pools_free;                /* in an arena, held by no heap       */
    uint64_t pools_free_dirty;          /*   ... pages may still be resident  */
    uint64_t pools_free_purged;         /*   ... pages given back (madvise)
                                           or never touched                  */
    uint64_t pools_purged;              /* pool purges done, ever             */
    uint64_t bytes_purged;              /* bytes purged, ever                 */

    uint64_t blocks_live;               /* small blocks handed out now        */
    uint64_t bytes_live;                /* their size-class bytes             */
    uint64_t blocks_live_class[ARENA_NUM_CLASSES];

    uint64_t blocks_cached;             /* freed blocks in thread caches      */
    uint64_t large_live;                /* large (> 512 B) blocks live now,
                                           from the system allocator        */
    uint64_t large_bytes;               /* their usable bytes                 */
    uint64_t heap_large_live;           /* large blocks of user heaps (whole
                                           pages in their arenas)           */

    uint64_t calls_mmap;                /* system calls for memory, ever:     */
    uint64_t calls_munmap;              /*   the backend's and libarena's own */
    uint64_t calls_brk;                 /*   metadata's; brk and sbrk         */
    uint64_t calls_madvise;
    uint64_t reserve_failures;          /* arena reservations that failed     */

    uint64_t heaps_live;                /* thread heaps in use                */
    uint64_t heaps_abandoned;           /* heaps whose thread exited, ever    */
    uint64_t heaps_reused;              /* dead heaps a new thread took, ever */
    uint64_t heaps_adopted;             /* dead heaps merged into a live one  */
    uint64_t heaps_user;                /* heaps made by arena_heap_new, live */
    uint64_t pools_borrowed;            /* pools a heap took from another
                                           heap's arena when no arena could
                                           be reserved, ever                 */
    uint64_t arenas_moved;              /* partly used arenas a heap took over
                                           from a heap holding many free
                                           pools, instead of a new one, ever */
    uint64_t locks_global;              /* times allocation took the global
                                           lock (arenas in or out, heaps
                                           made, reused, adopted or ended)   */

    uint64_t limit_hard, limit_soft;    /* the limits set (0: none)           */
    uint64_t limit_counted;             /* what the limits apply to: arena
                                           bytes mapped + large_bytes        */
    uint64_t limit_refused;             /* allocations the hard limit refused */
    uint64_t limit_soft_calls;          /* soft-limit callbacks made          */
};

ARENA_API void arena_get_stats(struct arena_stats *out);

/* One size class, as data.  Sums over the classes match arena_get_stats
 * taken at the same moment: blocks_live, bytes_live, blocks_cached, and
 * pools_full + pools_partial = pools_used + pools_full + pools_empty. */
struct arena_class_stats {
    size_t size;                        /* set by the caller (see above)      */
    uint32_t block_size;                /* 16 .. 512                          */
    uint64_t pools_full;                /* pools in use with no block free    */
    uint64_t pools_partial;             /* pools in use with a block free     */
    uint64_t blocks_live;               /* handed out and not freed (blocks in
                                           thread caches are not live)      */
    uint64_t bytes_live;                /* blocks_live * block_size           */
    uint64_t blocks_free;               /* free blocks inside pools in use    */
    uint64_t blocks_cached;             /* blocks held in thread caches       */
    uint64_t bytes_resident;            /* pools in use * 4 KiB               */
    uint64_t pools_purged;              /* pools of this class purged after
                                           they came back, ever             */
    uint64_t occupancy[8];              /* pools in use by the share of their
                                           blocks handed out (thread caches
                                           included): 0-12.5 %, ..., 87.5-100 % */
};

/* Fills out[0..n) with the first n classes, in class order, and returns
 * the number of classes (ARENA_NUM_CLASSES).  The caller sets out[0].size
 * to sizeof(struct arena_class_stats) (the stride of its array) and each
 * out[i].size likewise. */
ARENA_API size_t arena_get_class_stats(struct arena_class_stats *out, size_t n);

/* The counters in the Prometheus text exposition format (metrics named
 * libarena_*, labels backend="mmap|brk" and, per class, class="<block
 * size>").  Returns 0, or -1 with errno set. */
ARENA_API int arena_write_metrics(FILE *out);

/* Every live arena in address order with its 64 pools, as JSON:
 *   {"backend": "mmap", "arenas": [{"base": "0x7f...", "pools": [
 *     {"state": "used", "block_size": 48, "live": 17}, ...]}, ...]}
 * state: free-dirty, free-purged, used, current, full, orphan (a pool of a
 * heap whose thread exited), large (a user heap's large block; block_size
 * is its size in bytes).  live counts as blocks_live does.  Returns 0, or
 * -1 with errno set. */
ARENA_API int arena_write_heap_map(FILE *out);

/* Heaps with a lifetime: objects of one request, connection or tenant,
 * freed all at once.  A heap's blocks come from pools (and, for blocks
 * above 512 bytes, runs of whole 4 KiB pages) that belong to that heap
 * alone.  One thread at a time allocates from a given heap; arena_free,
 * arena_realloc and arena_usable_size accept a heap's blocks from any
 * thread.  arena_heap_destroy frees every block of the heap at once,
 * without visiting them, and gives the heap's memory back to the OS; it
 * may be called from any thread, once no thread uses the heap.  A free
 * into a destroyed heap is a caller error (the checked build names it).
 * Allocation failures return NULL with errno = ENOMEM (EINVAL for a NULL
 * heap). */
struct arena_heap;

ARENA_API struct arena_heap *arena_heap_new(void);
ARENA_API void *arena_heap_alloc(struct arena_heap *h, size_t size);
ARENA_API void *arena_heap_calloc(struct arena_heap *h, size_t n, size_t size);
/* p must be NULL or a block of h; the block stays in h. */
ARENA_API void *arena_heap_realloc(struct arena_heap *h, void *p, size_t size);
ARENA_API void arena_heap_destroy(struct arena_heap *h);

struct arena_heap_stats {
    size_t size;                        /* set by the caller: sizeof(struct
                                           arena_heap_stats); fields beyond
                                           it are not written             */
    uint64_t blocks_live;               /* blocks handed out and not freed  */
    uint64_t bytes_live;                /* their bytes: size class, or whole
                                           pages for large blocks          */
    uint64_t large_live;                /* of which large (> 512 B) blocks  */
    uint64_t pools;                     /* 4 KiB pools the heap holds       */
    uint64_t arenas;                    /* arenas it holds (huge blocks'
                                           reservations counted in arenas) */
    uint64_t bytes_mapped;              /* arenas * 256 KiB                 */
};
ARENA_API void arena_heap_get_stats(const struct arena_heap *h, struct arena_heap_stats *out);

/* A readable report of arena_get_stats().  ARENA_STATS=1 prints it to stderr
 * at exit. */
ARENA_API void arena_print_stats(FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* ARENA_H */
