/*
 * heapmap-atexit.so: writes a program's heap map (and, if asked, its
 * metrics) when the program exits.  Preload it after libarena-malloc.so:
 *
 *   LD_PRELOAD="build/src/override/libarena-malloc.so build/bench/heapmap/heapmap-atexit.so" \
 *   ARENA_HEAPMAP_AT_EXIT=map.json ARENA_METRICS_AT_EXIT=metrics.txt program ...
 *
 * It does nothing unless those variables are set.  The functions come from
 * whichever library in the process exports them (looked up with dlsym), so
 * the helper itself is not linked with libarena.  The map is taken in an
 * atexit handler: after main returns or exit() is called, before the
 * libraries' destructors run.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*writer_fn)(FILE *);

static char map_path[4096], metrics_path[4096];

static void write_one(const char *what, const char *symbol, const char *path)
{
    writer_fn fn = (writer_fn)(void (*)(void))dlsym(RTLD_DEFAULT, symbol);
    if (fn == NULL) {
        fprintf(stderr, "heapmap-atexit: %s not found: is libarena-malloc.so preloaded?\n",
                symbol);
        return;
    }
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "heapmap-atexit: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    int rc = fn(f);
    if (fclose(f) != 0 || rc != 0)
        fprintf(stderr, "heapmap-atexit: writing the %s to %s failed\n", what, path);
    else
        fprintf(stderr, "heapmap-atexit: %s written to %s\n", what, path);
}

static void at_exit(void)
{
    if (map_path[0])
        write_one("heap map", "arena_write_heap_map", map_path);
    if (metrics_path[0])
        write_one("metrics", "arena_write_metrics", metrics_path);
}

__attribute__((constructor)) static void heapmap_atexit_init(void)
{
    const char *m = getenv("ARENA_HEAPMAP_AT_EXIT"), *k = getenv("ARENA_METRICS_AT_EXIT");
    if (m != NULL && *m != '\0')
        snprintf(map_path, sizeof map_path, "%s", m);
    if (k != NULL && *k != '\0')
        snprintf(metrics_path, sizeof metrics_path, "%s", k);
    if (map_path[0] || metrics_path[0])
        atexit(at_exit);
}
