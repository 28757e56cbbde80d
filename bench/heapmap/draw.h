/*
 * Heap maps (arena_write_heap_map's JSON files) drawn into one PNG with
 * gnuplot: one panel per map, side by side at the same scale; one row per
 * arena in address order (lowest at the bottom; rows wrap into further
 * columns past max_rows), one cell per 4 KiB pool, coloured by occupancy
 * (live / blocks per pool) for pools in use, with colours of their own for
 * free-dirty, free-purged, orphan and large pools; a title, a caption per
 * panel (with the backend, arena count and live blocks) and a legend.
 *
 * It writes the cells as raw RGB files and a gnuplot script into a
 * temporary directory (or keep, kept) and runs gnuplot (pngcairo, else
 * png).  Used by arena-heapmap and arena-demo --map.
 */
#ifndef HEAPMAP_DRAW_H
#define HEAPMAP_DRAW_H

#include <stddef.h>

#define HEAPMAP_MAX_MAPS   16
#define HEAPMAP_NO_GNUPLOT (-2)

struct heapmap_opts {
    const char *out;            /* the PNG                               */
    const char *title;
    const char *keep;           /* NULL, or a directory to keep the data  */
    size_t max_rows;            /* rows per column; 0: chosen             */
};

/* Draws n maps (captions[i] NULL or captions NULL: the file name).  Says
 * what it does on stderr.  Returns 0; HEAPMAP_NO_GNUPLOT (one line said so)
 * when gnuplot is not installed; -1 after a message on any other failure. */
int heapmap_draw(const struct heapmap_opts *opt, size_t n, const char *const paths[],
                 const char *const captions[]);

/* True when gnuplot is on PATH. */
int heapmap_have_gnuplot(void);

#endif /* HEAPMAP_DRAW_H */
