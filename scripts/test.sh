#!/usr/bin/env bash
# Runs every test: the C tests in a normal build, the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, the threaded tests under ThreadSanitizer, and the pkg-config check
# that a C user can build against an installed libregion.  Sets up a fresh machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
meson=.venv/bin/meson
export CMOCKA_MESSAGE_OUTPUT=stdout

step() { printf '\n=== %s\n' "$*"; }

configure() {   # configure DIR [meson options...]
  local dir=$1; shift
  if [ -d "$dir" ]; then $meson setup --reconfigure "$dir" "$@" >/dev/null
  else $meson setup "$dir" "$@" >/dev/null; fi
}

step "C tests (build/)"
configure build
$meson test -C build --print-errorlogs

step "C tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
configure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  $meson test -C build-asan --print-errorlogs

step "threaded C tests under ThreadSanitizer (build-tsan/)"
configure build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug
TSAN_OPTIONS=halt_on_error=1 $meson test -C build-tsan --suite threads --print-errorlogs

step "a C program built with pkg-config against the installed library"
tests/pkgconfig/run.sh build

printf '\nAll tests passed.\n'
