/*
 * libarena internals shared by the core files.  Not installed.
 *
 * Layers, top to bottom (a file calls only files below it):
 *
 *   api.c       public entry points and process start-up; the fast paths
 *   stats.c     arena_get_stats / arena_print_stats (reads heaps, arenas)
 *   purger.c    the optional background purger thread
 *   heap.c      heaps: thread cache, class lists, refill, flush, remote
 *               frees, thread exit, adoption of dead heaps, fork
 *   pool.c      one pool: its state machine, carving, free lists, counts
 *   arena.c     arenas: a heap's arena set (fullest first, purge) and the
 *               process-wide part (backend, empty-arena cache)
 *   hold.c      how much free memory recent demand justifies keeping
 *   registry.c  address -> size class (fast path) and -> arena (slow paths)
 *   backend/    the OS contract (backend.h): mmap.c, brk.c
 *   meta.c      metadata memory (descriptors, heaps, registry leaves)
 *   options.c   ARENA_* environment variables, read once
 *   fatal.c     report a misuse and abort
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
#define AR_INLINE inline __attribute__((always_inline))
#define ar_likely(x) __builtin_expect(!!(x), 1)
#define ar_unlikely(x) __builtin_expect(!!(x), 0)
#define AR_TLS __thread __attribute__((tls_model("initial-exec")))
#define AR_RELAXED memory_order_relaxed

/* An empty asm telling the compiler that x may have changed, so that it
 * addresses memory through x again instead of keeping a computed address
 * in a register: one instruction less for gcc on the fast paths.  It emits
 * no instruction. */
#define ar_reload(x) __asm__("" : "+r"(x))

/* A thread-cache slot.  Only the owner writes it; the census reads other
 * threads' slots, so they are relaxed atomics (plain moves on x86-64 and
 * arm64: no cost on the fast paths). */
typedef _Atomic(void *) ar_slot;

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
 * (size - 1) >> 4; size 0 is served as class 0.  The fast paths and the
 * registry use the "map index" m = c + 1 instead, so that 0 can mean
 * "not a pool a thread cache may take": (size + 15) >> 4 is m for sizes
 * 1..512 and 0 for size 0. */
static inline unsigned ar_class_of(size_t size)
{
    return size == 0 ? 0 : (unsigned)((size - 1) >> AR_QUANTUM_SHIFT);
}
static inline size_t ar_class_size(unsigned c)
{
    return (size_t)(c + 1) << AR_QUANTUM_SHIFT;
}
static inline unsigned ar_class_blocks(unsigned c)
{
    return (unsigned)(AR_POOL_SIZE / ar_class_size(c));
}

/* fatal.c: print "libarena: ..." to stderr without allocating, then abort.
 * The bottom of the stack: every layer may call it. */
AR_HIDDEN _Noreturn void ar_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Invariants named in docs/design.md, asserted in the checked build. */
#if ARENA_CHECKED
#define AR_ASSERT(cond, ...)                                                   \
    do {                                                                       \
        if (ar_unlikely(!(cond)))                                              \
            ar_fatal("libarena: invariant violated (" __FILE__ "): " __VA_ARGS__); \
    } while (0)
#else
#define AR_ASSERT(cond, ...) ((void)0)
#endif

/* ======================================================================
 * options.c
 * ====================================================================== */

enum { AR_PURGE_AUTO, AR_PURGE_FIXED, AR_PURGE_EAGER, AR_PURGE_OFF };
#define AR_AUTO UINT32_MAX

struct ar_options {
    int purge;                          /* AR_PURGE_*                       */
    unsigned purge_pools;               /* AUTO: the floor; FIXED: budget   */
    unsigned arena_cache;               /* empty arenas kept, or AR_AUTO    */
    unsigned decay_ms;                  /* the learned hold halves this often */
    unsigned tcache_bytes;              /* thread cache per class, 0: off   */
    unsigned purger_delay_ms;           /* ARENA_PURGE_DELAY_MS             */
    bool purger;                        /* ARENA_PURGER=1                   */
    bool print_stats;                   /* ARENA_STATS=1                    */
    const char *backend;                /* ARENA_BACKEND or NULL            */
    const char *limit;                  /* ARENA_LIMIT or NULL              */
    bool limit_bad;                     /* ... and it does not parse        */
    size_t limit_hard, limit_soft;
};
extern struct ar_options ar_options;
AR_HIDDEN void ar_options_read(void);

