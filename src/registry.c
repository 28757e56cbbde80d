/*
 * Registry: is this address inside one of our pools, of which size class,
 * and in which arena?
 *
 * arena_free must tell our blocks from the system allocator's without
 * reading memory that may not be ours, and it must learn the block's size
 * class to push it on the thread cache.  The registry answers both with two
 * dependent loads: the top level (4096 entries, bits 35..46 of the
 * address) gives a leaf covering 32 GiB; the leaf's byte for the pool
 * (bits 12..34) is the pool's map index, class + 1, or 0 for "not a pool a
 * thread cache takes".  Top-level entries are stored biased (internal.h),
 * which saves the fast path a mask.  Unused top-level entries point at one shared leaf
 * of zeros (never written, so it costs address space and no memory), which
 * makes NULL, foreign pointers and free pools all read 0: the fast path
 * has a single test for all of them.
 *
 * A leaf also maps each arena (bits 18..34) to its header, for the slow
 * paths.  Leaves are 9 MiB of metadata address space, made on first use
 * and never freed; only the pages holding live arenas' entries are touched.
 *
 * Writers: arena entries under the global lock, set before an arena's first
 * pool is handed out and cleared after the last came back; map bytes by
 * the heap that takes or returns the pool, before its first block is
 * handed out and after its last came back.  Readers take no lock.
 */
#include <errno.h>

#include "internal.h"

static struct ar_reg_leaf zero_leaf;    /* never written: reads as "not ours" */

/* Entry i of the top level leads to the zero leaf (see internal.h for the
 * bias).  A static initialiser, so that a free() before the first
 * allocation (a malloc replacement sees those) finds a valid leaf. */
#define E(i) ((uintptr_t)&zero_leaf - ((uintptr_t)(i) << (AR_REG_LEAF_SHIFT - AR_POOL_SHIFT)))
#define E4(i) E(i), E((i) + 1), E((i) + 2), E((i) + 3)
#define E16(i) E4(i), E4((i) + 4), E4((i) + 8), E4((i) + 12)
#define E64(i) E16(i), E16((i) + 16), E16((i) + 32), E16((i) + 48)
#define E256(i) E64(i), E64((i) + 64), E64((i) + 128), E64((i) + 192)
#define E1024(i) E256(i), E256((i) + 256), E256((i) + 512), E256((i) + 768)
_Static_assert(AR_REG_TOP == 4096, "E1024 x 4 initialises the top level");
_Atomic uintptr_t ar_reg_top[AR_REG_TOP] = { E1024(0), E1024(1024), E1024(2048), E1024(3072) };

static uintptr_t biased(struct ar_reg_leaf *leaf, uintptr_t i)
{
    return (uintptr_t)leaf - (i << (AR_REG_LEAF_SHIFT - AR_POOL_SHIFT));
}

int ar_registry_set_arena(uintptr_t base, struct ar_arena *a)
{
    if (base >> 47 != 0)
        return EINVAL;                  /* not addressable by the lookup */
    uintptr_t i = base >> AR_REG_LEAF_SHIFT;
    struct ar_reg_leaf *leaf = ar_reg_leaf_of(base);
    if (leaf == &zero_leaf) {
        if (a == NULL)
            return 0;
        leaf = ar_meta_alloc(sizeof(*leaf));
        if (leaf == NULL)
            return ENOMEM;
        atomic_store_explicit(&ar_reg_top[i], biased(leaf, i), memory_order_release);
    }
    atomic_store_explicit(&leaf->arena[(base >> AR_ARENA_SHIFT) & (AR_REG_LEAF_ARENAS - 1)], a,
                          memory_order_release);
    return 0;
}

void ar_registry_set_map(const struct ar_pool *p, unsigned m)
{
    uintptr_t a = (uintptr_t)ar_pool_base(p);
    struct ar_reg_leaf *leaf = ar_reg_leaf_of(a);
    if (leaf == &zero_leaf)
        ar_fatal("libarena: registry has no leaf for pool %p\n", (void *)a);
    atomic_store_explicit(&leaf->map[(a >> AR_POOL_SHIFT) & (AR_REG_LEAF_POOLS - 1)],
                          (uint8_t)m, memory_order_release);
}

void ar_registry_walk(void (*fn)(struct ar_arena *a, void *arg), void *arg)
{
    for (uintptr_t i = 0; i < AR_REG_TOP; i++) {
        struct ar_reg_leaf *leaf = ar_reg_leaf_of(i << AR_REG_LEAF_SHIFT);
        if (leaf == &zero_leaf)
            continue;
        struct ar_arena *last = NULL;
        for (uintptr_t j = 0; j < AR_REG_LEAF_ARENAS; j++) {
            struct ar_arena *a = atomic_load_explicit(&leaf->arena[j], memory_order_acquire);
            if (a != NULL && a != last)
                fn(a, arg);
            last = a;               /* a huge block spans several entries */
        }
    }
}
