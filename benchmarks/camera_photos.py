"""Training decodes of camera-sized JPEGs: the JPEG decoder's own reduced-scale decode (transforms._Channels.draft)
against full-size decoding, through harden's loader at the model's size.

    python benchmarks/camera_photos.py [--images 48] [--size 224] [--workers 2]

Writes synthetic 12 MP photographs (4000 x 3000, JPEG quality 90) to a temporary folder, then decodes them twice
with the training transform (random resized crop + flip), once as harden does and once with the draft turned off,
interleaved over three rounds; prints the images/s of each and their ratio."""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from harden.data.loader import decode_batches
from harden.data.sources import list_class_folders
from harden.data.transforms import Preprocess


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos" / "c"
        folder.mkdir(parents=True)
        for i in range(args.images):  # smooth content, as a photograph has, so the JPEG is camera-like in size
            small = rng.integers(0, 255, (60, 80, 3), np.uint8)
            Image.fromarray(small).resize((4000, 3000), Image.BICUBIC).save(folder / f"{i}.jpg", quality=90)
        listing = list_class_folders(Path(tmp) / "photos")
        drafted = Preprocess(3, (args.size, args.size)).train_transform()
        full = Preprocess(3, (args.size, args.size)).train_transform()
        full.draft_side = None
        batches = [np.arange(i, min(i + 16, args.images)) for i in range(0, args.images, 16)]
        rates: dict[str, list[float]] = {"draft": [], "full": []}
        for _ in range(3):
            for name, tf in (("draft", drafted), ("full", full)):
                t = time.perf_counter()
                n = sum(len(got) for _, _, got, _ in decode_batches(listing, batches, tf, args.workers, False, seed=0))
                rates[name].append(n / (time.perf_counter() - t))
    best = {k: max(v) for k, v in rates.items()}
    print(f"12 MP JPEGs -> training crops at {args.size} px, {args.workers} workers, best of 3: "
          f"draft {best['draft']:.1f} img/s, full decode {best['full']:.1f} img/s, "
          f"ratio {best['draft'] / best['full']:.2f}x")


if __name__ == "__main__":
    main()
