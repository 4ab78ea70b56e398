"""ImageNet's tars as downloaded, read in place (harden/data/imagenet_archives.py), at a size that shows how listing
scales: CLASSES per-class tars of PER images inside ILSVRC2012_img_train.tar, VAL images in ILSVRC2012_img_val.tar,
and a development kit. Every image is the same small JPEG (listing reads headers; decoding cost is per image).

Prints one JSON line: seconds to load and list the validation tar (what `eval` lists: the ground truth, the class
names from the training tar's headers, the validation tar's headers), to list the training tar of tars, to decode
256 training images from their byte ranges (main process), the peak resident memory, and the training tar's size.

    python benchmarks/imagenet_tars.py --root bench-out/imagenet_tars --classes 1000 --per 100 --val 10000
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tarfile
import time
from pathlib import Path

import numpy as np


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make(root: Path, classes: int, per: int, val: int) -> list[str]:
    from PIL import Image
    from scipy.io import savemat
    root.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    from timm.data import ImageNetInfo
    wnids = ImageNetInfo("imagenet-1k").label_names()[:classes]  # real synsets: they map onto a 1000-class head
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as outer:
        for w in wnids:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for j in range(per):
                    _add(tar, f"{w}_{j}.JPEG", jpeg)
            _add(outer, f"{w}.tar", inner.getvalue())
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in range(1, val + 1):
            _add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg)
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O"),
              ("wordnet_height", "O"), ("num_train_images", "O")]
    rows = np.array([(i + 1, w, w, "", 0, 0, per) for i, w in enumerate(wnids)], dtype=fields).reshape(-1, 1)
    kit = root / "kit" / "ILSVRC2012_devkit_t12" / "data"
    kit.mkdir(parents=True, exist_ok=True)
    savemat(str(kit / "meta.mat"), {"synsets": rows})
    ids = np.random.default_rng(1).integers(1, classes + 1, val)
    (kit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in ids))
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(root / "kit" / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    return wnids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--classes", type=int, default=1000, help="at most 1000 (ImageNet's synsets)")
    ap.add_argument("--per", type=int, default=100)
    ap.add_argument("--val", type=int, default=10000)
    a = ap.parse_args()
    if not (a.root / "ILSVRC2012_img_val.tar").is_file():
        t = time.perf_counter()
        make(a.root, a.classes, a.per, a.val)
        print(f"made in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    from harden.data import DataTarget, load_data
    from harden.models import create_model
    target = DataTarget.for_model(create_model("cnn-small", 1000, 3, (64, 64), (0.5,), (0.25,)), workers=0)
    row = {"classes": a.classes, "train_images": a.classes * a.per, "val_images": a.val,
           "train_tar_mb": round((a.root / "ILSVRC2012_img_train.tar").stat().st_size / 2**20, 1)}
    t = time.perf_counter()
    data = load_data(a.root, target)  # as eval and fix load it (a model's classes and transform)
    val = data.listing("test")
    row["list_val_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    train = data.listing("train")
    row["list_train_s"] = round(time.perf_counter() - t, 2)
    assert len(val) == a.val and len(train) == a.classes * a.per
    idx = np.sort(np.random.default_rng(0).choice(len(train), min(256, len(train)), replace=False))
    t = time.perf_counter()
    x, _ = data.images("train", idx)
    row["decode_256_train_s"] = round(time.perf_counter() - t, 2)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
