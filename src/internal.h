/*
 * libarena internals shared by the core files.  Not installed.
 *
 *   api.c       public entry points; small requests -> heap, large -> sys
 *   heap.c      per-thread heaps: class lists, refill, remote frees, exit
 *   pool.c      carving blocks, remote-free collection
 *   arena.c     arena descriptors, fullest-first choice, purge, release
 *   registry.c  arena address -> descriptor (two loads)
 *   backend/    the OS contract (backend.h): mmap.c, brk.c
 *   meta.c      metadata memory (descriptors, heaps, registry leaves)
 *   stats.c     counters and the report
 *   options.c   ARENA_* environment variables, read once
 *   sys.c       the system allocator for large requests
 *
 * Identifiers with external linkage start with ar_ and are hidden from the
 * shared library's symbol table; the public API starts with arena_.
 */
#ifndef AR_INTERNAL_H
#define AR_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

#define AR_HIDDEN __attribute__((visibility("hidden")))
#define AR_NOINLINE __attribute__((noinline))
#define AR_COLD __attribute__((cold, noinline))
#define ar_likely(x) __builtin_expect(!!(x), 1)
#define ar_unlikely(x) __builtin_expect(!!(x), 0)
#define AR_TLS __thread __attribute__((tls_model("initial-exec")))

#define AR_QUANTUM_SHIFT 4
#define AR_QUANTUM (1u << AR_QUANTUM_SHIFT)          /* 16 */
#define AR_SMALL_MAX ARENA_SMALL_MAX                  /* 512 */
#define AR_NCLASS ARENA_NUM_CLASSES                   /* 32 */
#define AR_POOL_SHIFT 12
#define AR_POOL_SIZE ((size_t)1 << AR_POOL_SHIFT)      /* 4 KiB */
#define AR_ARENA_SHIFT 18
#define AR_ARENA_SIZE ((size_t)1 << AR_ARENA_SHIFT)    /* 256 KiB */
#define AR_POOLS ((unsigned)(AR_ARENA_SIZE / AR_POOL_SIZE)) /* 64 */

_Static_assert(AR_SMALL_MAX == AR_NCLASS * AR_QUANTUM, "classes cover 16..512");
_Static_assert(AR_POOL_SIZE == ARENA_POOL_SIZE, "pool size");
_Static_assert(AR_ARENA_SIZE == ARENA_ARENA_SIZE, "arena size");
_Static_assert(AR_POOLS == 64, "one 64-bit mask covers an arena's pools");

/* Size class c holds blocks of (c + 1) * 16 bytes.  Sizes 1..512 map to
 * (size - 1) >> 4; size 0 is served as class 0. */
static inline unsigned ar_class_of(size_t size)
{
    return size == 0 ? 0 : (unsigned)((size - 1) >> AR_QUANTUM_SHIFT);
}
static inline size_t ar_class_size(unsigned c)
{
    return (size_t)(c + 1) << AR_QUANTUM_SHIFT;
}

struct ar_block {
    struct ar_block *next;
};

/* Pool states (owner's view).  See docs/design.md, "pool state machine".
 *   FREE    in its arena's free mask, held by no heap
 *   USED    on its heap's class list, not the head; has a free block
 *   CURRENT the head of its heap's class list: the pool the fast path
 *           pops from; `used` counts one extra, the heap's hold, so it
 *           stays the current pool even when its last block is freed
 *   FULL    on its heap's full list: no free block and nothing left to carve
 *   ORPHAN  its heap's thread exited with blocks still live; frees take the
 *           global lock; it goes back to its arena when the last one is freed
 */
enum { AR_POOL_FREE, AR_POOL_USED, AR_POOL_CURRENT, AR_POOL_FULL, AR_POOL_ORPHAN };

/* Low bit of ar_pool.remote: the pool is an orphan, remote frees must take
 * the global lock instead of pushing.  Blocks are 16-aligned. */
#define AR_REMOTE_ORPHAN ((uintptr_t)1)

