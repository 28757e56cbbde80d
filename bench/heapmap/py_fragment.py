"""A python3 workload for the heap-map pictures (bench/heapmap/programs.py).

Run under libarena-malloc.so with PYTHONMALLOC=malloc, so that every
Python object comes from libarena:

  1. builds N records (a dict with a str, an int, a tuple and a list each),
     like rows loaded into a cache;
  2. at the peak, writes the heap map and the stats report;
  3. drops a random 90% of the records (an eviction: the survivors are
     spread over every pool), collects;
  4. writes the heap map and the report again, then exits.

The maps and reports are taken through libarena's own functions, reached
with ctypes from the preloaded library (ctypes.CDLL(None) sees its
exports); the FILE * comes from the C library's fopen.

usage: python3 py_fragment.py OUTDIR [N]
Writes OUTDIR/python3-peak.json, python3-peak.txt, python3-evicted.json,
python3-evicted.txt.  Standard library only.
"""
import ctypes
import gc
import os
import random
import sys


def snapshot(lib, outdir, name):
    """Heap map and report of this moment, written by libarena itself."""
    for suffix, fn in (("json", lib.arena_write_heap_map), ("txt", lib.arena_print_stats)):
        path = os.path.join(outdir, "python3-%s.%s" % (name, suffix)).encode()
        f = lib.fopen(path, b"w")
        if not f:
            sys.exit("py_fragment: cannot write %s" % path.decode())
        fn(ctypes.c_void_p(f))
        lib.fclose(ctypes.c_void_p(f))


def main():
    outdir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300000
    lib = ctypes.CDLL(None)
    if not hasattr(lib, "arena_write_heap_map"):
        sys.exit("py_fragment: arena_write_heap_map not found: run with "
                 "LD_PRELOAD=libarena-malloc.so")
    lib.fopen.restype = ctypes.c_void_p
    lib.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.fclose.argtypes = [ctypes.c_void_p]
    lib.arena_write_heap_map.argtypes = [ctypes.c_void_p]
    lib.arena_print_stats.argtypes = [ctypes.c_void_p]

    rnd = random.Random(2014)
    cache = {}
    for i in range(n):
        cache["key-%d" % i] = {
            "id": i,
            "name": "item-%d-%s" % (i, "x" * (i % 40)),
            "pair": (i, i * 3),
            "tags": [i % 7, i % 11, i % 13],
        }
    print("built %d records" % len(cache), file=sys.stderr, flush=True)
    snapshot(lib, outdir, "peak")

    for k in [k for k in cache if rnd.random() < 0.9]:
        del cache[k]
    gc.collect()
    print("kept %d records after the eviction" % len(cache), file=sys.stderr, flush=True)
    snapshot(lib, outdir, "evicted")
    print("checksum", sum(r["id"] for r in cache.values()))


if __name__ == "__main__":
    main()
