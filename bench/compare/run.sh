#!/usr/bin/env bash
# Side-by-side benchmarks: ntkctl / NTKClassifier against neural-tangents and scikit-learn.
# usage: bench/compare/run.sh [--quick]
#   full:    results/{kernels,dynamics,sklearn}.json, kernels.png, dynamics.png, sklearn.png, and the section
#            "Side by side: neural-tangents and scikit-learn (bench/compare)" of docs/benchmarks.md regenerated.
#   --quick: a smoke run of a few minutes on small sizes; writes *_quick files, prints the Markdown, leaves the docs.
# Needs: the project's .venv (numpy, scipy, scikit-learn, jax, neural-tangents, matplotlib, ntkserve), ntkctl and
# ntk-server (build/bin, or NTKCTL / NTK_SERVER_BINARY), Fashion-MNIST (apt-get install -y dataset-fashion-mnist,
# or FASHION_MNIST_DIR). NTK_COMPARE_MAX_WAIT (s, default 300): how long each timed block waits for the
# 1-minute load average to fall below 1.5. Parts: NTK_COMPARE_PARTS="kernels dynamics sklearn" (default all).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
quick=()
if [ "${1:-}" = "--quick" ]; then quick=(--quick); shift; fi
[ $# -eq 0 ] || { echo "usage: bench/compare/run.sh [--quick]" >&2; exit 2; }
if [ -z "${NTKCTL:-}" ]; then
  for c in "$root/build/bin/ntkctl" /work/main/build/bin/ntkctl; do [ -x "$c" ] && export NTKCTL="$c" && break; done
fi
if [ -z "${NTK_SERVER_BINARY:-}" ]; then
  for c in "$root/build/bin/ntk-server" /work/main/build/bin/ntk-server; do
    [ -x "$c" ] && export NTK_SERVER_BINARY="$c" && break
  done
fi
: "${NTKCTL:?ntkctl not found: build the project or set NTKCTL}"
: "${NTK_SERVER_BINARY:?ntk-server not found: build the project or set NTK_SERVER_BINARY}"
export PYTHONUNBUFFERED=1
echo "ntkctl: $NTKCTL; ntk-server: $NTK_SERVER_BINARY; python: $python; $(uptime)"
for part in ${NTK_COMPARE_PARTS:-kernels dynamics sklearn}; do
  case "$part" in
    kernels) "$python" "$here/kernels.py" "${quick[@]}" ;;
    dynamics) "$python" "$here/dynamics.py" "${quick[@]}" ;;
    sklearn) "$python" "$here/sklearn_compare.py" "${quick[@]}" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
"$python" "$here/report.py" "${quick[@]}"
