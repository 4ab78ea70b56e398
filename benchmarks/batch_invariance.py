"""The same report at two batch sizes: does an image's verdict depend on the batch it was attacked in?

    PYTHONPATH=benchmarks python benchmarks/batch_invariance.py --model trades --n 100 --batches 64 17

A checkpoint of ../shared/models as its authors saved it (--model r20: the CIFAR-10 ResNet-20 at 8/255; trades: the
TRADES-trained MNIST CNN at 0.3, robust enough that random starts decide verdicts) on the first --n test images of
its ../shared/data set, attacked at each batch size with the same seed; prints each attack's robust accuracy per batch
size and whether every image's verdict agrees (the report's per-image bits)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import harden  # noqa: E402
from harden.report.compare import unpack, verdicts_of  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
ATTACKS = ["fgsm", "pgd:restarts=2", "autopgd", "cw", "deepfool", "jsma", "square:queries=1000"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 17])
    ap.add_argument("--attacks", nargs="+", default=ATTACKS)
    ap.add_argument("--model", choices=["r20", "trades"], default="trades")
    ap.add_argument("--eps-l2", type=float, default=0.5, help="the L2 budget (DeepFool, C&W-L2, autoattack:norm=L2)")
    args = ap.parse_args()
    if args.model == "r20":
        model = harden.load(SHARED / "models" / "resnet20_cifar10.th", arch="archs:resnet20", num_classes=10,
                            in_chans=3, input_size=(32, 32), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        data, eps = "cifar10.npz", 8 / 255
    else:
        model = harden.load(SHARED / "models" / "deeprobust_mnist_trades.pt", arch="archs:deeprobust_mnist",
                            num_classes=10, in_chans=1, input_size=(28, 28), mean=[0.0], std=[1.0])
        data, eps = "mnist.npz", 0.3
    d = np.load(SHARED / "data" / data)
    x, y = d["x_test"][: args.n], d["y_test"][: args.n]
    bits = {}
    for b in args.batches:
        report = harden.evaluate(model, (x, y), attacks=args.attacks, n=args.n, batch_size=b, metrics=False,
                                 masking_checks=False, device="cpu", eps=eps, eps_l2=args.eps_l2)
        v = verdicts_of(report)
        bits[b] = {k: unpack(s, v["n"]) for k, s in v["bits"].items()}
    print(f"| verdicts | {' | '.join(f'batch {b}' for b in args.batches)} | every image the same |")
    print("|---|" + "---|" * (len(args.batches) + 1))
    for k in bits[args.batches[0]]:
        same = all(np.array_equal(bits[b][k], bits[args.batches[0]][k]) for b in args.batches)
        print(f"| {k} | {' | '.join(f'{100 * bits[b][k].mean():.1f}%' for b in args.batches)} | "
              f"{'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
