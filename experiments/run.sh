#!/usr/bin/env bash
# Builds experiments/mimalloc_properties.c against both candidate libraries and runs it, then
# experiments/alloc_call_cost.c (region_alloc against raw mimalloc heaps, against build/libregion.so)
# and experiments/page_fault_cost.c (what the first write to a fresh OS page costs here).
# Needs libmimalloc-dev (Debian, 2.0.9) and a build in build/ (whose mimalloc-private.o is the
# vendored 3.4.3, thirdparty/mimalloc, with every non-mi_ symbol local).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/region-experiments
mkdir -p "$out"

root="$here/.."
v3_include="$root/thirdparty/mimalloc/include"
v3_object="$root/build/mimalloc-private.o"
echo "== Debian mimalloc 2.0.9"
cc -O2 -DMI_V2 -o "$out/props-v2" "$here/mimalloc_properties.c" -lmimalloc -lpthread
"$out/props-v2"
echo "== mimalloc 3.4.3 (thirdparty/mimalloc), static object linked in"
cc -O2 -I"$v3_include" -o "$out/props-v3" "$here/mimalloc_properties.c" "$v3_object" -lpthread -latomic
"$out/props-v3"

echo "== region_alloc against raw mi_heap_malloc, call by call (experiments/alloc_call_cost.c)"
cc -O2 -I"$v3_include" -I"$root/include" -o "$out/alloc-call-cost" "$here/alloc_call_cost.c" \
  "$v3_object" -L"$root/build" -lregion -Wl,-rpath,"$(cd "$root/build" && pwd)" -lpthread -latomic
"$out/alloc-call-cost"

echo "== the first write to a fresh OS page (experiments/page_fault_cost.c)"
cc -O2 -o "$out/page-fault-cost" "$here/page_fault_cost.c"
"$out/page-fault-cost"
