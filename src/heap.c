/*
 * Thread heaps: the slow paths behind arena_alloc / arena_free.
 *
 * Each thread allocates from its own heap, reached through an initial-exec
 * thread-local pointer.  Per size class a heap has a list of pools with
 * free blocks (its head is the "current pool" the fast path pops from) and
 * a list of full pools.  Only the owner thread touches these lists, so the
 * same-thread paths take no lock and do no atomic read-modify-write.
 *
 * Key invariants:
 *   - a pool on lists[c] other than the head has a free or carvable block,
 *     or blocks on its remote list;
 *   - the head may be empty (used == 0): the heap keeps its current pool so
 *     that a loop that allocates and frees one block does not hand the pool
 *     back and forth; any other pool that empties goes back to its arena;
 *   - a pool on full[c] has no free and no carvable block; frees into it
 *     move it back to the tail of lists[c] (same thread) or are noticed
 *     through remote_hint[c] (other threads) when lists[c] runs dry.
 *
 * Remote frees push onto the pool's atomic list with one compare-and-swap.
 * When a thread exits, its heap is drained: remote frees are collected,
 * empty pools go back to their arenas, and pools with live blocks become
 * orphans, whose frees then take the global lock.  The heap descriptor is
 * reused by the next new thread.  After fork() the child marks the heaps of
 * the threads it no longer has dead without touching them (fork_child).
 */
#include <errno.h>
#include <pthread.h>

#include "check.h"
#include "internal.h"

#define NONE4 &ar_pool_none, &ar_pool_none, &ar_pool_none, &ar_pool_none
#define NONE32 NONE4, NONE4, NONE4, NONE4, NONE4, NONE4, NONE4, NONE4
_Static_assert(AR_NCLASS == 32, "NONE32 initialises every class");

struct ar_heap ar_heap_none = { .lists = { NONE32 } };
AR_TLS struct ar_heap *ar_tls_heap = &ar_heap_none;

static struct ar_heap *all_heaps, *free_heaps;
static uint64_t heaps_live, heaps_abandoned;
static pthread_key_t heap_key;
static pthread_once_t heap_key_once = PTHREAD_ONCE_INIT;

/* ---- class and full lists (owner only) -------------------------------- */

/* The head of lists[c] is the heap's current pool and carries one extra
 * count in `used`, the heap's hold: a loop that allocates and frees one
 * block never sees the count reach zero, so the fast path does not fall
 * into the slow path to decide whether to keep the pool. */
static void take_hold(struct ar_pool *p)
{
    ar_used_set(p, ar_used_get(p) + 1);
    ar_state_set(p, AR_POOL_CURRENT);
}

static void drop_hold(struct ar_pool *p)
{
    ar_used_set(p, ar_used_get(p) - 1);
    ar_state_set(p, AR_POOL_USED);
}

/* Append p; on an empty list it becomes the current pool. */
static void list_push_tail(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    p->next = NULL;
    if (h->lists[c] == &ar_pool_none) {
        p->prev = NULL;
        h->lists[c] = p;
        take_hold(p);
    } else {
        p->prev = h->tails[c];
        h->tails[c]->next = p;
        ar_state_set(p, AR_POOL_USED);
    }
    h->tails[c] = p;
}

/* Unlink p; if it was the current pool, its hold passes to the next. */
static void list_remove(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    if (p->prev) {
        p->prev->next = p->next;
    } else {
        drop_hold(p);
        h->lists[c] = p->next ? p->next : &ar_pool_none;
        if (p->next)
            take_hold(p->next);
    }
    if (p->next)
        p->next->prev = p->prev;
    else
        h->tails[c] = p->prev;
    p->prev = p->next = NULL;
}

static void full_push(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    p->prev = NULL;
    p->next = h->full[c];
    if (p->next)
        p->next->prev = p;
    h->full[c] = p;
    ar_used_set(p, ar_used_get(p) - AR_FULL_BIAS);
    ar_state_set(p, AR_POOL_FULL);
}

