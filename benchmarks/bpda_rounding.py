"""An input-quantization defence (bit-depth reduction, Xu et al. 2018's feature squeezing: each pixel rounded to
2^bits levels) in front of the shared CIFAR-10 ResNet-20, reported with BPDA (the default: the rounding's gradient
passed straight through) and with --no-bpda (its zero gradient), masking checks on. Rows for BENCHMARKS.md.

    python benchmarks/bpda_rounding.py [--n 200] [--bits 3]
    python benchmarks/bpda_rounding.py --fix   # `fix` (at, eps 0.2, 2 epochs, 30%) of a digits cnn-small behind
                                               # a rounding to 5 levels, with and without --no-bpda

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


def fix_rows() -> None:
    import copy
    set_quiet(True)
    digits = harden.load_data("digits")
    base = harden.train("cnn-small", digits, harden.TrainConfig(epochs=10, batch_size=64, lr=0.05, augment="crop",
                                                                seed=0), "cpu")

    class Levels(nn.Module):
        def forward(self, x):
            return torch.round(x * 4) / 4
    rounded = copy.deepcopy(base)
    rounded.net = nn.Sequential(Levels(), rounded.net)
    print("| fix | last epoch: train acc / training-attack acc | validation clean / PGD-10 | report: base PGD-50 | "
          "fixed clean / PGD-50 | time |")
    print("|---|---|---|---|---|---|")
    for bpda in (True, False):
        t = time.time()
        r = harden.fix(rounded, digits, recipe="at", sets=["eps=0.2"], epochs=2, data_frac=0.3, device="cpu",
                       report_n=100, attacks=["pgd"], metrics=False, masking_checks=False, bpda=bpda)
        h = r.history[-1]
        fixed, base_pgd = r.reports["fixed_white_box"], r.reports["base_white_box"].attacks[0].robust_accuracy
        print(f"| {'BPDA (default)' if bpda else '--no-bpda'} | {h['acc']:.1%} / {h['adv_acc']:.1%} | "
              f"{h['val_clean']:.1%} / {h['val_robust']:.1%} | {base_pgd:.1%} | "
              f"{fixed.clean_accuracy:.1%} / {fixed.attacks[0].robust_accuracy:.1%} | {time.time() - t:.1f} s |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--fix", action="store_true")
    args = ap.parse_args()
    if args.fix:
        return fix_rows()
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
