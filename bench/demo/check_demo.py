#!/usr/bin/env python3
"""Checks arena-demo's behaviour; run by meson test (suite 'demo').

usage: check_demo.py MODE ARENA_DEMO [ARGS...]

modes:
  quick       --quick --csv: libarena mmap gives back >= 95% of what the burst
              added right after the free, libarena brk keeps most of it, and
              glibc's numbers are present
  fixed-size  the same with --size 64
  keep        --quick --keep 1: the kept records are reported for every run
              and libarena mmap holds less than libarena brk
  plot        --quick --plot: a PNG when gnuplot is installed, otherwise one
              line saying so, and the table either way
  map         --quick --map PREFIX: the four heap maps parse; the mmap run
              keeps few arenas after the free, the brk run all of them with
              the summary's live blocks in the topmost one; PREFIX.png
  heap        --quick --heap --csv: five runs; the heap runs kept the same
              records, libarena-mmap-heap gave back >= 95% after
              arena_heap_destroy()
  help        --help: usage on stdout, exit status 0
  usage       ARGS are bad input: usage on stderr, exit status 2, no run

Under AddressSanitizer or ThreadSanitizer (meson passes the b_sanitize
option in DEMO_SANITIZE), the resident-memory give-back checks cannot
hold: the sanitizer's shadow memory for the freed arenas stays resident.
quick, fixed-size and heap then make every other check and exit 77
(skipped) with the reason.

Standard library only.
"""
import csv
import os
import shutil
import subprocess
import sys
import tempfile

ALLOCATORS = ("libarena-mmap", "libarena-brk", "glibc-malloc")
failures = []
checks = []
skipped = []
SANITIZE = os.environ.get("DEMO_SANITIZE", "").split(",")
ASAN = "address" in SANITIZE or "thread" in SANITIZE
SHADOW = "ThreadSanitizer" if "thread" in SANITIZE else "AddressSanitizer"


