"""Ownership transfer (issue 5): handing a whole object graph to another thread by releasing and
acquiring its region, against copying it (pickle, marshal), and the hand-off latency against a bare
lock hand-off.

    PYTHONPATH=build/python .venv/bin/python bench/transfer_bench.py [--quick] [--json FILE] [--md FILE]

Handing over: the sender has a graph of about N objects; the receiver, another thread, gets it and
reads all of it (a checksum over every leaf).  region: the graph lives in a region; the sender
releases it (the isolation proof runs), the receiver adopts the id, acquires and reads in place.
pickle / marshal: the sender serializes, the receiver deserializes and reads its copy.  Timed from
the sender's first step to the receiver's checksum, in a fresh interpreter per measurement, the
methods taking turns round after round.

Hand-off latency: two threads pass a turn back and forth; with a bare semaphore pair, and with a
small region released and acquired at every pass (its isolation proof included).

Subinterpreters are not supported by the binding yet (docs/python.md, "Limitations"): these are
transfers between threads of one interpreter; the pickle/marshal baselines are what an interpreter
hand-over would copy.
"""
import argparse
import marshal
import pickle
import queue
import sys
import threading
import time

from benchreport import (cell, describe_machine, goal_records, goals_table, machine, measure_in_workers,
                         publish, ratio_range)

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

def worker_handover(method, arg):
    name, n = arg.rsplit(":", 1)
    make = GRAPHS[name]
    mailbox = queue.Queue()
    result = {}
    if method == "region":
        import region
        r = region.region("graph")
        with r:
            r.root = make(int(n))
        expected = read(r.root)

        def receive():
            got = region.adopt(mailbox.get())
            got.acquire()
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
    return {"seconds": result["t"] - start}


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


WORKERS = {"handover": worker_handover, "handoff": worker_handoff}


def measure(case, modes, arg, rounds):
    return measure_in_workers(__file__, case, modes, arg, rounds)


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
    for name in GRAPHS:
        print(f"hand over a {name} of {n:,} objects to another thread", end=" ", flush=True)
        m = measure("handover", ["region", "pickle", "marshal"], f"{name}:{n}", rounds)
        print()
        vs_pickle, vs_marshal = ratio_range(m["pickle"], m["region"]), ratio_range(m["marshal"], m["region"])
        results["handover"].append({"graph": name, "times": m, "pickle_over_region": vs_pickle[0],
                                    "marshal_over_region": vs_marshal[0]})
        rows.append((f"{name}, {n:,} objects, to another thread and read there: region {cell(m['region'])}, "
                     f"pickle {cell(m['pickle'])}, marshal {cell(m['marshal'])}",
                     f"{vs_pickle[0]:.1f}× faster than pickle ({vs_pickle[1]:.1f}..{vs_pickle[2]:.1f}); "
                     f"marshal {vs_marshal[0]:.1f}×", "≥ 10× faster than pickle", vs_pickle[0] >= 10))
    print(f"hand-off latency, {passes:,} passes each way", end=" ", flush=True)
    m = measure("handoff", ["bare", "region"], passes, rounds)
    print()
    slowdown = ratio_range(m["region"], m["bare"])
    results["handoff"] = {"times": m, "region_over_bare": slowdown[0]}
    rows.append((f"hand-off between two threads: region release + acquire {cell(m['region'])} per pass, bare "
                 f"semaphore {cell(m['bare'])}", f"{slowdown[0]:.2f}× ({slowdown[1]:.2f}..{slowdown[2]:.2f})",
                 "≤ 2×", slowdown[0] <= 2))
    results["goals"] = goal_records(rows)
    lines = goals_table("transfer (threads of one interpreter)", rows)
    lines += ["", f"Machine: {describe_machine(results['machine'])}; {rounds} rounds, each measurement in a fresh "
              "interpreter, methods taking turns. Between threads of one interpreter: the binding does not "
              "support subinterpreters yet, so the interpreter hand-over and the 3.12+ parallel-throughput "
              "goals are not measured."]
    publish("\n".join(lines), results, args.json, args.md)


if __name__ == "__main__":
    sys.exit(main())
