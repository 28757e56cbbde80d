/*
 * Heaps: the slow paths behind arena_alloc / arena_free, and the life of
 * a thread's heap.
 *
 * Each thread allocates from its own heap, reached through an initial-exec
 * thread-local pointer.  A heap has
 *   - a thread cache: per size class, a stack of free blocks in an array
 *     (top/room/end, see internal.h).  The fast paths pop and push there;
 *     no link is written into a cached block, so a write after free cannot
 *     poison it;
 *   - per size class a list of pools with blocks to hand out (its head is
 *     the "current pool" refills take from) and a list of full pools;
 *   - its own arenas (arena.c), behind a lock of its own.
 * Only the owner thread touches the cache and the lists, so the same-thread
 * paths take no lock and do no atomic read-modify-write.
 *
 * Refill (the cache of a class is empty): take half the cache's capacity
 * from the current pool (its free list, then its remote frees, then fresh
 * blocks carved straight into the cache), moving to the next pool, to full
 * pools that other threads freed into, or to a new pool as needed.
 * Flush (the cache is full): the oldest half goes back to its pools: the
 * owner's blocks on the pool's local list, other heaps' blocks on their
 * pool's atomic remote list (one compare-and-swap).
 *
 * Key invariants (ar_heap_validate):
 *   - a pool on lists[c] other than the head has a free, carvable or
 *     remotely freed block; the head (CURRENT) may have none;
 *   - a pool on full[c] has no free and no carvable block;
 *   - every pool on a heap's lists has that heap as owner and class c, and
 *     the registry maps it to c + 1;
 *   - every block in cache m is a block of a pool the registry maps to m.
 *
 * Life cycle.  A thread's first allocation takes a heap: a dead heap with
 * pools if there is one (the new thread inherits what a dead thread left:
 * its partly used pools and the free memory it kept), else an empty dead
 * heap, else a new one.  At thread exit the heap's cache is flushed, empty
 * pools go back to its arenas, and the heap becomes DEAD with whatever is
 * still live in it.  Frees into a dead heap's pools are ordinary remote
 * frees (no lock); the first live thread that frees into one adopts the
 * whole dead heap (its pools and arenas move into the adopter's heap), so
 * nothing waits for a thread that will never come.
 *
 * fork(): the global lock and every heap's lock are held across fork(),
 * so all arena sets are consistent in the child.  The other threads' heaps
 * may have been in the middle of a list update, so the child never touches
 * their lists: they become LOST.  Their blocks can still be freed in the
 * child (onto their pools' remote lists); their pools are not reused, a
 * bounded leak in a child that usually calls exec soon.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "internal.h"

/* The "not ours" cache entry, and every entry of a thread that has no heap
 * yet: a NULL slot where top, room and end all point. */
static ar_slot none_slot[1];

#define S1 none_slot
#define S3 S1, S1, S1
#define S11 S3, S3, S3, S1, S1
#define S33 S11, S11, S11
_Static_assert(AR_NMAP == 33, "S33 initialises every map index");

struct ar_heap ar_heap_none = {
    .top = { S33 }, .room = { S33 }, .end = { S33 }, .state = AR_HEAP_LOST,
};
AR_TLS struct ar_heap *ar_tls_heap = &ar_heap_none;

/* Every heap ever made (never freed), and the dead ones waiting for a new
 * thread: with pools first, empty ones second.  ar_lock. */
_Atomic(struct ar_heap *) ar_all_heaps;
static struct {
    struct ar_heap *dead_pools, *dead_empty;
    struct ar_heap *user_free;          /* destroyed user heaps, for reuse */
    uint64_t live, abandoned, reused, adopted, created;
    uint64_t users, user_created, user_destroyed;
    uint64_t locks;                     /* ar_lock taken for heaps */
} heaps;

static pthread_key_t heap_key;
static _Atomic unsigned dead_with_pools;   /* heaps on heaps.dead_pools */

/* ---- class and full lists (owner only) -------------------------------- */

static void pool_give_back(struct ar_heap *h, struct ar_pool *p)
{
    h->pools--;
    ar_registry_set_map(p, 0);
    ar_arenas_return(p);
}

/* Append p; on an empty list it becomes the current pool. */
static void list_push_tail(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    p->next = NULL;
    p->prev = h->tails[c];
    if (h->lists[c] == NULL) {
        h->lists[c] = p;
        ar_pool_make_used(p);
        ar_pool_make_current(p);
    } else {
        h->tails[c]->next = p;
        ar_pool_make_used(p);
    }
    h->tails[c] = p;
}

/* Put p right behind the current pool: it is used next.  Pools that get
 * blocks back go there, so the pools in use stay few and the sparse ones
 * behind them have time to empty and go back. */
static void list_push_next(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    struct ar_pool *head = h->lists[c];
    if (head == NULL || head->next == NULL) {
        list_push_tail(h, c, p);
        return;
    }
    p->prev = head;
    p->next = head->next;
    head->next->prev = p;
    head->next = p;
    ar_pool_make_used(p);
}

