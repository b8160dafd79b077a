#!/usr/bin/env bash
# Finite-width validation of ntkctl (see docs/validation.md):
#   experiments/validate_finite_width.sh [path/to/ntkctl] [extra options for validate_finite_width.py]
# Needs Debian's python3-torch, -sklearn, -matplotlib, -numpy (installed here if missing, as root) and an
# ntkctl built already (default build/bin/ntkctl). Writes docs/validation.png, docs/validation_tables.md and
# out/validate/results.json. THREADS (default 2) sets the threads of PyTorch and ntkctl.
set -euo pipefail
cd "$(dirname "$0")/.."
NTKCTL="${1:-build/bin/ntkctl}"
[ $# -gt 0 ] && shift
PY=/usr/bin/python3
if ! "$PY" -c 'import torch, sklearn, matplotlib, numpy' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y python3-torch python3-sklearn python3-matplotlib python3-numpy
  else
    echo "need: apt-get install python3-torch python3-sklearn python3-matplotlib python3-numpy" >&2
    exit 1
  fi
fi
[ -x "$NTKCTL" ] || { echo "no ntkctl at $NTKCTL (build it first: cmake ... && ninja)" >&2; exit 1; }
THREADS="${THREADS:-2}"
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
exec "$PY" experiments/validate_finite_width.py --ntkctl "$NTKCTL" --threads "$THREADS" "$@"
