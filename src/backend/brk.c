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
 * asks for it: the legacy backend does not purge on its own.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "internal.h"

static uintptr_t brk_top;   /* end of our topmost arena, 0 if none */

static void *cur_break(void)
{
    ar_syscalls.brk++;
    return sbrk(0);
}

static void *brk_reserve(void *ctx, size_t size, size_t align)
{
    (void)ctx;
    uintptr_t cur = (uintptr_t)cur_break();
    if (cur == (uintptr_t)-1)
        return NULL;
    uintptr_t base = (cur + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t incr = base - cur + size;
    if (base < cur || incr > (uintptr_t)INTPTR_MAX)
        return NULL;
    ar_syscalls.brk++;
    if (sbrk((intptr_t)incr) == (void *)-1)
        return NULL;
    brk_top = base + size;
    return (void *)base;
}

static int brk_release(void *ctx, void *p, size_t size)
{
    (void)ctx;
    uintptr_t end = (uintptr_t)p + size;
    if (end != brk_top)
        return EBUSY;                   /* not our topmost arena */
    if ((uintptr_t)cur_break() != end)
        return EBUSY;                   /* someone else moved the break */
    ar_syscalls.brk++;
    if (brk(p) != 0)
        return errno;
    brk_top = (uintptr_t)p;
    return 0;
}


static int brk_purge(void *ctx, void *p, size_t size)
{
    (void)ctx;
    ar_syscalls.madvise++;
    return madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

const struct ar_backend ar_backend_brk = {
    .name = "brk",
    .flags = 0,
    .reserve = brk_reserve,
    .release = brk_release,
    .purge = brk_purge,
};
