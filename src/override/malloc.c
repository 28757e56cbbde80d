/*
 * libarena-malloc: the C allocation functions on top of libarena.
 *
 *   request                                   served by
 *   size <= 512, alignment <= 16              a libarena pool (arena_alloc)
 *   size <= 512, alignment 32 .. 512          a libarena pool whose class size
 *                                             is a multiple of the alignment
 *   anything larger or more aligned;          glibc, through its __libc_*
 *   valloc, pvalloc                           entry points (sys_libc.c)
 *
 * free, realloc and malloc_usable_size ask the registry whose block it is,
 * so every pointer goes back to the allocator that made it, whichever
 * function made it.
 *
 * Over-aligned small blocks: pools are 4 KiB aligned and carve their
 * blocks at offsets 0, s, 2s, ... (s the class size, no header), so every
 * block of a class whose size is a multiple of a power of two A is
 * A-aligned.  A request (A, n) with A <= 512 is served from the class of
 * n rounded up to a multiple of A (at most 512, as A divides 512).
 *
 * Semantics follow glibc where the C standard leaves a choice:
 * malloc(0) returns a unique pointer; realloc(p, 0) frees p and returns
 * NULL; memalign rounds an alignment that is not a power of two up to
 * one.  aligned_alloc rejects an alignment that is not a power of two
 * with EINVAL (C17 DR 460; glibc 2.38 and later do the same).
 *
 * C++ operator new and delete (sized and aligned included) reach these
 * functions through libstdc++, which calls malloc, aligned_alloc and free.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "override.h"

static inline bool is_pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/* align is a power of two. */
static void *alloc_aligned(size_t align, size_t size)
{
    if (align <= AR_QUANTUM)
        return arena_alloc(size);
    if (align <= AR_SMALL_MAX && size <= AR_SMALL_MAX) {
        size_t s = size == 0 ? align : (size + align - 1) & ~(align - 1);
        return arena_alloc(s);
    }
    return ar_limit_poll(ar_sys_memalign(align, size));
}

AR_EXPORT void *malloc(size_t size)
{
    return arena_alloc(size);
}

AR_EXPORT void free(void *ptr)
{
    arena_free(ptr);
}

AR_EXPORT void *calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    if (bytes > AR_SMALL_MAX)
        return ar_limit_poll(ar_sys_calloc(n, size)); /* glibc skips zeroing fresh pages */
    void *p = arena_alloc(bytes);
    if (p != NULL)
        memset(p, 0, bytes);
    return p;
}

AR_EXPORT void *realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return arena_alloc(size);
    if (size == 0) {
        arena_free(ptr);
        return NULL;
    }
    /* arena_realloc moves a glibc block (large, over-aligned or page
     * aligned) into a pool only when it would waste more than half of it. */
    return arena_realloc(ptr, size);
}

AR_EXPORT void *reallocarray(void *ptr, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, bytes);
}

/* POSIX: alignment a power of two multiple of sizeof(void *); errors are
 * returned, errno is left alone, *memptr is set only on success. */
AR_EXPORT int posix_memalign(void **memptr, size_t align, size_t size)
{
    if (!is_pow2(align) || align % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno;
    void *p = alloc_aligned(align, size);
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *memptr = p;
    return 0;
}

AR_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (!is_pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return alloc_aligned(align, size);
}

AR_EXPORT void *memalign(size_t align, size_t size)
{
    if (align <= AR_QUANTUM)
        return arena_alloc(size);
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!is_pow2(align))
        align = (size_t)1 << (64 - __builtin_clzll((unsigned long long)align));
    return alloc_aligned(align, size);
}

AR_EXPORT void *valloc(size_t size)
{
    return ar_limit_poll(ar_sys_valloc(size));
}

AR_EXPORT void *pvalloc(size_t size)
{
    return ar_limit_poll(ar_sys_pvalloc(size));
}

AR_EXPORT size_t malloc_usable_size(void *ptr)
{
    return arena_usable_size(ptr);
}

/* Give back what is free on both sides: libarena's free pools and empty
 * arenas, then glibc's heap top and free pages.  1 if anything went. */
AR_EXPORT int malloc_trim(size_t pad)
{
    size_t ours = arena_release();
    int theirs = ar_sys_trim(pad);
    return ours != 0 || theirs != 0;
}
