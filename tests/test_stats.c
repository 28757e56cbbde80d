/*
 * Stats: the identities listed with struct arena_stats in include/arena.h
 * hold after a mixed workload, the per-class counts match what the test
 * knows is live, and the arena_print_stats() report adds up.
 * Each scenario runs in a forked child (child.h).
 */
#include "arena.h"
#include "backend.h"
#include "internal.h"
#include "child.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NSLOTS 6000

static void check_identities(const struct arena_stats *s, const char *when)
{
    CHECKF(s->arenas_live == s->arenas_reserved - s->arenas_released,
           "%s: arenas live %" PRIu64 " != reserved %" PRIu64 " - released %"
           PRIu64, when, s->arenas_live, s->arenas_reserved, s->arenas_released);
    CHECKF(s->bytes_mapped == s->arenas_live * ARENA_ARENA_SIZE,
           "%s: bytes_mapped %" PRIu64 " for %" PRIu64 " arenas", when,
           s->bytes_mapped, s->arenas_live);
    CHECKF(s->bytes_mapped_peak >= s->bytes_mapped, "%s: peak %" PRIu64
           " below mapped %" PRIu64, when, s->bytes_mapped_peak, s->bytes_mapped);
    CHECKF(s->pools_total == s->arenas_live * 64, "%s: pools_total %" PRIu64
           " for %" PRIu64 " arenas", when, s->pools_total, s->arenas_live);
    CHECKF(s->pools_total == s->pools_used + s->pools_full + s->pools_empty + s->pools_large +
                               s->pools_free,
           "%s: pools total %" PRIu64 " != used %" PRIu64 " + full %" PRIu64
           " + empty %" PRIu64 " + free %" PRIu64, when, s->pools_total,
           s->pools_used, s->pools_full, s->pools_empty, s->pools_free);
    CHECKF(s->pools_free == s->pools_free_dirty + s->pools_free_purged,
           "%s: pools free %" PRIu64 " != dirty %" PRIu64 " + purged %" PRIu64,
           when, s->pools_free, s->pools_free_dirty, s->pools_free_purged);
    CHECKF(s->arenas_empty <= s->arenas_live, "%s: %" PRIu64 " empty of %"
           PRIu64 " arenas", when, s->arenas_empty, s->arenas_live);
    CHECKF(s->arenas_empty * 64 <= s->pools_free, "%s: %" PRIu64 " empty "
           "arenas but %" PRIu64 " free pools", when, s->arenas_empty, s->pools_free);
    uint64_t blocks = 0, bytes = 0;
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++) {
        blocks += s->blocks_live_class[c];
        bytes += s->blocks_live_class[c] * (c + 1) * 16;
    }
    CHECKF(s->blocks_live == blocks, "%s: blocks_live %" PRIu64 " != sum of "
           "classes %" PRIu64, when, s->blocks_live, blocks);
    CHECKF(s->bytes_live == bytes, "%s: bytes_live %" PRIu64 " != sum of "
           "classes %" PRIu64, when, s->bytes_live, bytes);
    /* Live blocks fit in the pools that hold blocks. */
    CHECKF(s->bytes_live <= (s->pools_used + s->pools_full) * ARENA_POOL_SIZE,
           "%s: %" PRIu64 " live bytes in %" PRIu64 " pools", when,
           s->bytes_live, s->pools_used + s->pools_full);
    CHECK(s->backend != NULL);
    const struct ar_backend *b = strcmp(s->backend, "brk") == 0 ? &ar_backend_brk
                                                                 : &ar_backend_mmap;
    struct ar_syscalls sc = {0};
    if (strcmp(s->backend, b->name) == 0)
        b->calls(b->ctx, &sc);
    else
        sc = (struct ar_syscalls){0};   /* a test backend: only metadata calls */
    /* The stats add libarena's metadata calls to the backend's. */
    uint64_t meta_mmap, meta_madvise;
    ar_meta_calls(&meta_mmap, &meta_madvise);
    CHECK_EQ(s->calls_mmap, sc.mmap + meta_mmap);
    CHECK_EQ(s->calls_munmap, sc.munmap);
    CHECK_EQ(s->calls_brk, sc.brk);
    CHECK_EQ(s->calls_madvise, sc.madvise + meta_madvise);
}

/* ---- parsing the report -------------------------------------------------- */

