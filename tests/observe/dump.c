/*
 * observe-dump: builds a known heap and writes everything libarena can tell
 * about it, taken while no other thread allocates, into a directory for
 * check_observe.py:
 *
 *   map.json      arena_write_heap_map
 *   metrics.txt   arena_write_metrics
 *   stats.json    arena_get_stats, every field by name
 *   classes.json  arena_get_class_stats, a list of 32 objects
 *   report.txt    arena_print_stats
 *
 * The heap: blocks of several classes with some freed (so pools are full,
 * partly used and free), blocks in the thread cache, a dead thread's pools
 * (orphans), a user heap with small and large blocks, and one block of the
 * system allocator.  The snapshot functions are each called twice, before
 * and after the others, and the program fails when a pair differs: nothing
 * allocates meanwhile, so every view is of the same moment.
 *
 * usage: observe-dump DIR
 */
#include <arena.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "observe-dump: %s: %s\n", what, strerror(errno));
    exit(1);
}

static FILE *open_in(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die(path);
    return f;
}

static void close_file(FILE *f, const char *name)
{
    if (fclose(f) != 0)
        die(name);
}

static void *orphan_thread(void *arg)
{
    void **keep = arg;
    for (int i = 0; i < 200; i++)
        keep[i] = arena_alloc(64);      /* still live when the thread exits */
    return NULL;
}

#define FIELD(name) fprintf(f, ",\n  \"" #name "\": %" PRIu64, (uint64_t)s->name)

static void write_stats(FILE *f, const struct arena_stats *s)
{
    fprintf(f, "{\"backend\": \"%s\"", s->backend);
    FIELD(arenas_reserved); FIELD(arenas_released); FIELD(arenas_live); FIELD(arenas_empty);
    FIELD(bytes_mapped); FIELD(bytes_mapped_peak); FIELD(bytes_metadata); FIELD(bytes_resident);
    FIELD(pools_total); FIELD(pools_used); FIELD(pools_full); FIELD(pools_empty);
    FIELD(pools_large); FIELD(pools_free); FIELD(pools_free_dirty); FIELD(pools_free_purged);
    FIELD(pools_purged); FIELD(bytes_purged); FIELD(blocks_live); FIELD(bytes_live);
    FIELD(blocks_cached); FIELD(large_live); FIELD(large_bytes); FIELD(heap_large_live);
    FIELD(calls_mmap); FIELD(calls_munmap); FIELD(calls_brk); FIELD(calls_madvise);
    FIELD(reserve_failures); FIELD(heaps_live); FIELD(heaps_abandoned); FIELD(heaps_reused);
    FIELD(heaps_adopted); FIELD(heaps_user); FIELD(pools_borrowed); FIELD(arenas_moved);
    FIELD(locks_global); FIELD(limit_hard); FIELD(limit_soft); FIELD(limit_counted);
    FIELD(limit_refused); FIELD(limit_soft_calls);
    fprintf(f, ",\n  \"blocks_live_class\": [");
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++)
        fprintf(f, "%s%" PRIu64, c ? ", " : "", s->blocks_live_class[c]);
    fprintf(f, "]}\n");
}

static void write_classes(FILE *f, const struct arena_class_stats *cs)
{
    fprintf(f, "[");
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++) {
        const struct arena_class_stats *s = &cs[c];
        fprintf(f, "%s\n {\"block_size\": %" PRIu32, c ? "," : "", s->block_size);
        FIELD(pools_full); FIELD(pools_partial); FIELD(blocks_live); FIELD(bytes_live);
        FIELD(blocks_free); FIELD(blocks_cached); FIELD(bytes_resident); FIELD(pools_purged);
        fprintf(f, ",\n  \"occupancy\": [");
        for (unsigned b = 0; b < 8; b++)
            fprintf(f, "%s%" PRIu64, b ? ", " : "", s->occupancy[b]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n]\n");
}

