#!/usr/bin/env bash
# The main job, after scripts/setup.sh: a local ntk-server (the CPU backend, or the GPU when one is
# present) and a client session against it on scikit-learn's bundled digits (no download): upload,
# fit a depth-3 ReLU NTK classifier with cross-entropy (lambda = 1e-3) with live progress, test
# accuracy, NLL and calibration, and the uncertainty over initialization (linearized).
#
#   scripts/demo.sh [OUT_DIR]          # default out/digits; the server keeps its data in OUT_DIR/server-data
#   NTK_DEMO_LOCAL=1 scripts/demo.sh   # the same job in-process, without a server
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=${1:-out/digits}
export NTK_LOG_LEVEL=${NTK_LOG_LEVEL:-warning}
arch=(--depth 3 --activation relu --w-std 1.5 --b-std 0.1 --dtype float64)
ntkctl=build/bin/ntkctl
$py examples/kernel_digits/prepare.py "$out"

if [ "${NTK_DEMO_LOCAL:-0}" = 1 ]; then
  echo "== fit in-process: regularized cross-entropy fixed point (Newton)"
  $ntkctl fit --x "$out/x_train.npy" --labels "$out/y_train.npy" --lambda 1e-3 --out "$out/model.ntk" "${arch[@]}"
  echo "== evaluate on the held-out digits"
  $ntkctl evaluate --model "$out/model.ntk" --x "$out/x_test.npy" --labels "$out/y_test.npy" | head -6
  $ntkctl predict --model "$out/model.ntk" --x "$out/x_test.npy" --out-dir "$out/predictions" --uncertainty linearized
  $py examples/kernel_digits/summarize.py "$out"
  exit 0
fi

echo "== start ntk-server on a free loopback port (data in $out/server-data)"
mkdir -p "$out"
build/bin/ntk-server --listen 127.0.0.1:0 --data-dir "$out/server-data" --metrics off > "$out/server.out" \
  2> "$out/server.log" &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null; wait $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  port=$(sed -n 's/^ntk-server: listening on port \([0-9]*\)$/\1/p' "$out/server.out")
  [ -n "$port" ] && break
  kill -0 $server_pid 2>/dev/null || { cat "$out/server.log"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "the server did not start"; cat "$out/server.log"; exit 1; }
server=(--server "127.0.0.1:$port")
$ntkctl "${server[@]}" health
name="digits-$(date +%s)"
echo "== upload the training digits as dataset $name"
$ntkctl "${server[@]}" upload --name "$name" --x "$out/x_train.npy" --labels "$out/y_train.npy"
echo "== fit on the server: regularized cross-entropy fixed point (Newton), progress live"
model=$($ntkctl "${server[@]}" fit --dataset "$name" --lambda 1e-3 "${arch[@]}" --json | $py -c 'import json,sys; print(json.load(sys.stdin)["model"])')
$ntkctl "${server[@]}" models
echo "== evaluate $model on the held-out digits"
$ntkctl "${server[@]}" evaluate --model "$model" --x "$out/x_test.npy" --labels "$out/y_test.npy" | head -6
echo "== predict with uncertainty over initialization (linearized), streamed from the server"
$ntkctl "${server[@]}" predict --model "$model" --x "$out/x_test.npy" --out-dir "$out/predictions" \
  --uncertainty linearized
$py examples/kernel_digits/summarize.py "$out"
