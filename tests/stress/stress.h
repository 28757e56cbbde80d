/*
 * Shared helpers for the libarena multi-thread stress tests.
 *
 * Every scenario runs in a forked child (../child.h): the allocator starts
 * fresh there, and worker threads report a failure with the CHECK macros,
 * which print the reason and _exit(1), so the cmocka parent sees a failed
 * test instead of a half-finished process.
 *
 * A block under test is described by struct blk: its address, the size
 * that was requested and a tag from which its byte pattern is derived
 * (thread number and serial), so whoever frees it, on whichever thread,
 * can check that nobody wrote into it.
 */
#ifndef TEST_STRESS_H
#define TEST_STRESS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "child.h"

/* Sanitizer and valgrind builds run the same scenarios with less work. */
#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#endif
#ifndef STRESS_TSAN
#define STRESS_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define STRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRESS_ASAN 1
#endif
#endif
#ifndef STRESS_ASAN
#define STRESS_ASAN 0
#endif

/* The workload size: environment variable `name` when set; otherwise def,
 * divided by tsan_div under ThreadSanitizer, by asan_div under
 * AddressSanitizer and by 20 under valgrind. */
uint64_t stress_count(const char *name, uint64_t def, uint64_t tsan_div, uint64_t asan_div);

/* Tags: the owner thread in the top 16 bits, a serial number below. */
static inline uint64_t stress_tag(unsigned thread, uint64_t serial)
{
    return ((uint64_t)thread << 48) | (serial & ((UINT64_C(1) << 48) - 1));
}

struct blk {
    unsigned char *p;
    uint32_t size;                      /* requested size */
    uint64_t tag;
};

/* A request size in 0..600, mostly small: about 70% up to 64 bytes, 25%
 * up to 512 and 5% above 512 (served by the system allocator). */
size_t stress_size(uint64_t *rng);

/* arena_alloc(size), check alignment and usable size, fill the pattern. */
struct blk blk_alloc(size_t size, uint64_t tag);

/* Check the pattern, then arena_free.  Fails the child on corruption. */
void blk_free(struct blk b);

/* Check the pattern only. */
void blk_verify(struct blk b);

/* Checks on the allocator's counters: on failure they print the stats
 * report, then fail the child with both values. */
#define SCHECK_OP(a, op, b)                                                \
    do {                                                                   \
        unsigned long long scheck_a_ = (unsigned long long)(a);            \
        unsigned long long scheck_b_ = (unsigned long long)(b);            \
        if (!(scheck_a_ op scheck_b_)) {                                   \
            arena_print_stats(stderr);                                     \
            child_fail(__FILE__, __LINE__, "check failed: %s %s %s "       \
                       "(%llu %s %llu)", #a, #op, #b, scheck_a_, #op,      \
                       scheck_b_);                                         \
        }                                                                  \
    } while (0)
#define SCHECK_EQ(a, b) SCHECK_OP(a, ==, b)
#define SCHECK_LE(a, b) SCHECK_OP(a, <=, b)
#define SCHECK_GE(a, b) SCHECK_OP(a, >=, b)

/* A mailbox: blocks one thread hands to another, under a mutex.  items
 * has room for cap blocks. */
struct mailbox {
    pthread_mutex_t lock;
    size_t n, cap;
    struct blk *items;
};
void mailbox_init(struct mailbox *mb, struct blk *items, size_t cap);
void mailbox_destroy(struct mailbox *mb);
/* Put b in mb; 0 when mb is full (b stays the caller's). */
int mailbox_put(struct mailbox *mb, struct blk b);
/* Take every block out of mb (into scratch, room for mb->cap blocks),
 * verify and free each; returns how many. */
size_t mailbox_free_all(struct mailbox *mb, struct blk *scratch);

/* Check every identity of include/arena.h that holds for one snapshot,
 * even one taken while other threads allocate (the pool counts come from
 * one walk under the lock).  `when` labels the failure message. */
void stress_check_identities(const struct arena_stats *s, const char *when);

/* Check that counters that only grow did not go down between a and b. */
void stress_check_monotonic(const struct arena_stats *a, const struct arena_stats *b);


/* ar_validate(): every invariant libarena can check from the calling
 * thread (its own heap's lists and thread cache, every heap's arena set,
 * the global cache), taking the locks it needs; aborts with "libarena:
 * invariant violated" on the first one broken.  Workers call it every
 * STRESS_VALIDATE_EVERY operations, main threads after the joins. */
#define STRESS_VALIDATE_EVERY 4096
void stress_validate(void);

/* Seconds since some fixed point (CLOCK_MONOTONIC), for progress lines. */
double stress_now(void);

/* Create a thread with a small stack; fails the child on error. */
void stress_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
void stress_thread_join(pthread_t t);

#endif /* TEST_STRESS_H */
