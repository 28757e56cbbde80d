/*
 * The system allocator behind large requests (> 512 bytes), for the plain
 * library: the C library's malloc.  The malloc replacement library
 * (src/override/) provides these functions on top of glibc's own __libc_
 * entry points instead.  Both count what they hand out against the memory
 * limits (limit.c) and in ar_large_live.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#include "internal.h"

_Atomic int64_t ar_large_live;

void *ar_sys_malloc(size_t size)
{
    if (!ar_limit_charge(true, size)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(size);
    ar_limit_large_got(size, p != NULL ? malloc_usable_size(p) : 0);
    if (p != NULL)
        atomic_fetch_add_explicit(&ar_large_live, 1, AR_RELAXED);
    return p;
}

void ar_sys_free(void *p)
{
    if (p == NULL)
        return;
    ar_limit_credit(true, malloc_usable_size(p));
    atomic_fetch_sub_explicit(&ar_large_live, 1, AR_RELAXED);
    free(p);
}

/* p is a large block; size > 0. */
void *ar_sys_realloc(void *p, size_t size)
{
    size_t old = malloc_usable_size(p);
    if (size > old && !ar_limit_charge(true, size - old)) {
        errno = ENOMEM;
        return NULL;
    }
    void *q = realloc(p, size);
    size_t charged = old + (size > old ? size - old : 0);
    ar_limit_large_got(charged, malloc_usable_size(q != NULL ? q : p));
    return q;
}

size_t ar_sys_usable_size(void *p)
{
    return malloc_usable_size(p);
}
