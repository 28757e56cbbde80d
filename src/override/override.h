/*
 * libarena-malloc internals: the glibc entry points behind large,
 * over-aligned and page-aligned requests (sys_libc.c), beyond the four
 * that every core build has (src/internal.h, "sys.c").  Not installed.
 */
#ifndef AR_OVERRIDE_H
#define AR_OVERRIDE_H

#include <stddef.h>

#include "internal.h"

/* The malloc family is exported from the library (and from a program
 * linked with the static variant): default visibility, unlike the core. */
#define AR_EXPORT __attribute__((visibility("default")))

AR_HIDDEN void *ar_sys_calloc(size_t n, size_t size);
AR_HIDDEN void *ar_sys_memalign(size_t align, size_t size);
AR_HIDDEN void *ar_sys_valloc(size_t size);
AR_HIDDEN void *ar_sys_pvalloc(size_t size);
AR_HIDDEN int ar_sys_trim(size_t pad);     /* glibc's malloc_trim */

#endif /* AR_OVERRIDE_H */
