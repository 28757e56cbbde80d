/*
 * libFuzzer target for libarena: the input is a program of allocator
 * operations on a table of 64 slots; every block's contents are checked.
 *
 * Each operation starts with an opcode byte, then its operands (bytes past
 * the end of the input read as 0):
 *
 *   op % 12   operands               what it does
 *   0  alloc   slot, size16          size % 601 (0..600: small and just large)
 *   1  big     slot, size16          600 + size16 (large, up to 66135 bytes)
 *   2  calloc  slot, n8, size16      n8 % 17 elements of size16 % 100 bytes
 *   3  realloc slot, size16          size16 % 700, or realloc(NULL, ...) if empty
 *   4  free    slot
 *   5  write   slot, tag8            refill the block with a new pattern
 *   6  verify  -                     check every live block
 *   7  usable  slot                  arena_usable_size >= size; for a small
 *                                    block == its class size, or, for a
 *                                    block arena_realloc returned (kept in
 *                                    place, or moved with room to grow), a
 *                                    class size the size uses more than
 *                                    half of
 *   8  release -                     arena_release()
 *   9  burst   n8, size16            allocate n8 % 64 blocks of one size,
 *                                    fill, check, free in reverse
 *  10  remote  slot                  free the block on a helper thread
 *  11  badcalloc -                   calloc whose n * size overflows -> NULL
 *
 * A slot that is in use is freed before a new block goes in.  Each block
 * holds a pattern derived from (slot tag, offset); it is verified before it
 * is freed, reallocated or rewritten, and after realloc the common prefix
 * must have survived.  Every new block must be 16-byte aligned, at least
 * as large as requested, zeroed if from calloc, and must not overlap any
 * live block.  Everything is freed at the end of each input.
 *
 * Every VALIDATE_EVERY operations and at the end of each input the
 * allocator checks its own invariants (ar_validate: the calling thread's
 * heap, every arena set, the global cache) and aborts if one is broken.
 *
 * A failed check prints what went wrong and aborts, which libFuzzer
 * reports as a crash; the sanitizers and the checked build add their own
 * reports.  fuzz_main.c replays inputs without libFuzzer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define NSLOTS 64
#define VALIDATE_EVERY 64

/* libarena's invariant check (src/heap.c).  Hidden from the shared
 * library, reachable here because the target links the static one (or
 * the core's objects). */
void ar_validate(void);

struct slot {
    unsigned char *p;
    size_t size;
    uint8_t tag;
    int resized;        /* the block came from arena_realloc */
};

static struct slot slots[NSLOTS];

struct input {
    const uint8_t *data;
    size_t len, pos;
};

static unsigned take8(struct input *in)
{
    return in->pos < in->len ? in->data[in->pos++] : 0;
}

static unsigned take16(struct input *in)
{
    unsigned lo = take8(in);
    return lo | take8(in) << 8;
}

static _Noreturn void die(const char *what, const void *p, size_t size, size_t off)
{
    fprintf(stderr, "fuzz: %s (block %p, %zu bytes, offset %zu)\n", what, p, size, off);
    abort();
}

/* The byte loops below run for every byte of every block: without
 * coverage instrumentation, so that libFuzzer's time goes to the
 * allocator (the branches that matter are in it). */
#if defined(__clang__)
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define NO_COVERAGE
#endif

/* Byte i of a block with tag t is byte i % 8 of word(t, i / 8): the
 * blocks are filled and checked 8 bytes at a time, and a prefix of a
 * block holds the same bytes whatever the block's size (realloc keeps
 * the common prefix). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "check() reads the tail bytes little-endian");

static inline uint64_t pattern_word(uint8_t tag, size_t k)
{
    return ((uint64_t)tag + 1) * 0x9e3779b97f4a7c15u ^ (uint64_t)(k + 1) * 0xd6e8feb86659fd93u;
}

NO_COVERAGE static void fill(unsigned char *p, size_t n, uint8_t tag)
{
    size_t k = 0;
    for (; 8 * k + 8 <= n; k++) {
        uint64_t w = pattern_word(tag, k);
        memcpy(p + 8 * k, &w, 8);
    }
    uint64_t w = pattern_word(tag, k);
    memcpy(p + 8 * k, &w, n - 8 * k);
}

NO_COVERAGE static void check(const unsigned char *p, size_t n, uint8_t tag)
{
    size_t k = 0;
    for (; 8 * k < n; k++) {
        uint64_t w = pattern_word(tag, k), got = 0;
        size_t len = n - 8 * k < 8 ? n - 8 * k : 8;
        memcpy(&got, p + 8 * k, len);
        if (len < 8)
            w &= ((uint64_t)1 << (8 * len)) - 1;        /* little-endian tail */
        if (got != w)
            for (size_t i = 8 * k; i < 8 * k + len; i++)
                if (p[i] != (unsigned char)(pattern_word(tag, i / 8) >> (8 * (i % 8))))
                    die("block contents changed", p, n, i);
    }
}

