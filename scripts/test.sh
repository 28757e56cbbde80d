#!/bin/sh
# Build libarena in every configuration and run the whole test suite in
# each, with nothing selected by hand: gcc, clang (warnings are errors),
# ASan+UBSan, ThreadSanitizer, the checked build, the valgrind-annotated
# build, the gcc build again under valgrind memcheck (meson test --wrap),
# then a bounded fuzzing run and a release build with its source tarball.
# A test whose measurement cannot hold in a configuration reports SKIP with
# its reason (see the test logs).  Each step says what it does; the script
# ends with one line "N passed, N failed, N skipped" (tests; a step that
# only builds counts as one).
#
# Build directories: build-test, build-clang, build-asan, build-tsan,
# build-checked, build-valgrind, build-fuzz, build-release.  An existing one
# is reused when it was set up with the same options, otherwise set up again.
set -u
cd "$(dirname "$0")/.."
sh scripts/deps.sh test || exit 1

steps=9
passed=0
failed=0
skipped=0
status=0
start=$(date +%s)

# count KEY FILE: the number on the last "KEY: n" line of meson test's summary.
count() {
  n=$(sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$2" | tail -n 1)
  echo "${n:-0}"
}

# run_tests DIR TAG [meson test args...]: run meson test, show each skipped
# test with the reason it printed ("SKIP: ..."), add up the results.  The
# output goes to DIR/test-output-TAG.txt, the full log to
# DIR/meson-logs/testlog-TAG.txt (testlog-TAG-valgrind.txt with --wrap).
run_tests() {
  dir=$1; tag=$2; shift 2
  log=test-output-$tag.txt
  meson test -C "$dir" --print-errorlogs --logbase "testlog-$tag" "$@" >"$dir/$log" 2>&1
  rc=$?
  awk '/^test: / { name = $0; sub(/^test: *[^ ]* \/ /, "", name) }
       /^SKIP: / && name != "" { sub(/^SKIP: /, ""); print "    skipped " name ": " $0; name = "" }' \
    "$dir/meson-logs/testlog-$tag"*.txt 2>/dev/null || true
  tail -n 12 "$dir/$log" | grep -E '^(Ok|Fail|Skipped|Timeout|Expected Fail|Unexpected Pass):' |
    tr -s ' ' | paste -sd' ' - | sed 's/^/    /'
  bad=$(( $(count Fail "$dir/$log") + $(count Timeout "$dir/$log") + $(count 'Unexpected Pass' "$dir/$log") ))
  passed=$((passed + $(count Ok "$dir/$log") + $(count 'Expected Fail' "$dir/$log")))
  skipped=$((skipped + $(count Skipped "$dir/$log")))
  failed=$((failed + bad))
  if [ "$rc" -ne 0 ]; then
    [ "$bad" -eq 0 ] && failed=$((failed + 1))
    status=1
    grep -E '^ *[0-9]+/[0-9]+ .*(FAIL|TIMEOUT|ERROR)' "$dir/$log" || true
    echo "    (full log: $dir/$log and $dir/meson-logs/testlog-$tag*.txt)"
  fi
}

# setup DIR CC [meson setup args...]: configure (unless DIR already has
# exactly this configuration) and build.
setup() {
  dir=$1; compiler=$2; shift 2
  want="CC=$compiler $*"
  if [ -f "$dir/build.ninja" ] && [ "$(cat "$dir/.test-sh-setup" 2>/dev/null)" != "$want" ]; then
    echo "    $dir was set up differently: setting it up again"
    rm -rf "$dir"
  fi
  if [ ! -f "$dir/build.ninja" ]; then
    rm -rf "$dir"
    CC=$compiler meson setup "$dir" "$@" >"/tmp/libarena-setup-$$.log" 2>&1 ||
      { cat "/tmp/libarena-setup-$$.log"; rm -f "/tmp/libarena-setup-$$.log"; return 1; }
    rm -f "/tmp/libarena-setup-$$.log"
    echo "$want" >"$dir/.test-sh-setup"
  fi
  ninja -C "$dir" >"$dir/ninja-output.txt" 2>&1 || { cat "$dir/ninja-output.txt"; return 1; }
}

step=0
next_step() { step=$((step + 1)); echo "step $step of $steps: $* ($(( $(date +%s) - start )) s so far)"; }
broken() { status=1; failed=$((failed + 1)); }

# Sanitizer reports fail the test that triggers them.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

next_step "gcc, default options: meson test (build-test)"
if setup build-test gcc; then run_tests build-test gcc; else broken; fi

next_step "clang, warnings as errors: meson test (build-clang)"
if setup build-clang clang --werror; then run_tests build-clang clang; else broken; fi

next_step "AddressSanitizer + UndefinedBehaviorSanitizer: meson test (build-asan)"
if setup build-asan gcc -Db_sanitize=address,undefined; then
  run_tests build-asan asan
else broken; fi

next_step "ThreadSanitizer: meson test (build-tsan)"
if setup build-tsan gcc -Db_sanitize=thread; then
  run_tests build-tsan tsan
else broken; fi

next_step "checked build (-Dchecked=true): meson test (build-checked)"
if setup build-checked gcc -Dchecked=true; then run_tests build-checked checked; else broken; fi

next_step "valgrind-annotated build (-Dvalgrind=true): meson test (build-valgrind)"
if setup build-valgrind gcc -Dvalgrind=true; then run_tests build-valgrind valgrind-build; else broken; fi

next_step "every test of build-test under valgrind memcheck: meson test --wrap=valgrind"
if [ -f build-test/build.ninja ]; then
  run_tests build-test memcheck --timeout-multiplier 3 \
    --wrap='valgrind --error-exitcode=1'
else broken; fi

next_step "bounded fuzzing run, ${FUZZ_SECONDS:-60} s (tests/checked/fuzz.sh, build-fuzz)"
fuzz_log=$(mktemp "${TMPDIR:-/tmp}/libarena-fuzz-log.XXXXXX")
if sh tests/checked/fuzz.sh >"$fuzz_log" 2>&1; then fuzz_ok=1; else fuzz_ok=0; fi
if [ -d build-fuzz ]; then mv "$fuzz_log" build-fuzz/fuzz-output.txt; fuzz_log=build-fuzz/fuzz-output.txt; fi
if [ "$fuzz_ok" -eq 1 ]; then
  passed=$((passed + 1)); tail -n 2 "$fuzz_log" | sed 's/^/    /'
else
  broken; tail -n 20 "$fuzz_log"; echo "    (full log: $fuzz_log)"
fi

next_step "release build without tests, and the source tarball (build-release, meson dist --no-tests)"
if setup build-release gcc --buildtype=release -Dtests=disabled; then
  passed=$((passed + 1)); echo "    release build: ok"
  if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || ! git rev-parse --git-dir >/dev/null 2>&1; then
    skipped=$((skipped + 1)); echo "    meson dist: skipped (not a git checkout, or uncommitted changes)"
  elif meson dist -C build-release --no-tests >build-release/dist-output.txt 2>&1; then
    passed=$((passed + 1)); grep '^Created' build-release/dist-output.txt | sed 's/^/    /'
  else
    broken; cat build-release/dist-output.txt
  fi
else broken; fi

echo
echo "$(( $(date +%s) - start )) s in all"
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
