/*
 * Arenas: where pools come from and where they go back.
 *
 * Two parts:
 *
 *  - A heap's arena set (struct ar_arenas).  Each heap owns the arenas it
 *    takes pools from.  Usable arenas sit in buckets by their number of free
 *    pools; a new pool comes from the arena with the fewest (fullest first),
 *    so lightly used arenas drain and can be given back.  The set has its
 *    own lock, taken when a pool is taken or returned (slow paths), so
 *    threads exchange pools with their arenas without any process-wide
 *    lock.  The purger, stats and fork take the same lock from outside.
 *
 *  - The process-wide part (`world`, under ar_lock): the backend, the
 *    cache of empty arenas held by no heap, and the counters.  A heap comes
 *    here only to get a whole arena or to hand one back.
 *
 * What is kept and what is given back (docs/design.md, "Hold and purge
 * policy"): a pool that comes back is dirty (its pages may be resident).
 * A heap keeps up to a budget of dirty free pools, ARENA_PURGE_MIN plus
 * 9/8 of what recent reuse justified (learned, hold.c), purging the oldest
 * beyond it (down to half the floor, or to 3/4 of a learned budget), and
 * keeps an empty arena only while its dirty pools fit the budget.  The
 * world keeps up to max(1, learned) empty arenas and releases the rest.
 * Fixed settings (ARENA_PURGE=N, ARENA_ARENA_CACHE=N, eager, off) replace
 * the learned parts.  Lock order: ar_lock, then one set's lock; a set's
 * lock is never held while taking ar_lock, and never two at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"
#include "check.h"
#include "internal.h"

pthread_mutex_t ar_lock = PTHREAD_MUTEX_INITIALIZER;

/* The process-wide part.  Everything here is under ar_lock, except the
 * purge counters, which purges update under their set's lock. */
static struct {
    const struct ar_backend *backend;
    struct ar_arena *cache;             /* empty arenas held by no heap, newest first */
    unsigned cached;
    struct ar_arena *free_descs;        /* headers of released arenas, for reuse */
    unsigned descs_resident;            /* ... whose descriptor page is resident */
    struct ar_arenas *sets;             /* every heap's set                     */
    struct ar_hold hold;                /* empty arenas worth keeping (auto)    */
    uint64_t reserved, released, live, peak_bytes, failures;
    uint64_t locks;                     /* ar_lock taken to get or give an arena */
    uint64_t borrowed;                  /* pools taken from another heap's set */
    uint64_t stolen;                    /* partly used arenas taken from one   */
    _Atomic uint64_t pools_purged, bytes_purged;
    _Atomic uint64_t class_purged[AR_NCLASS];   /* by the class a pool last had */
} world = { .backend = &ar_backend_mmap };

#define ALL_POOLS (~(uint64_t)0)

/* ---- selection of the backend ----------------------------------------- */

int ar_backend_use(const struct ar_backend *b)
{
    int rc = 0;
    pthread_mutex_lock(&ar_lock);
    if (atomic_load(&ar_started))
        rc = EBUSY;
    else
        world.backend = b;
    pthread_mutex_unlock(&ar_lock);
    return rc;
}

/* First use, ar_lock held: ARENA_BACKEND, unless a backend was chosen by
 * call.  Returns -1 if the variable names no backend. */
int ar_arena_start(void)
{
    const char *name = ar_options.backend;
    if (name == NULL || world.backend != &ar_backend_mmap)
        return 0;
    if (strcmp(name, "brk") == 0)
        world.backend = &ar_backend_brk;
    else if (strcmp(name, "mmap") != 0)
        return -1;
    return 0;
}

const char *ar_arena_backend_name(void)
{
    return world.backend->name;
}

/* ---- policy ----------------------------------------------------------- */

static bool auto_purge(void)
{
    return (world.backend->flags & AR_BACKEND_AUTO_PURGE) != 0;
}

/* Dirty free pools a set may keep. */
static unsigned dirty_budget(struct ar_arenas *s)
{
    if (!auto_purge())
        return UINT32_MAX;
    switch (ar_options.purge) {
    case AR_PURGE_OFF:
        return UINT32_MAX;
    case AR_PURGE_EAGER:
        return 0;
    case AR_PURGE_FIXED:
        return ar_options.purge_pools;
    default: {
        /* The floor, plus what was purged and then asked for again
         * (demand the floor did not cover), with an eighth more as
         * headroom: a program that reuses its memory round after round
         * keeps all of it, though the rounds differ a little. */
        uint64_t learned = ar_hold_keep(&s->pools_hold, 0);
        uint64_t keep = ar_options.purge_pools + learned + learned / 8;
        return keep < UINT32_MAX ? (unsigned)keep : UINT32_MAX;
    }
    }
}

/* Down to where a purge goes once the budget is exceeded: half the floor
 * (one purge call per many returned pools), but only a quarter below a
 * learned budget, so what the program reuses is not purged to refault. */
static unsigned purge_target(unsigned budget)
{
    if (ar_options.purge == AR_PURGE_AUTO && budget > ar_options.purge_pools)
        return budget - budget / 4;
    return budget / 2;
}

/* Empty arenas a set may keep (its dirty pools must also fit the budget). */
static unsigned empty_budget(struct ar_arenas *s)
{
    if (ar_options.arena_cache != AR_AUTO)
        return 0;                       /* fixed: the world's cache holds them */
    return 1 + s->pools_hold.learned / AR_POOLS;
}

/* Empty arenas the world may keep. */
static unsigned cache_budget(void)
{
    if (ar_options.arena_cache != AR_AUTO)
        return ar_options.arena_cache;
    return ar_hold_keep(&world.hold, 1);
}

/* ---- a set's buckets and dirty list ------------------------------------- */

static void bucket_insert(struct ar_arenas *s, struct ar_arena *a)
{
    unsigned n = a->nfree;
    a->prev = NULL;
    a->next = s->buckets[n];
    if (a->next)
        a->next->prev = a;
    s->buckets[n] = a;
    s->bucket_bits[n >> 6] |= (uint64_t)1 << (n & 63);
}

static void bucket_remove(struct ar_arenas *s, struct ar_arena *a)
{
    unsigned n = a->nfree;
    if (a->prev)
        a->prev->next = a->next;
    else
        s->buckets[n] = a->next;
    if (a->next)
        a->next->prev = a->prev;
    if (s->buckets[n] == NULL)
        s->bucket_bits[n >> 6] &= ~((uint64_t)1 << (n & 63));
}

/* The usable arena with the fewest free pools, or NULL. */
static struct ar_arena *fullest(struct ar_arenas *s)
{
    uint64_t partial = s->bucket_bits[0] & ~(uint64_t)1;     /* 1..63 free */
    if (partial)
        return s->buckets[__builtin_ctzll(partial)];
    return s->buckets[AR_POOLS];                             /* empty ones  */
}

static void dirty_link(struct ar_arenas *s, struct ar_arena *a)
{
    if (a->on_dirty)
        return;
    a->on_dirty = true;
    a->dirty_next = NULL;
    a->dirty_prev = s->dirty_tail;
    if (s->dirty_tail)
        s->dirty_tail->dirty_next = a;
    else
        s->dirty_head = a;
    s->dirty_tail = a;
}

