#!/usr/bin/env bash
# The main job: sets up a fresh machine, builds, shows the runtime at work, runs every benchmark of
# the project, and writes the raw results (JSON), a report (Markdown with PNG plots) and the headline
# table into results/.
#   scripts/demo.sh           full measurement (a few minutes: 172 s by this VM's clock on 2026-11-22; the Python benchmarks build
#                             structures of up to 4M objects in fresh interpreters, round after round)
#   scripts/demo.sh --quick   about a minute: small sizes, few rounds - a smoke run, not for quoting
#   scripts/demo.sh --docs    full measurement, and the report also goes into docs/benchmarks.md
set -euo pipefail
cd "$(dirname "$0")/.."
quick=""; docs=""
for arg in "$@"; do
  case "$arg" in
    --quick) quick="--quick" ;;
    --docs) docs="--docs docs/benchmarks.md" ;;
    *) echo "usage: scripts/demo.sh [--quick] [--docs]" >&2; exit 2 ;;
  esac
done
scripts/setup.sh
meson=.venv/bin/meson
[ -d build ] || $meson setup build >/dev/null
$meson compile -C build >/dev/null
rm -rf results
mkdir -p results
py=".venv/bin/python"
export PYTHONPATH=build/python

steps=13; n=0
step() { n=$((n + 1)); printf '\n=== [%d/%d] %s\n' "$n" "$steps" "$*"; }
start=$(date +%s)

step "The C API end to end (examples/handoff.c): create, allocate, handle, hand to a thread, destroy"
tests/pkgconfig/run.sh build | grep -v "passed"

step "Python: a structure built in \`with region():\` (examples/python_demo.py)"
objects=1000000; [ -n "$quick" ] && objects=200000
$py examples/python_demo.py --objects $objects | tee results/python-demo.txt

step "Python: collection pauses, region collection, teardown, a region's life, allocation (bench/python_bench.py)"
$py bench/python_bench.py $quick --json results/python-bench.json --md results/python-bench.md

step "Python: a server with a region per request vs the ordinary heap: throughput, latency, memory, gc pauses (bench/requests_bench.py)"
$py bench/requests_bench.py $quick --json results/requests-bench.json --md results/requests-bench.md

step "Python: handing a graph to another thread or subinterpreter by ownership vs pickle/marshal/bocpy/PEP 734 queues; hand-off latency (bench/transfer_bench.py)"
$py bench/transfer_bench.py $quick --json results/transfer-bench.json --md results/transfer-bench.md

step "Python: the isolation proof that release(), close() and r.check() run, per object, beside one streaming pass over the same memory (bench/proof_bench.py)"
$py bench/proof_bench.py $quick --json results/proof-bench.json --md results/proof-bench.md

step "Python 3.13: two interpreters with their own GIL on regions handed back and forth, vs one (bench/parallel_bench.py)"
if [ -x .venv-313/bin/python ]; then
  configure_313() {
    if [ -d build-py313 ]; then $meson setup --reconfigure build-py313 "$@" >/dev/null || $meson setup --wipe build-py313 "$@" >/dev/null
    else $meson setup build-py313 "$@" >/dev/null; fi
  }
  configure_313 -Dpython="$(.venv-313/bin/python -c 'import sys; print(sys._base_executable)')" -Dtests=false -Dbenchmarks=false
  $meson compile -C build-py313 >/dev/null
  PYTHONPATH=build-py313/python .venv-313/bin/python bench/parallel_bench.py $quick \
    --json results/parallel-bench.json --md results/parallel-bench.md
else
  echo "skipped: no CPython 3.13 on this machine (scripts/setup.sh looks for pyenv's, or PYTHON313)"
fi

step "Python: a frozen region read by several interpreters (own GIL on 3.13) vs pickle in each; freeze() vs release() (bench/frozen_bench.py)"
if [ -x .venv-313/bin/python ]; then   # built by the step above
  PYTHONPATH=build-py313/python .venv-313/bin/python bench/frozen_bench.py $quick \
    --json results/frozen-bench.json --md results/frozen-bench.md
else
  $py bench/frozen_bench.py $quick --json results/frozen-bench.json --md results/frozen-bench.md
fi

step "C: the region-per-phase pattern against other allocators (bench/alloc_bench.py)"
$py bench/alloc_bench.py $quick --json results/alloc-bench.json --md results/alloc-bench.md

step "NUMA placement on two nodes, in a 2-node qemu guest (tests/numa2/run.sh)"
tests/numa2/run.sh build --bench-json results/numa-guest.json | grep -E '^(numa2|guest):'

step "NUMA locality of region memory on this machine (bench/numa_bench.py)"
$py bench/numa_bench.py $quick --guest-json results/numa-guest.json --json results/numa-bench.json \
  --md results/numa-bench.md

step "The choice of mimalloc: the properties a region needs, on Debian's 2.0.9 and on 3.4.3"
experiments/run.sh | tee results/mimalloc-properties.txt

step "Limits and fixed costs (bench/limits.c; median and min..max of repeated runs)"
build/bench/bench_limits $quick --json results/limits.json | tee results/limits.md
echo "same, linked with libregion.a instead of libregion.so:"
build/bench/bench_limits_static $quick --json results/limits-static.json | tail -1 | tee -a results/limits.md

step "The report: every goal, met or not (bench/report.py)"
$py bench/report.py --results results $docs
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(numactl -H 2>/dev/null | head -1), kernel $(uname -r)"
echo "done in $(( $(date +%s) - start )) s; results, report.md and plots/ in results/"
