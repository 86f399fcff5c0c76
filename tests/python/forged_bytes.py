"""Bytes posing as objects of many types, in the blocks of program-written bytes a region's str and
bytearray objects own (proof.c, BLOCKS THAT ONLY LOOK LIKE OBJECTS), then one of the operations that
read a region's objects.  A crash is the failure: run in a child process by test_proof.py.

    PYTHONPATH=build/python .venv/bin/python tests/python/forged_bytes.py SEED ROUNDS

Each round makes a region holding 1-29 such buffers - a bytearray, a str subclass's characters, or
a bytearray subclass's buffer - beside a few ordinary containers.  Each buffer starts with a header
for a random type of the interpreter, at a random one of the three offsets an object may start at in
its block, with a count of 1, 2 or 2^20 and random words after it: zero, small numbers, unmapped
addresses, addresses of live objects (and 8 or 16 bytes off them), of types, random bits.  Then one
of: the fast proof, r.check(), r.freeze(), the audit, r.objects(); then r.close().
"""
import collections
import random
import struct
import sys

import region
from region import _region


class Node:
    def __init__(self):
        self.a = 1


class Latin(str):
    pass


class Buffer(bytearray):
    pass


def main():
    seed, rounds = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    live = [Node(), [1], {"a": 1}, (1, 2), "s", 1.5, 10**20, b"b", frozenset([1]), collections.deque([1])]
    types = [list, dict, tuple, set, frozenset, collections.deque, Node, int, float, str, bytes, range, slice,
             bytearray, Latin, Buffer, type, object, memoryview, type(main), type(iter([])), complex]
    struct.pack("4Q", 0, 0, 0, 0)   # struct's cache of formats is made here, outside the regions

    def word():
        kind = rng.randrange(8)
        if kind == 0:
            return 0
        if kind == 1:
            return rng.randrange(1, 64)
        if kind == 2:
            return 0x1000 * rng.randrange(1, 16)
        if kind == 3:
            return id(rng.choice(live)) + rng.choice([0, 8, 16, -16])
        if kind == 4:
            return id(rng.choice(types))
        if kind == 5:
            return rng.getrandbits(64)
        if kind == 6:
            return (1 << 63) | rng.getrandbits(20)
        return rng.randrange(1, 1 << 20)

    def forged():
        start = rng.choice([0, 16, 32])
        words = [word() for _ in range(start // 8)] + [rng.choice([1, 1, 2, 1 << 20]), id(rng.choice(types))]
        words += [word() for _ in range(rng.randrange(0, 10))]
        raw = struct.pack(f"{len(words)}Q", *words)
        holder = rng.choice([bytearray, Latin, Buffer])
        return Latin("".join(map(chr, raw))) if holder is Latin else holder(raw)

    for _ in range(rounds):
        r = region.region("forged")
        with r:
            items = [forged() for _ in range(rng.randrange(1, 30))]
            items += [[j, str(j), {"k": (j, j / 2)}] for j in range(rng.randrange(0, 20))]
            r.root = items
            del items
        operation = rng.choice(["proof", "check", "freeze", "audit", "objects"])
        try:
            if operation == "proof":
                _region._proven_isolated(r)
            elif operation == "check":
                r.check()
            elif operation == "freeze":
                r.freeze()
            elif operation == "audit":
                _region._audit(r)
            else:
                r.objects()
        except region.RegionError:
            pass   # freeze() refuses some of the objects; the read happened all the same
        r.close()
    print("survived", seed, rounds)


if __name__ == "__main__":
    main()
