"""Where a default report's time goes: the attacks against everything else (the masking and evaluation checks,
seed 004's metrics, judging, the clean pass), phase by phase. One JSON row appended to --out.

    python benchmarks/report_overhead.py --checkpoint bench-out/gate/shipped.safetensors \\
        --data ../shared/data/mnist.npz --n 300 --eps 0.1 --out bench-out/report_overhead.jsonl
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch

import harden
from harden.report import checks, runner
from harden.runtime import set_quiet

PHASES = [(checks, "run_white_box_checks"), (checks, "black_box"), (checks, "zero_gradients"),
          (checks, "randomized_outputs"), (runner, "seed004_metrics"), (runner, "predict_labels"),
          (runner, "detect_output_kind")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--eps", type=float, default=None)
    ap.add_argument("--out", default="bench-out/report_overhead.jsonl")
    args = ap.parse_args()
    set_quiet(True)
    seconds: dict[str, float] = {}

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    for module, name in PHASES:
        if hasattr(module, name):
            setattr(module, name, timed(name, getattr(module, name)))
    model = harden.load(args.checkpoint)
    data = harden.load_data(args.data)
    t = time.perf_counter()
    rep = harden.evaluate(model, data, n=args.n, eps=args.eps, device="cpu")
    wall = time.perf_counter() - t
    attacks = sum(a.seconds for a in rep.attacks)
    row = {"date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
           f"cores, {torch.get_num_threads()} threads", "checkpoint": args.checkpoint, "n": args.n, "eps": args.eps,
           "wall_s": round(wall, 1), "attacks_s": round(attacks, 1), "rest_s": round(wall - attacks, 1),
           "rest_over_attacks": round((wall - attacks) / attacks, 3),
           "per_attack_s": {a.name: round(a.seconds, 1) for a in rep.attacks},
           "phases_s": {k: round(v, 1) for k, v in seconds.items()},
           "clean": rep.clean_accuracy, "robust": {a.name: a.robust_accuracy for a in rep.attacks},
           "flags_tripped": [f["check"] for f in rep.masking if f["tripped"]], "threat_model": "white-box"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
