/*
 * Arenas: where pools come from and where they go back.
 *
 * Everything here runs with ar_lock held.  Usable arenas sit in buckets by
 * their number of free pools (1..64); a new pool is taken from the arena
 * with the fewest free pools, so lightly used arenas drain and can be given
 * back.  A bitmap of non-empty buckets makes the choice O(1), and moving an
 * arena between buckets is O(1).
 *
 * A pool that comes back is "dirty" (its pages may be resident) until it
 * is purged.  Purge policy (ARENA_PURGE, backends with AUTO_PURGE only):
 *   eager      purge each pool as it comes back
 *   N          when more than max(N, in-use pools / 128) free pools are
 *              dirty, purge the oldest down to half of that, contiguous
 *              pools in one call (default 256, i.e. 1 MiB)
 *   off        only arena_release() purges
 * An arena whose 64 pools are all back is empty: up to ARENA_ARENA_CACHE of
 * them are kept, the others are released through the backend.  A backend
 * without RELEASE_ANY (brk) may refuse; the arena then stays, empty, for
 * reuse, and is tried again when another arena is released.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "internal.h"

pthread_mutex_t ar_lock = PTHREAD_MUTEX_INITIALIZER;
_Atomic bool ar_started;

static const struct ar_backend *backend = &ar_backend_mmap;

#define NBUCKETS (AR_POOLS + 1)
static struct ar_arena *buckets[NBUCKETS];
static uint64_t bucket_bits[2];             /* bit n: buckets[n] non-empty */
static struct ar_arena *arena_free_descs;   /* recycled descriptors         */
static struct ar_arena *dirty_list;         /* arenas with dirty free pools */

static unsigned dirty_pools;                /* free pools not purged         */
static unsigned pools_in_use;               /* held by heaps or orphans      */
static unsigned empty_arenas;               /* live arenas with nfree == 64  */
static uint64_t arenas_reserved, arenas_released, arenas_live;
static uint64_t bytes_peak, reserve_failures;
static uint64_t pools_purged, bytes_purged;

/* ---- selection of the backend ----------------------------------------- */

int ar_backend_use(const struct ar_backend *b)
{
    int rc = 0;
    pthread_mutex_lock(&ar_lock);
    if (atomic_load(&ar_started))
        rc = EBUSY;
    else
        backend = b;
    pthread_mutex_unlock(&ar_lock);
    return rc;
}

int arena_set_backend(const char *name)
{
    if (name != NULL && strcmp(name, "mmap") == 0)
        return ar_backend_use(&ar_backend_mmap);
    if (name != NULL && strcmp(name, "brk") == 0)
        return ar_backend_use(&ar_backend_brk);
    return EINVAL;
}

/* ---- buckets ---------------------------------------------------------- */

static void bucket_insert(struct ar_arena *a)
{
    unsigned n = a->nfree;
    a->prev = NULL;
    a->next = buckets[n];
    if (a->next)
        a->next->prev = a;
    buckets[n] = a;
    bucket_bits[n >> 6] |= (uint64_t)1 << (n & 63);
}

static void bucket_remove(struct ar_arena *a)
{
    unsigned n = a->nfree;
    if (a->prev)
        a->prev->next = a->next;
    else
        buckets[n] = a->next;
    if (a->next)
        a->next->prev = a->prev;
    if (buckets[n] == NULL)
        bucket_bits[n >> 6] &= ~((uint64_t)1 << (n & 63));
}

/* The usable arena with the fewest free pools, or NULL. */
static struct ar_arena *fullest_arena(void)
{
    uint64_t partial = bucket_bits[0] & ~(uint64_t)1;     /* 1..63 free */
    if (partial)
        return buckets[__builtin_ctzll(partial)];
    return buckets[AR_POOLS];                             /* empty ones  */
}

/* ---- dirty pools and purge -------------------------------------------- */

/* Arenas with dirty free pools, oldest first: a purge starts with the
 * pools that have been free longest, which are the least likely to be
 * taken again soon. */
static struct ar_arena *dirty_tail;

