#!/bin/sh
# Fuzz libarena for a bounded time with the libFuzzer target
# tests/checked/fuzz.c (clang, AddressSanitizer + UBSan, checked build).
#
# usage: sh tests/checked/fuzz.sh              fuzz for FUZZ_SECONDS (60 s)
#        sh tests/checked/fuzz.sh --long N     fuzz until N million executions
#
# The long mode has no time limit: libFuzzer stops after N million
# executions (-runs=), and the script prints a progress line (executions
# so far out of the total) every FUZZ_PROGRESS seconds (default 60) on top
# of libFuzzer's own log.
#
# Environment:
#   FUZZ_SECONDS  how long to fuzz without --long (default 60; CI: at most 120)
#   FUZZ_RSS_MB   libFuzzer's -rss_limit_mb: an input whose run takes the
#                 process above this many MiB is reported as a crash
#                 (default 2048)
#   FUZZ_PROGRESS seconds between the progress lines of --long (default 60)
#   FUZZ_BUILD    build directory (default build-fuzz in the source tree);
#                 configured with clang, -Db_sanitize=address,undefined and
#                 -Dchecked=true when it does not exist yet
#   FUZZ_CC       the compiler for a new build directory (default clang)
#
# The seed corpus tests/checked/corpus/ is copied to a scratch directory,
# so the source tree is left alone.  Exits 0 when the time ran out without
# a crash; otherwise non-zero, and the crashing input is kept (its path is
# printed; replay it with the fuzz-arena or fuzz-replay binary).
set -eu

usage() {
    echo "usage: sh tests/checked/fuzz.sh [--long N]   (N: millions of executions)" >&2
    exit 2
}

root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-$root/build-fuzz}
cc=${FUZZ_CC:-clang}
rss_mb=${FUZZ_RSS_MB:-2048}
progress=${FUZZ_PROGRESS:-60}
millions=

while [ $# -gt 0 ]; do
    case $1 in
        --long)
            [ $# -ge 2 ] || usage
            millions=$2
            shift 2 ;;
        *) usage ;;
    esac
done

number() {
    case $2 in
        ''|*[!0-9]*|0) echo "fuzz.sh: $1 must be a positive whole number, not '$2'" >&2; exit 2 ;;
    esac
}
number FUZZ_RSS_MB "$rss_mb"
if [ -n "$millions" ]; then
    number "--long" "$millions"
    number FUZZ_PROGRESS "$progress"
    runs=$((millions * 1000000))
    limit="-runs=$runs"
    what="until $millions million executions"
else
    number FUZZ_SECONDS "$seconds"
    limit="-max_total_time=$seconds"
    what="for $seconds s"
fi

if [ ! -f "$build/build.ninja" ]; then
    echo "step 1 of 3: configuring $build ($cc, address+undefined sanitizers, checked build)"
    CC=$cc meson setup "$build" "$root" \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dchecked=true -Dbench=false >"$root/.fuzz-setup.log" 2>&1 || {
        cat "$root/.fuzz-setup.log" >&2
        rm -f "$root/.fuzz-setup.log"
        echo "fuzz.sh: meson setup failed" >&2
        exit 2
    }
    rm -f "$root/.fuzz-setup.log"
else
    echo "step 1 of 3: using the existing build directory $build"
fi

echo "step 2 of 3: building the fuzz target"
if ! ninja -C "$build" tests/checked/fuzz-arena >/dev/null; then
    ninja -C "$build" tests/checked/fuzz-arena >&2 || true
    echo "fuzz.sh: could not build tests/checked/fuzz-arena in $build" >&2
    echo "         (it needs clang with libFuzzer and -Db_sanitize=address)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/libarena-fuzz.XXXXXX")
mkdir "$work/corpus"
cp "$root"/tests/checked/corpus/* "$work/corpus/"
nseeds=$(ls "$work/corpus" | wc -l)

echo "step 3 of 3: fuzzing $what from $nseeds seeds, RSS limit $rss_mb MiB (libFuzzer prints a line per new input and at 2^n executions)"
status=0
start=$(date +%s)
ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    "$build/tests/checked/fuzz-arena" \
    "$limit" -max_len=2048 -timeout=20 -rss_limit_mb="$rss_mb" \
    -print_final_stats=1 -artifact_prefix="$work/" \
    "$work/corpus" >"$work/fuzz.log" 2>&1 &
pid=$!

# The executions so far: the count of libFuzzer's last status line
# ("#123456  pulse ...", "#123457  NEW ...").
execs_so_far() {
    sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$work/fuzz.log" | tail -n 1
}

# The long mode: a progress line every $progress seconds while it runs.
ticker=
if [ -n "$millions" ]; then
    (
        i=0
        steps=0
        while kill -0 "$pid" 2>/dev/null; do
            t=0
            while [ "$t" -lt "$progress" ] && kill -0 "$pid" 2>/dev/null; do
                sleep 1
                t=$((t + 1))
            done
            kill -0 "$pid" 2>/dev/null || break
            i=$((i + 1))
            n=$(execs_so_far)
            n=${n:-0}
            elapsed=$(($(date +%s) - start))
            # steps: the whole run in progress intervals, at the rate so far
            if [ "$n" -gt 0 ]; then
                steps=$(( (runs * elapsed / n + progress - 1) / progress ))
                [ "$steps" -ge "$i" ] || steps=$i
            else
                steps=$i
            fi
            echo "fuzz: step $i of ~$steps: $n of $runs executions after $elapsed s"
        done
    ) &
    ticker=$!
fi

# Show libFuzzer's log while it runs (progress), then collect the status.
tail -n +1 -f "$work/fuzz.log" --pid="$pid" 2>/dev/null || true
wait "$pid" || status=$?
if [ -n "$ticker" ]; then
    wait "$ticker" 2>/dev/null || true   # it ends within a second of libFuzzer
fi
elapsed=$(($(date +%s) - start))

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/fuzz.log" | tail -n 1)
ncorpus=$(ls "$work/corpus" | wc -l)
echo "fuzz: ${execs:-?} executions in $elapsed s (${rate:-?} per second), corpus $nseeds -> $ncorpus inputs"
if [ -n "$millions" ] && [ "$status" -eq 0 ] && [ "${execs:-0}" -lt "$runs" ]; then
    echo "fuzz: FAILED: libFuzzer stopped after ${execs:-?} of $runs executions; log kept in $work/fuzz.log" >&2
    exit 1
fi

if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED (libFuzzer exit status $status); log and crashing input kept in $work:" >&2
    ls "$work" | grep -v '^corpus$' | sed "s|^|    $work/|" >&2
    exit 1
fi
rm -rf "$work"
echo "fuzz: OK, no crash"
