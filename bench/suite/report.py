#!/usr/bin/env python3
"""The libarena benchmark suite's planner, smoke test and report writer.

    report.py plan MODE                 cells to run: "SCENARIO VARIANT ARGS..."
                                        (MODE: default, quick or tiny)
    report.py smoke BINARY SCENARIO     run every cell of SCENARIO once with
                                        tiny sizes; check the output parses
    report.py report [options]          results.txt -> CSV, charts, markdown

bench/run.sh drives it; bench/suite/meson.build runs the smoke tests.
Only the Python standard library is used.
"""

import argparse
import csv
import math
import os
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
]

# Lengths of the fixed loop (size 64) run under callgrind.
CALLGRIND_N = {"default": (100000, 200000), "quick": (20000, 40000), "tiny": (1000, 2000)}

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
}
METRICS["survivors"] = METRICS["burst"] + ["live_objects", "live_kib", "after_free_per_live",
                                           "heap_after_all_kib"]
ARENA_METRICS = ["calls_mmap", "calls_munmap", "calls_madvise", "calls_brk",
                 "arena_mapped_peak_kib"]
SERIES_SCENARIOS = ("burst", "survivors")


def cmd_plan(args):
    for scen, var, _, modes in CELLS:
        print(scen, var, modes[args.mode])
    n1, n2 = CALLGRIND_N[args.mode]
    print("callgrind", "64", "size=64 n=%d" % n1, "size=64 n=%d" % n2)
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
        if len(fields) != 6 or fields[3] not in ("alloc", "free"):
            raise ParseError("bad series line: %s" % line)
        return ("series", fields[1], fields[2], fields[3],
                parse_number(fields[4], line), parse_number(fields[5], line))
    if kind == "callgrind":     # callgrind N IR [LOOP_IR]  (written by run.sh)
        if len(fields) not in (3, 4):
            raise ParseError("bad callgrind line: %s" % line)
        loop = int(parse_number(fields[3], line)) if len(fields) == 4 else -1
        return ("callgrind", int(parse_number(fields[1], line)), int(parse_number(fields[2], line)),
                loop)
    raise ParseError("unknown line: %s" % line)


def check_output(text, scen, var, expect_arena):
    """Problems found in one run's output (empty list: fine)."""
    problems = []
    info = {}
    results = {}
    series = {"alloc": 0, "free": 0}
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
    elif expect_arena and info["allocator"] != "libarena":
        problems.append("allocator is %s, expected libarena" % info["allocator"])
    wanted = list(METRICS[scen]) + (ARENA_METRICS if expect_arena else [])
    for m in wanted:
        if m not in results:
            problems.append("metric %s missing" % m)
        elif results[m] < 0 and not m.startswith("heap_"):
            problems.append("metric %s is negative: %g" % (m, results[m]))
    if scen in SERIES_SCENARIOS and (series["alloc"] == 0 or series["free"] == 0):
        problems.append("no RSS series")
    return problems


def cmd_smoke(args):
    expect_arena = os.path.basename(args.binary).startswith("bench-arena")
    cells = [c for c in CELLS if c[0] == args.scenario]
    if not cells:
        print("unknown scenario %s" % args.scenario)
        return 1
    failed = 0
    for scen, var, _, modes in cells:
        cmd = [args.binary, scen] + modes["tiny"].split()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=50)
        except subprocess.TimeoutExpired:
            print("FAIL %s: timed out" % " ".join(cmd))
            failed += 1
            continue
        problems = [] if p.returncode == 0 else ["exit status %d: %s" % (p.returncode, p.stderr.strip())]
        problems += check_output(p.stdout, scen, var, expect_arena)
        if problems:
            failed += 1
            print("FAIL %s" % " ".join(cmd))
            for pr in problems:
                print("  " + pr)
        else:
            print("ok   %s" % " ".join(cmd))
    return 1 if failed else 0


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
                w.writerow(["callgrind", "64", alloc, 1, "Ir_n%d" % n, d.callgrind[alloc][n], "Ir"])
                w.writerow(["callgrind", "64", alloc, 1, "Ir_loop_n%d" % n,
                            d.cg_loop.get(alloc, {}).get(n, -1), "Ir"])


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


