#!/bin/sh
# Fuzz libarena for a bounded time with the libFuzzer target
# tests/checked/fuzz.c (clang, AddressSanitizer + UBSan, checked build).
#
# usage: sh tests/checked/fuzz.sh
#
# Environment:
#   FUZZ_SECONDS  how long to fuzz (default 60; CI: at most 120)
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

root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-$root/build-fuzz}
cc=${FUZZ_CC:-clang}

case $seconds in
    ''|*[!0-9]*) echo "fuzz.sh: FUZZ_SECONDS must be a number of seconds" >&2; exit 2 ;;
esac

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

echo "step 3 of 3: fuzzing for $seconds s from $nseeds seeds (libFuzzer prints a line per new input and at 2^n executions)"
status=0
start=$(date +%s)
ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    "$build/tests/checked/fuzz-arena" \
    -max_total_time="$seconds" -max_len=2048 -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/" \
    "$work/corpus" >"$work/fuzz.log" 2>&1 &
pid=$!
# Show libFuzzer's log while it runs (progress), then collect the status.
tail -n +1 -f "$work/fuzz.log" --pid="$pid" 2>/dev/null || true
wait "$pid" || status=$?
elapsed=$(($(date +%s) - start))

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/fuzz.log" | tail -n 1)
ncorpus=$(ls "$work/corpus" | wc -l)
echo "fuzz: ${execs:-?} executions in $elapsed s (${rate:-?} per second), corpus $nseeds -> $ncorpus inputs"

if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED (libFuzzer exit status $status); log and crashing input kept in $work:" >&2
    ls "$work" | grep -v '^corpus$' | sed "s|^|    $work/|" >&2
    exit 1
fi
rm -rf "$work"
echo "fuzz: OK, no crash"
