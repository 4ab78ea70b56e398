"""Does fp32 training on the CPU slow down from subnormal floats? A default `fix` (CIFAR-10 ResNet-20, 10%) with
harden's own flushing turned off, timing every 6,400 images through the model; when the rate falls under 40% of its
best, flush-to-zero goes on for 4 windows, off for 4, then on again, each window logged with its state. Run with one
thread (the flag is per thread):

    OMP_NUM_THREADS=1 python benchmarks/denormals.py --data ../shared/data/cifar10.npz \\
        --r20 ../shared/models/resnet20_cifar10.th --out bench-out/denormals.log
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import harden  # noqa: E402
from harden.models.registry import Classifier  # noqa: E402
from harden.runtime import set_quiet  # noqa: E402
from speed import model_r20  # noqa: E402

WINDOW = 200 * 32
NEXT = {"ftz": ("ftz-off", False), "ftz-off": ("ftz-final", True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10.npz")
    ap.add_argument("--r20", default="../shared/models/resnet20_cifar10.th")
    ap.add_argument("--out", default="bench-out/denormals.log")
    args = ap.parse_args()
    set_quiet(True)
    log = open(args.out, "a")
    s = {"n": 0, "t": time.perf_counter(), "best": 0.0, "phase": "normal", "windows": 0}
    real = Classifier.forward

    def forward(self, x):
        if s["phase"] == "normal":
            torch.set_flush_denormal(False)  # harden's entry points turn it on: the experiment needs it off
        s["n"] += len(x)
        if s["n"] >= WINDOW:
            now = time.perf_counter()
            rate, s["n"], s["t"] = s["n"] / (now - s["t"]), 0, now
            if s["phase"] == "normal":
                s["best"] = max(s["best"], rate)
            log.write(json.dumps({"t": time.strftime("%H:%M:%S"), "img_s": round(rate, 1), "phase": s["phase"]}) + "\n")
            log.flush()
            if s["phase"] == "normal" and rate < 0.4 * s["best"]:
                s["phase"], s["windows"] = "ftz", 0
                torch.set_flush_denormal(True)
            elif s["phase"] in NEXT:
                s["windows"] += 1
                if s["windows"] >= 4:
                    (s["phase"], on), s["windows"] = NEXT[s["phase"]], 0
                    torch.set_flush_denormal(on)
        return real(self, x)

    Classifier.forward = forward
    r20 = model_r20(argparse.Namespace(), torch.device("cpu"), args.r20)
    res = harden.fix(r20, harden.load_data(args.data), data_frac=0.1, device="cpu", report=False, base_name="r20")
    log.write(json.dumps({"done": True, "epochs": len(res.history)}) + "\n")


if __name__ == "__main__":
    main()
