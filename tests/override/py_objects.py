"""Real-program workload for libarena-malloc: CPython building and dropping
a few hundred thousand small dicts and lists, run with PYTHONMALLOC=malloc
so that every object comes from malloc.

usage: python3 py_objects.py [N [ROUNDS]] [--probe]
Builds N dicts (default 200000) and drops them, ROUNDS times (default 3),
and prints a checksum of what it built.  With --probe it then prints the
process's VmHWM and VmRSS (kB, from /proc/self/status) after the last free
phase to stderr, for the bench.
"""
import gc
import sys


def build(n, r):
    rows = []
    for i in range(n):
        rows.append({
            "id": i,
            "name": "item-%d-%d" % (r, i),
            "tags": [i % 7, i % 11, r],
            "pair": (i, i * 3),
        })
    by_bucket = {}
    for row in rows:
        by_bucket.setdefault(row["id"] % 997, []).append(row["tags"])
    return rows, by_bucket


def digest(rows, by_bucket, check):
    for key in sorted(by_bucket):
        lists = by_bucket[key]
        check = (check * 31 + key * len(lists) + sum(t[0] + t[1] for t in lists)) % (1 << 61)
    for row in rows:
        check = (check * 7 + len(row["name"]) + row["pair"][1]) % (1 << 61)
    return check


def probe():
    out = []
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out.append(line.strip())
    print(" ".join(out), file=sys.stderr)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 200000
    rounds = int(args[1]) if len(args) > 1 else 3
    check = 0
    kept = []
    for r in range(rounds):
        rows, by_bucket = build(n, r)
        check = digest(rows, by_bucket, check)
        kept.append(len(rows))
        del rows, by_bucket        # the free phase of this round
        gc.collect()
    print("rows", sum(kept), "checksum", check)
    sys.stdout.flush()
    if "--probe" in sys.argv:
        probe()


main()
