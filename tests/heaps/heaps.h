/*
 * Shared helpers for the heap and limit tests (tests/heaps/).
 *
 * Every scenario runs in a forked child (../child.h) with a fresh
 * allocator; the figures are read with arena_get_stats() and
 * arena_heap_get_stats(), whose structures start with a `size` field the
 * caller sets.
 */
#ifndef TEST_HEAPS_H
#define TEST_HEAPS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "child.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define ARENA ((size_t)ARENA_ARENA_SIZE)
#define PAGE ((size_t)ARENA_POOL_SIZE)

#if defined(__SANITIZE_THREAD__)
#define HEAPS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HEAPS_TSAN 1
#endif
#endif
#ifndef HEAPS_TSAN
#define HEAPS_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define HEAPS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAPS_ASAN 1
#endif
#endif
#ifndef HEAPS_ASAN
#define HEAPS_ASAN 0
#endif

static inline struct arena_stats gstats(void)
{
    struct arena_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    arena_get_stats(&s);
    return s;
}

static inline struct arena_heap_stats hstats(const struct arena_heap *h)
{
    struct arena_heap_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    arena_heap_get_stats(h, &s);
    return s;
}

/* The block size a small request is served with: its size class. */
static inline size_t class_size(size_t n)
{
    return n == 0 ? 16 : (n + 15) & ~(size_t)15;
}

/* What a heap gives a request of n bytes: the size class up to 512 bytes,
 * whole 4 KiB pages up to an arena, whole arenas above. */
static inline size_t heap_block_size(size_t n)
{
    if (n <= ARENA_SMALL_MAX)
        return class_size(n);
    if (n <= ARENA)
        return (n + PAGE - 1) & ~(PAGE - 1);
    return (n + ARENA - 1) & ~(ARENA - 1);
}

static inline void thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(t, NULL, fn, arg);
    CHECKF(rc == 0, "pthread_create: error %d", rc);
}

static inline void thread_join(pthread_t t)
{
    int rc = pthread_join(t, NULL);
    CHECKF(rc == 0, "pthread_join: error %d", rc);
}

#endif /* TEST_HEAPS_H */
