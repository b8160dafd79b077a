#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (no network needed) build Release for the card's
# architecture, run the CUDA tests (differential against the CPU backend), the CUDA tests under
# compute-sanitizer (memcheck, racecheck), then a short GPU timing, and print one table last.
# Full logs go to --log-dir (default: a fresh temporary folder), named at the end.
#
#   scripts/gpu-check.sh [--log-dir DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --log-dir) log_dir="$2"; shift 2 ;;
    *) echo "usage: scripts/gpu-check.sh [--log-dir DIR]" >&2; exit 2 ;;
  esac
done
[ -n "$log_dir" ] || log_dir=$(mktemp -d -t ntk-gpu-check.XXXXXX)
mkdir -p "$log_dir"
summary="$log_dir/summary.txt"
: > "$summary"
row() { printf '%-34s %s\n' "$1" "$2" | tee -a "$summary"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L > "$log_dir/nvidia-smi.txt" 2>&1; then
  echo "gpu-check: no CUDA device (nvidia-smi finds none); logs in $log_dir" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv > "$log_dir/gpu.csv" 2>&1
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')
[ -n "$arch" ] || arch=90
row "device" "$(sed -n 2p "$log_dir/gpu.csv")"

build=build-gpu
start=$(date +%s)
if cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNTK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
     -DNTK_BUILD_BENCH=ON > "$log_dir/configure.log" 2>&1 && cmake --build $build -j "$(nproc)" > "$log_dir/build.log" 2>&1; then
  row "build (sm_$arch)" "ok in $(( $(date +%s) - start )) s"
else
  row "build (sm_$arch)" "FAILED (see build.log)"
  echo "logs: $log_dir"; exit 1
fi

if $build/tests/cuda_tests > "$log_dir/cuda_tests.log" 2>&1; then
  row "CUDA differential tests" "$(grep -E '^\[  PASSED' "$log_dir/cuda_tests.log" | head -1)"
else
  row "CUDA differential tests" "FAILED: $(grep -c '^\[  FAILED' "$log_dir/cuda_tests.log") (see cuda_tests.log)"
fi
if command -v compute-sanitizer >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    if timeout 240 "$cs" --tool $tool --error-exitcode 9 $build/tests/cuda_tests --gtest_filter='*Float32*:*Diagonal*:*Memory*' \
         > "$log_dir/sanitizer-$tool.log" 2>&1; then
      row "compute-sanitizer $tool" "clean"
    else
      row "compute-sanitizer $tool" "ERRORS or timeout (see sanitizer-$tool.log)"
    fi
  done
else
  row "compute-sanitizer" "not installed"
fi

# Timing: NTK of 20000 x 784 through ntkctl, GPU vs CPU (includes the copy of the 20000^2 result home).
py=$(command -v python3)
if $py -c 'import numpy' 2>/dev/null; then
  $py - "$log_dir/x.npy" <<'PY'
import sys, numpy as np
np.save(sys.argv[1], np.random.default_rng(0).standard_normal((20000, 784)).astype(np.float32))
PY
  for dt in float32 float64; do
    out=$($build/bin/ntkctl kernel --x1 "$log_dir/x.npy" --out "$log_dir/k.npy" --depth 3 --dtype $dt --backend cuda:0 2>>"$log_dir/timing.log")
    echo "$out" >> "$log_dir/timing.log"
    row "NTK 20000^2 d=784 depth 3 $dt" "$(echo "$out" | sed -E 's/.* in ([0-9.]+ s).*/\1 (cuda:0, incl. copy home)/')"
  done
  rm -f "$log_dir/k.npy"
fi
echo
echo "gpu-check summary ($(date -u +%F), logs in $log_dir):"
cat "$summary"
