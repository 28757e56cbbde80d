/*
 * Options: environment variables with one prefix, read once at first use,
 * without allocating (getenv only reads the environment).
 *
 *   ARENA_BACKEND        mmap (default) | brk
 *   ARENA_STATS          1: print the stats report to stderr at exit
 *   ARENA_PURGE          auto (default) | N | eager | off: what happens to
 *                        free pools of live arenas (docs/design.md, "Hold
 *                        and purge policy"); N fixes the budget of resident
 *                        free pools per heap at N, without learning
 *   ARENA_PURGE_MIN      auto's floor, resident free pools per heap (256)
 *   ARENA_ARENA_CACHE    auto (default) | N: empty arenas kept for reuse
 *   ARENA_DECAY_MS       the learned hold halves this often (default 1000)
 *   ARENA_TCACHE         bytes of freed blocks each thread keeps per size
 *                        class for reuse (default 8192; 0 turns it off)
 *   ARENA_PURGER         1: start the background purger
 *   ARENA_PURGE_DELAY_MS the purger gives back what stayed free this long
 *                        (default 1000)
 *   ARENA_LIMIT          hard[,soft]: memory limits in bytes, with an
 *                        optional K, M, G or T suffix (powers of 1024)
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct ar_options ar_options = {
    .purge = AR_PURGE_AUTO,
    .purge_pools = 256,
    .arena_cache = AR_AUTO,
    .decay_ms = 1000,
    .tcache_bytes = 8192,
    .purger_delay_ms = 1000,
};

static bool parse_uint(const char *s, unsigned *out)
{
    if (s == NULL || *s == '\0')
        return false;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000000)
            return false;
        v = v * 10 + (unsigned)(*s - '0');
    }
    *out = (unsigned)v;
    return true;
}

/* A size: digits, then an optional K, M, G or T (binary).  Returns false
 * for anything else, or a value that does not fit. */
static bool parse_size(const char *s, const char *end, size_t *out)
{
    if (s == end)
        return false;
    size_t v = 0;
    for (; s < end && *s >= '0' && *s <= '9'; s++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (size_t)(*s - '0'), &v))
            return false;
    unsigned shift = 0;
    if (s < end) {
        switch (*s++) {
        case 'K': case 'k': shift = 10; break;
        case 'M': case 'm': shift = 20; break;
        case 'G': case 'g': shift = 30; break;
        case 'T': case 't': shift = 40; break;
        default: return false;
        }
    }
    if (s != end || (shift && v > (SIZE_MAX >> shift)))
        return false;
    *out = v << shift;
    return true;
}

/* ARENA_LIMIT=hard[,soft]: both parse, and soft <= hard unless hard is 0. */
static void parse_limit(const char *s)
{
    const char *comma = strchr(s, ',');
    const char *end = s + strlen(s);
    size_t hard = 0, soft = 0;
    bool ok = parse_size(s, comma ? comma : end, &hard) &&
              (comma == NULL || parse_size(comma + 1, end, &soft)) &&
              (hard == 0 || soft <= hard);
    ar_options.limit = s;
    ar_options.limit_bad = !ok;
    if (ok) {
        ar_options.limit_hard = hard;
        ar_options.limit_soft = soft;
    }
}

void ar_options_read(void)
{
    const char *s;
    unsigned v;

    if ((s = getenv("ARENA_BACKEND")) != NULL && *s)
        ar_options.backend = s;
    if ((s = getenv("ARENA_STATS")) != NULL && strcmp(s, "1") == 0)
        ar_options.print_stats = true;
    if ((s = getenv("ARENA_ARENA_CACHE")) != NULL && parse_uint(s, &v))
        ar_options.arena_cache = v;
    if (parse_uint(getenv("ARENA_TCACHE"), &v))
        ar_options.tcache_bytes = v;
    if (parse_uint(getenv("ARENA_DECAY_MS"), &v) && v > 0)
        ar_options.decay_ms = v;
    if (parse_uint(getenv("ARENA_PURGE_MIN"), &v))
        ar_options.purge_pools = v;
    if ((s = getenv("ARENA_PURGE")) != NULL) {
        if (strcmp(s, "off") == 0)
            ar_options.purge = AR_PURGE_OFF;
        else if (strcmp(s, "eager") == 0)
            ar_options.purge = AR_PURGE_EAGER;
        else if (strcmp(s, "auto") == 0)
            ar_options.purge = AR_PURGE_AUTO;
        else if (parse_uint(s, &v)) {
            ar_options.purge = v == 0 ? AR_PURGE_EAGER : AR_PURGE_FIXED;
            ar_options.purge_pools = v;
        }
    }
    if ((s = getenv("ARENA_PURGER")) != NULL && strcmp(s, "1") == 0)
        ar_options.purger = true;
    if (parse_uint(getenv("ARENA_PURGE_DELAY_MS"), &v) && v > 0)
        ar_options.purger_delay_ms = v;
    if ((s = getenv("ARENA_LIMIT")) != NULL && *s)
        parse_limit(s);
}
