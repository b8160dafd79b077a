#!/usr/bin/env bash
# The service benchmark with 1 and 2 compute threads (server --threads N, in-process
# BackendOptions::threads N), then the section for docs/benchmarks.md from the JSON results.
#
#   bench/service/run.sh [--write] [extra service_bench flags...]
#
# --write appends the section to docs/benchmarks.md; without it the section is printed. The raw
# output and JSON stay in $OUT_DIR (default: a fresh temporary directory, named at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BUILD_DIR:-$root/build}/bin
out=${OUT_DIR:-$(mktemp -d /tmp/ntk-service-bench-results-XXXXXX)}
write=0
if [[ ${1:-} == --write ]]; then
  write=1
  shift
fi
mkdir -p "$out"
uptime | tee "$out/uptime_before.txt"
for t in 1 2; do
  "$bin/service_bench" --threads "$t" --json "$out/threads_$t.json" "$@" | tee "$out/threads_$t.txt"
  uptime | tee -a "$out/uptime_after.txt"
done
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) vCPUs, $(free -g | awk '/^Mem:/{print $2}') GiB"
python3 "$root/bench/service/report.py" --date "$(date -u +%Y-%m-%d)" --time "$(date -u +%H:%M)" \
  --machine "$machine" "$out/threads_1.json" "$out/threads_2.json" > "$out/section.md"
if [[ $write == 1 ]]; then
  { echo; cat "$out/section.md"; } >> "$root/docs/benchmarks.md"
  echo "appended to docs/benchmarks.md (results in $out)"
else
  cat "$out/section.md"
  echo "(results in $out)"
fi
