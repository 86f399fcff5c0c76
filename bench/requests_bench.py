"""A server-shaped benchmark (issue 17): each request parses a JSON body, builds a response of a few
hundred objects and returns it as bytes, with many requests in flight at once - each in a region of
its own, closed when the request ends, against the same server on the ordinary heap.

    PYTHONPATH=build/python .venv/bin/python bench/requests_bench.py [--quick] [--json FILE] [--md FILE]

Why asyncio rather than a thread pool: "in flight" means a request that has built its response and
waits (here on a simulated send, `await asyncio.sleep(0)`) while others run, so its objects stay
alive; an event loop holds any number of such requests in one thread, where a thread pool would hold
as many as it has threads and measure the GIL's hand-offs besides.  A region's block is open only
around a request's synchronous work, never across an await (placement follows the thread, not the
coroutine).

The server holds a cache of long-lived objects in the ordinary heap in both modes, as servers do:
that is what each of the interpreter's full collections must walk, and what makes its pauses long.

Reported per mode (each round in a fresh interpreter, the modes taking turns): requests per second,
the p50 and p99 of a request's latency (from its start to its bytes), the process's peak resident
memory, the longest pause of an automatic gc collection, and the split of the run's time between
the interpreter's collections and the rest (per request): what a region per request saves and what it
costs, each on its own.  In flight: IN_FLIGHT requests, as the
issue asks; with --quick fewer requests than that are served, so every one of them is in flight at
once and makes a region of its own from fresh memory.

Beside the rate of the whole run, the sustained rate (sustained_window): that of the middle of the
run, where as many requests start as end, each in memory an earlier one gave back, and the
ordinary heap no longer grows.  The interpreter counts each allocation of an object it can track up
and each deallocation down, so a server whose requests free what they allocate triggers no
collection there: what a region saves in collections it saves while the heap grows (the run's first
IN_FLIGHT requests), and the sustained rate shows what it costs once the heap stops growing.

Beside the goals, where a request's time goes in the steady state (`phases`): IN_FLIGHT requests are
kept alive, and each in turn is serialized (`dumps`), dropped (`close`: r.close(), or del) and
replaced by a new one (`make`: region(), the request's work in a block, the root set), as a
connection serves its next request; each phase is timed alone, per request.  Three modes: the
ordinary heap, the ordinary heap with the package active (one region made and closed first, so that
the allocator hook, the deallocator wrappers and the gc callbacks are in: what a process pays for
regions where it does not use them), and a region per request.  The long-lived cache is frozen
(gc.freeze()) there, so that the ordinary heap's full collections, which the table reports apart, do
not blur the phases.
"""
import argparse
import asyncio
import gc
import json
import resource
import time

from benchreport import machine, publish_goals, run_worker_record, summary

IN_FLIGHT = 10_000


# The sustained rate: completions IN_FLIGHT + 1 to total - IN_FLIGHT, a window in which as many
# requests start as end (the last IN_FLIGHT only end) and every one of them works in memory a closed
# or freed one gave back (the first IN_FLIGHT make their objects, or regions, in memory the process
# never touched); the ordinary heap does not grow there, so its collections are few.
def sustained_window(total):
    """The completions that bound the sustained window, or None when there is none."""
    return (IN_FLIGHT, total - IN_FLIGHT) if total >= 3 * IN_FLIGHT else None


BODY = json.dumps({
    "user": {"id": 7321, "name": "Ada Lovelace", "tags": ["admin", "beta", "eu"]},
    "items": [{"sku": f"sku-{i:04d}", "qty": i % 5 + 1, "price": 3.25 * (i + 1)} for i in range(24)],
    "note": "deliver after 5pm",
})


def handle(body, cache):
    """One request's work: about 300 objects in the response."""
    request = json.loads(body)
    user = request["user"]
    profile = cache[user["id"] % len(cache)]
    lines = []
    total = 0.0
    for item in request["items"]:
        cost = round(item["qty"] * item["price"], 2)
        total += cost
        lines.append({"sku": item["sku"], "qty": item["qty"], "cost": cost,
                      "labels": [tag.upper() for tag in user["tags"]], "key": (user["id"], item["sku"])})
    return {"user": user["id"], "name": user["name"], "segment": profile["segment"], "lines": lines,
            "total": round(total, 2), "count": len(lines), "note": request["note"]}


def build_cache(users):
    """The server's long-lived state: a list of user profiles (about 10 objects each)."""
    return [{"id": i, "name": f"user-{i}", "segment": "gold" if i % 7 == 0 else "std",
             "history": [i, i + 1, i + 2], "scores": (i / 3, i / 7)} for i in range(users)]