/* ======================================================================
 * hold.c: the demand that justifies keeping free memory
 * ====================================================================== */

/* Counts units (pools, or arenas) of free memory.  `given` is what was
 * given back to the OS recently; when units must then come fresh from the
 * OS again (a purged pool refaulted, an arena mapped again) while `given`
 * is non-zero, that was a mistake: `learned` grows by as many units, and
 * from then on that much free memory is kept.  Both halve every
 * ar_options.decay_ms without new mistakes. */
struct ar_hold {
    uint32_t learned;
    uint32_t given;
    uint64_t stamp;                     /* ar_now_ms() of the last halving  */
};
AR_HIDDEN uint64_t ar_now_ms(void);     /* coarse monotonic clock           */
AR_HIDDEN void ar_hold_given(struct ar_hold *h, uint32_t n);
AR_HIDDEN void ar_hold_fresh(struct ar_hold *h, uint32_t n);
AR_HIDDEN uint32_t ar_hold_keep(struct ar_hold *h, uint32_t floor);
/* Tests: replace the clock (NULL restores it). */
AR_HIDDEN void ar_clock_override(uint64_t (*now_ms)(void));

/* ======================================================================
 * limit.c: the memory limits and what they count
 * ====================================================================== */

AR_HIDDEN int ar_limit_set(size_t soft, size_t hard, void (*on_soft)(size_t, void *), void *arg);
AR_HIDDEN bool ar_limit_charge(bool large, uint64_t bytes);   /* false: refused */
AR_HIDDEN void ar_limit_credit(bool large, uint64_t bytes);
AR_HIDDEN void ar_limit_large_got(uint64_t charged, uint64_t usable);
AR_HIDDEN bool ar_limit_hard_set(void);
AR_HIDDEN bool ar_limit_soft_due(void);
AR_HIDDEN void ar_limit_soft_call(void);
AR_HIDDEN void ar_limit_counts(struct arena_stats *st);

/* ======================================================================
 * meta.c: zeroed metadata memory, never unmapped (global lock held)
 * ====================================================================== */

AR_HIDDEN void *ar_meta_alloc(size_t size);   /* 64-byte aligned pieces    */
AR_HIDDEN void *ar_meta_page(void);           /* one 4 KiB page            */
AR_HIDDEN void ar_meta_purge_pages(void **pages, unsigned n); /* give back (read 0) */
AR_HIDDEN void ar_meta_unpurge(void *page);
AR_HIDDEN uint64_t ar_meta_bytes(void);       /* mapped and not purged      */
AR_HIDDEN void ar_meta_calls(uint64_t *mmaps, uint64_t *madvises);
AR_HIDDEN bool ar_meta_contains(const void *p);

/* ======================================================================
 * Descriptors
 * ====================================================================== */

struct ar_heap;
struct ar_arenas;

/* Pool states (see docs/design.md, "pool state machine").
 *   FREE    in its arena's free mask, held by no heap
 *   CURRENT the head of its heap's class list, the pool refills take from;
 *           `used` counts one extra, the heap's hold
 *   USED    on its heap's class list behind the head
 *   FULL    on its heap's full list: nothing free, nothing left to carve
 *   LARGE   the first pool of a run holding one large block of a user heap
 *           (nblocks: the run's length in pools)
 *   TAIL    the other pools of such a run
 * A pool whose heap has no thread (a dead heap) keeps its state; the heap
 * map calls it an orphan. */
enum { AR_POOL_FREE, AR_POOL_CURRENT, AR_POOL_USED, AR_POOL_FULL, AR_POOL_LARGE, AR_POOL_TAIL };