struct report {
    int have_pools, have_total, have_arenas;
    uint64_t pools_total, pools_used, pools_full, pools_empty, pools_large, pools_free;
    uint64_t pools_dirty, pools_purged;
    uint64_t arenas_reserved, arenas_released, arenas_live, arenas_empty;
    uint64_t class_blocks[ARENA_NUM_CLASSES];
    int class_seen[ARENA_NUM_CLASSES];
    uint64_t sum_blocks, sum_bytes, total_blocks, total_bytes;
    unsigned nclass_rows;
};

static void parse_report(char *text, struct report *r)
{
    memset(r, 0, sizeof *r);
    int in_table = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        uint64_t a, b, c, d, e, f, g, l;
        if (sscanf(line, " pools total %" SCNu64 " = used %" SCNu64 " + full %"
                   SCNu64 " + empty %" SCNu64 " + large %" SCNu64 " + free %" SCNu64
                   " (free: dirty %" SCNu64 " + purged %" SCNu64,
                   &a, &b, &c, &d, &l, &e, &f, &g) == 8) {
            r->have_pools = 1;
            r->pools_total = a; r->pools_used = b; r->pools_full = c;
            r->pools_empty = d; r->pools_large = l; r->pools_free = e;
            r->pools_dirty = f; r->pools_purged = g;
            continue;
        }
        if (sscanf(line, " arenas reserved %" SCNu64 " released %" SCNu64
                   " live %" SCNu64 " (empty %" SCNu64, &a, &b, &c, &d) == 4) {
            r->have_arenas = 1;
            r->arenas_reserved = a; r->arenas_released = b;
            r->arenas_live = c; r->arenas_empty = d;
            continue;
        }
        char word[16];
        if (sscanf(line, " %15s", word) == 1 && strcmp(word, "class") == 0 && !r->have_total) {
            in_table = 1;               /* the class table, not the fragmentation one */
            continue;
        }
        if (!in_table)
            continue;
        unsigned cls;
        size_t size;
        if (sscanf(line, " total %" SCNu64 " %" SCNu64, &a, &b) == 2) {
            r->have_total = 1;
            r->total_blocks = a;
            r->total_bytes = b;
            in_table = 0;
            continue;
        }
        int n = sscanf(line, " %u %zu %" SCNu64 " %" SCNu64, &cls, &size, &a, &b);
        CHECKF(n == 4, "report: unexpected line in the class table: \"%s\"", line);
        CHECKF(cls < ARENA_NUM_CLASSES, "report: class %u", cls);
        CHECKF(size == (cls + 1) * 16, "report: class %u has size %zu", cls, size);
        CHECKF(b == a * size, "report: class %u: %" PRIu64 " blocks of %zu "
               "bytes but %" PRIu64 " bytes", cls, a, size, b);
        CHECKF(!r->class_seen[cls], "report: class %u listed twice", cls);
        r->class_seen[cls] = 1;
        r->class_blocks[cls] = a;
        r->sum_blocks += a;
        r->sum_bytes += b;
        r->nclass_rows++;
    }
}

static void check_report(const struct arena_stats *s, const char *when)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f != NULL);
    arena_print_stats(f);
    CHECK(fclose(f) == 0);
    CHECK(text != NULL && len > 0);

    struct report r;
    parse_report(text, &r);
    CHECKF(r.have_pools, "%s: report has no \"pools total = used + full + "
           "empty + free\" line", when);
    CHECKF(r.have_total, "%s: report has no class table total line", when);
    CHECKF(r.have_arenas, "%s: report has no arenas line", when);
    /* The report adds up ... */
    CHECKF(r.pools_total == r.pools_used + r.pools_full + r.pools_empty + r.pools_large +
                                r.pools_free,
           "%s: report: pools %" PRIu64 " != %" PRIu64 " + %" PRIu64 " + %"
           PRIu64 " + %" PRIu64 " + %" PRIu64, when, r.pools_total, r.pools_used, r.pools_full,
           r.pools_empty, r.pools_large, r.pools_free);
    CHECK_EQ(r.pools_free, r.pools_dirty + r.pools_purged);
    CHECK_EQ(r.pools_total, r.arenas_live * 64);
    CHECK_EQ(r.arenas_live, r.arenas_reserved - r.arenas_released);
    CHECKF(r.sum_blocks == r.total_blocks, "%s: report: class rows sum to %"
           PRIu64 " blocks, total line says %" PRIu64, when, r.sum_blocks,
           r.total_blocks);
    CHECK_EQ(r.sum_bytes, r.total_bytes);
    /* ... and says what arena_get_stats says (nothing changed between). */
    CHECK_EQ(r.pools_total, s->pools_total);
    CHECK_EQ(r.pools_used, s->pools_used);
    CHECK_EQ(r.pools_full, s->pools_full);
    CHECK_EQ(r.pools_empty, s->pools_empty);
    CHECK_EQ(r.pools_free, s->pools_free);
    CHECK_EQ(r.arenas_reserved, s->arenas_reserved);
    CHECK_EQ(r.arenas_released, s->arenas_released);
    CHECK_EQ(r.total_blocks, s->blocks_live);
    CHECK_EQ(r.total_bytes, s->bytes_live);
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++)
        CHECKF(r.class_blocks[c] == s->blocks_live_class[c], "%s: report class "
               "%u: %" PRIu64 " blocks, stats %" PRIu64, when, c,
               r.class_blocks[c], s->blocks_live_class[c]);
    free(text);
}