/* Unlink p; if it was the current pool, its hold passes to the next. */
static void list_remove(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    if (p->prev) {
        p->prev->next = p->next;
    } else {
        ar_pool_drop_current(p);
        h->lists[c] = p->next;
        if (p->next)
            ar_pool_make_current(p->next);
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
    ar_pool_make_full(p);
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
    ar_pool_unfull(p);
}

/* A pool with blocks to hand out, or remote frees: to its class list.
 * Empty and not needed as the current pool: back to its arena.
 * Nothing at all: to the full list.  p is on no list. */
static void place_pool(struct ar_heap *h, unsigned c, struct ar_pool *p)
{
    if (ar_pool_is_empty(p) && h->lists[c] != NULL)
        pool_give_back(h, p);
    else if (p->free != NULL || p->carved < p->nblocks ||
             atomic_load_explicit(&p->remote, AR_RELAXED) != 0 || h->lists[c] == NULL)
        list_push_next(h, c, p);
    else
        full_push(h, c, p);
}

/* lists[c] ran dry: take back FULL pools that other threads freed into. */
static void sweep_remote(struct ar_heap *h, unsigned c)
{
    if (atomic_load_explicit(&h->remote_hint[c], AR_RELAXED) == 0)
        return;
    atomic_store_explicit(&h->remote_hint[c], 0, AR_RELAXED);
    for (struct ar_pool *p = h->full[c], *next; p != NULL; p = next) {
        next = p->next;
        if (atomic_load_explicit(&p->remote, AR_RELAXED) == 0 || ar_pool_collect(p) == 0)
            continue;
        full_remove(h, c, p);
        place_pool(h, c, p);
    }
}

/* Class c got remote frees: take them in, everywhere on its lists, and
 * hand back the pools they emptied. */
static void sweep_class(struct ar_heap *h, unsigned c)
{
    atomic_store_explicit(&h->remote_hint[c], 0, memory_order_seq_cst);
    for (struct ar_pool *p = h->full[c], *next; p != NULL; p = next) {
        next = p->next;
        if (atomic_load_explicit(&p->remote, AR_RELAXED) != 0 && ar_pool_collect(p) > 0) {
            full_remove(h, c, p);
            place_pool(h, c, p);
        }
    }
    for (struct ar_pool *p = h->lists[c], *next; p != NULL; p = next) {
        next = p->next;
        if (atomic_load_explicit(&p->remote, AR_RELAXED) != 0)
            ar_pool_collect(p);
        if (ar_pool_is_empty(p) && (p != h->lists[c] || next != NULL)) {
            list_remove(h, c, p);
            pool_give_back(h, p);
        }
    }
}

/* Remote frees are taken in when a class list runs dry.  A heap whose
 * thread mostly frees (a consumer, or one that adopted a dead heap) may
 * not allocate from those classes for a long time, so its free slow paths
 * also look, at most every AR_TIDY_MS, at the classes that got some. */
#define AR_TIDY_TICKS 32
#define AR_TIDY_MS 10
static void tidy(struct ar_heap *h)
{
    if (++h->ticks < AR_TIDY_TICKS)
        return;
    h->ticks = 0;
    uint64_t now = ar_now_ms();
    if (now - h->tidy_ms < AR_TIDY_MS)
        return;
    h->tidy_ms = now;
    for (unsigned c = 0; c < AR_NCLASS; c++)
        if (atomic_load_explicit(&h->remote_hint[c], AR_RELAXED))
            sweep_class(h, c);
}

static void adopt_any(struct ar_heap *h);

/* A pool for class c on an empty list: a new one, as the current pool, or
 * the head of what an adoption brought. */
static struct ar_pool *acquire_pool(struct ar_heap *h, unsigned c)
{
    if (!h->user && atomic_load_explicit(&dead_with_pools, AR_RELAXED) != 0 &&
        !ar_arenas_has_free(&h->arenas)) {
        adopt_any(h);
        if (h->lists[c] != NULL)
            return h->lists[c];         /* the adopted heap had pools of c */
    }
    struct ar_pool *p = ar_arenas_acquire(&h->arenas, c, h);
    if (p == NULL)
        return NULL;
    ar_pool_init(p, c, h);
    ar_on_pool_acquire(ar_pool_base(p));
    ar_registry_set_map(p, h->user ? 0 : c + 1);   /* user heaps: no thread cache */
    h->pools++;
    list_push_tail(h, c, p);
    return p;
}

/* ---- the thread cache --------------------------------------------------- */

static inline ar_slot *cache_top(struct ar_heap *h, unsigned m)
{
    return atomic_load_explicit(&h->top[m], AR_RELAXED);
}

static inline void *slot_get(ar_slot *t)
{
    return atomic_load_explicit(t, AR_RELAXED);
}

static inline void slot_set(ar_slot *t, void *b)
{
    atomic_store_explicit(t, b, AR_RELAXED);
}

static inline void cache_set_top(struct ar_heap *h, unsigned m, ar_slot *t)
{
    atomic_store_explicit(&h->top[m], t, AR_RELAXED);
}

/* Every stack empty, and off until the heap's first allocation of its
 * class (what it held, if anything, is forgotten: its blocks are free or
 * going away with their pools). */
static void cache_reset(struct ar_heap *h)
{
    for (unsigned m = 1; m < AR_NMAP; m++) {
        cache_set_top(h, m, h->end[m]);
        h->room[m] = h->end[m];
    }
}

/* Blocks of class c a thread cache keeps: ARENA_TCACHE bytes' worth,
 * 4 to 1024 of them, or none. */
static unsigned cache_cap(unsigned c)
{
    if (ar_options.tcache_bytes == 0)
        return 0;
    size_t n = ar_options.tcache_bytes / ar_class_size(c);
    return n < 4 ? 4 : n > 1024 ? 1024 : (unsigned)n;
}

/* ---- allocation slow path --------------------------------------------- */

/* The cache of class c is empty (or off): fill it with half its capacity
 * and hand out the first block. */
void *ar_heap_refill(struct ar_heap *h, unsigned c)
{
    unsigned m = c + 1;
    ar_slot *end = h->end[m];
    AR_ASSERT(cache_top(h, m) == end, "refill of a cache that is not empty\n");
    /* The thread cache of a class turns on when the thread first allocates
     * from it.  A thread that only frees blocks of c (a consumer fed by
     * other threads) gives them straight back to their pools instead of
     * holding them, where their owners could not reuse them. */
    if (h->room[m] == end)
        h->room[m] = end - h->cap[m];
    unsigned want = h->cap[m] / 2, n = 0;
    if (want == 0) {
        void *b = NULL;
        for (struct ar_pool *p; b == NULL;) {
            if ((p = h->lists[c]) == NULL) {
                sweep_remote(h, c);
                if ((p = h->lists[c]) == NULL && (p = acquire_pool(h, c)) == NULL) {
                    errno = ENOMEM;
                    return NULL;
                }
            }
            if ((b = ar_pool_take_one(p)) == NULL) {
                list_remove(h, c, p);
                full_push(h, c, p);
            }
        }
        ar_on_alloc_from(h, b, c);
        return b;
    }
    while (n < want) {
        struct ar_pool *p = h->lists[c];
        if (p == NULL) {
            sweep_remote(h, c);
            if ((p = h->lists[c]) == NULL) {
                if (n > 0)
                    break;
                if ((p = acquire_pool(h, c)) == NULL) {
                    errno = ENOMEM;
                    return NULL;
                }
            }
        }
        n += ar_pool_take(p, end - n, want - n);
        if (n < want) {                 /* p has nothing left */
            list_remove(h, c, p);
            full_push(h, c, p);
        }
    }
    ar_slot *t = end - n;
    void *b = slot_get(t);
#if ARENA_VALGRIND
    slot_set(t, NULL);                  /* memcheck must not find it there */
#endif
    cache_set_top(h, m, t + 1);
    ar_on_alloc_from(h, b, c);
    return b;
}

/* ---- free slow paths -------------------------------------------------- */

static void adopt(struct ar_heap *h, struct ar_heap *dead);

/* Same heap, after the push: the pool was full (its count carried the
 * bias), or is now empty. */
static void free_local_slow(struct ar_heap *h, struct ar_pool *p, void *ptr, uint32_t used)
{
    unsigned c = p->cls;
    if (ar_state_get(p) == AR_POOL_FULL) {
        full_remove(h, c, p);
        used = ar_used_get(p);
        if (used != 0) {
            list_push_next(h, c, p);
            return;
        }
        if (h->lists[c] == NULL) {
            list_push_tail(h, c, p);
            return;
        }
        pool_give_back(h, p);
        return;
    }
    /* More frees than blocks handed out: the current pool's count went
     * through its hold, or another pool's below zero. */
    if ((int32_t)used < 0 || ar_state_get(p) == AR_POOL_CURRENT)
        ar_fatal("libarena: double free of %p (size class %zu)\n", ptr, ar_class_size(c));
    list_remove(h, c, p);               /* used == 0: not the current pool */
    pool_give_back(h, p);
}

/* A block of a pool h does not own: push it on the pool's remote list.
 * The first block on an empty list tells the owner, and if the owner's
 * thread is gone, h adopts the owner's whole heap. */
static void free_remote(struct ar_heap *h, struct ar_pool *p, void *ptr)
{
    struct ar_heap *owner = atomic_load_explicit(&p->owner, memory_order_acquire);
    if (owner == NULL)
        ar_fatal("libarena: invalid free of %p: not an allocated block (its pool is not in use)\n",
                 ptr);
    unsigned c = p->cls;                /* before the push: the pool may go after it */
    if (!ar_pool_push_remote(p, ptr))
        return;
    /* Read the owner again after the push: a heap that adopted the pool in
     * between either collected the block or is the one read here. */
    owner = atomic_load_explicit(&p->owner, memory_order_acquire);
    if (owner == NULL)
        return;
    atomic_store_explicit(&owner->remote_hint[c], 1, memory_order_seq_cst);
    if (atomic_load_explicit(&owner->state, memory_order_seq_cst) != AR_HEAP_DEAD)
        return;
    /* A thread that never allocated takes a heap now: it may be the dead
     * one itself, which then is this thread's and collects the block. */
    if (h == &ar_heap_none && (h = ar_heap_get()) == NULL)
        return;
    if (h != owner)
        adopt(h, owner);
}

/* Give n freed blocks (hooks already run) of one pool back to it, n >= 1:
 * one registry lookup and one count update for them all (a cache flush
 * finds the blocks of a pool side by side). */
static AR_INLINE void free_blocks_to_pool(struct ar_heap *h, void *const *b, unsigned n)
{
    struct ar_pool *p = ar_pool_of(ar_registry_arena(b[0]), b[0]);
    if (atomic_load_explicit(&p->owner, AR_RELAXED) != h) {
        for (unsigned i = 0; i < n; i++)
            free_remote(h, p, b[i]);
        return;
    }
    uint32_t used = ar_pool_push_local(p, b, n);
    if (ar_unlikely((int32_t)used <= 0))        /* was full, or now empty */
        free_local_slow(h, p, b[n - 1], used);
}

static void free_to_pool(struct ar_heap *h, void *ptr)
{
    free_blocks_to_pool(h, &ptr, 1);
}

/* Give the oldest entries of cache m back to their pools until `keep` are
 * left; the newest stay (they move down to the bottom of the stack), so
 * what the cache pins is what was freed last.  Neighbouring entries of one
 * pool go together. */
static void cache_flush(struct ar_heap *h, unsigned m, unsigned keep)
{
    ar_slot *t = cache_top(h, m), *end = h->end[m];
    if (end - t <= (ptrdiff_t)keep)
        return;
    void *run[64];
    unsigned k = 0;
    uintptr_t pool = (uintptr_t)slot_get(t + keep) & ~(uintptr_t)(AR_POOL_SIZE - 1);
    for (ar_slot *e = t + keep; e < end; e++) {
        void *b = slot_get(e);
        uintptr_t bp = (uintptr_t)b & ~(uintptr_t)(AR_POOL_SIZE - 1);
        if (bp != pool || k == 64) {
            free_blocks_to_pool(h, run, k);
            k = 0;
            pool = bp;
        }
        run[k++] = b;
    }
    free_blocks_to_pool(h, run, k);
    for (unsigned i = keep; i-- > 0;)           /* the newest move down, in order */
        slot_set(end - keep + i, slot_get(t + i));
#if ARENA_VALGRIND
    for (ar_slot *e = t; e < end - keep; e++)   /* memcheck must not find them */
        slot_set(e, NULL);
#endif
    cache_set_top(h, m, end - keep);
}

static void flush_all(struct ar_heap *h)
{
    for (unsigned m = 1; m < AR_NMAP; m++)
        cache_flush(h, m, 0);
}

/* The free fast path found no room in cache m (full, or off), for a block
 * the registry maps to m. */
void ar_heap_free_full(struct ar_heap *h, unsigned m, void *ptr)
{
    ar_slot *t = cache_top(h, m);
    ar_on_free(ptr, m - 1);             /* first: memcheck reports before we do */
    if (ar_unlikely(ptr == slot_get(t)))
        ar_fatal("libarena: double free of %p (size class %zu)\n", ptr, ar_class_size(m - 1));
    if (h != &ar_heap_none)
        tidy(h);
    if (h->room[m] == h->end[m]) {      /* no cache: straight to the pool */
        free_to_pool(h, ptr);
        return;
    }
    cache_flush(h, m, h->cap[m] / 2);
    t = cache_top(h, m);
    slot_set(t - 1, ptr);
    cache_set_top(h, m, t - 1);
}

/* A block of ours that the registry maps to 0: its pool is free (a bad
 * free) or belongs to a heap without a thread cache. */
void ar_heap_free_block(struct ar_heap *h, struct ar_arena *a, void *ptr)
{
    struct ar_pool *p = ar_pool_of(a, ptr);
    unsigned state = ar_state_get(p);
    if (a->destroyed && state == AR_POOL_FREE)      /* checked build */
        ar_fatal("libarena: free of %p into a destroyed heap\n", ptr);
    if (state == AR_POOL_LARGE && ptr == (void *)ar_pool_base(p)) {
        struct ar_heap *owner = atomic_load_explicit(&p->owner, AR_RELAXED);
        if (a->huge) {
            ar_on_large_free(owner, ptr, (size_t)a->huge * AR_ARENA_SIZE);
            ar_arenas_return_huge(a);
        } else {
            ar_on_large_free(owner, ptr, (size_t)p->nblocks * AR_POOL_SIZE);
            ar_arenas_return_run(p);
        }
        return;
    }
    if (state == AR_POOL_LARGE || state == AR_POOL_TAIL || a->huge)
        ar_fatal("libarena: invalid free of %p: inside a large block of a heap, not its start\n",
                 ptr);
    if (state == AR_POOL_FREE)
        ar_fatal("libarena: invalid free of %p: not an allocated block (its pool is not in use)\n",
                 ptr);
    ar_on_free_to(atomic_load_explicit(&p->owner, AR_RELAXED), ptr, p->cls);
    if (h != &ar_heap_none)
        tidy(h);
    free_to_pool(h, ptr);
}

/* ---- heap life cycle -------------------------------------------------- */

static void heap_exit(void *arg);

/* A heap and its cache slots, from metadata.  ar_lock held. */
static struct ar_heap *heap_new(void)
{
    size_t slots = 0;
    for (unsigned c = 0; c < AR_NCLASS; c++)
        slots += cache_cap(c) + 1;
    struct ar_heap *h = ar_meta_alloc(sizeof(*h) + slots * sizeof(ar_slot));
    if (h == NULL)
        return NULL;
    ar_slot *s = (ar_slot *)(h + 1);
    h->top[0] = h->room[0] = h->end[0] = none_slot;
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        unsigned m = c + 1;
        h->cap[m] = (uint16_t)cache_cap(c);
        h->end[m] = s + h->cap[m];
        slot_set(h->end[m], NULL);
        s = h->end[m] + 1;
    }
    /* Empty stacks before the heap is published: the census walks every
     * heap's stacks from top to end without waiting for its owner. */
    cache_reset(h);
    ar_arenas_init(&h->arenas);
    atomic_store_explicit(&h->state, AR_HEAP_DEAD, AR_RELAXED);
    atomic_store_explicit(&h->next_all, atomic_load_explicit(&ar_all_heaps, AR_RELAXED),
                          AR_RELAXED);
    atomic_store_explicit(&ar_all_heaps, h, memory_order_release);
    heaps.created++;
    return h;
}

