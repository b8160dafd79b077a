#!/usr/bin/env bash
# The main job, after scripts/setup.sh: scikit-learn's bundled digits (no download), a depth-3 ReLU
# NTK classifier fitted with cross-entropy (lambda = 1e-3), its test accuracy, NLL and calibration,
# and its uncertainty over initialization (linearized), all through ntkctl.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=${1:-out/digits}
export NTK_LOG_LEVEL=${NTK_LOG_LEVEL:-warning}
arch=(--depth 3 --activation relu --w-std 1.5 --b-std 0.1 --dtype float64)
$py examples/kernel_digits/prepare.py "$out"
echo "== kernel: the NTK of the training images"
build/bin/ntkctl kernel --x1 "$out/x_train.npy" --kernel ntk --out "$out/k_train.npy" "${arch[@]}"
echo "== fit: regularized cross-entropy fixed point (Newton)"
build/bin/ntkctl fit --x "$out/x_train.npy" --labels "$out/y_train.npy" --lambda 1e-3 --out "$out/model.ntk" "${arch[@]}"
echo "== evaluate on the held-out digits"
build/bin/ntkctl evaluate --model "$out/model.ntk" --x "$out/x_test.npy" --labels "$out/y_test.npy" | head -6
echo "== predict with uncertainty over initialization (linearized)"
build/bin/ntkctl predict --model "$out/model.ntk" --x "$out/x_test.npy" --out-dir "$out/predictions" \
  --uncertainty linearized
$py examples/kernel_digits/summarize.py "$out"
