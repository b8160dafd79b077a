#!/usr/bin/env bash
# One-command setup on a fresh Debian 12 machine: system packages (compilers, OpenBLAS, gRPC/Protobuf,
# prometheus-cpp, yaml-cpp, OpenSSL, test tools), the Python tools the tests and examples use (in
# .venv), then a Release build in build/.
#
#   scripts/setup.sh            # everything
#   NTK_SETUP_SKIP_APT=1 ...    # packages are already there (no root needed)
#   NTK_CUDA=OFF ...            # build without the CUDA backend (default AUTO: when nvcc is found)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n== setup: %s\n' "$*"; }

if [ "${NTK_SETUP_SKIP_APT:-0}" != 1 ]; then
  log "Debian packages"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build pkg-config git \
    libopenblas0-pthread libopenblas-dev \
    googletest libgtest-dev libgmock-dev libbenchmark-dev \
    libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
    prometheus-cpp-dev libyaml-cpp-dev libssl-dev openssl \
    clang libclang-rt-14-dev dataset-fashion-mnist \
    python3 python3-venv >/dev/null
fi

python=${NTK_PYTHON_BOOTSTRAP:-python3}
# A dangling link or a venv whose interpreter is gone is recreated.
if [ -L .venv ] && [ ! -e .venv ]; then rm -f .venv; fi
if [ -e .venv ] && ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then rm -rf .venv; fi
if [ ! -x .venv/bin/python ]; then
  log "Python virtual environment (.venv)"
  "$python" -m venv .venv
fi
log "Python packages"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r scripts/requirements.txt
# neural-tangents 0.6.5 declares tensorflow as a dependency for a module we never import; install it
# without dependencies (its real ones, jax and frozendict, come from requirements.txt).
.venv/bin/python -m pip install -q --no-deps neural-tangents==0.6.5
# The Python client (its gRPC stubs are generated from proto/ while it is built).
.venv/bin/python -m pip install -q ./client/python

log "configure and build (Release)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNTK_CUDA="${NTK_CUDA:-AUTO}" \
  -DNTK_PYTHON="$root/.venv/bin/python" >/dev/null
cmake --build build
log "done: binaries in build/bin, tests with: ctest --test-dir build --output-on-failure"
