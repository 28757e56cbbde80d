#!/bin/sh
# Build libarena and run arena-demo: the memory story, mmap vs brk vs glibc.
# Extra arguments go to arena-demo (try --help).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh demo
[ -d build ] || meson setup build --buildtype=release -Dtests=disabled >/dev/null
ninja -C build bench/demo/arena-demo >/dev/null
if [ $# -eq 0 ]; then set -- --plot demo.png; fi
exec build/bench/demo/arena-demo "$@"
