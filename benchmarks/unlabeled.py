"""`harden fix --unlabeled` measured: a labelled fraction of the training split, the rest of it as unlabeled images
(its labels dropped: the pool is written as an .npz holding x_train alone), then white-box AutoAttack on the first N
test images. One JSON row per run is appended to --out as it finishes.

    python benchmarks/unlabeled.py --data ../shared/data/cifar10.npz --base resnet20_cifar10.th \\
        --model-flags "--arch benchmarks/archs.py:resnet20 --num-classes 10 --mean ... --std ..." \\
        --frac 0.1 --pool rest --eps 8/255 --n 500 --out bench-out/unlabeled.jsonl

--pool rest: the training images outside the labelled fraction; none: no unlabeled images (the defaults-only row).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

import harden
from harden.data import stratified_subset
from harden.runtime import set_quiet


def model_kwargs(flags: str) -> dict:
    """`--arch X --num-classes 10 --mean a,b,c --std a,b,c` -> harden.load's keyword arguments."""
    it = iter(shlex.split(flags))
    out = {}
    for key in it:
        value = next(it)
        name = key.lstrip("-").replace("-", "_")
        out[name] = (tuple(float(v) for v in value.split(",")) if name in ("mean", "std")
                     else int(value) if name in ("num_classes", "in_chans") else value)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--model-flags", default="")
    ap.add_argument("--frac", type=float, default=0.1)
    ap.add_argument("--pool", choices=("rest", "none"), default="rest")
    ap.add_argument("--pool-n", type=int, default=0, help="at most this many pool images (0 = all of the rest)")
    ap.add_argument("--eps", default="8/255")
    ap.add_argument("--recipe", default="at")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--attack", action="append", default=None, help="report attacks (default: autoattack)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="bench-out/unlabeled.jsonl")
    ap.add_argument("--save", default="", help="write the hardened model here")
    args = ap.parse_args()
    set_quiet(True)
    data = harden.load_data(args.data)
    base = harden.load(args.base, **model_kwargs(args.model_flags))
    pool_path = None
    if args.pool == "rest":
        labelled = stratified_subset(data.y_train, args.frac, args.seed)  # the subset harden.fix takes
        rest = np.setdiff1d(np.arange(data.n_train), labelled)
        if args.pool_n:
            rest = np.sort(np.random.default_rng(args.seed).choice(rest, min(args.pool_n, len(rest)), replace=False))
        pool_path = Path(args.out).parent / f"pool-{Path(args.data).stem}-{args.frac:g}-{len(rest)}.npz"
        if not pool_path.exists():
            np.savez(pool_path, x_train=data.x_train[rest])  # the images alone: no labels reach harden
    t0 = time.perf_counter()
    result = harden.fix(base, data, recipe=args.recipe, sets=[f"eps={args.eps}", *args.set], data_frac=args.frac,
                        seed=args.seed, report=False, unlabeled=str(pool_path) if pool_path else None,
                        base_name=Path(args.base).name)
    fix_s = time.perf_counter() - t0
    if args.save:
        harden.save(result.model, args.save, force=True)
    t1 = time.perf_counter()
    rep = harden.evaluate(result.model, data, attacks=args.attack or ["autoattack"], n=args.n, seed=args.seed,
                          metrics=False, masking_checks=False, eps=harden.attacks.parse_number(args.eps))
    eval_s = time.perf_counter() - t1
    extra = result.model.spec.extra
    row = {"label": args.label, "data": args.data, "base": args.base, "frac": args.frac,
           "trained_on": result.training()["data"], "unlabeled": extra.get("unlabeled"),
           "kind_defaults": extra.get("kind_defaults"), "recipe_train": extra.get("recipe_train"),
           "recipe": args.recipe, "sets": args.set, "best_epoch": extra.get("best_epoch"),
           "epochs_added": extra.get("epochs_added"), "history": [{k: v for k, v in h.items() if k.startswith("val")}
                                                                  for h in result.history], "stopped": extra.get("stopped"),
           "fix_seconds": round(fix_s, 1), "train_seconds": round(result.train_seconds, 1),
           "eval_seconds": round(eval_s, 1), "threat_model": rep.threat_model, "n": rep.n,
           "clean": rep.clean_accuracy, **{a.name: a.robust_accuracy for a in rep.attacks},
           "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads", "date": str(date.today())}
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
