"""The bocpy hand-over of bench/transfer_bench.py, in a module of its own: bocpy runs the source of the
module that calls @when in each of its worker interpreters, which must not import the benchmark's
helpers (they are not on those interpreters' path).  Imports only the standard library and bocpy."""
import time

from bocpy import Cown, receive, send, wait, when


def hand_over(value):
    """Puts value in a Cown and has a behavior, in one of bocpy's worker interpreters, read all of it.
    Returns (the reader's checksum, seconds from the Cown's creation until the behavior holds the
    value, and until the end of its read)."""
    start = time.perf_counter()
    cown = Cown(value)

    @when(cown)
    def reader(cown):
        # bench/transfer_bench.py's read(), inline: a behavior carries only its own source.
        g, total = cown.value, 0
        received = time.perf_counter()
        if isinstance(g, list) and g and isinstance(g[0], dict):
            total = sum(d["id"] + len(d["name"]) + d["pair"][0] for d in g)
        elif isinstance(g, dict):
            total = sum(v[0] + len(v[2]) for v in g.values())
        else:
            stack = [g]
            while stack:
                node = stack.pop()
                if node is not None:
                    total += node[2]
                    stack.append(node[0])
                    stack.append(node[1])
        send("done", (total, received, time.perf_counter()))
    _, (total, received, end) = receive("done")
    return total, received - start, end - start


def measure(graph):
    """Starts bocpy's workers with a small hand-over, then times the real one."""
    hand_over([{"id": 1, "name": "a", "pair": [1, 2]}])
    result = hand_over(graph)
    wait()
    return result
