// C++ allocation under libarena-malloc: operator new and delete (plain,
// array, nothrow, sized, aligned) reach malloc, aligned_alloc and free
// through libstdc++.  Run like test_override (LD_PRELOAD or linked).
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "arena.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

using stats_fn = void (*)(struct arena_stats *);
static stats_fn get_stats;

static uint64_t small_live()
{
    struct arena_stats s;
    s.size = sizeof s;
    get_stats(&s);
    return s.blocks_live;
}

static uint64_t large_live()
{
    struct arena_stats s;
    s.size = sizeof s;
    get_stats(&s);
    return s.large_live;
}

// The checks count blocks: keep the compiler from eliding a new/delete
// pair whose object is never read (C++14 allows it, clang does it).
template <typename T> static T *keep(T *p)
{
    __asm__ volatile("" : : "g"(p) : "memory");
    return p;
}

struct alignas(64) Wide {
    char bytes[48];
};

struct alignas(1024) Page {
    char bytes[100];
};

int main()
{
    // Under valgrind, memcheck's malloc replaces libarena-malloc's (see
    // test_override.c).  77: skipped, for meson test.
    const char *preload = std::getenv("LD_PRELOAD");
    if (preload != nullptr && std::strstr(preload, "vgpreload") != nullptr) {
        std::printf("SKIP: under valgrind, memcheck's malloc replaces libarena-malloc's\n");
        return 77;
    }
    get_stats = reinterpret_cast<stats_fn>(dlsym(RTLD_DEFAULT, "arena_get_stats"));
    if (get_stats == nullptr) {
        std::fprintf(stderr, "libarena-malloc is not loaded\n");
        return 1;
    }

    uint64_t s0 = small_live(), l0 = large_live();
    int *i = keep(new int(7));
    CHECK(small_live() == s0 + 1);
    delete i;
    CHECK(small_live() == s0);

    long *arr = keep(new long[40]);
    CHECK(small_live() == s0 + 1);
    delete[] arr;
    CHECK(small_live() == s0);

    void *raw = keep(::operator new(100));
    CHECK(small_live() == s0 + 1);
    ::operator delete(raw, 100);              // sized delete
    CHECK(small_live() == s0);

    int *nt = keep(new (std::nothrow) int[10]);
    CHECK(nt != nullptr && small_live() == s0 + 1);
    delete[] nt;

    Wide *w = keep(new Wide);                 // aligned new, served by a pool
    CHECK(reinterpret_cast<uintptr_t>(w) % 64 == 0);
    CHECK(small_live() == s0 + 1);
    delete w;                                 // aligned, sized delete
    CHECK(small_live() == s0);

    Page *p = keep(new Page);                 // too aligned: glibc
    CHECK(reinterpret_cast<uintptr_t>(p) % 1024 == 0);
    CHECK(large_live() == l0 + 1 && small_live() == s0);
    delete p;
    CHECK(large_live() == l0);

    char *big = keep(new char[100000]);
    CHECK(large_live() == l0 + 1);
    delete[] big;
    CHECK(large_live() == l0);

    {
        std::map<int, std::string> m;
        std::vector<std::unique_ptr<Wide>> v;
        for (int k = 0; k < 100000; k++) {
            m[k] = std::string(static_cast<size_t>(k % 60), 'x');
            if (k % 10 == 0)
                v.push_back(std::make_unique<Wide>());
        }
        size_t total = 0;
        for (auto &kv : m)
            total += kv.second.size();
        CHECK(total == 100000 / 60 * (59 * 60 / 2) + (100000 % 60) * (100000 % 60 - 1) / 2);
        for (auto &x : v)
            CHECK(reinterpret_cast<uintptr_t>(x.get()) % 64 == 0);
        CHECK(small_live() > s0 + 100000);
    }
    CHECK(small_live() == s0);
    std::printf("ok 1 - c++ new and delete\n");
    return 0;
}