static void check_slot(const struct slot *s)
{
    if (s->p != NULL)
        check(s->p, s->size, s->tag);
}

/* A new block of size bytes (not yet in a slot). */
static void check_new(const unsigned char *p, size_t size)
{
    if (((uintptr_t)p & 15) != 0)
        die("block not 16-byte aligned", p, size, 0);
    size_t usable = arena_usable_size(p);
    if (usable < size)
        die("usable size smaller than the request", p, size, usable);
    size_t span = size ? size : 1;
    for (int i = 0; i < NSLOTS; i++) {
        const struct slot *s = &slots[i];
        if (s->p == NULL)
            continue;
        size_t sspan = s->size ? s->size : 1;
        if ((uintptr_t)p < (uintptr_t)s->p + sspan && (uintptr_t)s->p < (uintptr_t)p + span)
            die("new block overlaps a live block", p, size, (size_t)i);
    }
}

static void slot_clear(struct slot *s)
{
    s->p = NULL;
    s->size = 0;
    s->resized = 0;
}

static void slot_free(struct slot *s)
{
    check_slot(s);
    arena_free(s->p);
    slot_clear(s);
}

static void slot_set(struct slot *s, unsigned char *p, size_t size, uint8_t tag)
{
    s->p = p;
    s->size = size;
    s->tag = tag;
    s->resized = 0;
    fill(p, size, tag);
}

static void alloc_failed(size_t size)
{
    if (errno != ENOMEM)
        die("allocation failed without ENOMEM", NULL, size, (size_t)errno);
}

/* ---- the helper thread for cross-thread frees ------------------------- */

static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hand_cond = PTHREAD_COND_INITIALIZER;
static void *hand_ptr;
static int hand_full;
static pthread_once_t helper_once = PTHREAD_ONCE_INIT;

static void *helper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&hand_lock);
    for (;;) {
        while (!hand_full)
            pthread_cond_wait(&hand_cond, &hand_lock);
        arena_free(hand_ptr);
        hand_full = 0;
        pthread_cond_broadcast(&hand_cond);
    }
    return NULL;
}

static void start_helper(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, helper, NULL) != 0)
        die("pthread_create failed", NULL, 0, 0);
    pthread_detach(t);
}

/* Free p on the helper thread and wait until it is done: the order of
 * operations stays the same from run to run. */
static void remote_free(void *p)
{
    pthread_once(&helper_once, start_helper);
    pthread_mutex_lock(&hand_lock);
    hand_ptr = p;
    hand_full = 1;
    pthread_cond_broadcast(&hand_cond);
    while (hand_full)
        pthread_cond_wait(&hand_cond, &hand_lock);
    pthread_mutex_unlock(&hand_lock);
}

/* ---- the interpreter -------------------------------------------------- */

static size_t class_size(size_t size)
{
    return size == 0 ? 16 : (size + 15) & ~(size_t)15;
}

/* The usable size a small block of s may have (docs/api.md): its class
 * size, or, for a block arena_realloc returned, the usable size the block
 * had when it stayed in place (a size class, or a system block's) or the
 * class a grown block moved to with room to spare; the new size fills
 * either to at least half. */
static int usable_ok(const struct slot *s, size_t usable)
{
    if (usable < s->size)
        return 0;
    if (s->size > ARENA_SMALL_MAX)
        return 1;
    if (usable == class_size(s->size))
        return 1;
    return s->resized && s->size >= usable / 2;
}

