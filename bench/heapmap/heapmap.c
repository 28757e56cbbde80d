/*
 * arena-heapmap: draws heap maps (arena_write_heap_map's JSON) as a PNG.
 *
 * One panel per map, side by side, all at the same scale: one row per arena
 * in address order (lowest address at the bottom, so with the brk backend
 * the top of the break is at the top), one cell per 4 KiB pool, coloured by
 * occupancy (live blocks / blocks per pool) for pools in use, and with
 * colours of their own for free pools (dirty: resident; purged: given
 * back), orphan pools (a dead thread's heap) and user heaps' large blocks.
 * When a map has more arenas than fit in one column (--rows), its rows wrap
 * into further columns, left to right.
 *
 * The drawing is in draw.c (arena-demo --map uses it too).
 */
#include "draw.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


static void usage(FILE *f)
{
    fprintf(f,
"usage: arena-heapmap [-o OUT.png] [-t TITLE] [--rows N] [--keep DIR]\n"
"                     [-c CAPTION] MAP.json [[-c CAPTION] MAP.json ...]\n"
"\n"
"Draws heap maps written by arena_write_heap_map() into one PNG, side by\n"
"side at the same scale: one row per arena in address order (lowest at the\n"
"bottom), one cell per 4 KiB pool, coloured by the share of its blocks that\n"
"are live; free pools (dirty or purged), orphan pools and large blocks in\n"
"colours of their own.\n"
"\n"
"  -o OUT.png    the picture (default heapmap.png)\n"
"  -t TITLE      the picture's title (default: \"libarena heap map\")\n"
"  -c CAPTION    caption of the next map (default: its file name)\n"
"  --rows N      at most N arena rows per column; more wrap into further\n"
"                columns (default: about sqrt(arenas / 100) columns for the\n"
"                largest map, at most 800 rows)\n"
"  --keep DIR    keep the gnuplot script and data in DIR\n"
"  -h, --help    this help\n"
"\n"
"Needs gnuplot.  Exit status: 0 drawn, 1 failed, 2 bad usage.\n");
}

static void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "arena-heapmap: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    usage(stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *paths[HEAPMAP_MAX_MAPS], *captions[HEAPMAP_MAX_MAPS];
    size_t npanels = 0;
    const char *out = "heapmap.png", *title = "libarena heap map", *keep = NULL;
    const char *caption = NULL;
    size_t max_rows = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        int takes = strcmp(a, "-o") == 0 || strcmp(a, "-t") == 0 || strcmp(a, "-c") == 0 ||
                    strcmp(a, "--rows") == 0 || strcmp(a, "--keep") == 0;
        if (takes) {
            if (i + 1 >= argc)
                die_usage("%s needs a value", a);
            const char *v = argv[++i];
            if (a[1] == 'o')
                out = v;
            else if (a[1] == 't')
                title = v;
            else if (a[1] == 'c')
                caption = v;
            else if (strcmp(a, "--keep") == 0)
                keep = v;
            else {
                char *end;
                errno = 0;
                unsigned long long r = strtoull(v, &end, 10);
                if (*v < '0' || *v > '9' || errno || *end || r < 1 || r > 100000)
                    die_usage("--rows wants a number from 1 to 100000, not '%s'", v);
                max_rows = (size_t)r;
            }
            continue;
        }
        if (a[0] == '-' && a[1] != '\0')
            die_usage("unknown option '%s'", a);
        if (npanels == HEAPMAP_MAX_MAPS)
            die_usage("at most 16 maps, not more: '%s'", a);
        paths[npanels] = a;
        captions[npanels] = caption;
        caption = NULL;
        npanels++;
    }
    if (npanels == 0)
        die_usage("%s", "no map given");
    if (*out == '\0')
        die_usage("%s", "-o needs a file name");
    struct heapmap_opts o = { out, title, keep, max_rows };
    return heapmap_draw(&o, npanels, paths, captions) == 0 ? 0 : 1;
}