static void dirty_unlink(struct ar_arenas *s, struct ar_arena *a)
{
    if (!a->on_dirty)
        return;
    a->on_dirty = false;
    if (a->dirty_prev)
        a->dirty_prev->dirty_next = a->dirty_next;
    else
        s->dirty_head = a->dirty_next;
    if (a->dirty_next)
        a->dirty_next->dirty_prev = a->dirty_prev;
    else
        s->dirty_tail = a->dirty_prev;
}

/* Purge the dirty pools of a in mask, contiguous runs in one call each.
 * s: the set holding a, or NULL for a cached arena (ar_lock held).
 * `learn`: the hold policy gave them back (a purge by arena_release() or
 * the purger is not a decision to learn from).  Returns pools purged. */
static unsigned purge_mask(struct ar_arenas *s, struct ar_arena *a, uint64_t mask, bool learn)
{
    unsigned total = 0;
    mask &= a->dirty_mask;
    while (mask) {
        unsigned first = (unsigned)__builtin_ctzll(mask);
        uint64_t run = mask >> first;
        unsigned len = ~run ? (unsigned)__builtin_ctzll(~run) : 64 - first;
        size_t size = (size_t)len << AR_POOL_SHIFT;
        const struct ar_backend *b = world.backend;
        if (b->purge == NULL ||
            b->purge(b->ctx, (void *)(a->base + ((uintptr_t)first << AR_POOL_SHIFT)), size) != 0)
            break;
        uint64_t bits = (len == 64 ? ALL_POOLS : (((uint64_t)1 << len) - 1)) << first;
        for (unsigned i = first; i < first + len; i++)
            atomic_fetch_add_explicit(&world.class_purged[a->pools[i].cls], 1, AR_RELAXED);
        mask &= ~bits;
        a->dirty_mask &= ~bits;
        a->purged_mask |= bits;
        if (s != NULL)
            s->dirty_pools -= len;
        total += len;
        atomic_fetch_add_explicit(&world.pools_purged, len, AR_RELAXED);
        atomic_fetch_add_explicit(&world.bytes_purged, size, AR_RELAXED);
    }
    if (s == NULL)
        return total;
    if (a->dirty_mask == 0)
        dirty_unlink(s, a);
    if (learn && total)
        ar_hold_given(&s->pools_hold, total);
    return total;
}

/* Purge the oldest dirty pools until at most `keep` are left. */
static void purge_down_to(struct ar_arenas *s, unsigned keep, bool learn)
{
    struct ar_arena *a = s->dirty_head, *next;
    for (; a != NULL && s->dirty_pools > keep; a = next) {
        next = a->dirty_next;
        purge_mask(s, a, a->dirty_mask, learn);
    }
}

/* ---- arenas in a set ---------------------------------------------------- */

static void attach(struct ar_arenas *s, struct ar_arena *a)
{
    atomic_store_explicit(&a->set, s, memory_order_release);
    s->arenas++;
    s->empty_arenas += a->nfree == AR_POOLS;
    s->pools_in_use += AR_POOLS - a->nfree;
    bucket_insert(s, a);
    unsigned dirty = (unsigned)__builtin_popcountll(a->dirty_mask);
    if (dirty) {
        s->dirty_pools += dirty;
        dirty_link(s, a);
    }
}

static void detach(struct ar_arenas *s, struct ar_arena *a)
{
    bucket_remove(s, a);
    dirty_unlink(s, a);
    s->dirty_pools -= (unsigned)__builtin_popcountll(a->dirty_mask);
    s->empty_arenas -= a->nfree == AR_POOLS;
    s->pools_in_use -= AR_POOLS - a->nfree;
    s->arenas--;
    atomic_store_explicit(&a->set, NULL, AR_RELAXED);
}

void ar_arenas_init(struct ar_arenas *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->next_set = world.sets;
    world.sets = s;
}

/* ---- the world: reserve, cache, release ---------------------------------- */

/* The descriptor pages of released arenas stay resident for the next
 * arenas, up to AR_DESCS_KEPT of them; beyond that they are purged
 * together, contiguous pages in one call. */
#define AR_DESCS_KEPT 64

static void desc_release(struct ar_arena *a)
{
    a->desc_resident = true;
    a->next = world.free_descs;
    world.free_descs = a;
    if (++world.descs_resident <= AR_DESCS_KEPT)
        return;
    void *pages[AR_DESCS_KEPT + 1];
    unsigned n = 0;
    for (struct ar_arena *d = world.free_descs; d != NULL && n <= AR_DESCS_KEPT; d = d->next)
        if (d->desc_resident) {
            d->desc_resident = false;
            pages[n++] = d->pools;
        }
    ar_meta_purge_pages(pages, n);
    world.descs_resident = 0;
}

/* A new arena, or (n > 1) a reservation of n arenas for one huge block,
 * with its header: charged against the limits, registered, counted.
 * ar_lock held.  NULL when the limit, the backend or metadata says no. */
static struct ar_arena *arena_new(size_t n)
{
    struct ar_arena *a = world.free_descs;
    if (a != NULL) {
        world.free_descs = a->next;
        if (a->desc_resident)
            world.descs_resident--;
        else
            ar_meta_unpurge(a->pools);
    } else {
        a = ar_meta_alloc(sizeof(*a));
        if (a == NULL)
            return NULL;
        if ((a->pools = ar_meta_page()) == NULL)
            return NULL;                    /* metadata is exhausted */
    }
    const struct ar_backend *b = world.backend;
    size_t bytes = n * AR_ARENA_SIZE;
    if (!ar_limit_charge(false, bytes)) {   /* the hard limit */
        desc_release(a);
        return NULL;
    }
    void *base = b->reserve(b->ctx, bytes, AR_ARENA_SIZE);
    bool ok = base != NULL && ((uintptr_t)base & (AR_ARENA_SIZE - 1)) == 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = ar_registry_set_arena((uintptr_t)base + i * AR_ARENA_SIZE, a) == 0;
    if (!ok) {
        for (size_t i = 0; base != NULL && i < n; i++)
            ar_registry_set_arena((uintptr_t)base + i * AR_ARENA_SIZE, NULL);
        if (base != NULL)
            b->release(b->ctx, base, bytes);
        ar_limit_credit(false, bytes);
        world.failures++;
        desc_release(a);
        return NULL;
    }
    struct ar_pool *pools = a->pools;
    memset(a, 0, sizeof(*a));
    a->pools = pools;
    memset(pools, 0, AR_POOLS * sizeof(*pools));
    for (unsigned i = 0; i < AR_POOLS; i++)
        pools[i].arena = a;
    a->base = (uintptr_t)base;
    a->free_mask = ALL_POOLS;
    a->nfree = AR_POOLS;
    world.reserved += n;
    world.live += n;
    if (world.live * AR_ARENA_SIZE > world.peak_bytes)
        world.peak_bytes = world.live * AR_ARENA_SIZE;
    return a;
}