/* A FULL pool's `used` is stored minus AR_FULL_BIAS (negative as int32_t),
 * so a free catches "was full" and "now empty" with one signed test. */
#define AR_FULL_BIAS ((uint32_t)1 << 30)

/* Pool descriptor: one cache line, outside the pool's memory, so all 4096
 * bytes of a pool hold blocks.  An arena's 64 descriptors fill one page. */
struct ar_pool {
    alignas(64) void *free;             /* owner: local free list (links
                                           encoded, see pool.c)             */
    _Atomic uint32_t used;              /* blocks handed out (thread caches
                                           included) and not back in this
                                           pool; +1 hold while CURRENT;
                                           -AR_FULL_BIAS while FULL.  Only
                                           the owner writes; stats read     */
    uint16_t nblocks;                   /* 4096 / class size                */
    uint16_t carved;                    /* blocks carved so far (bump)      */
    uint8_t cls;                        /* size class while not FREE; set
                                           with the set's lock held          */
    _Atomic uint8_t state;              /* AR_POOL_*; owner writes          */
    _Atomic uint32_t remote_count;      /* blocks on the remote list        */
    _Atomic(struct ar_heap *) owner;    /* NULL while FREE                  */
    _Atomic uintptr_t remote;           /* remote-free list (links encoded) */
    struct ar_pool *prev, *next;        /* heap class list or full list     */
    struct ar_arena *arena;
};
_Static_assert(sizeof(struct ar_pool) == 64, "pool descriptor is a cache line");
_Static_assert(sizeof(struct ar_pool) * AR_POOLS == AR_POOL_SIZE,
               "an arena's pool descriptors fill one page");

/* Arena header (metadata).  Masks: a FREE pool is in free_mask and in at
 * most one of dirty_mask (its pages may be resident) and purged_mask (given
 * back with the backend's purge); a free pool in neither was never touched.
 * young_mask: returned since the purger last looked.  All of it is written
 * with the owning set's lock held (or the global lock while the arena is
 * in the global cache). */
struct ar_arena {
    struct ar_pool *pools;              /* 64 descriptors, one page         */
    uintptr_t base;                     /* 256 KiB aligned                  */
    _Atomic(struct ar_arenas *) set;    /* owning heap's set; NULL: cached  */
    uint64_t free_mask, dirty_mask, purged_mask, young_mask;
    unsigned nfree;                     /* popcount(free_mask)              */
    bool on_dirty;
    bool cached;                        /* in the global cache (ar_lock)    */
    bool destroyed;                     /* the checked build's header for the
                                           ranges of destroyed heaps         */
    unsigned huge;                      /* a huge block's reservation: its
                                           size in arenas (0: an arena)      */
    bool desc_resident;                 /* released, its descriptor page not
                                           purged yet (ar_lock)              */
    bool young;                         /* cached since the purger's last look */
    struct ar_arena *prev, *next;       /* set bucket, or global cache      */
    struct ar_arena *dirty_prev, *dirty_next; /* set's arenas with dirty pools */
#if ARENA_CHECKED
    _Atomic uint64_t ck_live[AR_POOLS][4];    /* blocks handed out (check.c) */
#endif
};

static inline unsigned ar_pool_index(const struct ar_pool *p)
{
    return (unsigned)((uintptr_t)p / sizeof(struct ar_pool)) & (AR_POOLS - 1);
}
static inline char *ar_pool_base(const struct ar_pool *p)
{
    return (char *)(p->arena->base + ((uintptr_t)ar_pool_index(p) << AR_POOL_SHIFT));
}
static inline unsigned ar_pool_index_of(const void *ptr)
{
    return (unsigned)((uintptr_t)ptr >> AR_POOL_SHIFT) & (AR_POOLS - 1);
}
static inline struct ar_pool *ar_pool_of(struct ar_arena *a, const void *ptr)
{
    return &a->pools[ar_pool_index_of(ptr)];
}

/* ======================================================================
 * registry.c
 * ====================================================================== */

