"""What one request of bench/requests_bench.py costs while its memory is fresh (docs/benchmarks.md).

    PYTHONPATH=build/python .venv/bin/python experiments/fresh_requests.py [--requests N] ordinary|region

The benchmark's first IN_FLIGHT requests all stay alive at once, so each takes memory the process never
touched: its ordinary-heap objects, or a region of its own.  This makes N such requests in a row (the
benchmark's `handle`), keeps each response alive (in a list, or as its region's root), with the
interpreter's collector off so that neither mode pays its pauses, and prints the µs per request.  It
exits without tearing them down.
"""
import argparse
import gc
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import requests_bench  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["ordinary", "region"])
    parser.add_argument("--requests", type=int, default=requests_bench.IN_FLIGHT)
    args = parser.parse_args()
    cache = requests_bench.build_cache(1000)
    handle, body = requests_bench.handle, requests_bench.BODY
    kept = []
    if args.mode == "region":
        import region
        region.region().close()   # the package's activation is not a request's cost
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    for _ in range(args.requests):
        if args.mode == "region":
            r = region.region()
            with r:
                r.root = handle(body, cache)
            kept.append(r)
        else:
            kept.append(handle(body, cache))
    seconds = time.perf_counter() - start
    print(f"{args.mode}: {seconds / args.requests * 1e6:.1f} µs a request, {args.requests:,} fresh requests kept alive")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