static void dead_push(struct ar_heap *h)
{
    struct ar_heap **list = h->pools ? &heaps.dead_pools : &heaps.dead_empty;
    h->next_free = *list;
    *list = h;
    if (h->pools)
        atomic_fetch_add_explicit(&dead_with_pools, 1, AR_RELAXED);
}

static bool dead_remove(struct ar_heap *h)
{
    struct ar_heap **link = h->pools ? &heaps.dead_pools : &heaps.dead_empty;
    for (; *link != NULL; link = &(*link)->next_free)
        if (*link == h) {
            *link = h->next_free;
            if (h->pools)
                atomic_fetch_sub_explicit(&dead_with_pools, 1, AR_RELAXED);
            return true;
        }
    return false;
}

/* The calling thread's heap: its own, or a dead one, or a new one. */
struct ar_heap *ar_heap_get(void)
{
    struct ar_heap *h = ar_tls_heap;
    if (h != &ar_heap_none)
        return h;
    pthread_mutex_lock(&ar_lock);
    heaps.locks++;
    if ((h = heaps.dead_pools) != NULL) {
        heaps.dead_pools = h->next_free;
        atomic_fetch_sub_explicit(&dead_with_pools, 1, AR_RELAXED);
        heaps.reused++;
    } else if ((h = heaps.dead_empty) != NULL) {
        heaps.dead_empty = h->next_free;
        heaps.reused++;
    } else {
        h = heap_new();
    }
    if (h != NULL) {
        atomic_store_explicit(&h->state, AR_HEAP_LIVE, AR_RELAXED);
        heaps.live++;
    }
    pthread_mutex_unlock(&ar_lock);
    if (h == NULL)
        return NULL;
    cache_reset(h);
    for (unsigned c = 0; c < AR_NCLASS; c++)   /* inherited full pools: look */
        atomic_store_explicit(&h->remote_hint[c], 1, AR_RELAXED);
    /* Set the thread pointer first: pthread_setspecific may allocate, and
     * that allocation must find this heap, not make another. */
    ar_tls_heap = h;
    pthread_setspecific(heap_key, h);
    return h;
}

