/*
 * A library that test_override loads and unloads again and again.  It
 * allocates in its constructor and frees in its destructor, uses dynamic
 * TLS (glibc allocates a dlopen'ed library's TLS block with malloc on first
 * use in each thread), starts a thread that allocates, and hands out
 * blocks that the program frees after dlclose.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NKEEP 16

static char *keep[NKEEP];
static __thread char tls_buffer[2048];
static __thread int tls_counter;

__attribute__((constructor)) static void module_start(void)
{
    for (int i = 0; i < NKEEP; i++) {
        size_t n = (size_t)(i + 1) * 70;      /* 70 .. 1120: small and large */
        keep[i] = malloc(n);
        if (keep[i] != NULL)
            memset(keep[i], i + 1, n);
    }
}

__attribute__((destructor)) static void module_stop(void)
{
    for (int i = 0; i < NKEEP; i++)
        free(keep[i]);
}

static void *thread_main(void *arg)
{
    (void)arg;
    tls_counter++;
    memset(tls_buffer, 1, sizeof tls_buffer);
    void *v[100];
    for (int i = 0; i < 100; i++)
        v[i] = malloc((size_t)i * 11);
    for (int i = 0; i < 100; i++)
        free(v[i]);
    return keep[0];
}

/* 0 when the constructor's blocks are intact and a thread ran. */
int dl_check(void)
{
    for (int i = 0; i < NKEEP; i++) {
        size_t n = (size_t)(i + 1) * 70;
        if (keep[i] == NULL)
            return 1;
        for (size_t k = 0; k < n; k++)
            if (keep[i][k] != (char)(i + 1))
                return 2;
    }
    tls_counter++;
    tls_buffer[0] = 1;
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, &ret) != 0)
        return 3;
    return ret == keep[0] ? 0 : 4;
}

/* A block of n bytes filled as test_override's fill(p, n, seed) does. */
char *dl_make(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    if (p != NULL)
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)(seed + i * 7);
    return (char *)p;
}
