#!/usr/bin/env bash
# Builds experiments/mimalloc_properties.c against both candidate libraries and runs it, then
# experiments/alloc_call_cost.c (region_alloc against raw mimalloc heaps, against build/libregion.so).
# Needs libmimalloc-dev (Debian, 2.0.9), the project venv with cmeel-mimalloc (scripts/setup.sh)
# and a build in build/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/region-experiments
mkdir -p "$out"

v3=${MIMALLOC3_PREFIX:-$("$here/../.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/cmeel.prefix}
echo "== Debian mimalloc 2.0.9"
cc -O2 -DMI_V2 -o "$out/props-v2" "$here/mimalloc_properties.c" -lmimalloc -lpthread
"$out/props-v2"
echo "== cmeel-mimalloc (PyPI), static object linked in"
cc -O2 -I"$v3/include/mimalloc-3.4" -o "$out/props-v3" "$here/mimalloc_properties.c" "$v3/lib/mimalloc-3.4/mimalloc.o" -lpthread -latomic
"$out/props-v3"

echo "== region_alloc against raw mi_heap_malloc, call by call (experiments/alloc_call_cost.c)"
root="$here/.."
cc -O2 -I"$v3/include/mimalloc-3.4" -I"$root/include" -o "$out/alloc-call-cost" "$here/alloc_call_cost.c" \
  "$v3/lib/mimalloc-3.4/mimalloc.o" -L"$root/build" -lregion -Wl,-rpath,"$(cd "$root/build" && pwd)" -lpthread -latomic
"$out/alloc-call-cost"