static void cache_push(struct ar_arena *a)
{
    a->cached = true;
    a->young = true;
    a->young_mask = 0;
    a->prev = NULL;
    a->next = world.cache;
    if (a->next)
        a->next->prev = a;
    world.cache = a;
    world.cached++;
}

static void cache_remove(struct ar_arena *a)
{
    a->cached = false;
    if (a->prev)
        a->prev->next = a->next;
    else
        world.cache = a->next;
    if (a->next)
        a->next->prev = a->prev;
    world.cached--;
}

/* Give a cached arena back to the OS.  Returns false if the backend keeps
 * it (brk: not at the top of the break). */
static bool release_arena(struct ar_arena *a)
{
    const struct ar_backend *b = world.backend;
    ar_on_arena_release((void *)a->base);
    /* The registry forgets the range before the OS does: once it is
     * unmapped, the system allocator may get it at once, and a lookup must
     * not call its blocks ours.  (No block of ours is left in it.) */
    ar_registry_set_arena(a->base, NULL);
    if (b->release(b->ctx, (void *)a->base, AR_ARENA_SIZE) != 0) {
        ar_registry_set_arena(a->base, a);
        return false;
    }
    cache_remove(a);
    ar_limit_credit(false, AR_ARENA_SIZE);
    world.released++;
    world.live--;
    desc_release(a);
    return true;
}

/* A backend that can release only the topmost region (brk): releasing a
 * lets the cached arena just below it go too, and so on down. */
static unsigned release_downwards(struct ar_arena *a, unsigned keep)
{
    unsigned n = 0;
    while (a != NULL && world.cached > keep && a->cached) {
        uintptr_t below = a->base - AR_ARENA_SIZE;
        if (!release_arena(a))
            break;
        n++;
        a = ar_registry_arena((void *)below);
    }
    return n;
}

/* Release cached arenas beyond `keep`, oldest first (idle_only: only those
 * cached before the purger's previous look).  ar_lock held.  Returns
 * arenas released. */
static unsigned cache_trim(unsigned keep, bool idle_only)
{
    unsigned n = 0;
    if (world.backend->flags & AR_BACKEND_RELEASE_ANY) {
        struct ar_arena *a = world.cache;
        while (a != NULL && a->next != NULL)
            a = a->next;                /* the oldest is last */
        while (a != NULL && world.cached > keep) {
            struct ar_arena *prev = a->prev;
            if ((!idle_only || !a->young) && release_arena(a))
                n++;
            a = prev;
        }
        return n;
    }
    /* Only the topmost arena can go: start from the highest cached one. */
    struct ar_arena *top = NULL;
    for (struct ar_arena *a = world.cache; a != NULL; a = a->next)
        if (top == NULL || a->base > top->base)
            top = a;
    if (top != NULL && (!idle_only || !top->young))
        n = release_downwards(top, keep);
    return n;
}

/* Arenas move between a set and the cache with ar_lock and then the set's
 * lock held, so that a stats snapshot (taken under ar_lock) finds every
 * arena either in a set or in the cache. */

/* Give up a's place in s if it is still an empty arena of s: into the
 * cache, and beyond the cache's budget back to the OS.  Called without
 * s's lock.  `learn`: the hold policy gave it up. */
static void surrender(struct ar_arenas *s, struct ar_arena *a, bool learn)
{
    pthread_mutex_lock(&ar_lock);
    world.locks++;
    pthread_mutex_lock(&s->lock);
    bool gone = atomic_load_explicit(&a->set, AR_RELAXED) == s && a->nfree == AR_POOLS;
    if (gone) {
        unsigned dirty = (unsigned)__builtin_popcountll(a->dirty_mask);
        detach(s, a);
        if (learn && dirty)
            ar_hold_given(&s->pools_hold, dirty);
    }
    pthread_mutex_unlock(&s->lock);
    if (gone) {
        cache_push(a);
        unsigned n;
        if (world.backend->flags & AR_BACKEND_RELEASE_ANY)
            n = cache_trim(cache_budget(), false);
        else
            n = release_downwards(a, cache_budget());
        if (n)
            ar_hold_given(&world.hold, n);
    }
    pthread_mutex_unlock(&ar_lock);
}

/* A set keeps this many free pools (a few arenas' worth) before another
 * heap may take one of its partly used arenas. */
#define AR_STEAL_SURPLUS (2 * AR_POOLS)

/* ar_lock held: the partly used arena with the most free pools (at least
 * half) from a thread heap's set that holds more than AR_STEAL_SURPLUS
 * free pools, detached from that set; or NULL.  Its pools in use stay
 * their heaps' (they go back to whichever set then holds the arena). */
static struct ar_arena *steal(struct ar_arenas *s)
{
    for (struct ar_arenas *t = world.sets; t != NULL; t = t->next_set) {
        if (t == s || t->user)
            continue;
        pthread_mutex_lock(&t->lock);   /* its owner counts under this lock */
        struct ar_arena *a = NULL;
        if (t->arenas * AR_POOLS - t->pools_in_use > AR_STEAL_SURPLUS)
            for (unsigned n = AR_POOLS - 1; n >= AR_POOLS / 2 && a == NULL; n--)
                a = t->buckets[n];
        if (a != NULL)
            detach(t, a);
        pthread_mutex_unlock(&t->lock);
        if (a != NULL) {
            world.stolen++;
            return a;
        }
    }
    return NULL;
}

/* An arena into s: the newest cached one, a partly used one another heap
 * has too many of, or a new reservation.  Returns false if there is none
 * (ENOMEM).  User heaps take only empty arenas: their arenas go back to the
 * OS whole when they are destroyed. */
static bool obtain(struct ar_arenas *s)
{
    pthread_mutex_lock(&ar_lock);
    world.locks++;
    struct ar_arena *a = world.cache;
    if (a != NULL) {
        cache_remove(a);
    } else if (!s->user && (a = steal(s)) != NULL) {
        /* attached below, as it is */
    } else if ((a = arena_new(1)) != NULL) {
        ar_hold_fresh(&world.hold, 1);
    }
    if (a != NULL) {
        pthread_mutex_lock(&s->lock);
        attach(s, a);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&ar_lock);
    return a != NULL;
}

/* Release cached arenas beyond the budget (all: every one).  An arena the
 * backend keeps (brk: not at the top of the break) has its dirty pools
 * purged instead when everything is to go, or when it stayed idle. */
void ar_arena_cache_trim(bool all, bool idle_only)
{
    pthread_mutex_lock(&ar_lock);
    cache_trim(all ? 0 : cache_budget(), idle_only);
    for (struct ar_arena *a = world.cache; a != NULL; a = a->next) {
        if (all || (idle_only && !a->young))
            purge_mask(NULL, a, a->dirty_mask, false);
        a->young = false;
    }
    pthread_mutex_unlock(&ar_lock);
}

/* ---- pools in and out of a set -------------------------------------------- */

