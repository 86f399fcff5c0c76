"""The isolation proof at memory speed (issue 19): what release(), close() and r.check() pay to prove
that nothing outside holds a region's objects, per object, beside the least any pass over the same
memory costs.

    PYTHONPATH=build/python .venv/bin/python bench/proof_bench.py [--quick] [--json FILE] [--md FILE]

For each of the transfer benchmark's three graphs (bench/transfer_bench.py: a list of dicts, a dict
of tuples, a binary tree; about N objects each) in a region, in one process, taking turns round
after round:

  - proof: the isolation engine's fast pass (python/_region/proof.c), the verdict release() and
    close() act on (_region._proven_isolated), as the process runs it: a region this big is read in
    two halves at once, the second on libregion's helper thread, where the process may run on two
    CPUs (region_set_scan_threads);
  - proof, one thread: the same with the helper not allowed (_region._scan_threads(1));
  - stream: one read of each 64-byte line of the region's object and buffer pages (proof_stream),
    the floor of any pass over that memory;
  - check: r.check() of the isolated region (the fast pass, then nothing else);
  - audit: the graph walk that names escapes (audit.c, _region._audit), which r.check() ran alone
    before the engine, for reference.

Per object is per Python object of the region (r.objects()), so buffers (key tables, item arrays)
are part of the cost, not of the count.
"""
import argparse
import statistics
import sys
import time

from benchreport import cell, machine, publish_goals
from transfer_bench import GRAPHS, graph_in_region


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def measure_graph(make, n, rounds):
    import region
    from region import _region
    r, _ = graph_in_region(make, n)
    objects = len(r.objects())
    times = {"proof": [], "proof1": [], "stream": [], "check": [], "audit": []}
    stream_bytes = 0
    for _ in range(rounds):
        times["proof"].append(timed(lambda: _region._proven_isolated(r)))
        _region._scan_threads(1)
        times["proof1"].append(timed(lambda: _region._proven_isolated(r)))
        _region._scan_threads(0)
        stream_bytes, seconds, _ = _region._stream_pass(r)
        times["stream"].append(seconds)
        times["check"].append(timed(r.check))
        times["audit"].append(timed(lambda: _region._audit(r)))
        print(".", end="", flush=True)
    assert _region._proven_isolated(r), "the benchmark's region must be provably isolated"
    r.close()
    return objects, stream_bytes, {k: stats(v) for k, v in times.items()}


def measure_handoff(proofs):
    """What handing half a scan to the helper thread costs: proofs of a small region (3,000 tuples)
    with every scan split (the threshold lowered to 0), the helper running the second half or not."""
    import region
    from region import _region
    r = region.region("hand-off")
    with r:
        r.root = [(i, str(i)) for i in range(3000)]
    split_bytes = _region._scan_split()[0]
    _region._scan_split(0)
    times = {1: [], 2: []}
    try:
        for _ in range(proofs):
            for threads in (1, 2):
                _region._scan_threads(threads)
                times[threads].append(timed(lambda: _region._proven_isolated(r)))
    finally:
        _region._scan_split(split_bytes)
        _region._scan_threads(0)
        r.close()
    return {threads: stats(t) for threads, t in times.items()}


def per_object(stat, objects):
    return f"{stat['median'] / objects * 1e9:.1f} ns ({stat['min'] / objects * 1e9:.1f}..{stat['max'] / objects * 1e9:.1f})"


def ratio(a, b):
    pairs = [x / y for x, y in zip(a["runs"], b["runs"])]
    return a["median"] / b["median"], min(pairs), max(pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller graphs, fewer rounds")
    parser.add_argument("--json")
    parser.add_argument("--md")
    args = parser.parse_args()
    n = 200_000 if args.quick else 1_000_000
    rounds = 5 if args.quick else 15
    from region import _region
    threads = _region._scan_threads()
    results = {"machine": machine(), "quick": args.quick, "rounds": rounds, "scan_threads": threads, "graphs": []}
    rows = []
    for name, make in GRAPHS.items():
        print(f"proof of a {name} of about {n:,} objects", end=" ", flush=True)
        objects, stream_bytes, m = measure_graph(make, n, rounds)
        print()
        ns = m["proof"]["median"] / objects * 1e9
        over_stream = ratio(m["proof"], m["stream"])
        one_over_stream = ratio(m["proof1"], m["stream"])
        check_over_proof = ratio(m["check"], m["proof"])
        audit_over_proof = ratio(m["audit"], m["proof"])
        results["graphs"].append({"graph": name, "objects": objects, "stream_bytes": stream_bytes, "times": m,
                                  "proof_ns_per_object": ns, "proof_over_stream": over_stream[0],
                                  "one_thread_over_stream": one_over_stream[0],
                                  "check_over_proof": check_over_proof[0], "audit_over_proof": audit_over_proof[0]})
        rows.append((f"proof of a {name}, {objects:,} objects ({stream_bytes >> 20} MiB), {threads} thread(s): "
                     f"{cell(m['proof'])}; one thread {cell(m['proof1'])}; one streaming pass {cell(m['stream'])}",
                     f"{per_object(m['proof'], objects)} per object, {over_stream[0]:.1f}× the stream "
                     f"({over_stream[1]:.1f}..{over_stream[2]:.1f}); one thread {per_object(m['proof1'], objects)}, "
                     f"{one_over_stream[0]:.1f}×; stream {per_object(m['stream'], objects)}",
                     "≤ 10 ns per object", ns <= 10))
        rows.append((f"r.check() of that isolated region {cell(m['check'])} vs the fast pass",
                     f"{check_over_proof[0]:.2f}× ({check_over_proof[1]:.2f}..{check_over_proof[2]:.2f})",
                     "≤ 1.5×", check_over_proof[0] <= 1.5))
        rows.append((f"the audit's graph walk alone (r.check() before the engine) {cell(m['audit'])}",
                     f"{audit_over_proof[0]:.1f}× the fast pass ({audit_over_proof[1]:.1f}..{audit_over_proof[2]:.1f})",
                     "-", None))
    handoff = measure_handoff(200 if args.quick else 2000)
    results["handoff"] = handoff
    rows.append((f"the helper thread's hand-off: a split proof of a 3,000-tuple region, the second half on the "
                 f"helper {cell(handoff[2])} vs in the calling thread {cell(handoff[1])}",
                 f"+{(handoff[2]['median'] - handoff[1]['median']) * 1e6:.0f} µs a scan "
                 f"(a scan splits from 4 MiB of whole pages)", "-", None))
    publish_goals("isolation proof (CPython " + sys.version.split()[0] + ")", rows, results,
                  f"{rounds} rounds in one process, the five measurements taking turns; median (min..max).",
                  args.json, args.md)


if __name__ == "__main__":
    sys.exit(main())
