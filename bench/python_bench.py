"""Benchmarks of the Python binding (issue 4): collection pauses, region collection, teardown, a
region's whole life and allocation, each as a ratio against the alternative measured in the same run
(a region's life, which has none, as a time beside the same work with no region).

    PYTHONPATH=build/python .venv/bin/python bench/python_bench.py [--quick] [--json FILE] [--md FILE]

Every measurement runs in a fresh interpreter (`--worker`), so one configuration's heap never
disturbs another's; the configurations of a benchmark take turns, round after round, so drift on a
noisy machine hits them alike.  Reported: median, and min..max over the rounds.
"""
import argparse
import gc
import json
import statistics
import sys
import time

from benchreport import cell, machine, measure_in_workers, publish_goals, ratio_range

# ---- the structures ----


def build(n_objects):
    """About n_objects objects: per user a dict, two strs, a float, a list, a tuple and three ints
    (id, and the tuple's two): 9 per user."""
    users = n_objects // 9
    return [{"id": i * 1000 + 7, "name": f"user-{i}", "score": i / 7, "tags": [f"t{i}"], "pos": (i, -i)}
            for i in range(users)]


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---- workers: one configuration, one fresh interpreter, prints one JSON line ----


def worker_gc_pause(mode, n):
    """Full gc.collect() with the structure (a) ordinary, (b) frozen, (c) in a region.

    The interpreter's own objects (modules, functions, the imports) are frozen first in every mode,
    so the pause measures what the structure costs and nothing else.  Only the region mode imports
    region (its gc callbacks are part of what it costs)."""
    if mode == "region":
        import region
    gc.collect()
    gc.freeze()
    if mode == "region":
        r = region.region("bench")
        with r:
            r.root = build(n)
    else:
        data = build(n)
        if mode == "frozen":
            gc.freeze()
    gc.collect()
    return {"seconds": median_time(gc.collect, 5)}


def worker_region_collect(mode, n):
    """r.collect() of a 10k-object region vs gc.collect(), with n objects elsewhere; and (frozen)
    gc.collect() of the same 10k objects in the ordinary heap with everything else frozen, which
    scans what r.collect() scans, with CPython's own collector."""
    import region
    elsewhere = build(n)
    if mode == "frozen":
        gc.collect()
        gc.freeze()
        same = build(10_000)
        gc.collect()
        seconds = median_time(gc.collect, 5)
        gc.unfreeze()
        return {"seconds": seconds, "elsewhere": len(elsewhere), "objects": len(same)}
    r = region.region("small")
    with r:
        r.root = build(10_000)
    gc.collect()
    fn = r.collect if mode == "region" else gc.collect
    return {"seconds": median_time(fn, 5), "elsewhere": len(elsewhere)}


def worker_teardown(mode, n):
    """Freeing the structure: r.close() vs del of the same data in the ordinary heap."""
    if mode == "region":
        import region
        r = region.region("teardown")
        with r:
            r.root = build(n)
        gc.collect()
        t = time.perf_counter()
        r.close()
        return {"seconds": time.perf_counter() - t}
    data = build(n)
    gc.collect()
    t = time.perf_counter()
    del data
    return {"seconds": time.perf_counter() - t}


def list_of_dicts():
    return [{"id": i, "name": "x", "tags": [i, i + 1]} for i in range(200_000)]


def tuple_churn():
    total = 0
    for i in range(1_000_000):
        pair = (i, i + 1)
        total += pair[1]
    return total


JSON_DOC = json.dumps([{"id": i, "name": f"user{i}", "tags": ["a", "b"], "score": i / 3}
                       for i in range(100_000)])


def json_loads():
    return json.loads(JSON_DOC)


ALLOC_WORKLOADS = {"list_of_dicts": list_of_dicts, "tuple_churn": tuple_churn, "json_loads": json_loads}