/* Two levels over the 47-bit user address space: the top level (bits
 * 35..46) leads to leaves that cover 32 GiB each.  A leaf has one byte per
 * pool, the pool's map index (class + 1, or 0), and one pointer per arena.
 * Every top-level entry leads to a leaf: unused ones to a shared leaf of
 * zeros, so a lookup of any address needs no NULL test.
 *
 * ar_reg_top[i] holds the address of leaf i's map bytes minus (i << 23):
 * then ar_reg_top[a >> 35] + (a >> 12) is the map byte of the pool at a,
 * with no mask on the pool number.  Bits above 46 are not masked either:
 * the kernel maps nothing there for a process that does not ask for it
 * with an explicit hint, and no allocator hands out such an address; the
 * checked build rejects one before looking it up. */
#define AR_REG_LEAF_SHIFT 35
#define AR_REG_TOP (1u << (47 - AR_REG_LEAF_SHIFT))                 /* 4096 */
#define AR_REG_LEAF_POOLS (1u << (AR_REG_LEAF_SHIFT - AR_POOL_SHIFT))
#define AR_REG_LEAF_ARENAS (1u << (AR_REG_LEAF_SHIFT - AR_ARENA_SHIFT))

struct ar_reg_leaf {
    _Atomic uint8_t map[AR_REG_LEAF_POOLS];           /* 8 MiB virtual */
    _Atomic(struct ar_arena *) arena[AR_REG_LEAF_ARENAS]; /* 1 MiB virtual */
};
extern _Atomic uintptr_t ar_reg_top[AR_REG_TOP];

static inline struct ar_reg_leaf *ar_reg_leaf_of(uintptr_t a)
{
    uintptr_t i = (a >> AR_REG_LEAF_SHIFT) & (AR_REG_TOP - 1);
    return (struct ar_reg_leaf *)(atomic_load_explicit(&ar_reg_top[i], memory_order_acquire) +
                                  (i << (AR_REG_LEAF_SHIFT - AR_POOL_SHIFT)));
}

/* The map index of the pool holding p: class + 1 for a pool a thread
 * cache may take, 0 for anything else (no pool of ours, a free pool, a
 * pool of a user heap).  Never reads the memory p points to. */
static inline size_t ar_registry_map(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t biased =
        atomic_load_explicit(&ar_reg_top[(a >> AR_REG_LEAF_SHIFT) & (AR_REG_TOP - 1)], AR_RELAXED);
    return atomic_load_explicit((_Atomic uint8_t *)(biased + (a >> AR_POOL_SHIFT)), AR_RELAXED);
}

/* The arena holding p, or NULL if p is not in one of ours. */
static inline struct ar_arena *ar_registry_arena(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return atomic_load_explicit(
        &ar_reg_leaf_of(a)->arena[(a >> AR_ARENA_SHIFT) & (AR_REG_LEAF_ARENAS - 1)],
        memory_order_acquire);
}

AR_HIDDEN int ar_registry_set_arena(uintptr_t base, struct ar_arena *a); /* global lock */
AR_HIDDEN void ar_registry_set_map(const struct ar_pool *p, unsigned m);
/* Every registered arena header in address order (a huge block's once);
 * the caller holds the global lock. */
AR_HIDDEN void ar_registry_walk(void (*fn)(struct ar_arena *a, void *arg), void *arg);

/* ======================================================================
 * arena.c
 * ====================================================================== */

/* A heap's arenas.  Usable arenas sit in buckets by free pools (1..64);
 * pools come from the arena with the fewest.  The lock is per heap: the
 * owner takes it when a pool comes or goes (slow paths only), the purger,
 * stats and fork take it from outside.  Never hold it while taking the
 * global lock. */
struct ar_arenas {
    pthread_mutex_t lock;
    struct ar_arenas *next_set;         /* every set, for borrowing (ar_lock) */
    struct ar_arena *buckets[AR_POOLS + 1];
    uint64_t bucket_bits[2];
    struct ar_arena *dirty_head, *dirty_tail;  /* oldest dirty first      */
    unsigned arenas, empty_arenas, pools_in_use, dirty_pools;
    struct ar_hold pools_hold;          /* free resident pools worth keeping */
    struct ar_arena *huge;              /* huge blocks' reservations (user heaps) */
    unsigned huge_arenas;
    bool user;                          /* a user heap's: never lent from   */
};

