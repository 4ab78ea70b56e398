"""Carry an image .npz to the lent GPU machine in pieces small enough for its 64 MiB-a-call limit, losslessly.

The device tool carries at most 64 MiB a call, and CIFAR-10's training split is 153 MB of pixels (LZMA: ~116 MB).
A plane predictor (each pixel minus its left and upper neighbours plus the upper-left one, mod 256, per channel) makes
the residuals LZMA packs to ~66% of the raw bytes (~102 MB), which then fit in two calls; files written on the machine
in the first call stay there while it is warm.

    python benchmarks/gpu_pack.py pack ../shared/data/cifar10.npz .gpu-data/cifar --chunks 2 --n-test 1000
    python benchmarks/gpu_pack.py unpack .gpu-data/cifar /tmp/cifar10.npz      # on the machine, with every chunk

`--n-test` keeps the first n test images (harden evaluate reads the first n). Unpack checks every array's sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
from pathlib import Path

import numpy as np


def residuals(x: np.ndarray) -> np.ndarray:
    p = x.astype(np.int16)
    return (np.diff(np.diff(p, axis=2, prepend=0), axis=1, prepend=0) % 256).astype(np.uint8)


def restore(r: np.ndarray) -> np.ndarray:
    return (np.cumsum(np.cumsum(r.astype(np.int32), axis=1), axis=2) % 256).astype(np.uint8)


def pack(src: str, out: str, chunks: int, n_test: int | None) -> None:
    d = np.load(src)
    arrays = {k: d[k] for k in d.files}
    for k in [k for k in arrays if k.endswith("test") or k == "test_orig_index"]:
        arrays[k] = arrays[k][:n_test]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": hashlib.sha256(v.tobytes()).hexdigest()}
            for k, v in arrays.items()}
    small = {k: v for k, v in arrays.items() if not k.startswith("x_")}
    np.savez_compressed(folder / "labels.npz", **small)
    parts = []
    for k in ("x_train", "x_test"):
        x = arrays[k]
        for i, sl in enumerate(np.array_split(np.arange(len(x)), chunks if k == "x_train" else 1)):
            name = f"{k}.{i}.xz"
            (folder / name).write_bytes(lzma.compress(residuals(x[sl]).tobytes(), preset=9 | lzma.PRESET_EXTREME))
            parts.append({"key": k, "file": name, "n": len(sl)})
            print(name, (folder / name).stat().st_size, flush=True)
    (folder / "meta.json").write_text(json.dumps({"arrays": meta, "parts": parts}, indent=1))


def unpack(folders: list[str], out: str) -> None:
    files = {p.name: p for f in folders for p in Path(f).iterdir()}
    meta = json.loads(files["meta.json"].read_text())
    arrays = dict(np.load(files["labels.npz"]))
    for k in ("x_train", "x_test"):
        shape = meta["arrays"][k]["shape"]
        pieces = [np.frombuffer(lzma.decompress(files[p["file"]].read_bytes()), np.uint8).reshape(p["n"], *shape[1:])
                  for p in meta["parts"] if p["key"] == k]
        arrays[k] = restore(np.concatenate(pieces))
    for k, m in meta["arrays"].items():
        if hashlib.sha256(arrays[k].tobytes()).hexdigest() != m["sha256"]:
            raise SystemExit(f"{k}: sha256 differs after unpacking")
    np.savez(out, **arrays)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--n-test", type=int, default=None)
    u = sub.add_parser("unpack")
    u.add_argument("folders", nargs="+")
    u.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.src, a.out, a.chunks, a.n_test)
    else:
        unpack(a.folders, a.out)


if __name__ == "__main__":
    main()