static void full_remove(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        h->full[c] = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    ar_used_set(p, ar_used_get(p) + AR_FULL_BIAS);
    ar_state_set(p, AR_POOL_USED);
}

static void pool_give_back(struct ar_pool *p)
{
    pthread_mutex_lock(&ar_lock);
    ar_arena_pool_return(p);
    pthread_mutex_unlock(&ar_lock);
}

/* ---- heap life cycle -------------------------------------------------- */

static void heap_exit(void *arg);

static void make_key(void)
{
    pthread_key_create(&heap_key, heap_exit);
}

/* Blocks of class c a thread cache keeps: ARENA_TCACHE bytes' worth,
 * at least 4 unless the cache is off. */
static uint32_t cache_limit(unsigned c)
{
    if (ar_options.tcache_bytes == 0)
        return 0;
    size_t n = ar_options.tcache_bytes / ar_class_size(c);
    return n < 4 ? 4 : n > 1024 ? 1024 : (uint32_t)n;
}

static void cache_flush(struct ar_heap *h, unsigned c, uint32_t keep);

static struct ar_heap *heap_create(void)
{
    if (!atomic_load_explicit(&ar_started, memory_order_acquire))
        ar_init_slow();
    ar_heap_atfork_register();
    pthread_mutex_lock(&ar_lock);
    struct ar_heap *h = free_heaps;
    if (h != NULL) {
        free_heaps = h->next_free;
    } else if ((h = ar_meta_alloc(sizeof(*h))) != NULL) {
        h->next_all = all_heaps;
        all_heaps = h;
    }
    if (h != NULL) {
        for (unsigned c = 0; c <= AR_NCLASS; c++) {
            h->cache[c].head = NULL;
            atomic_store_explicit(&h->cache[c].count, 0, AR_RELAXED);
            h->cache[c].limit = 0;      /* on at the first allocation of c */
        }
        for (unsigned c = 0; c < AR_NCLASS; c++) {
            h->lists[c] = &ar_pool_none;
            h->tails[c] = NULL;
            h->full[c] = NULL;
            atomic_store_explicit(&h->remote_hint[c], 0, AR_RELAXED);
        }
        h->next_free = NULL;
        h->live = true;
        heaps_live++;
    }
    pthread_mutex_unlock(&ar_lock);
    if (h == NULL)
        return NULL;
    /* Set the thread pointer first: pthread_setspecific may allocate, and
     * that allocation must find this heap, not make another. */
    ar_tls_heap = h;
    pthread_setspecific(heap_key, h);
    return h;
}

/* A pool of an abandoned heap: take in its remote frees and mark its
 * remote list so later frees take the lock; give it back if nothing in it
 * is live, otherwise it becomes an orphan.  ar_lock held. */
static void abandon_pool(struct ar_pool *p)
{
    ar_pool_collect(p, AR_REMOTE_ORPHAN);
    if (ar_state_get(p) == AR_POOL_FULL)
        ar_used_set(p, ar_used_get(p) + AR_FULL_BIAS);
    p->prev = p->next = NULL;
    if (ar_used_get(p) == 0) {
        ar_arena_pool_return(p);
    } else {
        ar_state_set(p, AR_POOL_ORPHAN);
        atomic_store_explicit(&p->owner, NULL, AR_RELAXED);
    }
}

/* Drain h, whose thread is gone or going.  ar_lock held. */
static void heap_abandon_locked(struct ar_heap *h)
{
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        struct ar_pool *p, *next;
        if (h->lists[c] != &ar_pool_none)
            drop_hold(h->lists[c]);
        for (p = h->lists[c]; p != &ar_pool_none && p != NULL; p = next) {
            next = p->next;
            abandon_pool(p);
        }
        for (p = h->full[c]; p != NULL; p = next) {
            next = p->next;
            abandon_pool(p);
        }
        h->lists[c] = &ar_pool_none;
        h->full[c] = NULL;
        h->tails[c] = NULL;
    }
    h->live = false;
    h->next_free = free_heaps;
    free_heaps = h;
    heaps_live--;
    heaps_abandoned++;
}

