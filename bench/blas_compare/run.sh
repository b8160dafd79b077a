#!/usr/bin/env bash
# Measures SGEMM/DGEMM (N x N x 784, C = A A^T) for the BLAS candidates on this machine: OpenBLAS
# with each core type, BLIS (auto-detecting) and Eigen (-march=native), at 1 and 2 threads.
# The numbers behind the choice recorded in docs/benchmarks.md. Needs libopenblas-dev, libblis-dev,
# libeigen3-dev.   usage: bench/blas_compare/run.sh [N ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ob=/usr/lib/x86_64-linux-gnu/openblas-pthread
blis=/usr/lib/x86_64-linux-gnu/blis-pthread
g++ -O3 -march=native "$here/gemm_rate.cpp" -o "$tmp/openblas" -I/usr/include/x86_64-linux-gnu/openblas-pthread \
  -L$ob -lopenblas -Wl,-rpath,$ob
g++ -O3 -march=native "$here/gemm_rate.cpp" -o "$tmp/blis" -I/usr/include/x86_64-linux-gnu/openblas-pthread \
  -L$blis -lblis -Wl,-rpath,$blis -lpthread
g++ -O3 -march=native -fopenmp -DUSE_EIGEN -I/usr/include/eigen3 "$here/gemm_rate.cpp" -o "$tmp/eigen"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  date: $(date -u +%F)"
for n in "${@:-2048 4096}"; do
  for t in 1 2; do
    for core in Prescott Haswell Zen SkylakeX Cooperlake; do
      printf 'openblas %-10s threads=%d ' "$core" "$t"; OPENBLAS_CORETYPE=$core OPENBLAS_NUM_THREADS=$t "$tmp/openblas" "$n"
    done
    printf 'blis                threads=%d ' "$t"; BLIS_NUM_THREADS=$t "$tmp/blis" "$n"
    printf 'eigen               threads=%d ' "$t"; OMP_NUM_THREADS=$t "$tmp/eigen" "$n"
  done
done
