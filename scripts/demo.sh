#!/usr/bin/env bash
# The main job, after scripts/setup.sh: NTK matrices of scikit-learn's bundled digits computed by
# ntkctl (depth-3 ReLU network), then used for an infinite-width network's predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=${1:-out/digits}
$py examples/kernel_digits/prepare.py "$out"
arch=(--depth 3 --activation relu --w-std 1.5 --b-std 0.1 --dtype float64)
build/bin/ntkctl kernel --x1 "$out/x_train.npy" --kernel ntk --out "$out/k_train.npy" "${arch[@]}"
build/bin/ntkctl kernel --x1 "$out/x_test.npy" --x2 "$out/x_train.npy" --kernel ntk --out "$out/k_test.npy" "${arch[@]}"
$py examples/kernel_digits/evaluate.py "$out"
