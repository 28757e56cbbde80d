/*
 * The public entry points, and process start-up.
 *
 * arena_alloc (small): the map index m = (size + 15) >> 4 (1..32, and 0
 * for size 0), the thread's heap from an initial-exec TLS slot, then pop
 * the thread cache's stack for m.  The cache's empty end holds NULL, and
 * so does the one slot that a thread without a heap points at, so a single
 * test sends every other case (empty cache, size 0, no heap yet) to the
 * out-of-line slow path.
 *
 * arena_free: the registry gives the block's map index with two dependent
 * loads and no read of the block's neighbourhood: class + 1 for a pool a
 * thread cache may take, 0 for NULL, foreign pointers, free pools and user
 * heaps.  Index 0's cache has no room, so one test ("room left?") sends
 * all of those, and a full cache, to the slow path.  The block is pushed
 * on the stack unless it is already its top (an immediate double free).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "internal.h"

_Atomic bool ar_started;

static void print_stats_at_exit(void)
{
    arena_print_stats(stderr);
}

/* First use: options, the secret for free-list links, the backend. */
void ar_start(void)
{
    ar_heap_start();
    bool first = false;
    int bad = 0;
    pthread_mutex_lock(&ar_lock);
    if (!atomic_load_explicit(&ar_started, memory_order_relaxed)) {
        ar_options_read();
        ar_pool_secret_init();
        bad = ar_arena_start();
        atomic_store_explicit(&ar_started, true, memory_order_release);
        first = true;
    }
    pthread_mutex_unlock(&ar_lock);
    if (!first)
        return;
    if (ar_options.limit != NULL && !ar_options.limit_bad &&
        !ar_limit_hard_set())           /* arena_set_limit() before us wins */
        ar_limit_set(ar_options.limit_soft, ar_options.limit_hard, NULL, NULL);
    /* Outside the lock: these may allocate, and so come back to us. */
    if (bad)
        fprintf(stderr, "libarena: ARENA_BACKEND=%s is not mmap or brk; using %s\n",
                ar_options.backend, ar_arena_backend_name());
    if (ar_options.limit_bad)
        fprintf(stderr, "libarena: ARENA_LIMIT=%s is not hard[,soft] with soft <= hard "
                        "(sizes such as 512M or 2G); no limit set\n", ar_options.limit);
    if (ar_options.print_stats)
        atexit(print_stats_at_exit);
}

/* The purger is started when the library is loaded, not by an allocation:
 * a malloc replacement may be called before the C library can start
 * threads. */
__attribute__((constructor)) static void api_library_init(void)
{
    ar_purger_from_options();
}

/* The soft limit was crossed: give back what is free, then, if that was
 * not enough, the user's callback (limit.c).  No lock is held here. */
static AR_COLD void soft_limit_crossed(void)
{
    ar_heap_release(ar_tls_heap);
    ar_heaps_give_back();
    ar_limit_soft_call();
}

/* After an allocation that may have grown the count. */
void *ar_limit_poll(void *p)
{
    if (ar_unlikely(ar_limit_soft_due()))
        soft_limit_crossed();
    return p;
}

/* The hard limit refused: give back what is free and try once more. */
static AR_COLD void *retry_at_limit(size_t size)
{
    ar_heap_release(ar_tls_heap);
    ar_heaps_give_back();
    if (size > AR_SMALL_MAX)
        return ar_sys_malloc(size);
    return ar_heap_refill(ar_tls_heap, ar_class_of(size));
}

static void *alloc_slow_inner(size_t size);

static AR_NOINLINE void *alloc_slow(size_t size)
{
    void *p = alloc_slow_inner(size);
    if (ar_unlikely(p == NULL) && errno == ENOMEM && ar_limit_hard_set() &&
        ar_tls_heap != &ar_heap_none)
        p = retry_at_limit(size);
    return ar_limit_poll(p);
}