def worker_alloc(mode, name):
    """An allocation-heavy workload in the ordinary heap or inside a region block.  Modes: plain;
    imported (the ordinary heap in a process that imported region); idle (the ordinary heap, with a
    region open but no block: the hook is in); region (inside a block)."""
    fn = ALLOC_WORKLOADS[name]
    r = None
    if mode != "plain":
        import region
        if mode == "idle":
            idle = region.region("idle")
            with idle:
                idle.root = [1]
        elif mode == "region":
            r = region.region("alloc")

    def run():
        if r is None:
            result = fn()
        else:
            with r:
                result = fn()
        del result
    run()
    return {"seconds": median_time(run, 5)}


def worker_lifecycle(mode, n):
    """A region's whole life for a tiny piece of work (issue 17: a region per request): region(), one
    list made in a block, close(); per cycle, the median of 5 batches of n.  "ordinary" does the same
    work with no region, for scale."""
    def region_cycles():
        for _ in range(n):
            r = region.region()
            with r:
                r.root = [1]
            r.close()

    def ordinary_cycles():
        for _ in range(n):
            root = [1]
            del root

    if mode == "region":
        import region
        cycles = region_cycles
    else:
        cycles = ordinary_cycles
    cycles()   # warm: the process's first region activates the binding
    return {"seconds": median_time(cycles, 5) / n}


WORKERS = {"gc_pause": worker_gc_pause, "region_collect": worker_region_collect,
           "teardown": worker_teardown, "alloc": worker_alloc, "lifecycle": worker_lifecycle}