static void flush_all(struct ar_heap *h)
{
    for (unsigned c = 0; c < AR_NCLASS; c++)
        cache_flush(h, c, 0);
}

static void heap_exit(void *arg)
{
    struct ar_heap *h = arg;
    flush_all(h);
    ar_tls_heap = &ar_heap_none;
    pthread_mutex_lock(&ar_lock);
    heap_abandon_locked(h);
    pthread_mutex_unlock(&ar_lock);
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&ar_lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&ar_lock);
}

/* The child has one thread.  The other threads' heaps may have been in the
 * middle of an update when fork() copied them, so the child does not touch
 * them: they are marked dead and never reused.  Their blocks can still be
 * freed in the child (they go on their pools' remote lists); their pools
 * are not reused.  The arena layer is consistent: ar_lock was held across
 * fork(). */
static void fork_child(void)
{
    for (struct ar_heap *h = all_heaps; h != NULL; h = h->next_all)
        if (h->live && h != ar_tls_heap) {
            h->live = false;
            heaps_live--;
            heaps_abandoned++;
        }
    pthread_mutex_unlock(&ar_lock);
}

/* Once per process, before any thread can hold ar_lock: the fork handlers
 * (so a fork() never copies ar_lock locked) and the key whose destructor
 * drains a heap at thread exit (so no pthread_once is in progress when a
 * fork() happens).  Run by a constructor when the library is loaded, and
 * by the first allocation if that comes earlier (a malloc replacement can
 * be called before constructors run, while the process is single-threaded). */
void ar_heap_atfork_register(void)
{
    static atomic_flag done = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&done))
        return;
    pthread_once(&heap_key_once, make_key);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

__attribute__((constructor)) static void heap_library_init(void)
{
    ar_heap_atfork_register();
}

/* ---- allocation slow path --------------------------------------------- */

/* lists[c] ran dry: take back FULL pools that other threads freed into. */
static void sweep_remote(struct ar_heap *h, unsigned c)
{
    if (atomic_load_explicit(&h->remote_hint[c], AR_RELAXED) == 0)
        return;
    atomic_store_explicit(&h->remote_hint[c], 0, AR_RELAXED);
    struct ar_pool *p = h->full[c], *next;
    for (; p != NULL; p = next) {
        next = p->next;
        if (atomic_load_explicit(&p->remote, AR_RELAXED) == 0 || ar_pool_collect(p, 0) == 0)
            continue;
        full_remove(h, c, p);
        if (ar_used_get(p) == 0 && h->lists[c] != &ar_pool_none)
            pool_give_back(p);
        else
            list_push_tail(h, c, p);
    }
}

