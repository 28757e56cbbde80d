#!/usr/bin/env python3
"""The request-scoped heap server of docs/heaps.md.

    check_example.py doc DOC SOURCE   the doc's C example is SOURCE, verbatim
    check_example.py run BINARY       requests in, the expected replies out

`doc`: the first ```c block of DOC that starts with SOURCE's first line
must equal SOURCE.  `run`: feeds a few request lines (an empty one, odd
spacing, 600 distinct words that make the reply grow by realloc inside
the heap) and compares every reply line, then checks the server's last
line on stderr: every heap destroyed, nothing left mapped.
Only the Python standard library is used.
"""
import re
import subprocess
import sys


def reply(line):
    words = line.split()
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return " ".join(["%d words:" % len(words)] + ["%s=%d" % kv for kv in counts.items()])


def check_doc(doc, source):
    with open(source) as f:
        code = f.read()
    first = code.splitlines()[0]
    with open(doc) as f:
        text = f.read()
    for block in re.findall(r"```c\n(.*?)```", text, re.S):
        if block.splitlines()[0] == first:
            if block == code:
                print("PASS: the example in %s is %s" % (doc, source))
                return 0
            import difflib
            sys.stdout.writelines(difflib.unified_diff(
                code.splitlines(True), block.splitlines(True), source, doc))
            print("FAIL: the example in %s differs from %s" % (doc, source))
            return 1
    print("FAIL: no ```c block in %s starts with %r" % (doc, first))
    return 1


def check_run(binary):
    lines = ["to be or not to be", "", "  spaces   everywhere  ",
             " ".join("w%d" % (i % 600) for i in range(700)),
             "the cat saw the other cat"]
    p = subprocess.run([binary], input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=60)
    want = [reply(l) for l in lines]
    got = p.stdout.splitlines()
    ok = p.returncode == 0 and got == want
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    want_last = "server: %d requests, 0 heaps left, 0 bytes mapped" % len(lines)
    if last != want_last:
        ok = False
    if not ok:
        print("exit status %d" % p.returncode)
        for i, (w, g) in enumerate(zip(want, got + [""] * len(want))):
            if w != g:
                print("line %d: expected %r\n        got      %r" % (i + 1, w[:200], g[:200]))
        print("stderr: %r (expected last line %r)" % (p.stderr, want_last))
        print("FAIL")
        return 1
    print("PASS: %d requests answered, every heap destroyed, nothing left mapped" % len(lines))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "doc":
        return check_doc(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "run":
        return check_run(argv[1])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