static void snapshot(struct arena_stats *s, struct arena_class_stats *cs)
{
    memset(s, 0, sizeof *s);
    s->size = sizeof *s;
    arena_get_stats(s);
    memset(cs, 0, ARENA_NUM_CLASSES * sizeof *cs);
    for (unsigned c = 0; c < ARENA_NUM_CLASSES; c++)
        cs[c].size = sizeof cs[c];
    if (arena_get_class_stats(cs, ARENA_NUM_CLASSES) != ARENA_NUM_CLASSES) {
        fprintf(stderr, "observe-dump: arena_get_class_stats did not return %u\n",
                ARENA_NUM_CLASSES);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: observe-dump DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    /* Before the first allocation: stdio's buffers come from the system
     * allocator either way (this program is not linked with the malloc
     * replacement), so writing the files changes nothing in libarena. */
    static void *b48[3000], *b512[1000], *b16[500], *b304[700], *hs[100], *orphans[200];

    for (int i = 0; i < 3000; i++)
        b48[i] = arena_alloc(40 + i % 9);
    for (int i = 0; i < 1000; i++)
        b512[i] = arena_alloc(512);
    for (int i = 0; i < 500; i++)
        b16[i] = arena_alloc(1 + i % 16);
    for (int i = 0; i < 700; i++)
        b304[i] = arena_calloc(1, 300);
    for (int i = 0; i < 3000; i += 3)
        arena_free(b48[i]);
    for (int i = 10; i < 500; i++)
        arena_free(b16[i]);
    for (int i = 0; i < 1000; i += 2)
        arena_free(b512[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, orphan_thread, orphans) != 0 || pthread_join(t, NULL) != 0)
        die("a thread");
    struct arena_heap *h = arena_heap_new();
    if (h == NULL)
        die("arena_heap_new");
    for (int i = 0; i < 100; i++)
        hs[i] = arena_heap_alloc(h, 100);
    void *hl1 = arena_heap_alloc(h, 10000), *hl2 = arena_heap_alloc(h, 5000);
    void *sys = arena_alloc(4096);
    if (!b48[1] || !b512[1] || !b16[1] || !b304[1] || !hs[99] || !hl1 || !hl2 || !sys ||
        !orphans[199])
        die("an allocation");

    struct arena_stats s1, s2;
    static struct arena_class_stats c1[ARENA_NUM_CLASSES], c2[ARENA_NUM_CLASSES];
    snapshot(&s1, c1);

    FILE *f = open_in(dir, "map.json");
    if (arena_write_heap_map(f) != 0)
        die("arena_write_heap_map");
    close_file(f, "map.json");
    f = open_in(dir, "metrics.txt");
    if (arena_write_metrics(f) != 0)
        die("arena_write_metrics");
    close_file(f, "metrics.txt");
    f = open_in(dir, "report.txt");
    arena_print_stats(f);
    close_file(f, "report.txt");

    snapshot(&s2, c2);
    /* bytes_metadata and the syscall counts may move if a census mapped
     * its scratch memory; everything the checks compare must not. */
    s2.calls_mmap = s1.calls_mmap;
    s2.calls_munmap = s1.calls_munmap;
    if (memcmp(&s1, &s2, sizeof s1) != 0 || memcmp(c1, c2, sizeof c1) != 0) {
        fprintf(stderr, "observe-dump: the stats changed while nothing allocated\n");
        return 1;
    }
    f = open_in(dir, "stats.json");
    write_stats(f, &s1);
    close_file(f, "stats.json");
    f = open_in(dir, "classes.json");
    write_classes(f, c1);
    close_file(f, "classes.json");
    printf("observe-dump: %" PRIu64 " live blocks in %" PRIu64 " arenas; files in %s\n",
           s1.blocks_live, s1.arenas_live, dir);
    /* Everything back (leak checkers look at the system allocator's block). */
    arena_free(sys);
    arena_heap_destroy(h);
    for (int i = 0; i < 3000; i++)
        arena_free(i % 3 ? b48[i] : NULL);
    for (int i = 1; i < 1000; i += 2)
        arena_free(b512[i]);
    for (int i = 0; i < 10; i++)
        arena_free(b16[i]);
    for (int i = 0; i < 700; i++)
        arena_free(b304[i]);
    for (int i = 0; i < 200; i++)
        arena_free(orphans[i]);
    return 0;
}
