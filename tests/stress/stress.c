/* Shared helpers for the libarena multi-thread stress tests; see stress.h. */
#include "stress.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t stress_count(const char *name, uint64_t def, uint64_t tsan_div, uint64_t asan_div)
{
    if (STRESS_TSAN)
        def /= tsan_div;
    else if (STRESS_ASAN)
        def /= asan_div;
    else if (test_under_valgrind())
        def /= 20;
    if (def == 0)
        def = 1;
    return test_env_u64(name, def);
}

size_t stress_size(uint64_t *rng)
{
    uint64_t r = test_rand(rng);
    unsigned pick = (unsigned)(r % 100);
    r >>= 8;
    if (pick < 70)
        return (size_t)(r % 65);            /* 0..64 */
    if (pick < 95)
        return (size_t)(r % 513);           /* 0..512 */
    return 513 + (size_t)(r % 88);          /* 513..600: large */
}

struct blk blk_alloc(size_t size, uint64_t tag)
{
    unsigned char *p = arena_alloc(size);
    CHECKF(p != NULL, "arena_alloc(%zu) failed: %s", size, strerror(errno));
    CHECKF(((uintptr_t)p & 15) == 0, "arena_alloc(%zu) = %p is not 16-byte aligned",
           size, (void *)p);
    size_t usable = arena_usable_size(p);
    CHECKF(usable >= size && usable >= 1, "arena_usable_size(%p) = %zu for a %zu-byte request",
           (void *)p, usable, size);
    if (size <= ARENA_SMALL_MAX)
        CHECKF(usable == (size == 0 ? 16 : (size + 15) / 16 * 16),
               "arena_usable_size(%p) = %zu for a %zu-byte request", (void *)p, usable, size);
    test_fill(p, size, tag);
    return (struct blk){ .p = p, .size = (uint32_t)size, .tag = tag };
}

void blk_verify(struct blk b)
{
    size_t off = test_verify(b.p, b.size, b.tag);
    CHECKF(off == (size_t)-1,
           "block %p (%" PRIu32 " bytes, thread %u, serial %" PRIu64 ") corrupted at offset %zu",
           (void *)b.p, b.size, (unsigned)(b.tag >> 48),
           b.tag & ((UINT64_C(1) << 48) - 1), off);
}

void blk_free(struct blk b)
{
    blk_verify(b);
    arena_free(b.p);
}

void stress_check_identities(const struct arena_stats *s, const char *when)
{
    CHECKF(s->arenas_live == s->arenas_reserved - s->arenas_released,
           "%s: arenas live %" PRIu64 " != reserved %" PRIu64 " - released %" PRIu64, when,
           s->arenas_live, s->arenas_reserved, s->arenas_released);
    CHECKF(s->bytes_mapped == s->arenas_live * ARENA_ARENA_SIZE,
           "%s: bytes_mapped %" PRIu64 " for %" PRIu64 " arenas", when, s->bytes_mapped,
           s->arenas_live);
    CHECKF(s->bytes_mapped_peak >= s->bytes_mapped,
           "%s: bytes_mapped_peak %" PRIu64 " < bytes_mapped %" PRIu64, when,
           s->bytes_mapped_peak, s->bytes_mapped);
    CHECKF(s->pools_total == s->arenas_live * 64, "%s: pools_total %" PRIu64 " for %" PRIu64
           " arenas", when, s->pools_total, s->arenas_live);
    CHECKF(s->pools_total == s->pools_used + s->pools_full + s->pools_empty + s->pools_large +
                               s->pools_free,
           "%s: pools total %" PRIu64 " != used %" PRIu64 " + full %" PRIu64 " + empty %" PRIu64
           " + free %" PRIu64, when, s->pools_total, s->pools_used, s->pools_full,
           s->pools_empty, s->pools_free);
    CHECKF(s->pools_free == s->pools_free_dirty + s->pools_free_purged,
           "%s: pools free %" PRIu64 " != dirty %" PRIu64 " + purged %" PRIu64, when,
           s->pools_free, s->pools_free_dirty, s->pools_free_purged);
    CHECKF(s->arenas_empty <= s->arenas_live && s->arenas_empty * 64 <= s->pools_free,
           "%s: %" PRIu64 " empty arenas, %" PRIu64 " live, %" PRIu64 " free pools", when,
           s->arenas_empty, s->arenas_live, s->pools_free);
    uint64_t blocks = 0, bytes = 0;
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++) {
        blocks += s->blocks_live_class[c];
        bytes += s->blocks_live_class[c] * (c + 1) * 16;
    }
    CHECKF(s->blocks_live == blocks, "%s: blocks_live %" PRIu64 " != sum of classes %" PRIu64,
           when, s->blocks_live, blocks);
    CHECKF(s->bytes_live == bytes, "%s: bytes_live %" PRIu64 " != sum of classes %" PRIu64,
           when, s->bytes_live, bytes);
    CHECKF(s->backend != NULL, "%s: no backend name", when);
}

void stress_check_monotonic(const struct arena_stats *a, const struct arena_stats *b)
{
#define GROWS(f)                                                                            \
    CHECKF(b->f >= a->f, "counter " #f " went down: %" PRIu64 " then %" PRIu64, a->f, b->f)
    GROWS(arenas_reserved);
    GROWS(arenas_released);
    GROWS(bytes_mapped_peak);
    GROWS(pools_purged);
    GROWS(bytes_purged);
    GROWS(calls_mmap);
    GROWS(calls_munmap);
    GROWS(calls_brk);
    GROWS(calls_madvise);
    GROWS(reserve_failures);
    GROWS(heaps_abandoned);
#undef GROWS
}

void mailbox_init(struct mailbox *mb, struct blk *items, size_t cap)
{
    CHECK(pthread_mutex_init(&mb->lock, NULL) == 0);
    mb->n = 0;
    mb->cap = cap;
    mb->items = items;
}

void mailbox_destroy(struct mailbox *mb)
{
    pthread_mutex_destroy(&mb->lock);
}

int mailbox_put(struct mailbox *mb, struct blk b)
{
    int put = 0;
    pthread_mutex_lock(&mb->lock);
    if (mb->n < mb->cap) {
        mb->items[mb->n++] = b;
        put = 1;
    }
    pthread_mutex_unlock(&mb->lock);
    return put;
}

size_t mailbox_free_all(struct mailbox *mb, struct blk *scratch)
{
    pthread_mutex_lock(&mb->lock);
    size_t n = mb->n;
    memcpy(scratch, mb->items, n * sizeof(mb->items[0]));
    mb->n = 0;
    pthread_mutex_unlock(&mb->lock);
    for (size_t i = 0; i < n; i++)
        blk_free(scratch[i]);
    return n;
}

void stress_validate(void)
{
    ar_validate();
}

double stress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void stress_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0);
    /* Sanitizers need deeper stacks than the workers themselves. */
    size_t stack = (STRESS_TSAN || STRESS_ASAN) ? (size_t)1 << 20 : (size_t)256 << 10;
    CHECK(pthread_attr_setstacksize(&attr, stack) == 0);
    int rc = pthread_create(t, &attr, fn, arg);
    CHECKF(rc == 0, "pthread_create: %s", strerror(rc));
    pthread_attr_destroy(&attr);
}

void stress_thread_join(pthread_t t)
{
    int rc = pthread_join(t, NULL);
    CHECKF(rc == 0, "pthread_join: %s", strerror(rc));
}
