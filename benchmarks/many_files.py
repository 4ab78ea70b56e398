"""A folder of many small JPEGs of mixed sizes (default 100,000 in 100 class folders, 90% train / 10% val):

- `harden eval --num-images 200` as a user runs it (a subprocess): seconds until the attacks start (listing the
  val split, sampling, decoding the 200) and the whole run, with the process tree's peak resident memory;
- `harden.fix --data-frac 0.01` (one epoch, no report): how many files were decoded against the subset's size, and
  whether any file of the other split was read (counted in-process, decoding in the main process).

Rows are JSON lines, written as they finish.

    python benchmarks/many_files.py --root bench-out/many --files 100000 --out bench-out/many_files.jsonl
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_scale import rss_tree_mb, write  # noqa: E402  (one row format for both)


def make(root: Path, files: int, classes: int, seed: int = 0) -> float:
    from PIL import Image
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    per = files // classes
    for c in range(classes):
        for split, count in (("train", per - per // 10), ("val", per // 10)):
            d = root / split / f"class{c:03d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = rng.integers(24, 72, 2)
                base = rng.integers(0, 255, 3)
                img = np.clip(base + rng.normal(0, 30, (int(h), int(w), 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.jpg", quality=85)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="bench-out/many")
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--out", default="bench-out/many_files.jsonl")
    args = ap.parse_args()
    root, out = Path(args.root), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (root / "val").is_dir():
        secs = make(root, args.files, args.classes)
        write(out, {"row": "generated", "files": args.files, "seconds": round(secs, 1)})
    import harden
    from harden.runtime import set_quiet
    set_quiet(True)
    model = harden.create_model("cifar-conv", args.classes, 3, (32, 32), (0.5,), (0.25,))
    ckpt = root.parent / "many-files-model.safetensors"
    if not ckpt.exists():
        harden.save(model, ckpt)

    # the CLI as a user runs it; "starts attacking" is read from its progress lines
    cmd = [sys.executable, "-m", "harden", "eval", str(ckpt), "--data", str(root), "--num-images", "200",
           "--attack", "pgd", "--no-metrics", "--no-masking-checks"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env={**os.environ, "COLUMNS": "200"})
    peak = [0.0, 0.0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], rss_tree_mb(proc.pid))
            peak[1] = max(peak[1], rss_tree_mb(proc.pid, "Pss"))
            time.sleep(0.05)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    started = None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if started is None and line.lstrip().startswith("pgd"):
            started = time.perf_counter() - t0
    proc.wait()
    th.join()
    write(out, {"row": "eval --num-images 200", "files": args.files, "exit": proc.returncode,
                "seconds_to_first_attack": round(started, 1) if started else None,
                "seconds_total": round(time.perf_counter() - t0, 1), "peak_rss_mb_process_tree": round(peak[0]),
                "peak_pss_mb_process_tree": round(peak[1]),
                "command": " ".join(cmd[1:])})
    if proc.returncode != 0:
        print("".join(lines[-30:]))

    # in-process: what eval does before its first attack (list val, sample 200, decode them), then fix's counts
    from harden.data import DataTarget, load_data
    from harden.data import sources
    t = time.perf_counter()
    ev = load_data(root, DataTarget.for_model(model))
    idx = ev.eval_indices(200, 0)
    ev.images("test", idx)
    write(out, {"row": "eval before its first attack (in-process)", "val_files": ev.n_test,
                "seconds": round(time.perf_counter() - t, 2), "train_split_listed": "train" in ev._cache})
    decoded = []
    original = sources.Listing.read_bytes

    def counting(self, i):
        decoded.append(self.location(i))
        return original(self, i)
    sources.Listing.read_bytes = counting
    t = time.perf_counter()
    data = load_data(root, DataTarget.for_model(model, workers=0))
    n_train = data.n_train
    list_secs = time.perf_counter() - t
    result = harden.fix(ckpt, data, sets=["val_frac=0"], data_frac=0.01, epochs=1, device="cpu", report=False)
    n = result.model.spec.extra["subset"]["n"]
    write(out, {"row": "fix --data-frac 0.01 (1 epoch, no report)", "train_files": n_train,
                "listing_seconds": round(list_secs, 1), "subset": n, "decoded": len(decoded),
                "distinct_decoded": len(set(decoded)), "val_files_decoded": sum("/val/" in p for p in decoded),
                "train_seconds": round(result.train_seconds, 1)})


if __name__ == "__main__":
    main()
