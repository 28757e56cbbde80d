/*
 * The heap map JSON, parsed (see mapjson.h).
 */
#include "mapjson.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[MAP_NUM_STATES] = {
    "free-dirty", "free-purged", "used", "current", "full", "orphan", "large"
};

const char *map_state_name(enum map_state s)
{
    return (unsigned)s < MAP_NUM_STATES ? state_names[s] : "?";
}

struct parser {
    const char *s, *end, *start;
    char *err;
    size_t errlen;
    int failed;
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
    if (!p->failed) {
        char msg[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(p->err, p->errlen, "at byte %zu: %s", (size_t)(p->s - p->start), msg);
        p->failed = 1;
    }
    return -1;
}

static void skip_ws(struct parser *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\t' || *p->s == '\r'))
        p->s++;
}

static int expect(struct parser *p, char c)
{
    skip_ws(p);
    if (p->s >= p->end || *p->s != c)
        return fail(p, "expected '%c'", c);
    p->s++;
    return 0;
}

/* Is the next non-blank character c?  Consumes it when it is. */
static int accept(struct parser *p, char c)
{
    skip_ws(p);
    if (p->s < p->end && *p->s == c) {
        p->s++;
        return 1;
    }
    return 0;
}

/* A string into buf (escapes other than \" and \\ are kept as they are:
 * the format has none). */
static int parse_string(struct parser *p, char *buf, size_t len)
{
    if (expect(p, '"') != 0)
        return -1;
    size_t n = 0;
    while (p->s < p->end && *p->s != '"') {
        char c = *p->s++;
        if (c == '\\') {
            if (p->s >= p->end)
                break;
            c = *p->s++;
        }
        if ((unsigned char)c < 0x20)
            return fail(p, "control character in a string");
        if (n + 1 < len)
            buf[n++] = c;
    }
    if (p->s >= p->end)
        return fail(p, "unterminated string");
    p->s++;
    if (len)
        buf[n] = '\0';
    return 0;
}

static int parse_uint(struct parser *p, uint64_t *v)
{
    skip_ws(p);
    if (p->s >= p->end || *p->s < '0' || *p->s > '9')
        return fail(p, "expected a whole number");
    uint64_t x = 0;
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
        unsigned d = (unsigned)(*p->s++ - '0');
        if (x > (UINT64_MAX - d) / 10)
            return fail(p, "number too large");
        x = x * 10 + d;
    }
    if (p->s < p->end && (*p->s == '.' || *p->s == 'e' || *p->s == 'E'))
        return fail(p, "expected a whole number");
    *v = x;
    return 0;
}

static int skip_value(struct parser *p, int depth);

static int skip_container(struct parser *p, char close, int is_object, int depth)
{
    if (accept(p, close))
        return 0;
    do {
        if (is_object) {
            char key[8];
            if (parse_string(p, key, sizeof key) != 0 || expect(p, ':') != 0)
                return -1;
        }
        if (skip_value(p, depth + 1) != 0)
            return -1;
    } while (accept(p, ','));
    return expect(p, close);
}

/* Any JSON value, skipped (for keys this reader does not know). */
static int skip_value(struct parser *p, int depth)
{
    if (depth > 64)
        return fail(p, "nested too deeply");
    skip_ws(p);
    if (p->s >= p->end)
        return fail(p, "unexpected end of the file");
    char c = *p->s;
    if (c == '"')
        return parse_string(p, NULL, 0);
    if (c == '{') {
        p->s++;
        return skip_container(p, '}', 1, depth);
    }
    if (c == '[') {
        p->s++;
        return skip_container(p, ']', 0, depth);
    }
    static const char *const words[] = { "true", "false", "null" };
    for (unsigned i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(p->end - p->s) >= n && memcmp(p->s, words[i], n) == 0) {
            p->s += n;
            return 0;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        p->s++;
        while (p->s < p->end && strchr("0123456789.eE+-", *p->s) != NULL)
            p->s++;
        return 0;
    }
    return fail(p, "unexpected character '%c'", c);
}

static int parse_pool(struct parser *p, struct map_pool *pool)
{
    int have_state = 0, have_size = 0, have_live = 0;
    if (expect(p, '{') != 0)
        return -1;
    if (!accept(p, '}')) {
        do {
            char key[32], val[32];
            uint64_t v;
            if (parse_string(p, key, sizeof key) != 0 || expect(p, ':') != 0)
                return -1;
            if (strcmp(key, "state") == 0) {
                if (parse_string(p, val, sizeof val) != 0)
                    return -1;
                unsigned s;
                for (s = 0; s < MAP_NUM_STATES; s++)
                    if (strcmp(val, state_names[s]) == 0)
                        break;
                if (s == MAP_NUM_STATES)
                    return fail(p, "unknown pool state \"%s\"", val);
                pool->state = (uint8_t)s;
                have_state = 1;
            } else if (strcmp(key, "block_size") == 0) {
                if (parse_uint(p, &v) != 0)
                    return -1;
                if (v > UINT32_MAX)
                    return fail(p, "block_size too large");
                pool->block_size = (uint32_t)v;
                have_size = 1;
            } else if (strcmp(key, "live") == 0) {
                if (parse_uint(p, &v) != 0)
                    return -1;
                if (v > UINT32_MAX)
                    return fail(p, "live too large");
                pool->live = (uint32_t)v;
                have_live = 1;
            } else if (skip_value(p, 1) != 0) {
                return -1;
            }
        } while (accept(p, ','));
        if (expect(p, '}') != 0)
            return -1;
    }
    if (!have_state || !have_size || !have_live)
        return fail(p, "a pool without %s", !have_state ? "\"state\""
                                            : !have_size ? "\"block_size\"" : "\"live\"");
    int in_use = pool->state == MAP_USED || pool->state == MAP_CURRENT ||
                 pool->state == MAP_FULL || pool->state == MAP_ORPHAN;
    if (in_use && (pool->block_size < 16 || pool->block_size > 512 || pool->block_size % 16))
        return fail(p, "a pool in use with block_size %u", pool->block_size);
    return 0;
}

