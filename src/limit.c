/*
 * Memory limits: what libarena counts against them, and the checks.
 *
 * Counted: the bytes of arenas mapped (ordinary and huge reservations),
 * plus the usable bytes of the large blocks handed out through the API and
 * libarena-malloc.so.  Every growth is charged here before it happens and
 * every shrink credited after it did, with one atomic total, so the hard
 * limit holds exactly even while threads race for the last bytes:
 *
 *   hard  a charge that would take the total above it is refused; the
 *         caller returns NULL with errno = ENOMEM and nothing else changes.
 *   soft  a charge that takes the total above it marks the crossing; the
 *         allocating thread, outside every lock, then gives back what
 *         libarena holds free and, if the total is still above, calls the
 *         user's callback, once per crossing (re-armed when the total drops
 *         below the soft limit again).
 *
 * 0 means no limit.  Set by arena_set_limit() or ARENA_LIMIT=hard[,soft].
 */
#include <errno.h>

#include "internal.h"

static struct {
    _Atomic uint64_t total;             /* arenas + large                  */
    _Atomic uint64_t arenas, large;     /* the two parts, for the stats    */
    _Atomic uint64_t hard, soft;
    _Atomic bool soft_crossed;          /* charged above soft, not handled */
    _Atomic bool soft_armed;            /* below soft since the last call  */
    _Atomic(void (*)(size_t, void *)) on_soft;
    _Atomic(void *) arg;
    _Atomic uint64_t refused;           /* charges the hard limit refused  */
    _Atomic uint64_t soft_calls;        /* callbacks made                  */
} limit = { .soft_armed = true };

int ar_limit_set(size_t soft, size_t hard, void (*on_soft)(size_t, void *), void *arg)
{
    if (hard != 0 && soft > hard)
        return EINVAL;
    atomic_store_explicit(&limit.on_soft, on_soft, AR_RELAXED);
    atomic_store_explicit(&limit.arg, arg, AR_RELAXED);
    atomic_store_explicit(&limit.soft, soft, AR_RELAXED);
    atomic_store_explicit(&limit.hard, hard, memory_order_release);
    atomic_store_explicit(&limit.soft_armed, true, AR_RELAXED);
    return 0;
}

bool ar_limit_charge(bool large, uint64_t bytes)
{
    uint64_t hard = atomic_load_explicit(&limit.hard, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&limit.total, AR_RELAXED);
    do {
        if (hard != 0 && (t + bytes > hard || t + bytes < t)) {
            atomic_fetch_add_explicit(&limit.refused, 1, AR_RELAXED);
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&limit.total, &t, t + bytes, AR_RELAXED,
                                                    AR_RELAXED));
    atomic_fetch_add_explicit(large ? &limit.large : &limit.arenas, bytes, AR_RELAXED);
    uint64_t soft = atomic_load_explicit(&limit.soft, AR_RELAXED);
    if (soft != 0 && t + bytes > soft && atomic_load_explicit(&limit.soft_armed, AR_RELAXED))
        atomic_store_explicit(&limit.soft_crossed, true, memory_order_release);
    return true;
}

void ar_limit_credit(bool large, uint64_t bytes)
{
    uint64_t t = atomic_fetch_sub_explicit(&limit.total, bytes, AR_RELAXED) - bytes;
    atomic_fetch_sub_explicit(large ? &limit.large : &limit.arenas, bytes, AR_RELAXED);
    uint64_t soft = atomic_load_explicit(&limit.soft, AR_RELAXED);
    if (soft != 0 && t < soft)
        atomic_store_explicit(&limit.soft_armed, true, AR_RELAXED);
}

bool ar_limit_hard_set(void)
{
    return atomic_load_explicit(&limit.hard, AR_RELAXED) != 0;
}

/* The soft limit was crossed and nobody has handled it yet: claim it. */
bool ar_limit_soft_due(void)
{
    return atomic_load_explicit(&limit.soft_crossed, memory_order_acquire) &&
           atomic_exchange_explicit(&limit.soft_crossed, false, memory_order_acq_rel);
}

/* After giving back: still above soft, and armed?  Then the callback,
 * once: it is disarmed until the total drops below soft again. */
void ar_limit_soft_call(void)
{
    uint64_t soft = atomic_load_explicit(&limit.soft, AR_RELAXED);
    uint64_t t = atomic_load_explicit(&limit.total, AR_RELAXED);
    if (soft == 0 || t <= soft ||
        !atomic_exchange_explicit(&limit.soft_armed, false, memory_order_acq_rel))
        return;
    void (*fn)(size_t, void *) = atomic_load_explicit(&limit.on_soft, AR_RELAXED);
    atomic_fetch_add_explicit(&limit.soft_calls, 1, AR_RELAXED);
    if (fn != NULL)
        fn((size_t)t, atomic_load_explicit(&limit.arg, AR_RELAXED));
}

void ar_limit_counts(struct arena_stats *st)
{
    st->limit_hard = atomic_load_explicit(&limit.hard, AR_RELAXED);
    st->limit_soft = atomic_load_explicit(&limit.soft, AR_RELAXED);
    st->limit_counted = atomic_load_explicit(&limit.total, AR_RELAXED);
    st->large_bytes = atomic_load_explicit(&limit.large, AR_RELAXED);
    st->limit_refused = atomic_load_explicit(&limit.refused, AR_RELAXED);
    st->limit_soft_calls = atomic_load_explicit(&limit.soft_calls, AR_RELAXED);
}

/* A large request charged as `charged` bytes came back from the system
 * allocator as a block of `usable` bytes, or failed (usable 0): bring the
 * count to what is really held.  The hard limit is checked against the
 * request; the system allocator's rounding is added unchecked. */
void ar_limit_large_got(uint64_t charged, uint64_t usable)
{
    if (usable > charged) {
        atomic_fetch_add_explicit(&limit.total, usable - charged, AR_RELAXED);
        atomic_fetch_add_explicit(&limit.large, usable - charged, AR_RELAXED);
    } else if (usable < charged) {
        ar_limit_credit(true, charged - usable);
    }
}
