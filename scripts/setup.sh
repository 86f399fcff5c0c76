#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need on a fresh Debian 12 machine:
# Debian packages (as root, or with sudo) and the project's virtual environment in .venv.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(
  build-essential pkg-config ninja-build binutils
  libcmocka-dev libnuma-dev numactl
  python3-dev python3-dbg python3-venv
  libmimalloc-dev   # only for experiments/run.sh, which compares Debian's 2.0.9 with 3.4
  libjemalloc-dev libapr1-dev libtalloc-dev   # the allocators bench/alloc_bench.py compares with
  clang-14 libclang-rt-14-dev                 # libFuzzer, for tests/fuzz (scripts/test.sh)
)
# The 2-node qemu guest of tests/numa2/run.sh, without recommends (which would add ~170 packages).
guest_packages=(qemu-system-x86 busybox-static cpio)

missing_of() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
missing=($(missing_of "${debian_packages[@]}"))
missing_guest=($(missing_of "${guest_packages[@]}"))
if ((${#missing[@]} + ${#missing_guest[@]})); then
  echo "setup: installing Debian packages: ${missing[*]} ${missing_guest[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  export DEBIAN_FRONTEND=noninteractive
  if ((${#missing[@]})); then $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; fi
  if ((${#missing_guest[@]})); then
    $sudo apt-get install -y -qq --no-install-recommends "${missing_guest[@]}" >/dev/null
  fi
fi

# The project's Python: the interpreter first on PATH (pyenv's 3.11.7 here), unless PYTHON says.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt

# pytest and hypothesis for the two Debian interpreters the Python tests also run under.
for pair in ".venv-sys:/usr/bin/python3.11" ".venv-dbg:/usr/bin/python3.11-dbg"; do
  venv=${pair%%:*} interpreter=${pair#*:}
  [ -x "$venv/bin/python" ] || "$interpreter" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check pytest hypothesis 2>/dev/null
done
# CPython 3.12 and 3.13 (pyenv's builds on these machines, or PYTHON312 / PYTHON313): the Python tests
# also run under them, each from its own .venv-312 / .venv-313.
pyenv_python() {   # pyenv_python VERSION: its interpreter, if pyenv has it
  command -v pyenv >/dev/null && echo "$(pyenv root)/versions/$1/bin/python${1%.*}" || true
}
for pair in "312:${PYTHON312:-$(pyenv_python 3.12.1)}" "313:${PYTHON313:-$(pyenv_python 3.13.0)}"; do
  venv=.venv-${pair%%:*} interpreter=${pair#*:}
  [ -n "$interpreter" ] && [ -x "$interpreter" ] || continue
  [ -x "$venv/bin/python" ] || "$interpreter" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check pytest hypothesis 2>/dev/null
done
echo "setup: done ($(.venv/bin/meson --version) meson; mimalloc is built from thirdparty/mimalloc)"
