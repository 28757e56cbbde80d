/*
 * What each build checks, in one place.
 *
 * Every block hand-out and every free goes through ar_on_alloc() and
 * ar_on_free(); every access the allocator makes to a free block's link
 * goes through ar_next_get() / ar_next_set().  In a plain release build
 * they are plain loads and stores and the hooks are empty.
 *
 *  - Checked build (meson -Dchecked=true, ARENA_CHECKED): a bitmap per
 *    pool records which blocks are handed out.  A free that is not the
 *    start of a block, or of a block not handed out, or into a pool not in
 *    use, is reported with the pointer and aborts.  Freed blocks are
 *    filled with AR_FREE_FILL past their link and checked when handed out
 *    again, which catches writes after free.
 *  - AddressSanitizer builds: free and never-used blocks are poisoned, so
 *    a use after free in the caller's code is reported by ASan.
 *  - Valgrind builds (meson -Dvalgrind=true): blocks are announced to
 *    memcheck as heap blocks (leaks, use after free, uninitialised reads).
 *
 * The release build's own checks (always on, slow paths only) are in
 * heap.c and pool.c: see docs/hardening.md.
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
#else
#define ar_vg_noaccess(p, n) ((void)(p), (void)(n))
#define ar_vg_defined(p, n) ((void)(p), (void)(n))
#define ar_vg_malloclike(p, n, zeroed) ((void)(p), (void)(n), (void)(zeroed))
#define ar_vg_freelike(p) ((void)(p))
#endif

#define AR_FREE_FILL 0xdf

/* The link of a free block: the only bytes of a free block the allocator
 * reads or writes. */
static inline struct ar_block *ar_next_get(struct ar_block *b)
{
    ar_unpoison(b, sizeof(*b));
    ar_vg_defined(b, sizeof(*b));
    struct ar_block *n = b->next;
    ar_poison(b, sizeof(*b));
    ar_vg_noaccess(b, sizeof(*b));
    return n;
}

static inline void ar_next_set(struct ar_block *b, struct ar_block *n)
{
    ar_unpoison(b, sizeof(*b));
    ar_vg_defined(b, sizeof(*b));
    b->next = n;
    ar_poison(b, sizeof(*b));
    ar_vg_noaccess(b, sizeof(*b));
}

/* A whole pool, when a heap takes it: nothing in it is handed out. */
static inline void ar_on_pool_acquire(char *base)
{
    ar_poison(base, AR_POOL_SIZE);
    ar_vg_noaccess(base, AR_POOL_SIZE);
}

/* A whole arena, before it goes back to the OS. */
static inline void ar_on_arena_release(void *base)
{
    ar_unpoison(base, AR_ARENA_SIZE);
    ar_vg_defined(base, AR_ARENA_SIZE);
}

#if ARENA_CHECKED
AR_HIDDEN void ar_check_alloc(struct ar_pool *p, struct ar_block *b);
AR_HIDDEN void ar_check_free(struct ar_pool *p, void *ptr);
AR_HIDDEN void ar_check_carve(struct ar_pool *p, char *b);
#endif

/* b leaves a free list for the caller. */
static inline void ar_on_alloc(struct ar_pool *p, struct ar_block *b)
{
    ar_unpoison(b, ar_class_size(p->cls));
#if ARENA_CHECKED
    ar_vg_defined(b, ar_class_size(p->cls));
    ar_check_alloc(p, b);
#endif
    ar_vg_malloclike(b, ar_class_size(p->cls), 0);
    (void)p;
    (void)b;
}

/* A block leaves a thread cache for the caller.  Its pool is looked up
 * only in the checked build. */
static inline void ar_on_alloc_cached(struct ar_block *b, unsigned c)
{
#if ARENA_CHECKED
    ar_unpoison(b, ar_class_size(c));
    ar_on_alloc(ar_pool_of(ar_registry_lookup(b), b), b);
#else
    ar_unpoison(b, ar_class_size(c));
    ar_vg_malloclike(b, ar_class_size(c), 0);
#endif
    (void)b;
    (void)c;
}

/* ptr, in arena a, with class c (< AR_NCLASS), comes back from the caller
 * (any thread), before its link is written. */
static inline void ar_on_free(struct ar_arena *a, unsigned c, void *ptr)
{
#if ARENA_CHECKED
    ar_check_free(ar_pool_of(a, ptr), ptr);
#endif
    ar_vg_freelike(ptr);
    ar_poison(ptr, ar_class_size(c));
    (void)a;
    (void)c;
    (void)ptr;
}

/* A freshly carved block, before its link is written. */
static inline void ar_on_carve(struct ar_pool *p, char *b)
{
#if ARENA_CHECKED
    ar_unpoison(b, ar_class_size(p->cls));
    ar_vg_defined(b, ar_class_size(p->cls));
    ar_check_carve(p, b);
    ar_poison(b, ar_class_size(p->cls));
    ar_vg_noaccess(b, ar_class_size(p->cls));
#endif
    (void)p;
    (void)b;
}

#endif /* AR_CHECK_H */
