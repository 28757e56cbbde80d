#!/usr/bin/env python3
"""The libarena benchmark suite's planner, smoke test and report writer.

    report.py plan MODE                 cells to run: "SCENARIO VARIANT ARGS..."
                                        (MODE: default, quick or tiny); an
                                        argument env:NAME=VALUE is not passed
                                        to the program but set in libarena's
                                        environment (the peers run without it)
    report.py smoke BINARY SCENARIO     run every cell of SCENARIO once with
                                        tiny sizes; check the output parses
    report.py strace FILE SCEN VAR      count the backend system calls in an
                                        `strace -f -o FILE` trace (run.sh)
    report.py report [options]          results.txt -> CSV, charts, markdown

bench/run.sh drives it; bench/suite/meson.build runs the smoke tests.
Only the Python standard library is used.
"""

import argparse
import csv
import math
import os
import re
import statistics
import subprocess
import sys

ALLOCATORS = ["libarena", "glibc", "jemalloc", "tcmalloc", "mimalloc"]
PEERS = ALLOCATORS[1:]

# ---------------------------------------------------------------------------
# The plan: every cell (scenario, variant) with its arguments per mode, and
# the metric that gives its time per operation.
# ---------------------------------------------------------------------------

CELLS = [
    # scenario, variant, headline metric, {mode: arguments}
    ("fixed", "16", "ns_per_pair",
     {"default": "size=16 n=30000000", "quick": "size=16 n=1000000", "tiny": "size=16 n=2000"}),
    ("fixed", "64", "ns_per_pair",
     {"default": "size=64 n=30000000", "quick": "size=64 n=1000000", "tiny": "size=64 n=2000"}),
    ("fixed", "256", "ns_per_pair",
     {"default": "size=256 n=30000000", "quick": "size=256 n=1000000", "tiny": "size=256 n=2000"}),
    ("fixed", "512", "ns_per_pair",
     {"default": "size=512 n=30000000", "quick": "size=512 n=1000000", "tiny": "size=512 n=2000"}),
    ("churn", "100000", "ns_per_pair",
     {"default": "slots=100000 steps=5000000", "quick": "slots=100000 steps=500000",
      "tiny": "slots=100000 steps=2000"}),
    ("burst", "48", "ns_per_obj",
     {"default": "dist=48 n=10000000", "quick": "dist=48 n=1000000", "tiny": "dist=48 n=3000"}),
    ("burst", "uniform", "ns_per_obj",
     {"default": "dist=uniform n=5000000", "quick": "dist=uniform n=500000",
      "tiny": "dist=uniform n=3000"}),
    ("survivors", "48", "ns_per_obj",
     {"default": "n=10000000 keep=100", "quick": "n=1000000 keep=100", "tiny": "n=3000 keep=100"}),
    ("realloc", "16-512", "ns_per_op",
     {"default": "strings=1024 steps=10000000", "quick": "strings=1024 steps=500000",
      "tiny": "strings=64 steps=2000"}),
    ("threads", "1", "ns_per_pair",
     {"default": "threads=1 slots=100000 steps=3000000", "quick": "threads=1 slots=100000 steps=300000",
      "tiny": "threads=1 slots=1000 steps=2000"}),
    ("threads", "2", "ns_per_pair",
     {"default": "threads=2 slots=100000 steps=3000000", "quick": "threads=2 slots=100000 steps=300000",
      "tiny": "threads=2 slots=1000 steps=2000"}),
    ("threads", "4", "ns_per_pair",
     {"default": "threads=4 slots=100000 steps=3000000", "quick": "threads=4 slots=100000 steps=300000",
      "tiny": "threads=4 slots=1000 steps=2000"}),
    ("xthread", "1to1", "ns_per_obj",
     {"default": "n=8000000", "quick": "n=500000", "tiny": "n=3000"}),
    ("server", "2", "ns_per_pair",
     {"default": "threads=2 slots=20000 steps=6000000 handover=1000",
      "quick": "threads=2 slots=20000 steps=300000 handover=1000",
      "tiny": "threads=2 slots=500 steps=3000 handover=100"}),
    ("larson", "2", "ns_per_pair",
     {"default": "workers=2 slots=20000 steps=20000 gens=30",
      "quick": "workers=2 slots=20000 steps=20000 gens=30",
      "tiny": "workers=2 slots=200 steps=300 gens=3"}),
    ("tstress", "4", "ns_per_alloc",
     {"default": "threads=4 rounds=20 iter=200 transfer=1000",
      "quick": "threads=4 rounds=20 iter=200 transfer=1000",
      "tiny": "threads=4 rounds=2 iter=10 transfer=50"}),
    ("rounds", "alloc", "ns_per_obj",
     {"default": "n=300000 rounds=6 order=alloc wait_ms=1500",
      "quick": "n=100000 rounds=4 order=alloc wait_ms=300",
      "tiny": "n=2000 rounds=2 order=alloc wait_ms=100"}),
    ("rounds", "random", "ns_per_obj",
     {"default": "n=300000 rounds=6 order=random wait_ms=1500",
      "quick": "n=100000 rounds=4 order=random wait_ms=300",
      "tiny": "n=2000 rounds=2 order=random wait_ms=100"}),
    # the same cell as "rounds alloc", with libarena's background purger on
    ("rounds", "purger", "ns_per_obj",
     {"default": "n=300000 rounds=6 order=alloc wait_ms=1500 label=purger env:ARENA_PURGER=1",
      "quick": "n=100000 rounds=4 order=alloc wait_ms=300 label=purger env:ARENA_PURGER=1",
      "tiny": "n=2000 rounds=2 order=alloc wait_ms=100 label=purger env:ARENA_PURGER=1"}),
    # arena_heap_destroy of 1M objects (libarena); every allocator also frees
    # the same objects one by one.  Reported in its own section, not in the
    # time-per-operation table.
    ("heapdestroy", "16-512", "free_ns_per_obj",
     {"default": "n=1000000", "quick": "n=300000", "tiny": "n=3000"}),
]
# Cells with a section of their own and no place in the time-per-operation
# table and chart.
OWN_SECTION = ("heapdestroy",)

# The fixed loop run under callgrind: its size and two loop lengths.
CALLGRIND_SIZE = 48
CALLGRIND_N = {"default": (100000, 200000), "quick": (20000, 40000), "tiny": (1000, 2000)}

# System calls counted by the strace pass (run.sh), in table order.  mprotect
# is there because glibc grows its thread arenas with it.
SYSCALLS = ["mmap", "munmap", "madvise", "brk", "mremap", "mprotect"]

# Every metric each scenario must print (checked by the smoke test).
METRICS = {
    "fixed": ["ns_per_pair", "pairs"],
    "churn": ["ns_per_pair", "pairs"],
    "burst": ["rss_base_kib", "ns_per_obj", "alloc_ns_per_obj", "free_ns_per_obj", "objects",
              "requested_kib", "rss_peak_kib", "rss_after_free_kib", "heap_peak_kib",
              "heap_after_free_kib", "held_pct", "peak_per_requested"],
    "realloc": ["ns_per_op", "reallocs", "ops"],
    "threads": ["ops_per_s", "ns_per_pair", "nproc"],
    "xthread": ["ops_per_s", "ns_per_obj", "objects", "rss_base_kib", "rss_peak_kib",
                "rss_end_kib", "heap_end_kib"],
    "server": ["ops_per_s", "ns_per_pair", "rss_base_kib", "rss_peak_kib", "rss_live_kib",
               "rss_end_kib", "heap_end_kib"],
    "larson": ["pairs_per_s", "ns_per_pair", "pairs", "threads_started", "rss_base_kib",
               "rss_live_kib", "rss_peak_kib", "rss_end_kib", "heap_live_kib", "heap_peak_kib",
               "heap_end_kib"],
    "tstress": ["wall_ms", "ns_per_alloc", "allocs", "threads_started", "transfer_left",
                "rss_base_kib", "rss_peak_kib", "rss_end_kib", "heap_peak_kib", "heap_end_kib"],
    # plus round1_ns_per_obj .. roundR_ns_per_obj (R = the rounds metric)
    "rounds": ["rss_base_kib", "ns_per_obj", "objects", "rounds", "requested_kib",
               "rss_peak_kib", "rss_after_free_kib", "rss_after_wait_kib", "heap_peak_kib",
               "heap_after_free_kib", "heap_after_wait_kib", "held_pct_now",
               "held_pct_after_wait", "wait_ms"],
}
METRICS["survivors"] = METRICS["burst"] + ["live_objects", "live_kib", "after_free_per_live",
                                           "heap_after_all_kib"]