static struct ar_pool *take_pool(struct ar_arenas *s, struct ar_arena *a, unsigned cls,
                                 struct ar_heap *owner)
{
    uint64_t pick = a->free_mask & a->dirty_mask;                       /* resident */
    bool resident = pick != 0;
    if (!resident && (pick = a->free_mask & ~a->purged_mask) == 0)      /* untouched */
        pick = a->free_mask;                                            /* purged */
    unsigned i = (unsigned)__builtin_ctzll(pick);
    uint64_t bit = (uint64_t)1 << i;
    bucket_remove(s, a);
    if (a->nfree == AR_POOLS)
        s->empty_arenas--;
    a->free_mask &= ~bit;
    a->young_mask &= ~bit;
    a->purged_mask &= ~bit;
    a->nfree--;
    s->pools_in_use++;
    if (resident) {
        a->dirty_mask &= ~bit;
        s->dirty_pools--;
        if (a->dirty_mask == 0)
            dirty_unlink(s, a);
    } else {
        ar_hold_fresh(&s->pools_hold, 1);   /* pages come fresh from the OS */
    }
    bucket_insert(s, a);
    /* Under the lock, with the mask: stats and validators read them. */
    struct ar_pool *p = &a->pools[i];
    AR_ASSERT(ar_state_get(p) == AR_POOL_FREE, "arena %p hands out pool %p in use\n",
              (void *)a->base, (void *)ar_pool_base(p));
    p->cls = (uint8_t)cls;
    atomic_store_explicit(&p->state, AR_POOL_USED, AR_RELAXED);
    atomic_store_explicit(&p->owner, owner, memory_order_release);
    return p;
}

/* No arena to be had: a free pool of another heap's arena.  The pool is
 * the borrower's; its arena stays in the lender's set, where the pool goes
 * back.  Memory in one heap's arenas is thus never out of reach of the
 * others when the OS gives no more. */
static struct ar_pool *borrow(struct ar_arenas *s, unsigned cls, struct ar_heap *owner)
{
    struct ar_pool *p = NULL;
    pthread_mutex_lock(&ar_lock);
    for (struct ar_arenas *t = world.sets; t != NULL && p == NULL; t = t->next_set) {
        if (t == s || t->user)
            continue;                   /* a user heap's arenas go with it */
        pthread_mutex_lock(&t->lock);
        struct ar_arena *a = fullest(t);
        if (a != NULL)
            p = take_pool(t, a, cls, owner);
        pthread_mutex_unlock(&t->lock);
    }
    if (p != NULL)
        world.borrowed++;
    pthread_mutex_unlock(&ar_lock);
    return p;
}

struct ar_pool *ar_arenas_acquire(struct ar_arenas *s, unsigned cls, struct ar_heap *owner)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct ar_arena *a = fullest(s);
        if (a != NULL) {
            struct ar_pool *p = take_pool(s, a, cls, owner);
            pthread_mutex_unlock(&s->lock);
            return p;
        }
        pthread_mutex_unlock(&s->lock);
        if (!obtain(s))
            return borrow(s, cls, owner);
    }
}

/* ar_lock held: nothing moves, lock the set that holds a. */
static struct ar_arenas *lock_set_of_locked(struct ar_arena *a)
{
    struct ar_arenas *s = atomic_load_explicit(&a->set, AR_RELAXED);
    pthread_mutex_lock(&s->lock);
    return s;
}

bool ar_arenas_has_free(struct ar_arenas *s)
{
    pthread_mutex_lock(&s->lock);
    bool any = fullest(s) != NULL;
    pthread_mutex_unlock(&s->lock);
    return any;
}

/* Lock the set that holds a.  An arena moving between sets (adoption)
 * has none for a moment, under ar_lock: wait for it. */
static struct ar_arenas *lock_set_of(struct ar_arena *a)
{
    for (;;) {
        struct ar_arenas *s = atomic_load_explicit(&a->set, memory_order_acquire);
        if (s != NULL) {
            pthread_mutex_lock(&s->lock);
            if (atomic_load_explicit(&a->set, AR_RELAXED) == s)
                return s;
            pthread_mutex_unlock(&s->lock);
        } else {
            pthread_mutex_lock(&ar_lock);
            pthread_mutex_unlock(&ar_lock);
        }
    }
}

/* Pools `mask` of arena a (set s, locked) come back.  Returns the arena
 * if it is now empty and the policy gives it up (to be surrendered after
 * the lock is dropped), else NULL. */
static struct ar_arena *return_mask(struct ar_arenas *s, struct ar_arena *a, uint64_t mask)
{
    unsigned n = (unsigned)__builtin_popcountll(mask);
    AR_ASSERT(!(a->free_mask & mask), "pool of arena %p returned twice\n", (void *)a->base);
    for (uint64_t m = mask; m; m &= m - 1) {
        struct ar_pool *p = &a->pools[__builtin_ctzll(m)];
        atomic_store_explicit(&p->state, AR_POOL_FREE, AR_RELAXED);
        atomic_store_explicit(&p->owner, NULL, AR_RELAXED);
    }
    bucket_remove(s, a);
    a->free_mask |= mask;
    a->dirty_mask |= mask;
    a->young_mask |= mask;
    a->nfree += n;
    s->pools_in_use -= n;
    s->dirty_pools += n;
    dirty_link(s, a);
    bucket_insert(s, a);
    unsigned budget = dirty_budget(s);
    struct ar_arena *gone = NULL;
    if (a->nfree == AR_POOLS)
        s->empty_arenas++;
    /* Too many empty arenas (the hold may have decayed since they
     * emptied), or too much dirty memory with this one empty: give one up. */
    if (s->empty_arenas > empty_budget(s))
        gone = a->nfree == AR_POOLS ? a : s->buckets[AR_POOLS];
    else if (a->nfree == AR_POOLS && s->dirty_pools > budget)
        gone = a;
    if (gone != a && ar_options.purge == AR_PURGE_EAGER && auto_purge())
        purge_mask(s, a, mask, false);
    else if (s->dirty_pools > budget)
        purge_down_to(s, purge_target(budget), true);
    return gone;
}

void ar_arenas_return(struct ar_pool *p)
{
    struct ar_arena *a = p->arena;
    struct ar_arenas *s = lock_set_of(a);
    struct ar_arena *gone = return_mask(s, a, (uint64_t)1 << ar_pool_index(p));
    pthread_mutex_unlock(&s->lock);
    if (gone != NULL)
        surrender(s, gone, ar_options.purge == AR_PURGE_AUTO);
}

/* ---- large blocks of user heaps ------------------------------------------ */

/* Where in `free` a run of k free pools starts (bit set), or 0. */
static uint64_t run_starts(uint64_t free, unsigned k)
{
    uint64_t m = free;
    for (unsigned i = 1; i < k && m; i++)
        m &= free >> i;
    return m;
}

