"""NUMA locality of region memory: runs bench/numa/numa_bench.c, records the machine, and reports the
node x node matrix (CPU on node A, region bound to node B) of placement, latency and bandwidth.

    .venv/bin/python bench/numa_bench.py [--build build] [--quick] [--json FILE] [--md FILE]

Reported per cell: the page census of the region (pages on the bound node / pages present, and the
reserved pages never touched), pointer-chase latency (ns per dependent load) and triad bandwidth
(GB/s, one thread and every CPU of node A), median with min..max over the runs; and remote/local
ratios (latency: remote / local, bandwidth: remote / local) where the machine has more than one node.
On a one-node machine it says so and reports the local row and the placement only.
"""
import argparse
import json
import subprocess
import sys

from benchreport import goal_records, goals_table, memory_machine, publish, summary


def run(build, quick):
    args = [f"{build}/bench/bench_numa"]
    if quick:
        args += ["--chase-mib", "64", "--triad-mib", "32", "--steps", "2000000", "--runs", "3"]
    else:
        args += ["--chase-mib", "256", "--triad-mib", "128", "--steps", "20000000", "--runs", "5"]
    out = subprocess.run(args, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed with status {out.returncode}")
    return json.loads(out.stdout)


def summarize(cell):
    if "error" in cell:
        return cell
    census = cell["census"]
    placed = census["on_target"] / census["present"] if census["present"] else 0.0
    return dict(cell, placement=placed, latency=summary(cell["latency_ns"]), triad_1=summary(cell["triad_gbs_1"]),
                triad_n=summary(cell["triad_gbs_n"]))


def fmt(s, digits=1):
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}..{s['max']:.{digits}f})"


def matrix_lines(title, nodes, cells, value):
    lines = [f"\n**{title}**\n", "| CPU node \\ memory node | " + " | ".join(str(n) for n in range(nodes)) + " |",
             "|---|" + "---|" * nodes]
    for a in range(nodes):
        row = [value(cells[(a, b)]) if (a, b) in cells else "-" for b in range(nodes)]
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--quick", action="store_true", help="smaller buffers, fewer runs")
    parser.add_argument("--json")
    parser.add_argument("--md")
    parser.add_argument("--guest-json", help="the output of the benchmark in the 2-node qemu guest "
                        "(tests/numa2/run.sh --bench-json): its placement census is reported, its times are not")
    args = parser.parse_args()

    print("NUMA locality (bench/numa/numa_bench.c)", flush=True)
    raw = run(args.build, args.quick)
    nodes = raw["nodes"]
    cells = {(c["cpu_node"], c["mem_node"]): summarize(c) for c in raw["cells"]}
    results = {"machine": memory_machine(), "quick": args.quick, "raw": raw,
               "cells": [dict(c, key=f"{a}->{b}") for (a, b), c in cells.items()]}

    ok = {k: c for k, c in cells.items() if "error" not in c}
    lines = [f"Nodes: {nodes}. Regions bound with `{raw['binding']}` binding; chase over "
             f"{raw['chase_bytes'] >> 20} MiB, triad over 3 × {raw['triad_bytes'] >> 20} MiB; {raw['runs']} runs, "
             "median (min..max)."]
    if nodes == 1:
        lines.append("\nThis machine has **one NUMA node**: only the local cell is measured. Remote/local ratios "
                     "need a machine with two or more nodes; the placement of two nodes is checked in a qemu "
                     "guest by `tests/numa2/run.sh`.")
    lines += matrix_lines("Placement: pages on the bound node / pages present (absent: reserved, never touched)",
                          nodes, ok, lambda c: f"{100 * c['placement']:.1f} % of {c['census']['present']:,} "
                                               f"({c['census']['absent']:,} absent)")
    lines += matrix_lines("Latency, ns per dependent load", nodes, ok, lambda c: fmt(c["latency"]))
    lines += matrix_lines("Triad bandwidth, GB/s, one thread", nodes, ok, lambda c: fmt(c["triad_1"]))
    lines += matrix_lines("Triad bandwidth, GB/s, every CPU of the node", nodes, ok,
                          lambda c: fmt(c["triad_n"]) + f" ({c['threads']} threads)")

    rows = []
    placements = [c["placement"] for c in ok.values()]
    worst = min(placements) if placements else 0.0
    rows.append((f"placement of touched pages on the bound node, {len(ok)} cell(s)",
                 f"{100 * worst:.1f} % (worst cell)", "100 %", worst == 1.0))
    ratios = {}
    for (a, b), c in ok.items():
        if a != b and (a, a) in ok:
            local = ok[(a, a)]
            ratios[f"{a}->{b}"] = {"latency": c["latency"]["median"] / local["latency"]["median"],
                                   "bandwidth_1": c["triad_1"]["median"] / local["triad_1"]["median"],
                                   "bandwidth_n": c["triad_n"]["median"] / local["triad_n"]["median"]}
    results["remote_over_local"] = ratios
    if args.guest_json:
        with open(args.guest_json) as f:
            guest = json.load(f)
        gcells = {(c["cpu_node"], c["mem_node"]): summarize(c) for c in guest["cells"]}
        gok = {k: c for k, c in gcells.items() if "error" not in c}
        results["guest"] = {"raw": guest, "cells": [dict(c, key=f"{a}->{b}") for (a, b), c in gcells.items()]}
        gworst = min((c["placement"] for c in gok.values()), default=0.0)
        rows.append((f"placement on {guest['nodes']} nodes (qemu guest), {len(gok)} of {len(gcells)} cells",
                     f"{100 * gworst:.1f} % (worst cell)", "100 %", gworst == 1.0 and len(gok) == guest["nodes"] ** 2))
        lines += matrix_lines(f"Placement on {guest['nodes']} nodes, in the qemu guest of tests/numa2/run.sh (regions "
                              "made by a thread on the CPU node, bound to the memory node; qemu models the topology, "
                              "not memory speed, so no times)", guest["nodes"], gok,
                              lambda c: f"{100 * c['placement']:.1f} % of {c['census']['present']:,}: "
                                        + " / ".join(f"node {n}: {p:,}" for n, p in enumerate(c["census"]["per_node"])))
    for key, r in ratios.items():
        rows.append((f"CPU {key.replace('->', ', memory ')}: remote / local", f"latency {r['latency']:.2f}×, "
                     f"bandwidth {r['bandwidth_1']:.2f}× (1 thread), {r['bandwidth_n']:.2f}× (all)", "-", None))
    results["goals"] = goal_records(rows)
    m = results["machine"]
    lines.append(f"\nMachine: {m.get('cpu', '?')}, {m['cpus']} CPUs, kernel {m['kernel']}, THP `{m['thp']}`, "
                 f"numa_balancing {m['numa_balancing']}, virtual machine: {m['virtual_machine']}.")
    publish("\n".join(goals_table("NUMA", rows) + [""] + lines), results, args.json, args.md)


if __name__ == "__main__":
    main()