static void dirty_link(struct ar_arena *a)
{
    if (a->on_dirty)
        return;
    a->on_dirty = true;
    a->dirty_next = NULL;
    a->dirty_prev = dirty_tail;
    if (dirty_tail)
        dirty_tail->dirty_next = a;
    else
        dirty_list = a;
    dirty_tail = a;
}

static void dirty_unlink(struct ar_arena *a)
{
    if (!a->on_dirty)
        return;
    a->on_dirty = false;
    if (a->dirty_prev)
        a->dirty_prev->dirty_next = a->dirty_next;
    else
        dirty_list = a->dirty_next;
    if (a->dirty_next)
        a->dirty_next->dirty_prev = a->dirty_prev;
    else
        dirty_tail = a->dirty_prev;
}

/* Purge the dirty pools in mask, contiguous runs in one call each. */
static void purge_mask(struct ar_arena *a, uint64_t mask)
{
    mask &= a->dirty_mask;
    while (mask) {
        unsigned first = (unsigned)__builtin_ctzll(mask);
        uint64_t run = mask >> first;
        unsigned len = ~run ? (unsigned)__builtin_ctzll(~run) : 64 - first;
        size_t size = (size_t)len << AR_POOL_SHIFT;
        if (backend->purge == NULL ||
            backend->purge(backend->ctx, (void *)(a->base + ((uintptr_t)first << AR_POOL_SHIFT)),
                           size) != 0)
            break;
        uint64_t bits = (len == 64 ? ~(uint64_t)0 : (((uint64_t)1 << len) - 1)) << first;
        mask &= ~bits;
        a->dirty_mask &= ~bits;
        dirty_pools -= len;
        pools_purged += len;
        bytes_purged += size;
    }
    if (a->dirty_mask == 0)
        dirty_unlink(a);
}

/* Dirty free pools allowed: ARENA_PURGE, or 1/128 of the pools in use if
 * that is more.  A process that holds 1 GiB may keep 8 MiB of free pages
 * resident, so a workload that frees and reallocates in rounds does not
 * purge pages it is about to fault in again; once little is in use the
 * budget is back to ARENA_PURGE (1 MiB by default). */
static unsigned purge_budget(void)
{
    unsigned prop = pools_in_use / 128;
    return prop > ar_options.purge_threshold ? prop : ar_options.purge_threshold;
}

/* Purge the oldest dirty pools until at most `keep` are left. */
static void purge_dirty_down_to(unsigned keep)
{
    struct ar_arena *a = dirty_list, *next;
    for (; a != NULL && dirty_pools > keep; a = next) {
        next = a->dirty_next;
        purge_mask(a, a->dirty_mask);
    }
}

/* ---- arenas ----------------------------------------------------------- */

static struct ar_arena *arena_new(void)
{
    struct ar_arena *a = arena_free_descs;
    if (a != NULL) {
        arena_free_descs = a->next;
        ar_meta_unpurge(a->pools);
    } else {
        a = ar_meta_alloc(sizeof(*a));
        if (a == NULL)
            return NULL;
        if ((a->pools = ar_meta_page()) == NULL)
            return NULL;                /* a is lost: metadata is exhausted */
    }
    void *base = backend->reserve(backend->ctx, AR_ARENA_SIZE, AR_ARENA_SIZE);
    if (base == NULL || ((uintptr_t)base & (AR_ARENA_SIZE - 1)) != 0 ||
        ar_registry_set((uintptr_t)base, a) != 0) {
        if (base != NULL)
            backend->release(backend->ctx, base, AR_ARENA_SIZE);
        reserve_failures++;
        ar_meta_purge(a->pools);
        a->next = arena_free_descs;
        arena_free_descs = a;
        return NULL;
    }
    struct ar_pool *pools = a->pools;
    memset(a, 0, sizeof(*a));
    a->pools = pools;
    memset(pools, 0, AR_POOLS * sizeof(*pools));
    for (unsigned i = 0; i < AR_POOLS; i++) {
        pools[i].arena = a;
        atomic_store_explicit(&a->cls[i], AR_CLS_NONE, AR_RELAXED);
    }
    a->base = (uintptr_t)base;
    a->free_mask = ~(uint64_t)0;
    a->dirty_mask = 0;                  /* fresh pages are not resident */
    a->nfree = AR_POOLS;
    empty_arenas++;
    arenas_reserved++;
    arenas_live++;
    if (arenas_live * AR_ARENA_SIZE > bytes_peak)
        bytes_peak = arenas_live * AR_ARENA_SIZE;
    bucket_insert(a);
    return a;
}

