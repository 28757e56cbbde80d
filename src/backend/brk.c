/*
 * brk backend — the legacy behaviour, kept on purpose for comparison.
 *
 * Arenas are carved from the program break, which only moves at its end:
 * an arena can be given back only when it is the topmost thing below the
 * break.  An empty arena anywhere lower stays resident until everything
 * above it is gone.  This is how a small-object allocator that takes its
 * arenas from the heap keeps gigabytes after a burst is freed.
 *
 * Guards:
 *   - other code (the system malloc, for one) moves the break too: we
 *     remember where our last arena ended and, before giving one back,
 *     check that the break is still there;
 *   - sbrk takes a signed increment: every increment is checked to fit
 *     in intptr_t, and the break is only lowered with brk(absolute);
 *   - the break is padded up to the arena alignment; padding below an
 *     arena is not reclaimed.
 * Purge is possible (madvise works on the heap) but only arena_release()
 * and the background purger ask for it: the legacy backend does not purge
 * on its own.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "internal.h"

struct brk_ctx {
    uintptr_t top;                      /* end of our topmost arena, 0 if none */
    struct ar_syscall_counts calls;
};
static struct brk_ctx brk_state;

static void *cur_break(struct brk_ctx *b)
{
    atomic_fetch_add_explicit(&b->calls.brk, 1, AR_RELAXED);
    return sbrk(0);
}

static void *brk_reserve(void *ctx, size_t size, size_t align)
{
    struct brk_ctx *b = ctx;
    uintptr_t cur = (uintptr_t)cur_break(b);
    if (cur == (uintptr_t)-1)
        return NULL;
    uintptr_t base = (cur + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t incr = base - cur + size;
    if (base < cur || incr > (uintptr_t)INTPTR_MAX)
        return NULL;
    atomic_fetch_add_explicit(&b->calls.brk, 1, AR_RELAXED);
    if (sbrk((intptr_t)incr) == (void *)-1)
        return NULL;
    b->top = base + size;
    return (void *)base;
}

static int brk_release(void *ctx, void *p, size_t size)
{
    struct brk_ctx *b = ctx;
    uintptr_t end = (uintptr_t)p + size;
    if (end != b->top)
        return EBUSY;                   /* not our topmost arena */
    if ((uintptr_t)cur_break(b) != end)
        return EBUSY;                   /* someone else moved the break */
    atomic_fetch_add_explicit(&b->calls.brk, 1, AR_RELAXED);
    if (brk(p) != 0)
        return errno;
    b->top = (uintptr_t)p;
    return 0;
}

static int brk_purge(void *ctx, void *p, size_t size)
{
    struct brk_ctx *b = ctx;
    atomic_fetch_add_explicit(&b->calls.madvise, 1, AR_RELAXED);
    return madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

static void brk_calls(void *ctx, struct ar_syscalls *out)
{
    ar_syscall_counts_read(&((struct brk_ctx *)ctx)->calls, out);
}

const struct ar_backend ar_backend_brk = {
    .name = "brk",
    .flags = 0,
    .reserve = brk_reserve,
    .release = brk_release,
    .purge = brk_purge,
    .calls = brk_calls,
    .ctx = &brk_state,
};