struct ar_pool *ar_arenas_take_run(struct ar_arenas *s, unsigned k, struct ar_heap *owner)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        for (unsigned n = k; n <= AR_POOLS; n++)
            for (struct ar_arena *a = s->buckets[n]; a != NULL; a = a->next) {
                uint64_t starts = run_starts(a->free_mask, k);
                if (starts == 0)
                    continue;
                unsigned first = (unsigned)__builtin_ctzll(starts);
                uint64_t mask = (k == 64 ? ALL_POOLS : (((uint64_t)1 << k) - 1)) << first;
                unsigned dirty = (unsigned)__builtin_popcountll(a->dirty_mask & mask);
                bucket_remove(s, a);
                if (a->nfree == AR_POOLS)
                    s->empty_arenas--;
                if (dirty < k)
                    ar_hold_fresh(&s->pools_hold, k - dirty);
                a->free_mask &= ~mask;
                a->dirty_mask &= ~mask;
                a->purged_mask &= ~mask;
                a->young_mask &= ~mask;
                a->nfree -= k;
                s->pools_in_use += k;
                s->dirty_pools -= dirty;
                if (a->dirty_mask == 0)
                    dirty_unlink(s, a);
                bucket_insert(s, a);
                for (unsigned i = first; i < first + k; i++) {
                    struct ar_pool *p = &a->pools[i];
                    p->cls = 0;
                    p->nblocks = (uint16_t)(i == first ? k : 0);
                    atomic_store_explicit(&p->state, i == first ? AR_POOL_LARGE : AR_POOL_TAIL,
                                          AR_RELAXED);
                    atomic_store_explicit(&p->owner, owner, memory_order_release);
                }
                pthread_mutex_unlock(&s->lock);
                return &a->pools[first];
            }
        pthread_mutex_unlock(&s->lock);
        if (!obtain(s))
            return NULL;
    }
}

void ar_arenas_return_run(struct ar_pool *head)
{
    struct ar_arena *a = head->arena;
    unsigned k = head->nblocks, first = ar_pool_index(head);
    uint64_t mask = (k == 64 ? ALL_POOLS : (((uint64_t)1 << k) - 1)) << first;
    struct ar_arenas *s = lock_set_of(a);
    struct ar_arena *gone = return_mask(s, a, mask);
    pthread_mutex_unlock(&s->lock);
    if (gone != NULL)
        surrender(s, gone, false);
}

/* A reservation of whole arenas for one block (bytes > an arena): one
 * header, every arena of it mapped to that header in the registry, pool 0
 * LARGE.  Kept on its set's list of huge blocks. */
void *ar_arenas_take_huge(struct ar_arenas *s, size_t bytes, struct ar_heap *owner)
{
    size_t n = (bytes + AR_ARENA_SIZE - 1) / AR_ARENA_SIZE;
    if (n > UINT32_MAX / 2 || n == 0)
        return NULL;
    pthread_mutex_lock(&ar_lock);
    world.locks++;
    struct ar_arena *a = arena_new(n);
    if (a == NULL) {
        pthread_mutex_unlock(&ar_lock);
        return NULL;
    }
    a->huge = (unsigned)n;
    a->free_mask = 0;
    a->nfree = 0;
    a->pools[0].nblocks = 0;
    atomic_store_explicit(&a->pools[0].state, AR_POOL_LARGE, AR_RELAXED);
    atomic_store_explicit(&a->pools[0].owner, owner, memory_order_release);
    pthread_mutex_lock(&s->lock);
    atomic_store_explicit(&a->set, s, memory_order_release);
    a->next = s->huge;
    a->prev = NULL;
    if (s->huge)
        s->huge->prev = a;
    s->huge = a;
    s->huge_arenas += a->huge;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&ar_lock);
    return (void *)a->base;
}

#if ARENA_CHECKED
/* The checked build remembers the ranges of the last AR_TOMBS destroyed
 * heaps' runs and huge blocks: right after the release, the range is
 * reserved again as an inaccessible mapping (only if nobody took it
 * meanwhile), and the registry maps it to a header whose pools are all
 * free and marked destroyed, so a free into it is named, and no one else's
 * block can be there while it is remembered.  No memory is kept.
 * ar_lock held. */
#define AR_TOMBS 32
static struct ar_pool tomb_pools[AR_POOLS];
static struct ar_arena tomb = { .pools = tomb_pools, .destroyed = true };
static struct {
    uintptr_t base;
    size_t bytes;
} tombs[AR_TOMBS];
static unsigned tomb_next;

static void tomb_lay(uintptr_t base, size_t bytes)
{
    void *p = mmap((void *)base, bytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != (void *)base) {            /* taken meanwhile (or an old kernel) */
        if (p != MAP_FAILED)
            munmap(p, bytes);
        return;
    }
    unsigned i = tomb_next++ % AR_TOMBS;
    if (tombs[i].bytes != 0) {          /* forget the oldest: registry first */
        for (size_t off = 0; off < tombs[i].bytes; off += AR_ARENA_SIZE)
            ar_registry_set_arena(tombs[i].base + off, NULL);
        munmap((void *)tombs[i].base, tombs[i].bytes);
    }
    tombs[i].base = base;
    tombs[i].bytes = bytes;
    for (size_t off = 0; off < bytes; off += AR_ARENA_SIZE)
        ar_registry_set_arena(base + off, &tomb);
}
#else
#define tomb_lay(base, bytes) ((void)(base), (void)(bytes))
#endif

/* Give n contiguous arenas starting at first back to the OS in one call
 * (ar_lock held, none in a set or the cache).  Returns false if the
 * backend keeps them (brk, not at the top): the caller caches them. */
static bool release_run(struct ar_arena *first, unsigned n)
{
    const struct ar_backend *b = world.backend;
    size_t bytes = (size_t)n * AR_ARENA_SIZE;
    uintptr_t base = first->base;
    struct ar_arena *run[AR_POOLS];         /* registry first (see release_arena) */
    unsigned done = 0;
    while (done < n) {
        unsigned k = n - done < AR_POOLS ? n - done : AR_POOLS;
        uintptr_t lo = base + (uintptr_t)done * AR_ARENA_SIZE;
        for (unsigned i = 0; i < k; i++) {
            run[i] = ar_registry_arena((void *)(lo + i * AR_ARENA_SIZE));
            ar_on_arena_release((void *)run[i]->base);
            ar_registry_set_arena(run[i]->base, NULL);
        }
        if (b->release(b->ctx, (void *)lo, (size_t)k * AR_ARENA_SIZE) != 0) {
            for (unsigned i = 0; i < k; i++)
                ar_registry_set_arena(run[i]->base, run[i]);
            if (done == 0)
                return false;
            /* part of the run went: the rest stays, cached by the caller's
             * fallback one arena at a time */
            for (unsigned i = 0; i < k; i++)
                cache_push(run[i]);
            break;
        }
        for (unsigned i = 0; i < k; i++)
            desc_release(run[i]);
        tomb_lay(lo, (size_t)k * AR_ARENA_SIZE);
        ar_limit_credit(false, (uint64_t)k * AR_ARENA_SIZE);
        world.released += k;
        world.live -= k;
        done += k;
    }
    (void)bytes;
    return true;
}

