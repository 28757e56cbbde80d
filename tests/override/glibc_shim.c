/*
 * glibc_shim.so: the malloc family forwarded to glibc's own allocator.
 *
 * The real-program tests and the bench compare every run with a run
 * under glibc malloc.  Most programs use glibc malloc already; a program
 * linked with another allocator (Debian's redis-server is linked with
 * jemalloc) gets glibc's back when this shim is preloaded, since a
 * preloaded library's malloc comes first in symbol lookup.  No state,
 * no policy: every call goes straight to the __libc_ entry point.
 */
#include <dlfcn.h>
#include <errno.h>
#include <gnu/lib-names.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

SHIM_EXPORT void *malloc(size_t size) { return __libc_malloc(size); }
SHIM_EXPORT void free(void *p) { __libc_free(p); }
SHIM_EXPORT void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }
SHIM_EXPORT void *realloc(void *p, size_t size) { return __libc_realloc(p, size); }
SHIM_EXPORT void *memalign(size_t align, size_t size) { return __libc_memalign(align, size); }
SHIM_EXPORT void *valloc(size_t size) { return __libc_valloc(size); }
SHIM_EXPORT void *pvalloc(size_t size) { return __libc_pvalloc(size); }

SHIM_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, bytes);
}

SHIM_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    return __libc_memalign(align, size);
}

SHIM_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1)) != 0 || align % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno;
    void *p = __libc_memalign(align, size);
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

/* glibc's malloc_usable_size has no __libc_ name: look it up in the C
 * library itself (not in the global scope, where this shim's is). */
SHIM_EXPORT size_t malloc_usable_size(void *p)
{
    static _Atomic(size_t (*)(void *)) fn;
    size_t (*f)(void *) = atomic_load(&fn);
    if (f == NULL) {
        void *libc = dlopen(LIBC_SO, RTLD_NOLOAD | RTLD_LAZY);
        f = libc != NULL ? (size_t (*)(void *))dlsym(libc, "malloc_usable_size") : NULL;
        if (f == NULL)
            return 0;
        atomic_store(&fn, f);
    }
    return f(p);
}
