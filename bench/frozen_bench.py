"""Frozen regions (issue 15): one read-mostly data set read by several interpreters, frozen once
instead of unpickled in each.

    PYTHONPATH=build-py313/python .venv-313/bin/python bench/frozen_bench.py [--quick] [--json FILE] [--md FILE]

(any of 3.11-3.13; the own-GIL measurements need 3.12+, and the demo runs it with 3.13)

The data set is the issue's: a dict of str -> (int, int, str), N entries (about 4N objects), built in
a region.  In one process, taking turns round after round:

  - freeze vs release: r.freeze() of the region against r.release() of one built the same way (both
    prove isolation; freeze also makes every object read-only);
  - a snapshot (r.snapshot(): the writer keeps its region, readers get a frozen copy) against one
    private copy made by pickle.dumps + loads;
  - ready in K interpreters (K = 1, 2, 4 subinterpreters that share the main interpreter's GIL):
    from the built data until every interpreter has read
    one entry - freeze() once, then region.adopt(id).root in each, against pickle.dumps once, then
    pickle.loads in each (the data handed over as bytes);
  - the memory each extra interpreter adds once it can read (resident set, /proc/self/statm), as a
    share of what the data set itself takes.

On CPython 3.12+ the same for interpreters with their own GIL, which read the frozen region through
region.FrozenView (copies of the values they read), and the lookup job run in parallel: K = 2 against
K = 1, and against the same job on a private unpickled copy in each interpreter.  For that comparison
the frozen region is made as the private copies are, by pickle.loads of the same bytes (in a block),
so that both read objects laid out alike and the ratio is the cost of reading through views; the same
job on a region built by the dict comprehension is reported beside it, for what the layout a build
leaves costs (the comprehension frees temporary strs between the keys it keeps: see mimalloc patch
0008, thirdparty/mimalloc/README.md).
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


OWN_GIL = sys.version_info >= (3, 12)
JOB = """
total = 0
for i in range(lookups):
    total += v["w%d" % (i % entries)][1]
"""


def new_interpreter(own_gil=False):
    """A subinterpreter sharing the main interpreter's GIL (or with its own), with the package imported."""
    if sys.version_info >= (3, 13):
        sub = interpreters.create("isolated" if own_gil else "legacy")
    elif sys.version_info >= (3, 12):
        sub = interpreters.create(isolated=own_gil)
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


def load(data):
    """A region holding pickle.loads(data), made in a block: laid out as a private copy is."""
    r = region.region("vocab")
    with r:
        r.root = pickle.loads(data)
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


def snapshot_vs_pickle(n):
    """r.snapshot() of a built region (a frozen copy: single writer, many readers) against one private
    copy by pickle.dumps + pickle.loads of the same root: the seconds of each."""
    r = build(n)
    snapshot_seconds, snap = timed(r.snapshot)
    copy_seconds, _ = timed(lambda: pickle.loads(pickle.dumps(r.root, protocol=pickle.HIGHEST_PROTOCOL)))
    snap.close()
    r.close()
    return snapshot_seconds, copy_seconds


def time_to_read(n, k, how, own_gil=False):
    """Seconds from built data to k interpreters having read it (how: "frozen" or "pickle"), and the
    memory they added."""
    r = build(n)
    subs = [new_interpreter(own_gil) for _ in range(k)]
    gc.collect()
    before = resident()
    start = time.perf_counter()
    if how == "frozen":
        r.freeze()
        shared, read = {"rid": r.id}, "v = region.adopt(rid).root"
    else:
        shared, read = {"data": pickle.dumps(r.root, protocol=pickle.HIGHEST_PROTOCOL)}, "v = pickle.loads(data)"
    for sub in subs:
        run(sub, f"{read}\n{LOOKUP}", **shared)
    seconds = time.perf_counter() - start
    del shared
    added = resident() - before
    for sub in subs:
        interpreters.destroy(sub)
    r.close()
    return seconds, added


