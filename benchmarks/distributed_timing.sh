#!/usr/bin/env bash
# Issue "beyond one GPU": the same `harden eval` and `harden fix` in one process (2 threads) and under torchrun
# with 2 gloo processes (1 thread each) on this machine's 2 cores, wall time of each and their ratio.
# Usage: bash benchmarks/distributed_timing.sh BASE.safetensors DATA [N]   (rows in bench-out/distributed_timing.*)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?base checkpoint}
DATA=${2:?data}
N=${3:-1000}
OUT=bench-out/distributed_timing
mkdir -p "$OUT"
H=.venv/bin/harden
TR=.venv/bin/torchrun
EVAL=(eval "$BASE" --data "$DATA" --num-images "$N" --attack fgsm --attack pgd --attack autopgd --no-metrics -q --force)
FIX=(fix "$BASE" --data "$DATA" --data-frac 0.05 --epochs 3 --set eps=0.1 --num-images 200 --attack pgd --no-metrics -q --force)
t() { local s=$(date +%s.%N); "$@" > /dev/null; python3 -c "print(f'{$(date +%s.%N) - $s:.1f}')"; }
e1=$(OMP_NUM_THREADS=2 t $H "${EVAL[@]}" --json $OUT/eval1.json)
e2=$(OMP_NUM_THREADS=1 t $TR --nproc-per-node 2 -m harden "${EVAL[@]}" --json $OUT/eval2.json)
f1=$(OMP_NUM_THREADS=2 t $H "${FIX[@]}" -o $OUT/fix1.safetensors --json $OUT/fix1.json)
f2=$(OMP_NUM_THREADS=1 t $TR --nproc-per-node 2 -m harden "${FIX[@]}" -o $OUT/fix2.safetensors --json $OUT/fix2.json)
python3 - "$e1" "$e2" "$f1" "$f2" "$N" <<'EOF'
import json, sys
e1, e2, f1, f2 = map(float, sys.argv[1:5])
a, b = json.load(open("bench-out/distributed_timing/eval1.json")), json.load(open("bench-out/distributed_timing/eval2.json"))
same = all(x["robust_accuracy"] == y["robust_accuracy"] for x, y in zip(a["attacks"], b["attacks"]))
print(f"| eval, {sys.argv[5]} images, fgsm+pgd+autopgd | {e1:.1f} | {e2:.1f} | {e2 / e1:.2f} | robust accuracies equal: {same} |")
fa, fb = json.load(open("bench-out/distributed_timing/fix1.json")), json.load(open("bench-out/distributed_timing/fix2.json"))
va = {r["threat_model"] + r["model"]: r["values"] for r in fa["reports"]}
vb = {r["threat_model"] + r["model"]: r["values"] for r in fb["reports"]}
k = [k for k in va if k.startswith("white-box") and "+" in k][0]
print(f"| fix at 5%, 3 epochs, eps 0.1, + report | {f1:.1f} | {f2:.1f} | {f2 / f1:.2f} | hardened white-box PGD {100 * va[k]['pgd']:.1f} vs "
      f"{100 * vb[k]['pgd']:.1f}, clean {100 * va[k]['clean']:.1f} vs {100 * vb[k]['clean']:.1f} |")
EOF
