/*
 * The hold: how much free memory recent demand justifies keeping.
 *
 * Giving memory back is right when nothing asks for it again, and wrong
 * when the program is about to: a pool purged with madvise and taken again
 * is faulted in page by page, an arena unmapped and mapped again costs two
 * system calls, and in a threaded process both take the kernel's mm lock
 * and shoot down the TLB of every core running the process.
 *
 * So libarena learns from its mistakes.  It starts by giving back at once
 * everything above a small floor (a burst that nothing reuses goes back
 * right after the free).  Each unit given back is remembered in `given`.
 * When a unit must later come fresh from the OS while `given` is non-zero,
 * the give-back was a mistake: `learned` grows by one and `given` shrinks
 * by one.  From then on the caller keeps what that justifies (arena.c
 * adds `learned` to its floor for pools, takes it as the bound for empty
 * arenas), so a program that works in rounds pays once (round 2) and keeps
 * what it reuses.  Without new mistakes, `learned` and `given` halve every
 * ARENA_DECAY_MS (1 s by default), read from a coarse clock on slow paths
 * only, so memory a program stopped reusing goes back within a few decay
 * periods of its next allocator call (or of the purger's next look).
 *
 * The structure is owned by its caller's lock; nothing here is shared.
 */
#include <time.h>

#include "internal.h"

static uint64_t clock_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static _Atomic(uint64_t (*)(void)) clock_fn = clock_coarse_ms;

uint64_t ar_now_ms(void)
{
    return atomic_load_explicit(&clock_fn, AR_RELAXED)();
}

void ar_clock_override(uint64_t (*now_ms)(void))
{
    atomic_store_explicit(&clock_fn, now_ms != NULL ? now_ms : clock_coarse_ms, AR_RELAXED);
}

/* Halve for every full decay period since the last halving. */
static void decay(struct ar_hold *h)
{
    uint64_t now = ar_now_ms();
    uint64_t period = ar_options.decay_ms;
    if (h->stamp == 0 || now < h->stamp) {
        h->stamp = now;
        return;
    }
    uint64_t halvings = (now - h->stamp) / period;
    if (halvings == 0)
        return;
    h->stamp += halvings * period;
    if (halvings >= 32) {
        h->learned = h->given = 0;
    } else {
        h->learned >>= halvings;
        h->given >>= halvings;
    }
}

void ar_hold_given(struct ar_hold *h, uint32_t n)
{
    decay(h);
    h->given = h->given + n < h->given ? UINT32_MAX : h->given + n;
}

void ar_hold_fresh(struct ar_hold *h, uint32_t n)
{
    decay(h);
    uint32_t mistake = n < h->given ? n : h->given;
    h->given -= mistake;
    h->learned = h->learned + mistake < h->learned ? UINT32_MAX : h->learned + mistake;
}

uint32_t ar_hold_keep(struct ar_hold *h, uint32_t floor)
{
    decay(h);
    return h->learned > floor ? h->learned : floor;
}
