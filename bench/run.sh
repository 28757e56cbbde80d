#!/usr/bin/env bash
# bench/run.sh — build and run the libarena benchmark suite against glibc,
# jemalloc, tcmalloc and mimalloc, then write docs/benchmarks.md with charts.
#
#   bench/run.sh              full run (about 10 minutes on 2 cores)
#   bench/run.sh --quick      small sizes, 3 runs (about 2 minutes)
#   bench/run.sh --help       all options
#
#   bench/run.sh --only heapdestroy --runs 5 --no-callgrind --out FILE
#                             arena_heap_destroy of 1M objects against the
#                             kernel's munmap floor and per-object frees
#
# Every run of a workload is its own process: bench-arena for libarena,
# bench-malloc plain for glibc, bench-malloc with LD_PRELOAD=<peer> for the
# others.  Runs are interleaved across allocators; see docs/benchmarks.md.
# Cells come from `report.py plan MODE`; an argument env:NAME=VALUE there is
# set in libarena's environment only (the peers run the cell without it).
# Then an untimed pass runs every cell once per allocator under strace to
# count the backend system calls, and callgrind counts instructions of the
# fixed loop for every allocator and for bench-null (no allocator at all).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=build-bench
MODE=default
RUNS=
OUT=docs/benchmarks.md
IMG=docs/img
ALLOCS="libarena,glibc,jemalloc,tcmalloc,mimalloc"
ONLY=
CALLGRIND=1
SYSCALLS=1
INSTALL=0
TIMEOUT=300

usage() {
    cat <<EOF
usage: bench/run.sh [options]
  --quick              small sizes and 3 runs per cell (about 2 minutes)
  --runs N             runs per cell (default 5, --quick 3)
  --build-dir DIR      meson build directory (default build-bench, release build)
  --out FILE           markdown report (default docs/benchmarks.md)
  --img DIR            where the PNG charts go (default docs/img)
  --allocators LIST    comma-separated subset of: libarena,glibc,jemalloc,tcmalloc,mimalloc
  --only LIST          comma-separated scenarios (fixed,churn,burst,survivors,
                       realloc,threads,xthread,server,larson,tstress,rounds,
                       heapdestroy)
  --no-callgrind       skip the instruction counts
  --no-syscalls        skip the strace pass (backend system call counts)
  --install            apt-get install what is missing (only as root)
  -h, --help           this text
Relative paths are taken from the repository root.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --runs) RUNS=$2; shift ;;
        --build-dir) BUILD=$2; shift ;;
        --out) OUT=$2; shift ;;
        --img) IMG=$2; shift ;;
        --allocators) ALLOCS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-callgrind) CALLGRIND=0 ;;
        --no-syscalls) SYSCALLS=0 ;;
        --install) INSTALL=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[ -n "$RUNS" ] || { [ "$MODE" = quick ] && RUNS=3 || RUNS=5; }
case "$RUNS" in ''|*[!0-9]*|0) echo "run.sh: --runs needs a positive number" >&2; exit 2 ;; esac

cd "$ROOT"
START=$(date +%s)
say() { printf 'run.sh: %s\n' "$*"; }

# ---------------------------------------------------------------- tools
ARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)

# Path of a shared library by soname: ldconfig's cache, then known places.
find_lib() {
    local so=$1 p
    p=$(ldconfig -p 2>/dev/null | awk -v s="$so" '$1 == s && !f { print $NF; f = 1 }')
    if [ -n "$p" ] && [ -e "$p" ]; then echo "$p"; return 0; fi
    for p in "/usr/lib/$ARCH/$so" "/lib/$ARCH/$so" "/usr/lib64/$so" "/usr/lib/$so"; do
        if [ -e "$p" ]; then echo "$p"; return 0; fi
    done
    return 1
}

peer_soname() {
    case "$1" in
        jemalloc) echo libjemalloc.so.2 ;;
        tcmalloc) echo libtcmalloc_minimal.so.4 ;;
        mimalloc) echo libmimalloc.so.2 ;;
    esac
}
peer_pkg() {
    case "$1" in
        jemalloc) echo libjemalloc-dev ;;
        tcmalloc) echo libgoogle-perftools-dev ;;
        mimalloc) echo libmimalloc-dev ;;
    esac
}

