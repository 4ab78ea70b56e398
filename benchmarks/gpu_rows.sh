#!/usr/bin/env bash
# Issue 13's GPU rows, run on the lent device machine (see BENCHMARKS.md, "On a GPU"), as one call:
#   smoke  (argument "smoke"): install the carried wheels, unpack the first data piece, a digits fix + AutoAttack on CUDA
#   rows   (argument "rows"):  four streams one after another (PARALLEL=1: at once, as on 2026-11-26), all ending by
#          one deadline (argument 2, seconds):
#     r9     seed 000's table 1 analogue: resnet9 trained by `harden train` on the full CIFAR-10 split, then fixer
#            and at at 10%, AutoPGD crafted on the base (transfer) and white-box, AutoAttack
#     r20    the CPU table's CIFAR-10 ResNet-20 rows (at and fixer at 10% and 1%) on N=1000
#     r20b   the variants: at FGSM-RS 20 epochs, at TRADES, fixer craft_on=patched (10% and 1%)
#     r20c   compute ceiling: at on the full split (10 epochs), and at 10% with bf16 autocast
# Data comes from benchmarks/gpu_pack.py pieces in .gpu-data/a (first call) and .gpu-data/b (second call).
set -u
MODE=${1:-rows}
END=$((SECONDS + ${2:-480}))  # every stream's runs end by then, leaving time to pack the results
DEV=${DEV:-cuda}
W=/tmp/gpuw
mkdir -p "$W"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=4
if [ ! -d /tmp/site ]; then  # files of the first call stay on the warm machine; later calls carry only new data
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  cp -r .gpu-data/site/* /tmp/site/  # pyautoattack's code without its 45 MB of example weights
fi
[ -d .gpu-data/a ] && [ ! -d "$W/a" ] && cp -r .gpu-data/a "$W/a"
[ -f .gpu-data/r20-base.safetensors ] && cp .gpu-data/r20-base.safetensors "$W/"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/smi.txt" 2>&1; cat "$OUT/smi.txt"
python3 -c "import torch, timm, harden, albumentations, art, pyautoattack; print(torch.__version__, torch.cuda.get_device_name())"

if [ "$MODE" = smoke ]; then
  set -x
  python3 -m harden train -o "$W/digits.safetensors" --data digits --epochs 3 --force --device "$DEV" &&
  timeout 120 python3 benchmarks/recipes_compare.py --data digits --base "$W/digits.safetensors" --recipes at,fixer \
    --fracs 0.3 --epochs 0.3:2 --n 100 --eps 0.1 --attack fgsm --attack pgd --attack autoattack --amp bf16 \
    --out "$OUT/smoke" 2>&1 | tail -30
  exit 0
fi

[ -d "$W/b" ] || cp -r .gpu-data/b "$W/b"
python3 benchmarks/gpu_pack.py unpack "$W/a" "$W/b" "$W/cifar10.npz" || exit 1
D=$W/cifar10.npz
R20=$W/r20-base.safetensors
COMMON="--data $D --eps 8/255 --n 1000"
A4="--attack fgsm --attack pgd --attack autopgd --attack autoattack"
run() {  # name, then the command; output to $W/<name>.log
  local name=$1; shift
  local t0=$SECONDS rc left=$((END - SECONDS))
  echo "## $(date +%T) $*" >> "$W/$name.log"
  if [ $left -lt 20 ]; then echo "## not run: the call's time is spent" >> "$W/$name.log"; return; fi
  timeout "$left" "$@" >> "$W/$name.log" 2>&1; rc=$?
  echo "## $(date +%T) rc $rc, $((SECONDS - t0)) s" >> "$W/$name.log"
}
stream_r9() {
  run r9 python3 -m harden train -o "$W/r9-base.safetensors" --arch resnet9 --data "$D" --epochs 15 --device "$DEV" --force
  run r9 python3 benchmarks/recipes_compare.py $COMMON --base "$W/r9-base.safetensors" --recipes fixer,at --fracs 0.1 \
    --attack autopgd --attack autoattack --out "$W/r9-table1"
}
stream_r20() {
  run r20 python3 benchmarks/recipes_compare.py $COMMON --base "$R20" --recipes at,fixer --fracs 0.1,0.01 $A4 --out "$W/r20-rows"
}
stream_r20b() {
  run r20b python3 benchmarks/recipes_compare.py $COMMON --base "$R20" --recipes at --fracs 0.1 --epochs 0.1:20 \
    --set at:attack=fgsm-rs $A4 --out "$W/r20-fgsmrs20"
  run r20b python3 benchmarks/recipes_compare.py $COMMON --base "$R20" --recipes fixer --fracs 0.1,0.01 \
    --set fixer:craft_on=patched $A4 --out "$W/r20-fixer-patched"
  run r20b python3 benchmarks/recipes_compare.py $COMMON --base "$R20" --recipes at --fracs 0.1 --set at:loss=trades $A4 \
    --out "$W/r20-trades"
}
stream_r20c() {
  run r20c python3 benchmarks/recipes_compare.py $COMMON --base "$R20" --recipes at --fracs 1.0 --epochs 1.0:10 $A4 \
    --out "$W/r20-full"
  run r20c python3 benchmarks/recipes_compare.py $COMMON --base "$R20" --recipes at --fracs 0.1 --amp bf16 $A4 \
    --out "$W/r20-bf16"
}
( while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$W/smi.log"; done ) \
  > /dev/null 2>&1 & SMI=$!
if [ "${PARALLEL:-0}" = 1 ]; then
  # 2026-11-26, H200: four streams at once time-sliced the card and none of the ResNet-20 rows finished in 530 s
  stream_r9 & P1=$!
  stream_r20 & P2=$!
  stream_r20b & P3=$!
  stream_r20c & P4=$!
  wait $P1 $P2 $P3 $P4
else  # one after another, the rows wanted most first
  stream_r20; stream_r9; stream_r20b; stream_r20c
fi
kill $SMI
cd "$W" && tar czf "$OUT/results.tgz" ./*.md ./*.json ./*.log 2>/dev/null
cp "$W"/r9.log "$W"/r20.log "$W"/r20b.log "$W"/r20c.log "$OUT/" 2>/dev/null
tail -n 5 "$W"/*.log
