"""The Python binding in one run: build a 1M-object structure in a region, show that every object
landed in the region, that gc.collect() no longer walks it, that r.check() passes, and that a
deliberately escaped reference is reported with its path.

    PYTHONPATH=build/python python examples/python_demo.py [--objects N]
"""
import argparse
import gc
import time

import region


def build(n_users):
    """About 5 objects per user: the dict, its name str, its score float, its tags list and tuple."""
    return {"users": [{"id": i * 1000 + 7, "name": f"user-{i}", "score": i / 7,
                       "tags": [f"t{i % 10}"], "pos": (i, -i)} for i in range(n_users)]}


def walk(obj, seen):
    """Every object reachable from obj (shared singletons and constants included)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen[id(o)] = o
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return seen


def timed(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return result, times[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="approximate object count")
    args = parser.parse_args()
    n_users = max(1, args.objects // 5)

    r = region.region("demo")
    t = time.perf_counter()
    with r:
        r.root = build(n_users)
    build_region = time.perf_counter() - t

    objs = walk(r.root, {})
    placed = sum(1 for o in objs.values() if region.region_of(o) is r)
    shared = sum(1 for o in objs.values() if region.is_shared(o))
    missed = len(objs) - placed - shared
    print(f"built {len(objs):,} objects in region {r.name!r} in {build_region * 1e3:.0f} ms")
    print(f"placement: {placed:,} region objects, {shared:,} shared singletons (None, small ints, "
          f"interned keys such as 'id'), {missed} elsewhere")
    print(f"           {placed / (placed + missed):.2%} of the objects the block created are in the region")
    del objs

    gc_ids = {id(o) for o in gc.get_objects()}
    in_generations = sum(1 for u in r.root["users"] if id(u) in gc_ids or id(u["tags"]) in gc_ids)
    del gc_ids
    print(f"gc.get_objects() lists {in_generations} of the region's {2 * n_users:,} containers")

    _, with_region = timed(gc.collect)
    t = time.perf_counter()
    ordinary = build(n_users)
    build_ordinary = time.perf_counter() - t
    _, with_ordinary = timed(gc.collect)
    print(f"the same structure in the ordinary heap: built in {build_ordinary * 1e3:.0f} ms")
    print(f"gc.collect() (median of 5): {with_region * 1e3:.1f} ms with the structure in the region, "
          f"{with_ordinary * 1e3:.1f} ms with a copy in the ordinary heap too")
    del ordinary

    t = time.perf_counter()
    r.check()
    print(f"r.check(): isolated ({(time.perf_counter() - t) * 1e3:.0f} ms); stats: "
          f"{ {k: v for k, v in r.stats().items() if k in ('objects', 'bytes', 'pages', 'tracked')} }")

    leaked = r.root["users"][3]["tags"]     # a reference from outside: an escape
    try:
        r.check()
    except region.IsolationError as error:
        print("after `leaked = r.root['users'][3]['tags']`, r.check() raises:")
        print("  " + str(error).replace("\n", "\n  "))
    del leaked
    h = r.handle(r.root["users"][3])
    print(f"a handle instead: {h!r} -> {h()['name']!r}")
    r.check()
    print("after `del leaked`: isolated again")


if __name__ == "__main__":
    main()