METRICS["heapdestroy"] = ["free_ms", "free_ns_per_obj", "floor_ms", "floor_kib", "objects",
                          "requested_kib"]
# ... and from bench-arena only (the heap is libarena's).
HEAPDESTROY_ARENA_METRICS = ["destroy_ms", "destroy_ns_per_obj", "destroy_munmap_calls",
                             "rss_base_kib", "rss_full_kib", "rss_after_destroy_kib",
                             "heap_full_kib", "heap_after_destroy_kib", "heap_free_ms",
                             "heap_free_destroy_ms", "destroy_per_floor",
                             "destroy_per_heap_free", "destroy_per_free"]
ARENA_METRICS = ["calls_mmap", "calls_munmap", "calls_madvise", "calls_brk",
                 "arena_mapped_peak_kib"]
SERIES_SCENARIOS = ("burst", "survivors")
SERIES_PHASES = ("alloc", "free", "wait")


def split_env(args):
    """A cell's argument string -> (program arguments, libarena's environment)."""
    prog, env = [], {}
    for a in args.split():
        if a.startswith("env:") and "=" in a:
            k, v = a[4:].split("=", 1)
            env[k] = v
        else:
            prog.append(a)
    return prog, env


def cmd_plan(args):
    for scen, var, _, modes in CELLS:
        print(scen, var, modes[args.mode])
    n1, n2 = CALLGRIND_N[args.mode]
    sz = CALLGRIND_SIZE
    print("callgrind", sz, "size=%d n=%d" % (sz, n1), "size=%d n=%d" % (sz, n2))
    return 0


# ---------------------------------------------------------------------------
# Parsing the programs' output
# ---------------------------------------------------------------------------

class ParseError(Exception):
    pass


def parse_number(text, line):
    try:
        v = float(text)
    except ValueError:
        raise ParseError("not a number %r in: %s" % (text, line))
    if math.isnan(v) or math.isinf(v):
        raise ParseError("not a finite number %r in: %s" % (text, line))
    return v


def parse_line(fields, line):
    """One line of a program's output, without the run.sh prefix."""
    kind = fields[0]
    if kind == "info":
        if len(fields) != 3:
            raise ParseError("bad info line: %s" % line)
        return ("info", fields[1], fields[2])
    if kind == "result":
        if len(fields) != 6:
            raise ParseError("bad result line: %s" % line)
        return ("result", fields[1], fields[2], fields[3], parse_number(fields[4], line), fields[5])
    if kind == "series":
        if len(fields) != 6 or fields[3] not in SERIES_PHASES:
            raise ParseError("bad series line: %s" % line)
        return ("series", fields[1], fields[2], fields[3],
                parse_number(fields[4], line), parse_number(fields[5], line))
    if kind == "callgrind":     # callgrind N IR [LOOP_IR]  (written by run.sh)
        if len(fields) not in (3, 4):
            raise ParseError("bad callgrind line: %s" % line)
        loop = int(parse_number(fields[3], line)) if len(fields) == 4 else -1
        return ("callgrind", int(parse_number(fields[1], line)), int(parse_number(fields[2], line)),
                loop)
    if kind == "syscalls":      # syscalls SCEN VAR NAME IN_SCENARIO WHOLE_PROCESS  (run.sh)
        if len(fields) != 6:
            raise ParseError("bad syscalls line: %s" % line)
        inside = int(parse_number(fields[4], line))
        return ("syscalls", fields[1], fields[2], fields[3], inside if inside >= 0 else None,
                int(parse_number(fields[5], line)))
    raise ParseError("unknown line: %s" % line)


def check_output(text, scen, var, expect):
    """Problems found in one run's output (empty list: fine).  expect: the
    allocator the binary must report, or None for any."""
    problems = []
    info = {}
    results = {}
    series = {p: 0 for p in SERIES_PHASES}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = parse_line(line.split(), line)
        except ParseError as e:
            problems.append(str(e))
            continue
        if rec[0] == "info":
            info[rec[1]] = rec[2]
        elif rec[0] == "result":
            if (rec[1], rec[2]) != (scen, var):
                problems.append("result for %s/%s, expected %s/%s" % (rec[1], rec[2], scen, var))
            results[rec[3]] = rec[4]
        elif rec[0] == "series":
            series[rec[3]] += 1
    if info.get("done") != "1":
        problems.append("no 'info done 1' line")
    if "allocator" not in info:
        problems.append("no 'info allocator' line")
    elif expect is not None and info["allocator"] != expect:
        problems.append("allocator is %s, expected %s" % (info["allocator"], expect))
    wanted = list(METRICS[scen]) + (ARENA_METRICS if expect == "libarena" else [])
    if scen == "heapdestroy" and expect == "libarena":
        wanted += HEAPDESTROY_ARENA_METRICS
    if scen == "rounds" and "rounds" in results:
        wanted += ["round%d_ns_per_obj" % (k + 1) for k in range(int(results["rounds"]))]
    for m in wanted:
        if m not in results:
            problems.append("metric %s missing" % m)
        elif results[m] < 0 and not m.startswith(("heap_", "held_")):
            problems.append("metric %s is negative: %g" % (m, results[m]))
    if scen in SERIES_SCENARIOS and (series["alloc"] == 0 or series["free"] == 0):
        problems.append("no RSS series")
    if scen == "rounds" and series["wait"] == 0:
        problems.append("no RSS series for the wait")
    return problems


def cmd_smoke(args):
    base = os.path.basename(args.binary)
    expect = ("libarena" if base.startswith("bench-arena") else
              "null" if base.startswith("bench-null") else None)
    cells = [c for c in CELLS if c[0] == args.scenario]
    if not cells:
        print("unknown scenario %s" % args.scenario)
        return 1
    failed = 0
    for scen, var, _, modes in cells:
        prog, env = split_env(modes["tiny"])
        cmd = [args.binary, scen] + prog
        run_env = dict(os.environ)
        if expect == "libarena":
            run_env.update(env)
            cmd_text = " ".join(["%s=%s" % kv for kv in sorted(env.items())] + cmd)
        else:
            cmd_text = " ".join(cmd)
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=50, env=run_env)
        except subprocess.TimeoutExpired:
            print("FAIL %s: timed out" % cmd_text)
            failed += 1
            continue
        problems = [] if p.returncode == 0 else ["exit status %d: %s" % (p.returncode, p.stderr.strip())]
        problems += check_output(p.stdout, scen, var, expect)
        if problems:
            failed += 1
            print("FAIL %s" % cmd_text)
            for pr in problems:
                print("  " + pr)
        else:
            print("ok   %s" % cmd_text)
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# Counting system calls in an strace trace
# ---------------------------------------------------------------------------

STRACE_CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
STRACE_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
STRACE_RET = re.compile(r"\)\s+=\s+(-?\w+)")


def strace_calls(lines):
    """Complete calls from `strace -f` output, in the order they started:
    [name, arguments text, return text].  A call that another thread
    interrupted is split over an "<unfinished ...>" and a "<... resumed>"
    line; the two are joined here."""
    calls, pending = [], {}
    for line in lines:
        line = line.rstrip("\n")
        m = STRACE_RESUMED.match(line)
        if m:
            pid, name, rest = m.groups()
            c = pending.pop(pid, None)
            if c is not None and c[0] == name:
                c[1] += rest
                r = STRACE_RET.search(rest)
                c[2] = r.group(1) if r else "?"
            continue
        m = STRACE_CALL.match(line)
        if not m:
            continue                    # "+++ exited", "--- SIG...", ...
        pid, name, rest = m.groups()
        c = [name, rest, "?"]
        calls.append(c)
        if rest.endswith("<unfinished ...>"):
            c[1] = rest[:-len("<unfinished ...>")]
            pending[pid] = c
        else:
            r = STRACE_RET.search(rest)
            c[2] = r.group(1) if r else "?"
    return calls