def lookups_per_second(n, k, how, lookups):
    """k interpreters with their own GIL, each in a thread of its own, running JOB at once on a frozen
    region made by pickle.loads (how = "frozen"), on one built by the comprehension ("comprehension"),
    or on a private unpickled copy ("private"): lookups per second, all together."""
    import threading
    built = build(n)
    data = pickle.dumps(built.root, protocol=pickle.HIGHEST_PROTOCOL)
    if how == "comprehension":
        r = built
    else:
        built.close()
        r = load(data)
    r.freeze()
    subs = [new_interpreter(own_gil=True) for _ in range(k)]
    for sub in subs:
        run(sub, "v = pickle.loads(data)" if how == "private" else "v = region.adopt(rid).root", rid=r.id, data=data)
    threads = [threading.Thread(target=run, args=(sub, JOB), kwargs={"lookups": lookups, "entries": n})
               for sub in subs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    for sub in subs:
        interpreters.destroy(sub)
    r.close()
    return k * lookups / seconds


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
    times = {"freeze": [], "release": [], "snapshot": [], "pickle copy": []}
    kinds = ("shared", "own") if OWN_GIL else ("shared",)
    ready = {(gil, how, k): [] for gil in kinds for how in ("frozen", "pickle") for k in KS}
    added = {(gil, how, k): [] for gil in kinds for how in ("frozen", "pickle") for k in KS}
    # Each reader's job is timed from before its thread starts: a million or more lookups (about half
    # a second) make the start's jitter small against it, where 300,000 spread a round's figures 2×.
    lookups = 200_000 if args.quick else 1_500_000
    throughput = ({("frozen", 1): [], ("frozen", 2): [], ("private", 2): [], ("comprehension", 2): []}
                  if OWN_GIL else {})
    print(f"a dict of {n:,} str -> (int, int, str) entries, {size >> 20} MiB resident", end=" ", flush=True)
    for _ in range(rounds):
        frozen, released = freeze_vs_release(n)
        times["freeze"].append(frozen)
        times["release"].append(released)
        snapshot, pickled = snapshot_vs_pickle(n)
        times["snapshot"].append(snapshot)
        times["pickle copy"].append(pickled)
        for gil in kinds:
            for k in KS:
                for how in ("frozen", "pickle"):
                    seconds, grew = time_to_read(n, k, how, own_gil=gil == "own")
                    ready[gil, how, k].append(seconds)
                    added[gil, how, k].append(grew / k)
        for how, k in throughput:
            throughput[how, k].append(lookups_per_second(n, k, how, lookups))
        print(".", end="", flush=True)
    print()
    m = {name: stats(v) for name, v in times.items()}
    results = {"machine": machine(), "quick": args.quick, "rounds": rounds, "entries": n, "data_bytes": size,
               "freeze": m["freeze"], "release": m["release"], "snapshot": m["snapshot"], "pickle_copy": m["pickle copy"],
               "ready": {f"{gil}-{how}-{k}": stats(v) for (gil, how, k), v in ready.items()},
               "added_per_interpreter": {f"{gil}-{how}-{k}": stats(v) for (gil, how, k), v in added.items()},
               "lookups_per_second": {f"{how}-{k}": stats(v) for (how, k), v in throughput.items()}}
    over = ratio(m["freeze"], m["release"])
    rows = [(f"freeze() of {4 * n:,} objects {cell(m['freeze'])} vs release() of the same region "
             f"{cell(m['release'])}", f"{over[0]:.2f}× ({over[1]:.2f}..{over[2]:.2f})", "≤ 2×", over[0] <= 2)]
    publication = ratio(m["snapshot"], m["pickle copy"])
    rows.append((f"r.snapshot() (a frozen copy for readers, the writer keeps its region) {cell(m['snapshot'])} vs "
                 f"one private copy by pickle.dumps + loads {cell(m['pickle copy'])}",
                 f"{publication[0]:.2f}× ({publication[1]:.2f}..{publication[2]:.2f})", "-", None))
    for gil in kinds:
        words = "shared-GIL" if gil == "shared" else "own-GIL"
        for k in KS:
            fr, pk = stats(ready[gil, "frozen", k]), stats(ready[gil, "pickle", k])
            speedup = ratio(pk, fr)
            goal = k == 4 and (gil == "own" or not OWN_GIL)
            rows.append((f"ready in {k} {words} interpreter(s): freeze + adopt {cell(fr)} vs pickle.dumps + loads "
                         f"in each {cell(pk)}", f"{speedup[0]:.1f}× faster ({speedup[1]:.1f}..{speedup[2]:.1f})",
                         "≥ 20× at K = 4" if goal else "-", speedup[0] >= 20 if goal else None))
        for how in ("frozen", "pickle"):
            per = stats(added[gil, how, 4])
            share = per["median"] / size
            goal = how == "frozen" and (gil == "own" or not OWN_GIL)
            rows.append((f"memory added per {words} interpreter reading the data ({how}, K = 4): "
                         f"{per['median'] / 2**20:.1f} MiB of the data's {size / 2**20:.1f} MiB",
                         f"{share:.1%}", "< 5 %" if goal else "-", share < 0.05 if goal else None))
    if OWN_GIL:
        t = {key: stats(v) for key, v in throughput.items()}
        scaling = ratio(t["frozen", 2], t["frozen", 1])
        private = ratio(t["frozen", 2], t["private", 2])
        rate = lambda s: f"{s['median'] / 1e6:.2f} M/s ({s['min'] / 1e6:.2f}..{s['max'] / 1e6:.2f})"
        rows.append((f"lookups, 2 own-GIL interpreters at once on the frozen region {rate(t['frozen', 2])} vs 1 "
                     f"{rate(t['frozen', 1])}", f"{scaling[0]:.2f}× ({scaling[1]:.2f}..{scaling[2]:.2f})", "≥ 1.8×",
                     scaling[0] >= 1.8))
        rows.append((f"the same 2 on the frozen region vs on a private copy each {rate(t['private', 2])} (both "
                     f"made by pickle.loads)", f"{private[0]:.2f}× ({private[1]:.2f}..{private[2]:.2f})",
                     "≥ 0.9× (within 10 %)", private[0] >= 0.9))
        layout = ratio(t["comprehension", 2], t["frozen", 2])
        rows.append((f"the same 2 on a frozen region built by the comprehension {rate(t['comprehension', 2])} vs "
                     f"made by pickle.loads (the layout mimalloc gives the comprehension's objects)",
                     f"{layout[0]:.2f}× ({layout[1]:.2f}..{layout[2]:.2f})", "-", None))
    else:
        rows.append(("lookup throughput of 2 interpreters with their own GIL vs 1",
                     "no such interpreters before CPython 3.12", "≥ 1.8×", None))
    publish_goals("frozen regions (CPython " + sys.version.split()[0] + ")", rows, results,
                  f"{rounds} rounds in one process, the measurements taking turns; median (min..max).",
                  args.json, args.md)


if __name__ == "__main__":
    sys.exit(main())