/* Move every pool of `from`'s lists into h's (adoption). */
static void take_lists(struct ar_heap *h, struct ar_heap *from)
{
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        for (struct ar_pool *p = from->lists[c], *next; p != NULL; p = next) {
            next = p->next;
            if (ar_state_get(p) == AR_POOL_CURRENT)
                ar_pool_drop_current(p);
            atomic_store_explicit(&p->owner, h, memory_order_release);
            p->prev = p->next = NULL;
            ar_pool_collect(p);
            place_pool(h, c, p);
        }
        for (struct ar_pool *p = from->full[c], *next; p != NULL; p = next) {
            next = p->next;
            atomic_store_explicit(&p->owner, h, memory_order_release);
            p->prev = p->next = NULL;
            ar_pool_unfull(p);
            ar_pool_collect(p);
            place_pool(h, c, p);
        }
        from->lists[c] = from->tails[c] = from->full[c] = NULL;
        atomic_store_explicit(&h->remote_hint[c], 1, AR_RELAXED);
    }
}

/* h (live, this thread's) takes over the pools and arenas of `dead`, which
 * it has claimed (ADOPTING, off the dead lists).  The arenas move first, so
 * that a pool that turns out empty while its lists move goes back to the
 * arena set that now holds its arena. */
static void merge(struct ar_heap *h, struct ar_heap *dead)
{
    ar_arenas_move(&h->arenas, &dead->arenas);
    unsigned pools = dead->pools;
    dead->pools = 0;
    h->pools += pools;
    take_lists(h, dead);
    pthread_mutex_lock(&ar_lock);
    atomic_store_explicit(&dead->state, AR_HEAP_DEAD, AR_RELAXED);
    dead_push(dead);
    pthread_mutex_unlock(&ar_lock);
}