static void return_huge(struct ar_arena *a, bool destroyed)
{
    pthread_mutex_lock(&ar_lock);
    world.locks++;
    struct ar_arenas *s = lock_set_of_locked(a);
    if (a->prev)
        a->prev->next = a->next;
    else
        s->huge = a->next;
    if (a->next)
        a->next->prev = a->prev;
    s->huge_arenas -= a->huge;
    atomic_store_explicit(&a->set, NULL, AR_RELAXED);
    atomic_store_explicit(&a->pools[0].state, AR_POOL_FREE, AR_RELAXED);
    pthread_mutex_unlock(&s->lock);
    unsigned n = a->huge;
    const struct ar_backend *b = world.backend;
    ar_on_range_release((void *)a->base, (size_t)n * AR_ARENA_SIZE);
    for (unsigned i = 0; i < n; i++)        /* registry first (see release_arena) */
        ar_registry_set_arena(a->base + (uintptr_t)i * AR_ARENA_SIZE, NULL);
    if (b->release(b->ctx, (void *)a->base, (size_t)n * AR_ARENA_SIZE) == 0) {
        if (destroyed)
            tomb_lay(a->base, (size_t)n * AR_ARENA_SIZE);
        ar_limit_credit(false, (uint64_t)n * AR_ARENA_SIZE);
        world.released += n;
        world.live -= n;
        desc_release(a);
    } else {
        /* brk below the top: the memory stays ours, unused, and its pages
         * are purged; the header keeps it registered so it is never
         * mistaken for the system allocator's. */
        for (unsigned i = 0; i < n; i++)
            ar_registry_set_arena(a->base + (uintptr_t)i * AR_ARENA_SIZE, a);
        if (b->purge != NULL)
            b->purge(b->ctx, (void *)a->base, (size_t)n * AR_ARENA_SIZE);
    }
    pthread_mutex_unlock(&ar_lock);
}


void ar_arenas_return_huge(struct ar_arena *a)
{
    return_huge(a, false);
}

/* A destroyed heap's set: every arena and huge block goes back to the OS
 * at once, adjacent arenas in one call, without looking at a block. */
void ar_arenas_release_all(struct ar_arenas *s)
{
    pthread_mutex_lock(&ar_lock);
    world.locks++;
    pthread_mutex_lock(&s->lock);
    while (s->huge != NULL) {
        struct ar_arena *a = s->huge;
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&ar_lock);
        return_huge(a, true);
        pthread_mutex_lock(&ar_lock);
        pthread_mutex_lock(&s->lock);
    }
    for (unsigned n = 0; n <= AR_POOLS; n++)
        while (s->buckets[n] != NULL) {
            /* From this arena, down to the lowest adjacent arena of s, then
             * up: one run, detached and released in one call. */
            struct ar_arena *lo = s->buckets[n], *x;
            while (lo->base >= AR_ARENA_SIZE &&
                   (x = ar_registry_arena((void *)(lo->base - AR_ARENA_SIZE))) != NULL &&
                   atomic_load_explicit(&x->set, AR_RELAXED) == s && x->huge == 0)
                lo = x;
            unsigned len = 0;
            for (x = lo; x != NULL && atomic_load_explicit(&x->set, AR_RELAXED) == s &&
                         x->huge == 0;
                 x = ar_registry_arena((void *)(x->base + AR_ARENA_SIZE))) {
                detach(s, x);
                for (unsigned i = 0; i < AR_POOLS; i++) {
                    atomic_store_explicit(&x->pools[i].state, AR_POOL_FREE, AR_RELAXED);
                    atomic_store_explicit(&x->pools[i].owner, NULL, AR_RELAXED);
                }
                x->nfree = AR_POOLS;
                x->free_mask = ALL_POOLS;
                x->dirty_mask = x->purged_mask = x->young_mask = 0;
                len++;
            }
            if (!release_run(lo, len))
                for (unsigned i = 0; i < len; i++) {   /* brk: cache what stays, */
                    struct ar_arena *c =               /* its pages still resident */
                        ar_registry_arena((void *)(lo->base + (uintptr_t)i * AR_ARENA_SIZE));
                    c->dirty_mask = ALL_POOLS;
                    cache_push(c);
                }
        }
    s->pools_hold = (struct ar_hold){0};
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&ar_lock);
}

/* Give back what the set holds free: every dirty pool, and (all) every
 * empty arena, or (!all) the empty arenas and dirty pools beyond what the
 * policy keeps now.  Not learned from. */
void ar_arenas_give_back(struct ar_arenas *s, bool all)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct ar_arena *a = s->buckets[AR_POOLS];
        bool over = all || s->empty_arenas > empty_budget(s) || s->dirty_pools > dirty_budget(s);
        if (a == NULL || !over) {
            if (all)
                purge_down_to(s, 0, false);
            else if (s->dirty_pools > dirty_budget(s))
                purge_down_to(s, dirty_budget(s), false);
            pthread_mutex_unlock(&s->lock);
            return;
        }
        pthread_mutex_unlock(&s->lock);
        surrender(s, a, false);
    }
}

/* The purger: purge the dirty pools that stayed free since its previous
 * look, and give up empty arenas that did. */
void ar_arenas_purge_idle(struct ar_arenas *s)
{
    struct ar_arena *idle[8];
    unsigned n;
    do {
        n = 0;
        pthread_mutex_lock(&s->lock);
        for (struct ar_arena *a = s->buckets[AR_POOLS]; a != NULL && n < 8; a = a->next)
            if ((a->young_mask & a->free_mask) == 0)
                idle[n++] = a;
        if (n == 0) {
            for (struct ar_arena *a = s->dirty_head, *next; a != NULL; a = next) {
                next = a->dirty_next;
                purge_mask(s, a, a->dirty_mask & ~a->young_mask, false);
            }
            for (unsigned k = 1; k <= AR_POOLS; k++)
                for (struct ar_arena *a = s->buckets[k]; a != NULL; a = a->next)
                    a->young_mask = 0;
        }
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < n; i++)
            surrender(s, idle[i], false);
    } while (n != 0);
}

/* Move every arena of src into dst (a dead heap adopted by a live one),
 * under ar_lock, one set lock at a time. */
void ar_arenas_move(struct ar_arenas *dst, struct ar_arenas *src)
{
    struct ar_arena *moved = NULL;
    pthread_mutex_lock(&ar_lock);
    world.locks++;
    pthread_mutex_lock(&src->lock);
    uint32_t learned = src->pools_hold.learned;
    for (unsigned n = 0; n <= AR_POOLS; n++)
        while (src->buckets[n] != NULL) {
            struct ar_arena *a = src->buckets[n];
            detach(src, a);
            a->next = moved;
            moved = a;
        }
    pthread_mutex_unlock(&src->lock);

    pthread_mutex_lock(&dst->lock);
    for (struct ar_arena *a = moved, *next; a != NULL; a = next) {
        next = a->next;
        attach(dst, a);
    }
    if (learned > dst->pools_hold.learned)
        dst->pools_hold.learned = learned;
    pthread_mutex_unlock(&dst->lock);
    pthread_mutex_unlock(&ar_lock);
}

/* ---- counts and checks ------------------------------------------------------ */

