/*
 * The backend contract: where arenas come from.
 *
 * A backend is a small table of functions and a context pointer, picked
 * once before the first allocation.  Two real backends live in
 * src/backend/ (mmap.c, brk.c), each keeping its state in its context;
 * tests hand in a counting, failing fake through ar_backend_use().
 *
 *   reserve(ctx, size, align)       called with the global lock held
 *       size and align are ARENA_ARENA_SIZE.  Returns a region of size bytes
 *       whose address is a multiple of align, readable, writable and zero
 *       filled, or NULL (nothing reserved).
 *   release(ctx, p, size)           called with the global lock held
 *       p and size as returned by reserve.  Returns 0 when the region went
 *       back to the OS, or EBUSY when this backend cannot give it back now
 *       (brk: the region is not at the top of the break).  After EBUSY the
 *       region stays ours and the caller may reuse it or try again later.
 *   purge(ctx, p, size)             called with one heap's lock held:
 *                                   several threads may purge at once,
 *                                   always different ranges
 *       p and size are multiples of ARENA_POOL_SIZE inside a reserved
 *       region.  The pages' contents are thrown away and read back as
 *       zero; the range stays reserved and becomes resident again on
 *       first touch.  Returns 0 or an errno value.
 *   calls(ctx, out)                 any time; may be NULL
 *       the system calls made so far, for the stats.
 *
 * flags:
 *   AR_BACKEND_RELEASE_ANY   any region can be released at any time (mmap);
 *                            without it only the topmost one can (brk).
 *   AR_BACKEND_AUTO_PURGE    free pools are purged by the hold policy;
 *                            without it only arena_release() and the purger
 *                            purge (brk keeps the legacy behaviour).
 */
#ifndef AR_BACKEND_H
#define AR_BACKEND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define AR_BACKEND_RELEASE_ANY 0x1u
#define AR_BACKEND_AUTO_PURGE  0x2u

/* System calls a backend made, counted for the stats. */
struct ar_syscalls {
    uint64_t mmap, munmap, brk, madvise;
};

struct ar_backend {
    const char *name;
    unsigned flags;
    void *(*reserve)(void *ctx, size_t size, size_t align);
    int   (*release)(void *ctx, void *p, size_t size);
    int   (*purge)(void *ctx, void *p, size_t size);
    void  (*calls)(void *ctx, struct ar_syscalls *out);
    void *ctx;
};

/* The real backends' counters: atomic, as purges run concurrently. */
struct ar_syscall_counts {
    _Atomic uint64_t mmap, munmap, brk, madvise;
};
void ar_syscall_counts_read(struct ar_syscall_counts *c, struct ar_syscalls *out);

extern const struct ar_backend ar_backend_mmap;
extern const struct ar_backend ar_backend_brk;

/* Use b for all arenas.  Only before the first allocation: returns 0, or
 * EBUSY once the allocator has started.  b must outlive the process. */
int ar_backend_use(const struct ar_backend *b);

#endif /* AR_BACKEND_H */