/* h adopts `dead` if it is still a dead heap with pools. */
static void adopt(struct ar_heap *h, struct ar_heap *dead)
{
    pthread_mutex_lock(&ar_lock);
    heaps.locks++;
    bool mine = atomic_load_explicit(&dead->state, AR_RELAXED) == AR_HEAP_DEAD &&
                dead->pools != 0 && dead_remove(dead);
    if (mine) {
        atomic_store_explicit(&dead->state, AR_HEAP_ADOPTING, AR_RELAXED);
        heaps.adopted++;
    }
    pthread_mutex_unlock(&ar_lock);
    if (mine)
        merge(h, dead);
}

/* h is about to take a fresh arena: first adopt a dead heap that holds
 * pools, if there is one, so that memory a dead thread left partly used is
 * filled again before the footprint grows. */
static void adopt_any(struct ar_heap *h)
{
    pthread_mutex_lock(&ar_lock);
    heaps.locks++;
    struct ar_heap *dead = heaps.dead_pools;
    if (dead != NULL) {
        dead_remove(dead);
        atomic_store_explicit(&dead->state, AR_HEAP_ADOPTING, AR_RELAXED);
        heaps.adopted++;
    }
    pthread_mutex_unlock(&ar_lock);
    if (dead != NULL)
        merge(h, dead);
}

