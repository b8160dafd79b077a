#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (no network needed) run the CUDA tests (differential
# against the CPU backend), the GPU benchmarks (bench/gpu_bench.cu: cuBLAS and copy ceilings, NTK assembly
# against the bare cuBLAS product, the N = 50k regularized fit and prediction, uncertainty throughput,
# both Newton step solvers), then the CUDA tests under compute-sanitizer (memcheck; racecheck on our own
# kernels), each step under its own time limit, and print one table last.
#
#   scripts/gpu-check.sh [--log-dir DIR] [--prebuilt DIR] [--steps tests,memcheck,racecheck,bench]
#                        (also memcheck-all, racecheck-all: the whole CUDA suite under the tool)
#                        [--bench-parts ceilings,assembly,fit,uncertainty,direct]
#
# Without --prebuilt it configures and builds Release for the card's architecture (needs the project's
# build dependencies: gRPC, Protobuf, GTest, OpenBLAS). The lab's GPU machines have none of those and no
# network, so there the binaries come from `scripts/gpu-prebuild.sh` run on a development machine (same
# CUDA major version): --prebuilt names its output folder (binaries, and the OpenBLAS the CPU oracle
# loads). Full logs go to --log-dir (default: a fresh temporary folder; at most 8 files), named at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir="" prebuilt="" steps="tests,memcheck,racecheck,bench" bench_parts="ceilings,assembly,fit,uncertainty,direct"
while [ $# -gt 0 ]; do
  case "$1" in
    --log-dir) log_dir="$2"; shift 2 ;;
    --prebuilt) prebuilt="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --bench-parts) bench_parts="$2"; shift 2 ;;
    *) echo "usage: scripts/gpu-check.sh [--log-dir DIR] [--prebuilt DIR] [--steps LIST] [--bench-parts LIST]" >&2; exit 2 ;;
  esac
