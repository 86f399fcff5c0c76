#!/usr/bin/env bash
# Builds experiments/mimalloc_properties.c against both candidate libraries and runs it.
# Needs libmimalloc-dev (Debian, 2.0.9) and the project venv with cmeel-mimalloc (scripts/setup.sh).
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
