"""An input-quantization defence (bit-depth reduction, Xu et al. 2018's feature squeezing: each pixel rounded to
2^bits levels) in front of the shared CIFAR-10 ResNet-20, reported with BPDA (the default: the rounding's gradient
passed straight through) and with --no-bpda (its zero gradient), masking checks on. Rows for BENCHMARKS.md.

    python benchmarks/bpda_rounding.py [--n 200] [--bits 3]

Needs ../shared (the checkpoint and cifar10.npz)."""
import argparse
import time

import torch
from torch import nn

import harden
from harden.runtime import set_quiet
from shared_models import shared_resnet20  # benchmarks/ is on the path when run as a script



class BitDepth(nn.Module):
    def __init__(self, model, bits):
        super().__init__()
        self.model, self.levels, self.spec = model, 2 ** bits - 1, model.spec

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--bits", type=int, default=3)
    args = ap.parse_args()
    set_quiet(True)
    model, data = shared_resnet20()
    print("| model | attacks | clean | FGSM | PGD-50 | AutoPGD-25 | masking checks tripped | time |")
    print("|---|---|---|---|---|---|---|---|")
    for label, m, bpda in [("ResNet-20", model, True),
                           (f"{args.bits}-bit input rounding + ResNet-20", BitDepth(model, args.bits), True),
                           (f"{args.bits}-bit input rounding + ResNet-20", BitDepth(model, args.bits), False)]:
        t = time.time()
        r = harden.evaluate(m, data, n=args.n, attacks=["fgsm", "pgd", "autopgd"], device="cpu", metrics=False,
                            bpda=bpda)
        cells = " | ".join(f"{a.robust_accuracy:.1%}" for a in r.attacks)
        tripped = ", ".join(f["check"] for f in r.masking if f["tripped"] and f["kind"] == "masking") or "none"
        how = "white-box, BPDA (default)" if bpda else "white-box, --no-bpda"
        print(f"| {label} | {how} | {r.clean_accuracy:.1%} | {cells} | {tripped} | {time.time() - t:.1f} s |",
              flush=True)


if __name__ == "__main__":
    main()