def measure(case, modes, arg, rounds):
    return measure_in_workers(__file__, case, modes, arg, rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller structures, fewer rounds")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--md", help="write the Markdown report here")
    parser.add_argument("--only", choices=["gc_pause", "region_collect", "teardown", "lifecycle", "alloc"],
                        action="append",
                        help="run only these benchmarks (repeatable)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, mode, arg = args.worker
        result = WORKERS[case](mode, int(arg) if arg.isdigit() else arg)
        print(json.dumps(result))
        return

    rounds = 3 if args.quick else 5
    sizes = [200_000] if args.quick else [1_000_000, 4_000_000]
    elsewhere = 500_000 if args.quick else 2_000_000
    teardown = 200_000 if args.quick else 1_000_000
    results = {"machine": machine(), "quick": args.quick, "rounds": rounds, "benchmarks": []}
    rows = []

    def wanted(name):
        return not args.only or name in args.only

    for n in (sizes if wanted("gc_pause") else []):
        print(f"gc.collect() pause, {n:,} objects", end=" ", flush=True)
        m = measure("gc_pause", ["ordinary", "frozen", "region"], n, rounds)
        print()
        vs_frozen = ratio_range(m["region"], m["frozen"])
        vs_ordinary = ratio_range(m["ordinary"], m["region"])
        results["benchmarks"].append({"name": "gc_pause", "objects": n, "times": m,
                                      "region_over_frozen": vs_frozen[0], "ordinary_over_region": vs_ordinary[0]})
        rows.append((f"gc.collect() pause, {n:,} objects: (a) ordinary {cell(m['ordinary'])}, (b) gc.freeze() "
                     f"{cell(m['frozen'])}, (c) region {cell(m['region'])}",
                     f"(c)/(b) = {vs_frozen[0]:.2f} ({vs_frozen[1]:.2f}..{vs_frozen[2]:.2f}); "
                     f"(a)/(c) = {vs_ordinary[0]:.0f}× ({vs_ordinary[1]:.0f}..{vs_ordinary[2]:.0f})",
                     "(c) ≤ 1.2× (b), (a) ≥ 100× (c)",
                     vs_frozen[0] <= 1.2 and vs_ordinary[0] >= 100))

    if wanted("region_collect"):
        print(f"r.collect() of 10k objects vs gc.collect(), {elsewhere:,} objects elsewhere", end=" ", flush=True)
        m = measure("region_collect", ["gc", "region", "frozen"], elsewhere, rounds)
        print()
        speedup = ratio_range(m["gc"], m["region"])
        vs_frozen = ratio_range(m["region"], m["frozen"])
        results["benchmarks"].append({"name": "region_collect", "elsewhere": elsewhere, "times": m,
                                      "speedup": speedup[0], "region_over_frozen": vs_frozen[0]})
        rows.append((f"r.collect() on 10k objects {cell(m['region'])} vs gc.collect() {cell(m['gc'])}, "
                     f"{elsewhere:,} objects elsewhere",
                     f"{speedup[0]:.0f}× faster ({speedup[1]:.0f}..{speedup[2]:.0f})", "≥ 100×", speedup[0] >= 100))
        rows.append((f"r.collect() on 10k objects {cell(m['region'])} vs CPython's gc.collect() of the same 10k "
                     f"objects with everything else frozen {cell(m['frozen'])}",
                     f"{vs_frozen[0]:.2f}× ({vs_frozen[1]:.2f}..{vs_frozen[2]:.2f})", "≤ 1.1×", vs_frozen[0] <= 1.1))

    if wanted("teardown"):
        print(f"teardown of {teardown:,} objects", end=" ", flush=True)
        m = measure("teardown", ["ordinary", "region"], teardown, rounds)
        print()
        speedup = ratio_range(m["ordinary"], m["region"])
        results["benchmarks"].append({"name": "teardown", "objects": teardown, "times": m, "speedup": speedup[0]})
        rows.append((f"r.close() {cell(m['region'])} vs del {cell(m['ordinary'])}, {teardown:,} objects",
                     f"{speedup[0]:.2f}× ({speedup[1]:.2f}..{speedup[2]:.2f})", "≥ 2× faster", speedup[0] >= 2))

    if wanted("lifecycle"):
        cycles = 2_000 if args.quick else 20_000
        print(f"a region's life, {cycles:,} cycles", end=" ", flush=True)
        m = measure("lifecycle", ["ordinary", "region"], cycles, rounds)
        print()
        results["benchmarks"].append({"name": "lifecycle", "cycles": cycles, "times": m})
        rows.append((f"a region's life: `r = region.region(); with r: r.root = [1]; r.close()`, per cycle "
                     f"(the same list with no region: {cell(m['ordinary'])})",
                     cell(m["region"]), "≤ 5 µs", m["region"]["median"] <= 5e-6))

    # The allocation rows compare configurations a few per cent apart (the "imported" one runs the very
    # code "plain" runs): more rounds than the others, for medians that hold still on a noisy machine.
    alloc_rounds = 3 if args.quick else 9
    for name in (ALLOC_WORKLOADS if wanted("alloc") else []):
        print(f"allocation: {name}", end=" ", flush=True)
        m = measure("alloc", ["plain", "imported", "idle", "region"], name, alloc_rounds)
        print()
        slowdown = ratio_range(m["region"], m["plain"])
        imported = ratio_range(m["imported"], m["plain"])
        idle = ratio_range(m["idle"], m["plain"])
        results["benchmarks"].append({"name": f"alloc_{name}", "times": m, "region_over_plain": slowdown[0],
                                      "imported_over_plain": imported[0], "idle_over_plain": idle[0]})
        rows.append((f"{name}: in a region {cell(m['region'])} vs the ordinary heap {cell(m['plain'])}",
                     f"{slowdown[0]:.2f}× ({slowdown[1]:.2f}..{slowdown[2]:.2f})", "≤ 1.1×", slowdown[0] <= 1.1))
        rows.append((f"{name}, ordinary heap: in a process that imported region {cell(m['imported'])} vs one that "
                     f"did not",
                     f"{imported[0]:.2f}× ({imported[1]:.2f}..{imported[2]:.2f})", "≤ 1.03×", imported[0] <= 1.03))
        rows.append((f"{name}, ordinary heap: with a region open elsewhere (the allocator hook in, no block in "
                     f"this thread) {cell(m['idle'])} vs no region",
                     f"{idle[0]:.2f}× ({idle[1]:.2f}..{idle[2]:.2f})", "-", None))

    publish_goals("benchmark", rows, results,
                  f"{rounds} rounds ({alloc_rounds} for the allocation rows), each configuration in a fresh "
                  "interpreter, taking turns.", args.json, args.md)

if __name__ == "__main__":
    main()
