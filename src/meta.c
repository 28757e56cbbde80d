/*
 * Metadata memory: arena descriptors, thread heaps and registry leaves.
 *
 * Taken straight from mmap in chunks (not through the arena backend, which
 * may be the legacy brk one), bump-allocated, 64-byte aligned, zeroed, and
 * never given back: descriptors are recycled by their owners' free lists.
 * Called with ar_lock held.  It never calls malloc, so it is safe inside a
 * malloc replacement.
 */
#include <sys/mman.h>

#include "internal.h"

#define AR_META_CHUNK ((size_t)1 << 20)

uint64_t ar_meta_bytes;
static char *meta_cur, *meta_end;

void *ar_meta_alloc(size_t size)
{
    size = (size + 63) & ~(size_t)63;
    if ((size_t)(meta_end - meta_cur) < size) {
        size_t chunk = size > AR_META_CHUNK ? size : AR_META_CHUNK;
        void *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        ar_meta_bytes += chunk;
        if (size > AR_META_CHUNK)
            return m;               /* a large piece gets its own mapping */
        meta_cur = m;
        meta_end = meta_cur + chunk;
    }
    void *r = meta_cur;
    meta_cur += size;
    return r;
}
