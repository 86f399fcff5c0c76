"""The C allocator comparison: the region-per-phase pattern (allocate N small blocks, free them all)
with libregion against raw mimalloc heaps, mi_malloc, glibc malloc, jemalloc, APR pools and talloc.
The region binaries link libregion.a, as the mimalloc ones link mimalloc; region_shared is the same
program against libregion.so (what the PLT costs).

    .venv/bin/python bench/alloc_bench.py [--build build] [--quick] [--json FILE] [--md FILE]

Each allocator is its own binary (bench/alloc/alloc.c); each run is a fresh process whose first
round is COLD (first touch of the memory) and whose later rounds are WARM; runs of the allocators
take turns.  Reported: median over runs (of the median over warm rounds), with min..max over runs.
"""
import argparse
import json
import os
import statistics
import subprocess

from benchreport import describe_machine, goal_records, goals_table, machine, publish, summary

ALLOCATORS = ["region", "region_shared", "mi_heap", "mi_malloc", "glibc", "jemalloc", "apr", "talloc", "region_each"]


def run(build, allocator, blocks, size, threads, rounds):
    exe = os.path.join(build, "bench", f"bench_alloc_{allocator}")
    out = subprocess.run([exe, "--blocks", str(blocks), "--size", str(size), "--threads", str(threads),
                          "--rounds", str(rounds)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{exe} failed: {out.stderr}")
    return json.loads(out.stdout)


def measure(build, allocators, blocks, size, threads, rounds, runs):
    samples = {a: {"cold_alloc": [], "warm_alloc": [], "warm_free": [], "rss": []} for a in allocators}
    for _ in range(runs):
        for a in allocators:
            r = run(build, a, blocks, size, threads, rounds)
            s = samples[a]
            s["cold_alloc"].append(r["rounds"][0]["alloc_s"])
            s["warm_alloc"].append(statistics.median(x["alloc_s"] for x in r["rounds"][1:]))
            s["warm_free"].append(statistics.median(x["free_s"] for x in r["rounds"][1:]))
            s["rss"].append(r["peak_rss_kib"])
            print(".", end="", flush=True)
    return {a: {k: summary(v) for k, v in s.items()} for a, s in samples.items()}


def ms(x):
    return f"{x * 1e3:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--md")
    args = parser.parse_args()
    present = [a for a in ALLOCATORS if os.path.exists(os.path.join(args.build, "bench", f"bench_alloc_{a}"))]
    blocks = 200_000 if args.quick else 1_000_000
    runs = 3 if args.quick else 5
    rounds = 5
    sizes = [32] if args.quick else [16, 32, 48, 64]
    results = {"machine": machine(), "quick": args.quick,
               "blocks": blocks, "runs": runs, "rounds": rounds, "sizes": {}, "threads": {}}
    lines = []
    for size in sizes:
        print(f"{blocks:,} blocks of {size} B", end=" ", flush=True)
        m = measure(args.build, present, blocks, size, 1, rounds, runs)
        print()
        results["sizes"][size] = m
        lines.append(f"\n**{blocks:,} blocks of {size} B, one thread** (ms; median of {runs} runs, min..max)\n")
        lines.append("| allocator | warm alloc | allocs/s (warm) | free all (warm) | cold alloc | peak RSS |")
        lines.append("|---|---|---|---|---|---|")
        for a in present:
            s = m[a]
            lines.append(f"| {a} | {ms(s['warm_alloc']['median'])} ({ms(s['warm_alloc']['min'])}..{ms(s['warm_alloc']['max'])}) "
                         f"| {blocks / s['warm_alloc']['median'] / 1e6:.0f} M "
                         f"| {ms(s['warm_free']['median'])} ({ms(s['warm_free']['min'])}..{ms(s['warm_free']['max'])}) "
                         f"| {ms(s['cold_alloc']['median'])} | {s['rss']['median'] / 1024:.0f} MiB |")
    # Ratios on the 32 B case (the 16-64 B middle), warm alloc + free.
    m = results["sizes"][32]

    def total(a):
        return m[a]["warm_alloc"]["median"] + m[a]["warm_free"]["median"]

    goals = []
    if "mi_heap" in m:
        r = total("region") / total("mi_heap")
        goals.append(("region vs raw mi_heap_malloc + mi_heap_destroy (alloc + free all, warm)", f"{r:.2f}×", "≤ 1.1×", r <= 1.1))
    for other in ("jemalloc", "glibc", "talloc"):
        if other in m:
            r = total(other) / total("region")
            goals.append((f"{other} / region (alloc + free all, warm)", f"{r:.2f}×", "> 1 (region ahead)", r > 1))
    if "apr" in m:
        r = total("apr") / total("region")
        goals.append(("apr pool / region (alloc + free all, warm)", f"{r:.2f}×", "> 1 (region ahead)", r > 1))
    if "region_each" in m:
        r = m["region_each"]["warm_free"]["median"] / m["region"]["warm_free"]["median"]
        goals.append(("per-block region_free / bulk region_destroy (free all)", f"{r:.0f}×", "≥ 10×", r >= 10))
    # Two threads against one, for region and, in the same runs, for raw mimalloc heaps: what this
    # machine's two CPUs allow any allocator (their caches and memory are shared).
    print("threads", end=" ", flush=True)
    pair = [a for a in ("region", "mi_heap") if a in present]
    scaling = {t: measure(args.build, pair, blocks, 32, t, rounds, runs) for t in (1, 2)}
    print()
    results["threads"] = scaling

    def speedup(a):
        throughput = {t: t * blocks / (s[a]["warm_alloc"]["median"] + s[a]["warm_free"]["median"])
                      for t, s in scaling.items()}
        return throughput[2] / throughput[1]

    r = speedup("region")
    ceiling = f"; raw mi_heap in the same runs {speedup('mi_heap'):.2f}×" if "mi_heap" in pair else ""
    goals.append((f"2 threads, a region each / 1 thread (blocks per second{ceiling})", f"{r:.2f}×", "≥ 1.9×", r >= 1.9))
    results["goals"] = goal_records(goals)
    table = goals_table("comparison (32 B blocks)", goals)
    report = "\n".join(table + lines) + f"\n\nMachine: {describe_machine(results['machine'])}."
    publish(report, results, args.json, args.md)

if __name__ == "__main__":
    main()