/* Global lock: arena reservation and release, the empty-arena cache,
 * registry arena entries, the heap list, stats.  Taken rarely. */
extern pthread_mutex_t ar_lock;

AR_HIDDEN void ar_arenas_init(struct ar_arenas *s);                /* ar_lock held */
/* A pool for class cls, already marked in use (USED, owner) under the
 * set's lock; the owner initialises the rest (ar_pool_init). */
AR_HIDDEN struct ar_pool *ar_arenas_acquire(struct ar_arenas *s, unsigned cls,
                                            struct ar_heap *owner);
AR_HIDDEN void ar_arenas_return(struct ar_pool *p);                /* p's owner */
AR_HIDDEN void ar_arenas_give_back(struct ar_arenas *s, bool all); /* purge + release */
AR_HIDDEN void ar_arenas_purge_idle(struct ar_arenas *s);          /* purger */
AR_HIDDEN void ar_arenas_move(struct ar_arenas *dst, struct ar_arenas *src);
AR_HIDDEN bool ar_arenas_has_free(struct ar_arenas *s);   /* a pool to take? */
/* Large blocks of user heaps: k (1..64) contiguous pools of one arena, the
 * first LARGE, the others TAIL; or a huge reservation of whole arenas. */
AR_HIDDEN struct ar_pool *ar_arenas_take_run(struct ar_arenas *s, unsigned k,
                                             struct ar_heap *owner);
AR_HIDDEN void ar_arenas_return_run(struct ar_pool *head);            /* any thread */
AR_HIDDEN void *ar_arenas_take_huge(struct ar_arenas *s, size_t bytes, struct ar_heap *owner);
AR_HIDDEN void ar_arenas_return_huge(struct ar_arena *a);             /* any thread */
AR_HIDDEN void ar_arenas_release_all(struct ar_arenas *s);  /* a destroyed heap */
struct arena_heap_stats;
AR_HIDDEN void ar_arenas_owner_stats(struct ar_arenas *s, const struct ar_heap *owner,
                                     struct arena_heap_stats *st);
/* What a stats snapshot gathers: the totals and the classes together, so
 * that they add up. */
struct ar_counts {
    struct arena_stats st;
    struct arena_class_stats cls[AR_NCLASS];
};
AR_HIDDEN void ar_arenas_count(struct ar_arenas *s, struct ar_counts *k); /* lock held */
AR_HIDDEN void ar_arenas_validate(struct ar_arenas *s);                     /* lock held */

AR_HIDDEN int ar_arena_start(void);     /* first use: pick the backend      */
AR_HIDDEN const char *ar_arena_backend_name(void);
AR_HIDDEN void ar_arena_validate_cache(void);                   /* global lock  */
AR_HIDDEN void ar_arena_cache_trim(bool all, bool idle_only);   /* global cache */
AR_HIDDEN void ar_arena_counts(struct ar_counts *k);            /* global lock  */

/* A census: every arena in address order with its pools, as they are at
 * one moment (taken under the global lock and each set's lock in turn). */
enum { AR_CENSUS_FREE_DIRTY = 16, AR_CENSUS_FREE_PURGED, AR_CENSUS_HUGE };
struct ar_census_pool {
    const struct ar_heap *owner;
    uint32_t live;                      /* handed out (caches included)     */
    uint32_t bytes;                     /* block size, or a large block's   */
    uint8_t state;                      /* AR_POOL_* or AR_CENSUS_*          */
    uint8_t cls;
};
struct ar_census_arena {
    uintptr_t base;
    struct ar_census_pool pool[AR_POOLS];
};
/* Fills up to max arenas; returns how many there are (more than max: call
 * again with room for them). */
AR_HIDDEN size_t ar_census(struct ar_census_arena *out, size_t max);
AR_HIDDEN uint64_t ar_arena_bytes_given_back(void);