/* A user heap's blocks, pools and arenas: the pools it owns wherever they
 * are (it may have borrowed some from other heaps' arenas), its own arenas
 * and huge blocks.  ar_lock, then each set's lock in turn. */
void ar_arenas_owner_stats(struct ar_arenas *own, const struct ar_heap *owner,
                           struct arena_heap_stats *st)
{
    pthread_mutex_lock(&ar_lock);
    for (struct ar_arenas *s = world.sets; s != NULL; s = s->next_set) {
        pthread_mutex_lock(&s->lock);
        for (unsigned n = 0; n < AR_POOLS; n++)         /* arenas with a pool in use */
            for (struct ar_arena *a = s->buckets[n]; a != NULL; a = a->next)
                for (unsigned i = 0; i < AR_POOLS; i++) {
                    struct ar_pool *p = &a->pools[i];
                    unsigned state = ar_state_get(p);
                    if (state == AR_POOL_FREE ||
                        atomic_load_explicit(&p->owner, AR_RELAXED) != owner)
                        continue;
                    st->pools++;
                    if (state == AR_POOL_TAIL)
                        continue;
                    if (state == AR_POOL_LARGE) {
                        st->large_live++;
                        st->blocks_live++;
                        st->bytes_live += (uint64_t)p->nblocks * AR_POOL_SIZE;
                    } else {
                        uint32_t live = ar_pool_live(p), nblocks = ar_class_blocks(p->cls);
                        live = live < nblocks ? live : nblocks;
                        st->blocks_live += live;
                        st->bytes_live += (uint64_t)live * ar_class_size(p->cls);
                    }
                }
        if (s == own) {
            for (struct ar_arena *a = s->huge; a != NULL; a = a->next) {
                st->large_live++;
                st->blocks_live++;
                st->bytes_live += (uint64_t)a->huge * AR_ARENA_SIZE;
            }
            st->arenas = s->arenas + s->huge_arenas;
            st->bytes_mapped = st->arenas * AR_ARENA_SIZE;
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&ar_lock);
}

static void count_free_pools(struct ar_arena *a, struct arena_stats *st)
{
    st->pools_total += AR_POOLS;
    st->pools_free += a->nfree;
    st->pools_free_dirty += (uint64_t)__builtin_popcountll(a->dirty_mask);
    st->pools_free_purged += (uint64_t)__builtin_popcountll(a->free_mask & ~a->dirty_mask);
}

/* Set lock held.  Pools held by heaps are classified by their counters,
 * read relaxed (a moment old if their owner is working).  Blocks in thread
 * caches still count as handed out here; ar_heaps_stats takes them out. */
void ar_arenas_count(struct ar_arenas *s, struct ar_counts *k)
{
    struct arena_stats *st = &k->st;
    for (unsigned n = 0; n <= AR_POOLS; n++)
        for (struct ar_arena *a = s->buckets[n]; a != NULL; a = a->next) {
            count_free_pools(a, st);
            if (a->nfree == AR_POOLS)
                st->arenas_empty++;
            for (unsigned i = 0; i < AR_POOLS; i++) {
                if (a->free_mask & ((uint64_t)1 << i))
                    continue;
                struct ar_pool *p = &a->pools[i];
                unsigned state = ar_state_get(p);
                if (state == AR_POOL_LARGE || state == AR_POOL_TAIL) {
                    st->pools_large++;          /* a user heap's large block */
                    st->heap_large_live += state == AR_POOL_LARGE;
                    continue;
                }
                struct arena_class_stats *c = &k->cls[p->cls];
                uint32_t live = ar_pool_live(p), nblocks = ar_class_blocks(p->cls);
                if (live > nblocks)
                    live = nblocks;             /* a moment old: keep it sane */
                if (state == AR_POOL_FULL) {
                    st->pools_full++;
                    c->pools_full++;
                } else {
                    if (live == 0)
                        st->pools_empty++;
                    else
                        st->pools_used++;
                    c->pools_partial++;
                }
                st->blocks_live_class[p->cls] += live;
                c->blocks_live += live;
                c->blocks_free += nblocks - live;
                c->bytes_resident += AR_POOL_SIZE;
                c->occupancy[live * 8 / nblocks < 8 ? live * 8 / nblocks : 7]++;
            }
        }
    for (struct ar_arena *a = s->huge; a != NULL; a = a->next) {
        st->pools_total += (uint64_t)a->huge * AR_POOLS;
        st->pools_large += (uint64_t)a->huge * AR_POOLS;
        st->heap_large_live++;
    }
}

/* ar_lock held. */
void ar_arena_counts(struct ar_counts *k)
{
    struct arena_stats *st = &k->st;
    st->backend = world.backend->name;
    st->arenas_reserved = world.reserved;
    st->arenas_released = world.released;
    st->arenas_live = world.live;
    st->arenas_empty += world.cached;
    st->bytes_mapped = world.live * AR_ARENA_SIZE;
    st->bytes_mapped_peak = world.peak_bytes;
    st->reserve_failures = world.failures;
    st->locks_global += world.locks;
    st->pools_borrowed = world.borrowed;
    st->arenas_moved = world.stolen;
    st->pools_purged = atomic_load_explicit(&world.pools_purged, AR_RELAXED);
    st->bytes_purged = atomic_load_explicit(&world.bytes_purged, AR_RELAXED);
    for (unsigned c = 0; c < AR_NCLASS; c++)
        k->cls[c].pools_purged = atomic_load_explicit(&world.class_purged[c], AR_RELAXED);
    for (struct ar_arena *a = world.cache; a != NULL; a = a->next)
        count_free_pools(a, st);
    struct ar_syscalls c = {0};
    if (world.backend->calls != NULL)
        world.backend->calls(world.backend->ctx, &c);
    uint64_t meta_mmap, meta_madvise;   /* libarena's own metadata */
    ar_meta_calls(&meta_mmap, &meta_madvise);
    st->calls_mmap = c.mmap + meta_mmap;
    st->calls_munmap = c.munmap;
    st->calls_brk = c.brk;
    st->calls_madvise = c.madvise + meta_madvise;
}

/* ---- census ------------------------------------------------------------------ */

struct census_walk {
    struct ar_census_arena *out;
    size_t max, n;
};

static void census_arena(struct ar_arena *a, void *arg)
{
    struct census_walk *w = arg;
    if (a->destroyed)
        return;                         /* a destroyed heap's range (checked build) */
    if (w->n++ >= w->max)
        return;
    struct ar_census_arena *e = &w->out[w->n - 1];
    e->base = a->base;
    struct ar_arenas *s = atomic_load_explicit(&a->set, AR_RELAXED);
    if (s != NULL)
        pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < AR_POOLS; i++) {
        struct ar_pool *p = &a->pools[i];
        struct ar_census_pool *c = &e->pool[i];
        unsigned state = ar_state_get(p);
        c->owner = atomic_load_explicit(&p->owner, AR_RELAXED);
        c->cls = p->cls;
        c->live = 0;
        c->bytes = 0;
        if (a->huge) {
            c->state = i == 0 ? AR_CENSUS_HUGE : AR_POOL_TAIL;
            c->live = i == 0;
            c->bytes = a->huge > UINT32_MAX / AR_ARENA_SIZE ? UINT32_MAX
                                                            : a->huge * (uint32_t)AR_ARENA_SIZE;
        } else if (a->free_mask & ((uint64_t)1 << i)) {
            c->state = (a->dirty_mask >> i) & 1 ? AR_CENSUS_FREE_DIRTY : AR_CENSUS_FREE_PURGED;
            c->owner = NULL;
        } else if (state == AR_POOL_LARGE || state == AR_POOL_TAIL) {
            c->state = (uint8_t)state;
            c->live = state == AR_POOL_LARGE;
            c->bytes = (uint32_t)p->nblocks * (uint32_t)AR_POOL_SIZE;
        } else {
            uint32_t live = ar_pool_live(p), nblocks = ar_class_blocks(p->cls);
            c->state = (uint8_t)state;
            c->live = live < nblocks ? live : nblocks;  /* a moment old: keep it sane */
            c->bytes = (uint32_t)ar_class_size(p->cls);
        }
    }
    if (s != NULL)
        pthread_mutex_unlock(&s->lock);
}

