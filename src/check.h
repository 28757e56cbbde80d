/*
 * What each build checks, in one place.
 *
 * Every block handed to the caller goes through ar_on_alloc(), every block
 * the caller gives back through ar_on_free(); every access the allocator
 * makes to a free block's link word goes through ar_link_read() /
 * ar_link_write().  In a plain release build they are plain loads and
 * stores and the hooks are empty.
 *
 *  - Checked build (meson -Dchecked=true, ARENA_CHECKED): a bitmap per
 *    pool records which blocks are handed out.  A free that is not the
 *    start of a block, or of a block not handed out, or into a pool not in
 *    use, is reported with the pointer and aborts.  Freed blocks are
 *    filled with AR_FREE_FILL past their link word and checked when handed
 *    out again, which catches writes after free.  AR_ASSERT() checks the
 *    invariants of docs/design.md on the slow paths.
 *  - AddressSanitizer builds: free and never-used blocks are poisoned, so
 *    a use after free in the caller's code is reported by ASan.
 *  - Valgrind builds (meson -Dvalgrind=true): blocks are announced to
 *    memcheck as heap blocks (leaks, use after free, uninitialised reads).
 *
 * Every build encodes free-list links and checks them when it follows
 * them (pool.c); see docs/hardening.md.
 */
#ifndef AR_CHECK_H
#define AR_CHECK_H

#include <string.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define AR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AR_ASAN 1
#endif
#endif

#ifdef AR_ASAN
#include <sanitizer/asan_interface.h>
#define ar_poison(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ar_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ar_poison(p, n) ((void)(p), (void)(n))
#define ar_unpoison(p, n) ((void)(p), (void)(n))
#endif

#if ARENA_VALGRIND
#include <valgrind/memcheck.h>
#define ar_vg_noaccess(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define ar_vg_defined(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#define ar_vg_malloclike(p, n, zeroed) VALGRIND_MALLOCLIKE_BLOCK((p), (n), 0, (zeroed))
#define ar_vg_freelike(p) VALGRIND_FREELIKE_BLOCK((p), 0)
#define ar_vg_pool_create(h) VALGRIND_CREATE_MEMPOOL((h), 0, 0)
#define ar_vg_pool_destroy(h) VALGRIND_DESTROY_MEMPOOL(h)
#define ar_vg_pool_alloc(h, p, n) VALGRIND_MEMPOOL_ALLOC((h), (p), (n))
#define ar_vg_pool_free(h, p) VALGRIND_MEMPOOL_FREE((h), (p))
#else
#define ar_vg_noaccess(p, n) ((void)(p), (void)(n))
#define ar_vg_defined(p, n) ((void)(p), (void)(n))
#define ar_vg_malloclike(p, n, zeroed) ((void)(p), (void)(n), (void)(zeroed))
#define ar_vg_freelike(p) ((void)(p))
#define ar_vg_pool_create(h) ((void)(h))
#define ar_vg_pool_destroy(h) ((void)(h))
#define ar_vg_pool_alloc(h, p, n) ((void)(h), (void)(p), (void)(n))
#define ar_vg_pool_free(h, p) ((void)(h), (void)(p))
#endif

#define AR_FREE_FILL 0xdf
#define AR_LINK_SIZE sizeof(uintptr_t)

/* The link word of a free block on a pool's free or remote list: the only
 * bytes of a free block the allocator reads or writes. */
static inline uintptr_t ar_link_read(void *b)
{
    ar_unpoison(b, AR_LINK_SIZE);
    ar_vg_defined(b, AR_LINK_SIZE);
    uintptr_t v = *(uintptr_t *)b;
    ar_poison(b, AR_LINK_SIZE);
    ar_vg_noaccess(b, AR_LINK_SIZE);
    return v;
}

static inline void ar_link_write(void *b, uintptr_t v)
{
    ar_unpoison(b, AR_LINK_SIZE);
    ar_vg_defined(b, AR_LINK_SIZE);
    *(uintptr_t *)b = v;
    ar_poison(b, AR_LINK_SIZE);
    ar_vg_noaccess(b, AR_LINK_SIZE);
}

/* A whole pool, when a heap takes it: nothing in it is handed out. */
static inline void ar_on_pool_acquire(char *base)
{
    ar_poison(base, AR_POOL_SIZE);
    ar_vg_noaccess(base, AR_POOL_SIZE);
}