done
[ -n "$log_dir" ] || log_dir=$(mktemp -d -t ntk-gpu-check.XXXXXX)
mkdir -p "$log_dir"
summary="$log_dir/summary.txt"
: > "$summary"
row() { printf '%-34s %s\n' "$1" "$2" | tee -a "$summary"; }
wants() { case ",$steps," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
script_start=$(date +%s)
# The whole script stays under NTK_GPU_CHECK_BUDGET seconds (default 540: one device call is limited to
# 600 s): each step's limit is cut to what is left, and a step with under 20 s left is skipped, so that
# the summary is always printed. Rerun the rest with --steps / --bench-parts.
budget="${NTK_GPU_CHECK_BUDGET:-540}"
limit_for() {  # wanted seconds -> seconds to give (0: skip)
  local left=$(( budget - ($(date +%s) - script_start) ))
  if [ "$left" -lt 20 ]; then echo 0; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}

# Without a device the CUDA code is still built (for sm_90, the H200's) so that the script checks what
# it can, and then it stops with "no CUDA device".
device=1
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L > "$log_dir/gpu.txt" 2>&1; then
  device=0
  arch=90
  row "device" "none (nvidia-smi finds none)"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm --format=csv >> "$log_dir/gpu.txt" 2>&1
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')
  [ -n "$arch" ] || arch=90
  row "device" "$(tail -1 "$log_dir/gpu.txt")"
fi

if [ -n "$prebuilt" ]; then
  tests_bin="$prebuilt/cuda_tests" bench_bin="$prebuilt/gpu_bench"
  # The CUDA libraries come from the machine: its toolkit, else the nvidia-* Python wheels beside PyTorch.
  libs="$(cd "$prebuilt" && pwd)/lib"
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
             $(python3 -c 'import glob, site; print(" ".join(sorted({p.rsplit("/", 1)[0] for s in site.getsitepackages() for p in glob.glob(s + "/nvidia/*/lib/*.so*")})))' 2>/dev/null); do
    [ -d "$dir" ] && libs="$libs:$dir"
  done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export NTK_OPENBLAS_LIBRARY="$(cd "$prebuilt" && pwd)/lib/libopenblas.so.0"
  (echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldd "$tests_bin" "$bench_bin") >> "$log_dir/gpu.txt" 2>&1
  missing=$( (ldd "$tests_bin"; ldd "$bench_bin") 2>&1 | grep -c "not found")
  if [ "$missing" != 0 ]; then
    row "prebuilt binaries" "MISSING LIBRARIES: $( (ldd "$tests_bin"; ldd "$bench_bin") 2>&1 | grep "not found" | sort -u | tr -s ' \t\n' ' ')"
  else
    row "prebuilt binaries" "$prebuilt ($(cat "$prebuilt/BUILD_INFO" 2>/dev/null | head -1))"
  fi
else
  build=build-gpu
  start=$(date +%s)
  if cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNTK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
       -DNTK_BUILD_BENCH=ON > "$log_dir/configure.log" 2>&1 &&
     cmake --build $build -j "$(nproc)" --target cuda_tests gpu_bench > "$log_dir/build.log" 2>&1; then
    row "build (sm_$arch)" "ok in $(( $(date +%s) - start )) s"
  else
    row "build (sm_$arch)" "FAILED (see configure.log / build.log)"
    echo "logs: $log_dir"; exit 1
  fi
  tests_bin=$build/tests/cuda_tests bench_bin=$build/bin/gpu_bench
fi

if [ "$device" = 0 ]; then
  echo "gpu-check: no CUDA device: ${prebuilt:+the prebuilt binaries were checked, }nothing was run; logs in $log_dir" >&2
  exit 1
fi

# gtest's own verdict is not enough: with no usable device every CUDA test skips and it still says
# PASSED. A run passes when it exits 0 with tests passed and none skipped.
gtest_verdict() {  # log, exit status -> one line
  local log=$1 rc=$2 passed skipped
  passed=$(grep -m1 -E '^\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+' | head -1)
  skipped=$(grep -m1 -E '^\[  SKIPPED \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | head -1)
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "TIMED OUT (${passed:-0} passed before)"
  elif [ "$rc" != 0 ]; then
    echo "FAILED (exit $rc): $(grep '^\[  FAILED  \]' "$log" | sed 's/\[  FAILED  \] //; s/ (.*//' | sort -u | tr '\n' ' ')"
  elif [ "${passed:-0}" = 0 ] || [ -n "$skipped" ]; then
    echo "NOT RUN: ${passed:-0} passed, ${skipped:-0} skipped ($(grep -m1 'no CUDA device' "$log"))"
  else
    echo "passed: $passed tests"
  fi
}
# Each test in its own process: a device error is sticky for the process (an illegal address poisons the
# context), so one crash would fail every later test; this way the run names exactly the tests that fail.
# Costs a CUDA context start per test (~1 s).
if wants tests; then
  log="$log_dir/cuda_tests.log"
  : > "$log"
  tests_deadline=$(( $(date +%s) + 200 ))
  passed=() failed=() skipped=() not_run=()
  for t in $("$tests_bin" --gtest_list_tests | awk '/^[^ ]/ {suite = $1} /^  [^ ]/ {print suite $1}'); do
    left=$(( tests_deadline - $(date +%s) )) limit=$(limit_for 60)
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 5 ]; then not_run+=("$t"); continue; fi
    echo "===== $t" >> "$log"
    timeout -k 10 "$limit" "$tests_bin" --gtest_filter="$t" >> "$log" 2>&1
    rc=$?
    if [ "$rc" = 0 ] && tail -n 30 "$log" | grep -q "^\[  SKIPPED \] $t"; then skipped+=("$t")
    elif [ "$rc" = 0 ] && tail -n 30 "$log" | grep -q "^\[       OK \] $t"; then passed+=("$t")
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then failed+=("$t(timeout)")
    else failed+=("$t(exit $rc)")
    fi
  done
  verdict="${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped, ${#not_run[@]} not run (time)"
  if [ "${#failed[@]}" -gt 0 ]; then
    row "CUDA differential tests" "FAILED: $verdict: ${failed[*]}"
  elif [ "${#passed[@]}" = 0 ] || [ "${#skipped[@]}" -gt 0 ] || [ "${#not_run[@]}" -gt 0 ]; then
    row "CUDA differential tests" "INCOMPLETE: $verdict $(grep -m1 'no CUDA device' "$log")"
  else
    row "CUDA differential tests" "passed: $verdict"
  fi
fi
# Benchmarks: every row measured by bench/gpu_bench.cu in this run (targets in docs/benchmarks.md), one
# invocation per group so that a slow or failing group loses only its own rows.
if wants bench; then
  : > "$log_dir/gpu_bench.log"
  bench() {  # time limit, gpu_bench arguments...
    local limit; limit=$(limit_for "$1"); shift
    if [ "$limit" = 0 ]; then row "gpu_bench $2" "skipped: out of time"; return; fi
    echo "== gpu_bench $*" >> "$log_dir/gpu_bench.log"
    local started rc
    started=$(date +%s)
    timeout -k 15 "$limit" "$bench_bin" "$@" >> "$log_dir/gpu_bench.log" 2>&1
    rc=$?
    case $rc in
      0) row "gpu_bench $2" "ok in $(( $(date +%s) - started )) s" ;;
      124|137) row "gpu_bench $2" "TIMED OUT after ${limit} s (rows so far in gpu_bench.log)" ;;
      *) row "gpu_bench $2" "FAILED (exit $rc; see gpu_bench.log)" ;;
    esac
  }
  n="${NTK_GPU_BENCH_N:-50000}"
  case ",$bench_parts," in *,ceilings,*) bench 60 --parts ceilings --n "$n" ;; esac
  case ",$bench_parts," in *,assembly,*) bench 150 --parts assembly --n "$n" ;; esac
  case ",$bench_parts," in *,fit,*) bench 150 --parts fit,predict --n "$n" ;; esac
  case ",$bench_parts," in *,uncertainty,*) bench 120 --parts uncertainty --n "$n" --uncertainty-n "${NTK_GPU_BENCH_UNCERTAINTY_N:-8192}" ;; esac
  case ",$bench_parts," in *,direct,*) bench 100 --parts direct --n "$n" --direct-n "${NTK_GPU_BENCH_DIRECT_N:-4096}" ;; esac
