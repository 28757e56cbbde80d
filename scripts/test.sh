#!/bin/sh
# Build libarena and run every test: the whole suite with gcc, a clang build
# with warnings as errors, the suites under ASan+UBSan, valgrind memcheck and
# ThreadSanitizer, the checked and valgrind-annotated builds' misuse tests, a
# bounded fuzzing run, and a release build.  Each step says what it does.
# Ends with one line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
sh scripts/deps.sh test || exit 1

steps=9
passed=0
failed=0
status=0

# run_suite DIR [meson test args...]: run meson test, add up its results.
run_suite() {
  dir=$1; shift
  meson test -C "$dir" --print-errorlogs "$@" >"$dir/test-output.txt" 2>&1
  rc=$?
  tail -n 12 "$dir/test-output.txt" | grep -E '^(Ok|Fail|Skipped|Timeout|Expected Fail|Unexpected Pass):' || true
  ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$dir/test-output.txt" | tail -n 1)
  ef=$(sed -n 's/^Expected Fail: *\([0-9]*\).*/\1/p' "$dir/test-output.txt" | tail -n 1)
  bad=0
  for k in Fail Timeout 'Unexpected Pass'; do
    n=$(sed -n "s/^$k: *\([0-9]*\).*/\1/p" "$dir/test-output.txt" | tail -n 1)
    bad=$((bad + ${n:-0}))
  done
  passed=$((passed + ${ok:-0} + ${ef:-0}))
  failed=$((failed + bad))
  if [ "$rc" -ne 0 ]; then
    [ "$bad" -eq 0 ] && failed=$((failed + 1))
    status=1
    grep -E '^ *[0-9]+/[0-9]+ .*(FAIL|TIMEOUT|ERROR)' "$dir/test-output.txt" || true
    echo "    (full log: $dir/test-output.txt and $dir/meson-logs/testlog.txt)"
  fi
}

setup() {  # setup DIR CC [meson args...]
  dir=$1; compiler=$2; shift 2
  if [ ! -d "$dir" ]; then
    CC=$compiler meson setup "$dir" "$@" >"/tmp/libarena-setup-$$.log" 2>&1 ||
      { cat "/tmp/libarena-setup-$$.log"; return 1; }
  fi
  ninja -C "$dir" >"$dir/ninja-output.txt" 2>&1 || { cat "$dir/ninja-output.txt"; return 1; }
}

step=0
next_step() { step=$((step + 1)); echo "step $step of $steps: $*"; }

next_step "gcc build and the whole test suite (build-test)"
if setup build-test gcc; then run_suite build-test; else status=1; failed=$((failed + 1)); fi

next_step "clang build, -Wall -Wextra -Werror (build-clang)"
if setup build-clang clang; then passed=$((passed + 1)); echo "clang build: ok"; else status=1; failed=$((failed + 1)); fi

next_step "core, stress and hardening suites under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan)"
if setup build-asan gcc -Db_sanitize=address,undefined -Db_lundef=false; then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_suite build-asan --suite core --suite stress --suite checked --timeout-multiplier 3
else status=1; failed=$((failed + 1)); fi

next_step "core suite under valgrind memcheck (build-test)"
run_suite build-test --suite core --timeout-multiplier 10 \
  --wrapper "valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"

next_step "stress suite under ThreadSanitizer (build-tsan)"
if setup build-tsan clang -Db_sanitize=thread -Db_lundef=false -Dbench=false; then
  TSAN_OPTIONS=halt_on_error=1:allocator_may_return_null=1 run_suite build-tsan --suite tsan --timeout-multiplier 3
else status=1; failed=$((failed + 1)); fi

next_step "checked build: misuse is reported (build-checked)"
if setup build-checked gcc -Dchecked=true -Dbench=false; then
  run_suite build-checked --suite core --suite checked
else status=1; failed=$((failed + 1)); fi

next_step "valgrind build: memcheck sees libarena blocks (build-valgrind)"
if setup build-valgrind gcc -Dvalgrind=true -Dbench=false; then
  run_suite build-valgrind --suite checked
else status=1; failed=$((failed + 1)); fi

next_step "bounded fuzzing run (tests/checked/fuzz.sh)"
if [ -f tests/checked/fuzz.sh ]; then
  if sh tests/checked/fuzz.sh; then passed=$((passed + 1)); else status=1; failed=$((failed + 1)); fi
else
  echo "tests/checked/fuzz.sh not present: skipped"
fi

next_step "release build compiles (build-release)"
if setup build-release gcc --buildtype=release -Dtests=false; then passed=$((passed + 1)); echo "release build: ok"; else status=1; failed=$((failed + 1)); fi

echo
echo "$passed passed, $failed failed"
exit $status
