"""Hugging Face parquet against the same images as a folder: what reading in place costs (harden/data/tables.py).

    python benchmarks/parquet_read.py [--images 2000] [--size 224] [--workers 2]

Writes ImageNet-sized synthetic photographs (shorter side 300-500 px, JPEG quality 90) as class folders and as one
parquet file the way Hugging Face writes image datasets (100 rows per row group, the Image feature's struct), then
times, for each: listing the split; the evaluation transform at --size over a seeded 10% sample (the parquet's time
includes its spill pass over the row groups holding the sample); and a training epoch over that 10% in random order
(the training transform), read from the spill file. Prints one row per step with images/s and the spill's size."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from harden.data import DataTarget, load_data, stratified_subset
from harden.data.loader import decode_batches
from harden.data.transforms import Preprocess


def write(root: Path, n: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    cells, labels = [], []
    for i in range(n):
        c = i % classes
        h, w = (int(v) for v in rng.integers(300, 500, 2))
        small = rng.integers(0, 255, (h // 16, w // 16, 3), np.uint8)  # smooth content: photograph-like sizes
        f = root / "folder" / f"c{c}" / f"{i:06d}.jpg"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(f, quality=90)
        cells.append({"bytes": f.read_bytes(), "path": None})
        labels.append(c)
    meta = {"info": {"features": {"image": {"_type": "Image"},
                                  "label": {"names": [f"c{c}" for c in range(classes)], "_type": "ClassLabel"}}}}
    table = pa.table({"image": pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "label": pa.array(labels, pa.int64())}).replace_schema_metadata(
        {b"huggingface": json.dumps(meta).encode()})
    (root / "hf" / "data").mkdir(parents=True)
    pq.write_table(table, root / "hf" / "data" / "test-00000-of-00001.parquet", row_group_size=100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = ap.parse_args()
    pre = Preprocess(3, (args.size, args.size), "bicubic", 0.875, "center")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, args.images)
        mb = (root / "hf" / "data" / "test-00000-of-00001.parquet").stat().st_size / 2**20
        print(f"{args.images} JPEGs, parquet {mb:.0f} MiB; {args.workers} workers; {args.size} px")
        for name in ("folder", "hf"):
            t = time.perf_counter()
            data = load_data(root / name, DataTarget(pre, 10, workers=args.workers))
            y = data.y_test
            listed = time.perf_counter() - t
            idx = stratified_subset(y, 0.1, 0)
            t = time.perf_counter()
            x, _ = data.images("test", idx)
            evaluated = time.perf_counter() - t
            listing = data.listing("test")
            rng = np.random.default_rng(0)
            order = rng.permutation(idx)
            batches = [order[i:i + 32] for i in range(0, len(order), 32)]
            t = time.perf_counter()
            got = sum(len(b[2]) for b in decode_batches(listing, batches, pre.train_transform(), args.workers, False,
                                                        seed=0))
            epoch = time.perf_counter() - t
            spill = listing.store.spill_path if listing.store is not None else None
            extra = f", spill {os.path.getsize(spill) / 2**20:.1f} MiB" if spill else ""
            print(f"{name:6s}: listing {listed:.2f} s; eval transform {len(idx) / evaluated:.1f} img/s "
                  f"({len(idx)} images{', spill pass included' if spill else ''}); training epoch "
                  f"{got / epoch:.1f} img/s{extra}")


if __name__ == "__main__":
    main()
