#!/usr/bin/env python3
"""Real programs under libarena-malloc, compared with glibc runs.

usage: real_programs.py --lib LIBARENA_MALLOC_SO [--shim GLIBC_SHIM_SO] PROGRAM
PROGRAM: python3 | sqlite3 | redis (workloads.py describes each).

Runs the program's workload twice: under glibc malloc (for a program
linked with another allocator, such as Debian's jemalloc-linked
redis-server, with the glibc shim preloaded), then with
LD_PRELOAD=libarena-malloc.so.  Passes when both runs succeed and print
identical output.  Exits 77 (skipped, for meson test) when the program is
not installed.
"""
import argparse
import difflib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True, help="path of libarena-malloc.so")
    ap.add_argument("--shim", help="path of the glibc shim (glibc_shim.c)")
    ap.add_argument("program", choices=["python3", "sqlite3", "redis"])
    args = ap.parse_args()

    w = workloads.WORKLOADS[args.program]("test")
    missing = w.missing()
    if missing:
        print("SKIP: %s not installed (scripts/deps.sh test installs it)" % ", ".join(missing))
        return 77
    if not os.path.exists(args.lib):
        print("FAIL: %s does not exist" % args.lib)
        return 1
    glibc = None
    if w.needs_shim:
        if not args.shim or not os.path.exists(args.shim):
            print("FAIL: %s needs the glibc shim (--shim)" % args.program)
            return 1
        glibc = args.shim

    runs = [("glibc", glibc), ("libarena-malloc", args.lib)]
    results = {}
    for i, (label, preload) in enumerate(runs, 1):
        print("step %d of %d: %s under %s" % (i, len(runs), args.program, label), flush=True)
        with tempfile.TemporaryDirectory(prefix="arena-real-") as tmp:
            try:
                results[label] = w.run(preload, tmp)
            except workloads.WorkloadError as e:
                print("FAIL: %s under %s: %s" % (args.program, label, e))
                return 1
        r = results[label]
        print("  %.2f s, %d lines of output" % (r.wall, len(r.output.splitlines())), flush=True)

    ref, got = results["glibc"].output, results["libarena-malloc"].output
    if ref != got:
        print("FAIL: output differs from the glibc run:")
        sys.stdout.writelines(difflib.unified_diff(ref.splitlines(True), got.splitlines(True),
                                                   "glibc", "libarena-malloc", n=2))
        return 1
    if not ref.strip():
        print("FAIL: the workload printed nothing")
        return 1
    print("PASS: %s: output identical to the glibc run (%d lines)"
          % (args.program, len(ref.splitlines())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
