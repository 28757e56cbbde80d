/*
 * Death-test harness for the libarena checked-build tests.
 *
 * death_run() forks a child with its stderr on a pipe, runs a misuse in
 * it and collects how it ended and everything it wrote to stderr.  Before
 * the misuse the child announces, with death_expect(), the text it expects
 * the allocator to print (it knows the pointer; the parent does not), on a
 * second pipe.  The parent then asserts with cmocka that the child died of
 * the expected signal and that each announced text is in its stderr.
 *
 * The test program itself never calls arena_*: every child starts with a
 * fresh allocator and reads its environment at its first allocation.
 */
#ifndef TEST_DEATH_H
#define TEST_DEATH_H

#include <stddef.h>

#define DEATH_MAX_OUT 16384
#define DEATH_MAX_EXPECT 8

struct death {
    int status;                         /* waitpid status                  */
    size_t outlen;
    char out[DEATH_MAX_OUT];            /* the child's stderr              */
    int nexpect;
    char expect[DEATH_MAX_EXPECT][256]; /* texts announced by the child    */
};

/* Run misuse() in a child whose environment also has the "NAME=value"
 * strings of env (NULL-terminated, may be NULL). */
void death_run(struct death *d, void (*misuse)(void), const char *const *env);

/* In the child: announce a text the allocator's report must contain. */
void death_expect(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* In the parent: assert the child was killed by signal sig and its stderr
 * holds every announced text (and at least one was announced). */
void death_assert_signal(const struct death *d, int sig);

/* In the parent: assert the child exited with status code (no signal). */
void death_assert_exit(const struct death *d, int code);

/* True when stderr contains s. */
int death_output_has(const struct death *d, const char *s);

#endif /* TEST_DEATH_H */
