/*
 * The system allocator behind large requests (> 512 bytes), for the plain
 * library: the C library's malloc.  The malloc replacement library
 * (src/override/) provides these four functions on top of glibc's own
 * __libc_ entry points instead.
 */
#include <malloc.h>
#include <stdlib.h>

#include "internal.h"

_Atomic int64_t ar_large_live;

void *ar_sys_malloc(size_t size)
{
    void *p = malloc(size);
    if (p != NULL)
        atomic_fetch_add_explicit(&ar_large_live, 1, AR_RELAXED);
    return p;
}

void ar_sys_free(void *p)
{
    atomic_fetch_sub_explicit(&ar_large_live, 1, AR_RELAXED);
    free(p);
}

void *ar_sys_realloc(void *p, size_t size)
{
    return realloc(p, size);
}

size_t ar_sys_usable_size(void *p)
{
    return malloc_usable_size(p);
}
