"""Recipes side by side on one base model: for each recipe and data fraction, `harden fix` then the
six-attack report white-box on the hardened model and transfer from the base, with each fix's wall time.

    python benchmarks/recipes_compare.py --data ../shared/data/mnist.npz --base bench-out/mnist-cnn-small.safetensors \\
        --recipes fixer --fracs 0.1,0.01 --eps 0.3 --n 500
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

import harden
from harden.report.checks import transfer_vs_white_box
from harden.recipes import load_recipe_config
from harden.runtime import resolve_device, set_quiet


def row(label, threat, fix_s, rep):
    vals = {"clean": rep.clean_accuracy, **{a.name: a.robust_accuracy for a in rep.attacks}, "worst": rep.worst_case}
    flags = [f["check"] for f in rep.masking if f["tripped"]]
    return {"model": label, "threat_model": threat, "fix_seconds": fix_s, **vals, "masking": flags}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/mnist.npz")
    ap.add_argument("--base", required=True, help="base checkpoint (harden train ...)")
    ap.add_argument("--recipes", default="fixer", help="comma-separated recipe names or .toml files")
    ap.add_argument("--fracs", default="0.1,0.01")
    ap.add_argument("--epochs", default="", help="per fraction, optionally per recipe: 0.1:4,idfr@0.1:2 "
                    "(default: the recipe file's)")
    ap.add_argument("--eps", default=None, help="L-inf budget for training attacks and the report, e.g. 0.3")
    ap.add_argument("--set", action="append", default=[], help="extra recipe settings, recipe:key=value")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--attack", action="append", default=None, help="report attacks (default: the six); repeatable, "
                    "e.g. --attack default --attack autoattack")
    ap.add_argument("--n-white-box", type=int, default=None,
                    help="images for the white-box reports of hardened models (default --n); for costly models")
    ap.add_argument("--id-ablation", action="store_true",
                    help="idfr: also report the same run's model with FR removed (= the stage=id ablation)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-transfer", action="store_true", help="white-box rows only (no transfer from the base)")
    ap.add_argument("--save", action="store_true", help="also write each hardened model to <out>.<recipe>@<frac>"
                    ".safetensors")
    ap.add_argument("--amp", default="off", help="training precision of every fix: off (fp32), bf16, fp16 (CUDA)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-out/recipes_compare")
    args = ap.parse_args()
    set_quiet(True)
    device = resolve_device(args.device)
    data = harden.load_data(args.data)
    base = harden.load(args.base, device=device)
    eps = harden.attacks.parse_number(args.eps) if args.eps else None
    epochs = {k: int(v) for k, v in (p.split(":") for p in args.epochs.split(",") if p)}
    rows, runs = [], []  # runs: each fix's per-epoch history, kept epoch and early stop
    t = time.perf_counter()
    from harden.attacks import DEFAULT_ATTACKS, expand_suites
    attacks = expand_suites(args.attack or list(DEFAULT_ATTACKS))
    base_rep = harden.evaluate(base, data, n=args.n, eps=eps, device=device, seed=args.seed, metrics=False,
                               model_name="base", attacks=attacks)
    rows.append(row("base", "white-box", None, base_rep))
    print(f"base evaluated in {time.perf_counter() - t:.0f} s", flush=True)
    for recipe in args.recipes.split(","):
        sets = [s.split(":", 1)[1] for s in args.set if s.split(":", 1)[0] == recipe]
        if eps is not None and "eps" in load_recipe_config(recipe)["params"]:  # recipes that train on an attack
            sets.insert(0, f"eps={args.eps}")  # first, so that `--set recipe:eps=...` trains at another budget
        for frac in (float(f) for f in args.fracs.split(",")):
            t = time.perf_counter()
            res = harden.fix(args.base, data, recipe=recipe, sets=sets, data_frac=frac, seed=args.seed,
                             epochs=epochs_for(epochs, recipe, frac), device=device, report=False,
                             amp=args.amp)
            fix_s = time.perf_counter() - t
            label = f"{recipe} @ {frac:g}"
            models = [(label, res.model)]
            if args.id_ablation and getattr(res.model.patch, "restorer", None) is not None:
                id_only = copy.deepcopy(res.model)
                id_only.patch.restorer = None  # algorithm 1's ID alone: what stage=id trains
                models.append((f"{label} stage=id (this run's ID, FR removed)", id_only))
            for name, model in models:
                kw = dict(eps=eps, device=device, seed=args.seed, metrics=False, model_name=name, attacks=attacks)
                wb = harden.evaluate(model, data, n=args.n_white_box or args.n, **kw)
                tr = None if args.no_transfer else harden.evaluate(model, data, n=args.n, craft_on=base,
                                                                      craft_name="base", **kw)
                if tr is not None:  # the check harden fix adds to its report (white-box on the first n_white_box)
                    f = transfer_vs_white_box({a.name: a.robust_accuracy for a in wb.attacks},
                                              {a.name: a.robust_accuracy for a in tr.attacks}, min(wb.n, tr.n))
                    if f is not None:
                        wb.masking.append(f)
                rows.append(row(name, "white-box", fix_s, wb))
                if tr is not None:
                    rows.append(row(name, "transfer from base", fix_s, tr))
            if args.save:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                harden.save(res.model, Path(args.out).with_name(f"{Path(args.out).name}.{Path(recipe).stem}@{frac:g}"
                                                                ".safetensors"), force=True)
            print(f"{label}: fix {fix_s:.0f} s ({res.model.spec.extra['subset']['n']} images, "
                  f"{len(res.history)} epochs)", flush=True)
            runs.append({"model": label, "best_epoch": res.model.spec.extra.get("best_epoch"),
                         "stopped": res.model.spec.extra.get("stopped"), "history": res.history})
            write(args, device, rows, runs)  # after every recipe: a long run that stops early keeps its rows
    print(write(args, device, rows, runs))


def epochs_for(table: dict[str, int], recipe: str, frac: float) -> int | None:
    """--epochs entries `frac:n` (every recipe) or `recipe@frac:n` (that recipe; wins)."""
    parsed = {(k.rpartition("@")[0], float(k.rpartition("@")[2])): n for k, n in table.items()}
    return parsed.get((recipe, frac), parsed.get(("", frac)))


def write(args, device, rows, runs=()) -> str:
    meta = dict(date=str(date.today()), device=str(device),
                device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
                threads=torch.get_num_threads(), data=args.data, base=args.base, n=args.n,
                n_white_box=args.n_white_box or args.n, eps=args.eps,
                sets=args.set, epochs=args.epochs, amp=args.amp, attacks=args.attack or "default six")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": list(runs)}, indent=2))
    cols = [c for c in rows[0] if c not in ("model", "threat_model", "fix_seconds", "masking")]
    lines = [f"| model | threat model | fix s | {' | '.join(cols)} | masking flags |",
             "|---|---|---|" + "---|" * len(cols) + "---|"]
    for r in rows:
        fs = "-" if r["fix_seconds"] is None else f"{r['fix_seconds']:.0f}"
        lines.append(f"| {r['model']} | {r['threat_model']} | {fs} | " +
                     " | ".join(f"{100 * r[c]:.1f}" for c in cols) + f" | {'; '.join(r['masking']) or '-'} |")
    text = "\n".join(lines)
    out.with_suffix(".md").write_text(json.dumps(meta) + "\n\n" + text + "\n")
    return text


if __name__ == "__main__":
    main()
