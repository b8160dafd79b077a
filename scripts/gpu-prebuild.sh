#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs, on a development machine, for a GPU machine that cannot build
# (the lab's have CUDA but none of gRPC, Protobuf, GTest or OpenBLAS, and no network): cuda_tests and
# gpu_bench for the given architecture (default sm_90, the H200), plus the OpenBLAS the CPU oracle loads
# and its Fortran runtime, into OUT (default gpu-prebuilt/, ignored by git). Then on the GPU machine:
#   scripts/gpu-check.sh --prebuilt gpu-prebuilt --log-dir DIR
# (the device tool: carry ["gpu-prebuilt"]). The GPU machine needs the same CUDA major version.
#
#   scripts/gpu-prebuild.sh [OUT] [ARCH]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-prebuilt}" arch="${2:-90}"
build=build-gpu
# Dynamically linked against libstdc++ (GCC 12's: GLIBCXX_3.4.30) and glibc 2.34, which Ubuntu 22.04 and
# later have; linking libstdc++ statically was tried and raised the glibc needed to 2.36 (arc4random).
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNTK_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DNTK_BUILD_BENCH=ON -DCMAKE_EXE_LINKER_FLAGS="" > /dev/null
cmake --build $build -j "$(nproc)" --target cuda_tests gpu_bench
rm -rf "$out"
mkdir -p "$out/lib"
cp $build/tests/cuda_tests $build/bin/gpu_bench "$out/"
strip "$out/cuda_tests" "$out/gpu_bench"
# The OpenBLAS that core/src/blas.cpp would load here, under the name gpu-check.sh points it to.
blas=$(ldconfig -p | awk '/libopenblas.so.0 / && !found {print $NF; found = 1}')
[ -n "$blas" ] || { echo "gpu-prebuild: no libopenblas.so.0 on this machine" >&2; exit 1; }
cp -L "$blas" "$out/lib/libopenblas.so.0"
for dep in $(ldd "$blas" | awk '/libgfortran|libquadmath/ {print $3}'); do cp -L "$dep" "$out/lib/"; done
{
  echo "built $(date -u +%FT%TZ) on $(hostname) for sm_$arch, $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
  nvcc --version | tail -2
  echo "needs: $(objdump -T "$out/cuda_tests" "$out/gpu_bench" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)," \
    "$(objdump -T "$out/cuda_tests" "$out/gpu_bench" | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1) and"
  ldd "$out/cuda_tests" "$out/gpu_bench" | awk '/=>/ {print "  " $1}' | sort -u
} > "$out/BUILD_INFO"
cat "$out/BUILD_INFO"
du -sh "$out"
