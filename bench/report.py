"""The benchmark report: reads the raw results the drivers wrote (JSON) and writes one Markdown report
with PNG plots, and prints the headline table (every goal, met or not, with its measured ratio).

    .venv/bin/python bench/report.py [--results results] [--docs docs/benchmarks.md]

Reads from the results folder whatever is there of python-bench.json, requests-bench.json, alloc-bench.json,
numa-bench.json, transfer-bench.json, proof-bench.json, frozen-bench.json, parallel-bench.json, limits.json and limits-static.json (with the Markdown tables
the drivers wrote beside them), and writes report.md and plots/*.png there.  --docs also puts the
report into that file, between its "report:begin" and "report:end" markers, with the plots copied
into a folder beside it (docs/benchmarks/), so the documentation carries the latest full run.
"""
import argparse
import datetime
import json
import os
import re
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchreport import describe_machine  # noqa: E402

SECTIONS = [
    # (results file, area, title, how it is produced)
    ("python-bench", "Python", "Python: collection pauses, region collection, teardown, a region's life, allocation",
     "PYTHONPATH=build/python .venv/bin/python bench/python_bench.py --json results/python-bench.json "
     "--md results/python-bench.md"),
    ("requests-bench", "Requests", "Python: a server with a region per request",
     "PYTHONPATH=build/python .venv/bin/python bench/requests_bench.py --json results/requests-bench.json "
     "--md results/requests-bench.md"),
    ("transfer-bench", "Transfer", "Python: ownership transfer between threads and interpreters",
     "PYTHONPATH=build/python .venv/bin/python bench/transfer_bench.py --json results/transfer-bench.json "
     "--md results/transfer-bench.md"),
    ("proof-bench", "Proof", "Python: the isolation proof per object, beside one streaming pass",
     "PYTHONPATH=build/python .venv/bin/python bench/proof_bench.py --json results/proof-bench.json "
     "--md results/proof-bench.md"),
    ("frozen-bench", "Frozen", "Python 3.13: a frozen region read by several interpreters",
     "PYTHONPATH=build-py313/python .venv-313/bin/python bench/frozen_bench.py --json results/frozen-bench.json "
     "--md results/frozen-bench.md"),
    ("parallel-bench", "Parallel", "Python 3.13: regions handed between interpreters with their own GIL",
     "PYTHONPATH=build-py313/python .venv-313/bin/python bench/parallel_bench.py --json results/parallel-bench.json "
     "--md results/parallel-bench.md"),
    ("alloc-bench", "Allocators", "C: the region-per-phase pattern against other allocators",
     ".venv/bin/python bench/alloc_bench.py --json results/alloc-bench.json --md results/alloc-bench.md"),
    ("numa-bench", "NUMA", "C: NUMA locality of region memory",
     "tests/numa2/run.sh build --bench-json results/numa-guest.json && .venv/bin/python bench/numa_bench.py "
     "--guest-json results/numa-guest.json --json results/numa-bench.json --md results/numa-bench.md"),
]


