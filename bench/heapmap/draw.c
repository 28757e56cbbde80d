/*
 * Drawing heap maps with gnuplot (see draw.h).
 */
#include "draw.h"
#include "mapjson.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GAP_CELLS  3            /* blank cells between wrapped columns */

struct rgb { unsigned char r, g, b; };

/* Colours: occupancy bins for pools in use, then the other states. */
enum { C_OCC0, C_OCC1, C_OCC2, C_OCC3, C_FULLY, C_DIRTY, C_PURGED, C_ORPHAN, C_LARGE, C_BLANK,
       NUM_COLOURS };
static const struct rgb colours[NUM_COLOURS] = {
    { 0xc6, 0xdb, 0xef },       /* in use, live <= 25 %              */
    { 0x6b, 0xae, 0xd6 },       /* 25 .. 50 %                        */
    { 0x31, 0x82, 0xbd },       /* 50 .. 75 %                        */
    { 0x08, 0x51, 0x9c },       /* 75 .. 100 %                       */
    { 0x08, 0x1d, 0x58 },       /* every block live                  */
    { 0xf4, 0x6d, 0x43 },       /* free, dirty: still resident       */
    { 0xdc, 0xdc, 0xdc },       /* free, purged: given back          */
    { 0x9e, 0x4f, 0xc9 },       /* orphan: a dead thread's heap      */
    { 0x1a, 0x98, 0x50 },       /* a user heap's large block         */
    { 0xff, 0xff, 0xff },       /* no arena here                     */
};
static const char *const colour_names[NUM_COLOURS - 1] = {
    "in use, live <= 25%", "<= 50%", "<= 75%", "< 100%", "100% live",
    "free, dirty (resident)", "free, purged (given back)", "orphan (dead thread)",
    "large block (user heap)",
};

static unsigned pool_colour(const struct map_pool *p)
{
    switch (p->state) {
    case MAP_FREE_DIRTY:
        return C_DIRTY;
    case MAP_FREE_PURGED:
        return C_PURGED;
    case MAP_ORPHAN:
        return C_ORPHAN;
    case MAP_LARGE:
        return C_LARGE;
    default: {
        uint32_t n = map_blocks_per_pool(p->block_size);
        if (n == 0 || p->live >= n)
            return C_FULLY;
        unsigned q = (unsigned)((uint64_t)p->live * 4 / n);  /* 0..3 */
        if ((uint64_t)p->live * 4 == (uint64_t)q * n && q > 0)
            q--;                                            /* 25 % exactly: bin 0 */
        return C_OCC0 + q;
    }
    }
}

struct panel {
    const char *path, *caption;
    struct heap_map map;
    size_t cols;                /* wrapped columns                    */
    size_t w_cells;             /* width of its grid, in cells        */
    double x0, w_px;            /* where it is, in pixels             */
};

/* Writes a gnuplot string in double quotes, dropping what would end it. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        if (*s != '"' && *s != '\\' && *s != '\n')
            fputc(*s, f);
    fputc('"', f);
}

static const char *human(uint64_t bytes, char *buf, size_t len)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, len, "%.1f %s", v, unit[u]);
    return buf;
}

static const char *basename_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The second and third lines of a panel's caption. */
static void panel_lines(const struct heap_map *m, char line2[200], char line3[200])
{
    char live[32];
    uint64_t in_use = m->pools[MAP_USED] + m->pools[MAP_CURRENT] + m->pools[MAP_FULL] +
                      m->pools[MAP_ORPHAN];
    snprintf(line2, 200, "%s: %zu arena%s, %" PRIu64 " live blocks (%s)", m->backend, m->n,
             m->n == 1 ? "" : "s", m->live_blocks, human(m->live_bytes, live, sizeof live));
    snprintf(line3, 200, "pools: %" PRIu64 " in use, %" PRIu64 " free dirty, %" PRIu64
             " purged", in_use, m->pools[MAP_FREE_DIRTY], m->pools[MAP_FREE_PURGED]);
    if (m->pools[MAP_ORPHAN] || m->pools[MAP_LARGE]) {
        size_t l = strlen(line3);
        snprintf(line3 + l, 200 - l, ", %" PRIu64 " orphan, %" PRIu64 " large",
                 m->pools[MAP_ORPHAN], m->pools[MAP_LARGE]);
    }
}

