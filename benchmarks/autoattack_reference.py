"""harden's autoattack and autopgd on the reference checkpoints of ../shared/models (DeepRobust's PGD- and
TRADES-trained MNIST CNNs), beside the original AutoAttack's published column in its README; optionally the
original implementation (`pyautoattack`) on the same images for a time ratio on this machine.

    python benchmarks/autoattack_reference.py --models trades pgd --n 1000 --out bench-out/aa.jsonl
    python benchmarks/autoattack_reference.py --models trades --n 200 --reference --out bench-out/aa-ref.jsonl
    python benchmarks/autoattack_reference.py --models trades --n 200 --norm L2 --eps 1.5 --what autoattack \
        --reference --out bench-out/aa-l2.jsonl

Rows are appended to --out (JSON lines) as each finishes."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import harden  # noqa: E402
from harden.attacks import build_attack  # noqa: E402
from harden.attacks.base import art_generate  # noqa: E402
from harden.data import to_tensor  # noqa: E402
from harden.runtime import frozen  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = {"pgd": "deeprobust_mnist_pgd.pt", "trades": "deeprobust_mnist_trades.pt"}


def load(name: str):
    return harden.load(SHARED / "models" / MODELS[name], arch="archs:deeprobust_mnist", num_classes=10, in_chans=1,
                       input_size=(28, 28), mean=[0.0], std=[1.0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["trades", "pgd"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--norm", choices=["Linf", "L2"], default="Linf", help="L2: autoattack only, at --eps in L2")
    ap.add_argument("--what", nargs="+", default=["autopgd", "art-autopgd", "autoattack"])
    ap.add_argument("--reference", action="store_true", help="also run the original AutoAttack (pyautoattack)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    harden.runtime.set_quiet(True)
    data = harden.load_data(str(SHARED / "data" / "mnist.npz"))
    x = to_tensor(data.x_test[:args.n])
    y = torch.from_numpy(data.y_test[:args.n])
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def emit(row):
        row.update(date=time.strftime("%Y-%m-%d"), n=args.n, eps=args.eps, norm=args.norm, threat_model="white-box",
                   threads=args.threads)
        print(json.dumps(row), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")

    for name in args.models:
        model = load(name)
        if "autoattack" in args.what or "autopgd" in args.what:
            attacks = [a for a in ("autopgd", "autoattack") if a in args.what]
            if args.norm == "L2":
                attacks = ["autoattack:norm=L2"]
            rep = harden.evaluate(model, data, attacks=attacks, n=args.n, eps=args.eps if args.norm == "Linf" else None,
                                  eps_l2=args.eps, device="cpu",
                                  metrics=False, masking_checks=False)
            for a in rep.attacks:
                emit({"model": name, "impl": "harden", "attack": a.name, "clean": rep.clean_accuracy,
                      "robust": a.robust_accuracy, "stages": a.stages, "stage_seconds": getattr(a, "stage_seconds", None),
                      "seconds": round(a.seconds, 1),
                      "grad_passes": a.backward_passes, "forward_passes": a.forward_passes})
        with frozen(model):
            if "art-autopgd" in args.what:
                from art.attacks.evasion import AutoProjectedGradientDescent
                preset = build_attack("autopgd", eps=args.eps).params
                t = time.perf_counter()
                xa = art_generate(model, x, y, lambda clf, p=preset: AutoProjectedGradientDescent(
                    clf, norm=np.inf, eps=args.eps, eps_step=p["step"], max_iter=p["steps"], nb_random_init=1,
                    batch_size=256, verbose=False))
                with torch.no_grad():
                    acc = float((model(xa).argmax(1) == y).float().mean())
                emit({"model": name, "impl": "ART 1.20 AutoProjectedGradientDescent", "attack": "autopgd",
                      "robust": acc, "seconds": round(time.perf_counter() - t, 1)})
            if args.reference:
                from pyautoattack import AutoAttack
                t = time.perf_counter()
                aa = AutoAttack(model, eps=args.eps, norm=args.norm, version="standard", seed=0, device="cpu")
                xa = aa.run_standard_evaluation(x, y, batch_size=500)[0]
                with torch.no_grad():
                    acc = float((model(xa).argmax(1) == y).float().mean())
                emit({"model": name, "impl": "original AutoAttack (pyautoattack 0.2.0)", "attack": "autoattack",
                      "robust": acc, "seconds": round(time.perf_counter() - t, 1)})


if __name__ == "__main__":
    main()
