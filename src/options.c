/*
 * Options: environment variables with one prefix, read once at first use,
 * without allocating (getenv only reads the environment).
 *
 *   ARENA_BACKEND      mmap (default) | brk
 *   ARENA_STATS        1: print the stats report to stderr at exit
 *   ARENA_ARENA_CACHE  empty arenas kept for reuse (default 1)
 *   ARENA_PURGE        off | eager | N: purge free pools of live arenas when
 *                      more than max(N, in-use pools / 128) of them are
 *                      dirty (default 256 = 1 MiB)
 *   ARENA_TCACHE       bytes of freed blocks each thread keeps per size
 *                      class for reuse (default 8192; 0 turns it off)
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct ar_options ar_options = {
    .purge = AR_PURGE_THRESHOLD,
    .purge_threshold = 256,
    .arena_cache = 1,
    .tcache_bytes = 8192,
};

static bool parse_uint(const char *s, unsigned *out)
{
    if (s == NULL || *s == '\0')
        return false;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1000000)
            return false;
        v = v * 10 + (unsigned)(*s - '0');
    }
    *out = (unsigned)v;
    return true;
}

void ar_options_read(void)
{
    const char *s;
    unsigned v;

    if ((s = getenv("ARENA_BACKEND")) != NULL && *s)
        ar_options.backend = s;
    if ((s = getenv("ARENA_STATS")) != NULL && strcmp(s, "1") == 0)
        ar_options.print_stats = true;
    if (parse_uint(getenv("ARENA_ARENA_CACHE"), &v))
        ar_options.arena_cache = v;
    if (parse_uint(getenv("ARENA_TCACHE"), &v))
        ar_options.tcache_bytes = v;
    if ((s = getenv("ARENA_PURGE")) != NULL) {
        if (strcmp(s, "off") == 0)
            ar_options.purge = AR_PURGE_OFF;
        else if (strcmp(s, "eager") == 0)
            ar_options.purge = AR_PURGE_EAGER;
        else if (parse_uint(s, &v)) {
            ar_options.purge = v == 0 ? AR_PURGE_EAGER : AR_PURGE_THRESHOLD;
            ar_options.purge_threshold = v;
        }
    }
}
