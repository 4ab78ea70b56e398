"""Hugging Face parquet against the same images as a folder: what reading in place costs (harden/data/tables.py).

    python benchmarks/parquet_read.py [--images 2000] [--size 224] [--workers 2]

Writes ImageNet-sized synthetic photographs (shorter side 300-500 px, JPEG quality 90) as class folders and as one
parquet file the way Hugging Face writes image datasets (100 rows per row group, the Image feature's struct), then
times, for each: listing the split; the evaluation transform at --size over a seeded 10% sample (the parquet's time
includes its spill pass over the row groups holding the sample); and a training epoch over that 10% in random order
(the training transform), read from the spill file; then the spill pass over every row. Best of three interleaved
rounds."""
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
        rows: dict[str, dict[str, list[float]]] = {"folder": {}, "hf": {}}
        for _ in range(3):  # interleaved rounds, best of each: page cache and worker start-up even out
            for name in ("folder", "hf"):
                r = rows[name]
                t = time.perf_counter()
                data = load_data(root / name, DataTarget(pre, 10, workers=args.workers))
                y = data.y_test
                r.setdefault("listing s", []).append(time.perf_counter() - t)
                idx = stratified_subset(y, 0.1, 0)
                listing = data.listing("test")
                t = time.perf_counter()
                listing.prepare(idx)  # the parquet's spill pass (nothing for a folder)
                r.setdefault("spill pass s", []).append(time.perf_counter() - t)
                t = time.perf_counter()
                data.images("test", idx)
                r.setdefault("eval img/s", []).append(len(idx) / (time.perf_counter() - t))
                order = np.random.default_rng(0).permutation(idx)
                batches = [order[i:i + 32] for i in range(0, len(order), 32)]
                t = time.perf_counter()
                got = sum(len(b[2]) for b in decode_batches(listing, batches, pre.train_transform(), args.workers,
                                                            False, seed=0))
                r.setdefault("train img/s", []).append(got / (time.perf_counter() - t))
                spill = listing.store.spill_path if listing.store is not None else None
                r["spill MiB"] = [os.path.getsize(spill) / 2**20 if spill else 0.0]
        whole = load_data(root / "hf", DataTarget(pre, 10, workers=args.workers)).listing("test")
        t = time.perf_counter()
        whole.prepare(np.arange(len(whole)))
        took = time.perf_counter() - t
        print(f"spill pass over every row: {len(whole) / took:.0f} rows/s, "
              f"{os.path.getsize(whole.store.spill_path) / 2**20 / took:.0f} MiB/s")
        for name, r in rows.items():
            best = {k: (max(v) if k.endswith("img/s") else min(v)) for k, v in r.items()}
            print(f"{name:6s}: " + "; ".join(f"{k} {v:.2f}" for k, v in best.items()) + f" ({len(idx)} images)")


if __name__ == "__main__":
    main()
