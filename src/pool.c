/*
 * Pools: one size class in 4 KiB, its state machine, carving and free
 * lists.  Every pool state transition and every decoding of a pool's
 * counters happens here, behind named functions; heap.c decides when.
 *
 * Blocks never handed out are carved lazily from a bump index (`carved`)
 * straight into a thread cache: carving writes nothing into the block.
 * A block that comes back to its pool goes on the owner's local free list
 * (`free`, the owner's thread) or on the atomic remote list (`remote`, any
 * other thread), which the owner takes over in one exchange when its local
 * list runs dry.
 *
 * Free-list links are encoded: the word stored in a free block is
 *     next ^ (address of the block) ^ secret
 * with a per-process random secret, so a write after free cannot plant a
 * chosen address, and the same forged word means something else in every
 * block.  Every link followed is decoded and checked: it must be NULL or a
 * block of this pool, aligned to the class, already carved.  A failure
 * stops the process with "libarena: corrupted free list".
 *
 * Pool state machine (owner's view; docs/design.md has the long version):
 *
 *          acquire            head of the class list (holds one extra count)
 *   FREE ----------> CURRENT <------------------------------+
 *    ^                  |  nothing left to hand out          | the list ran
 *    |                  v                                    | dry ahead of it
 *    |                FULL --- a block comes back -------> USED
 *    |                                                       |
 *    +---------------- last block back (not the current) ----+
 *
 * Key invariant (ar_pool_validate): for the owner, at any moment
 *     handed out + on the local free list + never carved == nblocks
 * where "handed out" is `used` without the hold and the FULL bias, and
 * counts blocks in thread caches and blocks waiting on the remote list.
 */
#include <errno.h>
#include <sys/random.h>
#include <time.h>

#include "check.h"
#include "internal.h"

static uintptr_t secret;

void ar_pool_secret_init(void)
{
    uintptr_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uintptr_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uintptr_t)&ts ^ (uintptr_t)&secret;
    }
    secret = s | 1;                     /* never 0: an all-zero word is not a link */
}

/* Divisibility by the class size without a division (the offset is below
 * 4096): off % d == 0  <=>  off * M <= M - 1,  M = 2^64 / d rounded up. */
static const uint64_t class_magic[AR_NCLASS] = {
#define M(c) (UINT64_MAX / (16u * (c)) + 1)
    M(1), M(2), M(3), M(4), M(5), M(6), M(7), M(8), M(9), M(10), M(11),
    M(12), M(13), M(14), M(15), M(16), M(17), M(18), M(19), M(20), M(21), M(22),
    M(23), M(24), M(25), M(26), M(27), M(28), M(29), M(30), M(31), M(32),
#undef M
};

static AR_COLD _Noreturn void corrupted(const struct ar_pool *p, const void *at, const void *link,
                                        const char *list)
{
    ar_fatal("libarena: corrupted free list (%s) in pool %p (size class %zu): "
             "the link in %p points to %p\n",
             list, (void *)ar_pool_base(p), ar_class_size(p->cls), at, link);
}

/* Is n a block of p: inside it, aligned to its class, already carved? */
static inline bool is_block(const struct ar_pool *p, uintptr_t n)
{
    uintptr_t off = n - (uintptr_t)ar_pool_base(p);
    return off < (uintptr_t)p->carved * ar_class_size(p->cls) &&
           off * class_magic[p->cls] <= class_magic[p->cls] - 1;
}

/* The link of b, decoded and checked. */
static inline void *link_get(const struct ar_pool *p, void *b, const char *list)
{
    uintptr_t n = ar_link_read(b) ^ (uintptr_t)b ^ secret;
    if (n != 0 && !is_block(p, n))
        corrupted(p, b, (void *)n, list);
    return (void *)n;
}

static inline void link_set(void *b, const void *next)
{
    ar_link_write(b, (uintptr_t)next ^ (uintptr_t)b ^ secret);
}

/* ---- state transitions ------------------------------------------------ */

static inline void used_set(struct ar_pool *p, uint32_t v)
{
    atomic_store_explicit(&p->used, v, AR_RELAXED);
}

static inline void state_set(struct ar_pool *p, unsigned s)
{
    atomic_store_explicit(&p->state, (uint8_t)s, AR_RELAXED);
}

/* A pool just taken from its arena (class, USED and owner are set under
 * the set's lock): the rest of it, before the heap puts it on a list. */
