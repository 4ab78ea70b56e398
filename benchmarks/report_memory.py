"""Peak host memory of a report on n in-memory images at 224 px, against the images' own fp32 size, written as one
JSON row. The model is a small convolutional network (the attack's own activations stay small), so what the peak
holds beyond the process's baseline is the report's copies of the images: the images themselves (fp32, n x 0.6 MB),
and whatever an attack keeps of its adversarial inputs while it runs.

    python benchmarks/report_memory.py --n 1000 [--attack fgsm] [--checks] [--out bench-out/report_memory.jsonl]

With --zero-gradients ARCH (a timm name) it measures the zero-gradient check alone instead: its peak on n images of
that model (random weights) at --batch-size B (0: all n at once, as the check ran before it was batched).

    python benchmarks/report_memory.py --zero-gradients resnet50 --n 200 --batch-size 16

Each run is one process (ru_maxrss is a process's peak). On CPU the device is the host; on CUDA the same copies
live in the card's memory (torch.cuda.max_memory_allocated is written too there).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import nn

import harden
from harden.data import load_data
from harden.runtime import set_quiet


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--attack", default="fgsm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checks", action="store_true", help="with the masking checks and seed 004's metrics")
    ap.add_argument("--out", default=None)
    ap.add_argument("--zero-gradients", metavar="ARCH", default=None)
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()
    set_quiet(True)
    row = zero_gradient_row(args) if args.zero_gradients else report_row(args)
    row.update({"torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                "date": str(date.today()),
                "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                         cwd=Path(__file__).parent).stdout.strip()})
    print(json.dumps(row))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


def zero_gradient_row(args) -> dict:
    import timm

    from harden.report.checks import zero_gradients
    from harden.runtime import frozen
    model = timm.create_model(args.zero_gradients, pretrained=False, num_classes=1000).eval()
    x = torch.rand(args.n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    with frozen(model), torch.no_grad():
        y = torch.cat([model(x[i:i + 16]).argmax(1) for i in range(0, args.n, 16)])
    before = _rss_mb()
    with frozen(model):
        zero_gradients(model, x, y, torch.ones_like(y, dtype=torch.bool), args.batch_size or None,
                       torch.device(args.device))
    return {"what": "zero-gradient check peak memory", "arch": args.zero_gradients, "n": args.n, "size": args.size,
            "batch_size": args.batch_size or args.n, "rss_before_mb": round(before, 1),
            "rss_peak_mb": round(_rss_mb(), 1), "peak_over_before_mb": round(_rss_mb() - before, 1)}


def report_row(args) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8)
    with torch.no_grad():  # the model's own predictions as labels: every image is attacked
        y = torch.cat([model(torch.from_numpy(x[i:i + 100]).permute(0, 3, 1, 2).float() / 255).argmax(1)
                       for i in range(0, args.n, 100)]).numpy()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "images.npz"
        np.savez(path, x_train=x[:10], y_train=y[:10], x_test=x, y_test=y)
        del x
        data = load_data(str(path))
        before = _rss_mb()
        rep = harden.evaluate(model, data, n=args.n, attacks=[args.attack], device=args.device, metrics=args.checks,
                              masking_checks=args.checks, batch_size=args.batch_size)
    images_mb = args.n * 3 * args.size * args.size * 4 / 2**20
    row = {"what": "report peak memory", "n": args.n, "size": args.size, "attack": args.attack, "checks": args.checks,
           "device": args.device, "images_fp32_mb": round(images_mb, 1), "rss_before_mb": round(before, 1),
           "rss_peak_mb": round(_rss_mb(), 1), "peak_over_before_in_images": round((_rss_mb() - before) / images_mb, 2),
           "robust_accuracy": rep.attacks[0].robust_accuracy}
    if args.device.startswith("cuda"):
        row["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


if __name__ == "__main__":
    sys.exit(main())