/* ======================================================================
 * pool.c
 * ====================================================================== */

AR_HIDDEN void ar_pool_init(struct ar_pool *p, unsigned cls, struct ar_heap *owner);
AR_HIDDEN void ar_pool_make_current(struct ar_pool *p);
AR_HIDDEN void ar_pool_drop_current(struct ar_pool *p);
AR_HIDDEN void ar_pool_make_used(struct ar_pool *p);
AR_HIDDEN void ar_pool_make_full(struct ar_pool *p);
AR_HIDDEN void ar_pool_unfull(struct ar_pool *p);
struct ar_pool;
AR_HIDDEN unsigned ar_pool_take(struct ar_pool *p, ar_slot *end, unsigned max);
AR_HIDDEN void *ar_pool_take_one(struct ar_pool *p);
AR_HIDDEN uint32_t ar_pool_push_local(struct ar_pool *p, void *const *b, unsigned n);
AR_HIDDEN bool ar_pool_push_remote(struct ar_pool *p, void *b);
AR_HIDDEN unsigned ar_pool_collect(struct ar_pool *p);
AR_HIDDEN uint32_t ar_pool_live(const struct ar_pool *p);
AR_HIDDEN bool ar_pool_is_empty(const struct ar_pool *p);
AR_HIDDEN void ar_pool_validate(struct ar_pool *p);
AR_HIDDEN void ar_pool_secret_init(void);

static inline uint32_t ar_used_get(const struct ar_pool *p)
{
    return atomic_load_explicit(&((struct ar_pool *)p)->used, AR_RELAXED);
}
static inline uint8_t ar_state_get(const struct ar_pool *p)
{
    return atomic_load_explicit(&((struct ar_pool *)p)->state, AR_RELAXED);
}

/* ======================================================================
 * heap.c
 * ====================================================================== */

/* Heap life cycle, in `state` (written under ar_lock):
 *   LIVE     a thread allocates from it
 *   DEAD     its thread exited; its pools wait for the next new thread, or
 *            for a live thread that frees into them
 *   ADOPTING being merged into a live heap
 *   LOST     a fork() child's copy of another thread's heap: never touched
 *   DESTROYED a user heap after arena_heap_destroy, waiting for reuse */
enum { AR_HEAP_LIVE, AR_HEAP_DEAD, AR_HEAP_ADOPTING, AR_HEAP_LOST, AR_HEAP_DESTROYED };

/* The thread cache: per map index m, a stack of free blocks in `slots`,
 * growing down.  top[m] is the newest entry; the slot at end[m] holds NULL,
 * so a pop sees NULL when the stack is empty, and a push finds no room when
 * top[m] == room[m].  Entry 0 is the "not ours" index: top[0] == room[0]
 * points at a NULL slot, so both fast paths fail into the slow path.  No
 * link is ever written into a cached block. */
#define AR_NMAP (AR_NCLASS + 1)

struct ar_heap {
    _Atomic(ar_slot *) top[AR_NMAP];    /* owner writes, stats read         */
    ar_slot *room[AR_NMAP];             /* push stops here                  */
    ar_slot *end[AR_NMAP];              /* the NULL slot (fixed)            */
    uint16_t cap[AR_NMAP];              /* entries when on                  */
    /* Owner only below this point, except where noted. */
    struct ar_pool *lists[AR_NCLASS];   /* head: the current pool           */
    struct ar_pool *tails[AR_NCLASS];
    struct ar_pool *full[AR_NCLASS];
    _Atomic uint8_t remote_hint[AR_NCLASS]; /* remote frees came in          */
    unsigned ticks;                     /* free slow paths since the last look */
    uint64_t tidy_ms;                   /* ar_now_ms() of the last look     */
    struct ar_arenas arenas;            /* its own lock                     */
    _Atomic int state;                  /* AR_HEAP_*                        */
    bool user;                          /* made by arena_heap_new: its pools
                                           are mapped 0 (no thread cache)    */
    unsigned pools;                     /* pools on its lists               */
    _Atomic(struct ar_heap *) next_all; /* every heap ever made             */
    struct ar_heap *next_free;          /* dead heaps (ar_lock)             */
};

