/*
 * A counting, failing fake backend for the libarena tests.
 *
 * It implements struct ar_backend (src/backend.h) with its own mmap calls:
 * reserve over-reserves and trims to get ARENA_ARENA_SIZE alignment.  It
 * counts every call, remembers every region it handed out and whether it is
 * still live, logs purge ranges, and can be told to fail reserves.  Calls
 * that break the backend contract (releasing an unknown region, purging
 * outside a live region or not at pool granularity) fail the child at once.
 *
 * Use only in a forked child (see child.h): fake_install() must run before
 * the first arena_* call.
 *
 * Fault injection: fake_fail_call(kind, n) makes the n-th call of a kind
 * (reserve, purge, release) fail, once: reserve returns NULL, purge an
 * errno value (EAGAIN) without touching the range, release EBUSY (the
 * contract's "cannot give it back now") and keeps the region mapped.
 * The calls are numbered by counters in struct fake_faults.  By default
 * they live in this process's memory, so a child of fork() counts on from
 * a copy; after fake_faults_share() (called once, in the test program,
 * before it forks the scenario's child) they live in a MAP_SHARED page
 * instead, inherited by every descendant, and the numbering runs across
 * the whole process tree: with fake_fail_call(FAKE_PURGE, 5), the fifth
 * purge made by the scenario's child or by any child it forks fails, and
 * only that one.  The test program reads the totals there after the
 * child has exited.  The per-process counters of struct fake_state are
 * not shared: a forked child starts with a copy of its parent's.
 */
#ifndef TEST_FAKE_BACKEND_H
#define TEST_FAKE_BACKEND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define FAKE_MAX_REGIONS 1024
#define FAKE_MAX_PURGES  65536

struct fake_region {
    uintptr_t base;
    size_t size;
    int live;              /* reserved and not released          */
};

struct fake_purge {
    uintptr_t base;
    size_t size;
};

struct fake_state {
    uint64_t reserves;          /* successful reserve calls            */
    uint64_t reserve_failures;  /* reserve calls made to fail          */
    uint64_t releases;          /* successful release calls            */
    uint64_t release_failures;  /* release calls made to fail (EBUSY)  */
    uint64_t purges;            /* successful purge calls              */
    uint64_t purge_failures;    /* purge calls made to fail            */
    uint64_t purged_bytes;
    uint64_t fail_next;         /* fail this many reserves from now on */
    int fail_always;            /* fail every reserve while set        */
    int junk_on_purge;          /* purge overwrites the range (default) */
    size_t nregions;            /* regions ever reserved (live or not) */
    struct fake_region regions[FAKE_MAX_REGIONS];
    size_t npurge_log;          /* entries in purge_log                */
    struct fake_purge purge_log[FAKE_MAX_PURGES];
};

extern struct fake_state fake;

/* Reset the counters and install the fake with these AR_BACKEND_* flags.
 * Returns ar_backend_use()'s result. */
int fake_install(unsigned flags);

/* Regions reserved and not yet released. */
size_t fake_live_regions(void);

/* Index into fake.regions of the region holding p, or -1. */
long fake_region_of(const void *p);

/* ---- fault injection -------------------------------------------------- */

enum fake_call { FAKE_RESERVE, FAKE_PURGE, FAKE_RELEASE, FAKE_NCALLS };

struct fake_faults {
    _Atomic uint64_t calls[FAKE_NCALLS];   /* calls made since the reset    */
    _Atomic uint64_t fail_at[FAKE_NCALLS]; /* fail call number n (from 1);
                                              0: fail none                  */
    _Atomic uint64_t failed[FAKE_NCALLS];  /* calls made to fail            */
};

/* This process's counters, or the shared page after fake_faults_share(). */
extern struct fake_faults *fake_faults;

/* Move the counters into a MAP_SHARED page (once; later calls do nothing).
 * Returns 0, or -1 if the page cannot be mapped. */
int fake_faults_share(void);

/* Zero every counter and fail no call. */
void fake_faults_reset(void);

/* Fail the n-th call of kind (counted from the last reset), n >= 1;
 * n == 0 fails none. */
void fake_fail_call(enum fake_call kind, uint64_t n);

/* "reserve", "purge", "release". */
const char *fake_call_name(enum fake_call kind);

#endif /* TEST_FAKE_BACKEND_H */
