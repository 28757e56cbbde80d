/* A counting, failing fake backend; see fake_backend.h. */
#include "fake_backend.h"

#include "arena.h"
#include "backend.h"
#include "child.h"

#include <string.h>
#include <sys/mman.h>

struct fake_state fake;

static void *fake_reserve(void *ctx, size_t size, size_t align)
{
    (void)ctx;
    if (size != ARENA_ARENA_SIZE || align != ARENA_ARENA_SIZE)
        child_fail(__FILE__, __LINE__, "fake reserve: size %zu align %zu, "
                   "expected %u", size, align, ARENA_ARENA_SIZE);
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
    fake.regions[i].live = 0;
    fake.releases++;
    munmap(p, size);
    return 0;
}

/* The backend owns the memory it reserved, but the core may mark free
 * pools as off limits for a sanitizer: write around that marking. */
__attribute__((no_sanitize_address))
static void junk_fill(void *p, size_t n)
{
    volatile unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = 0xA5;
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
