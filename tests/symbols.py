#!/usr/bin/env python3
"""Checks what the shared libraries export; run by meson test ('symbols').

usage: symbols.py ARENA_H LIBARENA_SO LIBARENA_MALLOC_SO

  libarena.so         exactly the functions include/arena.h declares with
                      ARENA_API, each at version LIBARENA_1; soname
                      libarena.so.1
  libarena-malloc.so  exactly those plus the malloc family, unversioned
                      (a versioned malloc would not replace glibc's);
                      soname libarena-malloc.so.1

The dynamic symbols come from `nm -D --defined-only`, the soname from
`readelf -d` (binutils).  Exits 77 (skipped) when nm or readelf is missing.
Standard library only.
"""
import re
import shutil
import subprocess
import sys

MALLOC_FAMILY = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
    "malloc_trim",
}
VERSION_NODE = "LIBARENA_1"
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def api_functions(header):
    """The names declared with ARENA_API in arena.h."""
    with open(header) as f:
        text = f.read()
    names = set(re.findall(r"^ARENA_API\b[^;(]*?\b(arena_\w+)\s*\(", text, re.M))
    check(len(names) > 0, "%s declares ARENA_API functions (%d)" % (header, len(names)))
    return names


def exported(lib):
    """{name: version or None} of the defined dynamic symbols, without the
    version nodes themselves (type A)."""
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        kind, name = parts[1], parts[2]
        if kind == "A":
            continue
        version = None
        if "@" in name:
            name, _, version = name.partition("@")
            version = version.lstrip("@")
        syms[name] = version
    return syms


def soname(lib):
    out = subprocess.run(["readelf", "-d", lib], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^]]+)\]", out)
    return m.group(1) if m else None


def compare(lib, syms, expected):
    extra = sorted(set(syms) - expected)
    missing = sorted(expected - set(syms))
    print("%s exports %d symbols: %s" % (lib, len(syms), " ".join(sorted(syms))))
    check(not extra, "%s: no unexpected export%s" % (lib, (": " + " ".join(extra)) if extra else ""))
    check(not missing, "%s: nothing missing%s" % (lib, (": " + " ".join(missing)) if missing else ""))


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    header, lib, malloc_lib = sys.argv[1:]
    for tool in ("nm", "readelf"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed (binutils)" % tool)
            return 77
    api = api_functions(header)

    syms = exported(lib)
    compare(lib, syms, api)
    wrong = sorted(n for n, v in syms.items() if n in api and v != VERSION_NODE)
    check(not wrong, "%s: every arena_* symbol at version %s%s"
          % (lib, VERSION_NODE, (", not: " + " ".join(wrong)) if wrong else ""))
    name = soname(lib)
    check(name == "libarena.so.1", "%s: soname libarena.so.1 (%s)" % (lib, name))

    syms = exported(malloc_lib)
    compare(malloc_lib, syms, api | MALLOC_FAMILY)
    versioned = sorted(n for n, v in syms.items() if v is not None)
    check(not versioned, "%s: no symbol versions (they would stop malloc from "
          "replacing glibc's)%s" % (malloc_lib, (": " + " ".join(versioned)) if versioned else ""))
    name = soname(malloc_lib)
    check(name == "libarena-malloc.so.1",
          "%s: soname libarena-malloc.so.1 (%s)" % (malloc_lib, name))

    print("symbols: %d failing" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
