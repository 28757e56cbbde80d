/*
 * Registry: is this address inside one of our arenas, and which one?
 *
 * Arenas are 256 KiB aligned, so an address names its arena by its bits
 * 18..47.  A two-level table maps them to the arena: a static
 * top level of 2^15 pointers (bits 33..47) to leaves of 2^15 entries
 * (bits 18..32) holding the arena's header; each leaf is
 * 256 KiB of metadata made on demand and never freed.  A lookup is two loads and never touches the memory it is asked
 * about, so a pointer from the system allocator is recognised as foreign
 * without reading its neighbourhood.
 *
 * Writers hold ar_lock; readers take no lock.  An entry is set before the
 * arena's first block is handed out and cleared after its last block came
 * back, so a reader asking about a live block always sees it.
 */
#include <errno.h>

#include "internal.h"

_Atomic(_Atomic(struct ar_arena *) *) ar_registry_top[1u << AR_REG_TOP_BITS];

int ar_registry_set(uintptr_t base, struct ar_arena *a)
{
    uintptr_t top = base >> (AR_ARENA_SHIFT + AR_REG_LEAF_BITS);
    if (top >= (1u << AR_REG_TOP_BITS))
        return EINVAL;                  /* not addressable by the lookup */
    _Atomic(struct ar_arena *) *leaf =
        atomic_load_explicit(&ar_registry_top[top], memory_order_relaxed);
    if (leaf == NULL) {
        if (a == NULL)
            return 0;
        leaf = ar_meta_alloc(sizeof(*leaf) << AR_REG_LEAF_BITS);
        if (leaf == NULL)
            return ENOMEM;
        atomic_store_explicit(&ar_registry_top[top], leaf, memory_order_release);
    }
    atomic_store_explicit(&leaf[(base >> AR_ARENA_SHIFT) & (AR_REG_MASK(AR_REG_LEAF_BITS))],
                          a, memory_order_release);
    return 0;
}
