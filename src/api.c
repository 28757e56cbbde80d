/*
 * The public entry points.
 *
 * arena_alloc (small): size -> class by a shift, the thread's heap from an
 * initial-exec TLS slot, pop the current pool's free list.  One test sends
 * everything else (size 0, large sizes, an empty free list, a thread
 * without a heap yet) to the out-of-line slow path.
 *
 * arena_free: the registry says whether the block is ours (two loads, no
 * read of the block's neighbourhood); mask to the pool descriptor; if this
 * thread owns the pool, push.  The pool having been full or being now empty
 * is the one rare case, caught by one signed test (see AR_FULL_BIAS) and
 * handled out of line; so are other threads' blocks
 * and system blocks.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "internal.h"

void *arena_alloc(size_t size)
{
    if (ar_likely(size - 1 < AR_SMALL_MAX)) {
        struct ar_pool *p = ar_tls_heap->lists[(size - 1) >> AR_QUANTUM_SHIFT];
        struct ar_block *b = p->free;
        if (ar_likely(b != NULL)) {
            p->free = ar_next_get(b);
            ar_used_set(p, ar_used_get(p) + 1);
            ar_on_alloc(p, b);
            return b;
        }
    }
    return ar_alloc_slow(size);
}

void arena_free(void *ptr)
{
    struct ar_pool *pools = ar_registry_lookup(ptr);
    if (ar_likely(pools != NULL)) {
        struct ar_pool *p = ar_pool_of(pools, ptr);
        struct ar_heap *h = ar_tls_heap;
        ar_on_free(p, ptr);
        if (ar_likely(atomic_load_explicit(&p->owner, AR_RELAXED) == h)) {
            struct ar_block *b = ptr;
            uint32_t used = ar_used_get(p) - 1;
            ar_next_set(b, p->free);
            p->free = b;
            ar_used_set(p, used);
            if (ar_unlikely((int32_t)used <= 0))  /* was full, or now empty */
                ar_free_local_slow(h, p, ptr);
            return;
        }
        ar_free_remote(p, ptr);
        return;
    }
    if (ptr != NULL)
        ar_sys_free(ptr);
}

void *arena_calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = arena_alloc(bytes);
    if (p != NULL && bytes != 0)
        memset(p, 0, bytes <= AR_SMALL_MAX ? bytes : ar_sys_usable_size(p));
    return p;
}

size_t arena_usable_size(const void *ptr)
{
    if (ptr == NULL)
        return 0;
    struct ar_pool *pools = ar_registry_lookup(ptr);
    if (pools == NULL)
        return ar_sys_usable_size((void *)ptr);
    return ar_class_size(ar_pool_of(pools, ptr)->cls);
}

void *arena_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return arena_alloc(size);
    struct ar_pool *pools = ar_registry_lookup(ptr);
    if (pools == NULL) {
        if (size > AR_SMALL_MAX)
            return ar_sys_realloc(ptr, size);
        /* large -> small: move into a pool */
        void *q = arena_alloc(size);
        if (q == NULL)
            return NULL;
        memcpy(q, ptr, size);
        ar_sys_free(ptr);
        return q;
    }
    unsigned cls = ar_pool_of(pools, ptr)->cls;
    if (size != 0 && size <= AR_SMALL_MAX && ar_class_of(size) == cls)
        return ptr;                     /* same class: nothing to do */
    if (size == 0 && cls == 0)
        return ptr;
    void *q = arena_alloc(size);
    if (q == NULL)
        return NULL;                    /* ptr is left untouched */
    size_t old = ar_class_size(cls);
    memcpy(q, ptr, old < size ? old : size);
    arena_free(ptr);
    return q;
}

size_t arena_release(void)
{
    ar_heap_release_empty(ar_tls_heap);
    pthread_mutex_lock(&ar_lock);
    size_t bytes = ar_arena_release_all();
    pthread_mutex_unlock(&ar_lock);
    return bytes;
}