static void *alloc_slow_inner(size_t size)
{
    if (size > AR_SMALL_MAX)
        return ar_sys_malloc(size);
    if (ar_unlikely(!atomic_load_explicit(&ar_started, memory_order_acquire)))
        ar_start();
    struct ar_heap *h = ar_tls_heap;
    if (h == &ar_heap_none || size == 0) {
        if (h == &ar_heap_none && ar_heap_get() == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        /* Taking a heap may allocate, and size 0 is a 16-byte block: go
         * through the fast path again. */
        return arena_alloc(size == 0 ? 1 : size);
    }
    return ar_heap_refill(h, ar_class_of(size));
}

/* Pop a block from cache m, or NULL, and hand it out. */
static inline void *cache_pop(struct ar_heap *h, size_t m)
{
    void *b = ar_cache_pop(h, m);
    if (ar_likely(b != NULL))
        ar_on_alloc(b, (unsigned)m - 1);
    return b;
}

/* Push ptr, a block the registry maps to m, on cache m; false if there
 * is no room (or m is 0). */
static inline bool cache_push(struct ar_heap *h, size_t m, void *ptr)
{
    ar_slot *t = atomic_load_explicit(&h->top[m], AR_RELAXED);
    if (ar_unlikely(t == h->room[m]))
        return false;
    ar_on_free(ptr, (unsigned)m - 1);   /* first: memcheck reports before we do */
    /* The owner is the only writer of its slots, so its own read needs no
     * atomicity; a plain read lets the compiler compare against memory in
     * one instruction (other threads only read the slots, relaxed). */
    if (ar_unlikely(ptr == *(void *const *)t))
        ar_fatal("libarena: double free of %p (size class %zu)\n", ptr, ar_class_size(m - 1));
    atomic_store_explicit(&t[-1], ptr, AR_RELAXED);
    ar_reload(m);
    atomic_store_explicit(&h->top[m], t - 1, AR_RELAXED);
    return true;
}

void *arena_alloc(size_t size)
{
    if (ar_likely(size <= AR_SMALL_MAX)) {
        void *b = cache_pop(ar_tls_heap, (size + AR_QUANTUM - 1) >> AR_QUANTUM_SHIFT);
        if (ar_likely(b != NULL))
            return b;
    }
    return alloc_slow(size);
}

static AR_NOINLINE void free_slow(void *ptr, size_t m)
{
    if (m != 0) {
        ar_heap_free_full(ar_tls_heap, (unsigned)m, ptr);
        return;
    }
    if (ptr == NULL)
        return;
    struct ar_arena *a = ar_registry_arena(ptr);
    if (a == NULL) {
        /* Before the system allocator reads the chunk header in front of
         * it (to count its size against the limits). */
        if (ar_meta_contains(ptr))
            ar_fatal("libarena: invalid free of %p: it points into libarena's metadata\n", ptr);
        ar_sys_free(ptr);
        return;
    }
    ar_heap_free_block(ar_tls_heap, a, ptr);
}

void arena_free(void *ptr)
{
#if ARENA_CHECKED
    if ((uintptr_t)ptr >> 47 != 0)
        ar_fatal("libarena: invalid free of %p: not a block of libarena\n", ptr);
#endif
    size_t m = ar_registry_map(ptr);
    if (ar_likely(cache_push(ar_tls_heap, m, ptr)))
        return;
    free_slow(ptr, m);
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

/* The usable size of a block of ours (any heap), 0 if ptr is in one of our
 * arenas but not at the start of an allocated block. */
static size_t block_size(const void *ptr, size_t m)
{
    if (m != 0)
        return ar_class_size((unsigned)m - 1);
    struct ar_arena *a = ar_registry_arena(ptr);
    struct ar_pool *p = ar_pool_of(a, ptr);
    switch (ar_state_get(p)) {
    case AR_POOL_FREE:
    case AR_POOL_TAIL:
        return 0;
    case AR_POOL_LARGE:
        if (ptr != (void *)ar_pool_base(p))
            return 0;
        return a->huge ? (size_t)a->huge * AR_ARENA_SIZE : (size_t)p->nblocks * AR_POOL_SIZE;
    default:
        return ar_class_size(p->cls);
    }
}

size_t arena_usable_size(const void *ptr)
{
    if (ptr == NULL)
        return 0;
    size_t m = ar_registry_map(ptr);
    if (m == 0 && ar_registry_arena(ptr) == NULL)
        return ar_sys_usable_size((void *)ptr);
    return block_size(ptr, m);
}

/* The size a small block of usable size old moves to when realloc must
 * grow it to size: at least a quarter more than it had (up to the largest
 * class while size is small), so a block that grows in small steps moves
 * about every 25 % of growth instead of at every 16-byte class.  The new
 * size still fills more than half of the block it gets. */
static size_t grow_size(size_t old, size_t size)
{
    size_t want = old + old / 4;
    if (size >= want)
        return size;
    if (size <= AR_SMALL_MAX && want > AR_SMALL_MAX)
        return AR_SMALL_MAX;
    return want;
}

/* realloc, in place where it can be:
 *   small -> small: the block stays when the new size fits its class and
 *     uses more than half of it (a shrink to less than half moves, so the
 *     bytes go back); a block that grows out of its class moves to one at
 *     least a quarter larger (grow_size);
 *   large -> large: the system allocator's realloc, which grows in place
 *     or moves without our copy;
 *   large -> small: the block stays when the new size fits its usable
 *     size and is at least half of it (at most half wasted); otherwise it
 *     moves into a pool;
 *   small -> large: a new large block, copied.
 * On failure NULL is returned with errno = ENOMEM and ptr is untouched. */
void *arena_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return arena_alloc(size);
    size_t m = ar_registry_map(ptr);
    size_t old, want = size;
    if (m != 0 || ar_registry_arena(ptr) != NULL) {
        old = block_size(ptr, m);
        if (old == 0)
            ar_fatal("libarena: invalid realloc of %p: not an allocated block\n", ptr);
        if (size <= old && size > old / 2)
            return ptr;
        if (m != 0 && size > old)
            want = grow_size(old, size);
        /* Small to small through the thread cache: no second lookup. */
        struct ar_heap *h = ar_tls_heap;
        void *q;
        if (m != 0 && want - 1 < AR_SMALL_MAX &&
            (q = cache_pop(h, (want + AR_QUANTUM - 1) >> AR_QUANTUM_SHIFT)) != NULL) {
            memcpy(q, ptr, old < size ? old : size);
            if (!cache_push(h, m, ptr))
                free_slow(ptr, m);
            return q;
        }
    } else {
        if (size > AR_SMALL_MAX)
            return ar_limit_poll(ar_sys_realloc(ptr, size));
        old = ar_sys_usable_size(ptr);
        if (size <= old && size >= old / 2)
            return ptr;
    }
    void *q = arena_alloc(want);
    if (q == NULL)
        return NULL;
    memcpy(q, ptr, old < size ? old : size);
    arena_free(ptr);
    return q;
}

size_t arena_release(void)
{
    if (!atomic_load_explicit(&ar_started, memory_order_acquire))
        return 0;
    uint64_t before = ar_arena_bytes_given_back();
    ar_heap_release(ar_tls_heap);
    ar_heaps_give_back();
    return (size_t)(ar_arena_bytes_given_back() - before);
}

int arena_set_limit(size_t soft_bytes, size_t hard_bytes,
                    void (*on_soft)(size_t bytes, void *arg), void *arg)
{
    return ar_limit_set(soft_bytes, hard_bytes, on_soft, arg);
}

int arena_set_backend(const char *name)
{
    if (name != NULL && strcmp(name, "mmap") == 0)
        return ar_backend_use(&ar_backend_mmap);
    if (name != NULL && strcmp(name, "brk") == 0)
        return ar_backend_use(&ar_backend_brk);
    return EINVAL;
}