struct ar_heap;

/* Owner-only counter update: a relaxed load and store, no read-modify-write
 * instruction, so the fast path stays free of atomic operations while a
 * stats reader on another thread still reads a whole value. */
#define AR_RELAXED memory_order_relaxed
#define ar_used_get(p) atomic_load_explicit(&(p)->used, AR_RELAXED)
#define ar_used_set(p, v) atomic_store_explicit(&(p)->used, (v), AR_RELAXED)
/* A FULL pool's `used` is stored minus AR_FULL_BIAS, i.e. negative as an
 * int32_t, so the free fast path catches "this pool was full" and "this
 * pool is now empty" with one signed test: (int32_t)(used - 1) <= 0. */
#define AR_FULL_BIAS ((uint32_t)1 << 30)
#define ar_state_get(p) atomic_load_explicit(&(p)->state, AR_RELAXED)
#define ar_state_set(p, v) atomic_store_explicit(&(p)->state, (uint8_t)(v), AR_RELAXED)

/* Pool descriptor: one cache line, outside the pool's own memory, so all
 * 4096 bytes of a pool hold blocks and a purged pool loses nothing.  An
 * arena's 64 pool descriptors fill one page of metadata exactly; the
 * registry maps the arena's address to that page. */
struct ar_pool {
    alignas(64) struct ar_block *free;  /* owner-local free list           */
    _Atomic uint32_t used;              /* blocks handed out and not freed
                                           locally; only the owner (or the
                                           lock holder, for orphans) writes
                                           it, stats read it: relaxed     */
    uint16_t nblocks;                   /* capacity: 4096 / class size      */
    uint16_t carved;                    /* blocks carved so far (bump)      */
    uint8_t cls;                        /* set under ar_lock at acquire     */
    _Atomic uint8_t state;              /* AR_POOL_*; owner writes, relaxed;
                                           FULL <=> on the heap's full list */
    _Atomic uint32_t remote_count;      /* blocks on the remote list        */
    _Atomic(struct ar_heap *) owner;    /* NULL when FREE or ORPHAN         */
    _Atomic uintptr_t remote;           /* remote-free list | ORPHAN bit    */
    struct ar_pool *prev, *next;        /* heap class list or full list     */
    struct ar_arena *arena;             /* the arena header                 */
};
_Static_assert(sizeof(struct ar_pool) == 64, "pool descriptor is a cache line");
_Static_assert(sizeof(struct ar_pool) * AR_POOLS == AR_POOL_SIZE,
               "an arena's pool descriptors fill one page");

/* Arena header.  Its pool descriptors are a separate, page-aligned page of
 * metadata, which is purged when the arena is released, so an allocator
 * that has given its arenas back does not keep their descriptors resident. */
#define AR_CLS_NONE AR_NCLASS            /* class map entry of a free pool   */

struct ar_arena {
    /* Size class of each pool, AR_CLS_NONE while the pool is free: the
     * free fast path learns a block's class here, from one cache line per
     * arena, without touching the pool descriptor.  Written under ar_lock
     * when a pool is taken or given back, read without a lock. */
    alignas(64) _Atomic uint8_t cls[AR_POOLS];
    struct ar_pool *pools;              /* 64 descriptors, one page         */
    uintptr_t base;                     /* 256 KiB aligned                  */
    /* Below: written by the arena layer whenever a pool is taken or given
     * back; kept off the lines that frees from any thread read. */
    alignas(64) uint64_t free_mask;     /* pools held by no heap            */
    uint64_t dirty_mask;                /* free pools that may be resident  */
    unsigned nfree;                     /* popcount(free_mask)              */
    bool on_dirty;
    struct ar_arena *prev, *next;       /* bucket list (by nfree)           */
    struct ar_arena *dirty_prev, *dirty_next; /* arenas with dirty pools    */
#if ARENA_CHECKED
    _Atomic uint64_t ck_live[AR_POOLS][4];    /* blocks handed out (check.c) */
#endif
};

