#!/bin/sh
# Install the Debian packages libarena's commands need, if any are missing.
# Usage: scripts/deps.sh demo|test|bench
set -eu

base="gcc clang meson ninja-build pkg-config python3"
case "${1:-test}" in
  demo)  pkgs="$base gnuplot-nox" ;;
  test)  pkgs="$base libclang-rt-14-dev libcmocka-dev gnuplot-nox valgrind sqlite3 redis-server redis-tools prometheus" ;;
  bench) pkgs="$base libcmocka-dev gnuplot-nox valgrind libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev" ;;
  *) echo "usage: $0 demo|test|bench" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "libarena: installing missing packages:$missing"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
