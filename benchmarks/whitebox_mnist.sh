#!/usr/bin/env bash
# Issue "hardening that survives a white-box attacker", MNIST rows: a cnn-small base on the full training split,
# then recipes at 10% and 1%, white-box (AutoAttack, worst case, the six) and transfer from the base.
# Usage: bash benchmarks/whitebox_mnist.sh [recipes] [fracs] [n]   (rows land in bench-out/whitebox_mnist.*)
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPES=${1:-at}
FRACS=${2:-0.1,0.01}
N=${3:-200}
DATA=${DATA:-../shared/data/mnist.npz}
mkdir -p bench-out
BASE=bench-out/mnist-cnn-small-full.safetensors
if [ ! -f "$BASE" ]; then
  /usr/bin/time -f "base training: wall %e s" .venv/bin/harden train --data "$DATA" --arch cnn-small --epochs 3 -q -o "$BASE"
fi
/usr/bin/time -f "recipes: wall %e s" .venv/bin/python benchmarks/recipes_compare.py --data "$DATA" --base "$BASE" \
  --recipes "$RECIPES" --fracs "$FRACS" --eps 0.3 --n "$N" --attack default --attack autoattack \
  --out "bench-out/whitebox_mnist_${RECIPES//,/_}_${FRACS//,/_}"
