"""What asking the model how numbered class folders are ordered costs (harden/data/class_order.py): N numbered
folders of 300x400 JPEGs and a 224-px timm ResNet-50 with random weights, so that its answers are at chance and
every chunk of the sample is read (the worst case; a model that knows its classes stops after the first 32).

    python benchmarks/numbered_classes.py --classes 12 --per-class 30 --threads 2
"""
import argparse
import dataclasses
import os
import time

import numpy as np
import torch
from PIL import Image

import harden
from harden.data import DataTarget, load_data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=12)
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default="bench-out/numbered")
    a = ap.parse_args()
    root = f"{a.root}-{a.classes}x{a.per_class}"
    if not os.path.isdir(root):
        rng = np.random.default_rng(0)
        for c in range(a.classes):
            os.makedirs(f"{root}/{c}", exist_ok=True)
            for k in range(a.per_class):
                Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(f"{root}/{c}/{k}.jpg",
                                                                                          quality=85)
    torch.set_num_threads(a.threads)
    model = harden.create_model("resnet50", a.classes, 3, (224, 224))
    for ask in (False, True):
        target = DataTarget.for_model(model)
        if not ask:
            target = dataclasses.replace(target, predict=None)
        t = time.perf_counter()
        data = load_data(root, target)
        print(f"{'asked' if ask else 'not asked'}: {time.perf_counter() - t:.1f} s; {data.class_note}")


if __name__ == "__main__":
    main()