missing_pkgs=()
command -v meson >/dev/null || missing_pkgs+=(meson)
command -v ninja >/dev/null || missing_pkgs+=(ninja-build)
command -v cc >/dev/null || missing_pkgs+=(gcc)
command -v python3 >/dev/null || missing_pkgs+=(python3)
command -v gnuplot >/dev/null || missing_pkgs+=(gnuplot-nox)
[ "$CALLGRIND" = 0 ] || command -v valgrind >/dev/null || missing_pkgs+=(valgrind)
[ "$SYSCALLS" = 0 ] || command -v strace >/dev/null || missing_pkgs+=(strace)
IFS=, read -r -a want <<<"$ALLOCS"
for a in "${want[@]}"; do
    case "$a" in
        libarena|glibc) ;;
        jemalloc|tcmalloc|mimalloc) find_lib "$(peer_soname "$a")" >/dev/null || missing_pkgs+=("$(peer_pkg "$a")") ;;
        *) echo "run.sh: unknown allocator $a" >&2; exit 2 ;;
    esac
done
if [ ${#missing_pkgs[@]} -gt 0 ]; then
    say "missing: ${missing_pkgs[*]}"
    if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing with apt-get: ${missing_pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null
    else
        say "(install them with: apt-get install ${missing_pkgs[*]}; or run as root with --install)"
    fi
fi
for t in meson ninja cc python3; do
    command -v "$t" >/dev/null || { echo "run.sh: $t is required" >&2; exit 1; }
done
HAVE_GNUPLOT=1; command -v gnuplot >/dev/null || { HAVE_GNUPLOT=0; say "gnuplot missing: the report will have no charts"; }
if [ "$CALLGRIND" = 1 ] && ! command -v valgrind >/dev/null; then
    say "valgrind missing: skipping the instruction counts"; CALLGRIND=0
fi
if [ "$SYSCALLS" = 1 ] && ! command -v strace >/dev/null; then
    say "strace missing: skipping the system call counts"; SYSCALLS=0
fi
# --seccomp-bpf stops the program only on the traced calls; where the kernel
# or a container refuses it, strace stops on every call (slower, same counts).
STRACE_OPTS=(-f)
if [ "$SYSCALLS" = 1 ]; then
    if strace -f --seccomp-bpf -o /dev/null -e trace=getppid true 2>/dev/null; then
        STRACE_OPTS+=(--seccomp-bpf)
    else
        say "strace --seccomp-bpf not available: tracing without it (slower)"
    fi
fi

# ---------------------------------------------------------------- build
if [ ! -f "$BUILD/build.ninja" ]; then
    say "meson setup $BUILD (release)"
    meson setup "$BUILD" -Dbuildtype=release -Dbench=true -Dtests=disabled >"$BUILD.setup.log" 2>&1 || {
        cat "$BUILD.setup.log" >&2; echo "run.sh: meson setup failed" >&2; exit 1; }
    mv "$BUILD.setup.log" "$BUILD/bench-setup.log"
fi
BUILDTYPE=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"))' 2>/dev/null || echo unknown)
[ "$BUILDTYPE" = release ] || say "warning: $BUILD has buildtype=$BUILDTYPE, not release (use a fresh --build-dir)"
say "compiling bench-malloc, bench-null and bench-arena in $BUILD"
meson compile -C "$BUILD" bench-malloc bench-null >"$BUILD/bench-compile.log" 2>&1 || {
    cat "$BUILD/bench-compile.log" >&2; echo "run.sh: cannot build bench-malloc and bench-null" >&2; exit 1; }
BUILD_ABS=$(cd "$BUILD" && pwd)
BIN_MALLOC="$BUILD_ABS/bench/suite/bench-malloc"
BIN_NULL="$BUILD_ABS/bench/suite/bench-null"
BIN_ARENA="$BUILD_ABS/bench/suite/bench-arena"
[ -x "$BIN_MALLOC" ] || { echo "run.sh: $BIN_MALLOC was not built (is the meson option bench off?)" >&2; exit 1; }
if [[ ",$ALLOCS," == *,libarena,* ]]; then
    if ! meson compile -C "$BUILD" bench-arena >>"$BUILD/bench-compile.log" 2>&1 || [ ! -x "$BIN_ARENA" ]; then
        tail -n 30 "$BUILD/bench-compile.log" >&2
        say "libarena does not build: measuring the peers only (log: $BUILD/bench-compile.log)"
        ALLOCS=$(echo ",$ALLOCS," | sed 's/,libarena,/,/; s/^,//; s/,$//')
    fi
fi

# ---------------------------------------------------------------- allocators
declare -A PRELOAD BIN
ALIST=()
IFS=, read -r -a want <<<"$ALLOCS"
for a in libarena glibc jemalloc tcmalloc mimalloc; do
    [[ " ${want[*]} " == *" $a "* ]] || continue
    case "$a" in
        libarena) BIN[$a]=$BIN_ARENA; PRELOAD[$a]= ;;
        glibc) BIN[$a]=$BIN_MALLOC; PRELOAD[$a]= ;;
        *)
            if lib=$(find_lib "$(peer_soname "$a")"); then
                BIN[$a]=$BIN_MALLOC; PRELOAD[$a]=$lib
            else
                say "$a: $(peer_soname "$a") not found, skipped (apt-get install $(peer_pkg "$a"))"
                continue
            fi ;;
    esac
    ALIST+=("$a")
