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
 */
#ifndef TEST_FAKE_BACKEND_H
#define TEST_FAKE_BACKEND_H

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
    uint64_t purges;            /* purge calls                         */
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

#endif /* TEST_FAKE_BACKEND_H */
