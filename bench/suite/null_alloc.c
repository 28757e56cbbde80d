/*
 * null_alloc.c — the allocator of bench-null: no work at all.  See
 * null_alloc.h.
 */
#include "null_alloc.h"

#if defined(__GNUC__)
#define NULL_NOINLINE __attribute__((noinline))
#else
#define NULL_NOINLINE
#endif

static _Alignas(64) unsigned char null_buffer[NULL_ALLOC_MAX];

NULL_NOINLINE void *null_alloc(size_t size)
{
    return size <= NULL_ALLOC_MAX ? null_buffer : NULL;
}

NULL_NOINLINE void null_free(void *p)
{
    (void)p;
}

NULL_NOINLINE void *null_realloc(void *p, size_t size)
{
    (void)p;
    return null_alloc(size);
}