def worker(mode, total):
    """Serves `total` requests with IN_FLIGHT in flight; one JSON line of measurements."""
    if mode == "region":
        import region
    cache = build_cache(100_000)
    gc.collect()
    pauses = []
    started = [0.0]

    def on_gc(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])
            if marks[0] is not None and marks[1] is None:
                marks[2] += pauses[-1]

    latencies = []
    remaining = [total]
    window = sustained_window(total)
    marks = [None, None, 0.0]   # when the window opened and closed; the collections' time in it

    async def serve_one():
        begin = time.perf_counter()
        if mode == "region":
            r = region.region()
            with r:
                r.root = handle(BODY, cache)
            await asyncio.sleep(0)            # the response waits to be sent; others run
            out = json.dumps(r.root).encode()
            r.close()
        else:
            response = handle(BODY, cache)
            await asyncio.sleep(0)
            out = json.dumps(response).encode()
            del response
        latencies.append(time.perf_counter() - begin)
        if window and len(latencies) in window:
            marks[window.index(len(latencies))] = time.perf_counter()
        return len(out)

    async def connection():
        while remaining[0] > 0:
            remaining[0] -= 1
            await serve_one()

    async def server():
        await asyncio.gather(*(connection() for _ in range(IN_FLIGHT)))

    gc.callbacks.append(on_gc)
    t = time.perf_counter()
    asyncio.run(server())
    seconds = time.perf_counter() - t
    gc.callbacks.remove(on_gc)
    latencies.sort()
    sustained = (window[1] - window[0]) / (marks[1] - marks[0]) if window else None
    return {"seconds": seconds, "throughput": total / seconds, "sustained": sustained,
            "sustained_gc_seconds": marks[2] if window else None,
            "p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "longest_gc_pause": max(pauses, default=0.0), "collections": len(pauses),
            "gc_seconds": sum(pauses), "outside_gc_per_request": (seconds - sum(pauses)) / total}


PHASE_MODES = ["ordinary", "hooked", "region"]
PHASES = ["dumps", "close", "make"]


def worker_phases(mode, passes):
    """The steady state's phases, each timed alone (module docstring): µs a request, per phase."""
    if mode not in PHASE_MODES:
        raise SystemExit(f"requests_bench.py: a phases mode is one of {PHASE_MODES}, not {mode!r}")
    if mode != "ordinary":
        import region
        if mode == "hooked":
            region.region().close()
    cache = build_cache(100_000)
    gc.collect()
    gc.freeze()

    def make():
        if mode == "region":
            r = region.region()
            with r:
                r.root = handle(BODY, cache)
            return r
        return [handle(BODY, cache)]

    items = [make() for _ in range(IN_FLIGHT)]
    spent = dict.fromkeys(PHASES, 0.0)
    for _ in range(passes):
        for i, item in enumerate(items):
            t0 = time.perf_counter()
            json.dumps(item.root if mode == "region" else item[0])
            t1 = time.perf_counter()
            if mode == "region":
                item.close()
            else:
                del item[0]
            t2 = time.perf_counter()
            items[i] = make()
            t3 = time.perf_counter()
            spent["dumps"] += t1 - t0
            spent["close"] += t2 - t1
            spent["make"] += t3 - t2
    return {phase: seconds / (passes * IN_FLIGHT) for phase, seconds in spent.items()}


def phases_table(runs):
    """Markdown lines: µs a request per phase and mode, medians (min..max) over the runs."""
    stats = {m: {ph: summary([run[ph] for run in runs[m]]) for ph in PHASES} for m in PHASE_MODES}
    lines = [f"\n**Where a request's time goes** (steady state, {IN_FLIGHT:,} in flight; µs a request, median "
             f"(min..max) of {len(runs['region'])} runs; `hooked`: the ordinary heap with the package active)\n",
             "| phase | " + " | ".join(PHASE_MODES) + " |", "|---|" + "---|" * len(PHASE_MODES)]
    for ph in PHASES + ["total"]:
        cells = []
        for m in PHASE_MODES:
            if ph == "total":
                cells.append(f"{sum(stats[m][p]['median'] for p in PHASES) * 1e6:.1f}")
            else:
                s = stats[m][ph]
                cells.append(f"{s['median'] * 1e6:.1f} ({s['min'] * 1e6:.1f}..{s['max'] * 1e6:.1f})")
        lines.append(f"| {ph} | " + " | ".join(cells) + " |")
    return lines, stats