void ar_pool_init(struct ar_pool *p, unsigned cls, struct ar_heap *owner)
{
    AR_ASSERT(ar_state_get(p) == AR_POOL_USED && p->cls == cls &&
                  atomic_load_explicit(&p->owner, AR_RELAXED) == owner,
              "pool %p was not taken for class %u\n", (void *)ar_pool_base(p), cls);
    (void)owner;
    p->free = NULL;
    used_set(p, 0);
    p->nblocks = (uint16_t)ar_class_blocks(cls);
    p->carved = 0;
    p->prev = p->next = NULL;
    atomic_store_explicit(&p->remote, 0, AR_RELAXED);
    atomic_store_explicit(&p->remote_count, 0, AR_RELAXED);
}

/* -> CURRENT: the head of its class list carries the heap's hold, so the
 * count of the pool refills take from never reaches 0 and it is not given
 * back between a loop's free and its next allocation. */
void ar_pool_make_current(struct ar_pool *p)
{
    AR_ASSERT(ar_state_get(p) == AR_POOL_USED, "pool %p made current from state %u\n",
              (void *)ar_pool_base(p), ar_state_get(p));
    used_set(p, ar_used_get(p) + 1);
    state_set(p, AR_POOL_CURRENT);
}

/* CURRENT -> USED: the hold is dropped. */
void ar_pool_drop_current(struct ar_pool *p)
{
    AR_ASSERT(ar_state_get(p) == AR_POOL_CURRENT && ar_used_get(p) >= 1,
              "pool %p drops a hold it does not have\n", (void *)ar_pool_base(p));
    used_set(p, ar_used_get(p) - 1);
    state_set(p, AR_POOL_USED);
}

void ar_pool_make_used(struct ar_pool *p)
{
    state_set(p, AR_POOL_USED);
}

/* USED -> FULL: nothing on the local list and nothing to carve. */
void ar_pool_make_full(struct ar_pool *p)
{
    AR_ASSERT(ar_state_get(p) == AR_POOL_USED && p->free == NULL && p->carved == p->nblocks,
              "pool %p made full with blocks left\n", (void *)ar_pool_base(p));
    used_set(p, ar_used_get(p) - AR_FULL_BIAS);
    state_set(p, AR_POOL_FULL);
}

/* FULL -> USED: a block came back. */
void ar_pool_unfull(struct ar_pool *p)
{
    AR_ASSERT(ar_state_get(p) == AR_POOL_FULL, "pool %p is not full\n", (void *)ar_pool_base(p));
    used_set(p, ar_used_get(p) + AR_FULL_BIAS);
    state_set(p, AR_POOL_USED);
}

/* ---- blocks out --------------------------------------------------------- */

/* Take up to max blocks into end[-1], end[-2], ... (a thread cache fills
 * from its end): the local list first, then remote frees, then carving.
 * Carved blocks are laid out so that the lowest address is popped first.
 * Returns how many; `used` grows by as many. */
unsigned ar_pool_take(struct ar_pool *p, ar_slot *end, unsigned max)
{
    unsigned n = 0;
    while (n < max) {
        void *b = p->free;
        if (b != NULL) {
            void *next = link_get(p, b, "local");
            if (ar_unlikely(next == b))
                corrupted(p, b, next, "local, a cycle: a block freed twice?");
            p->free = next;
            atomic_store_explicit(&end[-(int)++n], b, AR_RELAXED);
            continue;
        }
        if (atomic_load_explicit(&p->remote, AR_RELAXED) != 0 && ar_pool_collect(p) > 0)
            continue;
        unsigned k = p->nblocks - p->carved;
        if (k == 0)
            break;
        if (k > max - n)
            k = max - n;
        size_t size = ar_class_size(p->cls);
        char *first = ar_pool_base(p) + (size_t)p->carved * size;
        ar_slot *slot = end - (n + k);
        for (unsigned i = 0; i < k; i++) {
            ar_on_carve(first + i * size, size);
            atomic_store_explicit(&slot[i], first + i * size, AR_RELAXED);
        }
        p->carved = (uint16_t)(p->carved + k);
        n += k;
    }
    used_set(p, ar_used_get(p) + n);
    return n;
}

/* One block, or NULL if the pool has none left. */
void *ar_pool_take_one(struct ar_pool *p)
{
    ar_slot b;
    return ar_pool_take(p, &b + 1, 1) == 1 ? atomic_load_explicit(&b, AR_RELAXED) : NULL;
}

/* ---- blocks back ---------------------------------------------------------- */

static AR_COLD _Noreturn void double_free(const struct ar_pool *p, const void *b)
{
    ar_fatal("libarena: double free of %p (size class %zu)\n", b, ar_class_size(p->cls));
}

/* The owner gives n >= 1 blocks of p back (a thread cache's flush finds
 * them side by side): one count update and one check for them all.
 * Returns the new `used`: 0 means the pool is now empty (never for the current
 * pool: its hold), and a value at or below 0 as int32_t means it was FULL
 * (biased).
 *
 * A double free is caught here when it leaves fewer blocks handed out
 * than wait on the remote list: every block on that list was handed out
 * once, and remote_count is raised before a block is pushed, so a correct
 * program never sees it above the blocks out. */
