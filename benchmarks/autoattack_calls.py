"""Network calls of harden's AutoAttack against the original's (`pyautoattack`) on the same images: on a card where a
step of a few hundred small images costs its kernel launches, the calls are the time. A small CNN is trained here on
6,000 CIFAR-10 training images (seeded), so that a share of the test images stays robust at a small budget and the
later stages have work.

    python benchmarks/autoattack_calls.py --data ../shared/data/cifar10.npz --n 400 --batch 200 \
        --impl harden harden-per-batch original --out bench-out/aa-calls.jsonl

Rows are appended to --out (JSON lines) as each finishes."""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import harden
from harden.attacks.autoattack import AutoAttack
from harden.data import to_tensor
from harden.runtime import frozen


def small_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


def trained(data: dict, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = small_cnn()
    x = torch.from_numpy(data["x_train"][:6000]).float().div(255).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(data["y_train"][:6000]).long()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(4):
        for i in range(0, len(x), 64):
            loss = nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@contextlib.contextmanager
def counting(net: nn.Module):
    calls = [0, 0]  # calls, images

    def hook(module, args):
        calls[0] += 1
        calls[1] += len(args[0])
    handle = net.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def common_arguments(ap: argparse.ArgumentParser, n: int) -> None:
    """--data, --n, --batch, --threads and --out, as both call benchmarks take them."""
    ap.add_argument("--data", required=True, help="CIFAR-10 .npz (x_train, y_train, x_test, y_test)")
    ap.add_argument("--n", type=int, default=n)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)


def prepared(args) -> tuple[nn.Module, "harden.models.Classifier", np.ndarray, np.ndarray]:
    """The run's settings applied (--threads, quiet, --out's folder) and (the trained network, it as harden's
    model, the first --n test images, their labels)."""
    torch.set_num_threads(args.threads)
    harden.runtime.set_quiet(True)
    with np.load(args.data) as f:
        data = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    net = trained(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return (net, harden.models.from_module(net, input_size=32, num_classes=10), data["x_test"][:args.n],
            data["y_test"][:args.n].astype(np.int64))


def main() -> None:
    ap = argparse.ArgumentParser()
    common_arguments(ap, n=400)
    ap.add_argument("--eps", type=float, default=2 / 255)
    ap.add_argument("--impl", nargs="+", default=["harden", "harden-per-batch", "original"])
    args = ap.parse_args()
    _, model, x, y = prepared(args)
    for impl in args.impl:
        t = time.perf_counter()
        with counting(model.net) as calls:
            if impl.startswith("harden"):
                grouped = AutoAttack.batches_at_once
                AutoAttack.batches_at_once = 1 if impl == "harden-per-batch" else grouped
                try:
                    rep = harden.evaluate(model, (x, y), attacks=["autoattack"], n=args.n, eps=args.eps,
                                          batch_size=args.batch, device="cpu", metrics=False, masking_checks=False)
                finally:
                    AutoAttack.batches_at_once = grouped
                robust, stages = rep.attacks[0].robust_accuracy, rep.attacks[0].stages
            else:
                from pyautoattack import AutoAttack as Original
                with frozen(model):
                    aa = Original(model, eps=args.eps, norm="Linf", version="standard", seed=0, device="cpu")
                    aa.verbose = False
                    xt, yt = to_tensor(x), torch.from_numpy(y)
                    xa = aa.run_standard_evaluation(xt, yt, batch_size=args.batch)
                    xa = xa[0] if isinstance(xa, tuple) else xa
                    with torch.no_grad():
                        robust, stages = float((model(xa).argmax(1) == yt).float().mean()), None
        row = {"impl": impl, "n": args.n, "batch": args.batch, "eps": args.eps, "calls": calls[0],
               "images_through": calls[1], "robust": robust, "stages": stages,
               "seconds": round(time.perf_counter() - t, 1), "threads": args.threads, "threat_model": "white-box",
               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
               "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(row), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