/* Take in remote frees and hand back every empty pool, current ones too.
 * The hints are cleared first: a remote free into any pool after its
 * collection here sets one again. */
static void sweep_all(struct ar_heap *h)
{
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        atomic_store_explicit(&h->remote_hint[c], 0, memory_order_seq_cst);
        for (struct ar_pool *p = h->full[c], *next; p != NULL; p = next) {
            next = p->next;
            if (ar_pool_collect(p) > 0) {
                full_remove(h, c, p);
                place_pool(h, c, p);
            }
        }
        for (struct ar_pool *p = h->lists[c], *next; p != NULL; p = next) {
            next = p->next;
            ar_pool_collect(p);
            if (ar_pool_is_empty(p)) {
                list_remove(h, c, p);
                pool_give_back(h, p);
            }
        }
    }
}

static bool any_hint(struct ar_heap *h)
{
    for (unsigned c = 0; c < AR_NCLASS; c++)
        if (atomic_load_explicit(&h->remote_hint[c], memory_order_seq_cst))
            return true;
    return false;
}

/* Thread exit.  The heap becomes DEAD with what is still live in it.  A
 * remote free that lands between the last sweep and the moment the heap
 * is DEAD would not make anyone adopt it (only a free into an empty
 * remote list of a DEAD heap does), so after publishing DEAD the thread
 * looks at its hints and, if a free came in, takes the heap back for
 * another sweep. */
static void heap_exit(void *arg)
{
    struct ar_heap *h = arg;
    /* Flushing may adopt dead heaps whose pools this thread frees into:
     * the sweep below then gives their empty pools back. */
    flush_all(h);
    bool first = true;
    for (;;) {
        sweep_all(h);
#if ARENA_CHECKED
        ar_validate();                  /* this heap, every arena set, the cache */
#endif
        ar_arenas_give_back(&h->arenas, false);
        pthread_mutex_lock(&ar_lock);
        heaps.locks++;
        atomic_store_explicit(&h->state, AR_HEAP_DEAD, memory_order_seq_cst);
        if (first) {
            heaps.live--;
            heaps.abandoned++;
            first = false;
        }
        dead_push(h);
        pthread_mutex_unlock(&ar_lock);
        if (!any_hint(h))
            break;
        pthread_mutex_lock(&ar_lock);
        bool again = atomic_load_explicit(&h->state, AR_RELAXED) == AR_HEAP_DEAD && dead_remove(h);
        if (again)
            atomic_store_explicit(&h->state, AR_HEAP_ADOPTING, AR_RELAXED);
        pthread_mutex_unlock(&ar_lock);
        if (!again)
            break;                      /* another thread took it over */
    }
    ar_tls_heap = &ar_heap_none;
}

/* arena_release() for the calling thread's heap. */
void ar_heap_release(struct ar_heap *h)
{
    if (h == &ar_heap_none)
        return;
    flush_all(h);
    sweep_all(h);
}

/* Every heap's arena set: give back what it holds free, then the cache. */
void ar_heaps_give_back(void)
{
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, memory_order_acquire); h != NULL;
         h = atomic_load_explicit(&h->next_all, memory_order_acquire))
        ar_arenas_give_back(&h->arenas, true);
    ar_arena_cache_trim(true, false);
}

/* The purger's look at every heap. */
void ar_heaps_purge_idle(void)
{
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, memory_order_acquire); h != NULL;
         h = atomic_load_explicit(&h->next_all, memory_order_acquire))
        ar_arenas_purge_idle(&h->arenas);
    ar_arena_cache_trim(false, true);
}

/* ---- user heaps (arena_heap_new) --------------------------------------- */

/* A heap of its own for the caller of arena_heap_new: a destroyed one, or a
 * new one.  Its pools are mapped 0 in the registry, so frees of its blocks
 * never enter a thread cache: they go straight to the pool's remote list,
 * and the heap can be destroyed without a cache holding on to its blocks. */
struct ar_heap *ar_heap_new_user(void)
{
    pthread_mutex_lock(&ar_lock);
    heaps.locks++;
    struct ar_heap *h = heaps.user_free;
    if (h != NULL) {
        heaps.user_free = h->next_free;
    } else if ((h = heap_new()) != NULL) {
        h->user = true;
        h->arenas.user = true;
        heaps.user_created++;
    }
    if (h != NULL) {
        atomic_store_explicit(&h->state, AR_HEAP_LIVE, AR_RELAXED);
        heaps.users++;
    }
    pthread_mutex_unlock(&ar_lock);
    if (h == NULL)
        return NULL;
    cache_reset(h);
    for (unsigned c = 0; c < AR_NCLASS; c++)
        atomic_store_explicit(&h->remote_hint[c], 0, AR_RELAXED);
    ar_on_heap_new(h);
    return h;
}

/* Every block at once: pools borrowed from other heaps' arenas go back one
 * by one, then the heap's own arenas and huge blocks go back to the OS
 * whole.  The caller guarantees no thread uses the heap any more. */
