/*
 * The public entry points.
 *
 * arena_alloc (small): size -> class by a shift, the thread's heap from an
 * initial-exec TLS slot, then pop the thread cache of that class, or else
 * the current pool's free list.  One test per level sends everything else
 * (size 0, large sizes, both empty, a thread without a heap yet) to the
 * out-of-line slow path.
 *
 * arena_free: the registry says whether the block is ours and in which
 * arena (two loads, no read of the block's neighbourhood); the arena's
 * class map gives its size class; the block goes on the thread cache of
 * that class.  A full cache (or a pool that is not in use, or a thread
 * whose cache is off) is the one rare case, handled out of line: the
 * cache gives half of its blocks back to their pools there.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "internal.h"

/* Second level: the thread cache was empty; pop the current pool. */
static AR_NOINLINE void *alloc_from_pool(struct ar_heap *h, size_t size)
{
    struct ar_pool *p = h->lists[(size - 1) >> AR_QUANTUM_SHIFT];
    struct ar_block *b = p->free;
    if (ar_likely(b != NULL)) {
        p->free = ar_next_get(b);
        ar_used_set(p, ar_used_get(p) + 1);
        ar_on_alloc(p, b);
        return b;
    }
    return ar_alloc_slow(size);
}

void *arena_alloc(size_t size)
{
    if (ar_likely(size - 1 < AR_SMALL_MAX)) {
        struct ar_heap *h = ar_tls_heap;
        struct ar_tcache *e = &h->cache[(size - 1) >> AR_QUANTUM_SHIFT];
        struct ar_block *b = e->head;
        if (ar_likely(b != NULL)) {
            e->head = ar_next_get(b);
            atomic_store_explicit(&e->count, atomic_load_explicit(&e->count, AR_RELAXED) - 1,
                                  AR_RELAXED);
            ar_on_alloc_cached(b, (unsigned)((size - 1) >> AR_QUANTUM_SHIFT));
            return b;
        }
        return alloc_from_pool(h, size);
    }
    return ar_alloc_slow(size);
}

void arena_free(void *ptr)
{
    struct ar_arena *a = ar_registry_lookup(ptr);
    if (ar_likely(a != NULL)) {
        unsigned c = atomic_load_explicit(&a->cls[ar_pool_index_of(ptr)], AR_RELAXED);
        struct ar_tcache *e = &ar_tls_heap->cache[c];
        uint32_t n = atomic_load_explicit(&e->count, AR_RELAXED);
        if (ar_likely(n < e->limit)) {
            ar_on_free(a, c, ptr);
            if (ar_unlikely(ptr == (void *)e->head))
                ar_fatal("libarena: double free of %p (size class %zu)\n", ptr,
                         ar_class_size(c));
            ar_next_set(ptr, e->head);
            e->head = ptr;
            atomic_store_explicit(&e->count, n + 1, AR_RELAXED);
            return;
        }
        ar_free_cache_slow(a, c, ptr);
        return;
    }
    if (ptr != NULL) {
#if ARENA_CHECKED
        if (ar_meta_contains(ptr))
            ar_fatal("libarena: invalid free of %p: it points into libarena's metadata\n", ptr);
#endif
        ar_sys_free(ptr);
    }
}

void *arena_calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = arena_alloc(bytes);
    if (p != NULL)
        memset(p, 0, bytes);
    return p;
}

/* The size class of a block of ours, or AR_CLS_NONE. */
static unsigned class_of_block(struct ar_arena *a, const void *ptr)
{
    return atomic_load_explicit(&a->cls[ar_pool_index_of(ptr)], AR_RELAXED);
}

size_t arena_usable_size(const void *ptr)
{
    if (ptr == NULL)
        return 0;
    struct ar_arena *a = ar_registry_lookup(ptr);
    if (a == NULL)
        return ar_sys_usable_size((void *)ptr);
    unsigned c = class_of_block(a, ptr);
    return c < AR_NCLASS ? ar_class_size(c) : 0;
}

void *arena_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return arena_alloc(size);
    struct ar_arena *a = ar_registry_lookup(ptr);
    if (a == NULL) {
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
    unsigned cls = class_of_block(a, ptr);
    if (cls < AR_NCLASS && size <= AR_SMALL_MAX && ar_class_of(size) == cls)
        return ptr;                     /* same class: nothing to do */
    void *q = arena_alloc(size);
    if (q == NULL)
        return NULL;                    /* ptr is left untouched */
    size_t old = cls < AR_NCLASS ? ar_class_size(cls) : 0;
    memcpy(q, ptr, old < size ? old : size);
    arena_free(ptr);
    return q;
}

size_t arena_release(void)
{
    /* Handing back the thread's pools can itself release an arena or purge
     * a pool: count everything given back between the two readings. */
    pthread_mutex_lock(&ar_lock);
    uint64_t before = ar_arena_bytes_given_back();
    pthread_mutex_unlock(&ar_lock);
    ar_heap_release_empty(ar_tls_heap);
    pthread_mutex_lock(&ar_lock);
    ar_arena_release_all();
    uint64_t after = ar_arena_bytes_given_back();
    pthread_mutex_unlock(&ar_lock);
    return (size_t)(after - before);
}
