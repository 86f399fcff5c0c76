"""Ownership transfer (issue 5): handing a whole object graph to another thread or another
interpreter by releasing and acquiring its region, against copying it (pickle, marshal, and the
PyPI projects that hand data between interpreters), and the hand-off latency against a bare lock
hand-off.

    PYTHONPATH=build/python .venv/bin/python bench/transfer_bench.py [--quick] [--json FILE] [--md FILE]

Handing over: the sender has a graph of about N objects; the receiver gets it and reads all of it (a
checksum over every leaf).  region: the graph lives in a region; the sender releases it (the
isolation proof runs), the receiver adopts the id, acquires and reads in place.  pickle / marshal:
the sender serializes, the receiver deserializes and reads its copy.  Two times, both from the
sender's first step: until the receiver holds the graph (acquired, or deserialized), which the goal
is about, and until its checksum.  The read between them is the same Python loop over the same
objects whichever way they came (for the binary tree about 90 ms, more than the whole region
hand-over), so it is reported beside the hand-over, not folded into its ratio.  A fresh process per
measurement, the methods taking turns round after round.

  - to another thread of the same interpreter: the copies go through a queue.Queue;
  - to a subinterpreter (_xxsubinterpreters, run by a second thread, which waits on a pipe): the copies
    go through a channel (channel_send copies the bytes).  Also the two PyPI projects that hand data
    between interpreters on 3.11: bocpy (a Cown holding the graph, read by a behavior in one of its
    worker interpreters) and backports.interpreters (the PEP 734 API; Queue.put / Queue.get).  Their
    runtimes are started and warmed up before the clock starts; their own transport is what is
    timed.

Hand-off latency: two threads pass a turn back and forth; with a bare semaphore pair, and with a
small region released and acquired at every pass (its isolation proof included).

Run on CPython 3.11 (the demo's interpreter, which bocpy and backports.interpreters support): its
interpreters share one GIL, so this measures the cost of a hand-over, not parallel speed-up.  The
binding also runs on 3.12 and 3.13, but only with interpreters that share the GIL there too, so the
3.12+ parallel-throughput goal cannot be measured yet (docs/python.md, "Versions").
"""
import argparse
import importlib.util
import marshal
import os
import pickle
import queue
import sys
import textwrap
import threading
import time

from benchreport import cell, machine, measure_in_workers, publish_goals, ratio_range, run_worker_record, summary

# ---- the graphs: about n objects each ----


