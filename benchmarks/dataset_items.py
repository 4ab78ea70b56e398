"""How fast training reads a torch Dataset's items (data/dataset_objects.py item_batches): an ImageFolder of JPEG
photographs (400 x 300, written here with a seed) through torchvision's training transform (RandomResizedCrop 224,
flip, ToTensor, Normalize), read in batches of 32 by 1 and then by N worker processes.

    python benchmarks/dataset_items.py --dir /tmp/dataset-items --images 400 --workers 1 2
"""
import argparse
import os
import time

import numpy as np
from PIL import Image
from torchvision import datasets
from torchvision import transforms as T

from harden.data import load_data
from harden.data.dataset_objects import item_batches

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photos(folder: str, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        os.makedirs(f"{folder}/c{i % 4}", exist_ok=True)
        path = f"{folder}/c{i % 4}/{i}.jpg"
        if not os.path.exists(path):
            Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).save(path, quality=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/dataset-items")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    photos(a.dir, a.images)
    train = datasets.ImageFolder(a.dir, T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                                                   T.Normalize(MEAN, STD)]))
    test = datasets.ImageFolder(a.dir, T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)]))
    rows = load_data((train, test)).x_train
    batches = [np.arange(i, min(i + a.batch, a.images)) for i in range(0, a.images, a.batch)]
    for w in a.workers:
        t = time.perf_counter()
        n = sum(len(b) for b in item_batches(rows, batches, 0, workers=w))
        print(f"workers {w}: {n / (time.perf_counter() - t):.0f} images/s ({n} images, batch {a.batch})")


if __name__ == "__main__":
    main()