def best_peer_by_run(d, scen, var, metric, peers):
    """Per run: the lowest value among the peers that ran in that run."""
    best = {}
    for p in peers:
        for r, v in d.get(scen, var, metric, p).items():
            if r not in best or v < best[r]:
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
    script = """set terminal pngcairo size 1400,600 font "sans,10"
set output %s
set title "Time per operation (median of runs; bars: min-max; lower is better)"
set ylabel "ns per alloc+free pair (per object for burst, per op for realloc)"
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set yrange [0:*]
set xtics nomirror
plot %s
""" % (gp_quote(png), ", \\\n     ".join(plots))
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
set key top left
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
    for scen, var, metric, _ in cells:
        label = "%s %s" % (scen, var)
        unit = {"ns_per_pair": "ns/pair", "ns_per_obj": "ns/object", "ns_per_op": "ns/op"}[metric]
        if scen == "threads":
            label = "threads T=%s (wall)" % var
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
    w(table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2)))
    w("")
    w("![time per operation](%s)" % img("bench-ns.png"))
    w("")

    # ---- callgrind ----
    if d.callgrind:
        w("## Instructions per alloc+free pair (callgrind)")
        w("")
        w("The `fixed` loop (size 64) run under `valgrind --tool=callgrind` with two loop "
          "lengths n1 and n2; instructions per pair = (Ir(n2) − Ir(n1)) / (n2 − n1), so "
          "start-up and the warm-up cancel.  A pair includes the loop itself and the two "
          "byte writes, the same for every allocator; the last column leaves out the "
          "instructions of the loop function itself (from `callgrind_annotate`), so it "
          "counts only the allocator's code.")
        w("")
        rows = []
        cg_per = {}
        for a in allocs:
            c = d.callgrind.get(a)
            if not c or len(c) < 2:
                rows.append([a, "—", "—", "—", "—"])
                continue
            n1, n2 = sorted(c)[:2]
            per = (c[n2] - c[n1]) / float(n2 - n1)
            cg_per[a] = per
            lp = d.cg_loop.get(a, {})
            alloc_only = "—"
            if lp.get(n1, -1) >= 0 and lp.get(n2, -1) >= 0:
                alloc_only = "%.1f" % (per - (lp[n2] - lp[n1]) / float(n2 - n1))
            rows.append([a, "%d" % c[n1], "%d" % c[n2], "%.1f" % per, alloc_only])
        ns = sorted({n for c in d.callgrind.values() for n in c})
        h = ["allocator", "Ir (n=%d)" % ns[0] if ns else "Ir (n1)",
             "Ir (n=%d)" % ns[1] if len(ns) > 1 else "Ir (n2)", "instructions per pair",
             "in the allocator"]
        w(table(h, rows))
        if "libarena" in cg_per and "glibc" in cg_per:
            w("")
            w("libarena / glibc: %.2f" % (cg_per["libarena"] / cg_per["glibc"]) +
              ("; libarena / best peer: %.2f" % (cg_per["libarena"] /
               min(cg_per[p] for p in peers if p in cg_per))
               if any(p in cg_per for p in peers) else "") + ".")
        w("")

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
    ok = chart_ns(d, cells, allocs, args.work, os.path.join(args.img, "bench-ns.png"))
    if ts:
        ok &= chart_threads(d, ts, allocs, args.work, os.path.join(args.img, "bench-threads.png"))
    for scen, var, _, _ in mem_cells:
        title = "%s %s: RSS while allocating, then freeing (run 1)" % (scen, var)
        ok &= chart_rss(d, scen, var, allocs, args.work,
                        os.path.join(args.img, "bench-rss-%s-%s.png" % (scen, var)), title)
    print("report: wrote %s%s" % (args.out, "" if ok else " (some charts missing)"))

    # a short summary on stdout for the person running it
    print("")
    print("\n".join(L[L.index("## Time per operation"):][:len(cells) + 6]))
    return 0


def cells_with_data(d):
    return [c for c in CELLS if any(k[0] == c[0] and k[1] == c[1] for k in d.res)]


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


def section_method(w, cells, runs, mode):
    w("## How it is measured")
    w("")
    w("- One workload source, `bench/suite/bench.c`, is compiled twice with the same "
      "flags: `bench-arena` calls `arena_alloc` / `arena_free` / `arena_realloc` and is "
      "linked with libarena (static library); `bench-malloc` calls `malloc` / `free` / "
      "`realloc`.  glibc is `bench-malloc` run plainly; jemalloc, tcmalloc and mimalloc "
      "are `bench-malloc` run with `LD_PRELOAD` set to the peer's shared library (paths "
      "below).  Every run is its own process, so no two allocators share a process; "
      "each run checks which allocator actually answered `malloc` and stops on a mismatch.")
    w("- Sizes and choices come from a splitmix64 generator with fixed seeds: every "
      "allocator sees exactly the same sequence of sizes and slots.  Every block is "
      "written (first and last byte) and read back before it is freed.")
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
    if args.cmd == "report":
        return cmd_report(args)
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