static inline unsigned ar_pool_index(const struct ar_pool *p)
{
    return (unsigned)((uintptr_t)p / sizeof(struct ar_pool)) & (AR_POOLS - 1);
}
static inline struct ar_arena *ar_pool_arena(struct ar_pool *p)
{
    return p->arena;
}
static inline char *ar_pool_base(struct ar_pool *p)
{
    return (char *)(p->arena->base + ((uintptr_t)ar_pool_index(p) << AR_POOL_SHIFT));
}
static inline unsigned ar_pool_index_of(const void *ptr)
{
    return (unsigned)((uintptr_t)ptr >> AR_POOL_SHIFT) & (AR_POOLS - 1);
}
/* The descriptor of the pool holding ptr, given its arena. */
static inline struct ar_pool *ar_pool_of(struct ar_arena *a, const void *ptr)
{
    return &a->pools[ar_pool_index_of(ptr)];
}

/* Thread heap.  lists[c] is the head of class c's list of pools with free
 * blocks (or &ar_pool_none).  Key invariant: every pool on lists[c] except
 * the head has at least one free or carvable block. */
/* Thread cache of one size class: blocks freed by this thread, handed out
 * again first (last in, first out).  `count` is written by the owner only
 * and read by stats (relaxed).  Past `limit` half the cache goes back to
 * the blocks' pools.  The extra entry cache[AR_CLS_NONE] has limit 0: a
 * free whose class map says "no pool here" lands on it and fails into the
 * slow path, which reports it. */
struct ar_tcache {
    struct ar_block *head;
    _Atomic uint32_t count;
    uint32_t limit;
};

struct ar_heap {
    struct ar_tcache cache[AR_NCLASS + 1];
    struct ar_pool *lists[AR_NCLASS];
    struct ar_pool *tails[AR_NCLASS];
    struct ar_pool *full[AR_NCLASS];
    _Atomic uint32_t remote_hint[AR_NCLASS]; /* remote frees into FULL pools */
    struct ar_heap *next_all;           /* every heap ever made             */
    struct ar_heap *next_free;          /* heaps free for reuse             */
    bool live;
};

/* The metadata sizes quoted in docs/design.md ("Metadata and its
 * overhead"); change both together. */
#if !ARENA_CHECKED
_Static_assert(sizeof(struct ar_arena) == 192, "arena header size in docs/design.md");
#endif
_Static_assert(sizeof(struct ar_heap) == 1448, "thread heap size in docs/design.md");

/* The empty list head and the heap of a thread that has not allocated yet:
 * both make the fast path fail into the slow path without a NULL test. */
extern struct ar_pool ar_pool_none;
extern struct ar_heap ar_heap_none;
extern AR_TLS struct ar_heap *ar_tls_heap;

/* Global lock: arenas, registry writes, orphans, heap list, stats merging. */
extern pthread_mutex_t ar_lock;

/* registry.c: covers the 48-bit user address space of x86-64 and arm64
 * Linux.  Bits above 47 are ignored: the kernel maps nothing there for a
 * process that does not ask for it with an explicit hint, so no block of
 * ours and no block of the system allocator lives there. */
#define AR_REG_LEAF_BITS 15
#define AR_REG_TOP_BITS (48 - AR_ARENA_SHIFT - AR_REG_LEAF_BITS)
#define AR_REG_MASK(bits) ((1u << (bits)) - 1)
extern _Atomic(_Atomic(struct ar_arena *) *) ar_registry_top[1u << AR_REG_TOP_BITS];

/* The arena holding p, or NULL if p is not in one of ours.  Reads only the
 * registry, never the memory p points to. */
