#!/usr/bin/env python3
"""Checks what libarena tells about a known heap; run by meson test.

usage: check_observe.py OBSERVE_DUMP ARENA_HEAPMAP DOC

OBSERVE_DUMP (dump.c) builds a known heap and writes its heap map, metrics,
stats, class stats and report into a temporary directory.  This script
checks, with Python's own parsers:

  map       the JSON parses; its format (64 pools per arena, arenas in
            address order and 256 KiB aligned, known states, block sizes
            of classes, live within a pool's capacity); its live blocks
            add up, class by class, to arena_get_class_stats and to the
            known allocation pattern; its pool states add up to
            arena_get_stats' pool counts
  stats     the identities of arena.h and the known pattern's numbers
  metrics   the Prometheus text format (HELP and TYPE before the samples,
            libarena_* names, labels, counters named *_total), every value
            equal to arena_get_stats / arena_get_class_stats, and
            `promtool check metrics` (skipped with the reason when promtool
            is not installed)
  report    the fragmentation table has a row for each class in use, with
            the live and resident bytes of the class stats
  picture   arena-heapmap draws the map: a PNG (signature, IHDR size), not
            trivially small (skipped when gnuplot is not installed)
  doc       DOC (docs/observability.md) names every metric

Exit status: 0, 1 when a check failed, 77 when every check passed but one
was skipped.  Standard library only.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

failures, skipped, count = [], [], [0]
STATES = {"free-dirty", "free-purged", "used", "current", "full", "orphan", "large"}
IN_USE = {"used", "current", "full", "orphan"}
# The known pattern of dump.c: live blocks per block size.
KNOWN_LIVE = {48: 2000, 512: 500, 16: 10, 304: 700, 64: 200, 112: 100}


def check(cond, what):
    count[0] += 1
    if not cond:
        failures.append(what)
        print("FAIL  " + what)
    return cond


def skip(what):
    skipped.append(what)
    print("skip  " + what)


def check_stats(st, cls):
    check(st["arenas_live"] == st["arenas_reserved"] - st["arenas_released"],
          "stats: arenas_live = reserved - released")
    check(st["bytes_mapped"] == st["arenas_live"] * 256 * 1024, "stats: bytes_mapped")
    check(st["pools_total"] == st["arenas_live"] * 64, "stats: pools_total = arenas * 64")
    check(st["pools_total"] == st["pools_used"] + st["pools_full"] + st["pools_empty"]
          + st["pools_large"] + st["pools_free"], "stats: pools_total = the sum of the states")
    check(st["pools_free"] == st["pools_free_dirty"] + st["pools_free_purged"],
          "stats: pools_free = dirty + purged")
    check(st["blocks_live"] == sum(st["blocks_live_class"]), "stats: blocks_live = sum of classes")
    check(st["bytes_live"] == sum(n * (c + 1) * 16 for c, n in enumerate(st["blocks_live_class"])),
          "stats: bytes_live = sum of classes * size")
    for c, k in enumerate(cls):
        bs = (c + 1) * 16
        check(k["block_size"] == bs, "class %d: block_size %d" % (c, k["block_size"]))
        check(k["blocks_live"] == st["blocks_live_class"][c],
              "class %d: blocks_live matches arena_get_stats" % bs)
        check(k["bytes_live"] == k["blocks_live"] * bs, "class %d: bytes_live" % bs)
        pools = k["pools_full"] + k["pools_partial"]
        check(k["bytes_resident"] == pools * 4096, "class %d: bytes_resident = pools * 4 KiB" % bs)
        check(k["blocks_live"] + k["blocks_free"] + k["blocks_cached"] == pools * (4096 // bs),
              "class %d: live + free + cached = pools * blocks per pool" % bs)
        check(sum(k["occupancy"]) == pools, "class %d: occupancy buckets add up to pools" % bs)
    check(sum(k["blocks_cached"] for k in cls) == st["blocks_cached"],
          "blocks_cached: classes add up to arena_get_stats")
    check(sum(k["pools_full"] for k in cls) == st["pools_full"], "pools_full: classes add up")
    check(sum(k["pools_partial"] for k in cls) == st["pools_used"] + st["pools_empty"],
          "pools_partial: classes add up to pools_used + pools_empty")
    for bs, n in sorted(KNOWN_LIVE.items()):
        check(cls[bs // 16 - 1]["blocks_live"] == n, "known pattern: %d live blocks of %d bytes "
              "(got %d)" % (n, bs, cls[bs // 16 - 1]["blocks_live"]))
    check(st["blocks_live"] == sum(KNOWN_LIVE.values()),
          "known pattern: %d live blocks in all (got %d)" % (sum(KNOWN_LIVE.values()),
                                                              st["blocks_live"]))
    check(st["heap_large_live"] == 2, "known pattern: 2 large blocks of the user heap")
    check(st["heaps_user"] == 1, "known pattern: 1 user heap")
    check(st["large_live"] >= 1, "known pattern: the 4096-byte block of the system allocator")
    check(st["heaps_abandoned"] >= 1, "known pattern: a thread ended")


def check_map(m, st, cls):
    if not check(isinstance(m, dict) and set(m) == {"backend", "arenas"},
                 "map: an object with backend and arenas (got %s)" % sorted(m)):
        return
    check(m["backend"] == st["backend"], "map: backend %r" % m["backend"])
    arenas = m["arenas"]
    check(len(arenas) == st["arenas_live"], "map: %d arenas, arenas_live %d"
          % (len(arenas), st["arenas_live"]))
    bases = []
    live = {}
    pools_of = {}
    full_of = {}
    orphan_of = {}
    states = {s: 0 for s in STATES}
    bad = []
    orphan_live = 0
    large_blocks = 0
    for a in arenas:
        if set(a) != {"base", "pools"} or len(a["pools"]) != 64:
            bad.append("arena keys %s, %d pools" % (sorted(a), len(a.get("pools", []))))
            continue
        base = int(a["base"], 16)
        bases.append(base)
        tail = 0            # pools left in the current large block's run
        for p in a["pools"]:
            if set(p) != {"state", "block_size", "live"} or p["state"] not in STATES:
                bad.append("pool %s" % p)
                continue
            s, bs, n = p["state"], p["block_size"], p["live"]
            states[s] += 1
            if s in ("free-dirty", "free-purged"):
                if bs != 0 or n != 0:
                    bad.append("free pool %s" % p)
            elif s == "large":
                # a run: the first pool has the block's bytes (whole pages)
                # and live 1, the rest of the run block_size 0 and live 0
                if tail > 0:
                    if bs != 0 or n != 0:
                        bad.append("large run's tail %s" % p)
                    tail -= 1
                elif bs % 4096 or bs == 0 or n != 1:
                    bad.append("large block %s" % p)
                else:
                    tail = bs // 4096 - 1
                    large_blocks += 1
            else:
                if bs < 16 or bs > 512 or bs % 16 or n > 4096 // bs:
                    bad.append("pool in use %s" % p)
                    continue
                live[bs] = live.get(bs, 0) + n
                pools_of[bs] = pools_of.get(bs, 0) + 1
                full_of[bs] = full_of.get(bs, 0) + (s == "full")
                orphan_of[bs] = orphan_of.get(bs, 0) + (s == "orphan")
                if s == "orphan":
                    orphan_live += n
            if s != "large" and tail > 0:
                bad.append("a large block's run cut short")
                tail = 0
        if tail > 0:
            bad.append("a large block's run past its arena")
    check(not bad, "map: every arena and pool well formed (%s)" % "; ".join(bad[:3]))
    check(bases == sorted(bases) and len(set(bases)) == len(bases), "map: arenas in address order")
    check(all(b % (256 * 1024) == 0 for b in bases), "map: arena bases 256 KiB aligned")
    for c, k in enumerate(cls):
        bs = (c + 1) * 16
        check(live.get(bs, 0) == k["blocks_live"], "map: live blocks of %d bytes add up to the "
              "class stats (%d, %d)" % (bs, live.get(bs, 0), k["blocks_live"]))
        check(pools_of.get(bs, 0) == k["pools_full"] + k["pools_partial"],
              "map: pools of %d bytes = pools_full + pools_partial" % bs)
        # an orphan pool may be full: the map names it orphan
        check(full_of.get(bs, 0) <= k["pools_full"] <= full_of.get(bs, 0) + orphan_of.get(bs, 0),
              "map: full pools of %d bytes (%d full, %d orphan; pools_full %d)"
              % (bs, full_of.get(bs, 0), orphan_of.get(bs, 0), k["pools_full"]))
    check(sum(live.values()) == st["blocks_live"], "map: live blocks add up to blocks_live")
    check(states["free-dirty"] == st["pools_free_dirty"], "map: free-dirty pools = pools_free_dirty")
    check(states["free-purged"] == st["pools_free_purged"],
          "map: free-purged pools = pools_free_purged")
    check(states["large"] == st["pools_large"], "map: large pools = pools_large")
    check(sum(states[s] for s in IN_USE) == st["pools_used"] + st["pools_full"] + st["pools_empty"],
          "map: pools in use = pools_used + pools_full + pools_empty")
    check(states["orphan"] >= 4 and orphan_live == 200 and {b for b, v in orphan_of.items() if v} == {64},
          "map: the ended thread's 200 blocks of 64 bytes are in orphan pools (%d pools, "
          "%d live)" % (states["orphan"], orphan_live))
    check(large_blocks == st["heap_large_live"], "map: %d large blocks, heap_large_live %d"
          % (large_blocks, st["heap_large_live"]))


SAMPLE = re.compile(r'^(libarena_[a-z_]+)\{((?:[a-z_]+="[^"\\]*",?)*)\} (\d+)$')


def parse_metrics(text):
    """Families {name: (type, help)} and samples [(name, labels, value)]."""
    families, samples, bad = {}, [], []
    helps = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            if name in families:
                bad.append("TYPE twice: " + name)
            families[name] = (typ, helps.get(name))
        else:
            mo = SAMPLE.match(line)
            if not mo:
                bad.append("not a sample: %r" % line)
                continue
            name = mo.group(1)
            labels = dict(re.findall(r'([a-z_]+)="([^"]*)"', mo.group(2)))
            if name not in families:
                bad.append("a sample before its TYPE: " + name)
            samples.append((name, labels, int(mo.group(3))))
    return families, samples, bad


def check_metrics(text, st, cls, doc_text):
    families, samples, bad = parse_metrics(text)
    check(not bad, "metrics: every line is HELP, TYPE or a sample (%s)" % "; ".join(bad[:3]))
    for name, (typ, doc) in sorted(families.items()):
        check(typ in ("counter", "gauge"), "metrics: %s is a counter or a gauge" % name)
        check(bool(doc), "metrics: %s has HELP text" % name)
        check((typ == "counter") == name.endswith("_total"),
              "metrics: %s: counters, and only they, end in _total" % name)
    seen = set()
    for name, labels, _ in samples:
        key = (name, tuple(sorted(labels.items())))
        check(key not in seen, "metrics: %s %s once" % key)
        seen.add(key)
        check(labels.get("backend") == st["backend"], "metrics: %s has backend=%s"
              % (name, st["backend"]))
    plain = {
        "arenas_reserved_total": "arenas_reserved", "arenas_released_total": "arenas_released",
        "arenas_live": "arenas_live", "bytes_mapped": "bytes_mapped",
        "bytes_mapped_peak": "bytes_mapped_peak", "bytes_resident": "bytes_resident",
        "bytes_live": "bytes_live", "bytes_metadata": "bytes_metadata",
        "large_blocks_live": "large_live", "large_bytes_live": "large_bytes",
        "blocks_cached": "blocks_cached", "pools_purged_total": "pools_purged",
        "bytes_purged_total": "bytes_purged", "heaps_live": "heaps_live",
        "heaps_user": "heaps_user", "locks_global_total": "locks_global",
        "limit_counted_bytes": "limit_counted", "limit_refused_total": "limit_refused",
    }
    by_label = {
        ("pools", "state"): {"used": "pools_used", "full": "pools_full", "empty": "pools_empty",
                             "large": "pools_large", "free_dirty": "pools_free_dirty",
                             "free_purged": "pools_free_purged"},
        ("syscalls_total", "call"): {"mmap": "calls_mmap", "munmap": "calls_munmap",
                                     "brk": "calls_brk", "madvise": "calls_madvise"},
    }
    per_class = {"class_blocks_live": "blocks_live", "class_bytes_live": "bytes_live",
                 "class_bytes_resident": "bytes_resident", "class_blocks_free": "blocks_free",
                 "class_blocks_cached": "blocks_cached"}
    matched = 0
    for name, labels, value in samples:
        short = name[len("libarena_"):]
        want = None
        if short in plain and set(labels) == {"backend"}:
            want = st[plain[short]]
        elif short in per_class and set(labels) == {"backend", "class"}:
            want = cls[int(labels["class"]) // 16 - 1][per_class[short]]
        else:
            for (fam, lab), fields in by_label.items():
                if short == fam and set(labels) == {"backend", lab} and labels[lab] in fields:
                    want = st[fields[labels[lab]]]
        if check(want is not None, "metrics: %s %s is a metric the test knows" % (name, labels)):
            matched += check(value == want, "metrics: %s %s = %d, the stats say %s"
                             % (name, labels, value, want))
    check(matched == len(plain) + 10 + 5 * 32, "metrics: %d samples compared" % matched)
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True)
        check(p.returncode == 0, "promtool check metrics passes (%s)"
              % (p.stdout + p.stderr).strip())
    else:
        skip("promtool check metrics: promtool is not installed (Debian package prometheus)")
    if doc_text is None:
        skip("the metrics documentation: docs/observability.md is not there")
    else:
        for name in sorted(families):
            check(name in doc_text, "docs/observability.md names %s" % name)


def human(b):
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    v, u = float(b), 0
    while v >= 1024 and u < 4:
        v /= 1024
        u += 1
    return "%d B" % b if u == 0 else "%.1f %s" % (v, units[u])


def check_report(text, cls):
    check("fragmentation" in text, "report: has the fragmentation table")
    part = text[text.find("fragmentation"):]
    rows = {}
    for line in part.splitlines()[2:]:
        f = line.split()
        if f and f[0].isdigit():
            rows[int(f[0])] = line
    for c, k in enumerate(cls):
        bs = (c + 1) * 16
        in_use = k["pools_full"] + k["pools_partial"] > 0
        check((bs in rows) == in_use, "report: a row for %d-byte blocks iff pools hold them" % bs)
        if in_use and bs in rows:
            cells = re.split(r"\s{2,}", rows[bs].strip())
            check(cells[1] == human(k["bytes_live"]) and cells[2] == human(k["bytes_resident"]),
                  "report: %d-byte row shows live %s, resident %s (%s)"
                  % (bs, human(k["bytes_live"]), human(k["bytes_resident"]), rows[bs].strip()))


def check_picture(heapmap, mapfile, tmp):
    if not shutil.which("gnuplot"):
        skip("the picture: gnuplot is not installed")
        return
    png = os.path.join(tmp, "map.png")
    p = subprocess.run([heapmap, "-o", png, "-c", "observe-dump", mapfile], capture_output=True,
                       text=True)
    sys.stdout.write(p.stdout + p.stderr)
    check(p.returncode == 0, "arena-heapmap exits 0")
    data = open(png, "rb").read() if os.path.exists(png) else b""
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "arena-heapmap wrote a PNG")
    if len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        check(w >= 600 and h >= 200, "the PNG is %dx%d pixels" % (w, h))
    check(len(data) > 5000, "the PNG is not trivially small (%d bytes)" % len(data))


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    dump, heapmap, doc = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="observe-") as tmp:
        p = subprocess.run([dump, tmp], capture_output=True, text=True)
        sys.stdout.write(p.stdout + p.stderr)
        if not check(p.returncode == 0, "observe-dump exits 0"):
            return 1
        read = lambda n: open(os.path.join(tmp, n)).read()
        st = json.loads(read("stats.json"))
        cls = json.loads(read("classes.json"))
        check_stats(st, cls)
        try:
            m = json.loads(read("map.json"))
        except ValueError as e:
            check(False, "map: the JSON parses (%s)" % e)
            m = None
        if m is not None:
            check_map(m, st, cls)
        doc_text = open(doc).read() if os.path.exists(doc) else None
        check_metrics(read("metrics.txt"), st, cls, doc_text)
        check_report(read("report.txt"), cls)
        check_picture(heapmap, os.path.join(tmp, "map.json"), tmp)
    print("check_observe: %d checks, %d failing, %d skipped"
          % (count[0], len(failures), len(skipped)))
    if failures:
        return 1
    if skipped:
        print("SKIP: " + "; ".join(skipped))
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
