/*
 * Heaps with a lifetime (arena_heap_*): the public entry points.
 *
 * A struct arena_heap is a heap like a thread's (heap.c), made and ended by
 * the user rather than by a thread: the handle points at the internal heap.
 * Its pools are mapped 0 in the registry, so its blocks never enter a
 * thread cache: any thread's arena_free sends them to their pool's remote
 * list, which the heap takes in when it needs blocks.  Blocks above 512
 * bytes are whole pages of the heap's own arenas (or a reservation of
 * their own above 256 KiB), so arena_heap_destroy gives everything back by
 * releasing the heap's arenas, adjacent ones in one call, without looking
 * at a single block.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "internal.h"

static struct ar_heap *heap_of(const struct arena_heap *uh, const char *fn)
{
    struct ar_heap *h = (struct ar_heap *)(uintptr_t)uh;
    if (h != NULL && (!h->user || atomic_load_explicit(&h->state, AR_RELAXED) != AR_HEAP_LIVE))
        ar_fatal("libarena: %s(%p): not a live heap (destroyed, or not made by "
                 "arena_heap_new)\n", fn, (const void *)uh);
    return h;
}

struct arena_heap *arena_heap_new(void)
{
    if (ar_unlikely(!atomic_load_explicit(&ar_started, memory_order_acquire)))
        ar_start();
    struct ar_heap *h = ar_heap_new_user();
    if (h == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    return (struct arena_heap *)(void *)h;
}

static void *heap_alloc(struct ar_heap *h, size_t size)
{
    if (size > AR_SMALL_MAX)
        return ar_heap_alloc_large(h, size);
    size_t m = size == 0 ? 1 : (size + AR_QUANTUM - 1) >> AR_QUANTUM_SHIFT;
    void *b = ar_cache_pop(h, m);
    if (b != NULL) {
        ar_on_alloc_from(h, b, (unsigned)m - 1);
        return b;
    }
    return ar_heap_refill(h, (unsigned)m - 1);
}

void *arena_heap_alloc(struct arena_heap *uh, size_t size)
{
    struct ar_heap *h = heap_of(uh, "arena_heap_alloc");
    if (h == NULL) {
        errno = EINVAL;
        return NULL;
    }
    void *b = heap_alloc(h, size);
    if (b == NULL && errno == ENOMEM && ar_limit_hard_set()) {
        ar_heaps_give_back();           /* at the hard limit: free memory first */
        b = heap_alloc(h, size);
    }
    return ar_limit_poll(b);
}

void *arena_heap_calloc(struct arena_heap *uh, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = arena_heap_alloc(uh, bytes);
    if (p != NULL)
        memset(p, 0, bytes);
    return p;
}

/* The usable size of p if it is a block of h, else abort. */
static size_t block_of(struct ar_heap *h, void *p)
{
    struct ar_arena *a = ar_registry_arena(p);
    struct ar_pool *pool = a != NULL ? ar_pool_of(a, p) : NULL;
    unsigned state = pool != NULL ? ar_state_get(pool) : AR_POOL_FREE;
    if (pool == NULL || atomic_load_explicit(&pool->owner, AR_RELAXED) != h ||
        state == AR_POOL_FREE || state == AR_POOL_TAIL ||
        (state == AR_POOL_LARGE && p != (void *)ar_pool_base(pool)))
        ar_fatal("libarena: arena_heap_realloc(%p, %p): not a block of this heap\n",
                 (void *)h, p);
    if (state != AR_POOL_LARGE)
        return ar_class_size(pool->cls);
    return a->huge ? (size_t)a->huge * AR_ARENA_SIZE : (size_t)pool->nblocks * AR_POOL_SIZE;
}

void *arena_heap_realloc(struct arena_heap *uh, void *p, size_t size)
{
    struct ar_heap *h = heap_of(uh, "arena_heap_realloc");
    if (h == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (p == NULL)
        return arena_heap_alloc(uh, size);
    size_t old = block_of(h, p);
    if (size <= old && size > old / 2)
        return p;                       /* it fits, and wastes at most half */
    void *q = arena_heap_alloc(uh, size);
    if (q == NULL)
        return NULL;                    /* p is left as it was */
    memcpy(q, p, old < size ? old : size);
    arena_free(p);
    return q;
}

void arena_heap_destroy(struct arena_heap *uh)
{
    struct ar_heap *h = heap_of(uh, "arena_heap_destroy");
    if (h != NULL)
        ar_heap_destroy_user(h);
}

void arena_heap_get_stats(const struct arena_heap *uh, struct arena_heap_stats *out)
{
    struct ar_heap *h = heap_of(uh, "arena_heap_get_stats");
    struct arena_heap_stats st;
    memset(&st, 0, sizeof(st));
    if (h != NULL)
        ar_heap_user_stats(h, &st);
    size_t n = out->size < sizeof(st) ? out->size : sizeof(st);
    st.size = out->size;
    memcpy(out, &st, n);
}
