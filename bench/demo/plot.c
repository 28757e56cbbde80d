/*
 * arena-demo: RSS samples and the gnuplot chart.  Runs in the parent only.
 */
#include "demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int demo_series_add(struct demo_series *s, double t, double mib)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        double *nt = realloc(s->t, cap * sizeof *nt);
        if (nt == NULL)
            return -1;
        s->t = nt;
        double *nm = realloc(s->mib, cap * sizeof *nm);
        if (nm == NULL)
            return -1;
        s->mib = nm;
        s->cap = cap;
    }
    s->t[s->n] = t;
    s->mib[s->n] = mib;
    s->n++;
    return 0;
}

void demo_series_free(struct demo_series *s)
{
    free(s->t);
    free(s->mib);
    memset(s, 0, sizeof *s);
}

int demo_have_program(const char *prog)
{
    const char *path = getenv("PATH");
    if (path == NULL || *path == '\0')
        path = "/usr/bin:/bin";
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        char buf[4096];
        if (len == 0) {
            snprintf(buf, sizeof buf, "./%s", prog);
        } else if (len + strlen(prog) + 2 <= sizeof buf) {
            memcpy(buf, path, len);
            buf[len] = '/';
            strcpy(buf + len + 1, prog);
        } else {
            buf[0] = '\0';
        }
        if (buf[0] != '\0' && access(buf, X_OK) == 0)
            return 1;
        if (end == NULL)
            break;
        path = end + 1;
    }
    return 0;
}

/* gnuplot strings are in double quotes: drop the characters that would end
 * or escape them. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++)
        if (*s != '"' && *s != '\\' && *s != '\n')
            fputc(*s, f);
    fputc('"', f);
}

static int run_gnuplot(const char *png, const char *terminal,
                       const struct demo_series *series,
                       const struct demo_run_spec *const *runs, size_t nruns,
                       const char *title)
{
    FILE *g = popen("gnuplot 2>/dev/null", "w");
    if (g == NULL)
        return -1;
    fprintf(g, "set terminal %s size 1100,620 font \"sans,11\"\n", terminal);
    fprintf(g, "set output ");
    put_quoted(g, png);
    fprintf(g, "\nset title ");
    put_quoted(g, title);
    fprintf(g, "\nset xlabel \"seconds since the run started\"\n"
               "set ylabel \"resident memory (MiB)\"\n"
               "set grid\n"
               "set key top right box opaque\n"
               "set yrange [0:*]\n"
               "set offsets 0, 0, graph 0.3, 0\n"
               "set xrange [0:*]\n");
    int any = 0;
    fprintf(g, "plot");
    for (size_t i = 0; i < nruns; i++) {
        if (series[i].n == 0)
            continue;
        fprintf(g, "%s '-' using 1:2 with lines lw 2.5 lc rgb \"%s\" title ",
                any ? "," : "", runs[i]->colour);
        put_quoted(g, runs[i]->name);
        any = 1;
    }
    int marks = 0;
    for (size_t i = 0; i < nruns; i++)
        marks += series[i].n > 0 && series[i].marked;
    if (any && marks)
        fprintf(g, ", '-' using 1:2 with points pt 7 ps 1.4 lc rgb \"black\" "
                   "title \"the burst is freed from here\"");
    fprintf(g, "\n");
    for (size_t i = 0; i < nruns; i++) {
        if (series[i].n == 0)
            continue;
        for (size_t k = 0; k < series[i].n; k++)
            fprintf(g, "%.3f %.2f\n", series[i].t[k], series[i].mib[k]);
        fprintf(g, "e\n");
    }
    if (any && marks) {
        for (size_t i = 0; i < nruns; i++)
            if (series[i].n > 0 && series[i].marked)
                fprintf(g, "%.3f %.2f\n", series[i].mark_t, series[i].mark_mib);
        fprintf(g, "e\n");
    }
    int st = pclose(g);
    if (!any)
        return -1;
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int demo_plot(const char *png, const struct demo_series *series,
              const struct demo_run_spec *const *runs, size_t n, const char *title)
{
    if (!demo_have_program("gnuplot")) {
        fprintf(stderr, "arena-demo: gnuplot is not installed, so %s was not "
                "drawn (the table is printed all the same)\n", png);
        return -1;
    }
    /* pngcairo draws smoother lines; plain png (libgd) is the fallback. */
    if (run_gnuplot(png, "pngcairo", series, runs, n, title) == 0)
        return 0;
    if (run_gnuplot(png, "png", series, runs, n, title) == 0)
        return 0;
    fprintf(stderr, "arena-demo: gnuplot failed to draw %s\n", png);
    return -1;
}
