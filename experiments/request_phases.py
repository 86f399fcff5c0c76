"""The phases of bench/requests_bench.py's steady state, each timed alone (docs/design.md, "What a
region costs").

    PYTHONPATH=build/python .venv/bin/python experiments/request_phases.py MODE [ROUNDS]

MODE: `region` (a region per request), `ordinary` (the ordinary heap, the package not active), or
`hooked` (the ordinary heap with the package active: one region made and closed first, so that the
allocator hook, the deallocator wrappers and the gc callbacks are in).  IN_FLIGHT requests are kept
alive; each in turn is serialized (`dumps`), dropped (`close`: r.close(), or del), and replaced by a
new one (`make`: region(), the request's work in a block, the root set), as a connection serves its
next request.  Prints the mean of each phase per request, in µs, over ROUNDS passes (default 3).
The long-lived cache is frozen (gc.freeze()) so that the ordinary heap's full collections, which the
benchmark reports apart, do not blur the phases.
"""
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import requests_bench as rb   # noqa: E402
import region                 # noqa: E402

mode = sys.argv[1] if len(sys.argv) > 1 else "region"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
if mode not in ("region", "ordinary", "hooked"):
    sys.exit(f"request_phases.py: MODE is region, ordinary or hooked, not {mode!r}")
if mode == "hooked":
    region.region().close()
cache = rb.build_cache(100_000)
gc.collect()
gc.freeze()


def make():
    if mode == "region":
        r = region.region()
        with r:
            r.root = rb.handle(rb.BODY, cache)
        return r
    return [rb.handle(rb.BODY, cache)]


items = [make() for _ in range(rb.IN_FLIGHT)]
dumps = close = made = 0.0
for _ in range(rounds):
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
        dumps += t1 - t0
        close += t2 - t1
        made += t3 - t2
n = rounds * len(items)
print(f"{mode}: dumps {dumps / n * 1e6:.1f} µs, close {close / n * 1e6:.1f} µs, make {made / n * 1e6:.1f} µs "
      f"a request ({rb.IN_FLIGHT:,} in flight, {rounds} passes)")