static int parse_arena(struct parser *p, struct map_arena *a)
{
    int have_base = 0;
    size_t pools = 0;
    if (expect(p, '{') != 0)
        return -1;
    if (!accept(p, '}')) {
        do {
            char key[32];
            if (parse_string(p, key, sizeof key) != 0 || expect(p, ':') != 0)
                return -1;
            if (strcmp(key, "base") == 0) {
                char val[40];
                if (parse_string(p, val, sizeof val) != 0)
                    return -1;
                char *end;
                errno = 0;
                a->base = strtoull(val, &end, 16);
                if (errno != 0 || end == val || *end != '\0')
                    return fail(p, "base \"%s\" is not an address", val);
                have_base = 1;
            } else if (strcmp(key, "pools") == 0) {
                if (expect(p, '[') != 0)
                    return -1;
                if (!accept(p, ']')) {
                    do {
                        struct map_pool tmp, *pool = pools < MAP_POOLS ? &a->pool[pools] : &tmp;
                        if (parse_pool(p, pool) != 0)
                            return -1;
                        pools++;
                    } while (accept(p, ','));
                    if (expect(p, ']') != 0)
                        return -1;
                }
            } else if (skip_value(p, 1) != 0) {
                return -1;
            }
        } while (accept(p, ','));
        if (expect(p, '}') != 0)
            return -1;
    }
    if (!have_base)
        return fail(p, "an arena without \"base\"");
    if (pools != MAP_POOLS)
        return fail(p, "an arena with %zu pools, not %d", pools, MAP_POOLS);
    return 0;
}

static int parse_arenas(struct parser *p, struct heap_map *m)
{
    size_t cap = 0;
    if (expect(p, '[') != 0)
        return -1;
    if (accept(p, ']'))
        return 0;
    do {
        if (m->n == cap) {
            cap = cap ? cap * 2 : 64;
            struct map_arena *na = realloc(m->arenas, cap * sizeof *na);
            if (na == NULL)
                return fail(p, "out of memory");
            m->arenas = na;
        }
        if (parse_arena(p, &m->arenas[m->n]) != 0)
            return -1;
        if (m->n > 0 && m->arenas[m->n].base <= m->arenas[m->n - 1].base)
            return fail(p, "arena %zu is not in address order", m->n);
        m->n++;
    } while (accept(p, ','));
    return expect(p, ']');
}

int map_parse(const char *text, size_t len, struct heap_map *m, char *err, size_t errlen)
{
    struct parser p = { text, text + len, text, err, errlen, 0 };
    int have_backend = 0, have_arenas = 0;
    memset(m, 0, sizeof *m);
    if (expect(&p, '{') != 0)
        goto bad;
    if (!accept(&p, '}')) {
        do {
            char key[32];
            if (parse_string(&p, key, sizeof key) != 0 || expect(&p, ':') != 0)
                goto bad;
            if (strcmp(key, "backend") == 0) {
                if (parse_string(&p, m->backend, sizeof m->backend) != 0)
                    goto bad;
                have_backend = 1;
            } else if (strcmp(key, "arenas") == 0) {
                if (have_arenas) {
                    fail(&p, "\"arenas\" twice");
                    goto bad;
                }
                if (parse_arenas(&p, m) != 0)
                    goto bad;
                have_arenas = 1;
            } else if (skip_value(&p, 1) != 0) {
                goto bad;
            }
        } while (accept(&p, ','));
        if (expect(&p, '}') != 0)
            goto bad;
    }
    skip_ws(&p);
    if (p.s != p.end) {
        fail(&p, "text after the map");
        goto bad;
    }
    if (!have_backend || !have_arenas) {
        fail(&p, "no \"%s\"", have_backend ? "arenas" : "backend");
        goto bad;
    }
    for (size_t i = 0; i < m->n; i++)
        for (unsigned j = 0; j < MAP_POOLS; j++) {
            const struct map_pool *pool = &m->arenas[i].pool[j];
            m->pools[pool->state]++;
            if (pool->state == MAP_LARGE || pool->state == MAP_FREE_DIRTY ||
                pool->state == MAP_FREE_PURGED)
                continue;
            m->live_blocks += pool->live;
            m->live_bytes += (uint64_t)pool->live * pool->block_size;
            if (pool->live > map_blocks_per_pool(pool->block_size))
                m->over_capacity++;
        }
    return 0;
bad:
    map_free(m);
    return -1;
}

int map_load(const char *path, struct heap_map *m, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fclose(f);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (nb == NULL)
            free(buf);
        buf = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "read error");
        return -1;
    }
    int rc = map_parse(buf, len, m, err, errlen);
    free(buf);
    return rc;
}

void map_free(struct heap_map *m)
{
    free(m->arenas);
    m->arenas = NULL;
    m->n = 0;
}
