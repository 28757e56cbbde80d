/*
 * Metadata memory: arena descriptors, heaps and their thread caches, and
 * registry leaves.
 *
 * Taken straight from mmap in 1 MiB chunks (not through the arena backend,
 * which may be the legacy brk one), bump-allocated and zeroed.  Nothing is
 * unmapped: descriptors are recycled by their owners' free lists, and the
 * page of pool descriptors of a released arena is purged, so it costs
 * address space but no memory until the next arena reuses it.
 * Called with ar_lock held.  It never calls malloc, so it is safe inside a
 * malloc replacement.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"

#define AR_META_CHUNK ((size_t)1 << 20)

static uint64_t meta_bytes;               /* mapped and not purged */
static uint64_t calls_mmap, calls_madvise;

/* Every chunk, so the checked build can tell a pointer into metadata. */
#define AR_META_MAX_CHUNKS 4096
static _Atomic uintptr_t chunks[AR_META_MAX_CHUNKS];
static _Atomic size_t chunk_sizes[AR_META_MAX_CHUNKS];
static _Atomic unsigned nchunks;

static void remember(void *m, size_t size)
{
    unsigned n = atomic_load_explicit(&nchunks, memory_order_relaxed);
    if (n >= AR_META_MAX_CHUNKS)
        return;
    atomic_store_explicit(&chunk_sizes[n], size, memory_order_relaxed);
    atomic_store_explicit(&chunks[n], (uintptr_t)m, memory_order_relaxed);
    atomic_store_explicit(&nchunks, n + 1, memory_order_release);
}

bool ar_meta_contains(const void *p)
{
    unsigned n = atomic_load_explicit(&nchunks, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        uintptr_t base = atomic_load_explicit(&chunks[i], memory_order_relaxed);
        if ((uintptr_t)p - base < atomic_load_explicit(&chunk_sizes[i], memory_order_relaxed))
            return true;
    }
    return false;
}

struct bump {
    char *cur, *end;
};
static struct bump small_bump, page_bump;

static void *bump_alloc(struct bump *b, size_t size, size_t align)
{
    char *p = (char *)(((uintptr_t)b->cur + align - 1) & ~(uintptr_t)(align - 1));
    if (b->cur == NULL || p + size > b->end) {
        size_t chunk = size > AR_META_CHUNK ? size : AR_META_CHUNK;
        calls_mmap++;
        void *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        meta_bytes += chunk;
        remember(m, chunk);
        if (size > AR_META_CHUNK)
            return m;               /* a large piece gets its own mapping */
        b->cur = m;
        b->end = b->cur + chunk;
        p = b->cur;
    }
    b->cur = p + size;
    return p;
}

void *ar_meta_alloc(size_t size)
{
    return bump_alloc(&small_bump, (size + 63) & ~(size_t)63, 64);
}

void *ar_meta_page(void)
{
    return bump_alloc(&page_bump, 4096, 4096);
}

static int cmp_addr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

/* Give n pages back to the OS (they read as zero afterwards), contiguous
 * ones in one call. */
void ar_meta_purge_pages(void **pages, unsigned n)
{
    qsort(pages, n, sizeof(*pages), cmp_addr);
    for (unsigned i = 0; i < n;) {
        unsigned j = i + 1;
        while (j < n && (char *)pages[j] == (char *)pages[j - 1] + 4096)
            j++;
        calls_madvise++;
        if (madvise(pages[i], (size_t)(j - i) * 4096, MADV_DONTNEED) == 0)
            meta_bytes -= (uint64_t)(j - i) * 4096;
        i = j;
    }
}

/* A purged page is in use again. */
void ar_meta_unpurge(void *page)
{
    (void)page;
    meta_bytes += 4096;
}

uint64_t ar_meta_bytes(void)
{
    return meta_bytes;
}

void ar_meta_calls(uint64_t *mmaps, uint64_t *madvises)
{
    *mmaps = calls_mmap;
    *madvises = calls_madvise;
}
