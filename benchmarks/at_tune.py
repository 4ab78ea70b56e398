"""Find `at`'s settings by measurement: each configuration fine-tunes the same base on the same fraction, then
is attacked white-box with PGD (the proxy: cheap, per configuration) on the first --n test images; one JSON row
per configuration is appended to --out as it finishes, so a long sweep loses nothing when stopped.

    python benchmarks/at_tune.py --data ../shared/data/mnist.npz --base bench-out/mnist-cnn-small-full.safetensors \\
        --eps 0.3 --frac 0.1 --config "optimizer=adam lr=0.001 epochs=10" --config "lr=0.05 epochs=10 eps_ramp=3"

A configuration is space-separated key=value pairs: epochs, lr, batch_size, optimizer, schedule, weight_decay,
grad_clip, augment go to the training loop; anything else is an `at` parameter (--set). The winner is then run
through AutoAttack by recipes_compare.py.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import torch

import harden
from harden.runtime import resolve_device, set_quiet

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/mnist.npz")
    ap.add_argument("--base", required=True)
    ap.add_argument("--recipe", default="at")
    ap.add_argument("--eps", required=True)
    ap.add_argument("--frac", type=float, default=0.1)
    ap.add_argument("--config", action="append", required=True)
    ap.add_argument("--attack", default="pgd:steps=40,restarts=1", help="the proxy attack (white-box)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="bench-out/at_tune.jsonl")
    args = ap.parse_args()
    set_quiet(True)
    device = resolve_device(args.device)
    data = harden.load_data(args.data)
    eps = harden.attacks.parse_number(args.eps)
    for config in args.config:
        pairs = dict(p.split("=", 1) for p in config.split())
        sets = [f"eps={args.eps}"] + [f"{k}={v}" for k, v in pairs.items()]
        t = time.perf_counter()
        res = harden.fix(args.base, data, recipe=args.recipe, sets=sets, data_frac=args.frac, seed=args.seed,
                         device=device, report=False)
        fix_s = time.perf_counter() - t
        rep = harden.evaluate(res.model, data, attacks=[args.attack], n=args.n, eps=eps, device=device,
                              seed=args.seed, metrics=False, masking_checks=False, examples=0)
        extra = res.model.spec.extra
        row = {"config": config, "frac": args.frac, "eps": args.eps, "fix_s": round(fix_s, 1),
               "clean": round(100 * rep.clean_accuracy, 1),
               "robust": round(100 * rep.attacks[0].robust_accuracy, 1), "attack": args.attack,
               "threat_model": "white-box", "best_epoch": extra.get("best_epoch"), "stopped": extra.get("stopped"),
               "val": [round(h.get("val_robust", float("nan")), 3) for h in res.history],
               "machine": f"{platform.machine()} {torch.get_num_threads()} threads", "date": str(date.today())}
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