/* Try to give an empty arena back.  Returns true if it went; its header
 * is kept for reuse and its page of pool descriptors purged. */
static bool arena_give_back(struct ar_arena *a)
{
    ar_on_arena_release((void *)a->base);
    if (backend->release(backend->ctx, (void *)a->base, AR_ARENA_SIZE) != 0)
        return false;
    bucket_remove(a);
    dirty_pools -= (unsigned)__builtin_popcountll(a->dirty_mask);
    dirty_unlink(a);
    ar_registry_set(a->base, NULL);
    ar_meta_purge(a->pools);
    empty_arenas--;
    arenas_released++;
    arenas_live--;
    a->next = arena_free_descs;
    arena_free_descs = a;
    return true;
}

/* Release empty arenas beyond keep.  For brk, releasing the top one may
 * uncover the next, so go round while something was released. */
static void trim_empty_arenas(unsigned keep)
{
    bool progress = true;
    while (empty_arenas > keep && progress) {
        progress = false;
        struct ar_arena *a = buckets[AR_POOLS], *next;
        for (; a != NULL && empty_arenas > keep; a = next) {
            next = a->next;
            if (arena_give_back(a))
                progress = true;
        }
    }
}

struct ar_pool *ar_arena_pool_acquire(void)
{
    struct ar_arena *a = fullest_arena();
    if (a == NULL && (a = arena_new()) == NULL)
        return NULL;
    uint64_t pick = a->free_mask & a->dirty_mask;       /* resident first */
    if (pick == 0)
        pick = a->free_mask;
    unsigned i = (unsigned)__builtin_ctzll(pick);
    uint64_t bit = (uint64_t)1 << i;
    bucket_remove(a);
    if (a->nfree == AR_POOLS)
        empty_arenas--;
    a->free_mask &= ~bit;
    a->nfree--;
    pools_in_use++;
    if (a->dirty_mask & bit) {
        a->dirty_mask &= ~bit;
        dirty_pools--;
        if (a->dirty_mask == 0)
            dirty_unlink(a);
    }
    bucket_insert(a);
    return &a->pools[i];
}

void ar_arena_pool_return(struct ar_pool *p)
{
    struct ar_arena *a = ar_pool_arena(p);
    uint64_t bit = (uint64_t)1 << ar_pool_index(p);
    ar_state_set(p, AR_POOL_FREE);
    atomic_store_explicit(&a->cls[ar_pool_index(p)], AR_CLS_NONE, AR_RELAXED);
    atomic_store_explicit(&p->owner, NULL, AR_RELAXED);
    atomic_store_explicit(&p->remote, 0, AR_RELAXED);
    bucket_remove(a);
    a->free_mask |= bit;
    a->dirty_mask |= bit;
    a->nfree++;
    pools_in_use--;
    dirty_pools++;
    dirty_link(a);
    bucket_insert(a);
    if (a->nfree == AR_POOLS) {
        empty_arenas++;
        if (empty_arenas > ar_options.arena_cache) {
            uintptr_t base = a->base;
            if (arena_give_back(a))
                return;
            trim_empty_arenas(ar_options.arena_cache);  /* brk: others may go */
            if (ar_registry_lookup((void *)base) != a)
                return;                                  /* a went too */
        }
    }
    if (!(backend->flags & AR_BACKEND_AUTO_PURGE))
        return;
    if (ar_options.purge == AR_PURGE_EAGER)
        purge_mask(a, bit);
    else if (ar_options.purge == AR_PURGE_THRESHOLD && dirty_pools > purge_budget())
        purge_dirty_down_to(purge_budget() / 2);
}

uint64_t ar_arena_bytes_given_back(void)
{
    return arenas_released * AR_ARENA_SIZE + bytes_purged;
}

