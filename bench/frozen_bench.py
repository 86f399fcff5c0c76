"""Frozen regions (issue 15): one read-mostly data set read by several interpreters, frozen once
instead of unpickled in each.

    PYTHONPATH=build/python .venv/bin/python bench/frozen_bench.py [--quick] [--json FILE] [--md FILE]

The data set is the issue's: a dict of str -> (int, int, str), N entries (about 4N objects), built in
a region.  In one process, taking turns round after round:

  - freeze vs release: r.freeze() of the region against r.release() of one built the same way (both
    prove isolation; freeze also makes every object read-only);
  - ready in K interpreters (K = 1, 2, 4 subinterpreters that share the main interpreter's GIL, the
    kind frozen regions are read from today): from the built data until every interpreter has read
    one entry - freeze() once, then region.adopt(id).root in each, against pickle.dumps once, then
    pickle.loads in each (the data handed over as bytes);
  - the memory each extra interpreter adds once it can read (resident set, /proc/self/statm), as a
    share of what the data set itself takes.

Interpreters with their own GIL cannot read a frozen region yet (docs/design.md, "Frozen regions"),
so the issue's parallel lookup throughput is reported as not built.
"""
import argparse
import gc
import os
import pickle
import statistics
import sys
import time

from benchreport import cell, machine, publish_goals

try:
    import _xxsubinterpreters as interpreters
except ImportError:
    import _interpreters as interpreters

import region

KS = (1, 2, 4)
LOOKUP = "v['w1'][2]"


def new_interpreter():
    """A subinterpreter sharing the main interpreter's GIL, with the package imported."""
    if sys.version_info >= (3, 13):
        sub = interpreters.create("legacy")
    elif sys.version_info >= (3, 12):
        sub = interpreters.create(isolated=False)
    else:
        sub = interpreters.create()
    run(sub, "import pickle, region")
    return sub


def run(sub, code, **shared):
    failure = interpreters.run_string(sub, code, shared=shared)
    if failure is not None:   # 3.13 returns what the code raised
        raise RuntimeError(f"{failure.type.__name__}: {failure.msg}")


def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(n):
    r = region.region("vocab")
    with r:
        r.root = {f"w{i}": (i, i * 7, f"s{i}") for i in range(n)}
    return r


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def freeze_vs_release(n):
    a, b = build(n), build(n)
    released, _ = timed(a.release)
    frozen, _ = timed(b.freeze)
    a.acquire()
    a.close()
    b.close()
    return frozen, released


def ready_frozen(n, k):
    """Seconds from built data to k interpreters having read it, and the memory they added."""
    r = build(n)
    subs = [new_interpreter() for _ in range(k)]
    gc.collect()
    before = resident()
    start = time.perf_counter()
    r.freeze()
    for sub in subs:
        run(sub, f"v = region.adopt(rid).root\n{LOOKUP}", rid=r.id)
    seconds = time.perf_counter() - start
    added = resident() - before
    for sub in subs:
        interpreters.destroy(sub)
    r.close()
    return seconds, added


def ready_pickle(n, k):
    r = build(n)
    subs = [new_interpreter() for _ in range(k)]
    gc.collect()
    before = resident()
    start = time.perf_counter()
    data = pickle.dumps(r.root, protocol=pickle.HIGHEST_PROTOCOL)
    for sub in subs:
        run(sub, f"v = pickle.loads(data)\n{LOOKUP}", data=data)
    seconds = time.perf_counter() - start
    del data
    added = resident() - before
    for sub in subs:
        interpreters.destroy(sub)
    r.close()
    return seconds, added


def data_size(n):
    gc.collect()
    before = resident()
    r = build(n)
    size = resident() - before
    r.close()
    return size


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def ratio(a, b):
    pairs = [x / y for x, y in zip(a["runs"], b["runs"])]
    return a["median"] / b["median"], min(pairs), max(pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller data set, fewer rounds")
    parser.add_argument("--json")
    parser.add_argument("--md")
    args = parser.parse_args()
    n = 50_000 if args.quick else 250_000
    rounds = 3 if args.quick else 7
    size = data_size(n)
    times = {"freeze": [], "release": []}
    ready = {(how, k): [] for how in ("frozen", "pickle") for k in KS}
    added = {(how, k): [] for how in ("frozen", "pickle") for k in KS}
    print(f"a dict of {n:,} str -> (int, int, str) entries, {size >> 20} MiB resident", end=" ", flush=True)
    for _ in range(rounds):
        frozen, released = freeze_vs_release(n)
        times["freeze"].append(frozen)
        times["release"].append(released)
        for k in KS:
            for how, fn in (("frozen", ready_frozen), ("pickle", ready_pickle)):
                seconds, grew = fn(n, k)
                ready[how, k].append(seconds)
                added[how, k].append(grew / k)
        print(".", end="", flush=True)
    print()
    m = {name: stats(v) for name, v in times.items()}
    results = {"machine": machine(), "quick": args.quick, "rounds": rounds, "entries": n, "data_bytes": size,
               "freeze": m["freeze"], "release": m["release"],
               "ready": {f"{how}-{k}": stats(v) for (how, k), v in ready.items()},
               "added_per_interpreter": {f"{how}-{k}": stats(v) for (how, k), v in added.items()}}
    over = ratio(m["freeze"], m["release"])
    rows = [(f"freeze() of {4 * n:,} objects {cell(m['freeze'])} vs release() of the same region "
             f"{cell(m['release'])}", f"{over[0]:.2f}× ({over[1]:.2f}..{over[2]:.2f})", "≤ 2×", over[0] <= 2)]
    for k in KS:
        fr, pk = stats(ready["frozen", k]), stats(ready["pickle", k])
        speedup = ratio(pk, fr)
        rows.append((f"ready in {k} shared-GIL interpreter(s): freeze + adopt {cell(fr)} vs pickle.dumps + loads "
                     f"in each {cell(pk)}", f"{speedup[0]:.1f}× faster ({speedup[1]:.1f}..{speedup[2]:.1f})",
                     "≥ 20× at K = 4 (the issue asks it of own-GIL interpreters)" if k == 4 else "-",
                     speedup[0] >= 20 if k == 4 else None))
    for how in ("frozen", "pickle"):
        per = stats(added[how, 4])
        share = per["median"] / size
        rows.append((f"memory added per interpreter reading the data ({how}, K = 4): "
                     f"{per['median'] / 2**20:.1f} MiB of the data's {size / 2**20:.1f} MiB",
                     f"{share:.1%}", "< 5 %" if how == "frozen" else "-",
                     share < 0.05 if how == "frozen" else None))
    rows.append(("lookup throughput of 2 interpreters with their own GIL vs 1 (3.13)",
                 "not built: frozen regions are read under one GIL", "≥ 1.8×", False))
    publish_goals("frozen regions (CPython " + sys.version.split()[0] + ")", rows, results,
                  f"{rounds} rounds in one process, the measurements taking turns; median (min..max).",
                  args.json, args.md)


if __name__ == "__main__":
    sys.exit(main())