def check(cond, what):
    checks.append(what)
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def run(exe, args, timeout=600):
    cmd = [exe] + args
    print("$ " + " ".join(repr(a) if a == "" or " " in a else a for a in cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    return p


def read_csv(path, allocators=ALLOCATORS):
    with open(path, newline="") as f:
        rows = {row["allocator"]: row for row in csv.DictReader(f)}
    check(set(rows) == set(allocators),
          "the CSV has one row per allocator: " + ", ".join(sorted(rows)))
    return rows


def returned(row):
    """Share (0..1) of what the burst added to RSS that the free gave back."""
    before = int(row["rss_before"])
    peak = int(row["rss_peak"])
    after = int(row["rss_after_free"])
    grown = peak - before
    if grown <= 0:
        return None
    return (peak - after) / grown


def check_runs(exe, extra, tmp):
    path = os.path.join(tmp, "demo.csv")
    p = run(exe, ["--quick", "--csv", path] + extra)
    check(p.returncode == 0, "exit status 0 (got %d)" % p.returncode)
    check("allocator" in p.stdout and "glibc malloc" in p.stdout,
          "the table is printed")
    rows = read_csv(path)
    for name in ALLOCATORS:
        row = rows.get(name, {})
        check(row.get("status") == "ok", name + ": the run succeeded")
        for field in ("rss_before", "rss_peak", "rss_after_free", "load_s",
                      "free_s", "objects"):
            check(row.get(field, "") != "", "%s: %s is present" % (name, field))
    if failures:
        return rows
    for name in ALLOCATORS:
        row = rows[name]
        check(int(row["rss_peak"]) > int(row["rss_before"]),
              "%s: the burst grew RSS (%s -> %s bytes)"
              % (name, row["rss_before"], row["rss_peak"]))
        check(int(row["objects"]) >= 3 * int(row["records"]),
              "%s: at least 3 objects per record" % name)
        check(float(row["load_s"]) > 0, "%s: load time is positive" % name)
    for name in ("libarena-mmap", "libarena-brk"):
        row = rows[name]
        check(row["calls_mmap"] != "" and int(row["arenas_reserved"]) > 0,
              "%s: backend stats are present (%s arenas reserved)"
              % (name, row["arenas_reserved"]))
    check(rows["glibc-malloc"]["calls_mmap"] == "",
          "glibc-malloc: no libarena stats")
    check(int(rows["libarena-brk"]["calls_brk"]) > 0,
          "libarena-brk: arenas came from brk (%s calls)"
          % rows["libarena-brk"]["calls_brk"])
    return rows


def mode_runs(exe, extra):
    with tempfile.TemporaryDirectory() as tmp:
        rows = check_runs(exe, extra, tmp)
        if failures:
            return
        mmap_back = returned(rows["libarena-mmap"])
        brk_back = returned(rows["libarena-brk"])
        what = ("libarena-mmap gave back >= 95%% of the burst right after the "
                "free (%.1f%%)" % (100 * (mmap_back or 0)))
        if ASAN:
            skipped.append(what + ": not checked under " + SHADOW + ", "
                           "whose shadow memory for the freed arenas stays resident")
            print("skip  " + skipped[-1])
        else:
            check(mmap_back is not None and mmap_back >= 0.95, what)
        check(brk_back is not None and brk_back < 0.5,
              "libarena-brk kept most of the burst (gave back %.1f%%)"
              % (100 * (brk_back or 0)))
        check(int(rows["libarena-mmap"]["arenas_released"]) > 0,
              "libarena-mmap released arenas (%s)"
              % rows["libarena-mmap"]["arenas_released"])


def mode_keep(exe):
    with tempfile.TemporaryDirectory() as tmp:
        rows = check_runs(exe, ["--keep", "1"], tmp)
        if failures:
            return
        kept = {name: int(rows[name]["records_kept"]) for name in ALLOCATORS}
        check(kept["glibc-malloc"] > 0, "some records were kept (%d)"
              % kept["glibc-malloc"])
        check(len(set(kept.values())) == 1,
              "the same records were kept in every run: %s" % kept)
        mmap_back = returned(rows["libarena-mmap"])
        brk_back = returned(rows["libarena-brk"])
        check(mmap_back is not None and brk_back is not None
              and mmap_back > brk_back,
              "libarena-mmap gave back more than libarena-brk "
              "(%.1f%% vs %.1f%%)" % (100 * (mmap_back or 0),
                                      100 * (brk_back or 0)))


def mode_plot(exe):
    with tempfile.TemporaryDirectory() as tmp:
        png = os.path.join(tmp, "demo.png")
        p = run(exe, ["--quick", "--plot", png])
        check(p.returncode == 0, "exit status 0 (got %d)" % p.returncode)
        check("glibc malloc" in p.stdout, "the table is printed")
        if shutil.which("gnuplot"):
            data = b""
            if os.path.exists(png):
                with open(png, "rb") as f:
                    data = f.read(8)
            check(data == b"\x89PNG\r\n\x1a\n", "a PNG was written")
        else:
            lines = [l for l in p.stderr.splitlines() if "gnuplot" in l]
            check(len(lines) == 1, "one line says gnuplot is missing")


def load_map(path):
    import json
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        check(False, "%s parses as JSON (%s)" % (os.path.basename(path), e))
        return None
    ok = (isinstance(m, dict) and isinstance(m.get("arenas"), list)
          and all(len(a["pools"]) == 64 for a in m["arenas"]))
    check(ok, "%s: a heap map with 64 pools per arena" % os.path.basename(path))
    return m if ok else None


def live(arena):
    return sum(p["live"] for p in arena["pools"] if p["state"] not in ("large",))


def mode_map(exe):
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "m")
        p = run(exe, ["--quick", "--map", prefix])
        check(p.returncode == 0, "exit status 0 (got %d)" % p.returncode)
        maps = {}
        for tag in ("mmap-peak", "mmap-free", "brk-peak", "brk-free"):
            maps[tag] = load_map("%s-%s.json" % (prefix, tag))
        if failures:
            return
        for tag, m in maps.items():
            check(m["backend"] == tag.split("-")[0], "%s: backend %s" % (tag, m["backend"]))
        peak = sum(live(a) for a in maps["mmap-peak"]["arenas"])
        check(peak >= 3 * 200000, "mmap-peak: the burst is live (%d blocks)" % peak)
        n_peak, n_free = len(maps["mmap-peak"]["arenas"]), len(maps["mmap-free"]["arenas"])
        check(n_free * 10 < n_peak, "mmap: few arenas left after the free (%d of %d)"
              % (n_free, n_peak))
        b_peak, b_free = maps["brk-peak"]["arenas"], maps["brk-free"]["arenas"]
        check(len(b_free) == len(b_peak), "brk: every arena kept after the free (%d of %d)"
              % (len(b_free), len(b_peak)))
        after = [live(a) for a in b_free]
        check(sum(after) == 6, "brk-free: only the summary's 6 blocks live (%d)" % sum(after))
        check(after and after[-1] > 0, "brk-free: the topmost arena holds live blocks: the "
              "summary pins the break")
        dirty = sum(1 for a in b_free for p in a["pools"] if p["state"] == "free-dirty")
        check(dirty > len(b_free) * 32, "brk-free: the freed pools stay dirty (%d)" % dirty)
        if shutil.which("gnuplot"):
            data = b""
            if os.path.exists(prefix + ".png"):
                with open(prefix + ".png", "rb") as f:
                    data = f.read()
            check(data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000,
                  "the four maps drawn in PREFIX.png (%d bytes)" % len(data))
        else:
            check("not drawn" in p.stdout, "one line says the maps were not drawn")


def mode_heap(exe):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.csv")
        p = run(exe, ["--quick", "--heap", "--keep", "1", "--csv", path])
        check(p.returncode == 0, "exit status 0 (got %d)" % p.returncode)
        names = ALLOCATORS + ("libarena-mmap-heap", "libarena-brk-heap")
        rows = read_csv(path, names)
        if failures:
            return
        for name in names:
            check(rows[name]["status"] == "ok", name + ": the run succeeded")
        kept = {name: rows[name]["records_kept"] for name in names}
        check(len(set(kept.values())) == 1, "the same records were kept in every run: %s" % kept)
        check("arena_heap_destroy() freed it" in p.stdout, "a sentence for the heap runs")
        p = run(exe, ["--quick", "--heap", "--csv", path])
        rows = read_csv(path, names)
        if failures:
            return
        back = returned(rows["libarena-mmap-heap"])
        what = ("libarena-mmap-heap gave back >= 95%% after arena_heap_destroy() (%.1f%%)"
                % (100 * (back or 0)))
        if ASAN:
            skipped.append(what + ": not checked under " + SHADOW + ", whose shadow "
                           "memory for the freed arenas stays resident")
            print("skip  " + skipped[-1])
        else:
            check(back is not None and back >= 0.95, what)


def mode_help(exe):
    p = run(exe, ["--help"], timeout=30)
    check(p.returncode == 0, "exit status 0 (got %d)" % p.returncode)
    check(p.stdout.startswith("usage: arena-demo"), "usage on stdout")
    for opt in ("--records", "--size", "--keep", "--quick", "--csv", "--plot", "--map",
                "--heap"):
        check(opt in p.stdout, "the help mentions " + opt)


def mode_usage(exe, args):
    p = run(exe, args, timeout=30)
    check(p.returncode == 2, "exit status 2 (got %d)" % p.returncode)
    check("usage: arena-demo" in p.stderr, "usage on stderr")
    check(p.stdout == "", "nothing on stdout: no run started")


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    mode, exe, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "quick":
        mode_runs(exe, [])
    elif mode == "fixed-size":
        mode_runs(exe, ["--size", "64"])
    elif mode == "keep":
        mode_keep(exe)
    elif mode == "plot":
        mode_plot(exe)
    elif mode == "map":
        mode_map(exe)
    elif mode == "heap":
        mode_heap(exe)
    elif mode == "help":
        mode_help(exe)
    elif mode == "usage":
        mode_usage(exe, args)
    else:
        sys.stderr.write("check_demo.py: unknown mode %r\n" % mode)
        return 2
    print("check_demo %s: %d checks, %d failing, %d skipped"
          % (mode, len(checks), len(failures), len(skipped)))
    if failures:
        return 1
    if skipped:
        print("SKIP: " + "; ".join(skipped))
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