uint32_t ar_pool_push_local(struct ar_pool *p, void *const *b, unsigned n)
{
    uint32_t used = ar_used_get(p) - n;
    uint32_t out = used;
    unsigned state = ar_state_get(p);
    if (state == AR_POOL_FULL)
        out += AR_FULL_BIAS;
    else if (state == AR_POOL_CURRENT)
        out -= 1;
    if (ar_unlikely((int32_t)out < (int32_t)atomic_load_explicit(&p->remote_count, AR_RELAXED)))
        double_free(p, b[n - 1]);
    void *head = p->free;
    for (unsigned i = 0; i < n; i++) {
        link_set(b[i], head);
        head = b[i];
    }
    p->free = head;
    used_set(p, used);
    return used;
}

/* Any other thread gives b back: one compare-and-swap.  Returns true if
 * the remote list was empty, i.e. the owner may need a hint. */
bool ar_pool_push_remote(struct ar_pool *p, void *b)
{
    uintptr_t old = atomic_load_explicit(&p->remote, AR_RELAXED);
    atomic_fetch_add_explicit(&p->remote_count, 1, AR_RELAXED);
    do {
        if (ar_unlikely(old == (uintptr_t)b))
            double_free(p, b);
        link_set(b, (void *)old);
    } while (!atomic_compare_exchange_weak_explicit(&p->remote, &old, (uintptr_t)b,
                                                    memory_order_release, AR_RELAXED));
    return old == 0;
}

/* Owner: move the remote list to the local list.  Returns how many. */
unsigned ar_pool_collect(struct ar_pool *p)
{
    void *head = (void *)atomic_exchange_explicit(&p->remote, 0, memory_order_acquire);
    if (head == NULL)
        return 0;
    if (!is_block(p, (uintptr_t)head))
        corrupted(p, &p->remote, head, "remote");
    unsigned n = 1;
    void *tail = head, *next;
    while ((next = link_get(p, tail, "remote")) != NULL) {
        if (next == tail || ++n > p->nblocks)
            corrupted(p, tail, next, "remote, a cycle: a block freed twice?");
        tail = next;
    }
    link_set(tail, p->free);
    p->free = head;
    used_set(p, ar_used_get(p) - n);
    atomic_fetch_sub_explicit(&p->remote_count, n, AR_RELAXED);
    return n;
}

/* ---- counts --------------------------------------------------------------- */

/* Blocks handed out and not given back (blocks in thread caches count),
 * without those waiting on the remote list.  Any thread, relaxed: a moment
 * old while the owner works. */
uint32_t ar_pool_live(const struct ar_pool *p)
{
    uint32_t used = ar_used_get(p);
    unsigned state = ar_state_get(p);
    if (state == AR_POOL_FULL)
        used += AR_FULL_BIAS;
    if (state == AR_POOL_CURRENT && used > 0)
        used--;
    uint32_t pending = atomic_load_explicit(&((struct ar_pool *)p)->remote_count, AR_RELAXED);
    return used >= pending ? used - pending : 0;
}

/* Owner: nothing handed out (the hold aside). */
bool ar_pool_is_empty(const struct ar_pool *p)
{
    return ar_used_get(p) == (ar_state_get(p) == AR_POOL_CURRENT ? 1u : 0u);
}

/* Owner: the key invariant above, and every link on the local list. */
void ar_pool_validate(struct ar_pool *p)
{
    unsigned state = ar_state_get(p);
    if (state == AR_POOL_FREE)
        return;
    uint32_t out = ar_used_get(p);
    if (state == AR_POOL_FULL)
        out += AR_FULL_BIAS;
    if (state == AR_POOL_CURRENT)
        out -= 1;
    unsigned nfree = 0;
    for (void *b = p->free; b != NULL; b = link_get(p, b, "local"))
        if (++nfree > p->nblocks)
            corrupted(p, b, b, "local, a cycle");
    if (p->nblocks != ar_class_blocks(p->cls) || p->carved > p->nblocks ||
        (uint64_t)out + nfree + (p->nblocks - p->carved) != p->nblocks ||
        (state == AR_POOL_FULL && (nfree != 0 || p->carved != p->nblocks)))
        ar_fatal("libarena: invariant violated: pool %p (size class %zu, state %u): "
                 "%u handed out + %u free + %u never carved != %u blocks\n",
                 (void *)ar_pool_base(p), ar_class_size(p->cls), state, out, nfree,
                 p->nblocks - p->carved, p->nblocks);
}