void ar_arena_release_all(void)
{
    trim_empty_arenas(0);
    purge_dirty_down_to(0);
}

void ar_arena_counts(struct arena_stats *st)
{
    st->backend = backend->name;
    st->arenas_reserved = arenas_reserved;
    st->arenas_released = arenas_released;
    st->arenas_live = arenas_live;
    st->arenas_empty = empty_arenas;
    st->bytes_mapped = arenas_live * AR_ARENA_SIZE;
    st->bytes_mapped_peak = bytes_peak;
    st->reserve_failures = reserve_failures;
    st->pools_total = arenas_live * AR_POOLS;
    st->pools_purged = pools_purged;
    st->bytes_purged = bytes_purged;
    /* Counted three ways on purpose, so the report's identity
     * free = dirty + purged checks the masks against the counters: nfree
     * is maintained by hand, the other two are read off the masks. */
    uint64_t nfree = 0, dirty = 0, purged = 0;
    for (unsigned n = 1; n < NBUCKETS; n++)
        for (struct ar_arena *a = buckets[n]; a; a = a->next) {
            nfree += a->nfree;
            dirty += (uint64_t)__builtin_popcountll(a->dirty_mask);
            purged += (uint64_t)__builtin_popcountll(a->free_mask & ~a->dirty_mask);
        }
    /* Pools held by heaps (or orphaned): classify by their counters.
     * cls is stable under ar_lock; used, state and remote_count are read
     * relaxed and may be a moment old if other threads are allocating. */
    for (unsigned n = 0; n < NBUCKETS; n++)
        for (struct ar_arena *a = buckets[n]; a; a = a->next)
            for (unsigned i = 0; i < AR_POOLS; i++) {
                if (a->free_mask & ((uint64_t)1 << i))
                    continue;
                struct ar_pool *p = &a->pools[i];
                uint32_t used = ar_used_get(p);
                if ((int32_t)used < 0)
                    used += AR_FULL_BIAS;
                if (ar_state_get(p) == AR_POOL_CURRENT)
                    used--;                         /* the heap's hold */
                uint32_t pending = atomic_load_explicit(&p->remote_count, AR_RELAXED);
                uint64_t live = used >= pending ? used - pending : 0;
                if (ar_state_get(p) == AR_POOL_FULL)
                    st->pools_full++;
                else if (used == 0)
                    st->pools_empty++;
                else
                    st->pools_used++;
                st->blocks_live_class[p->cls] += live;
            }
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        st->blocks_live += st->blocks_live_class[c];
        st->bytes_live += st->blocks_live_class[c] * ar_class_size(c);
    }
    st->pools_free = nfree;
    st->pools_free_dirty = dirty;
    st->pools_free_purged = purged;
    st->calls_mmap = ar_syscalls.mmap;
    st->calls_munmap = ar_syscalls.munmap;
    st->calls_brk = ar_syscalls.brk;
    st->calls_madvise = ar_syscalls.madvise;
}

/* ---- first use -------------------------------------------------------- */

static void print_stats_at_exit(void)
{
    arena_print_stats(stderr);
}

void ar_init_slow(void)
{
    bool first = false;
    pthread_mutex_lock(&ar_lock);
    if (!atomic_load_explicit(&ar_started, memory_order_relaxed)) {
        ar_options_read();
        if (ar_options.backend != NULL && backend == &ar_backend_mmap &&
            strcmp(ar_options.backend, "brk") == 0)
            backend = &ar_backend_brk;
        atomic_store_explicit(&ar_started, true, memory_order_release);
        first = true;
    }
    pthread_mutex_unlock(&ar_lock);
    if (!first)
        return;
    /* Outside the lock: these may allocate, and so come back to us. */
    if (ar_options.backend != NULL && strcmp(ar_options.backend, "brk") != 0 &&
        strcmp(ar_options.backend, "mmap") != 0)
        fprintf(stderr, "libarena: ARENA_BACKEND=%s is not mmap or brk; using %s\n",
                ar_options.backend, backend->name);
    ar_heap_atfork_register();
    if (ar_options.print_stats)
        atexit(print_stats_at_exit);
}
