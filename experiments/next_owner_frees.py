"""What a region costs its next owner when that owner frees objects the previous one made
(docs/design.md, "Letting go").

    PYTHONPATH=build/python .venv/bin/python experiments/next_owner_frees.py [--items N] [--ping-pong N]

The main thread fills a region with N items (a list, a str, a dict and a tuple each) and releases it;
another thread acquires it, deletes every other item, and closes it.  Printed: the delete's and the
close's ms, and whether the isolation proof alone proved the region isolated (when it cannot, close
runs the audit, which walks the object graph).

With --ping-pong N, what letting go costs a small region instead: two threads pass a region of 50
items back and forth N times (each turn: acquire, append an item and pop the first in a block,
release, and a queue to the other thread), and the µs per transfer is printed.
"""
import argparse
import queue
import threading
import time

import region
from region import _region


def ping_pong(transfers):
    r = region.region("passed")
    with r:
        r.root = [[i, str(i)] for i in range(50)]
    r.release()
    turns = [queue.Queue(), queue.Queue()]

    def player(me):
        for step in range(me, transfers, 2):
            turns[me].get()
            assert r.acquire()
            with r:
                r.root.append((step,))
                r.root.pop(0)
            r.release()
            turns[1 - me].put(None)

    players = [threading.Thread(target=player, args=(me,)) for me in (0, 1)]
    for p in players:
        p.start()
    t0 = time.perf_counter()
    turns[0].put(None)
    for p in players:
        p.join()
    print(f"{(time.perf_counter() - t0) / transfers * 1e6:.1f} µs a transfer")
    assert r.acquire()
    r.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--ping-pong", type=int, metavar="N")
    args = parser.parse_args()
    if args.ping_pong:
        ping_pong(args.ping_pong)
        return
    r = region.region("handed")
    with r:
        r.root = [[i, str(i) * 3, {"k": i}, (i, i + 1.5)] for i in range(args.items)]
    r.release()

    def next_owner():
        assert r.acquire()
        t0 = time.perf_counter()
        with r:
            del r.root[::2]
        t1 = time.perf_counter()
        proven = _region._proven_isolated(r)
        t2 = time.perf_counter()
        r.close()
        t3 = time.perf_counter()
        print(f"delete {(t1 - t0) * 1e3:.1f} ms, close {(t3 - t2) * 1e3:.1f} ms, proven by the proof alone: {proven}")

    thread = threading.Thread(target=next_owner)
    thread.start()
    thread.join()


if __name__ == "__main__":
    main()
