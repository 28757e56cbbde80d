/*
 * Pools: carving blocks and taking back remote frees.
 *
 * A pool holds blocks of one size class.  Blocks never handed out are
 * carved lazily from a bump index (`carved`) in small batches onto the free
 * list, so a pool that serves a few blocks touches a few cache lines.  Freed
 * blocks go on the owner's free list (same thread) or on the atomic remote
 * list (other threads), which the owner takes over in one exchange when
 * its free list runs dry.
 *
 * Freed blocks reach a pool when a thread cache is flushed (or at once
 * when the cache is off).
 *
 * Pool state machine (owner's view, see docs/design.md):
 *
 *          acquire          head of the class list (holds one extra count)
 *   FREE ----------> CURRENT <--------------------------+
 *    ^                  |  nothing left to hand out      | the list ran dry
 *    |                  v                                | ahead of it
 *    |                FULL --- a block comes back ---> USED
 *    |                                                   |
 *    +------------- last block back (not the current) ---+
 *
 *   CURRENT/USED/FULL --(owner thread exits, blocks live)--> ORPHAN
 *   ORPHAN --(last block back, under the lock)--> FREE
 */
#include "check.h"
#include "internal.h"

#define AR_CARVE_BATCH 16u

struct ar_pool ar_pool_none;

void ar_pool_init(struct ar_pool *p, unsigned cls, struct ar_heap *h)
{
    p->free = NULL;
    ar_used_set(p, 0);
    p->cls = (uint8_t)cls;
    atomic_store_explicit(&p->arena->cls[ar_pool_index(p)], (uint8_t)cls, AR_RELAXED);
    p->nblocks = (uint16_t)(AR_POOL_SIZE / ar_class_size(cls));
    p->carved = 0;
    ar_state_set(p, AR_POOL_USED);
    p->prev = p->next = NULL;
    atomic_store_explicit(&p->remote, 0, AR_RELAXED);
    atomic_store_explicit(&p->remote_count, 0, AR_RELAXED);
    atomic_store_explicit(&p->owner, h, memory_order_release);
}

/* Take over the remote list, leaving `keep` (0, or the ORPHAN bit) in its
 * place.  Returns the number of blocks moved to the local free list. */
unsigned ar_pool_collect(struct ar_pool *p, uintptr_t keep)
{
    uintptr_t r = atomic_exchange_explicit(&p->remote, keep, memory_order_acquire);
    struct ar_block *head = (struct ar_block *)(r & ~AR_REMOTE_ORPHAN);
    if (head == NULL)
        return 0;
    uintptr_t base = (uintptr_t)ar_pool_base(p);
    unsigned n = 0;
    struct ar_block *tail = head, *next;
    for (;;) {
        if ((uintptr_t)tail - base >= AR_POOL_SIZE || ++n > p->nblocks)
            ar_fatal("libarena: corrupted remote free list in pool %p (size class %zu) at %p\n",
                     (void *)base, ar_class_size(p->cls), (void *)tail);
        if ((next = ar_next_get(tail)) == NULL)
            break;
        tail = next;
    }
    ar_next_set(tail, p->free);
    p->free = head;
    ar_used_set(p, ar_used_get(p) - n);
    atomic_fetch_sub_explicit(&p->remote_count, n, AR_RELAXED);
    return n;
}

/* Owner: make p->free non-empty if the pool has any block left.  Remote
 * frees first (they are memory already in use), then a batch of carving. */
bool ar_pool_refill(struct ar_pool *p)
{
    if (p->free != NULL)
        return true;
    if (atomic_load_explicit(&p->remote, AR_RELAXED) != 0 && ar_pool_collect(p, 0) > 0)
        return true;
    if (p->carved >= p->nblocks)
        return false;
    size_t size = ar_class_size(p->cls);
    unsigned n = p->nblocks - p->carved;
    if (n > AR_CARVE_BATCH)
        n = AR_CARVE_BATCH;
    char *first = ar_pool_base(p) + (size_t)p->carved * size;
    char *b = first + (size_t)(n - 1) * size;
    struct ar_block *next = NULL;
    for (unsigned i = 0; i < n; i++, b -= size) {     /* last to first */
        ar_on_carve(p, b);
        ar_next_set((struct ar_block *)b, next);
        next = (struct ar_block *)b;
    }
    p->free = (struct ar_block *)first;
    p->carved = (uint16_t)(p->carved + n);
    return true;
}
