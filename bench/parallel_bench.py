"""Throughput of interpreters with their own GIL working on regions handed back and forth (CPython
3.12+): two such interpreters in parallel against one, on the same jobs.

A job takes a region (its id comes on a pipe), acquires it, walks its graph (a list of dicts) doing
some arithmetic per dict, writes a result into every dict inside a block (so the new ints are region
objects), releases it and sends the id on.  With two workers each region goes to the OTHER worker
next, so every job hands a region from one GIL to another; with one worker it comes back to the same
one.  Both runs do the same jobs on the same regions; the ratio is one worker's time over two's.
Each measurement runs in a fresh process; the two modes take turns, round after round.

    .venv-313/bin/python bench/parallel_bench.py [--quick] [--json F] [--md F]   (PYTHONPATH=build-py313/python)
"""
import argparse
import os
import sys
import textwrap
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The subinterpreter calls of 3.12 and 3.13 differ; the tests' shim covers both.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from benchreport import cell, machine, measure_in_workers, publish_goals, ratio_range  # noqa: E402

REGIONS = 8
ITEMS = 2_000

# The machine's own ceiling: the same jobs on a list the worker keeps to itself, no region, no hand-over.
PLAIN_WORKER = """
data = [{"k": j, "n": 0} for j in range(items)]
for done in range(jobs):
    total = 0
    for d in data:
        x = d["k"]
        for j in range(work):
            x = (x * 31 + j) % 1000003
        total += x
    for d in data:
        d["n"] = d["n"] + total % 7
"""

WORKER = """
import os, region
done = 0
while done < jobs:
    rid = int.from_bytes(os.read(inbox, 8), "little")
    r = region.adopt(rid)
    assert r.acquire(timeout=60)
    total = 0
    for d in r.root:
        x = d["k"]
        for j in range(work):
            x = (x * 31 + j) % 1000003
        total += x
    with r:
        for d in r.root:
            d["n"] = d["n"] + total % 7
    del d
    r.release()
    del r
    done += 1
    os.write(outbox, rid.to_bytes(8, "little"))
"""


def timed(threads):
    """Seconds from starting the threads to the end of the last."""
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def run_plain(workers, jobs, work):
    import subinterp
    subs = [subinterp.create_isolated() for _ in range(workers)]
    threads = [threading.Thread(target=subinterp.run_string, args=(s, textwrap.dedent(PLAIN_WORKER)),
                                kwargs={"shared": {"items": ITEMS, "jobs": jobs // workers, "work": work}})
               for s in subs]
    seconds = timed(threads)
    for s in subs:
        subinterp.destroy(s)
    return {"seconds": seconds}


def run(mode, jobs, work):
    """One measurement: `jobs` jobs in all, by one worker interpreter or by two in parallel (plain-*:
    the same jobs without regions)."""
    if mode.startswith("plain-"):
        return run_plain(1 if mode == "plain-one" else 2, jobs, work)
    import region
    import subinterp
    workers = 1 if mode == "one" else 2
    regions = []
    for i in range(REGIONS):
        r = region.region(f"job-{i}")
        with r:
            r.root = [{"k": int(str(j)), "n": int("0")} for j in range(ITEMS)]
        r.release()   # main's interned keys become immortal here: the regions may cross GILs
        regions.append(r)
    pipes = [os.pipe() for _ in range(workers)]
    subs = [subinterp.create_isolated() for _ in range(workers)]
    for s in subs:
        subinterp.run_string(s, "import region")
    # Worker w reads its inbox and writes to the next worker's (itself when alone).
    for i, r in enumerate(regions):
        os.write(pipes[i % workers][1], r.id.to_bytes(8, "little"))
    errors = []

    def drive(w):
        try:
            subinterp.run_string(subs[w], textwrap.dedent(WORKER), shared={
                "inbox": pipes[w][0], "outbox": pipes[(w + 1) % workers][1], "jobs": jobs // workers,
                "work": work})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    seconds = timed([threading.Thread(target=drive, args=(w,)) for w in range(workers)])
    if errors:
        raise RuntimeError(errors)
    for s in subs:
        subinterp.destroy(s)
    for r in regions:   # every dict got a result per job it went through: the work really ran
        assert r.acquire(timeout=5)
        assert all(d["n"] >= 0 for d in r.root)
        r.close()
    return {"seconds": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and rounds")
    parser.add_argument("--json")
    parser.add_argument("--md")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json
        _, mode, arg = args.worker
        jobs, work = map(int, arg.split(":"))
        print(json.dumps(run(mode, jobs, work)))
        return 0
    if sys.version_info < (3, 12):
        print("parallel_bench: needs CPython 3.12+ (interpreters with their own GIL); skipped")
        return 0
    rounds = 3 if args.quick else 5
    jobs, work = (80, 20) if args.quick else (400, 20)
    print(f"{jobs} jobs on {REGIONS} regions of {ITEMS:,} dicts, one worker vs two", end=" ", flush=True)
    m = measure_in_workers(os.path.abspath(__file__), "jobs", ["one", "two", "plain-one", "plain-two"],
                           f"{jobs}:{work}", rounds)
    print()
    speedup = ratio_range(m["one"], m["two"])
    ceiling = ratio_range(m["plain-one"], m["plain-two"])
    results = {"machine": machine(), "python": sys.version.split()[0], "quick": args.quick, "rounds": rounds,
               "jobs": jobs, "regions": REGIONS, "items": ITEMS, "work": work, "times": m,
               "two_over_one_throughput": speedup[0], "plain_two_over_one_throughput": ceiling[0]}
    rows = [(f"{jobs} jobs on regions handed between interpreters with their own GIL: one worker "
             f"{cell(m['one'])}, two in parallel {cell(m['two'])}",
             f"{speedup[0]:.2f}× the throughput ({speedup[1]:.2f}..{speedup[2]:.2f})", "≥ 1.8× on 2 cores",
             speedup[0] >= 1.8),
            (f"the same jobs without regions (each worker on a list of its own, nothing handed over): one "
             f"{cell(m['plain-one'])}, two {cell(m['plain-two'])}: what this machine gives two GILs",
             f"{ceiling[0]:.2f}× ({ceiling[1]:.2f}..{ceiling[2]:.2f})", "-", None)]
    publish_goals(f"parallel hand-over (CPython {results['python']})", rows, results,
                  f"{os.cpu_count()} CPUs; {rounds} rounds, each measurement in a fresh process, the modes "
                  "taking turns. With two workers every job hands its region to the other GIL.",
                  args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