/* The metadata sizes quoted in docs/design.md ("Metadata and its
 * overhead"); change both together. */
#if !ARENA_CHECKED
_Static_assert(sizeof(struct ar_arena) == 104, "arena header size in docs/design.md");
#endif
_Static_assert(sizeof(struct ar_heap) == 2360, "heap size in docs/design.md");
_Static_assert(sizeof(struct ar_reg_leaf) == 9u << 20, "registry leaf size in docs/design.md");

extern struct ar_heap ar_heap_none;
extern AR_TLS struct ar_heap *ar_tls_heap;
extern _Atomic(struct ar_heap *) ar_all_heaps;

AR_HIDDEN struct ar_heap *ar_heap_get(void);      /* create or reuse; NULL: ENOMEM */
AR_HIDDEN void *ar_heap_refill(struct ar_heap *h, unsigned c);
AR_HIDDEN void ar_heap_free_full(struct ar_heap *h, unsigned m, void *ptr);
AR_HIDDEN void ar_heap_free_block(struct ar_heap *h, struct ar_arena *a, void *ptr);
AR_HIDDEN void ar_heap_release(struct ar_heap *h);
AR_HIDDEN void ar_heaps_give_back(void);
AR_HIDDEN void ar_heaps_purge_idle(void);
AR_HIDDEN void ar_heaps_stats(struct ar_counts *k);      /* global lock held */
/* Every block in every thread cache (relaxed reads: a moment old while the
 * owners work), for the census. */
AR_HIDDEN void ar_heaps_cached(void (*fn)(void *block, void *arg), void *arg);
AR_HIDDEN bool ar_heap_is_dead(const struct ar_heap *h);
AR_HIDDEN void ar_heap_validate(struct ar_heap *h);
AR_HIDDEN void ar_heap_start(void);
AR_HIDDEN struct ar_heap *ar_heap_new_user(void);
AR_HIDDEN void ar_heap_destroy_user(struct ar_heap *h);
AR_HIDDEN void *ar_heap_alloc_large(struct ar_heap *h, size_t size);
AR_HIDDEN void ar_heap_user_stats(struct ar_heap *h, struct arena_heap_stats *st);

/* Pop a block from cache m, or NULL (the fast path of arena_alloc and of
 * a user heap's allocation).  ar_reload(m): see above. */
static inline void *ar_cache_pop(struct ar_heap *h, size_t m)
{
    ar_slot *t = atomic_load_explicit(&h->top[m], AR_RELAXED);
    void *b = atomic_load_explicit(t, AR_RELAXED);
    if (ar_likely(b != NULL)) {
#if ARENA_VALGRIND
        atomic_store_explicit(t, NULL, AR_RELAXED); /* memcheck must not find it there */
#endif
        ar_reload(m);
        atomic_store_explicit(&h->top[m], t + 1, AR_RELAXED);
    }
    return b;
}

/* ======================================================================
 * purger.c, api.c, sys.c
 * ====================================================================== */

AR_HIDDEN void ar_purger_from_options(void);
AR_HIDDEN void ar_start(void);          /* api.c: first use                 */
AR_HIDDEN void *ar_limit_poll(void *p); /* api.c: after growth, the soft limit */
extern _Atomic bool ar_started;

/* Validate every invariant docs/design.md lists that can be checked from
 * this thread: its own heap's lists and cache, every arena set, the global
 * cache.  Aborts with a message on the first violation.  Called by the
 * checked build at thread exit and by the stress tests and the fuzzer. */
AR_HIDDEN void ar_validate(void);

AR_HIDDEN void *ar_sys_malloc(size_t size);
AR_HIDDEN void ar_sys_free(void *p);
AR_HIDDEN void *ar_sys_realloc(void *p, size_t size);
AR_HIDDEN size_t ar_sys_usable_size(void *p);
extern _Atomic int64_t ar_large_live;

#endif /* AR_INTERNAL_H */
