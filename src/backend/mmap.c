/*
 * mmap backend: each arena is its own anonymous mapping, released with
 * munmap, purged with madvise(MADV_DONTNEED).
 *
 * Alignment: first ask for exactly one arena just below the previous one
 * (the kernel hands out mappings top-down, so the hint is usually taken
 * and already aligned: one call).  Otherwise map size + align, and unmap
 * the unaligned head and the tail.
 */
#include <errno.h>
#include <sys/mman.h>

#include "backend.h"
#include "internal.h"

struct ar_syscalls ar_syscalls;

static uintptr_t mmap_hint;

static void *map(void *hint, size_t size)
{
    ar_syscalls.mmap++;
    void *p = mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void unmap(void *p, size_t size)
{
    ar_syscalls.munmap++;
    munmap(p, size);
}

static void *mmap_reserve(void *ctx, size_t size, size_t align)
{
    (void)ctx;
    if (mmap_hint > size) {
        char *p = map((void *)(mmap_hint - size), size);
        if (p == NULL)
            return NULL;
        if (((uintptr_t)p & (align - 1)) == 0) {
            mmap_hint = (uintptr_t)p;
            return p;
        }
        unmap(p, size);
    }
    char *raw = map(NULL, size + align);
    if (raw == NULL)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (p > raw)
        unmap(raw, (size_t)(p - raw));
    if (p + size < raw + size + align)
        unmap(p + size, (size_t)(raw + size + align - (p + size)));
    mmap_hint = (uintptr_t)p;
    return p;
}

static int mmap_release(void *ctx, void *p, size_t size)
{
    (void)ctx;
    unmap(p, size);
    return 0;
}

static int mmap_purge(void *ctx, void *p, size_t size)
{
    (void)ctx;
    ar_syscalls.madvise++;
    return madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

const struct ar_backend ar_backend_mmap = {
    .name = "mmap",
    .flags = AR_BACKEND_RELEASE_ANY | AR_BACKEND_AUTO_PURGE,
    .reserve = mmap_reserve,
    .release = mmap_release,
    .purge = mmap_purge,
};
