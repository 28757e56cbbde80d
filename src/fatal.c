/*
 * Fatal errors: the bottom of the stack, callable from every layer.
 *
 * A misuse (double free, a pointer that is not a block, a corrupted free
 * list) or a broken invariant is reported on stderr, naming the pointer,
 * and the process aborts.  The message is formatted into a stack buffer and
 * written with write(2), so reporting works with a corrupted heap and
 * inside a malloc replacement.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

void ar_fatal(const char *fmt, ...)
{
    char buf[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) {
        size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
        ssize_t w = write(STDERR_FILENO, buf, len);
        (void)w;
    }
    abort();
}
