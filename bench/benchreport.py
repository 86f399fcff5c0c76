"""What the benchmark drivers in bench/ share: the machine record, the goals table, and writing the
raw results (JSON) and the report (Markdown)."""
import json
import os
import platform
import statistics
import subprocess
import sys


def machine():
    """The machine and interpreter the numbers come from."""
    info = {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, StopIteration):
        pass
    return info


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _command(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def memory_machine():
    """What decides memory placement and speed: the NUMA layout, the CPUs, the kernel, transparent
    huge pages, automatic NUMA balancing (which would move pages behind the benchmark's back) and
    whether this is a virtual machine (where first touch and page walks cost more)."""
    info = machine()
    lscpu = _command("lscpu") or ""
    hypervisor = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                       if line.startswith("Hypervisor vendor")), None)
    info.update({
        "numactl_hardware": _command("numactl", "--hardware"),
        "lscpu": lscpu or None,
        "kernel": platform.release(),
        "thp": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "numa_balancing": _read("/proc/sys/kernel/numa_balancing"),
        "virtual_machine": hypervisor or _command("systemd-detect-virt") or "none detected",
    })
    return info


def describe_machine(info):
    return (f"{info.get('cpu', '?')}, {info['cpus']} CPUs, {info.get('memory_gib', '?')} GiB, "
            f"{info['platform']}, CPython {info['python']}")


def goals_table(header, rows):
    """Markdown rows of (what, ratio, goal, met); met is True, False, or None for "no goal"."""
    lines = [f"| {header} | ratio | goal | met |", "|---|---|---|---|"]
    for what, ratio, goal, met in rows:
        lines.append(f"| {what} | {ratio} | {goal} | {'-' if met is None else ('yes' if met else '**no**')} |")
    return lines


def goal_records(rows):
    """The goals table's rows as JSON records, for the main report's headline table."""
    return [{"what": what, "measured": measured, "goal": goal, "met": met} for what, measured, goal, met in rows]


def publish_goals(header, rows, results, note, json_path=None, md_path=None, extra=()):
    """A benchmark's report: the goals table of rows (their records go into results["goals"]), a line
    on the machine and on how it was measured, any extra lines; printed and written as asked."""
    results["goals"] = goal_records(rows)
    lines = goals_table(header, rows) + ["", f"Machine: {describe_machine(results['machine'])}; {note}", *extra]
    publish("\n".join(lines), results, json_path, md_path)


def publish(report, results, json_path=None, md_path=None):
    """Prints the report and writes the files that were asked for."""
    print(report)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    if md_path:
        with open(md_path, "w") as f:
            f.write(report + "\n")


# ---- measurements in fresh interpreters ----

def run_worker_record(script, case, mode, arg):
    """Runs `script --worker case mode arg` in a fresh interpreter; the JSON record the worker printed
    as its last line."""
    out = subprocess.run([sys.executable, script, "--worker", case, mode, str(arg)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"worker {case} {mode} {arg} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_worker(script, case, mode, arg):
    """run_worker_record for a worker whose record has "seconds": those."""
    return run_worker_record(script, case, mode, arg)["seconds"]


def summary(values):
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_in_workers(script, case, modes, arg, rounds):
    """Each mode once per round, taking turns, each in a fresh interpreter: median, min, max, runs."""
    times = {m: [] for m in modes}
    for _ in range(rounds):
        for m in modes:
            times[m].append(run_worker(script, case, m, arg))
            print(".", end="", flush=True)
    return {m: dict(summary(t), runs=t) for m, t in times.items()}


def fmt(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs" if seconds >= 1e-6 else f"{seconds * 1e9:.0f} ns"


def cell(stat):
    return f"{fmt(stat['median'])} ({fmt(stat['min'])}..{fmt(stat['max'])})"


def ratio_range(a, b):
    """median ratio a/b, and the range over rounds (paired by round)."""
    pairs = [x / y for x, y in zip(a["runs"], b["runs"])]
    return a["median"] / b["median"], min(pairs), max(pairs)