/* ---- the workload ------------------------------------------------------ */

struct model {
    void *p[NSLOTS];
    size_t size[NSLOTS];
    uint64_t live_class[ARENA_NUM_CLASSES];
    uint64_t live_large;
};

static void model_add(struct model *m, size_t i, void *p, size_t size)
{
    m->p[i] = p;
    m->size[i] = size;
    if (size > ARENA_SMALL_MAX)
        m->live_large++;
    else
        m->live_class[size == 0 ? 0 : (size - 1) / 16]++;
}

static void model_del(struct model *m, size_t i)
{
    size_t size = m->size[i];
    if (size > ARENA_SMALL_MAX)
        m->live_large--;
    else
        m->live_class[size == 0 ? 0 : (size - 1) / 16]--;
    m->p[i] = NULL;
}

static void check_against_model(const struct model *m, const char *when)
{
    struct arena_stats s;
    s.size = sizeof s;
    arena_get_stats(&s);
    check_identities(&s, when);
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++)
        CHECKF(s.blocks_live_class[c] == m->live_class[c], "%s: class %u: "
               "stats say %" PRIu64 " live, the test holds %" PRIu64, when, c,
               s.blocks_live_class[c], m->live_class[c]);
    CHECKF(s.large_live == m->live_large, "%s: large_live %" PRIu64 ", the "
           "test holds %" PRIu64, when, s.large_live, m->live_large);
    check_report(&s, when);
}

