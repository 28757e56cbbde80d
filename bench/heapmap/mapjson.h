/*
 * The heap map JSON that arena_write_heap_map() writes, read back:
 *
 *   {"backend": "mmap", "arenas": [{"base": "0x7f...", "pools": [
 *     {"state": "used", "block_size": 48, "live": 17}, ... 64 pools]}, ...]}
 *
 * A small hand-written parser for this one fixed format (keys in any order,
 * unknown keys skipped, any JSON whitespace).  Shared by arena-heapmap and
 * the tests.
 */
#ifndef HEAPMAP_MAPJSON_H
#define HEAPMAP_MAPJSON_H

#include <stddef.h>
#include <stdint.h>

enum map_state {
    MAP_FREE_DIRTY,
    MAP_FREE_PURGED,
    MAP_USED,
    MAP_CURRENT,
    MAP_FULL,
    MAP_ORPHAN,
    MAP_LARGE,
    MAP_NUM_STATES
};

#define MAP_POOLS 64

struct map_pool {
    uint8_t state;              /* enum map_state                      */
    uint32_t block_size;        /* class size; 0 free; large: bytes    */
    uint32_t live;
};

struct map_arena {
    uint64_t base;
    struct map_pool pool[MAP_POOLS];
};

struct heap_map {
    char backend[32];
    struct map_arena *arenas;
    size_t n;
    /* Totals, filled by map_parse. */
    uint64_t pools[MAP_NUM_STATES];
    uint64_t live_blocks;       /* live of small-block pools            */
    uint64_t live_bytes;        /* live * block_size of those           */
    uint64_t over_capacity;     /* pools whose live > 4096 / block_size */
};

/* The name of a state as the JSON spells it. */
const char *map_state_name(enum map_state s);

/* Parses text[0..len).  Returns 0, or -1 with a message in err. */
int map_parse(const char *text, size_t len, struct heap_map *m, char *err, size_t errlen);

/* Reads and parses a file.  Returns 0, or -1 with a message in err. */
int map_load(const char *path, struct heap_map *m, char *err, size_t errlen);

void map_free(struct heap_map *m);

/* Blocks a pool of this block size holds: 4096 / block_size (0 for 0). */
static inline uint32_t map_blocks_per_pool(uint32_t block_size)
{
    return block_size ? 4096u / block_size : 0;
}

#endif /* HEAPMAP_MAPJSON_H */