static inline struct ar_arena *ar_registry_lookup(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    _Atomic(struct ar_arena *) *leaf = atomic_load_explicit(
        &ar_registry_top[(a >> (AR_ARENA_SHIFT + AR_REG_LEAF_BITS)) & AR_REG_MASK(AR_REG_TOP_BITS)],
        memory_order_acquire);
    if (ar_unlikely(leaf == NULL))
        return NULL;
    return atomic_load_explicit(&leaf[(a >> AR_ARENA_SHIFT) & AR_REG_MASK(AR_REG_LEAF_BITS)],
                                memory_order_relaxed);
}
AR_HIDDEN int ar_registry_set(uintptr_t base, struct ar_arena *a); /* lock held */

/* meta.c: zeroed metadata memory, never unmapped.  ar_meta_alloc gives
 * 64-byte aligned pieces, ar_meta_page one 4 KiB page; ar_meta_purge gives
 * a page's memory back to the OS (it reads as zero afterwards) and
 * ar_meta_unpurge accounts for its reuse. */
AR_HIDDEN void *ar_meta_alloc(size_t size);
AR_HIDDEN void *ar_meta_page(void);
AR_HIDDEN void ar_meta_purge(void *page);
AR_HIDDEN void ar_meta_unpurge(void *page);
extern uint64_t ar_meta_bytes;          /* metadata mapped and not purged  */
AR_HIDDEN bool ar_meta_contains(const void *p); /* checked build: bad frees */

/* options.c */
enum { AR_PURGE_OFF, AR_PURGE_EAGER, AR_PURGE_THRESHOLD };
struct ar_options {
    int purge;                          /* AR_PURGE_*                       */
    unsigned purge_threshold;           /* dirty free pools before a sweep  */
    unsigned arena_cache;               /* empty arenas kept                */
    unsigned tcache_bytes;              /* thread cache per class, 0: off   */
    bool print_stats;                   /* ARENA_STATS=1                    */
    const char *backend;                /* ARENA_BACKEND or NULL            */
};
extern struct ar_options ar_options;
AR_HIDDEN void ar_options_read(void);

/* arena.c (all with ar_lock held) */
AR_HIDDEN void ar_init_slow(void);      /* first use: options, backend     */
extern _Atomic bool ar_started;
AR_HIDDEN struct ar_pool *ar_arena_pool_acquire(void);
AR_HIDDEN void ar_arena_pool_return(struct ar_pool *p);
AR_HIDDEN void ar_arena_release_all(void);
AR_HIDDEN uint64_t ar_arena_bytes_given_back(void); /* ever: released + purged */
AR_HIDDEN void ar_arena_counts(struct arena_stats *st);

/* pool.c */
AR_HIDDEN void ar_pool_init(struct ar_pool *p, unsigned cls, struct ar_heap *h); /* lock held */
AR_HIDDEN bool ar_pool_refill(struct ar_pool *p); /* owner: collect, carve */
AR_HIDDEN unsigned ar_pool_collect(struct ar_pool *p, uintptr_t keep);

/* heap.c */
AR_HIDDEN void *ar_alloc_slow(size_t size);
AR_HIDDEN void ar_free_local_slow(struct ar_heap *h, struct ar_pool *p, void *ptr);
AR_HIDDEN void ar_free_cache_slow(struct ar_arena *a, unsigned c, void *ptr);
AR_HIDDEN void ar_free_to_pool(struct ar_heap *h, struct ar_arena *a, void *ptr);
AR_HIDDEN void ar_heap_release_empty(struct ar_heap *h);
AR_HIDDEN void ar_heaps_stats(struct arena_stats *st);
AR_HIDDEN void ar_heap_atfork_register(void);

/* stats.c: print "libarena: ..." to stderr without allocating, then abort. */
AR_HIDDEN _Noreturn void ar_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* sys.c: the system allocator behind large requests. */
AR_HIDDEN void *ar_sys_malloc(size_t size);
AR_HIDDEN void ar_sys_free(void *p);
AR_HIDDEN void *ar_sys_realloc(void *p, size_t size);
AR_HIDDEN size_t ar_sys_usable_size(void *p);
extern _Atomic int64_t ar_large_live;

#endif /* AR_INTERNAL_H */