def load(results, name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_text(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip()


# ---- plots: one function per figure, each returns the file name it wrote (or None) ----

def save(fig, plots, name):
    fig.tight_layout()
    fig.savefig(os.path.join(plots, name), dpi=110)
    plt.close(fig)
    return name


def error_bars(stats):
    med = [s["median"] for s in stats]
    return med, [[m - s["min"] for m, s in zip(med, stats)], [s["max"] - m for m, s in zip(med, stats)]]


def grouped_bars(cases, modes, labels, scale, log=False):
    """One group of bars per case, one bar per (mode, label), with min..max error bars: a figure."""
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(modes)
    for i, (mode, label) in enumerate(modes):
        med, err = error_bars([c["times"][mode] for c in cases])
        ax.bar([x + (i - (len(modes) - 1) / 2) * width for x in range(len(cases))], [m * scale for m in med], width,
               yerr=[[e * scale for e in err[0]], [e * scale for e in err[1]]], label=label, capsize=3)
    ax.set_xticks(range(len(cases)), labels)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return fig, ax


def plot_gc_pause(data, plots):
    cases = [b for b in data["benchmarks"] if b["name"] == "gc_pause"]
    if not cases:
        return None
    fig, ax = grouped_bars(cases, [("ordinary", "ordinary heap"), ("frozen", "gc.freeze()"), ("region", "in a region")],
                           [f"{c['objects']:,} objects" for c in cases], 1e6, log=True)
    ax.set_ylabel("full gc.collect() pause, µs (log)")
    ax.set_title("A full collection with the structure in the ordinary heap, frozen, or in a region", fontsize=9)
    return save(fig, plots, "gc_pause.png")


def plot_python_alloc(data, plots):
    cases = [b for b in data["benchmarks"] if b["name"].startswith("alloc_")]
    if not cases:
        return None
    fig, ax = grouped_bars(cases, [("plain", "ordinary heap"), ("imported", "ordinary, region imported"),
                                   ("region", "in a region")],
                           [c["name"][len("alloc_"):].replace("_", " ") for c in cases], 1e3)
    ax.set_ylabel("ms (median, min..max)")
    ax.set_title("Allocation-heavy Python code")
    return save(fig, plots, "python_alloc.png")


def plot_alloc(data, plots):
    sizes = sorted(data["sizes"], key=int)
    at = "32" if "32" in data["sizes"] else sizes[0]
    m = data["sizes"][at]
    allocators = sorted(m, key=lambda a: m[a]["warm_alloc"]["median"] + m[a]["warm_free"]["median"])
    per_block = 1e9 / data["blocks"]
    panels = 3 if len(sizes) > 1 else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4))
    warm = [{k: (m[a]["warm_alloc"][k] + m[a]["warm_free"][k]) * per_block for k in ("median", "min", "max")}
            for a in allocators]
    cold = [{k: m[a]["cold_alloc"][k] * per_block for k in ("median", "min", "max")} for a in allocators]
    for ax, stats, title in ((axes[0], warm, f"warm: allocate + free all, ns per {at} B block"),
                             (axes[1], cold, f"cold (first touch): allocate, ns per {at} B block")):
        med, err = error_bars(stats)
        ax.barh(allocators, med, xerr=err, capsize=3,
                color=["tab:orange" if a == "region" else "tab:blue" for a in allocators])
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
    if panels == 3:
        for a in allocators:
            axes[2].plot([int(s) for s in sizes], [(data["sizes"][s][a]["warm_alloc"]["median"]
                                                    + data["sizes"][s][a]["warm_free"]["median"]) * per_block
                                                   for s in sizes], marker="o", label=a)
        axes[2].set_xlabel("block size, bytes")
        axes[2].set_yscale("log")
        axes[2].set_title("warm, ns per block, by size (log)", fontsize=9)
        axes[2].legend(fontsize=7)
    return save(fig, plots, "alloc.png")


def plot_numa(data, plots):
    cells = [c for c in data["cells"] if "error" not in c]
    if not cells:
        return None
    labels = [f"CPU {c['cpu_node']} → mem {c['mem_node']}" for c in cells]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, key, title in ((axes[0], "latency", "latency, ns per load"),
                           (axes[1], "triad_1", "triad, GB/s, 1 thread"),
                           (axes[2], "triad_n", "triad, GB/s, every CPU of the node")):
        med, err = error_bars([c[key] for c in cells])
        ax.bar(labels, med, yerr=err, capsize=4, color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"NUMA matrix, {data['raw']['nodes']} node(s): median and min..max of {data['raw']['runs']} runs",
                 fontsize=9)
    return save(fig, plots, "numa.png")


def plot_handover(data, plots, to, filename):
    cases = [c for c in data.get("handover", []) if c.get("to", "another thread") == to]
    if not cases:
        return None
    labels = {"pickle": "pickle", "marshal": "marshal", "bocpy": "bocpy Cown", "pep734": "PEP 734 Queue"}
    fig, ax = grouped_bars(cases, [(m, labels.get(m, m)) for m in cases[0]["times"]], [c["graph"] for c in cases],
                           1e3, log=True)
    ax.set_ylabel("hand over + read, ms (log)")
    ax.set_title(f"Handing a graph to {to}, and reading it there")
    return save(fig, plots, filename)