void ar_heap_destroy_user(struct ar_heap *h)
{
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        for (int full = 0; full < 2; full++)
            for (struct ar_pool *p = full ? h->full[c] : h->lists[c], *next; p != NULL; p = next) {
                next = p->next;
                if (atomic_load_explicit(&p->arena->set, memory_order_acquire) != &h->arenas) {
                    ar_on_pool_discard(p);
                    ar_arenas_return(p);
                }
            }
        h->lists[c] = h->tails[c] = h->full[c] = NULL;
    }
    h->pools = 0;
    cache_reset(h);
    ar_on_heap_destroy(h);
    ar_arenas_release_all(&h->arenas);
    pthread_mutex_lock(&ar_lock);
    heaps.locks++;
    atomic_store_explicit(&h->state, AR_HEAP_DESTROYED, AR_RELAXED);
    h->next_free = heaps.user_free;
    heaps.user_free = h;
    heaps.users--;
    heaps.user_destroyed++;
    pthread_mutex_unlock(&ar_lock);
}

/* A block above 512 bytes for a user heap: a run of whole pools in one of
 * its arenas, or, above an arena, a reservation of its own. */
void *ar_heap_alloc_large(struct ar_heap *h, size_t size)
{
    void *b;
    if (size <= AR_ARENA_SIZE) {
        unsigned k = (unsigned)((size + AR_POOL_SIZE - 1) >> AR_POOL_SHIFT);
        struct ar_pool *p = ar_arenas_take_run(&h->arenas, k, h);
        b = p != NULL ? ar_pool_base(p) : NULL;
        if (b != NULL)
            ar_on_large_alloc(h, b, (size_t)k * AR_POOL_SIZE);
    } else {
        b = ar_arenas_take_huge(&h->arenas, size, h);
        if (b != NULL)
            ar_on_large_alloc(h, b, (size + AR_ARENA_SIZE - 1) & ~(AR_ARENA_SIZE - 1));
    }
    if (b == NULL)
        errno = ENOMEM;
    return b;
}

/* A user heap's figures: its arenas' (arena.c), minus its own cache. */
void ar_heap_user_stats(struct ar_heap *h, struct arena_heap_stats *st)
{
    ar_arenas_owner_stats(&h->arenas, h, st);
    for (unsigned m = 1; m < AR_NMAP; m++) {
        uint64_t n = (uint64_t)(h->end[m] - cache_top(h, m));
        n = n < st->blocks_live ? n : st->blocks_live;
        st->blocks_live -= n;
        st->bytes_live -= n * ar_class_size(m - 1);
    }
}

/* ---- fork ------------------------------------------------------------- */

static void fork_prepare(void)
{
    pthread_mutex_lock(&ar_lock);
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, AR_RELAXED); h != NULL;
         h = atomic_load_explicit(&h->next_all, AR_RELAXED))
        pthread_mutex_lock(&h->arenas.lock);
}

static void fork_parent(void)
{
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, AR_RELAXED); h != NULL;
         h = atomic_load_explicit(&h->next_all, AR_RELAXED))
        pthread_mutex_unlock(&h->arenas.lock);
    pthread_mutex_unlock(&ar_lock);
}

static void fork_child(void)
{
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, AR_RELAXED); h != NULL;
         h = atomic_load_explicit(&h->next_all, AR_RELAXED)) {
        pthread_mutex_unlock(&h->arenas.lock);
        int state = atomic_load_explicit(&h->state, AR_RELAXED);
        if (h == ar_tls_heap || state == AR_HEAP_DEAD || h->user)
            continue;                   /* user heaps: see arena_heap_new */
        if (state == AR_HEAP_LIVE) {
            heaps.live--;
            heaps.abandoned++;          /* its thread does not exist here */
        }
        atomic_store_explicit(&h->state, AR_HEAP_LOST, AR_RELAXED);
    }
    /* The dead heaps are consistent (they were on their lists, under the
     * lock); an ADOPTING one was mid-merge and is LOST above. */
    pthread_mutex_unlock(&ar_lock);
}

/* Once per process, before any thread can hold ar_lock: the fork handlers
 * (so a fork() never copies a lock held) and the key whose destructor
 * drains a heap at thread exit.  Run by a constructor when the library is
 * loaded, and by the first allocation if that comes earlier (a malloc
 * replacement can be called before constructors run, while the process is
 * single-threaded). */
void ar_heap_start(void)
{
    static atomic_flag done = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&done))
        return;
    pthread_key_create(&heap_key, heap_exit);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

__attribute__((constructor)) static void heap_library_init(void)
{
    ar_heap_start();
}

/* ---- stats and checks ----------------------------------------------- */

/* ar_lock held.  Blocks in thread caches are free: take them out of the
 * live counts that the pools gave.  A fork() child's copy of another
 * thread's heap (LOST) may have been copied in the middle of a refill or
 * a flush, so its cache and its pools can disagree by a batch; the sum is
 * clamped once, so that the error stays a constant, not a function of
 * what else is live. */
void ar_heaps_stats(struct ar_counts *k)
{
    struct arena_stats *st = &k->st;
    uint64_t cached[AR_NCLASS] = {0};
    st->heaps_live = heaps.live;
    st->heaps_abandoned = heaps.abandoned;
    st->heaps_reused = heaps.reused;
    st->heaps_adopted = heaps.adopted;
    st->heaps_user = heaps.users;
    st->locks_global += heaps.locks;
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, memory_order_acquire); h != NULL;
         h = atomic_load_explicit(&h->next_all, memory_order_acquire)) {
        pthread_mutex_lock(&h->arenas.lock);
        ar_arenas_count(&h->arenas, k);
        pthread_mutex_unlock(&h->arenas.lock);
        for (unsigned m = 1; m < AR_NMAP; m++)
            cached[m - 1] += (uint64_t)(h->end[m] - cache_top(h, m));
    }
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        uint64_t n = cached[c] < st->blocks_live_class[c] ? cached[c] : st->blocks_live_class[c];
        st->blocks_live_class[c] -= n;
        st->blocks_cached += n;
        st->blocks_live += st->blocks_live_class[c];
        st->bytes_live += st->blocks_live_class[c] * ar_class_size(c);
        struct arena_class_stats *cs = &k->cls[c];
        cs->block_size = (uint32_t)ar_class_size(c);
        cs->blocks_cached = n;
        cs->blocks_live = st->blocks_live_class[c];
        cs->bytes_live = cs->blocks_live * ar_class_size(c);
    }
}

