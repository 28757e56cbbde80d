/*
 * The system allocator behind large (> 512 bytes), over-aligned and
 * page-aligned requests, for the malloc replacement: glibc's allocator,
 * reached through its own exported entry points (__libc_malloc,
 * __libc_free, ...).  Calling malloc or free by name would come back into
 * this library, which now owns those names.
 *
 * Usable size of a glibc block.  glibc exports no __libc_ name for
 * malloc_usable_size, and calling malloc_usable_size by name would reach
 * our own override (which calls this file: endless recursion).  So we ask
 * the dynamic linker for glibc's definition once:
 *   dlopen(LIBC_SO, RTLD_NOLOAD)  a handle on the C library already in the
 *                                 process (LIBC_SO is "libc.so.6", from
 *                                 <gnu/lib-names.h>); nothing is loaded;
 *   dlsym(handle, name)           searches that library and its own
 *                                 dependencies only, never the global
 *                                 scope where our malloc_usable_size sits.
 * Both are documented interfaces.  They may allocate (the result of a
 * lookup, error strings): that is fine, because they run in a constructor
 * or on a first call to malloc_usable_size, when the allocator is working
 * and none of our locks is held.  malloc_trim is found the same way.
 *
 * ar_large_live counts blocks obtained here and not yet freed, and every
 * block is charged against the memory limits, as in the plain library's
 * sys.c.
 */
#include <dlfcn.h>
#include <errno.h>
#include <gnu/lib-names.h>

#include "override.h"

/* glibc's allocator under its own names (exported since glibc 2.0). */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

_Atomic int64_t ar_large_live;

/* Every large request is charged against the memory limits first
 * (limit.c); what glibc hands back is counted at its usable size. */
#define ALLOC_LARGE(bytes, call)                                             \
    do {                                                                     \
        if (!ar_limit_charge(true, (bytes))) {                               \
            errno = ENOMEM;                                                  \
            return NULL;                                                     \
        }                                                                    \
        void *p_ = (call);                                                   \
        ar_limit_large_got((bytes), p_ != NULL ? ar_sys_usable_size(p_) : 0); \
        if (p_ != NULL)                                                      \
            atomic_fetch_add_explicit(&ar_large_live, 1, AR_RELAXED);        \
        return p_;                                                           \
    } while (0)

void *ar_sys_malloc(size_t size)
{
    ALLOC_LARGE(size, __libc_malloc(size));
}

void *ar_sys_calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    ALLOC_LARGE(bytes, __libc_calloc(n, size));
}

void *ar_sys_memalign(size_t align, size_t size)
{
    ALLOC_LARGE(size, __libc_memalign(align, size));
}

void *ar_sys_valloc(size_t size)
{
    ALLOC_LARGE(size, __libc_valloc(size));
}

void *ar_sys_pvalloc(size_t size)
{
    ALLOC_LARGE(size, __libc_pvalloc(size));
}

void ar_sys_free(void *p)
{
    if (p == NULL)
        return;
    ar_limit_credit(true, ar_sys_usable_size(p));
    atomic_fetch_sub_explicit(&ar_large_live, 1, AR_RELAXED);
    __libc_free(p);
}

/* glibc's realloc: NULL allocates, size 0 frees and returns NULL. */
void *ar_sys_realloc(void *p, size_t size)
{
    if (p == NULL)
        return ar_sys_malloc(size);
    if (size == 0) {
        ar_sys_free(p);
        return NULL;
    }
    size_t old = ar_sys_usable_size(p);
    if (size > old && !ar_limit_charge(true, size - old)) {
        errno = ENOMEM;
        return NULL;
    }
    void *q = __libc_realloc(p, size);
    ar_limit_large_got(old + (size > old ? size - old : 0), ar_sys_usable_size(q != NULL ? q : p));
    return q;
}

/* ---- glibc functions that have no __libc_ name ------------------------ */

typedef size_t (*usable_fn)(void *);
typedef int (*trim_fn)(size_t);

static _Atomic(usable_fn) glibc_usable_size;
static _Atomic(trim_fn) glibc_trim;
static _Atomic bool resolved;

static void resolve(void)
{
    void *libc = dlopen(LIBC_SO, RTLD_NOLOAD | RTLD_LAZY);
    if (libc != NULL) {
        /* POSIX dlsym returns void *; it converts to a function pointer. */
        usable_fn u = (usable_fn)dlsym(libc, "malloc_usable_size");
        trim_fn t = (trim_fn)dlsym(libc, "malloc_trim");
        atomic_store_explicit(&glibc_usable_size, u, memory_order_release);
        atomic_store_explicit(&glibc_trim, t, memory_order_release);
    }
    atomic_store_explicit(&resolved, true, memory_order_release);
}

/* Resolve while the process starts, so a later call is one load. */
__attribute__((constructor)) static void resolve_at_start(void)
{
    if (!atomic_load_explicit(&resolved, memory_order_acquire))
        resolve();
}

size_t ar_sys_usable_size(void *p)
{
    usable_fn u = atomic_load_explicit(&glibc_usable_size, memory_order_acquire);
    if (ar_unlikely(u == NULL)) {
        resolve();
        u = atomic_load_explicit(&glibc_usable_size, memory_order_acquire);
        if (u == NULL)
            ar_fatal("libarena-malloc: cannot find the C library's malloc_usable_size (%p)\n", p);
    }
    return u(p);
}

int ar_sys_trim(size_t pad)
{
    if (!atomic_load_explicit(&resolved, memory_order_acquire))
        resolve();
    trim_fn t = atomic_load_explicit(&glibc_trim, memory_order_acquire);
    return t != NULL ? t(pad) : 0;
}