def count_syscalls(lines):
    """{name: (calls in the scenario, calls in the whole process)}.

    The scenario is the part between the program's two getppid() marks.
    Inside it, calls by the benchmark itself are left out: its pointer
    arrays (mmap with MAP_POPULATE, which no allocator here uses) and the
    thread stacks that glibc's pthread_create maps (MAP_STACK), with every
    later call on an address inside one of those ranges (guard pages,
    madvise of an exited thread's stack, munmap).  Calls in the scenario are
    None when the marks are missing."""
    harness = []                         # [start, end) of harness mappings
    marks = 0
    inside = {n: 0 for n in SYSCALLS}
    whole = {n: 0 for n in SYSCALLS}

    def in_harness(addr):
        return any(lo <= addr < hi for lo, hi in harness)

    for name, argtext, ret in strace_calls(lines):
        if name == "getppid":
            marks += 1
            continue
        if name not in whole:
            continue
        whole[name] += 1
        args = [a.strip() for a in argtext.split(",")]
        own = False
        if name == "mmap":
            flags = args[3] if len(args) > 3 else ""
            if "MAP_POPULATE" in flags or "MAP_STACK" in flags:
                own = True
                try:
                    harness.append((int(ret, 16), int(ret, 16) + int(args[1])))
                except ValueError:
                    pass
        elif name in ("munmap", "madvise", "mprotect", "mremap"):
            try:
                addr = int(args[0], 16)
            except ValueError:
                addr = None
            if addr is not None and in_harness(addr):
                own = True
                if name == "munmap":
                    harness = [(lo, hi) for lo, hi in harness if not lo <= addr < hi]
        if marks == 1 and not own:
            inside[name] += 1
    if marks < 2:
        return {n: (None, whole[n]) for n in SYSCALLS}
    return {n: (inside[n], whole[n]) for n in SYSCALLS}


def cmd_strace(args):
    with open(args.file) as f:
        counts = count_syscalls(f)
    for n in SYSCALLS:
        c_in, c_all = counts[n]
        print("syscalls %s %s %s %d %d" % (args.scenario, args.variant, n,
                                           -1 if c_in is None else c_in, c_all))
    return 0


# ---------------------------------------------------------------------------
# Loading results.txt (each line: ALLOCATOR RUN <program output line>)
# ---------------------------------------------------------------------------

class Data:
    def __init__(self):
        self.res = {}        # (scen, var, metric) -> {alloc: {run: value}}
        self.units = {}      # metric -> unit
        self.series = {}     # (scen, var) -> {alloc: [(phase, t_ms, rss_kib)]}  (run 1)
        self.callgrind = {}  # alloc -> {n: Ir}
        self.cg_loop = {}    # alloc -> {n: Ir of the loop function itself, -1 unknown}
        self.sys = {}        # (scen, var) -> {alloc: {syscall: (in scenario or None, process)}}
        self.runs = set()
        self.allocs = set()

    def get(self, scen, var, metric, alloc):
        return self.res.get((scen, var, metric), {}).get(alloc, {})


def load(path):
    d = Data()
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 3:
                continue
            alloc, run = fields[0], int(fields[1])
            rec = parse_line(fields[2:], line.strip())
            d.allocs.add(alloc)
            if rec[0] == "result":
                _, scen, var, metric, value, unit = rec
                d.res.setdefault((scen, var, metric), {}).setdefault(alloc, {})[run] = value
                d.units[metric] = unit
                d.runs.add(run)
            elif rec[0] == "series" and run == 1:
                _, scen, var, phase, t, rss = rec
                d.series.setdefault((scen, var), {}).setdefault(alloc, []).append((phase, t, rss))
            elif rec[0] == "callgrind":
                d.callgrind.setdefault(alloc, {})[rec[1]] = rec[2]
                d.cg_loop.setdefault(alloc, {})[rec[1]] = rec[3]
            elif rec[0] == "syscalls":
                _, scen, var, name, inside, whole = rec
                d.sys.setdefault((scen, var), {}).setdefault(alloc, {})[name] = (inside, whole)
    return d


def write_csv(d, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "variant", "allocator", "run", "metric", "value", "unit"])
        for (scen, var, metric), per in sorted(d.res.items()):
            for alloc in sorted(per):
                for run in sorted(per[alloc]):
                    w.writerow([scen, var, alloc, run, metric, "%.6g" % per[alloc][run],
                                d.units.get(metric, "")])
        for alloc in sorted(d.callgrind):
            for n in sorted(d.callgrind[alloc]):
                var = str(CALLGRIND_SIZE)
                w.writerow(["callgrind", var, alloc, 1, "Ir_n%d" % n, d.callgrind[alloc][n], "Ir"])
                w.writerow(["callgrind", var, alloc, 1, "Ir_loop_n%d" % n,
                            d.cg_loop.get(alloc, {}).get(n, -1), "Ir"])
        # run 0: the single, untimed strace pass
        for (scen, var), per in sorted(d.sys.items()):
            for alloc in sorted(per):
                for name in SYSCALLS:
                    inside, whole = per[alloc].get(name, (None, None))
                    if inside is not None:
                        w.writerow([scen, var, alloc, 0, "strace_" + name, inside, "calls"])
                    if whole is not None:
                        w.writerow([scen, var, alloc, 0, "strace_process_" + name, whole, "calls"])


# ---------------------------------------------------------------------------
# Statistics and formatting
# ---------------------------------------------------------------------------

def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return (statistics.median(values), min(values), max(values))


def fmt_num(v, counts=True):
    a = abs(v)
    if counts and v == int(v) and (a >= 1 or v == 0):
        return "%d" % v         # counts stay counts
    if 0 < a < 0.01:
        return "%.2g" % v
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


def fmt_sum(s, scale=1.0):
    if s is None:
        return "—"
    counts = scale == 1.0
    m, lo, hi = (x * scale for x in s)
    if lo == hi:
        return fmt_num(m, counts)
    return "%s (%s–%s)" % (fmt_num(m, counts), fmt_num(lo, counts), fmt_num(hi, counts))


def per_run_ratio(num, den, min_den=0.0):
    """Ratios num[r] / den[r] for every run r in both."""
    out = []
    for r in sorted(num):
        if r in den and den[r] is not None and den[r] > min_den:
            out.append(num[r] / den[r])
    return out


def best_peer_by_run(d, scen, var, metric, peers, higher=False):
    """Per run: the best value among the peers that ran in that run (the
    lowest, or the highest if higher is better)."""
    best = {}
    for p in peers:
        for r, v in d.get(scen, var, metric, p).items():
            if r not in best or (v > best[r] if higher else v < best[r]):
                best[r] = v
    return best


