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
memory, and the longest pause of an automatic gc collection.  In flight: IN_FLIGHT requests, as the
issue asks; with --quick fewer requests than that are served, so every one of them is in flight at
once and makes a region of its own from fresh memory.
"""
import argparse
import asyncio
import gc
import json
import resource
import time

from benchreport import machine, publish_goals, run_worker_record, summary

IN_FLIGHT = 10_000

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

    latencies = []
    remaining = [total]

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
    return {"seconds": seconds, "throughput": total / seconds,
            "p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "longest_gc_pause": max(pauses, default=0.0), "collections": len(pauses)}


METRICS = ["throughput", "p50", "p99", "peak_rss_kib", "longest_gc_pause", "collections"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--md", help="write the Markdown report here")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)   # serve MODE REQUESTS
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[1], int(args.worker[2]))))
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
    stats = {m: {k: summary([run[k] for run in runs[m]]) for k in METRICS} for m in modes}

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
        (f"peak resident memory: region {span('region', 'peak_rss_kib', 1 / 1024, 'MiB')} vs ordinary "
         f"{span('ordinary', 'peak_rss_kib', 1 / 1024, 'MiB')}",
         f"{med('region', 'peak_rss_kib') / med('ordinary', 'peak_rss_kib'):.2f}×", "-", None),
    ]
    results = {"machine": machine(), "quick": args.quick, "rounds": rounds, "requests": total,
               "in_flight": IN_FLIGHT, "runs": runs, "stats": stats}
    publish_goals("benchmark", rows, results,
                  f"{total:,} requests with {IN_FLIGHT} in flight (asyncio), {rounds} rounds, each mode in a "
                  "fresh interpreter, taking turns; median and min..max over the rounds.", args.json, args.md)


if __name__ == "__main__":
    main()