size_t ar_census(struct ar_census_arena *out, size_t max)
{
    struct census_walk w = { out, max, 0 };
    pthread_mutex_lock(&ar_lock);
    ar_registry_walk(census_arena, &w);
    pthread_mutex_unlock(&ar_lock);
    return w.n;
}

uint64_t ar_arena_bytes_given_back(void)
{
    pthread_mutex_lock(&ar_lock);
    uint64_t n = world.released * AR_ARENA_SIZE +
                 atomic_load_explicit(&world.bytes_purged, AR_RELAXED);
    pthread_mutex_unlock(&ar_lock);
    return n;
}

static _Noreturn void broken(const struct ar_arena *a, const char *what)
{
    ar_fatal("libarena: invariant violated: arena %p: %s\n", (void *)a->base, what);
}

static void validate_arena(struct ar_arenas *s, struct ar_arena *a)
{
    if (atomic_load_explicit(&a->set, AR_RELAXED) != s)
        broken(a, "not in the set that holds it");
    if (ar_registry_arena((void *)a->base) != a)
        broken(a, "the registry does not map it to its header");
    if ((unsigned)__builtin_popcountll(a->free_mask) != a->nfree)
        broken(a, "nfree is not the number of free pools");
    if ((a->dirty_mask | a->purged_mask) & ~a->free_mask)
        broken(a, "a pool in use is marked dirty or purged");
    if (a->dirty_mask & a->purged_mask)
        broken(a, "a pool is both dirty and purged");
    if (a->on_dirty != (a->dirty_mask != 0))
        broken(a, "on the dirty list iff it has dirty pools");
    for (unsigned i = 0; i < AR_POOLS; i++) {
        struct ar_pool *p = &a->pools[i];
        bool free = (a->free_mask >> i) & 1;
        if (p->arena != a)
            broken(a, "a pool descriptor points to another arena");
        if (free != (ar_state_get(p) == AR_POOL_FREE))
            broken(a, "free mask and pool state disagree");
        if (free && (ar_registry_map(ar_pool_base(p)) != 0 ||
                     atomic_load_explicit(&p->owner, AR_RELAXED) != NULL))
            broken(a, "a free pool has an owner or a size class in the registry");
        if (!free && atomic_load_explicit(&p->owner, AR_RELAXED) == NULL)
            broken(a, "a pool in use has no owner");
        if (ar_state_get(p) == AR_POOL_LARGE) {
            if (p->nblocks == 0 || i + p->nblocks > AR_POOLS)
                broken(a, "a large block's run does not fit its arena");
            for (unsigned j = i + 1; j < i + p->nblocks; j++)
                if (ar_state_get(&a->pools[j]) != AR_POOL_TAIL)
                    broken(a, "a large block's run has a pool that is not its tail");
        }
    }
}

/* Set lock held: every arena, the buckets and the set's counters. */
void ar_arenas_validate(struct ar_arenas *s)
{
    unsigned arenas = 0, empty = 0, in_use = 0, dirty = 0;
    for (unsigned n = 0; n <= AR_POOLS; n++) {
        bool listed = (s->bucket_bits[n >> 6] >> (n & 63)) & 1;
        if (listed != (s->buckets[n] != NULL))
            ar_fatal("libarena: invariant violated: bucket %u and its bit disagree\n", n);
        for (struct ar_arena *a = s->buckets[n]; a != NULL; a = a->next) {
            if (a->nfree != n)
                broken(a, "in the bucket of another free-pool count");
            validate_arena(s, a);
            arenas++;
            empty += n == AR_POOLS;
            in_use += AR_POOLS - n;
            dirty += (unsigned)__builtin_popcountll(a->dirty_mask);
        }
    }
    unsigned huge = 0;
    for (struct ar_arena *a = s->huge; a != NULL; a = a->next) {
        if (atomic_load_explicit(&a->set, AR_RELAXED) != s || a->huge == 0 ||
            ar_state_get(&a->pools[0]) != AR_POOL_LARGE)
            broken(a, "a huge block's reservation out of place");
        for (unsigned i = 0; i < a->huge; i++)
            if (ar_registry_arena((void *)(a->base + (uintptr_t)i * AR_ARENA_SIZE)) != a)
                broken(a, "the registry does not map a huge block's arena to its header");
        huge += a->huge;
    }
    if (huge != s->huge_arenas)
        ar_fatal("libarena: invariant violated: %u arenas in huge blocks, %u counted\n", huge,
                 s->huge_arenas);
    unsigned on_list = 0;
    for (struct ar_arena *a = s->dirty_head; a != NULL; a = a->dirty_next)
        on_list += (unsigned)__builtin_popcountll(a->dirty_mask);
    if (arenas != s->arenas || empty != s->empty_arenas || in_use != s->pools_in_use ||
        dirty != s->dirty_pools || on_list != dirty)
        ar_fatal("libarena: invariant violated: arena set counts %u arenas, %u empty, %u pools "
                 "in use, %u dirty; its arenas say %u, %u, %u, %u (%u on the dirty list)\n",
                 s->arenas, s->empty_arenas, s->pools_in_use, s->dirty_pools, arenas, empty,
                 in_use, dirty, on_list);
}

/* ar_lock held: the cache of empty arenas. */
void ar_arena_validate_cache(void)
{
    unsigned n = 0;
    for (struct ar_arena *a = world.cache; a != NULL; a = a->next) {
        if (!a->cached || atomic_load_explicit(&a->set, AR_RELAXED) != NULL ||
            a->nfree != AR_POOLS)
            broken(a, "a cached arena is held by a set or not empty");
        if (ar_registry_arena((void *)a->base) != a)
            broken(a, "the registry does not map it to its header");
        n++;
    }
    if (n != world.cached)
        ar_fatal("libarena: invariant violated: %u arenas cached, %u counted\n", n, world.cached);
}
