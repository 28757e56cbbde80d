/* A small server loop with a heap per request (docs/heaps.md).
 *
 * Each request is a line of words on stdin; the reply, one line on
 * stdout, counts the words and how often each distinct word came, in the
 * order they first came.  Everything a request needs (its copy of the
 * line, a hash table, one node per distinct word, the reply) comes from
 * the request's own heap, and one call frees all of it.
 *
 *   cc -std=c11 example_server.c -larena -lpthread -o example_server
 *   printf 'to be or not to be\n' | ./example_server
 */
#include <stdio.h>
#include <string.h>

#include <arena.h>

struct word {
    const char *text;
    size_t count;
    struct word *next;                  /* same hash bucket */
    struct word *order;                 /* the next word first seen */
};

struct request {
    struct arena_heap *heap;
    struct word **table;
    size_t buckets, words;
    struct word *first, **last;
    char *reply;
    size_t len, cap;
};

static size_t hash(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

/* Count one more of text; 0, or -1 when the heap has no memory left. */
static int count(struct request *r, const char *text)
{
    struct word **slot = &r->table[hash(text) % r->buckets];
    for (struct word *w = *slot; w != NULL; w = w->next)
        if (strcmp(w->text, text) == 0) {
            w->count++;
            return 0;
        }
    struct word *w = arena_heap_alloc(r->heap, sizeof *w);
    if (w == NULL)
        return -1;
    *w = (struct word){ .text = text, .count = 1, .next = *slot };
    *slot = w;
    *r->last = w;
    r->last = &w->order;
    return 0;
}

/* Append s to the reply, which grows inside the request's heap. */
static int append(struct request *r, const char *s)
{
    size_t n = strlen(s);
    if (r->len + n + 1 > r->cap) {
        size_t cap = 2 * (r->len + n + 1);
        char *p = arena_heap_realloc(r->heap, r->reply, cap);
        if (p == NULL)
            return -1;
        r->reply = p;
        r->cap = cap;
    }
    memcpy(r->reply + r->len, s, n + 1);
    r->len += n;
    return 0;
}

/* The reply to one request line, or NULL when memory ran out. */
static const char *handle(struct request *r, const char *line)
{
    size_t n = strlen(line);
    char *words = arena_heap_alloc(r->heap, n + 1);
    r->buckets = 64;
    r->table = arena_heap_calloc(r->heap, r->buckets, sizeof *r->table);
    if (words == NULL || r->table == NULL)
        return NULL;
    memcpy(words, line, n + 1);
    r->last = &r->first;
    for (char *w = words + strspn(words, " \t\n"); *w != '\0'; w += strspn(w, " \t\n")) {
        size_t len = strcspn(w, " \t\n");
        char *end = w + len;
        int last = *end == '\0';
        *end = '\0';                    /* the word stays in the heap's copy */
        if (count(r, w) != 0)
            return NULL;
        r->words++;
        w = last ? end : end + 1;
    }
    char num[32];
    snprintf(num, sizeof num, "%zu words:", r->words);
    if (append(r, num) != 0)
        return NULL;
    for (struct word *w = r->first; w != NULL; w = w->order) {
        snprintf(num, sizeof num, "=%zu", w->count);
        if (append(r, " ") != 0 || append(r, w->text) != 0 || append(r, num) != 0)
            return NULL;
    }
    return r->reply;
}

static void on_soft(size_t bytes, void *arg)
{
    (void)arg;
    fprintf(stderr, "server: memory in use passed the soft limit: %zu bytes\n", bytes);
}

int main(void)
{
    /* Above 64 MiB, say so; at 128 MiB, a request that needs more gets
     * NULL and fails alone, and the server goes on. */
    if (arena_set_limit((size_t)64 << 20, (size_t)128 << 20, on_soft, NULL) != 0)
        return 1;
    char line[4096];
    unsigned long served = 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        struct request r = { .heap = arena_heap_new() };
        const char *reply = r.heap != NULL ? handle(&r, line) : NULL;
        puts(reply != NULL ? reply : "503 out of memory");
        arena_heap_destroy(r.heap);     /* the whole request, at once */
        served++;
    }
    struct arena_stats st = { .size = sizeof st };
    arena_get_stats(&st);
    fprintf(stderr, "server: %lu requests, %llu heaps left, %llu bytes mapped\n", served,
            (unsigned long long)st.heaps_user, (unsigned long long)st.bytes_mapped);
    return 0;
}
