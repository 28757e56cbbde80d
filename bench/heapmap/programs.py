#!/usr/bin/env python3
"""python3 and redis-server under libarena-malloc.so: their fragmentation
reports and heap maps, for docs/observability.md.

usage: bench/heapmap/programs.py [--build DIR] [--out DIR] [--records N]
                                 [--keys N]

python3   py_fragment.py with PYTHONMALLOC=malloc: N records (default
          300,000) built, then a random 90% dropped; the map and the
          report are taken through ctypes at the peak and after the drop.
redis     redis-server (127.0.0.1, a free port) loaded by redis-benchmark
          (SET of 100-byte values over a keyspace of N keys, default
          200,000), run twice: shut down as loaded, and shut down after a
          random 75% of the keys were deleted.  heapmap-atexit.so writes
          the map at exit and ARENA_STATS=1 prints the report at exit.

Writes into --out (default BUILD/heapmap-programs): python3-*.json and
*.txt, redis-*.json and *.txt, and python3.png and redis.png drawn with
arena-heapmap.  Standard library only; the redis part reuses
tests/override/workloads.py to start the server.
"""
import argparse
import os
import random
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "override"))
import workloads  # noqa: E402


def say(msg):
    print("programs: " + msg, flush=True)


def report_part(text):
    """The libarena report out of a program's stderr."""
    i = text.find("libarena stats")
    return text[i:] if i >= 0 else ""


def run_python(build, out, records):
    lib = os.path.join(build, "src", "override", "libarena-malloc.so")
    env = workloads.base_env(lib)
    env["PYTHONMALLOC"] = "malloc"
    env["ARENA_STATS"] = "1"
    say("python3: building %d records, then dropping 90%% of them (a few seconds) ..." % records)
    t0 = time.monotonic()
    p = subprocess.run([workloads.find_python(), os.path.join(HERE, "py_fragment.py"), out,
                        str(records)], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("programs: python3 failed (%d):\n%s" % (p.returncode, p.stderr))
    with open(os.path.join(out, "python3-exit.txt"), "w") as f:
        f.write(report_part(p.stderr))
    say("python3: done in %.1f s; %s" % (time.monotonic() - t0,
                                          " / ".join(p.stderr.splitlines()[:2])))


def resp(*words):
    out = ["*%d\r\n" % len(words)]
    for w in words:
        out.append("$%d\r\n%s\r\n" % (len(w.encode()), w))
    return "".join(out)


def run_redis(build, out, keys, delete):
    lib = os.path.join(build, "src", "override", "libarena-malloc.so")
    helper = os.path.join(build, "bench", "heapmap", "heapmap-atexit.so")
    name = "redis-deleted" if delete else "redis-loaded"
    env = workloads.base_env(lib)
    env["LD_PRELOAD"] = "%s %s" % (os.path.abspath(lib), os.path.abspath(helper))
    env["ARENA_STATS"] = "1"
    env["ARENA_HEAPMAP_AT_EXIT"] = os.path.abspath(os.path.join(out, name + ".json"))
    env["ARENA_METRICS_AT_EXIT"] = os.path.abspath(os.path.join(out, name + "-metrics.txt"))
    r = workloads.Redis("bench")
    workdir = os.path.join(out, "redis-work")
    os.makedirs(workdir, exist_ok=True)
    proc, port, log = r.start(env, workdir)
    drain = threading.Thread(target=lambda: log.extend(
        l.decode(errors="replace") for l in proc.stdout), daemon=True)
    drain.start()
    clean = workloads.base_env(None)
    try:
        n = keys * 3 // 2
        say("%s: redis-benchmark: %d SETs of 100-byte values over %d keys ..." % (name, n, keys))
        b = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(n),
                            "-r", str(keys), "-d", "100", "-q", "-t", "set"],
                           env=clean, capture_output=True, text=True, timeout=600)
        if b.returncode != 0:
            sys.exit("programs: redis-benchmark failed:\n" + b.stdout + b.stderr)
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
        size = subprocess.run(cli + ["dbsize"], env=clean, capture_output=True, text=True)
        say("%s: %s keys loaded" % (name, size.stdout.strip()))
        if delete:
            rnd = random.Random(7)
            dels = "".join(resp("DEL", "key:%012d" % i) for i in range(keys)
                           if rnd.random() < 0.75)
            say("%s: deleting a random 75%% of the keyspace (redis-cli --pipe) ..." % name)
            d = subprocess.run(cli + ["--pipe"], input=dels, env=clean, capture_output=True,
                               text=True, timeout=600)
            if d.returncode != 0:
                sys.exit("programs: redis-cli --pipe failed:\n" + d.stdout + d.stderr)
            size = subprocess.run(cli + ["dbsize"], env=clean, capture_output=True, text=True)
            say("%s: %s keys left" % (name, size.stdout.strip()))
        subprocess.run(cli + ["shutdown", "nosave"], env=clean, capture_output=True, text=True,
                       timeout=60)
        status = proc.wait(timeout=60)
        drain.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(log)
    if status != 0:
        sys.exit("programs: redis-server exited with %d:\n%s" % (status, text))
    with open(os.path.join(out, name + ".txt"), "w") as f:
        f.write(report_part(text))
    say("%s: report and map written (%s.txt, %s.json)" % (name, name, name))


def draw(build, out, png, title, maps):
    tool = os.path.join(build, "bench", "heapmap", "arena-heapmap")
    cmd = [tool, "-o", os.path.join(out, png), "-t", title]
    for caption, f in maps:
        cmd += ["-c", caption, os.path.join(out, f)]
    p = subprocess.run(cmd)
    if p.returncode != 0:
        sys.exit("programs: arena-heapmap failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out")
    ap.add_argument("--records", type=int, default=300000)
    ap.add_argument("--keys", type=int, default=200000)
    args = ap.parse_args()
    out = args.out or os.path.join(args.build, "heapmap-programs")
    os.makedirs(out, exist_ok=True)
    missing = workloads.Redis().missing()
    run_python(args.build, out, args.records)
    draw(args.build, out, "python3.png",
         "python3 (PYTHONMALLOC=malloc) under libarena-malloc.so",
         [("%d records built (the peak)" % args.records, "python3-peak.json"),
          ("then a random 90% dropped", "python3-evicted.json")])
    if missing:
        say("redis: skipped, not installed: " + ", ".join(missing))
        return 0
    run_redis(args.build, out, args.keys, False)
    run_redis(args.build, out, args.keys, True)
    draw(args.build, out, "redis.png", "redis-server under libarena-malloc.so, at shutdown",
         [("loaded: SETs over %d keys" % args.keys, "redis-loaded.json"),
          ("then 75% of the keyspace deleted", "redis-deleted.json")])
    say("done: results in " + out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
