/*
 * Replays fuzzer inputs without libFuzzer, so the seed corpus runs as a
 * regression test in every build (gcc, valgrind, sanitizers):
 *
 *   fuzz-replay PATH...     run LLVMFuzzerTestOneInput once per file; a
 *                           directory stands for its files, in name order
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static int count, failures;

static void replay(const char *path)
{
    static uint8_t buf[1 << 20];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        failures++;
        return;
    }
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    printf("input %d: %s, %zu bytes: ok\n", ++count, path, len);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            replay(argv[i]);
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, not_hidden, by_name);
        if (n < 0) {
            perror(argv[i]);
            return 2;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
            replay(path);
            free(names[k]);
        }
        free(names);
    }
    if (count == 0) {
        fprintf(stderr, "no input found\n");
        return 2;
    }
    return failures ? 1 : 0;
}
