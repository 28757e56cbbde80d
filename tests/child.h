/*
 * Forked-child helpers for the libarena tests.
 *
 * libarena keeps its state per process and reads its environment variables
 * at the first allocation, so every scenario that needs a fresh allocator
 * runs in a child forked from a test program that has not called any
 * arena_* function itself.  The parent asserts the child's exit status with
 * cmocka; inside the child only the CHECK macros below are used: they print
 * "file:line: what failed" to stderr with write(2) (no stdio buffers, no
 * malloc, so the program break is left alone) and _exit(1).
 */
#ifndef TEST_CHILD_H
#define TEST_CHILD_H

#include <stddef.h>
#include <stdint.h>

typedef void (*child_fn)(void *arg);

/* Run fn(arg) in a forked child.  The child exits 0 when fn returns.
 * Returns 0 when the child exited 0; otherwise prints how it ended (exit
 * status or signal) to stderr and returns the exit status, or 128 + the
 * signal number.  name labels the message. */
int child_run(const char *name, child_fn fn, void *arg);

/* Report a failed check and _exit(1).  Only for use in a child. */
void child_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Print a line to stderr with write(2), without allocating. */
void child_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond))                                                       \
            child_fail(__FILE__, __LINE__, "check failed: %s", #cond);     \
    } while (0)

#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        if (!(cond))                                                       \
            child_fail(__FILE__, __LINE__, __VA_ARGS__);                   \
    } while (0)

/* Compare two integers; the message shows both values. */
#define CHECK_OP(a, op, b)                                                 \
    do {                                                                   \
        unsigned long long check_a_ = (unsigned long long)(a);             \
        unsigned long long check_b_ = (unsigned long long)(b);             \
        if (!(check_a_ op check_b_))                                       \
            child_fail(__FILE__, __LINE__, "check failed: %s %s %s "       \
                       "(%llu %s %llu)", #a, #op, #b, check_a_, #op,       \
                       check_b_);                                          \
    } while (0)
#define CHECK_EQ(a, b) CHECK_OP(a, ==, b)
#define CHECK_LE(a, b) CHECK_OP(a, <=, b)
#define CHECK_GE(a, b) CHECK_OP(a, >=, b)
#define CHECK_LT(a, b) CHECK_OP(a, <, b)
#define CHECK_GT(a, b) CHECK_OP(a, >, b)

/* ---- small shared utilities ------------------------------------------ */

/* xorshift64*: a fast, reproducible generator for test workloads. */
static inline uint64_t test_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The number in environment variable name when set, else def. */
uint64_t test_env_u64(const char *name, uint64_t def);

/* True when the program runs under valgrind (its preload library is in
 * LD_PRELOAD): long loops use a smaller default count then. */
int test_under_valgrind(void);

/* Resident memory of this process in bytes, from /proc/self/statm (read
 * with open/read/sscanf: no allocation).  Only for use in a child. */
uint64_t test_rss_bytes(void);

/* True in an ASan or TSan build or under valgrind: the tool's own memory
 * and speed make resident-memory figures and long loops meaningless. */
int test_instrumented(void);

/* The workload size: environment variable name when set, else def, or
 * def_slow under valgrind or in a sanitizer build (ASan, TSan). */
uint64_t test_count(const char *name, uint64_t def, uint64_t def_slow);

/* Fill / verify a block with a byte pattern derived from tag.  verify
 * returns the offset of the first wrong byte, or (size_t)-1 when intact. */
void test_fill(void *p, size_t n, uint64_t tag);
size_t test_verify(const void *p, size_t n, uint64_t tag);

#define CHECK_PATTERN(p, n, tag)                                           \
    do {                                                                   \
        size_t check_off_ = test_verify((p), (n), (tag));                  \
        if (check_off_ != (size_t)-1)                                      \
            child_fail(__FILE__, __LINE__, "block %p (%zu bytes) "         \
                       "corrupted at offset %zu", (const void *)(p),       \
                       (size_t)(n), check_off_);                           \
    } while (0)

#endif /* TEST_CHILD_H */
