/*
 * mmap backend: each arena is its own anonymous mapping, released with
 * munmap, purged with madvise(MADV_DONTNEED).
 *
 * Alignment: first ask for exactly one arena just below the previous one,
 * or where the last one released was (the kernel hands out mappings
 * top-down, so the hint is usually taken and already aligned: one call).
 * Otherwise map size + align, and unmap the unaligned head and the tail.
 */
#include <errno.h>
#include <sys/mman.h>

#include "backend.h"
#include "internal.h"

struct mmap_ctx {
    uintptr_t hint;                     /* the last arena mapped (global lock) */
    struct ar_syscall_counts calls;
};
static struct mmap_ctx mmap_state;

void ar_syscall_counts_read(struct ar_syscall_counts *c, struct ar_syscalls *out)
{
    out->mmap = atomic_load_explicit(&c->mmap, AR_RELAXED);
    out->munmap = atomic_load_explicit(&c->munmap, AR_RELAXED);
    out->brk = atomic_load_explicit(&c->brk, AR_RELAXED);
    out->madvise = atomic_load_explicit(&c->madvise, AR_RELAXED);
}

static void *map(struct mmap_ctx *m, void *hint, size_t size)
{
    atomic_fetch_add_explicit(&m->calls.mmap, 1, AR_RELAXED);
    void *p = mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void unmap(struct mmap_ctx *m, void *p, size_t size)
{
    atomic_fetch_add_explicit(&m->calls.munmap, 1, AR_RELAXED);
    munmap(p, size);
}

static void *mmap_reserve(void *ctx, size_t size, size_t align)
{
    struct mmap_ctx *m = ctx;
    if (m->hint > size) {
        char *p = map(m, (void *)(m->hint - size), size);
        if (p == NULL)
            return NULL;
        if (((uintptr_t)p & (align - 1)) == 0) {
            m->hint = (uintptr_t)p;
            return p;
        }
        unmap(m, p, size);
    }
    char *raw = map(m, NULL, size + align);
    if (raw == NULL)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (p > raw)
        unmap(m, raw, (size_t)(p - raw));
    if (p + size < raw + size + align)
        unmap(m, p + size, (size_t)(raw + size + align - (p + size)));
    m->hint = (uintptr_t)p;
    return p;
}

/* The range just given back is where the next reservation asks to go:
 * address space is reused instead of walking ever lower (the registry
 * keeps a leaf for every 32 GiB ever used). */
static int mmap_release(void *ctx, void *p, size_t size)
{
    struct mmap_ctx *m = ctx;
    unmap(m, p, size);
    m->hint = (uintptr_t)p + size;
    return 0;
}

static int mmap_purge(void *ctx, void *p, size_t size)
{
    struct mmap_ctx *m = ctx;
    atomic_fetch_add_explicit(&m->calls.madvise, 1, AR_RELAXED);
    return madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

static void mmap_calls(void *ctx, struct ar_syscalls *out)
{
    ar_syscall_counts_read(&((struct mmap_ctx *)ctx)->calls, out);
}

const struct ar_backend ar_backend_mmap = {
    .name = "mmap",
    .flags = AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE,
    .reserve = mmap_reserve,
    .release = mmap_release,
    .purge = mmap_purge,
    .calls = mmap_calls,
    .ctx = &mmap_state,
};
