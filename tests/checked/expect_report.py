#!/usr/bin/env python3
"""Run a command and check the report a sanitizer or valgrind printed.

usage: expect_report.py [--exit CODE|nonzero] [--expect TEXT]... [--reject TEXT]...
                        [--same-address MARKER] -- CMD ARGS...

Passes (exit 0) when the command's exit status matches --exit (default:
nonzero), every --expect text occurs in its combined stdout and stderr,
and no --reject text does.  With --same-address, the program prints
MARKER followed by an address (0x...) and the tool's report must name that
same address too (compared without regard to case).  The command's output
is echoed, so the test log shows the real report.
"""
import argparse
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exit", default="nonzero",
                    help="expected exit status: a number or 'nonzero'")
    ap.add_argument("--expect", action="append", default=[],
                    help="text that must appear in the output")
    ap.add_argument("--reject", action="append", default=[],
                    help="text that must not appear in the output")
    ap.add_argument("--same-address", metavar="MARKER",
                    help="the address printed after MARKER must appear in the report")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no command given")

    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300)
    out = proc.stdout.decode("utf-8", "replace")
    print("$ " + " ".join(cmd))
    print(out, end="" if out.endswith("\n") else "\n")
    print("exit status: %d" % proc.returncode)

    problems = []
    if args.exit == "nonzero":
        if proc.returncode == 0:
            problems.append("expected a nonzero exit status, got 0")
    elif proc.returncode != int(args.exit):
        problems.append("expected exit status %s, got %d" % (args.exit, proc.returncode))
    for text in args.expect:
        if text not in out:
            problems.append("missing from the output: %r" % text)
    for text in args.reject:
        if text in out:
            problems.append("present in the output: %r" % text)
    if args.same_address:
        m = re.search(re.escape(args.same_address) + r"\s*(0x[0-9a-fA-F]+)", out)
        if m is None:
            problems.append("the program printed no address after %r" % args.same_address)
        else:
            addr = m.group(1).lower()
            if out.lower().count(addr) < 2:
                problems.append("the report does not name the address %s" % addr)
    for p in problems:
        print("FAIL: " + p)
    if not problems:
        print("OK: %d expected texts found" % len(args.expect))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
