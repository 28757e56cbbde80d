/*
 * null_alloc.h — an allocator that does nothing, for bench-null.
 *
 * null_alloc returns a pointer into one static buffer (NULL_ALLOC_MAX bytes,
 * 64-byte aligned) whatever was asked, null_free does nothing.  They live in
 * their own translation unit and are never inlined, so a loop that calls them
 * executes the same call and return instructions as with a real allocator,
 * minus the allocator's work.  Only meaningful for one block at a time in
 * one thread (the `fixed` scenario).
 */
#ifndef NULL_ALLOC_H
#define NULL_ALLOC_H

#include <stddef.h>

#define NULL_ALLOC_MAX 1024u

void *null_alloc(size_t size);
void null_free(void *p);
void *null_realloc(void *p, size_t size);

#endif