def plot_transfer(data, plots):
    return plot_handover(data, plots, "another thread", "transfer.png")


def plot_transfer_interpreters(data, plots):
    return plot_handover(data, plots, "a subinterpreter", "transfer_interpreters.png")


PLOTS = {"python-bench": [plot_gc_pause, plot_python_alloc], "alloc-bench": [plot_alloc],
         "numa-bench": [plot_numa], "transfer-bench": [plot_transfer, plot_transfer_interpreters]}


# ---- the report ----

def headline(found):
    rows = ["| area | what | measured | goal | met |", "|---|---|---|---|---|"]
    for name, area, title, _, data in found:
        for g in data.get("goals", []):
            met = "-" if g["met"] is None else ("yes" if g["met"] else "**no**")
            rows.append(f"| {area} | {g['what']} | {g['measured']} | {g['goal']} | {met} |")
    return rows


def limits_section(results):
    text = read_text(results, "limits.md")
    if not text:
        return []
    return ["## C: limits and fixed costs", "",
            "Command: `build/bench/bench_limits --json results/limits.json` (`bench/limits.c`).", "", text]


def build_report(results, plots_dir, plot_prefix):
    shutil.rmtree(plots_dir, ignore_errors=True)   # no plot of an earlier run survives into this report
    os.makedirs(plots_dir)
    found = []
    for name, area, title, command in SECTIONS:
        data = load(results, name)
        if data is not None:
            found.append((name, area, title, command, data))
    machine = next((d["machine"] for *_, d in found if "machine" in d), None)
    quick = any(d.get("quick") for *_, d in found)
    lines = ["# Benchmark report", "",
             f"Written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `bench/report.py` from "
             f"the results of `scripts/demo.sh{' --quick' if quick else ''}`"
             f"{' (QUICK mode: small sizes and few rounds, for a smoke run, not for quoting)' if quick else ''}.",
             ""]
    if machine:
        lines += [f"Machine: {describe_machine(machine)}.", ""]
    lines += ["Every speed figure is a ratio against the alternative measured in the same run, with the median and "
              "min..max over rounds or runs; goals not met are reported with the measured ratio.", "",
              "## Headline", ""] + headline(found)
    missing = [title for name, _, title, _ in SECTIONS if name not in {f[0] for f in found}]
    if missing:
        lines += ["", "Not in this run: " + "; ".join(missing) + "."]
    for name, _, title, command, data in found:
        lines += ["", f"## {title}", "", f"Command: `{command}`", ""]
        md = read_text(results, name + ".md")
        if md:
            lines.append(md)
        for plot in PLOTS.get(name, []):
            written = plot(data, plots_dir)
            if written:
                lines += ["", f"![{written[:-4]}]({plot_prefix}/{written})"]
    lines += [""] + limits_section(results)
    return "\n".join(lines) + "\n", headline(found)


def put_into_docs(report, docs, plots_dir):
    """Replaces the text between the report markers of docs with the report, its headings one level
    down, and copies the plots beside it."""
    target = os.path.join(os.path.dirname(docs), "benchmarks")
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    for name in os.listdir(plots_dir):
        shutil.copy(os.path.join(plots_dir, name), os.path.join(target, name))
    body = re.sub(r"^(#+) ", r"#\1 ", report, flags=re.M).replace("](plots/", "](benchmarks/")
    with open(docs) as f:
        text = f.read()
    begin, end = "<!-- report:begin -->", "<!-- report:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{docs} has no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(docs, "w") as f:
        f.write(head + begin + "\n" + body + end + tail)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--docs", help="also put the report into this Markdown file, between its markers")
    args = parser.parse_args()
    plots_dir = os.path.join(args.results, "plots")
    report, table = build_report(args.results, plots_dir, "plots")
    with open(os.path.join(args.results, "report.md"), "w") as f:
        f.write(report)
    if args.docs:
        put_into_docs(report, args.docs, plots_dir)
    print("\n".join(table))
    print(f"\nreport: {os.path.join(args.results, 'report.md')} (plots in {plots_dir}/)")


if __name__ == "__main__":
    main()
