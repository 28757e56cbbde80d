/* A counting, failing fake backend; see fake_backend.h. */
#include "fake_backend.h"

#include "arena.h"
#include "backend.h"
#include "child.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FAKE_VG_QUIET_BEGIN VALGRIND_DISABLE_ERROR_REPORTING
#define FAKE_VG_QUIET_END VALGRIND_ENABLE_ERROR_REPORTING
#endif
#endif
#ifndef FAKE_VG_QUIET_BEGIN
#define FAKE_VG_QUIET_BEGIN ((void)0)
#define FAKE_VG_QUIET_END ((void)0)
#endif

struct fake_state fake;

static struct fake_faults local_faults;
struct fake_faults *fake_faults = &local_faults;

/* Count a call of kind; true if it is the one to fail. */
static int fault_due(enum fake_call kind)
{
    uint64_t n = atomic_fetch_add(&fake_faults->calls[kind], 1) + 1;
    if (n != atomic_load(&fake_faults->fail_at[kind]))
        return 0;
    atomic_fetch_add(&fake_faults->failed[kind], 1);
    return 1;
}

static void *fake_reserve(void *ctx, size_t size, size_t align)
{
    (void)ctx;
    if (size != ARENA_ARENA_SIZE || align != ARENA_ARENA_SIZE)
        child_fail(__FILE__, __LINE__, "fake reserve: size %zu align %zu, "
                   "expected %u", size, align, ARENA_ARENA_SIZE);
    if (fault_due(FAKE_RESERVE)) {
        fake.reserve_failures++;
        return NULL;
    }
    if (fake.fail_always || fake.fail_next > 0) {
        if (fake.fail_next > 0)
            fake.fail_next--;
        fake.reserve_failures++;
        return NULL;
    }
    if (fake.nregions == FAKE_MAX_REGIONS)
        child_fail(__FILE__, __LINE__, "fake reserve: more than %d regions",
                   FAKE_MAX_REGIONS);
    size_t span = size + align;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t base = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = base - (uintptr_t)raw;
    size_t tail = span - head - size;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)base + size, tail);
    fake.regions[fake.nregions].base = base;
    fake.regions[fake.nregions].size = size;
    fake.regions[fake.nregions].live = 1;
    fake.nregions++;
    fake.reserves++;
    return (void *)base;
}

static int fake_release(void *ctx, void *p, size_t size)
{
    (void)ctx;
    long i = fake_region_of(p);
    if (i < 0 || fake.regions[i].base != (uintptr_t)p || !fake.regions[i].live
        || fake.regions[i].size != size)
        child_fail(__FILE__, __LINE__, "fake release(%p, %zu): not a live "
                   "region from reserve", p, size);
    if (fault_due(FAKE_RELEASE)) {
        fake.release_failures++;
        return EBUSY;                   /* the region stays mapped and ours */
    }
    fake.regions[i].live = 0;
    fake.releases++;
    munmap(p, size);
    return 0;
}

/* The backend owns the memory it reserved, but the core may mark free
 * pools as off limits for a sanitizer, or (a -Dvalgrind=true build under
 * valgrind) their blocks as freed for memcheck: write around that marking
 * and leave it as it was, as madvise does. */
__attribute__((no_sanitize_address))
static void junk_fill(void *p, size_t n)
{
    volatile unsigned char *b = p;
    FAKE_VG_QUIET_BEGIN;
    for (size_t i = 0; i < n; i++)
        b[i] = 0xA5;
    FAKE_VG_QUIET_END;
}

static int fake_purge(void *ctx, void *p, size_t size)
{
    (void)ctx;
    uintptr_t a = (uintptr_t)p;
    long i = fake_region_of(p);
    if (i < 0 || size == 0 || a % ARENA_POOL_SIZE || size % ARENA_POOL_SIZE
        || a + size > fake.regions[i].base + fake.regions[i].size)
        child_fail(__FILE__, __LINE__, "fake purge(%p, %zu): not whole pools "
                   "inside a live region", p, size);
    if (fault_due(FAKE_PURGE)) {
        fake.purge_failures++;
        return EAGAIN;                  /* nothing purged, nothing written */
    }
    if (fake.npurge_log < FAKE_MAX_PURGES) {
        fake.purge_log[fake.npurge_log].base = a;
        fake.purge_log[fake.npurge_log].size = size;
        fake.npurge_log++;
    }
    fake.purges++;
    fake.purged_bytes += size;
    /* The contract says nothing about what reads back: make sure nobody
     * relies on it by writing junk rather than zeroes. */
    if (fake.junk_on_purge)
        junk_fill(p, size);
    return 0;
}

static struct ar_backend fake_desc = {
    .name = "fake",
    .flags = 0,
    .reserve = fake_reserve,
    .release = fake_release,
    .purge = fake_purge,
    .ctx = NULL,
};

int fake_install(unsigned flags)
{
    memset(&fake, 0, sizeof fake);
    fake.junk_on_purge = 1;
    fake_desc.flags = flags;
    return ar_backend_use(&fake_desc);
}

size_t fake_live_regions(void)
{
    size_t n = 0;
    for (size_t i = 0; i < fake.nregions; i++)
        n += fake.regions[i].live != 0;
    return n;
}

long fake_region_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; i < fake.nregions; i++) {
        const struct fake_region *r = &fake.regions[i];
        if (r->live && a >= r->base && a < r->base + r->size)
            return (long)i;
    }
    return -1;
}

int fake_faults_share(void)
{
    if (fake_faults != &local_faults)
        return 0;
    void *page = mmap(NULL, sizeof(struct fake_faults), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return -1;
    fake_faults = page;
    fake_faults_reset();
    return 0;
}

void fake_faults_reset(void)
{
    for (int k = 0; k < FAKE_NCALLS; k++) {
        atomic_store(&fake_faults->calls[k], 0);
        atomic_store(&fake_faults->fail_at[k], 0);
        atomic_store(&fake_faults->failed[k], 0);
    }
}

void fake_fail_call(enum fake_call kind, uint64_t n)
{
    atomic_store(&fake_faults->fail_at[kind], n);
}

const char *fake_call_name(enum fake_call kind)
{
    static const char *const names[FAKE_NCALLS] = { "reserve", "purge", "release" };
    return (unsigned)kind < FAKE_NCALLS ? names[kind] : "?";
}