static void burst(size_t n, size_t size)
{
    unsigned char *blocks[64];
    for (size_t i = 0; i < n; i++) {
        errno = 0;
        blocks[i] = arena_alloc(size);
        if (blocks[i] == NULL) {
            alloc_failed(size);
            n = i;
            break;
        }
        check_new(blocks[i], size);
        for (size_t j = 0; j < i; j++)
            if (blocks[j] == blocks[i])
                die("block handed out twice", blocks[i], size, j);
        fill(blocks[i], size, (uint8_t)i);
    }
    for (size_t i = n; i-- > 0;) {
        check(blocks[i], size, (uint8_t)i);
        arena_free(blocks[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    struct input in = { data, len, 0 };
    uint8_t next_tag = 1;
    unsigned ops = 0;
    while (in.pos < in.len) {
        if (++ops % VALIDATE_EVERY == 0)
            ar_validate();
        unsigned op = take8(&in) % 12;
        struct slot *s;
        unsigned char *p;
        size_t size;
        switch (op) {
        case 0:
        case 1:
            s = &slots[take8(&in) % NSLOTS];
            size = op == 0 ? take16(&in) % 601 : 600 + take16(&in);
            if (s->p)
                slot_free(s);
            errno = 0;
            if ((p = arena_alloc(size)) == NULL) {
                alloc_failed(size);
                break;
            }
            check_new(p, size);
            slot_set(s, p, size, next_tag++);
            break;
        case 2: {
            s = &slots[take8(&in) % NSLOTS];
            size_t n = take8(&in) % 17;
            size_t each = take16(&in) % 100;
            if (s->p)
                slot_free(s);
            errno = 0;
            if ((p = arena_calloc(n, each)) == NULL) {
                alloc_failed(n * each);
                break;
            }
            check_new(p, n * each);
            for (size_t i = 0; i < n * each; i++)
                if (p[i] != 0)
                    die("calloc block not zeroed", p, n * each, i);
            slot_set(s, p, n * each, next_tag++);
            break;
        }
        case 3: {
            s = &slots[take8(&in) % NSLOTS];
            size = take16(&in) % 700;
            check_slot(s);
            unsigned char *old = s->p;
            size_t keep = s->size < size ? s->size : size;
            errno = 0;
            if ((p = arena_realloc(old, size)) == NULL) {
                alloc_failed(size);
                check_slot(s);          /* the old block is untouched */
                break;
            }
            s->p = NULL;                /* not live while checking overlap */
            check_new(p, size);
            check(p, keep, s->tag);
            slot_set(s, p, size, s->tag);
            s->resized = 1;
            break;
        }
        case 4:
            s = &slots[take8(&in) % NSLOTS];
            if (s->p)
                slot_free(s);
            break;
        case 5:
            s = &slots[take8(&in) % NSLOTS];
            check_slot(s);
            s->tag = (uint8_t)take8(&in);
            if (s->p)
                fill(s->p, s->size, s->tag);
            break;
        case 6:
            for (int i = 0; i < NSLOTS; i++)
                check_slot(&slots[i]);
            break;
        case 7:
            s = &slots[take8(&in) % NSLOTS];
            if (s->p) {
                size_t usable = arena_usable_size(s->p);
                if (!usable_ok(s, usable))
                    die("wrong usable size", s->p, s->size, usable);
            }
            break;
        case 8:
            arena_release();
            break;
        case 9: {
            size_t n = take8(&in) % 64;
            burst(n, take16(&in) % 601);
            break;
        }
        case 10:
            s = &slots[take8(&in) % NSLOTS];
            if (s->p) {
                check_slot(s);
                remote_free(s->p);
                slot_clear(s);
            }
            break;
        case 11:
            errno = 0;
            if (arena_calloc(SIZE_MAX / 2, 3) != NULL || errno != ENOMEM)
                die("overflowing calloc did not fail with ENOMEM", NULL, 0, 0);
            break;
        }
    }
    for (int i = 0; i < NSLOTS; i++) {
        check_slot(&slots[i]);
        arena_free(slots[i].p);
        slot_clear(&slots[i]);
    }
    ar_validate();
    return 0;
}
