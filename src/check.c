/*
 * The checked build's block checks (meson -Dchecked=true).
 *
 * Each arena header carries a bitmap of handed-out blocks per pool
 * (256 bits: the most blocks a pool can hold).  Bits are set when a block
 * is handed out and cleared by whichever thread frees it, with atomic
 * operations: this is the checked build, not the fast one.  Freed and
 * never-used blocks are filled with AR_FREE_FILL past their link word and
 * verified when handed out.
 */
#include "check.h"

#if ARENA_CHECKED

_Static_assert(AR_POOL_SIZE / AR_QUANTUM <= 256, "256 bits cover a pool");

static struct ar_pool *pool_of_block(void *b, struct ar_arena **ap)
{
    struct ar_arena *a = ar_registry_arena(b);
    if (a == NULL)
        ar_fatal("libarena: invalid free of %p: not a block of libarena\n", b);
    *ap = a;
    return ar_pool_of(a, b);
}

void ar_check_carve(void *b, size_t size)
{
    memset((char *)b + AR_LINK_SIZE, AR_FREE_FILL, size - AR_LINK_SIZE);
}

void ar_check_alloc(void *b)
{
    struct ar_arena *a;
    struct ar_pool *p = pool_of_block(b, &a);
    size_t size = ar_class_size(p->cls);
    const unsigned char *c = b;
    for (size_t i = AR_LINK_SIZE; i < size; i++)
        if (c[i] != AR_FREE_FILL)
            ar_fatal("libarena: write to freed block %p (size class %zu) at offset %zu\n",
                     b, size, i);
    unsigned idx = (unsigned)(((char *)b - ar_pool_base(p)) / size);
    uint64_t bit = (uint64_t)1 << (idx & 63);
    if (atomic_fetch_or_explicit(&a->ck_live[ar_pool_index(p)][idx >> 6], bit,
                                 memory_order_relaxed) & bit)
        ar_fatal("libarena: block %p (size class %zu) handed out twice: free list corrupted\n",
                 b, size);
}

void ar_check_free(void *ptr)
{
    struct ar_arena *a;
    struct ar_pool *p = pool_of_block(ptr, &a);
    if (ar_state_get(p) == AR_POOL_FREE)
        ar_fatal("libarena: invalid free of %p: not an allocated block (its pool is not in use)\n",
                 ptr);
    size_t size = ar_class_size(p->cls);
    char *base = ar_pool_base(p);
    size_t off = (size_t)((char *)ptr - base);
    size_t idx = off / size;
    if (off % size != 0 || idx >= p->nblocks)
        ar_fatal("libarena: invalid free of %p: not the start of a block "
                 "(size class %zu, the block there starts at %p)\n",
                 ptr, size, (void *)(base + (idx < p->nblocks ? idx : p->nblocks - 1u) * size));
    uint64_t bit = (uint64_t)1 << (idx & 63);
    if (!(atomic_fetch_and_explicit(&a->ck_live[ar_pool_index(p)][idx >> 6], ~bit,
                                    memory_order_relaxed) & bit))
        ar_fatal("libarena: double free of %p (size class %zu)\n", ptr, size);
    memset((char *)ptr + AR_LINK_SIZE, AR_FREE_FILL, size - AR_LINK_SIZE);
}

#endif /* ARENA_CHECKED */