/* The cells of one panel, bottom row first, as raw RGB. */
static int write_cells(const char *file, const struct panel *p, size_t rows)
{
    FILE *f = fopen(file, "wb");
    if (f == NULL)
        return -1;
    size_t w = p->w_cells;
    struct rgb *line = malloc(w * sizeof *line);
    if (line == NULL) {
        fclose(f);
        return -1;
    }
    for (size_t y = 0; y < rows; y++) {
        for (size_t x = 0; x < w; x++)
            line[x] = colours[C_BLANK];
        for (size_t c = 0; c < p->cols; c++) {
            size_t a = c * rows + y;
            if (a >= p->map.n)
                continue;
            for (unsigned j = 0; j < MAP_POOLS; j++)
                line[c * (MAP_POOLS + GAP_CELLS) + j] =
                    colours[pool_colour(&p->map.arenas[a].pool[j])];
        }
        fwrite(line, sizeof *line, w, f);
    }
    free(line);
    return fclose(f);
}

static int run_gnuplot(const char *script)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        fprintf(stderr, "arena-heapmap: cannot run gnuplot: %s\n", strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int has_png_signature(const char *path)
{
    unsigned char sig[8];
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    size_t n = fread(sig, 1, sizeof sig, f);
    fclose(f);
    return n == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0;
}

int heapmap_have_gnuplot(void)
{
    const char *path = getenv("PATH");
    if (path == NULL || *path == '\0')
        path = "/usr/bin:/bin";
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        char buf[4096];
        if (len > 0 && len + sizeof "/gnuplot" <= sizeof buf) {
            memcpy(buf, path, len);
            memcpy(buf + len, "/gnuplot", sizeof "/gnuplot");
            if (access(buf, X_OK) == 0)
                return 1;
        }
        if (end == NULL)
            break;
        path = end + 1;
    }
    return 0;
}

