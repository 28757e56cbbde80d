#!/usr/bin/env python3
"""A real program at libarena's hard limit: python3 gets NULL and raises
MemoryError instead of being killed.

usage: memory_limit.py --lib LIBARENA_MALLOC_SO [--limit 200M]

Runs SCRIPT below with the distribution's python3 under
LD_PRELOAD=libarena-malloc.so, ARENA_LIMIT=<limit> and PYTHONMALLOC=malloc
(every Python object from malloc, so from libarena).  The script fills
memory with 1 MiB bytearrays until MemoryError, frees them, allocates
half as many again, then does the same with small lists.  Passes when
python3 exits 0 with nothing on stderr, libarena-malloc was loaded, each
step printed its line, and the MemoryError came at the limit: the
bytearrays held when it came are within 32 MiB below the limit (the
interpreter's own memory counts too).  RLIMIT_AS caps the run at 4 GiB,
so a limit that does not hold fails the test instead of filling the
machine.  Exits 77 (skipped) when python3 is not installed.
"""
import argparse
import os
import re
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402

# What python3 runs: allocate until MemoryError, catch it, free, allocate
# again; first 1 MiB bytearrays (large blocks), then small lists (libarena's
# pools).  One line a step, "done" at the end.
SCRIPT = r"""
import ctypes

libc = ctypes.CDLL(None)
print("libarena-malloc loaded:", "yes" if hasattr(libc, "arena_set_limit") else "no", flush=True)


def fill(make):
    # make() until MemoryError; returns how many were made
    held = []
    try:
        while True:
            held.append(make())
    except MemoryError:
        n = len(held)
    del held
    return n


big = fill(lambda: bytearray(1 << 20))
print("large: MemoryError after %d MiB of bytearrays" % big, flush=True)
again = [bytearray(1 << 20) for _ in range(big // 2)]
print("large: freed, %d MiB allocated again" % len(again), flush=True)
del again

small = fill(lambda: [0, 0])
print("small: MemoryError after %d lists" % small, flush=True)
again = [[0, 0] for _ in range(small // 2)]
print("small: freed, %d lists allocated again" % len(again), flush=True)
del again
print("done")
"""

EXPECT = [
    r"libarena-malloc loaded: yes",
    r"large: MemoryError after (\d+) MiB of bytearrays",
    r"large: freed, (\d+) MiB allocated again",
    r"small: MemoryError after (\d+) lists",
    r"small: freed, (\d+) lists allocated again",
    r"done",
]


def mib(text):
    m = re.fullmatch(r"(\d+)([KMG]?)", text)
    if not m:
        raise SystemExit("bad --limit %s" % text)
    return int(m.group(1)) * {"": 1.0 / (1 << 20), "K": 1.0 / 1024, "M": 1, "G": 1024}[m.group(2)]


def cap_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True, help="path of libarena-malloc.so")
    ap.add_argument("--limit", default="200M", help="ARENA_LIMIT (default 200M)")
    args = ap.parse_args()
    python = workloads.find_python()
    if not python:
        print("SKIP: python3 not installed")
        return 77
    if not os.path.exists(args.lib):
        print("FAIL: %s does not exist" % args.lib)
        return 1
    env = workloads.base_env(args.lib)
    env["ARENA_LIMIT"] = args.limit
    env["PYTHONMALLOC"] = "malloc"
    cmd = [python, "-c", SCRIPT]
    print("step 1 of 1: ARENA_LIMIT=%s PYTHONMALLOC=malloc LD_PRELOAD=%s %s -c SCRIPT"
          % (args.limit, args.lib, python), flush=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                       preexec_fn=cap_address_space)
    sys.stdout.write(p.stdout)
    problems = []
    if p.returncode != 0:
        problems.append("python3 exited with status %d" % p.returncode)
    if p.stderr.strip():
        problems.append("python3 wrote to stderr:\n" + p.stderr)
    lines = p.stdout.splitlines()
    nums = []
    for i, pat in enumerate(EXPECT):
        if i >= len(lines) or not re.fullmatch(pat, lines[i]):
            problems.append("line %d: expected /%s/, got %r"
                            % (i + 1, pat, lines[i] if i < len(lines) else "(nothing)"))
            break
        m = re.fullmatch(pat, lines[i])
        nums += [int(g) for g in m.groups()]
    if not problems:
        big, big_again, small, small_again = nums
        limit = mib(args.limit)
        if not limit - 32 <= big <= limit:
            problems.append("MemoryError after %d MiB: not within 32 MiB below the %s limit"
                            % (big, args.limit))
        if big_again != big // 2 or small_again != small // 2 or small == 0:
            problems.append("the second rounds are not half of the first")
    if problems:
        for pr in problems:
            print("FAIL: " + pr)
        return 1
    print("PASS: python3 raised MemoryError at ARENA_LIMIT=%s (after %d MiB of bytearrays, "
          "and after %d small lists), recovered and exited 0" % (args.limit, nums[0], nums[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