METRICS = ["throughput", "p50", "p99", "peak_rss_kib", "longest_gc_pause", "collections", "gc_seconds",
           "outside_gc_per_request"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--md", help="write the Markdown report here")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)   # serve MODE REQUESTS | phases MODE PASSES
    args = parser.parse_args()
    if args.worker:
        case, mode, arg = args.worker
        print(json.dumps(worker_phases(mode, int(arg)) if case == "phases" else worker(mode, int(arg))))
        return

    rounds = 3 if args.quick else 5
    total = 5_000 if args.quick else 30_000
    modes = ["ordinary", "region"]
    runs = {m: [] for m in modes}
    print(f"{total:,} requests, {IN_FLIGHT} in flight", end=" ", flush=True)
    for _ in range(rounds):
        for m in modes:
            runs[m].append(run_worker_record(__file__, "serve", m, total))
            print(".", end="", flush=True)
    print()
    window = sustained_window(total)
    metrics = METRICS + (["sustained", "sustained_gc_seconds"] if window else [])
    stats = {m: {k: summary([run[k] for run in runs[m]]) for k in metrics} for m in modes}

    def med(m, k):
        return stats[m][k]["median"]

    def span(m, k, scale, unit, digits=1):
        s = stats[m][k]
        return (f"{s['median'] * scale:.{digits}f} {unit} "
                f"({s['min'] * scale:.{digits}f}..{s['max'] * scale:.{digits}f})")

    throughput = med("region", "throughput") / med("ordinary", "throughput")
    rows = [
        (f"requests per second: region per request {span('region', 'throughput', 1, '/s', 0)} vs the "
         f"ordinary heap {span('ordinary', 'throughput', 1, '/s', 0)}", f"{throughput:.2f}×", "≥ 1×",
         throughput >= 1),
    ]
    if window:
        sustained = med("region", "sustained") / med("ordinary", "sustained")
        rows.append(
            (f"sustained requests per second, from the {window[0]:,}th to the {window[1]:,}th response (as many "
             f"start as end, in reused memory; collections there "
             f"region {span('region', 'sustained_gc_seconds', 1e3, 'ms', 0)}, ordinary "
             f"{span('ordinary', 'sustained_gc_seconds', 1e3, 'ms', 0)}): region "
             f"{span('region', 'sustained', 1, '/s', 0)} vs ordinary {span('ordinary', 'sustained', 1, '/s', 0)}",
             f"{sustained:.2f}×", "-", None))
    rows += [
        (f"p50 latency: region {span('region', 'p50', 1e3, 'ms', 2)} vs ordinary "
         f"{span('ordinary', 'p50', 1e3, 'ms', 2)}",
         f"{med('region', 'p50') / med('ordinary', 'p50'):.2f}×", "-", None),
        (f"p99 latency: region {span('region', 'p99', 1e3, 'ms', 2)} vs ordinary "
         f"{span('ordinary', 'p99', 1e3, 'ms', 2)}",
         f"{med('region', 'p99') / med('ordinary', 'p99'):.2f}×", "< 1×",
         med("region", "p99") < med("ordinary", "p99")),
        (f"longest gc pause: region {span('region', 'longest_gc_pause', 1e3, 'ms', 2)} "
         f"({med('region', 'collections'):.0f} collections) vs ordinary "
         f"{span('ordinary', 'longest_gc_pause', 1e3, 'ms', 2)} ({med('ordinary', 'collections'):.0f})",
         f"{med('region', 'longest_gc_pause') / max(med('ordinary', 'longest_gc_pause'), 1e-9):.2f}×", "< 1×",
         med("region", "longest_gc_pause") < med("ordinary", "longest_gc_pause")),
        (f"where the time goes: in the interpreter's collections, region {span('region', 'gc_seconds', 1e3, 'ms', 0)} "
         f"vs ordinary {span('ordinary', 'gc_seconds', 1e3, 'ms', 0)} in all; the rest, per request, region "
         f"{span('region', 'outside_gc_per_request', 1e6, 'µs')} vs ordinary "
         f"{span('ordinary', 'outside_gc_per_request', 1e6, 'µs')}",
         f"{med('region', 'outside_gc_per_request') / med('ordinary', 'outside_gc_per_request'):.2f}× "
         "(the rest)", "-", None),
        (f"peak resident memory: region {span('region', 'peak_rss_kib', 1 / 1024, 'MiB')} vs ordinary "
         f"{span('ordinary', 'peak_rss_kib', 1 / 1024, 'MiB')}",
         f"{med('region', 'peak_rss_kib') / med('ordinary', 'peak_rss_kib'):.2f}×", "-", None),
    ]
    print("phases", end=" ", flush=True)
    phase_runs = {m: [] for m in PHASE_MODES}
    for _ in range(1 if args.quick else 3):
        for m in PHASE_MODES:
            phase_runs[m].append(run_worker_record(__file__, "phases", m, 1))
            print(".", end="", flush=True)
    print()
    phase_lines, phase_stats = phases_table(phase_runs)
    results = {"machine": machine(), "quick": args.quick, "rounds": rounds, "requests": total,
               "in_flight": IN_FLIGHT, "runs": runs, "stats": stats, "phase_runs": phase_runs,
               "phases": phase_stats}
    publish_goals("benchmark", rows, results,
                  f"{total:,} requests with {IN_FLIGHT} in flight (asyncio), {rounds} rounds, each mode in a "
                  "fresh interpreter, taking turns; median and min..max over the rounds.", args.json, args.md,
                  extra=phase_lines)


if __name__ == "__main__":
    main()
