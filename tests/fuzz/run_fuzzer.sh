#!/bin/sh
# Runs a libFuzzer target for a bounded time, for ctest (cmake/fuzz.cmake).
#   run_fuzzer.sh FUZZER SECONDS WORK DICT CORPUS_DIR...
# WORK is emptied and holds the new corpus entries and any crash artifact (crash-*, leak-*, oom-*,
# timeout-*: rerun one with `FUZZER ARTIFACT`). DICT is a libFuzzer dictionary or "-". Missing
# CORPUS_DIRs are left out. Exit 0: no finding; 77: skipped (no fuzz build); otherwise a finding.
set -u
fuzzer=$1 seconds=$2 work=$3 dict=$4
shift 4
if [ ! -x "$fuzzer" ]; then
  echo "skipped: ${NTK_FUZZ_SKIP_REASON:-$fuzzer was not built}"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
n=$#
for d in "$@"; do [ -d "$d" ] && set -- "$@" "$d"; done
shift "$n"
set -- "$work/corpus" "$@"
[ "$dict" = - ] || set -- "-dict=$dict" "$@"
# libFuzzer's default exit code for a finding is 77, ctest's "skipped": findings exit 1 instead.
# -timeout: one input running 10 s is a finding (and bounds the overrun of -max_total_time).
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -error_exitcode=1 -timeout_exitcode=1 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@" 2>"$work/log"
rc=$?
# The log is long (one line per new coverage); ctest shows the start, the end and any report.
grep -v -e '^#[0-9]*[[:space:]]*\(NEW\|REDUCE\|pulse\)' "$work/log" | grep -v '# Uses: ' | tail -n 80
if [ "$rc" != 0 ]; then
  echo "FUZZ FINDING (exit $rc): reproduce with: $fuzzer $work/artifacts/<file>; full log: $work/log"
  ls -l "$work/artifacts"
  [ "$rc" = 77 ] && rc=1
fi
exit "$rc"