static void *heap_alloc(struct ar_heap *h, unsigned c)
{
    /* The thread cache of a class turns on when the thread first allocates
     * from it.  A thread that only frees blocks of c (a consumer fed by
     * other threads) gives them straight back to their pools instead of
     * holding them, where their owners could not reuse them. */
    if (ar_unlikely(h->cache[c].limit == 0))
        h->cache[c].limit = cache_limit(c);
    for (;;) {
        struct ar_pool *p = h->lists[c];
        if (p != &ar_pool_none) {
            if (ar_pool_refill(p)) {
                struct ar_block *b = p->free;
                if ((uintptr_t)b - (uintptr_t)ar_pool_base(p) >= AR_POOL_SIZE)
                    ar_fatal("libarena: corrupted free list: pool %p (size class %zu) "
                             "points to %p, outside it\n",
                             (void *)ar_pool_base(p), ar_class_size(c), (void *)b);
                p->free = ar_next_get(b);
                ar_used_set(p, ar_used_get(p) + 1);
                ar_on_alloc(p, b);
                return b;
            }
            list_remove(h, c, p);
            full_push(h, c, p);
            continue;
        }
        sweep_remote(h, c);
        if (h->lists[c] != &ar_pool_none)
            continue;
        pthread_mutex_lock(&ar_lock);
        p = ar_arena_pool_acquire();
        if (p != NULL)
            ar_pool_init(p, c, h);
        pthread_mutex_unlock(&ar_lock);
        if (p == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        ar_on_pool_acquire(ar_pool_base(p));
        list_push_tail(h, c, p);            /* the list was empty: p is current */
    }
}

void *ar_alloc_slow(size_t size)
{
    if (size > AR_SMALL_MAX)
        return ar_sys_malloc(size);
    struct ar_heap *h = ar_tls_heap;
    if (ar_unlikely(h == &ar_heap_none) && (h = heap_create()) == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    return heap_alloc(h, ar_class_of(size));
}

/* ---- free slow paths -------------------------------------------------- */

/* Same thread, after the push: the pool was full (its count carried
 * AR_FULL_BIAS), or is now empty. */
void ar_free_local_slow(struct ar_heap *h, struct ar_pool *p, void *ptr)
{
    unsigned c = p->cls;
    if (ar_state_get(p) == AR_POOL_FULL) {
        full_remove(h, c, p);
        list_push_tail(h, c, p);
    } else if ((int32_t)ar_used_get(p) < 0 || ar_state_get(p) == AR_POOL_CURRENT) {
        /* More frees than blocks handed out: the current pool's count went
         * through its hold, or another pool's went below zero. */
        ar_fatal("libarena: double free of %p (size class %zu)\n", ptr, ar_class_size(c));
    }
    if (ar_used_get(p) == 0) {              /* never the current pool: it has the hold */
        list_remove(h, c, p);
        pool_give_back(p);
    }
}

static void free_orphan(struct ar_pool *p, struct ar_block *b)
{
    pthread_mutex_lock(&ar_lock);
    ar_next_set(b, p->free);
    p->free = b;
    uint32_t used = ar_used_get(p) - 1;
    ar_used_set(p, used);
    if ((int32_t)used < 0)
        ar_fatal("libarena: double free of %p (size class %zu)\n", (void *)b,
                 ar_class_size(p->cls));
    if (used == 0)
        ar_arena_pool_return(p);
    pthread_mutex_unlock(&ar_lock);
}

/* A block of a pool this thread does not own: push it on the pool's
 * remote list (one compare-and-swap), or free it under the lock if the
 * pool is an orphan. */
static void free_remote(struct ar_pool *p, void *ptr)
{
    struct ar_block *b = ptr;
    struct ar_heap *owner = atomic_load_explicit(&p->owner, memory_order_acquire);
    /* Read before the push: once the block is on the remote list the owner
     * may collect it and the pool may be given back and taken again. */
    unsigned cls = p->cls;
    uintptr_t old = atomic_load_explicit(&p->remote, AR_RELAXED);
    if (owner == NULL && !(old & AR_REMOTE_ORPHAN))
        ar_fatal("libarena: invalid free of %p: not an allocated block (its pool is not in use)\n",
                 ptr);
    atomic_fetch_add_explicit(&p->remote_count, 1, AR_RELAXED);
    do {
        if (old & AR_REMOTE_ORPHAN) {
            atomic_fetch_sub_explicit(&p->remote_count, 1, AR_RELAXED);
            free_orphan(p, b);
            return;
        }
        ar_next_set(b, (struct ar_block *)old);
    } while (!atomic_compare_exchange_weak_explicit(&p->remote, &old, (uintptr_t)b,
                                                    memory_order_release, AR_RELAXED));
    if (old == 0 && owner != NULL)
        atomic_fetch_add_explicit(&owner->remote_hint[cls], 1, AR_RELAXED);
}

/* Give a freed block (hooks already run) back to its pool: pushed on the
 * pool's free list if h owns it, else on its remote list. */
void ar_free_to_pool(struct ar_heap *h, struct ar_arena *a, void *ptr)
{
    struct ar_pool *p = ar_pool_of(a, ptr);
    if (atomic_load_explicit(&p->owner, AR_RELAXED) != h) {
        free_remote(p, ptr);
        return;
    }
    uint32_t used = ar_used_get(p) - 1;
    ar_next_set(ptr, p->free);
    p->free = ptr;
    ar_used_set(p, used);
    if (ar_unlikely((int32_t)used <= 0))  /* was full, or now empty */
        ar_free_local_slow(h, p, ptr);
}

/* Give the cache's blocks back to their pools until `keep` are left. */
static void cache_flush(struct ar_heap *h, unsigned c, uint32_t keep)
{
    struct ar_tcache *e = &h->cache[c];
    uint32_t n = atomic_load_explicit(&e->count, AR_RELAXED);
    while (n > keep) {
        struct ar_block *b = e->head;
        e->head = ar_next_get(b);
        n--;
        ar_free_to_pool(h, ar_registry_lookup(b), b);
    }
    atomic_store_explicit(&e->count, n, AR_RELAXED);
}

/* The free fast path could not push on the thread cache: the pool is not
 * in use, the thread has no heap, its cache of class c is off (the thread
 * has not allocated from c, or ARENA_TCACHE=0), or it is full. */
void ar_free_cache_slow(struct ar_arena *a, unsigned c, void *ptr)
{
    if (c >= AR_NCLASS)
        ar_fatal("libarena: invalid free of %p: not an allocated block (its pool is not in use)\n",
                 ptr);
    ar_on_free(a, c, ptr);
    struct ar_heap *h = ar_tls_heap;
    struct ar_tcache *e = &h->cache[c];
    if (e->limit == 0) {
        ar_free_to_pool(h, a, ptr);
        return;
    }
    uint32_t n = atomic_load_explicit(&e->count, AR_RELAXED);
    if (n >= e->limit) {
        cache_flush(h, c, e->limit / 2);
        n = atomic_load_explicit(&e->count, AR_RELAXED);
    }
    ar_next_set(ptr, e->head);
    e->head = ptr;
    atomic_store_explicit(&e->count, n + 1, AR_RELAXED);
}

/* ---- explicit release and stats --------------------------------------- */

/* Hand back the calling thread's empty pools, taking in remote frees. */
void ar_heap_release_empty(struct ar_heap *h)
{
    if (h == &ar_heap_none)
        return;
    flush_all(h);
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        atomic_store_explicit(&h->remote_hint[c], 1, AR_RELAXED);
        sweep_remote(h, c);
        struct ar_pool *p = h->lists[c], *next;
        for (; p != &ar_pool_none && p != NULL; p = next) {
            next = p->next;
            ar_pool_collect(p, 0);
            if (ar_used_get(p) == (h->lists[c] == p ? 1u : 0u)) {
                list_remove(h, c, p);
                pool_give_back(p);
            }
        }
    }
}

/* ar_lock held.  Blocks in thread caches are free: take them out of the
 * live counts that ar_arena_counts() took from the pools. */
void ar_heaps_stats(struct arena_stats *st)
{
    st->heaps_live = heaps_live;
    st->heaps_abandoned = heaps_abandoned;
    for (struct ar_heap *h = all_heaps; h != NULL; h = h->next_all) {
        if (!h->live)
            continue;
        for (unsigned c = 0; c < AR_NCLASS; c++) {
            uint64_t n = atomic_load_explicit(&h->cache[c].count, AR_RELAXED);
            n = n < st->blocks_live_class[c] ? n : st->blocks_live_class[c];
            st->blocks_live_class[c] -= n;
            st->blocks_cached += n;
        }
    }
    st->blocks_live = st->bytes_live = 0;
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        st->blocks_live += st->blocks_live_class[c];
        st->bytes_live += st->blocks_live_class[c] * ar_class_size(c);
    }
}