static void child_stats(void *arg)
{
    const char *const *env = arg;
    for (size_t i = 0; env[i]; i += 2)
        setenv(env[i], env[i + 1], 1);
    static struct model m;
    uint64_t rng = 42;

    /* Before anything: the report still adds up. */
    check_against_model(&m, "at start");

    /* Phase 1: fill. */
    for (size_t i = 0; i < NSLOTS; i++) {
        uint64_t r = test_rand(&rng);
        size_t size = r % 10 == 0 ? 513 + (size_t)(r >> 8) % 2000
                                  : (size_t)(r >> 8) % (ARENA_SMALL_MAX + 1);
        void *p = (r >> 4) % 3 == 0 ? arena_calloc(1, size) : arena_alloc(size);
        CHECK(p != NULL);
        model_add(&m, i, p, size);
    }
    check_against_model(&m, "after filling");
    struct arena_stats s;
    s.size = sizeof s;
    arena_get_stats(&s);
    CHECK_GE(s.arenas_reserved, 1);
    CHECK_GT(s.pools_used + s.pools_full, 0);
    uint64_t peak = s.bytes_mapped_peak;

    /* Phase 2: free most, in random order, and realloc some. */
    for (size_t k = 0; k < 4 * NSLOTS; k++) {
        size_t i = (size_t)(test_rand(&rng) % NSLOTS);
        if (!m.p[i])
            continue;
        if (k % 5 == 0) {
            size_t size = (size_t)(test_rand(&rng) % 700);
            void *q = arena_realloc(m.p[i], size);
            CHECK(q != NULL);
            size_t old = m.size[i];
            model_del(&m, i);
            /* a large block shrunk to a small size may stay large */
            if (old > ARENA_SMALL_MAX && size <= ARENA_SMALL_MAX) {
                arena_free(q);
                q = arena_alloc(size);
                CHECK(q != NULL);
            }
            /* a small block shrunk within half its class stays in it */
            if (old <= ARENA_SMALL_MAX && size <= ARENA_SMALL_MAX) {
                CHECK(arena_usable_size(q) >= size);
                size = arena_usable_size(q);
            }
            model_add(&m, i, q, size);
        } else {
            arena_free(m.p[i]);
            model_del(&m, i);
        }
    }
    check_against_model(&m, "after freeing most");
    s.size = sizeof s;
    arena_get_stats(&s);
    CHECK_GE(s.bytes_mapped_peak, peak);

    /* Phase 3: arena_release, then refill a little. */
    arena_release();
    check_against_model(&m, "after arena_release");
    s.size = sizeof s;
    arena_get_stats(&s);
    CHECK_EQ(s.pools_free_dirty, 0);
    CHECK_EQ(s.pools_empty, 0);
    for (size_t i = 0; i < NSLOTS; i += 3) {
        if (m.p[i])
            continue;
        void *p = arena_alloc(i % 512);
        CHECK(p != NULL);
        model_add(&m, i, p, i % 512);
    }
    check_against_model(&m, "after refilling");

    /* Phase 4: free everything. */
    for (size_t i = 0; i < NSLOTS; i++) {
        if (m.p[i]) {
            arena_free(m.p[i]);
            model_del(&m, i);
        }
    }
    check_against_model(&m, "after freeing all");
    s.size = sizeof s;
    arena_get_stats(&s);
    CHECK_EQ(s.blocks_live, 0);
    CHECK_EQ(s.bytes_live, 0);
    arena_release();
    check_against_model(&m, "after the final arena_release");
    s.size = sizeof s;
    arena_get_stats(&s);
    /* The thread cache was handed back: no pool holds a block. */
    CHECK_EQ(s.blocks_cached, 0);
    CHECK_EQ(s.pools_used + s.pools_full + s.pools_empty, 0);
}

static void run(const char *name, const char *const *env)
{
    assert_int_equal(child_run(name, child_stats, (void *)env), 0);
}

static void test_stats_mmap(void **state)
{
    (void)state;
    static const char *const env[] = { "ARENA_BACKEND", "mmap", NULL };
    run("stats(mmap)", env);
}

static void test_stats_mmap_eager(void **state)
{
    (void)state;
    static const char *const env[] = { "ARENA_BACKEND", "mmap", "ARENA_PURGE",
                                       "eager", "ARENA_ARENA_CACHE", "2", NULL };
    run("stats(mmap, purge eager)", env);
}

static void test_stats_mmap_threshold(void **state)
{
    (void)state;
    static const char *const env[] = { "ARENA_BACKEND", "mmap", "ARENA_PURGE",
                                       "4", NULL };
    run("stats(mmap, purge 4)", env);
}

static void test_stats_brk(void **state)
{
    (void)state;
    static const char *const env[] = { "ARENA_BACKEND", "brk", NULL };
    run("stats(brk)", env);
}

/* The report parser itself must be able to fail: a report whose class
 * rows do not add up is caught.  (Checked in the parent; no allocator.) */
static void test_parser_catches_mismatch(void **state)
{
    (void)state;
    static const char *bad_report =
        "libarena stats (backend mmap)\n"
        "arenas   reserved 2  released 0  live 2  (empty 0)\n"
        "pools    total 128 = used 3 + full 1 + empty 0 + large 0 + free 124  (free: dirty 4 + purged 120)\n"
        "class      size       blocks          bytes\n"
        "0            16           10            160\n"
        "3            64            5            320\n"
        "total                     16            480\n";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", bad_report);
    struct report r;
    /* parse_report only uses CHECK for malformed rows, which these are not */
    parse_report(buf, &r);
    assert_true(r.have_pools && r.have_total && r.have_arenas);
    assert_int_equal(r.nclass_rows, 2);
    assert_int_equal(r.pools_total, 128);
    assert_int_equal(r.pools_used + r.pools_full + r.pools_empty + r.pools_free, 128);
    assert_int_equal(r.sum_bytes, r.total_bytes);
    assert_int_not_equal(r.sum_blocks, r.total_blocks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_catches_mismatch),
        cmocka_unit_test(test_stats_mmap),
        cmocka_unit_test(test_stats_mmap_eager),
        cmocka_unit_test(test_stats_mmap_threshold),
        cmocka_unit_test(test_stats_brk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
