#!/usr/bin/env python3
"""Write the seed corpus of the libarena fuzz target (tests/checked/corpus/).

Each seed is a small program in the byte language of fuzz.c.  Run it again
after changing that language:  python3 tests/checked/make_corpus.py
"""
import os
import struct

ALLOC, BIG, CALLOC, REALLOC, FREE, WRITE, VERIFY, USABLE, RELEASE, BURST, REMOTE, BADCALLOC = range(12)


def alloc(slot, size):
    return bytes([ALLOC, slot]) + struct.pack("<H", size)


def big(slot, extra):
    return bytes([BIG, slot]) + struct.pack("<H", extra)


def calloc(slot, n, size):
    return bytes([CALLOC, slot, n]) + struct.pack("<H", size)


def realloc(slot, size):
    return bytes([REALLOC, slot]) + struct.pack("<H", size)


def free(slot):
    return bytes([FREE, slot])


def write(slot, tag):
    return bytes([WRITE, slot, tag])


def usable(slot):
    return bytes([USABLE, slot])


def burst(n, size):
    return bytes([BURST, n]) + struct.pack("<H", size)


def remote(slot):
    return bytes([REMOTE, slot])


VERIFY_ALL = bytes([VERIFY])
RELEASE_ALL = bytes([RELEASE])
BAD_CALLOC = bytes([BADCALLOC])


def seeds():
    # Every size class and the first large sizes, with usable-size checks.
    s = b""
    for i, size in enumerate(range(0, 601, 17)):
        s += alloc(i % 64, size) + usable(i % 64)
    s += VERIFY_ALL
    for i in range(64):
        s += free(i)
    yield "01-classes", s

    # Growing and shrinking one block across classes and into large.
    s = alloc(0, 1)
    for size in (17, 100, 512, 513, 699, 40, 0, 300, 16):
        s += realloc(0, size) + usable(0)
    s += realloc(1, 48) + realloc(1, 600) + realloc(1, 8)
    yield "02-realloc", s + VERIFY_ALL

    # calloc of various shapes, and one whose size overflows.
    s = b""
    for i, (n, size) in enumerate(((1, 0), (0, 5), (3, 16), (16, 32), (7, 99), (16, 99))):
        s += calloc(i, n, size) + write(i, 0x30 + i)
    yield "03-calloc", s + BAD_CALLOC + VERIFY_ALL

    # Blocks freed by another thread, then their pools reused.
    s = b""
    for i in range(40):
        s += alloc(i, 48 if i % 2 else 200)
    for i in range(0, 40, 2):
        s += remote(i)
    for i in range(0, 40, 2):
        s += alloc(i, 48)
    for i in range(1, 40, 2):
        s += remote(i)
    yield "04-remote", s + VERIFY_ALL

    # Bursts that fill and empty pools, then a release.
    s = burst(63, 48) + burst(63, 512) + burst(63, 16) + RELEASE_ALL
    s += alloc(3, 64) + burst(40, 64) + RELEASE_ALL + usable(3)
    yield "05-burst-release", s

    # Large blocks, and moves between large and small.
    s = big(0, 1000) + big(1, 40000) + realloc(0, 100) + realloc(1, 650)
    s += big(2, 0) + free(1) + realloc(2, 20)
    yield "06-large", s + VERIFY_ALL

    # A whole table of one class: free half, refill, rewrite, free remotely.
    s = b""
    for i in range(64):
        s += alloc(i, 48)
    for i in range(0, 64, 2):
        s += free(i)
    for i in range(0, 64, 2):
        s += alloc(i, 48) + write(i, i)
    for i in range(64):
        s += remote(i) if i % 3 == 0 else free(i)
    yield "07-one-class", s + RELEASE_ALL


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
        print("%-24s %5d bytes" % ("seed-" + name, len(data)))


if __name__ == "__main__":
    main()
