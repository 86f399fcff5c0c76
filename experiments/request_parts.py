"""Where a region request's `make` and `close` go in bench/requests_bench.py's steady state
(docs/benchmarks.md, "A region per request").

    PYTHONPATH=build/python .venv/bin/python experiments/request_parts.py hooked|region [--passes N]

As requests_bench.py's `phases` worker: IN_FLIGHT responses stay alive, and each in turn is
serialized, dropped and made again, three times over; here `make` is timed in its parts - region(),
the block's entry and exit, the request's work inside the block (`handle`), and the root's
assignment - and printed in µs a request beside dumps and close.  `hooked`: the ordinary heap with the
package active (its handle is the ordinary heap's work).
"""
import argparse
import gc
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import requests_bench as rb  # noqa: E402

import region  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["hooked", "region"])
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "hooked":
        region.region().close()
    cache = rb.build_cache(100_000)
    gc.collect()
    gc.freeze()
    n = rb.IN_FLIGHT

    def make():
        r = region.region()
        with r:
            r.root = rb.handle(rb.BODY, cache)
        return r

    items = [make() if args.mode == "region" else [rb.handle(rb.BODY, cache)] for _ in range(n)]
    spent = dict.fromkeys(["region()", "block entry+exit", "handle", "root", "close", "dumps"], 0.0)
    for _ in range(args.passes):
        for i in range(n):
            t0 = time.perf_counter()
            json.dumps(items[i].root if args.mode == "region" else items[i][0])
            t1 = time.perf_counter()
            if args.mode == "region":
                items[i].close()
            else:
                del items[i][0]
            t2 = time.perf_counter()
            if args.mode == "region":
                r = region.region()
                t3 = time.perf_counter()
                with r:
                    t4 = time.perf_counter()
                    response = rb.handle(rb.BODY, cache)
                    t5 = time.perf_counter()
                    r.root = response
                    del response
                    t6 = time.perf_counter()
                t7 = time.perf_counter()
                items[i] = r
                spent["region()"] += t3 - t2
                spent["block entry+exit"] += (t4 - t3) + (t7 - t6)
                spent["handle"] += t5 - t4
                spent["root"] += t6 - t5
            else:
                t3 = time.perf_counter()
                response = rb.handle(rb.BODY, cache)
                t5 = time.perf_counter()
                items[i] = [response]
                spent["handle"] += t5 - t3
            spent["dumps"] += t1 - t0
            spent["close"] += t2 - t1
    print(args.mode, ", ".join(f"{k} {v / (args.passes * n) * 1e6:.2f}" for k, v in spent.items()), "(µs a request)")


if __name__ == "__main__":
    main()