def table(header, rows, align=None):
    """An aligned markdown table.  align: 'l' or 'r' per column."""
    cols = len(header)
    align = align or (["l"] + ["r"] * (cols - 1))
    width = [max(len(str(x[i])) for x in [header] + rows) for i in range(cols)]
    width = [max(w, 3) for w in width]

    def cell(text, i):
        text = str(text)
        return text.ljust(width[i]) if align[i] == "l" else text.rjust(width[i])

    lines = ["| " + " | ".join(cell(h, i) for i, h in enumerate(header)) + " |"]
    lines.append("| " + " | ".join(("-" * (width[i] - 1) + ":") if align[i] == "r"
                                   else "-" * width[i] for i in range(cols)) + " |")
    for row in rows:
        lines.append("| " + " | ".join(cell(x, i) for i, x in enumerate(row)) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Charts (gnuplot)
# ---------------------------------------------------------------------------

COLORS = {"libarena": "#d62728", "glibc": "#1f77b4", "jemalloc": "#2ca02c",
          "tcmalloc": "#9467bd", "mimalloc": "#ff7f0e"}


def gp_quote(s):
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def run_gnuplot(script_path, script):
    with open(script_path, "w") as f:
        f.write(script)
    try:
        p = subprocess.run(["gnuplot", script_path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
    except OSError as e:
        print("report: gnuplot not run: %s" % e, file=sys.stderr)
        return False
    if p.returncode != 0:
        print("report: gnuplot failed on %s:\n%s" % (script_path, p.stderr), file=sys.stderr)
        return False
    return True


def chart_ns(d, cells, allocs, work, png):
    cells = [c for c in cells if c[0] != "threads"]
    dat = os.path.join(work, "bench-ns.dat")
    with open(dat, "w") as f:
        f.write("# cell " + " ".join("%s %s_min %s_max" % (a, a, a) for a in allocs) + "\n")
        for scen, var, metric, _ in cells:
            row = ['"%s %s"' % (scen, var)]
            for a in allocs:
                s = summary(d.get(scen, var, metric, a).values())
                row += ["%.4g %.4g %.4g" % s if s else "NaN NaN NaN"]
            f.write(" ".join(row) + "\n")
    plots = []
    for i, a in enumerate(allocs):
        c = 2 + 3 * i
        plots.append("%s using %d:%d:%d:xtic(1) title %s lc rgb %s" % (
            gp_quote(dat), c, c + 1, c + 2, gp_quote(a), gp_quote(COLORS.get(a, "#777777"))))
    script = """set terminal pngcairo size %d,650 font "sans,10"
set output %s
set title "Time per operation (median of runs; bars: min-max; lower is better)"
set ylabel "ns per pair, object, op or alloc (unit: see the table)"
set xtics rotate by 30 right
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set yrange [0:*]
set xtics nomirror
set bmargin 5
plot %s
""" % (max(1400, 90 * len(cells)), gp_quote(png), ", \\\n     ".join(plots))
    return run_gnuplot(os.path.join(work, "bench-ns.gp"), script)


def chart_threads(d, ts, allocs, work, png):
    dat = os.path.join(work, "bench-threads.dat")
    with open(dat, "w") as f:
        f.write("# T " + " ".join(allocs) + "\n")
        for t in ts:
            row = [t]
            for a in allocs:
                s = summary(d.get("threads", t, "ops_per_s", a).values())
                row.append("%.4g" % (s[0] / 1e6) if s else "NaN")
            f.write(" ".join(row) + "\n")
    plots = ["%s using 1:%d with linespoints lw 2 pt 7 lc rgb %s title %s" % (
        gp_quote(dat), 2 + i, gp_quote(COLORS.get(a, "#777777")), gp_quote(a))
        for i, a in enumerate(allocs)]
    script = """set terminal pngcairo size 800,500 font "sans,10"
set output %s
set title "threads: churn in T threads, private slots (median; higher is better)"
set xlabel "threads T"
set ylabel "million alloc+free pairs per second (all threads)"
set xtics (%s)
set grid
set key below horizontal
set bmargin 5
set yrange [0:*]
plot %s
""" % (gp_quote(png), ", ".join(t for t in ts), ", \\\n     ".join(plots))
    return run_gnuplot(os.path.join(work, "bench-threads.gp"), script)


def chart_rss(d, scen, var, allocs, work, png, title):
    plots = []
    for a in allocs:
        pts = d.series.get((scen, var), {}).get(a)
        if not pts:
            continue
        base = d.get(scen, var, "rss_base_kib", a).get(1)
        if base is None:
            base = pts[0][2]
        dat = os.path.join(work, "bench-rss-%s-%s-%s.dat" % (scen, var, a))
        with open(dat, "w") as f:
            for phase, t, rss in pts:
                f.write("%.3f %.3f\n" % (t, (rss - base) / 1024.0))
        plots.append("%s using 1:2 with lines lw 2 lc rgb %s title %s" % (
            gp_quote(dat), gp_quote(COLORS.get(a, "#777777")), gp_quote(a)))
    if not plots:
        return False
    script = """set terminal pngcairo size 900,500 font "sans,10"
set output %s
set title %s
set xlabel "time since the first allocation (ms)"
set ylabel "RSS above the start (MiB)"
set grid
set key outside right top
set yrange [0:*]
plot %s
""" % (gp_quote(png), gp_quote(title), ", \\\n     ".join(plots))
    return run_gnuplot(os.path.join(work, "bench-rss-%s-%s.gp" % (scen, var)), script)


def chart_larson(d, var, allocs, work, png):
    """Two panels of bars: throughput, and RSS live / peak."""
    dat = os.path.join(work, "bench-larson-%s.dat" % var)
    with open(dat, "w") as f:
        f.write("# allocator mpairs min max live_mib live_min live_max peak_mib peak_min peak_max\n")
        for a in allocs:
            row = [a]
            for metric, scale in [("pairs_per_s", 1e-6), ("heap_live_kib", 1 / 1024.0),
                                  ("heap_peak_kib", 1 / 1024.0)]:
                s = summary(d.get("larson", var, metric, a).values())
                row.append("%.4g %.4g %.4g" % tuple(x * scale for x in s) if s else "NaN NaN NaN")
            f.write(" ".join(row) + "\n")
    script = """set terminal pngcairo size 1100,450 font "sans,10"
set output %(png)s
set multiplot layout 1,2 title "larson: %(var)s chains of threads inheriting their objects (median; bars: min-max)"
set style fill solid 0.85 border -1
set boxwidth 0.6
set grid ytics
set yrange [0:*]
set xtics nomirror
unset key
set title "throughput (higher is better)"
set ylabel "million alloc+free pairs per second"
plot %(dat)s using 0:2:(0.6):(%(colors)s) with boxes lc rgb variable, \\
     %(dat)s using 0:2:3:4:xtic(1) with yerrorbars lc rgb "black" pt 7 ps 0
set title "RSS above the start (lower is better)"
set ylabel "MiB"
set key top left
set style histogram errorbars gap 2 lw 1
set style data histograms
plot %(dat)s using 5:6:7:xtic(1) title "live (after the last thread)" lc rgb "#888888", \\
     %(dat)s using 8:9:10 title "peak (VmHWM)" lc rgb "#444444"
unset multiplot
""" % {"png": gp_quote(png), "var": var, "dat": gp_quote(dat),
       "colors": color_expr(allocs)}
    return run_gnuplot(os.path.join(work, "bench-larson-%s.gp" % var), script)


def color_expr(allocs):
    """A gnuplot expression giving the colour (as a number) of row $0."""
    expr = "0x777777"
    for i, a in reversed(list(enumerate(allocs))):
        expr = "($0==%d ? 0x%s : %s)" % (i, COLORS.get(a, "#777777")[1:], expr)
    return expr


def chart_rounds_ns(d, rvars, allocs, work, png):
    """One panel per rounds cell: ns per object against the round."""
    panels = []
    for var in rvars:
        nr = summary(d.get("rounds", var, "rounds", allocs[0]).values()) if allocs else None
        nr = int(nr[0]) if nr else 0
        dat = os.path.join(work, "bench-rounds-ns-%s.dat" % var)
        with open(dat, "w") as f:
            f.write("# round " + " ".join(allocs) + "\n")
            for k in range(1, nr + 1):
                row = ["%d" % k]
                for a in allocs:
                    s = summary(d.get("rounds", var, "round%d_ns_per_obj" % k, a).values())
                    row.append("%.4g" % s[0] if s else "NaN")
                f.write(" ".join(row) + "\n")
        plots = ["%s using 1:%d with linespoints lw 2 pt 7 lc rgb %s title %s" % (
            gp_quote(dat), 2 + i, gp_quote(COLORS.get(a, "#777777")), gp_quote(a))
            for i, a in enumerate(allocs)]
        panels.append('set title "rounds %s"\nset xtics 1\nplot %s\n' % (
            var, ", \\\n     ".join(plots)))
    script = """set terminal pngcairo size %d,500 font "sans,10"
set output %s
set multiplot layout 1,%d title "rounds: ns per object (alloc + write + free) in each round (median of runs; lower is better)"
set xlabel "round"
set ylabel "ns per object"
set grid
set key below horizontal
set bmargin 7
set yrange [0:*]
%s
unset multiplot
""" % (420 * len(rvars) + 60, gp_quote(png), len(rvars), "\n".join(panels))
    return run_gnuplot(os.path.join(work, "bench-rounds-ns.gp"), script)


def chart_rounds_rss(d, rvars, allocs, work, png):
    """One panel per rounds cell: RSS above the start against the time since
    the last free (run 1)."""
    panels = []
    for var in rvars:
        plots = []
        for a in allocs:
            pts = [p for p in d.series.get(("rounds", var), {}).get(a, []) if p[0] == "wait"]
            if not pts:
                continue
            base = d.get("rounds", var, "rss_base_kib", a).get(1)
            if base is None:
                continue
            dat = os.path.join(work, "bench-rounds-rss-%s-%s.dat" % (var, a))
            with open(dat, "w") as f:
                for _, t, rss in pts:
                    f.write("%.3f %.3f\n" % (t, (rss - base) / 1024.0))
            plots.append("%s using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb %s title %s" % (
                gp_quote(dat), gp_quote(COLORS.get(a, "#777777")), gp_quote(a)))
        if plots:
            panels.append('set title "rounds %s"\nplot %s\n' % (var, ", \\\n     ".join(plots)))
    if not panels:
        return False
    xmax = max([p[1] for v in rvars for pts in d.series.get(("rounds", v), {}).values()
                for p in pts if p[0] == "wait"] + [100])
    xmax = int(math.ceil(xmax * 1.02))        # the last point sits a little after wait_ms
    script = """set terminal pngcairo size %d,500 font "sans,10"
set output %s
set multiplot layout 1,%d title "rounds: RSS after the last free, while the program idles (run 1)"
set xlabel "ms since the last free"
set ylabel "RSS above the start (MiB)"
set grid
set key below horizontal
set bmargin 7
set yrange [0:*]
set xrange [0:%d]
%s
unset multiplot
""" % (420 * len(panels) + 60, gp_quote(png), len(panels), xmax, "\n".join(panels))
    return run_gnuplot(os.path.join(work, "bench-rounds-rss.gp"), script)


# ---------------------------------------------------------------------------
# The markdown report
# ---------------------------------------------------------------------------

def read_machine(path):
    out = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "\t" in line:
                    k, v = line.split("\t", 1)
                    out.append((k, v))
    return out


def cmd_report(args):
    d = load(args.results)
    cells = cells_with_data(d)
    os.makedirs(args.work, exist_ok=True)
    write_csv(d, os.path.join(args.work, "results.csv"))
    allocs = [a for a in ALLOCATORS if a in d.allocs]
    peers = [a for a in PEERS if a in allocs]
    machine = read_machine(args.machine)
    minfo = dict(machine)
    runs = max(d.runs) if d.runs else 0
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(args.img, exist_ok=True)

    def img(name):
        return os.path.relpath(os.path.join(os.path.abspath(args.img), name), out_dir)

    L = []
    w = L.append
    w("# libarena benchmarks")
    w("")
    w("Generated by `bench/run.sh%s` on %s (mode **%s**: %d runs per cell; the run took %s)."
      % (" --quick" if args.mode == "quick" else "", minfo.get("date", "?"), args.mode, runs,
         args.elapsed or "?"))
    w("Do not edit by hand: run the script again.  Raw results: `%s`." %
      (args.raw_label or os.path.join(args.work, "results.csv")))
    if args.mode == "quick":
        w("")
        w("**Quick mode:** small sizes and few runs; the numbers are for checking the tool, "
          "not for quoting.")
    missing = [a for a in ALLOCATORS if a not in allocs]
    if missing:
        w("")
        w("Not measured in this run (not selected, not installed or not built): %s." %
          ", ".join(missing))
    w("")

    # ---- summary table: time per operation ----
    w("## Time per operation")
    w("")
    w("Median over runs, with (min–max).  Lower is better.  The ratios are computed "
      "run by run (libarena's time in run *r* divided by glibc's, or by the fastest "
      "peer's, in the same run *r*) and then summarised the same way.")
    w("")
    header = ["scenario", "unit"] + allocs
    if "libarena" in allocs and "glibc" in allocs:
        header.append("libarena / glibc")
    if "libarena" in allocs and peers:
        header.append("libarena / best peer")
    rows = []
    for scen, var, metric, _ in [c for c in cells if c[0] not in OWN_SECTION]:
        label = "%s %s" % (scen, var)
        unit = {"ns_per_pair": "ns/pair", "ns_per_obj": "ns/object", "ns_per_op": "ns/op",
                "ns_per_alloc": "ns/alloc"}[metric]
        if scen == "threads":
            label = "threads T=%s (wall)" % var
        elif scen == "larson":
            label = "larson W=%s (wall)" % var
        elif scen == "tstress":
            label = "tstress T=%s (wall)" % var
        row = [label, unit]
        for a in allocs:
            row.append(fmt_sum(summary(d.get(scen, var, metric, a).values())))
        arena = d.get(scen, var, metric, "libarena")
        if "libarena / glibc" in header:
            row.append(fmt_sum(summary(per_run_ratio(arena, d.get(scen, var, metric, "glibc")))))
        if "libarena / best peer" in header:
            best = best_peer_by_run(d, scen, var, metric, peers)
            row.append(fmt_sum(summary(per_run_ratio(arena, best))))
        rows.append(row)
    ns_cells = [c for c in cells if c[0] not in OWN_SECTION]
    if ns_cells:
        w(table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2)))
        w("")
        w("![time per operation](%s)" % img("bench-ns.png"))
    else:
        w("(No cell of this run belongs here; see the sections below.)")
    w("")

    # ---- backend system calls of the scenarios without a section of their own ----
    if d.sys:
        section_strace(d, w, cells, allocs)

    # ---- callgrind ----
    if d.callgrind:
        section_callgrind(d, w, allocs, peers)

    # ---- threads ----
    ts = [c[1] for c in cells if c[0] == "threads"]
    if ts:
        section_threads(d, w, ts, allocs, minfo, img)

    # ---- memory: burst and survivors ----
    mem_cells = [c for c in cells if c[0] in SERIES_SCENARIOS]
    if mem_cells:
        section_memory(d, w, mem_cells, allocs, peers, img)

    # ---- xthread and server ----
    xcells = [(c[0], c[1]) for c in cells if c[0] in ("xthread", "server")]
    if xcells:
        section_cross(d, w, xcells, allocs)

    # ---- larson, tstress, rounds ----
    lcells = [c for c in cells if c[0] == "larson"]
    if lcells:
        section_larson(d, w, lcells, allocs, peers, img)
    tcells = [c for c in cells if c[0] == "tstress"]
    if tcells:
        section_tstress(d, w, tcells, allocs, peers)
    rcells = [c for c in cells if c[0] == "rounds"]
    if rcells:
        section_rounds(d, w, rcells, allocs, peers, img)
    hcells = [c for c in cells if c[0] == "heapdestroy"]
    if hcells:
        section_heapdestroy(d, w, hcells, allocs)

    # ---- libarena system calls ----
    if "libarena" in allocs:
        section_syscalls(d, w, cells)

    # ---- method ----
    section_method(w, cells, runs, args.mode)

    # ---- machine ----
    w("## Machine")
    w("")
    if machine:
        w(table(["what", "value"], [[k, v.replace("|", "/")] for k, v in machine], ["l", "l"]))
    else:
        w("(no machine description)")
    w("")

    with open(args.out, "w") as f:
        f.write("\n".join(L) + "\n")

    # ---- charts ----
    ok = True
    if ns_cells:
        ok = chart_ns(d, ns_cells, allocs, args.work, os.path.join(args.img, "bench-ns.png"))
    if ts:
        ok &= chart_threads(d, ts, allocs, args.work, os.path.join(args.img, "bench-threads.png"))
    for scen, var, _, _ in mem_cells:
        title = "%s %s: RSS while allocating, then freeing (run 1)" % (scen, var)
        ok &= chart_rss(d, scen, var, allocs, args.work,
                        os.path.join(args.img, "bench-rss-%s-%s.png" % (scen, var)), title)
    for scen, var, _, _ in lcells:
        ok &= chart_larson(d, var, allocs, args.work,
                           os.path.join(args.img, "bench-larson-%s.png" % var))
    if rcells:
        rvars = [c[1] for c in rcells]
        ok &= chart_rounds_ns(d, rvars, allocs, args.work,
                              os.path.join(args.img, "bench-rounds-ns.png"))
        ok &= chart_rounds_rss(d, rvars, allocs, args.work,
                               os.path.join(args.img, "bench-rounds-rss.png"))
    print("report: wrote %s%s" % (args.out, "" if ok else " (some charts missing)"))

    # a short summary on stdout for the person running it
    print("")
    print("\n".join(L[L.index("## Time per operation"):][:len(ns_cells) + 6]))
    if hcells:
        at = L.index("## heapdestroy: a heap of objects freed at once")
        print("\n".join(L[at:at + 14]))
    return 0


def cells_with_data(d):
    return [c for c in CELLS if any(k[0] == c[0] and k[1] == c[1] for k in d.res)]


def section_callgrind(d, w, allocs, peers):
    w("## Instructions per alloc+free pair (callgrind)")
    w("")
    w("The `fixed` loop (size %d) run under `valgrind --tool=callgrind` with two loop "
      "lengths n1 and n2; instructions per pair = (Ir(n2) − Ir(n1)) / (n2 − n1), so "
      "start-up and the warm-up cancel.  A pair includes the loop itself, the two calls "
      "and the two byte writes, the same for every allocator.  Two ways to keep only the "
      "allocator's share: *minus loop* leaves out the instructions of the loop function "
      "itself (from `callgrind_annotate`); *minus null* subtracts the instructions per "
      "pair of `bench-null`, the same loop calling an allocator that does nothing "
      "(`bench/suite/null_alloc.c`: out-of-line functions that return one static "
      "buffer), so the loop, the calls and their returns cancel and what is left is "
      "the work inside the allocator (for the peers, plus the PLT jump of a shared "
      "library)." % CALLGRIND_SIZE)
    w("")

    def per_pair(a):
        c = d.callgrind.get(a)
        if not c or len(c) < 2:
            return None
        n1, n2 = sorted(c)[:2]
        return (c[n2] - c[n1]) / float(n2 - n1)

    null = per_pair("null")
    rows = []
    cg_net = {}
    for a in allocs + (["null"] if "null" in d.callgrind else []):
        c = d.callgrind.get(a)
        per = per_pair(a)
        if per is None:
            rows.append([a, "—", "—", "—", "—", "—"])
            continue
        n1, n2 = sorted(c)[:2]
        lp = d.cg_loop.get(a, {})
        minus_loop = "—"
        if lp.get(n1, -1) >= 0 and lp.get(n2, -1) >= 0:
            minus_loop = "%.1f" % (per - (lp[n2] - lp[n1]) / float(n2 - n1))
        minus_null = "—"
        if null is not None and a != "null":
            cg_net[a] = per - null
            minus_null = "%.1f" % cg_net[a]
        rows.append([a, "%d" % c[n1], "%d" % c[n2], "%.1f" % per, minus_loop, minus_null])
    ns = sorted({n for c in d.callgrind.values() for n in c})
    h = ["allocator", "Ir (n=%d)" % ns[0] if ns else "Ir (n1)",
         "Ir (n=%d)" % ns[1] if len(ns) > 1 else "Ir (n2)", "instructions per pair",
         "minus loop", "minus null"]
    w(table(h, rows))
    if "libarena" in cg_net and "glibc" in cg_net:
        w("")
        best = [cg_net[p] for p in peers if p in cg_net]
        w("In the allocator (minus null): libarena ÷ glibc %.2f" % (
            cg_net["libarena"] / cg_net["glibc"]) +
          ("; libarena ÷ best peer %.2f" % (cg_net["libarena"] / min(best)) if best else "") +
          ".")
    w("")


def section_threads(d, w, ts, allocs, minfo, img):
    w("## threads: scaling")
    w("")
    w("T threads, each running `churn` on its own private slots (100,000 each); "
      "throughput counts the pairs of all threads over the wall time.  This machine "
      "gave **%s** cores (`nproc`), so T above that cannot scale further." % minfo.get("nproc", "?"))
    w("")
    rows = []
    for t in ts:
        row = ["T=%s" % t]
        for a in allocs:
            row.append(fmt_sum(summary(d.get("threads", t, "ops_per_s", a).values()), 1e-6))
        rows.append(row)
    w("Million pairs per second (median, min–max):")
    w("")
    w(table(["threads"] + allocs, rows))
    w("")
    rows = []
    for t in ts:
        row = ["T=%s" % t]
        for a in allocs:
            row.append(fmt_sum(summary(per_run_ratio(d.get("threads", t, "ops_per_s", a),
                                                     d.get("threads", ts[0], "ops_per_s", a)))))
        rows.append(row)
    w("Scaling: throughput at T divided by throughput at T=1, run by run:")
    w("")
    w(table(["threads"] + allocs, rows))
    w("")
    w("![threads](%s)" % img("bench-threads.png"))
    w("")
    write_syscalls(d, w, "threads", ts, allocs)


def section_memory(d, w, mem_cells, allocs, peers, img):
    w("## Memory: burst and survivors")
    w("")
    w("`burst` allocates N blocks, writes to each, then frees them all in allocation "
      "order; `survivors` is the 48-byte burst where a random 1% (the same objects for "
      "every allocator) stays alive.  RSS is read from /proc/self/statm right after the "
      "last free (no sleep, no trim or release call), the peak from VmHWM.  Every RSS "
      "figure here is counted from the RSS measured just before the first allocation "
      "(the program's own pointer array is mapped and touched before that, so it "
      "cancels; the start itself is listed in the raw results as `rss_base_kib`).  "
      "*held* = RSS after free / RSS peak.  *peak / requested* = RSS peak / bytes asked "
      "for.  *after / live* (survivors) = RSS after free / bytes of the blocks still live.")
    w("")
    for scen, var, _, _ in mem_cells:
        n = summary(d.get(scen, var, "objects", allocs[0]).values()) if allocs else None
        what = {"48": "48-byte blocks", "uniform": "blocks of uniform 16..512 bytes"}[var]
        w("### %s: %s x %s" % (scen, "{:,}".format(int(n[0])) if n else "?", what))
        w("")
        cols = [("ns_per_obj", "ns/object", 1.0), ("heap_peak_kib", "RSS peak MiB", 1 / 1024.0),
                ("heap_after_free_kib", "RSS after free MiB", 1 / 1024.0),
                ("held_pct", "held %", 1.0), ("peak_per_requested", "peak / requested", 1.0)]
        if scen == "survivors":
            cols += [("after_free_per_live", "after / live", 1.0)]
        rows = []
        for a in allocs:
            row = [a]
            for metric, _, scale in cols:
                row.append(fmt_sum(summary(d.get(scen, var, metric, a).values()), scale))
            rows.append(row)
        w(table(["allocator"] + [c[1] for c in cols], rows))
        w("")
        if "libarena" in allocs:
            notes = []
            for metric, name in [("heap_peak_kib", "RSS peak"),
                                 ("heap_after_free_kib", "RSS after free")]:
                arena = d.get(scen, var, metric, "libarena")
                if "glibc" in allocs:
                    s = summary(per_run_ratio(arena, d.get(scen, var, metric, "glibc"), 1024))
                    if s:
                        notes.append("%s libarena / glibc %s" % (name, fmt_sum(s)))
                best = best_peer_by_run(d, scen, var, metric, peers)
                s = summary(per_run_ratio(arena, best, 1024))
                if s and peers:
                    notes.append("%s libarena / best peer %s" % (name, fmt_sum(s)))
            if notes:
                w("Ratios (run by run; omitted where the peer holds under 1 MiB): " +
                  "; ".join(notes) + ".")
                w("")
        w("![RSS over time, %s %s](%s)" % (scen, var, img("bench-rss-%s-%s.png" % (scen, var))))
        w("")
        write_syscalls(d, w, scen, [var], allocs)


def section_cross(d, w, xcells, allocs):
    w("## Cross-thread frees: xthread and server")
    w("")
    w("`xthread`: one producer thread allocates (8..512 bytes) and hands each block "
      "through a 4096-entry ring to one consumer thread, which frees it.  `server`: "
      "larson-style; 2 threads each free a random slot of an array of 20,000 and "
      "allocate 8..512 bytes into it; every 1,000 steps a thread swaps its whole array "
      "with one waiting in a shared mailbox, so most frees hit blocks another thread "
      "allocated.  Sizes are the same sequence for all allocators; which array a "
      "thread receives depends on timing.  RSS at the end is read after the threads "
      "joined and every block was freed (no release call).")
    w("")
    for scen, var in xcells:
        rows = []
        for a in allocs:
            rows.append([a,
                         fmt_sum(summary(d.get(scen, var, "ops_per_s", a).values()), 1e-6),
                         fmt_sum(summary(d.get(scen, var, "rss_peak_kib", a).values()), 1 / 1024.0),
                         fmt_sum(summary(d.get(scen, var, "rss_end_kib", a).values()), 1 / 1024.0),
                         fmt_sum(summary(d.get(scen, var, "heap_end_kib", a).values()), 1 / 1024.0)])
        w("**%s**:" % scen)
        w("")
        w(table(["allocator", "M ops/s", "RSS peak MiB", "RSS end MiB", "heap end MiB"], rows))
        w("")
        write_syscalls(d, w, scen, [var], allocs)


def section_syscalls(d, w, cells):
    w("## libarena: backend system calls per run")
    w("")
    w("From `arena_get_stats()` (difference between the start and the end of the "
      "scenario).  Median (min–max) over runs.")
    w("")
    rows = []
    for scen, var, _, _ in cells:
        row = ["%s %s" % (scen, var)]
        for m in ("calls_mmap", "calls_munmap", "calls_madvise", "calls_brk"):
            row.append(fmt_sum(summary(d.get(scen, var, m, "libarena").values())))
        row.append(fmt_sum(summary(d.get(scen, var, "arena_mapped_peak_kib", "libarena").values()),
                           1 / 1024.0))
        rows.append(row)
    w(table(["scenario", "mmap", "munmap", "madvise", "brk", "mapped peak MiB"], rows))
    w("")


def ratio_cells(d, scen, var, metric, a, allocs, peers, higher=False, min_den=0.0):
    """Two table cells for allocator a: a / glibc and (libarena only) a / best
    peer, both run by run from the same runs (runs where the divisor is not
    above min_den are left out)."""
    mine = d.get(scen, var, metric, a)
    vs_glibc = "—"
    if "glibc" in allocs:
        vs_glibc = fmt_sum(summary(per_run_ratio(mine, d.get(scen, var, metric, "glibc"),
                                                 min_den)))
    vs_best = "—"
    if a == "libarena" and peers:
        best = best_peer_by_run(d, scen, var, metric, peers, higher)
        vs_best = fmt_sum(summary(per_run_ratio(mine, best, min_den)))
    return [vs_glibc, vs_best]


def alloc_table(d, scen, var, allocs, peers, cols, head, higher=False, min_den=0.0):
    """Rows: allocators.  cols: [(metric, header, scale)].  head: the metric
    whose ratios (to glibc; libarena to the best peer) close each row."""
    rows = []
    for a in allocs:
        row = [a]
        for metric, _, scale in cols:
            row.append(fmt_sum(summary(d.get(scen, var, metric, a).values()), scale))
        row += ratio_cells(d, scen, var, head, a, allocs, peers, higher, min_den)
        rows.append(row)
    header = ["allocator"] + [c[1] for c in cols] + ["÷ glibc", "libarena ÷ best peer"]
    return table(header, rows)


def syscall_table(d, scen, variants, allocs):
    """Backend system calls per allocator (strace pass, one run) for the
    given variants of a scenario, with libarena's own counters beside; None
    when there are no strace counts."""
    if not any((scen, v) in d.sys for v in variants):
        return None
    names = [n for n in SYSCALLS if n in ("mmap", "munmap", "madvise", "brk") or any(
        (c.get(n, (None, 0))[0] or 0) > 0
        for v in variants for c in d.sys.get((scen, v), {}).values())]
    rows = []
    for v in variants:
        pre = [v] if len(variants) > 1 else []
        for a in allocs:
            c = d.sys.get((scen, v), {}).get(a)
            if c is None:
                continue
            rows.append(pre + [a] + ["—" if c.get(n, (None,))[0] is None else "%d" % c[n][0]
                                     for n in names])
        if "libarena" in allocs and d.get(scen, v, "calls_mmap", "libarena"):
            own = {"mmap": "calls_mmap", "munmap": "calls_munmap", "madvise": "calls_madvise",
                   "brk": "calls_brk"}
            rows.append(pre + ["libarena (own count)"] + [
                fmt_sum(summary(d.get(scen, v, own[n], "libarena").values())) if n in own else "—"
                for n in names])
    header = (["variant"] if len(variants) > 1 else []) + ["allocator"] + names
    align = ["l"] * (len(header) - len(names)) + ["r"] * len(names)
    return table(header, rows, align)


def write_syscalls(d, w, scen, variants, allocs, title=None):
    t = syscall_table(d, scen, variants, allocs)
    if t is None:
        return
    w(title or ("Backend system calls in `%s` (strace pass; see "
                "[Backend system calls](#backend-system-calls-strace)):" % scen))
    w("")
    w(t)
    w("")


def section_strace(d, w, cells, allocs):
    w("## Backend system calls (strace)")
    w("")
    w("Each cell ran once more per allocator, untimed, under `strace -f --seccomp-bpf "
      "-e trace=%s,getppid -o FILE` (`--seccomp-bpf` left out where the kernel refuses it).  The program calls `getppid()` at the start and at the "
      "end of its scenario; only the calls between the two marks are counted (so the "
      "dynamic loader and the allocator's start-up are left out), and of those, the "
      "benchmark's own calls are left out too: its pointer arrays (mapped with "
      "`MAP_POPULATE`), the thread stacks glibc maps for `pthread_create` (`MAP_STACK`), "
      "and any later call on an address inside those.  What remains is the allocator's "
      "(for libarena, including glibc's calls for the requests over 512 bytes that it "
      "passes on).  The row *libarena (own count)* gives the library's own counters "
      "(`arena_get_stats()`, median of the timed runs) for comparison.  `mremap` and "
      "`mprotect` (glibc grows its per-thread heaps with `mprotect`) are shown where any "
      "allocator made one.  Whole-process counts are in the raw CSV (`strace_process_*`)."
      % ",".join(SYSCALLS))
    w("")
    for scen in ("fixed", "churn", "realloc"):
        vs = [c[1] for c in cells if c[0] == scen]
        if vs:
            write_syscalls(d, w, scen, vs, allocs, "**%s**:" % scen)


def section_larson(d, w, cells, allocs, peers, img):
    w("## larson: thread succession with inherited objects")
    w("")
    for scen, var, _, _ in cells:
        pairs = summary(d.get(scen, var, "pairs", allocs[0]).values()) if allocs else None
        gens = summary(d.get(scen, var, "threads_started", allocs[0]).values()) if allocs else None
        w("%s chains of threads side by side.  The main thread fills each chain's slot array "
          "with blocks of 8..1000 bytes; then each chain's thread runs churn steps on it "
          "(free a random slot, allocate 8..1000 bytes into it, write the first and last "
          "byte), starts its successor, hands the array over and exits; the successor joins "
          "it after its own steps, so a thread exits while its successor already allocates.  "
          "%s threads in all, %s pairs.  Throughput counts every pair over the wall time from "
          "the first thread's start to the last one's end, thread starts included.  *live* "
          "is RSS after the last thread ended with every block still allocated, *peak* is "
          "VmHWM, *end* after the main thread freed everything; all three counted from the "
          "RSS before the first block." % (
              var, "{:,}".format(int(gens[0])) if gens else "?",
              "{:,}".format(int(pairs[0])) if pairs else "?"))
        w("")
        cols = [("pairs_per_s", "M pairs/s", 1e-6), ("ns_per_pair", "ns/pair", 1.0),
                ("heap_live_kib", "RSS live MiB", 1 / 1024.0),
                ("heap_peak_kib", "RSS peak MiB", 1 / 1024.0),
                ("heap_end_kib", "RSS end MiB", 1 / 1024.0)]
        w("Higher M pairs/s is better; the ratios are of pairs/s, run by run.")
        w("")
        w(alloc_table(d, scen, var, allocs, peers, cols, "pairs_per_s", higher=True))
        w("")
        notes = []
        for metric, name in [("heap_live_kib", "RSS live"), ("heap_peak_kib", "RSS peak")]:
            arena = d.get(scen, var, metric, "libarena")
            if arena and "glibc" in allocs:
                s = summary(per_run_ratio(arena, d.get(scen, var, metric, "glibc"), 1024))
                if s:
                    notes.append("%s libarena ÷ glibc %s" % (name, fmt_sum(s)))
            if arena and peers:
                s = summary(per_run_ratio(arena, best_peer_by_run(d, scen, var, metric, peers),
                                          1024))
                if s:
                    notes.append("%s libarena ÷ smallest peer %s" % (name, fmt_sum(s)))
        if notes:
            w("Memory ratios (run by run): " + "; ".join(notes) + ".")
            w("")
        w("![larson](%s)" % img("bench-larson-%s.png" % var))
        w("")
        write_syscalls(d, w, scen, [var], allocs)


def section_tstress(d, w, cells, allocs, peers):
    w("## tstress: rounds of short-lived threads passing objects around")
    w("")
    for scen, var, _, modes in cells:
        allocs_n = summary(d.get(scen, var, "allocs", allocs[0]).values()) if allocs else None
        thr = summary(d.get(scen, var, "threads_started", allocs[0]).values()) if allocs else None
        w("Rounds of %s threads, started together and joined (%s threads in all, about %s "
          "allocations).  Each thread allocates batches of 1..64 objects (99%% of 8..512 "
          "bytes, 1%% of 513..8192 bytes, every byte written), keeps them in a local array of "
          "bounded size (a random old one is freed when it is full), and after each batch "
          "swaps 1..4 of them with random slots of a shared transfer array "
          "(`atomic_exchange`); what comes back is freed or kept, half and half.  A thread "
          "frees what it holds when it ends; the transfer array's objects live on into later "
          "rounds, and the main thread frees them at the very end.  Time is wall time over "
          "all rounds (thread starts included) divided by the allocations.  *peak* is VmHWM, "
          "*end* the RSS after everything was freed, both counted from the RSS before the "
          "first round." % (var, "{:,}".format(int(thr[0])) if thr else "?",
                             "{:,}".format(int(allocs_n[0])) if allocs_n else "?"))
        w("")
        cols = [("wall_ms", "wall ms", 1.0), ("ns_per_alloc", "ns/alloc", 1.0),
                ("heap_peak_kib", "RSS peak MiB", 1 / 1024.0),
                ("heap_end_kib", "RSS end MiB", 1 / 1024.0)]
        w("Lower is better; the ratios are of the wall time, run by run.")
        w("")
        w(alloc_table(d, scen, var, allocs, peers, cols, "wall_ms"))
        w("")
        write_syscalls(d, w, scen, [var], allocs)


def section_rounds(d, w, cells, allocs, peers, img):
    w("## rounds: batches of work, then idle")
    w("")
    c0 = cells[0]
    n = summary(d.get("rounds", c0[1], "objects", allocs[0]).values()) if allocs else None
    r = summary(d.get("rounds", c0[1], "rounds", allocs[0]).values()) if allocs else None
    wt = summary(d.get("rounds", c0[1], "wait_ms", allocs[0]).values()) if allocs else None
    nr = int(r[0]) if r else 0
    w("%s rounds of: allocate %s blocks of 16..512 bytes (uniform, every byte written), then "
      "free them all, in allocation order (`alloc`) or in one fixed random order "
      "(`random`).  Then the program idles for %s ms and reads RSS every 100 ms.  *Round k* "
      "is the time of the whole round (allocate, write, free) per object; round 1 pays "
      "for fresh pages, later rounds show whether the allocator kept them or must fault "
      "them in again.  RSS figures are counted from the RSS before the first block: *peak* "
      "is VmHWM, *after free* right after the last free, *after wait* at the end of the idle "
      "time; *held* = that / peak.  The cell `purger` is `alloc` with the environment "
      "variable `ARENA_PURGER=1` set for libarena only (its background purger; the peers "
      "run the same cell unchanged, so their rows there are a repeat of `alloc`)." % (
          nr or "?", "{:,}".format(int(n[0])) if n else "?",
          "%d" % wt[0] if wt else "?"))
    w("")
    for scen, var, _, _ in cells:
        w("### rounds %s" % var)
        w("")
        rcols = [("round%d_ns_per_obj" % (k + 1), "round %d" % (k + 1), 1.0) for k in range(nr)]
        w("ns per object in each round (lower is better); the ratios are of the mean over "
          "all rounds, run by run:")
        w("")
        w(alloc_table(d, scen, var, allocs, peers,
                      rcols + [("ns_per_obj", "all rounds", 1.0)], "ns_per_obj"))
        w("")
        cols = [("heap_peak_kib", "RSS peak MiB", 1 / 1024.0),
                ("heap_after_free_kib", "after free MiB", 1 / 1024.0),
                ("held_pct_now", "held % now", 1.0),
                ("heap_after_wait_kib", "after wait MiB", 1 / 1024.0),
                ("held_pct_after_wait", "held % after wait", 1.0)]
        w("Memory (lower is better); the ratios are of the RSS after the wait, run by run, "
          "left out where the divisor holds under 1 MiB:")
        w("")
        w(alloc_table(d, scen, var, allocs, peers, cols, "heap_after_wait_kib", min_den=1024))
        w("")
    w("![rounds: ns per object per round](%s)" % img("bench-rounds-ns.png"))
    w("")
    w("![rounds: RSS after the last free](%s)" % img("bench-rounds-rss.png"))
    w("")
    write_syscalls(d, w, "rounds", [c[1] for c in cells], allocs)


def section_heapdestroy(d, w, cells, allocs):
    w("## heapdestroy: a heap of objects freed at once")
    w("")
    for scen, var, _, _ in cells:
        n = summary(d.get(scen, var, "objects", allocs[0]).values()) if allocs else None
        w("%s blocks of 16..512 bytes (uniform, every byte written) in one `arena_heap`, "
          "then `arena_heap_destroy`: its time (*destroy*), and RSS right after it, counted "
          "from the RSS before the heap.  *floor*: as many bytes as the heap made resident, "
          "mapped with `mmap` in 4 KiB pages (transparent huge pages off while they fault "
          "in, like libarena's 256 KiB arenas), every byte written, then given back with one "
          "`munmap`: the kernel's own cost for that memory, measured in the same process "
          "right after the destroy (its `mmap` and `munmap` are the harness's, left out of "
          "the system call counts).  "
          "*heap frees*: the same blocks in a new heap, freed one by one with `arena_free`; "
          "the memory goes back only with the destroy of the emptied heap that follows "
          "(*+ destroy*).  *free one by one*: the same blocks from the allocator's ordinary "
          "`malloc`/`arena_alloc`, freed one by one (every allocator; its *floor* is for "
          "the bytes that made resident).  Ratios are taken run by run, then summarised."
          % ("{:,}".format(int(n[0])) if n else "?"))
        w("")
        if "libarena" in allocs and d.get(scen, var, "destroy_ms", "libarena"):
            cols = [("destroy_ms", "destroy ms", 1.0),
                    ("floor_ms", "floor ms", 1.0),
                    ("destroy_per_floor", "destroy ÷ floor", 1.0),
                    ("heap_free_ms", "heap frees ms", 1.0),
                    ("heap_free_destroy_ms", "+ destroy ms", 1.0),
                    ("destroy_per_heap_free", "destroy ÷ heap frees", 1.0),
                    ("free_ms", "free one by one ms", 1.0),
                    ("destroy_per_free", "destroy ÷ free one by one", 1.0)]
            w("libarena, time (median, min–max; lower is better):")
            w("")
            w(table([c[1] for c in cols],
                    [[fmt_sum(summary(d.get(scen, var, m, "libarena").values()), k)
                      for m, _, k in cols]], ["r"] * len(cols)))
            w("")
            cols = [("heap_full_kib", "heap resident MiB", 1 / 1024.0),
                    ("heap_after_destroy_kib", "RSS after destroy − before, KiB", 1.0),
                    ("destroy_munmap_calls", "munmap calls in the destroy", 1.0)]
            w("libarena, memory:")
            w("")
            w(table([c[1] for c in cols],
                    [[fmt_sum(summary(d.get(scen, var, m, "libarena").values()), k)
                      for m, _, k in cols]], ["r"] * len(cols)))
            w("")
        cols = [("free_ms", "free one by one ms", 1.0),
                ("free_ns_per_obj", "ns/object", 1.0),
                ("floor_ms", "floor ms", 1.0),
                ("floor_kib", "floor MiB", 1 / 1024.0)]
        w("Every allocator, freeing the same blocks one by one (lower is better):")
        w("")
        w(table(["allocator"] + [c[1] for c in cols],
                [[a] + [fmt_sum(summary(d.get(scen, var, m, a).values()), k) for m, _, k in cols]
                 for a in allocs]))
        w("")
        write_syscalls(d, w, scen, [var], allocs)


def section_method(w, cells, runs, mode):
    w("## How it is measured")
    w("")
    w("- One workload source, `bench/suite/bench.c`, is compiled with the same flags "
      "into `bench-arena`, which calls `arena_alloc` / `arena_free` / `arena_realloc` and is "
      "linked with libarena (static library), and `bench-malloc`, which calls `malloc` / "
      "`free` / `realloc`.  glibc is `bench-malloc` run plainly; jemalloc, tcmalloc and "
      "mimalloc are `bench-malloc` run with `LD_PRELOAD` set to the peer's shared library "
      "(paths below).  Every run is its own process, so no two allocators share a "
      "process; each run checks which allocator actually answered `malloc` and stops on "
      "a mismatch.  A third build, `bench-null`, calls an allocator that does nothing; "
      "it is only used as the callgrind baseline.")
    w("- Sizes and choices come from a splitmix64 generator with fixed seeds: every "
      "allocator sees exactly the same sequence of sizes and slots (in the threaded "
      "scenarios, each thread's own sequence; which objects meet in `server` and "
      "`tstress` depends on timing).  Every block is written (its first and last byte; "
      "every byte in `tstress` and `rounds`) and read back before it is freed.")
    w("- An argument `env:NAME=VALUE` in the table below is not passed to the program: "
      "it is set in libarena's environment only, and the peers run the cell without it.")
    w("- Each cell (scenario × allocator) runs %d times.  Runs are interleaved: run 1 of "
      "every cell for every allocator (libarena, glibc, jemalloc, tcmalloc, mimalloc in "
      "turn), then run 2, and so on, so slow phases of a noisy machine hit all "
      "allocators alike.  Tables give the median with (min–max)." % runs)
    w("- libarena is called directly and linked statically, the peers through the PLT "
      "of a shared library: a call or two of difference per pair.")
    w("- Scenario sizes in this mode:")
    w("")
    w(table(["scenario", "variant", "arguments"],
            [[s, v, "`%s`" % modes[mode]] for s, v, _, modes in cells], ["l", "l", "l"]))
    w("")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("plan")
    p.add_argument("mode", choices=["default", "quick", "tiny"])
    p = sub.add_parser("smoke")
    p.add_argument("binary")
    p.add_argument("scenario")
    p = sub.add_parser("strace")
    p.add_argument("file")
    p.add_argument("scenario")
    p.add_argument("variant")
    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--machine")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--img", required=True)
    p.add_argument("--mode", default="default")
    p.add_argument("--elapsed")
    p.add_argument("--raw-label", help="how the report names the raw CSV")
    args = ap.parse_args(argv)
    if args.cmd == "plan":
        return cmd_plan(args)
    if args.cmd == "smoke":
        return cmd_smoke(args)
    if args.cmd == "strace":
        return cmd_strace(args)
    if args.cmd == "report":
        return cmd_report(args)
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
