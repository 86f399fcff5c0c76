#!/usr/bin/env bash
# `pip install .` the way a user does it: a fresh virtual environment, pip's isolated build
# (meson-python, meson and ninja come from pyproject.toml's build requirements),
# then a smoke test run from outside the source tree.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check "$src"
cd "$scratch"
"$scratch/venv/bin/python" "$src/tests/python/smoke_installed.py"
# The pytest11 entry point: --region exists wherever the package is installed.
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check pytest
cat > "$scratch/test_in_region.py" <<'PY'
import region

def test_runs_in_a_region():
    assert region.current() is not None
PY
"$scratch/venv/bin/python" -m pytest -q -p no:cacheprovider --region "$scratch/test_in_region.py"
# The C API: the example extension (examples/extension) built against the installed package's
# headers (region.get_include()) and its tests run, as an extension author would.
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check meson-python meson ninja
cp -r "$src/examples/extension" "$scratch/extension"
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation "$scratch/extension"
(cd "$scratch/extension" && "$scratch/venv/bin/python" -m pytest -q -p no:cacheprovider test_vector.py)
