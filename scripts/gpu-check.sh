#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (no network needed) build Release for the card's
# architecture, run the CUDA tests (differential against the CPU backend), the CUDA tests under
# compute-sanitizer (memcheck, racecheck), then the GPU benchmarks (bench/gpu_bench.cu: cuBLAS and copy
# ceilings, NTK assembly against the bare cuBLAS product, the N = 50k regularized fit, prediction
# throughput), and print one table last. Sized to finish in about 6 minutes on an H200.
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

# Without a device the CUDA code is still built (for sm_90, the H200's) so that the script checks what
# it can, and then it stops with "no CUDA device".
device=1
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L > "$log_dir/nvidia-smi.txt" 2>&1; then
  device=0
  arch=90
  row "device" "none (nvidia-smi finds none): building only"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv > "$log_dir/gpu.csv" 2>&1
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')
  [ -n "$arch" ] || arch=90
  row "device" "$(sed -n 2p "$log_dir/gpu.csv")"
fi

build=build-gpu
start=$(date +%s)
if cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNTK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
     -DNTK_BUILD_BENCH=ON > "$log_dir/configure.log" 2>&1 &&
   cmake --build $build -j "$(nproc)" --target cuda_tests core_tests ntkctl gpu_bench > "$log_dir/build.log" 2>&1; then
  row "build (sm_$arch)" "ok in $(( $(date +%s) - start )) s"
else
  row "build (sm_$arch)" "FAILED (see build.log)"
  echo "logs: $log_dir"; exit 1
fi

if [ "$device" = 0 ]; then
  echo "gpu-check: no CUDA device: the CUDA code built for sm_$arch, nothing was run; logs in $log_dir" >&2
  exit 1
fi

if $build/tests/cuda_tests > "$log_dir/cuda_tests.log" 2>&1; then
  row "CUDA differential tests" "$(grep -E '^\[  PASSED' "$log_dir/cuda_tests.log" | head -1)"
else
  row "CUDA differential tests" "FAILED: $(grep -c '^\[  FAILED' "$log_dir/cuda_tests.log") (see cuda_tests.log)"
fi
if command -v compute-sanitizer >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    if timeout 100 "$cs" --tool $tool --error-exitcode 9 $build/tests/cuda_tests --gtest_filter='*Float32*:*Diagonal*:*Memory*:*ResidentKernel*:*KernelProduct*:*NewtonSystem*' \
         > "$log_dir/sanitizer-$tool.log" 2>&1; then
      row "compute-sanitizer $tool" "clean"
    else
      row "compute-sanitizer $tool" "ERRORS or timeout (see sanitizer-$tool.log)"
    fi
  done
else
  row "compute-sanitizer" "not installed"
fi

# Benchmarks: every row measured by bench/gpu_bench.cu in this run (targets in docs/benchmarks.md).
if timeout 300 $build/bin/gpu_bench --n "${NTK_GPU_BENCH_N:-50000}" > "$log_dir/gpu_bench.log" 2>&1; then
  row "GPU benchmarks" "ok (table below)"
else
  row "GPU benchmarks" "FAILED or timed out (see gpu_bench.log)"
fi
echo
echo "gpu-check summary ($(date -u +%F), logs in $log_dir):"
cat "$summary"
echo
grep -E '^(device|\|)' "$log_dir/gpu_bench.log" 2>/dev/null
