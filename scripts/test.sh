#!/usr/bin/env bash
# Runs every test: the C tests in a normal build, the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, a short run of the API fuzzer, the threaded tests under ThreadSanitizer,
# the pkg-config check that a C user can build against an installed libregion, the Python tests under
# five interpreters (the project's CPython 3.11, Debian's 3.11.2, Debian's debug build with refcount
# checks, CPython 3.12 and 3.13; again under ASan+UBSan on 3.11 and 3.13), `pip install .` into a
# fresh virtual environment under 3.11, 3.12 and 3.13, five packages' own test suites outside and
# inside regions (region.pytest_plugin), the C and Python tests with mimalloc's internal assertions
# compiled in, and NUMA placement on two nodes in a qemu guest.  Sets up a fresh machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
meson=.venv/bin/meson
export CMOCKA_MESSAGE_OUTPUT=stdout

step() { printf '\n=== %s\n' "$*"; }

configure() {   # configure DIR [meson options...]
  local dir=$1; shift
  if [ -d "$dir" ]; then   # a build directory from an older checkout may need a fresh start
    $meson setup --reconfigure "$dir" "$@" >/dev/null || $meson setup --wipe "$dir" "$@" >/dev/null
  else $meson setup "$dir" "$@" >/dev/null; fi
}

step "C tests (build/)"
configure build
$meson compile -C build >/dev/null   # everything: `meson test` builds only what the C tests need
$meson test -C build --print-errorlogs

step "Python tests, $(.venv/bin/python -VV | head -1) (build/)"
pytest_in() {   # pytest_in BUILD_DIR PYTHON
  PYTHONPATH="$1/python:tests/python" "$2" -m pytest -q -p no:cacheprovider tests/python
}
pytest_in build .venv/bin/python

step "Python tests, Debian's $(/usr/bin/python3.11 -V) (build-pysys/)"
configure build-pysys -Dpython=/usr/bin/python3.11 -Dtests=false -Dbenchmarks=false
$meson compile -C build-pysys >/dev/null
pytest_in build-pysys .venv-sys/bin/python

step "Python tests, Debian's debug interpreter with refcount checks (build-pydbg/)"
configure build-pydbg -Dpython=/usr/bin/python3.11-dbg -Dtests=false -Dbenchmarks=false -Dbuildtype=debug
$meson compile -C build-pydbg >/dev/null
pytest_in build-pydbg .venv-dbg/bin/python

for minor in 12 13; do
  venv=.venv-3$minor
  if [ -x $venv/bin/python ]; then
    step "Python tests, $($venv/bin/python -V) (build-py3$minor/)"
    configure build-py3$minor -Dpython="$($venv/bin/python -c 'import sys; print(sys._base_executable)')" -Dtests=false -Dbenchmarks=false
    $meson compile -C build-py3$minor >/dev/null
    pytest_in build-py3$minor $venv/bin/python
  else
    step "Python tests under CPython 3.$minor: skipped, none on this machine (scripts/setup.sh looks for pyenv's, or PYTHON3$minor)"
  fi
done

# `pip install .` on every version the package supports: pyproject.toml's requires-python and the
# build must agree with the README's promise.
for venv in .venv .venv-312 .venv-313; do
  [ -x $venv/bin/python ] || continue
  base_python=$($venv/bin/python -c 'import sys; print(sys._base_executable)')
  step "pip install . into a fresh virtual environment, $($base_python -V)"
  PYTHON=$base_python tests/python/pip_install.sh
done

step "wheels: the sdist, a wheel built from it in isolation, auditwheel, installed with no compiler (scripts/wheels.sh --one)"
scripts/wheels.sh --one build/wheelhouse

step "third-party test suites, outside and inside regions (tests/thirdparty/run.py)"
.venv/bin/python tests/thirdparty/run.py --build build

step "C tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
configure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Dpython_binding=disabled
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  $meson test -C build-asan --print-errorlogs

# The extension under ASan+UBSan, CPython's own objects in malloc (PYTHONMALLOC=malloc) and every
# free region block poisoned (meson.build: MI_TRACK_ASAN), so that a read of a closed region's object
# or of a freed one is reported.  Leaks are not checked: CPython does not free everything at exit.
for venv in .venv .venv-313; do
  [ -x $venv/bin/python ] || continue
  base_python=$($venv/bin/python -c 'import sys; print(sys._base_executable)')
  dir=build-pyasan$($venv/bin/python -c 'import sys; print(sys.version_info[0], sys.version_info[1], sep="")')
  step "Python tests under AddressSanitizer + UndefinedBehaviorSanitizer, $($base_python -V) ($dir/)"
  configure $dir -Dpython="$base_python" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug \
    -Dtests=false -Dbenchmarks=false
  $meson compile -C $dir >/dev/null
  LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)" PYTHONMALLOC=malloc \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    pytest_in $dir $venv/bin/python
done

step "the API fuzzer, ${FUZZ_SECONDS:=45} s under ASan+UBSan (build-fuzz/, clang-14's libFuzzer)"
CC=clang-14 configure build-fuzz -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug \
  -Dpython_binding=disabled -Dbenchmarks=false -Dfuzz=enabled
FUZZ_SECONDS=$FUZZ_SECONDS $meson test -C build-fuzz --suite fuzz --print-errorlogs

step "threaded C tests under ThreadSanitizer (build-tsan/)"
configure build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug -Dpython_binding=disabled
TSAN_OPTIONS=halt_on_error=1 $meson test -C build-tsan --suite threads --print-errorlogs

# mimalloc's own invariants (mi_assert_internal), which every patch of thirdparty/mimalloc must keep
# true, are compiled out of every other build.  The census test is left out: the debug build reads
# fresh pages for its checks, which maps them to the kernel's zero page, resident but on no node.
step "C and Python tests with mimalloc's internal assertions (build-midebug/, -Dmimalloc_debug=true)"
configure build-midebug -Dmimalloc_debug=true -Dbenchmarks=false
$meson compile -C build-midebug >/dev/null   # the extension too: `meson test` builds only the C tests
$meson test -C build-midebug --print-errorlogs
PYTHONPATH="build-midebug/python:tests/python" .venv/bin/python -m pytest -q -p no:cacheprovider tests/python \
  --deselect tests/python/test_api.py::test_named_region_on_node_0

step "NUMA placement on two nodes, in a 2-node qemu guest (tests/numa2/run.sh)"
tests/numa2/run.sh build

step "a C program built with pkg-config against the installed library"
tests/pkgconfig/run.sh build

printf '\nAll tests passed.\n'