/* Every block in every thread cache, for the census (relaxed reads). */
void ar_heaps_cached(void (*fn)(void *block, void *arg), void *arg)
{
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, memory_order_acquire); h != NULL;
         h = atomic_load_explicit(&h->next_all, memory_order_acquire))
        for (unsigned m = 1; m < AR_NMAP; m++)
            for (ar_slot *t = cache_top(h, m); t < h->end[m]; t++) {
                void *b = slot_get(t);
                if (b != NULL)
                    fn(b, arg);
            }
}

bool ar_heap_is_dead(const struct ar_heap *h)
{
    int state = atomic_load_explicit(&((struct ar_heap *)h)->state, AR_RELAXED);
    return state == AR_HEAP_DEAD || state == AR_HEAP_LOST;
}

static _Noreturn void heap_broken(const struct ar_heap *h, unsigned c, const struct ar_pool *p,
                                  const char *what)
{
    ar_fatal("libarena: invariant violated: heap %p, size class %zu, pool %p: %s\n",
             (const void *)h, ar_class_size(c), p ? (void *)ar_pool_base(p) : NULL, what);
}

/* Owner: the lists, the cache and every pool on the lists. */
void ar_heap_validate(struct ar_heap *h)
{
    unsigned pools = 0;
    for (unsigned c = 0; c < AR_NCLASS; c++) {
        struct ar_pool *prev = NULL;
        for (struct ar_pool *p = h->lists[c]; p != NULL; prev = p, p = p->next) {
            unsigned want = p == h->lists[c] ? AR_POOL_CURRENT : AR_POOL_USED;
            if (ar_state_get(p) != want)
                heap_broken(h, c, p, "a class list pool in the wrong state");
            if (p->prev != prev)
                heap_broken(h, c, p, "a broken back link");
            if (want == AR_POOL_USED && p->free == NULL && p->carved == p->nblocks &&
                atomic_load_explicit(&p->remote, AR_RELAXED) == 0)
                heap_broken(h, c, p, "a pool behind the head with nothing to hand out");
            pools++;
        }
        if (h->tails[c] != prev)
            heap_broken(h, c, prev, "the tail is not the last pool");
        for (struct ar_pool *p = h->full[c]; p != NULL; p = p->next) {
            if (ar_state_get(p) != AR_POOL_FULL || p->free != NULL || p->carved != p->nblocks)
                heap_broken(h, c, p, "a full-list pool with blocks or in the wrong state");
            pools++;
        }
        for (int full = 0; full < 2; full++)
            for (struct ar_pool *p = full ? h->full[c] : h->lists[c]; p != NULL; p = p->next) {
                if (atomic_load_explicit(&p->owner, AR_RELAXED) != h || p->cls != c)
                    heap_broken(h, c, p, "a pool of another heap or class on the list");
                if (ar_registry_map(ar_pool_base(p)) != (h->user ? 0 : c + 1))
                    heap_broken(h, c, p, "the registry maps the pool to another class");
                ar_pool_validate(p);
            }
    }
    if (pools != h->pools)
        heap_broken(h, 0, NULL, "the pool count is not the pools on the lists");
    for (unsigned m = 1; m < AR_NMAP; m++) {
        ar_slot *t = cache_top(h, m);
        if (slot_get(h->end[m]) != NULL || t > h->end[m] || t < h->room[m] ||
            (h->room[m] != h->end[m] && h->room[m] != h->end[m] - h->cap[m]))
            heap_broken(h, m - 1, NULL, "the thread cache's bounds are broken");
        for (; t < h->end[m]; t++) {
            void *b = slot_get(t);
            struct ar_arena *a = ar_registry_arena(b);
            if (h->user ? a == NULL || ar_pool_of(a, b)->cls != m - 1 ||
                              atomic_load_explicit(&ar_pool_of(a, b)->owner, AR_RELAXED) != h
                        : ar_registry_map(b) != m)
                heap_broken(h, m - 1, NULL, "a cached block is not of the cache's class");
        }
    }
}

void ar_validate(void)
{
    struct ar_heap *me = ar_tls_heap;
    if (me != &ar_heap_none)
        ar_heap_validate(me);
    pthread_mutex_lock(&ar_lock);
    for (struct ar_heap *h = atomic_load_explicit(&ar_all_heaps, memory_order_acquire); h != NULL;
         h = atomic_load_explicit(&h->next_all, memory_order_acquire)) {
        pthread_mutex_lock(&h->arenas.lock);
        ar_arenas_validate(&h->arenas);
        pthread_mutex_unlock(&h->arenas.lock);
    }
    ar_arena_validate_cache();
    pthread_mutex_unlock(&ar_lock);
}