fi
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# memcheck covers cuBLAS/cuSOLVER kernels too (our arguments decide what they touch); racecheck (shared
# memory hazards) only our own kernels, whose names all carry the ntk namespace.
# The default steps run the tests of every custom kernel and the resident and Newton-CG paths (a minute
# or two under the tools); memcheck-all / racecheck-all run the whole CUDA test suite, for a second call.
quick_filter='*Float32*:*Diagonal*:*Memory*:*ResidentKernel*:*KernelProduct*:*NewtonSystem*:*LaplaceFactors*:*Reclaim*'
sanitize() {  # step name (log and row), tool, time limit, gtest filter, extra options...
  local step=$1 tool=$2 limit filter=$4; limit=$(limit_for "$3"); shift 4
  local log="$log_dir/sanitizer-$step.log"
  if [ ! -x "$cs" ]; then row "compute-sanitizer $step" "not installed"; return; fi
  if [ "$limit" = 0 ]; then row "compute-sanitizer $step" "skipped: out of time"; return; fi
  timeout -k 15 "$limit" "$cs" --tool "$tool" --error-exitcode 9 "$@" "$tests_bin" --gtest_filter="$filter" \
    > "$log" 2>&1
  local rc=$? errors
  errors=$(grep -m1 'ERROR SUMMARY' "$log")
  if [ "$rc" = 9 ]; then
    row "compute-sanitizer $step" "ERRORS: $errors"
  elif [ "$rc" = 0 ]; then
    local verdict; verdict=$(gtest_verdict "$log" 0)
    case $verdict in
      passed*) row "compute-sanitizer $step" "clean (${errors#========= }; tests $verdict)" ;;
      *) row "compute-sanitizer $step" "no verdict: $verdict" ;;
    esac
  else
    # e.g. "Device not supported" under gVisor (device/KINDS.md): no verdict on our code.
    row "compute-sanitizer $step" "exit $rc: $(gtest_verdict "$log" "$rc"); $(grep -m1 -iE 'not supported|error' "$log")"
  fi
}
wants memcheck && sanitize memcheck memcheck 90 "$quick_filter"
wants racecheck && sanitize racecheck racecheck 60 "$quick_filter" --kernel-name kns=ntk
wants memcheck-all && sanitize memcheck-all memcheck 500 '*'
wants racecheck-all && sanitize racecheck-all racecheck 500 '*' --kernel-name kns=ntk

echo
echo "gpu-check summary ($(date -u +%F), $(( $(date +%s) - script_start )) s, logs in $log_dir):"
cat "$summary"
echo
grep -E '^(device|\|)' "$log_dir/gpu_bench.log" 2>/dev/null | awk '!/^\| part/ && !/^\|---/ || !seen[$0]++'