/* Memory going back to the OS: nothing of it may stay marked, since the
 * OS may hand the range to anyone next. */
static inline void ar_on_range_release(void *base, size_t bytes)
{
    ar_unpoison(base, bytes);
    ar_vg_defined(base, bytes);
    (void)base;
    (void)bytes;
}

static inline void ar_on_arena_release(void *base)
{
    ar_on_range_release(base, AR_ARENA_SIZE);
}

#if ARENA_CHECKED
AR_HIDDEN void ar_check_alloc(void *b);
AR_HIDDEN void ar_check_free(void *ptr);
AR_HIDDEN void ar_check_carve(void *b, size_t size);
#endif

/* b, of class c, leaves the allocator for the caller. */
static inline void ar_on_alloc(void *b, unsigned c)
{
    ar_unpoison(b, ar_class_size(c));
#if ARENA_CHECKED
    ar_vg_defined(b, ar_class_size(c));
    ar_check_alloc(b);
#endif
    ar_vg_malloclike(b, ar_class_size(c), 0);
    (void)b;
    (void)c;
}

/* ptr, a block of ours of class c, comes back from the caller. */
static inline void ar_on_free(void *ptr, unsigned c)
{
#if ARENA_CHECKED
    ar_check_free(ptr);
#endif
    ar_vg_freelike(ptr);
    ar_poison(ptr, ar_class_size(c));
    (void)c;
    (void)ptr;
}

/* The same for any heap: a user heap's blocks are announced to memcheck
 * as blocks of a memory pool (the heap), so that destroying the heap
 * frees them all for memcheck too. */
static inline void ar_on_alloc_from(const struct ar_heap *h, void *b, unsigned c)
{
#if ARENA_VALGRIND
    if (h->user) {
        ar_unpoison(b, ar_class_size(c));
#if ARENA_CHECKED
        ar_vg_defined(b, ar_class_size(c));
        ar_check_alloc(b);
#endif
        ar_vg_pool_alloc(h, b, ar_class_size(c));
        return;
    }
#endif
    ar_on_alloc(b, c);
    (void)h;
}

static inline void ar_on_free_to(const struct ar_heap *owner, void *ptr, unsigned c)
{
#if ARENA_VALGRIND
    if (owner != NULL && owner->user) {
#if ARENA_CHECKED
        ar_check_free(ptr);
#endif
        ar_vg_pool_free(owner, ptr);
        ar_poison(ptr, ar_class_size(c));
        return;
    }
#endif
    ar_on_free(ptr, c);
    (void)owner;
}

/* A large block of a user heap (whole pages) handed out, and back. */
static inline void ar_on_large_alloc(const struct ar_heap *h, void *b, size_t bytes)
{
    ar_unpoison(b, bytes);
    ar_vg_defined(b, bytes);
    ar_vg_pool_alloc(h, b, bytes);
    (void)h;
    (void)b;
    (void)bytes;
}

static inline void ar_on_large_free(const struct ar_heap *owner, void *b, size_t bytes)
{
    ar_vg_pool_free(owner, b);
    ar_poison(b, bytes);
    (void)owner;
    (void)b;
    (void)bytes;
}

/* A pool goes back to its arena with blocks still handed out (a user
 * heap's borrowed pool, at the heap's destroy): they died with the heap. */
static inline void ar_on_pool_discard(struct ar_pool *p)
{
#if ARENA_CHECKED
    for (unsigned i = 0; i < 4; i++)
        atomic_store_explicit(&p->arena->ck_live[ar_pool_index(p)][i], 0, memory_order_relaxed);
#endif
    (void)p;
}

/* A user heap is made, or destroyed with every block in it. */
static inline void ar_on_heap_new(const struct ar_heap *h)
{
    ar_vg_pool_create(h);
    (void)h;
}

static inline void ar_on_heap_destroy(const struct ar_heap *h)
{
    ar_vg_pool_destroy(h);
    (void)h;
}

/* A block carved for the first time (it goes to a thread cache or is
 * handed out). */
static inline void ar_on_carve(void *b, size_t size)
{
#if ARENA_CHECKED
    ar_unpoison(b, size);
    ar_vg_defined(b, size);
    ar_check_carve(b, size);
    ar_poison(b, size);
    ar_vg_noaccess(b, size);
#endif
    (void)b;
    (void)size;
}

#endif /* AR_CHECK_H */
