#!/usr/bin/env bash
# Runs the API fuzzer for FUZZ_SECONDS (default 60) on both cores, starting from the committed seed
# corpus (tests/fuzz/corpus) plus what earlier runs in this build directory found.  A finding is a
# crash file in the build directory and exit status 1: libFuzzer's own is 77 for a finding, which
# meson takes for "skipped", so a finding passed as a skip until the exit codes were set here.
set -euo pipefail
fuzzer=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(dirname "$fuzzer")/fuzz-work
mkdir -p "$work/corpus"
seconds=${FUZZ_SECONDS:-60}
cd "$work"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
  "$fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=4096 \
  -error_exitcode=1 -timeout_exitcode=1 \
  -print_final_stats=1 corpus "$here/corpus"
