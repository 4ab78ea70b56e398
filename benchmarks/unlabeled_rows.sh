#!/usr/bin/env bash
# Issue "harder with the data users have": the rows of BENCHMARKS.md "Unlabeled images", one after another, each
# appended to bench-out/unlabeled.jsonl as it finishes (benchmarks/unlabeled.py), a log per row in bench-out/unl/.
# Usage: bash benchmarks/unlabeled_rows.sh [row ...]   (rows: mnist1u cifar10u mnist1 cifar1u mnist1t mnist10
# mnist10x mnist10f fixer1u)
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-out/unl
MNIST=${MNIST:-../shared/data/mnist.npz}
CIFAR=${CIFAR:-../shared/data/cifar10.npz}
MBASE=bench-out/unl/mnist-cnn-small-2ep.safetensors
[ -f "$MBASE" ] || .venv/bin/harden train --data "$MNIST" --arch cnn-small --epochs 2 -q -o "$MBASE"
CBASE=../shared/models/resnet20_cifar10.th
CF="--arch benchmarks/archs.py:resnet20 --num-classes 10 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225"
run() {  # label, then benchmarks/unlabeled.py arguments
  local label=$1; shift
  /usr/bin/time -f "wall %e s" .venv/bin/python benchmarks/unlabeled.py --label "$label" --out bench-out/unlabeled.jsonl \
    "$@" > "bench-out/unl/$label.log" 2>&1
}
for row in "${@:-mnist1u cifar10u mnist1 cifar1u mnist1t mnist10}"; do
  for r in $row; do
    case $r in
      mnist1u) run mnist1u --data "$MNIST" --base "$MBASE" --frac 0.01 --pool rest --eps 0.3 --n 500 ;;
      mnist1) run mnist1 --data "$MNIST" --base "$MBASE" --frac 0.01 --pool none --eps 0.3 --n 500 ;;
      mnist1t) run mnist1t --data "$MNIST" --base "$MBASE" --frac 0.01 --pool rest --eps 0.3 --n 500 \
                 --set teacher_temperature=1 ;;
      mnist10) run mnist10 --data "$MNIST" --base "$MBASE" --frac 0.1 --pool none --eps 0.3 --n 500 ;;
      # epochs that follow the validation slice, against the issue's 81.5% (the same base and defaults, 200 images)
      mnist10x) run mnist10x --data "$MNIST" --base "$MBASE" --frac 0.1 --pool none --eps 0.3 --n 200 --set extend=0.5 ;;
      mnist10f) run mnist10f --data "$MNIST" --base "$MBASE" --frac 0.1 --pool none --eps 0.3 --n 200 --set extend=0 ;;
      # fixer with craft_on=patched (the base stays byte-identical) on 1% + the pool
      fixer1u) run fixer1u --data "$MNIST" --base "$MBASE" --frac 0.01 --pool rest --eps 0.3 --n 200 --recipe fixer \
                 --set craft_on=patched ;;
      cifar10u) run cifar10u --data "$CIFAR" --base "$CBASE" --model-flags "$CF" --frac 0.1 --pool rest --n 500 ;;
      cifar1u) run cifar1u --data "$CIFAR" --base "$CBASE" --model-flags "$CF" --frac 0.01 --pool rest --n 500 ;;
      *) echo "unknown row $r" >&2 ;;
    esac
  done
done