def list_of_dicts(n):
    """Per entry a dict, an int, a str, a float and a 2-list: 6 objects (plus its key table)."""
    return [{"id": i * 1000 + 7, "name": f"n{i}", "score": i / 3, "pair": [i, -i]} for i in range(n // 6)]


def dict_of_tuples(n):
    """Per entry a str key and a 3-tuple of an int, a float and a str: 5 objects."""
    return {f"k{i}": (i * 1000 + 7, i / 3, f"v{i}") for i in range(n // 5)}


def binary_tree(n):
    """A complete binary tree of [left, right, value] lists: 2 objects a node (the list, the int)."""
    def node(depth, i):
        if depth == 0:
            return None
        return [node(depth - 1, 2 * i), node(depth - 1, 2 * i + 1), i * 1000 + 7]
    depth = max(1, (n // 2).bit_length())
    return node(depth, 1)


GRAPHS = {"list of dicts": list_of_dicts, "dict of tuples": dict_of_tuples, "binary tree": binary_tree}


def read(graph):
    """Reads every leaf: what the receiver does with what it got."""
    if isinstance(graph, list) and graph and isinstance(graph[0], dict):
        return sum(d["id"] + len(d["name"]) + d["pair"][0] for d in graph)
    if isinstance(graph, dict):
        return sum(v[0] + len(v[2]) for v in graph.values())
    total, stack = 0, [graph]
    while stack:
        node = stack.pop()
        if node is not None:
            total += node[2]
            stack.append(node[0])
            stack.append(node[1])
    return total


# ---- workers (fresh interpreter each) ----

def graph_in_region(make, n):
    """A region holding make(n) as its root, settled; and the graph's checksum."""
    import region
    r = region.region("graph")
    with r:
        r.root = make(n)
    r.collect()   # the builder's garbage (a dead closure cycle), which release() would collect
    return r, read(r.root)


def worker_handover(method, arg):
    name, n = arg.rsplit(":", 1)
    make = GRAPHS[name]
    mailbox = queue.Queue()
    result = {}
    if method == "region":
        import region
        r, expected = graph_in_region(make, int(n))

        def receive():
            got = region.adopt(mailbox.get())
            got.acquire()
            result["received"] = time.perf_counter()
            result["sum"] = read(got.root)
            result["t"] = time.perf_counter()

        def send():
            r.release()
            mailbox.put(r.id)
    else:
        graph = make(int(n))
        expected = read(graph)
        dumps, loads = (pickle.dumps, pickle.loads) if method == "pickle" else (marshal.dumps, marshal.loads)

        def receive():
            copy = loads(mailbox.get())
            result["received"] = time.perf_counter()
            result["sum"] = read(copy)
            result["t"] = time.perf_counter()

        def send():
            mailbox.put(dumps(graph))
    receiver = threading.Thread(target=receive)
    receiver.start()
    start = time.perf_counter()
    send()
    receiver.join()
    assert result["sum"] == expected, (result["sum"], expected)
    return {"seconds": result["t"] - start, "received": result["received"] - start}


def worker_handoff(method, arg):
    """Seconds per hand-off (one pass of the turn), over `arg` passes each way."""
    passes = int(arg)
    turn = [threading.Semaphore(0), threading.Semaphore(0)]
    if method == "region":
        import region
        r = region.region("turn")
        with r:
            r.root = {"count": 0, "data": [[i] for i in range(8)]}
        r.release()

        def play(me):
            for _ in range(passes):
                turn[me].acquire()
                r.acquire()
                r.root["count"] += 1
                r.release()
                turn[1 - me].release()
    else:
        shared = {"count": 0}

        def play(me):
            for _ in range(passes):
                turn[me].acquire()
                shared["count"] += 1
                turn[1 - me].release()
    players = [threading.Thread(target=play, args=(p,)) for p in (0, 1)]
    for p in players:
        p.start()
    start = time.perf_counter()
    turn[0].release()
    for p in players:
        p.join()
    return {"seconds": (time.perf_counter() - start) / (2 * passes)}


# The receiver's code in a subinterpreter: the same read() (its source, so that nothing of this
# script is imported there).
RECEIVER = {   # each sets `got` (the graph, held) and `received` (when)
    "region": """
        mine = region.adopt(rid)
        mine.acquire()
        got, received = mine.root, time.perf_counter()
    """,
    "pickle": "got = pickle.loads(_interpreters.channel_recv(data)); received = time.perf_counter()",
    "marshal": "got = marshal.loads(_interpreters.channel_recv(data)); received = time.perf_counter()",
}


def worker_handover_interpreter(method, arg):
    import inspect
    name, n = arg.rsplit(":", 1)
    make = GRAPHS[name]
    if method in ("bocpy", "pep734"):
        return handover_library(method, make(int(n)))
    import _xxsubinterpreters as interpreters
    sub = interpreters.create()
    out, data = interpreters.channel_create(), interpreters.channel_create()
    wake_read, wake_write = os.pipe()
    prelude = "import os, pickle, marshal, time, _xxsubinterpreters as _interpreters\n"
    interpreters.run_string(sub, prelude + inspect.getsource(read))
    if method == "region":
        r, expected = graph_in_region(make, int(n))   # imports region in the main interpreter first
        interpreters.run_string(sub, "import region")

        def send():
            r.release()
            os.write(wake_write, b"x")
        shared = {"rid": r.id}
    else:
        graph = make(int(n))
        expected = read(graph)
        dumps = pickle.dumps if method == "pickle" else marshal.dumps

        def send():
            interpreters.channel_send(data, dumps(graph))
            os.write(wake_write, b"x")
        shared = {}
    code = ("os.read(wake, 1)\n" + textwrap.dedent(RECEIVER[method]) + "\n" + "total = read(got)\ndel got\n" +
            "_interpreters.channel_send(out, f'{total} {received!r} {time.perf_counter()!r}')\n")
    receiver = threading.Thread(target=interpreters.run_string,
                                args=(sub, code, dict(shared, wake=wake_read, out=out, data=data)))
    receiver.start()
    start = time.perf_counter()
    send()
    receiver.join()
    total, received, end = interpreters.channel_recv(out).split()
    assert int(total) == expected, (total, expected)
    interpreters.destroy(sub)
    if method == "region":
        r.acquire(timeout=0)   # the subinterpreter's end gave it up
        r.close()
    return {"seconds": float(end) - start, "received": float(received) - start}


def handover_library(method, graph):
    """bocpy and backports.interpreters: started, warmed up with a small hand-over, then timed."""
    expected = read(graph)
    if method == "bocpy":
        import transfer_bocpy
        total, received, seconds = transfer_bocpy.measure(graph)
    else:
        from backports import interpreters
        from backports.interpreters import _queues as queues
        import inspect
        to_sub, back = queues.create(), queues.create()
        sub = interpreters.create()
        sub.exec("import time\nfrom backports.interpreters import _queues as queues\n" + inspect.getsource(read) +
                 f"to_sub, back = queues.Queue({to_sub.id}), queues.Queue({back.id})\n")
        loop = ("for _ in range(2):\n    got = to_sub.get()\n    received = time.perf_counter()\n"
                "    back.put((read(got), received, time.perf_counter()))\n")
        receiver = threading.Thread(target=sub.exec, args=(loop,))
        receiver.start()
        to_sub.put([{"id": 1, "name": "a", "pair": [1, 2]}])
        back.get()
        start = time.perf_counter()
        to_sub.put(graph)
        total, received, end = back.get()
        received, seconds = received - start, end - start
        receiver.join()
    assert total == expected, (total, expected)
    return {"seconds": seconds, "received": received}


LABELS = {"pickle": "pickle", "marshal": "marshal", "bocpy": "bocpy Cown", "pep734": "PEP 734 Queue (backports)"}

WORKERS = {"handover": worker_handover, "handover_interpreter": worker_handover_interpreter,
           "handoff": worker_handoff}


def measure(case, modes, arg, rounds):
    return measure_in_workers(__file__, case, modes, arg, rounds)


def measure_handover(case, modes, arg, rounds):
    """measure() for the hand-over workers, whose records have two times: {"received": ..., "seconds":
    ...}, each as measure() gives one."""
    records = {m: [] for m in modes}
    for _ in range(rounds):
        for m in modes:
            records[m].append(run_worker_record(__file__, case, m, arg))
            print(".", end="", flush=True)
    return {key: {m: dict(summary(values), runs=values)
                  for m, values in ((m, [r[key] for r in rs]) for m, rs in records.items())}
            for key in ("received", "seconds")}


# ---- the driver ----

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller graphs, fewer rounds")
    parser.add_argument("--json")
    parser.add_argument("--md")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json
        case, mode, arg = args.worker
        print(json.dumps(WORKERS[case](mode, arg)))
        return

    rounds = 3 if args.quick else 5
    n = 200_000 if args.quick else 1_000_000
    passes = 2_000 if args.quick else 10_000
    results = {"machine": machine(), "quick": args.quick, "rounds": rounds, "objects": n, "handover": []}
    rows = []
    libraries = [m for m, module in (("bocpy", "bocpy"), ("pep734", "backports.interpreters"))
                 if importlib.util.find_spec(module.split(".")[0])]
    results["libraries"] = libraries
    for to, case, modes in (("another thread", "handover", ["region", "pickle", "marshal"]),
                            ("a subinterpreter", "handover_interpreter", ["region", "pickle", "marshal"] + libraries)):
        for name in GRAPHS:
            print(f"hand over a {name} of {n:,} objects to {to}", end=" ", flush=True)
            both = measure_handover(case, modes, f"{name}:{n}", rounds)
            print()
            m, to_checksum = both["received"], both["seconds"]
            vs = {other: ratio_range(m[other], m["region"]) for other in modes if other != "region"}
            with_read = ratio_range(to_checksum["pickle"], to_checksum["region"])
            results["handover"].append({"to": to, "graph": name, "received": m, "times": to_checksum,
                                        **{f"{other}_over_region": v[0] for other, v in vs.items()},
                                        "pickle_over_region_with_read": with_read[0]})
            others = ", ".join(f"{LABELS[o]} {cell(m[o])}" for o in modes if o != "region")
            also = "; ".join(f"{LABELS[o]} {vs[o][0]:.1f}×" for o in modes if o not in ("region", "pickle"))
            rows.append((f"{name}, {n:,} objects, to {to}, until the receiver holds it: region {cell(m['region'])}, "
                         f"{others}. With the receiver's read of every leaf after it: region {cell(to_checksum['region'])}, "
                         f"pickle {cell(to_checksum['pickle'])} ({with_read[0]:.1f}× faster than pickle)",
                         f"{vs['pickle'][0]:.1f}× faster than pickle ({vs['pickle'][1]:.1f}..{vs['pickle'][2]:.1f}); "
                         f"{also}", "≥ 10× faster than pickle", vs["pickle"][0] >= 10))
    print(f"hand-off latency, {passes:,} passes each way", end=" ", flush=True)
    m = measure("handoff", ["bare", "region"], passes, rounds)
    print()
    slowdown = ratio_range(m["region"], m["bare"])
    results["handoff"] = {"times": m, "region_over_bare": slowdown[0]}
    rows.append((f"hand-off between two threads: region release + acquire {cell(m['region'])} per pass, bare "
                 f"semaphore {cell(m['bare'])}", f"{slowdown[0]:.2f}× ({slowdown[1]:.2f}..{slowdown[2]:.2f})",
                 "≤ 2×", slowdown[0] <= 2))
    missing = [] if len(libraries) >= 2 else [
        f"Not installed, so not measured: {', '.join(set(['bocpy', 'pep734']) - set(libraries))}."]
    publish_goals("transfer (threads and subinterpreters, CPython 3.11)", rows, results,
                  f"{rounds} rounds, each measurement in a fresh process, methods taking turns. CPython 3.11: "
                  "interpreters share one GIL, so these are costs of a hand-over; the 3.12+ parallel throughput "
                  "is bench/parallel_bench.py's.", args.json, args.md, missing)


if __name__ == "__main__":
    sys.exit(main())