int heapmap_draw(const struct heapmap_opts *opt, size_t npanels, const char *const paths[],
                 const char *const captions[])
{
    struct panel panels[HEAPMAP_MAX_MAPS];
    const char *out = opt->out, *title = opt->title, *keep = opt->keep;
    size_t max_rows = opt->max_rows;
    if (npanels == 0 || npanels > HEAPMAP_MAX_MAPS)
        return -1;
    if (!heapmap_have_gnuplot()) {
        fprintf(stderr, "arena-heapmap: gnuplot is not installed, so %s was not drawn\n", out);
        return HEAPMAP_NO_GNUPLOT;
    }
    memset(panels, 0, sizeof panels);
    for (size_t i = 0; i < npanels; i++) {
        panels[i].path = paths[i];
        panels[i].caption = captions && captions[i] ? captions[i] : basename_of(paths[i]);
    }
    /* Read the maps. */
    size_t most = 0;
    for (size_t i = 0; i < npanels; i++) {
        char err[256];
        struct panel *p = &panels[i];
        if (map_load(p->path, &p->map, err, sizeof err) != 0) {
            fprintf(stderr, "arena-heapmap: %s: %s\n", p->path, err);
            goto fail;
        }
        char b[32];
        fprintf(stderr, "arena-heapmap: read %s: backend %s, %zu arenas, %" PRIu64
                " live blocks (%s)\n", p->path, p->map.backend, p->map.n, p->map.live_blocks,
                human(p->map.live_bytes, b, sizeof b));
        if (p->map.over_capacity)
            fprintf(stderr, "arena-heapmap: %s: warning: %" PRIu64 " pools have more live "
                    "blocks than they hold (drawn as 100%%)\n", p->path, p->map.over_capacity);
        if (p->map.n > most)
            most = p->map.n;
    }

    /* Layout, in pixels: every panel at the same scale. */
    /* Rows per column: given, or about sqrt(most / 100) columns for the
     * largest map, so that a panel is not a thin strip; at most 800. */
    if (max_rows == 0) {
        size_t cols = 1;
        while (cols * cols * 100 < most)
            cols++;
        max_rows = (most + cols - 1) / cols;
        if (max_rows > 800)
            max_rows = 800;
    }
    size_t rows = most < max_rows ? most : max_rows;
    if (rows == 0)
        rows = 1;
    double cell_h = (double)(int)(800.0 / (double)rows);
    if (cell_h > 14)
        cell_h = 14;
    if (cell_h < 1)
        cell_h = 1;
    double cell_w = cell_h > 3 ? 3 : cell_h;
    const double margin = 30, gap = 40, top = 150, bottom = 120, min_panel = 300;
    double x = margin;
    for (size_t i = 0; i < npanels; i++) {
        struct panel *p = &panels[i];
        p->cols = p->map.n ? (p->map.n + rows - 1) / rows : 1;
        p->w_cells = p->cols * MAP_POOLS + (p->cols - 1) * GAP_CELLS;
        p->w_px = (double)p->w_cells * cell_w;
        if (p->w_px < min_panel)
            p->w_px = min_panel;
        /* wide enough for its caption (about 6.5 pixels a character) */
        char line2[200], line3[200];
        panel_lines(&p->map, line2, line3);
        size_t chars = strlen(p->caption);
        if (strlen(line2) > chars)
            chars = strlen(line2);
        if (strlen(line3) > chars)
            chars = strlen(line3);
        if (p->w_px < 6.5 * (double)chars + 10)
            p->w_px = 6.5 * (double)chars + 10;
        p->x0 = x;
        x += p->w_px + gap;
    }
    double width = x - gap + margin, grid_h = (double)rows * cell_h;
    if (width < 1000)
        width = 1000;
    double height = top + grid_h + bottom;

    /* The data and the script. */
    char tmpl[] = "/tmp/arena-heapmap.XXXXXX";
    const char *dir = keep;
    if (dir == NULL) {
        dir = mkdtemp(tmpl);
        if (dir == NULL) {
            fprintf(stderr, "arena-heapmap: cannot make a temporary directory: %s\n",
                    strerror(errno));
            goto fail;
        }
    } else if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "arena-heapmap: cannot make %s: %s\n", dir, strerror(errno));
        goto fail;
    }
    char script[4200], file[4200];
    size_t cells = 0;
    for (size_t i = 0; i < npanels; i++) {
        snprintf(file, sizeof file, "%s/panel%zu.rgb", dir, i);
        if (write_cells(file, &panels[i], rows) != 0) {
            fprintf(stderr, "arena-heapmap: cannot write %s: %s\n", file, strerror(errno));
            goto fail;
        }
        cells += panels[i].map.n * MAP_POOLS;
    }
    fprintf(stderr, "arena-heapmap: drawing %zu pools of %zu map%s with gnuplot into %s ...\n",
            cells, npanels, npanels == 1 ? "" : "s", out);
    snprintf(script, sizeof script, "%s/heapmap.gp", dir);

    int drawn = -1;
    static const char *const terminals[] = { "pngcairo", "png" };
    for (unsigned t = 0; t < 2 && drawn != 0; t++) {
        FILE *g = fopen(script, "w");
        if (g == NULL) {
            fprintf(stderr, "arena-heapmap: cannot write %s: %s\n", script, strerror(errno));
            goto fail;
        }
        fprintf(g, "# arena-heapmap: %zu maps\n", npanels);
        fprintf(g, "set terminal %s size %d,%d font \"sans,10\" background rgb \"white\"\n",
                terminals[t], (int)width, (int)height);
        fprintf(g, "set termoption noenhanced\n");     /* '_' is not a subscript */
        fprintf(g, "set output ");
        put_quoted(g, out);
        fprintf(g, "\nset multiplot\nunset key\nunset xtics\nunset ytics\n"
                   "set border lw 0.5 lc rgb \"#888888\"\n");
        fprintf(g, "set label 101 ");
        put_quoted(g, title);
        fprintf(g, " at screen 0.5, %f center font \"sans,14\"\n", 1 - 24 / height);
        for (size_t i = 0; i < npanels; i++) {
            const struct panel *p = &panels[i];
            const struct heap_map *m = &p->map;
            char line2[200], line3[200];
            panel_lines(m, line2, line3);
            double l = p->x0 / width, r = (p->x0 + p->w_px) / width;
            double b = bottom / height, tp = (bottom + grid_h) / height;
            fprintf(g, "set lmargin at screen %f\nset rmargin at screen %f\n"
                       "set bmargin at screen %f\nset tmargin at screen %f\n", l, r, b, tp);
            fprintf(g, "set title ");
            char t3[700];
            snprintf(t3, sizeof t3, "%s\n%s\n%s", p->caption, line2, line3);
            /* newlines are kept in titles: write them as \n escapes */
            fputc('"', g);
            for (const char *s = t3; *s; s++) {
                if (*s == '\n')
                    fputs("\\n", g);
                else if (*s != '"' && *s != '\\')
                    fputc(*s, g);
            }
            fputs("\" font \"sans,10\"\n", g);
            fprintf(g, "set xrange [-0.5:%f]\nset yrange [-0.5:%f]\n",
                    p->w_px / cell_w - 0.5, (double)rows - 0.5);
            snprintf(file, sizeof file, "%s/panel%zu.rgb", dir, i);
            /* An outline around the arena at the highest address (with the
             * brk backend, the one at the top of the break). */
            if (m->n > 0) {
                size_t last = m->n - 1, col = last / rows, row = last % rows;
                double x0 = (double)(col * (MAP_POOLS + GAP_CELLS)) - 0.5;
                fprintf(g, "set object 200 rectangle from first %f,%f to first %f,%f "
                           "fs empty border lc rgb \"black\" lw 1.5 front\n",
                        x0, (double)row - 0.5, x0 + MAP_POOLS, (double)row + 0.5);
            }
            fprintf(g, "plot ");
            put_quoted(g, file);
            fprintf(g, " binary array=(%zu,%zu) format='%%uchar%%uchar%%uchar' "
                       "with rgbimage\n", p->w_cells, rows);
            fprintf(g, "unset title\nunset object 200\n");
        }
        /* The legend: coloured boxes and their names, in two lines. */
        double lx = margin, ly = bottom - 40;
        for (unsigned c = 0; c < NUM_COLOURS - 1; c++) {
            if (c == C_DIRTY) {
                lx = margin;
                ly -= 24;
            }
            double bw = 14, bh = 14;
            fprintf(g, "set object %u rectangle from screen %f,%f to screen %f,%f "
                       "fc rgb \"#%02x%02x%02x\" fs solid 1.0 border lc rgb \"#555555\" front\n",
                    c + 1, lx / width, ly / height, (lx + bw) / width, (ly + bh) / height,
                    colours[c].r, colours[c].g, colours[c].b);
            fprintf(g, "set label %u ", c + 1);
            put_quoted(g, colour_names[c]);
            fprintf(g, " at screen %f,%f left font \"sans,10\"\n", (lx + bw + 6) / width,
                    (ly + bh / 2) / height);
            lx += bw + 24 + 7.5 * (double)strlen(colour_names[c]);
        }
        fprintf(g, "set label 100 ");
        char note[300];
        snprintf(note, sizeof note,
                 "one row per 256 KiB arena, lowest address at the bottom, %zu rows a "
                 "column; outlined: the highest; one cell per 4 KiB pool", rows);
        put_quoted(g, note);
        fprintf(g, " at screen %f,%f left font \"sans,9\" tc rgb \"#444444\"\n",
                margin / width, (bottom - 12) / height);
        /* an empty plot to draw the objects and labels */
        fprintf(g, "set lmargin at screen 0\nset rmargin at screen 1\n"
                   "set bmargin at screen 0\nset tmargin at screen 1\nunset border\n"
                   "set xrange [0:1]\nset yrange [0:1]\nplot 2 notitle\nunset multiplot\n");
        if (fclose(g) != 0) {
            fprintf(stderr, "arena-heapmap: cannot write %s\n", script);
            goto fail;
        }
        unlink(out);
        drawn = run_gnuplot(script) == 0 && has_png_signature(out) ? 0 : -1;
    }
    if (keep == NULL) {
        for (size_t i = 0; i < npanels; i++) {
            snprintf(file, sizeof file, "%s/panel%zu.rgb", dir, i);
            unlink(file);
        }
        unlink(script);
        rmdir(dir);
    }
    for (size_t i = 0; i < npanels; i++)
        map_free(&panels[i].map);
    if (drawn != 0) {
        fprintf(stderr, "arena-heapmap: gnuplot failed to draw %s\n", out);
        return -1;
    }
    fprintf(stderr, "arena-heapmap: wrote %s (%dx%d, %zu map%s)\n", out, (int)width,
            (int)height, npanels, npanels == 1 ? "" : "s");
    return 0;
fail:
    for (size_t i = 0; i < npanels; i++)
        map_free(&panels[i].map);
    return -1;
}
