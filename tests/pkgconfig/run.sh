#!/usr/bin/env bash
# Installs the build in BUILD_DIR into a scratch prefix and builds examples/handoff.c with nothing but
# `pkg-config --cflags --libs region`, then runs it: what a C user does.  Then builds it again against
# the installed libregion.a (no libregion.so at run time) and checks that the archive defines no
# global name but region_*.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/${1:-build}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
"$root/.venv/bin/meson" install -C "$build" --destdir "$prefix" --quiet >/dev/null
installed=$prefix$("$root/.venv/bin/meson" introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
pc=$(find "$installed" -name region.pc | head -1)
# The .pc file names the configured prefix; let pkg-config see the scratch copy in its place.
mkdir "$prefix/pc"
sed "s|^prefix=.*|prefix=$installed|" "$pc" >"$prefix/pc/region.pc"
export PKG_CONFIG_PATH=$prefix/pc
flags=$(pkg-config --cflags --libs region)
libdir=$(pkg-config --variable=libdir region)
cc -o "$prefix/handoff" "$root/examples/handoff.c" $flags -pthread
out=$(LD_LIBRARY_PATH=$libdir "$prefix/handoff")
echo "$out"
grep -q "worker resolved the handle: hello from region" <<<"$out"
grep -q "REGION_EDEAD" <<<"$out"

# Static: the same program with libregion.a, run with no library path.
cc -o "$prefix/handoff-static" "$root/examples/handoff.c" $(pkg-config --cflags region) \
  "-L$libdir" -l:libregion.a -lnuma -pthread
if ldd "$prefix/handoff-static" | grep -q libregion; then
  echo "handoff-static still needs libregion.so" >&2; exit 1
fi
out=$("$prefix/handoff-static")
grep -q "worker resolved the handle: hello from region" <<<"$out"
grep -q "REGION_EDEAD" <<<"$out"
foreign=$(nm -g --defined-only "$libdir/libregion.a" | awk 'NF == 3 && $3 !~ /^region_/ {print $3}')
if [ -n "$foreign" ]; then
  echo "libregion.a defines global names besides region_*: $foreign" >&2; exit 1
fi
echo "pkg-config: 2 passed, 0 failed"
