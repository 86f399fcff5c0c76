#!/usr/bin/env bash
# The main job: sets up a fresh machine, builds, then shows the runtime at work and measures it.
#   scripts/demo.sh           full measurement (about ten minutes: the Python benchmarks build
#                             structures of up to 4M objects in fresh interpreters, round after round)
#   scripts/demo.sh --quick   about a minute
# Results (Markdown table + JSON) go to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=""; [ "${1:-}" = "--quick" ] && quick="--quick"
scripts/setup.sh
meson=.venv/bin/meson
[ -d build ] || $meson setup build >/dev/null
$meson compile -C build >/dev/null
mkdir -p results

echo "=== The C API end to end (examples/handoff.c): create, allocate, handle, hand to a thread, destroy"
tests/pkgconfig/run.sh build | grep -v "passed"

echo
echo "=== Python: a structure built in \`with region():\` (examples/python_demo.py)"
objects=1000000; [ -n "$quick" ] && objects=200000
PYTHONPATH=build/python .venv/bin/python examples/python_demo.py --objects $objects | tee results/python-demo.txt

echo
echo "=== Python: collection pauses, region collection, teardown, allocation (bench/python_bench.py)"
PYTHONPATH=build/python .venv/bin/python bench/python_bench.py $quick --json results/python-bench.json \
  --md results/python-bench.md

echo
echo "=== C: the region-per-phase pattern against other allocators (bench/alloc_bench.py)"
.venv/bin/python bench/alloc_bench.py $quick --json results/alloc-bench.json --md results/alloc-bench.md

echo
echo "=== The choice of mimalloc: the properties a region needs, on Debian's 2.0.9 and on 3.4.3"
experiments/run.sh | tee results/mimalloc-properties.txt

echo
echo "=== Limits and fixed costs (bench/limits.c; median and min..max of repeated runs)"
build/bench/bench_limits $quick --json results/limits.json | tee results/limits.md
echo "same, runtime compiled into the executable instead of libregion.so:"
build/bench/bench_limits_static $quick --json results/limits-static.json | tail -1 | tee -a results/limits.md
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(numactl -H 2>/dev/null | head -1), kernel $(uname -r)"
echo "results written to results/"
