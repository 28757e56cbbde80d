/*
 * A deliberately buggy program: each mode commits one classic memory bug
 * on a libarena block, so that the tests can show that AddressSanitizer
 * (-Db_sanitize=address) and valgrind memcheck (-Dvalgrind=true) see
 * libarena's blocks the way they see malloc's.
 *
 *   buggy uaf-read    read a byte of a freed block
 *   buggy uaf-write   write a byte of a freed block
 *   buggy leak        lose the only pointer to a block
 *   buggy uninit      branch on a byte of a block never written
 *   buggy double-free free a block twice (valgrind only: the release
 *                     build does not see this one, the checked build
 *                     aborts, see test_death.c)
 *   buggy clean       correct use of every entry point: no report expected
 *
 * The checker (expect_report.py) runs it and matches the tool's report.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* Opaque to the optimiser: the compiler must not see through the bugs. */
static unsigned char *volatile sink;

static __attribute__((noinline)) unsigned char *get_block(size_t size)
{
    unsigned char *p = arena_alloc(size);
    if (p == NULL) {
        fprintf(stderr, "buggy: arena_alloc(%zu) failed\n", size);
        exit(2);
    }
    return p;
}

static int uaf_read(void)
{
    unsigned char *p = get_block(48);
    memset(p, 7, 48);
    arena_free(p);
    sink = p;
    fprintf(stderr, "buggy: bad access at %p\n", (void *)(p + 16));
    unsigned char v = sink[16];         /* bug: the block is freed */
    printf("read %u from a freed block\n", v);
    return 0;
}

static int uaf_write(void)
{
    unsigned char *p = get_block(48);
    memset(p, 7, 48);
    arena_free(p);
    sink = p;
    fprintf(stderr, "buggy: bad access at %p\n", (void *)(p + 16));
    sink[16] = 1;                       /* bug: the block is freed */
    printf("wrote into a freed block\n");
    return 0;
}

static unsigned char *volatile kept[2];

static __attribute__((noinline)) void lose(void)
{
    /* The first block of a fresh arena starts at the arena's address,
     * which libarena's arena descriptor holds: memcheck would count that
     * block as reachable.  Keep it, lose the next one. */
    kept[0] = get_block(48);
    sink = get_block(48);
    memset(sink, 3, 48);
    sink = NULL;                        /* bug: the only pointer is gone */
}

static int leak(void)
{
    lose();
    /* Another block that stays reachable: not reported as lost. */
    kept[1] = get_block(100);
    memset(kept[1], 4, 100);
    printf("lost one 48-byte block\n");
    return 0;
}

static int uninit(void)
{
    unsigned char *p = get_block(48);
    sink = p;
    if (sink[10] == 42)                 /* bug: never written */
        printf("the byte was 42\n");
    else
        printf("the byte was not 42\n");
    arena_free(p);
    return 0;
}

static int double_free(void)
{
    unsigned char *p = get_block(48);
    memset(p, 5, 48);
    arena_free(p);
    fprintf(stderr, "buggy: freeing twice %p\n", (void *)p);
    arena_free(p);                      /* bug: already freed */
    printf("freed a block twice\n");
    return 0;
}

static void *free_from_thread(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < 64; i++)
        arena_free(blocks[i]);
    return NULL;
}

static int clean(void)
{
    static const size_t sizes[] = { 0, 1, 16, 17, 48, 100, 256, 511, 512, 513, 4000 };
    void *blocks[64];
    unsigned long sum = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 64; i++) {
            size_t size = sizes[(size_t)(i + round) % (sizeof sizes / sizeof sizes[0])];
            unsigned char *p = i % 3 == 0 ? arena_calloc(1, size) : get_block(size);
            if (p == NULL)
                return 2;
            if (i % 3 != 0)
                memset(p, i, size);
            for (size_t k = 0; k < size; k++)
                sum += p[k];
            p = arena_realloc(p, size + 40);
            if (p == NULL)
                return 2;
            memset(p + size, 1, 40);
            blocks[i] = p;
        }
        if (round % 2) {
            pthread_t t;
            if (pthread_create(&t, NULL, free_from_thread, blocks) != 0)
                return 2;
            pthread_join(t, NULL);
        } else {
            for (int i = 63; i >= 0; i--)
                arena_free(blocks[i]);
        }
    }
    arena_release();
    printf("clean run, checksum %lu\n", sum);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(void);
    } modes[] = {
        { "uaf-read", uaf_read },
        { "uaf-write", uaf_write },
        { "leak", leak },
        { "uninit", uninit },
        { "double-free", double_free },
        { "clean", clean },
    };
    for (size_t i = 0; argc == 2 && i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(argv[1], modes[i].name) == 0)
            return modes[i].fn();
    fprintf(stderr, "usage: buggy uaf-read|uaf-write|leak|uninit|double-free|clean\n");
    return 2;
}