done
[ ${#ALIST[@]} -gt 0 ] || { echo "run.sh: no allocator to measure" >&2; exit 1; }
say "allocators: ${ALIST[*]}"

# ---------------------------------------------------------------- plan
WORK="$BUILD_ABS/bench-results"
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/callgrind" "$WORK/strace"
RESULTS="$WORK/results.txt"
: >"$RESULTS"
REPORT_PY="$ROOT/bench/suite/report.py"

CELLS=()
CG_ARGS=()
CG_SIZE=
while read -r scen var rest; do
    if [ "$scen" = callgrind ]; then
        CG_SIZE=$var
        read -r -a CG_ARGS <<<"$rest"
        continue
    fi
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$scen,"* ]]; then continue; fi
    CELLS+=("$scen $var $rest")
done < <(python3 "$REPORT_PY" plan "$MODE")
[ ${#CELLS[@]} -gt 0 ] || { echo "run.sh: no scenario selected" >&2; exit 2; }

TOTAL=$(( ${#CELLS[@]} * ${#ALIST[@]} * RUNS ))
[ "$SYSCALLS" = 0 ] || TOTAL=$(( TOTAL + ${#CELLS[@]} * ${#ALIST[@]} ))
[ "$CALLGRIND" = 0 ] || TOTAL=$(( TOTAL + 2 * (${#ALIST[@]} + 1) ))
STEP=0
FAILED=0
T0=$SECONDS     # the step lines show the seconds since the runs began

# ---------------------------------------------------------------- machine
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'nproc\t%s\n' "$(nproc)"
    printf 'memory\t%s\n' "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    hyp=$(lscpu 2>/dev/null | awk -F': *' '/^Hypervisor vendor/ && !f { print $2; f = 1 }')
    [ -n "$hyp" ] || { grep -qw hypervisor /proc/cpuinfo && hyp="unknown hypervisor"; } || true
    printf 'virtualisation\t%s\n' "${hyp:-none}$(c=$(systemd-detect-virt --container 2>/dev/null) && echo ", container: $c")"
    printf 'load average at start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'kernel\t%s\n' "$(uname -sr)"
    printf 'os\t%s\n' "$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
    printf 'transparent hugepages\t%s\n' "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo '?')"
    printf 'glibc\t%s\n' "$(ldd --version 2>/dev/null | sed -n '1s/^ldd //p')"
    printf 'compiler\t%s\n' "$(cc --version | sed -n 1p)"
    printf 'build\t%s\n' "meson $(meson --version), buildtype=$BUILDTYPE"
    printf 'libarena\t%s\n' "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'not a git checkout')"
    env | grep '^ARENA_' | sed 's/^/environment\t/' || true
    for a in jemalloc tcmalloc mimalloc; do
        [ -n "${PRELOAD[$a]:-}" ] || continue
        real=$(readlink -f "${PRELOAD[$a]}")
        pkg=$(dpkg-query -S "$real" 2>/dev/null | sed -n '1s/:.*//p' || true)
        ver=
        if [ -n "$pkg" ]; then ver=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || true); fi
        printf '%s\t%s\n' "$a" "LD_PRELOAD=${PRELOAD[$a]}${pkg:+ (Debian $pkg $ver)}"
    done
    [ "$CALLGRIND" = 0 ] || printf 'valgrind\t%s\n' "$(valgrind --version)"
    [ "$SYSCALLS" = 0 ] || printf 'strace\t%s\n' "$(strace -V | sed -n 1p)"
    printf 'command\t%s\n' "bench/run.sh --runs $RUNS${ONLY:+ --only $ONLY}$([ "$MODE" = quick ] && echo ' --quick')$([ "$SYSCALLS" = 1 ] || echo ' --no-syscalls')$([ "$CALLGRIND" = 1 ] || echo ' --no-callgrind')"
} >"$WORK/machine.txt"

# ---------------------------------------------------------------- runs
# cell_command ALLOC SCENARIO ARGS...: fills CMD with the command that runs
# the cell for ALLOC: LD_PRELOAD for a peer, the env:NAME=VALUE arguments as
# environment variables for libarena (dropped for the peers).
cell_command() {
    local a=$1 scen=$2; shift 2
    local envs=() args=() x
    for x in "$@"; do
        case "$x" in
            env:*=*) envs+=("${x#env:}") ;;
            *) args+=("$x") ;;
        esac
    done
    CMD=(env)
    [ -z "${PRELOAD[$a]}" ] || CMD+=("LD_PRELOAD=${PRELOAD[$a]}")
    [ "$a" != libarena ] || CMD+=(${envs[@]+"${envs[@]}"})
    CMD+=("${BIN[$a]}" "$scen" ${args[@]+"${args[@]}"})
}

# run_one ALLOC RUN SCENARIO VARIANT ARGS...
run_one() {
    local a=$1 r=$2 scen=$3 var=$4; shift 4
    local log="$WORK/logs/$scen-$var-$a-$r"
    STEP=$((STEP + 1))
    printf 'step %d of %d (%ds): %s %s / %s / run %d of %d\n' "$STEP" "$TOTAL" $((SECONDS - T0)) "$scen" "$var" "$a" "$r" "$RUNS"
    local rc=0
    cell_command "$a" "$scen" "$@"
    timeout "$TIMEOUT" "${CMD[@]}" >"$log.out" 2>"$log.err" || rc=$?
    local got
    got=$(awk '$1 == "info" && $2 == "allocator" { print $3 }' "$log.out")
    if [ "$rc" != 0 ] || ! grep -q '^info done 1$' "$log.out"; then
        echo "  FAILED (exit $rc): $(tail -n 3 "$log.err" | tr '\n' ' ')" >&2
        FAILED=$((FAILED + 1)); return 0
    fi
    if [ "$got" != "$a" ]; then
        echo "  FAILED: the allocator that answered was '$got', not $a (LD_PRELOAD=${PRELOAD[$a]})" >&2
        FAILED=$((FAILED + 1)); return 0
    fi
    awk -v a="$a" -v r="$r" '{ print a, r, $0 }' "$log.out" >>"$RESULTS"
}

for ((r = 1; r <= RUNS; r++)); do
    for cell in "${CELLS[@]}"; do
        read -r -a c <<<"$cell"
        for a in "${ALIST[@]}"; do
            run_one "$a" "$r" "${c[@]}"
        done
    done
done

# ---------------------------------------------------------------- strace
# One more run of every cell per allocator, untimed, under strace: the
# backend system calls between the program's two getppid() marks (see
# report.py strace for what is counted).
if [ "$SYSCALLS" = 1 ]; then
    for cell in "${CELLS[@]}"; do
        read -r -a c <<<"$cell"
        for a in "${ALIST[@]}"; do
            STEP=$((STEP + 1))
            printf 'step %d of %d (%ds): strace %s %s / %s\n' "$STEP" "$TOTAL" $((SECONDS - T0)) "${c[0]}" "${c[1]}" "$a"
            out="$WORK/strace/${c[0]}-${c[1]}-$a"
            cell_command "$a" "${c[0]}" "${c[@]:2}"
            if timeout "$TIMEOUT" strace "${STRACE_OPTS[@]}" -o "$out.trace" \
                    -e trace=mmap,munmap,madvise,brk,mremap,mprotect,getppid \
                    "${CMD[@]}" >"$out.out" 2>"$out.err" &&
               grep -q "^info allocator $a\$" "$out.out" &&
               python3 "$REPORT_PY" strace "$out.trace" "${c[0]}" "${c[1]}" >"$out.counts"; then
                awk -v a="$a" '{ print a, 0, $0 }' "$out.counts" >>"$RESULTS"
                rm -f "$out.trace"
            else
                echo "  FAILED: strace on ${c[0]} ${c[1]} / $a (see $out.err)" >&2
                FAILED=$((FAILED + 1))
            fi
        done
    done
fi

# ---------------------------------------------------------------- callgrind
# The fixed loop under callgrind for every allocator and for bench-null (the
# same loop calling an allocator that does nothing), which report.py
# subtracts.
if [ "$CALLGRIND" = 1 ]; then
    BIN[null]=$BIN_NULL
    PRELOAD[null]=
    for a in "${ALIST[@]}" null; do
        for args in "${CG_ARGS[0]} ${CG_ARGS[1]}" "${CG_ARGS[2]} ${CG_ARGS[3]}"; do
            STEP=$((STEP + 1))
            n=${args##*n=}
            printf 'step %d of %d (%ds): callgrind fixed %s n=%s / %s\n' "$STEP" "$TOTAL" $((SECONDS - T0)) "$CG_SIZE" "$n" "$a"
            out="$WORK/callgrind/callgrind.$a.$n"
            # shellcheck disable=SC2086
            if LD_PRELOAD="${PRELOAD[$a]}" timeout "$TIMEOUT" valgrind --tool=callgrind \
                    --callgrind-out-file="$out.out" "${BIN[$a]}" fixed $args \
                    >"$out.stdout" 2>"$out.log" &&
               grep -q "^info allocator $a\$" "$out.stdout"; then
                ir=$(awk '$1 == "totals:" { print $2; exit }' "$out.out")
                [ -n "$ir" ] || ir=$(awk '$1 == "summary:" { print $2; exit }' "$out.out")
                # instructions spent in the loop function itself (not in the allocator)
                loop=$(callgrind_annotate "$out.out" 2>/dev/null |
                       awk '$0 ~ /:run_fixed / && !f { gsub(",", "", $1); print $1; f = 1 }')
                echo "$a 1 callgrind $n $ir ${loop:--1}" >>"$RESULTS"
            else
                echo "  FAILED: callgrind on $a (log: $out.log)" >&2
                FAILED=$((FAILED + 1))
            fi
        done
    done
fi

# ---------------------------------------------------------------- report
ELAPSED=$(( $(date +%s) - START ))
if [ "$ELAPSED" -ge 60 ]; then ELAPSED_TXT="$((ELAPSED / 60)) min $((ELAPSED % 60)) s"; else ELAPSED_TXT="$ELAPSED s"; fi
mkdir -p "$(dirname "$OUT")" "$IMG"
if [ "$HAVE_GNUPLOT" = 0 ]; then say "no gnuplot: charts skipped"; fi
python3 "$REPORT_PY" report --results "$RESULTS" --machine "$WORK/machine.txt" \
    --work "$WORK" --out "$OUT" --img "$IMG" --mode "$MODE" --elapsed "$ELAPSED_TXT" \
    --raw-label "$BUILD/bench-results/results.csv"
say "raw results: $WORK/results.csv"
say "done in $ELAPSED_TXT, $FAILED failed step(s)"
[ "$FAILED" = 0 ]
