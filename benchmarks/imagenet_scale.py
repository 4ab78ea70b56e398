"""ImageNet-scale costs on this machine, written as JSON rows (one per line) as they finish:

- pipeline: images/s of decoding + the model's evaluation transform at 224 px with 0, 1, 2 workers, against the
  decode floor (PIL open + decode only, one process) and decode + transform in one process;
- floor: a 224-px ResNet-50's (timm, 1000 classes) forward+backward passes/s (input gradient, frozen weights) and
  training passes/s (weight gradients + SGD step) at the benchmark batch;
- eval: PGD-10 (no early exit) images/s and its ratio to the floor (10 passes per image);
- fix: the default recipe's (at) training images/s for one epoch and its ratio to the passes it makes;
- report: each of the six attacks' seconds and peak memory on 20 images (JSMA, which the default set leaves out
  above 64 px, on --jsma-images), then the whole default report (masking checks and seed 004's metrics included).

The weights are random (no ImageNet weights can be downloaded here); the labels are set to the model's own clean
predictions so that every image is attacked (a random network's accuracy on real labels is ~0, which would make the
attacks skip every image). Images are synthetic photographs (smooth colour fields with noise, JPEG, mixed sizes
around ImageNet's average 400 x 350).

    python benchmarks/imagenet_scale.py --out bench-out/imagenet_scale.jsonl [--arch resnet50] [--images 20]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import harden  # noqa: E402
from harden.data import DataTarget, load_data  # noqa: E402
from harden.runtime import frozen, set_quiet  # noqa: E402
from speed import pass_costs  # noqa: E402  (benchmarks/ is on the path when run as a script)


def rss_tree_mb(pid: int, field: str = "Rss") -> float:
    """Memory of a process and all its descendants (data-loader workers), MB: 'Rss' (resident; pages shared by
    forked workers count once per process) or 'Pss' (proportional: shared pages split among their sharers, so the
    sum is the tree's real footprint)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


class PeakMemory:
    """Samples the process tree's resident memory every 50 ms."""

    def __enter__(self):
        self.peak, self.stop = rss_tree_mb(os.getpid()), False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_tree_mb(os.getpid()))
            time.sleep(0.05)

    def __exit__(self, *a):
        self.stop = True
        self.t.join()


def make_photos(root: Path, classes: list[str], per_class: int, seed: int = 0, sizes=(250, 500)) -> None:
    from test_files import photo  # the tests' synthetic photograph
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = rng.integers(sizes[0], sizes[1], 2)
                Image.fromarray(photo(rng, int(h), int(w))).save(d / f"{i}.jpg", quality=90)


def write(out: Path, row: dict) -> None:
    row = {"date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, "
           f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads", **row}
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-out/imagenet_scale.jsonl")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--jsma-images", type=int, default=1)
    ap.add_argument("--data", default="bench-out/photos224")
    ap.add_argument("--only", default="pipeline,floor,eval,fix,report")
    args = ap.parse_args()
    set_quiet(True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    root = Path(args.data)
    synsets = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041",
               "n01514668", "n01514859", "n01518878"]
    if not (root / "val").is_dir():
        make_photos(root, synsets, 20)
    torch.manual_seed(0)
    model = harden.create_model(args.arch, 1000, 3, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                interpolation="bicubic", crop_pct=0.95).eval()

    if "pipeline" in only:
        from PIL import Image
        data = load_data(root, DataTarget.for_model(model, workers=0))
        lst = data.listing("test")
        idx = np.arange(len(lst))
        t = time.perf_counter()
        for i in idx:
            Image.open(io.BytesIO(lst.read_bytes(i))).load()
        floor = len(idx) / (time.perf_counter() - t)
        tf = data.preprocess.eval_transform()
        t = time.perf_counter()
        for i in idx:
            im = Image.open(io.BytesIO(lst.read_bytes(i)))
            im.load()
            tf(im)
        one = len(idx) / (time.perf_counter() - t)
        write(out, {"row": "pipeline floor", "images": len(idx), "decode_only_img_s": round(floor, 1),
                    "decode_transform_one_process_img_s": round(one, 1)})
        for workers in (0, 1, 2):
            d = load_data(root, DataTarget.for_model(model, workers=workers))
            t = time.perf_counter()
            d.images("test", idx)
            rate = len(idx) / (time.perf_counter() - t)
            write(out, {"row": "pipeline", "workers": workers, "img_s": round(rate, 1),
                        "vs_decode_transform_floor": round(rate / one, 2)})

    data = load_data(root, DataTarget.for_model(model, workers=1))
    x, _ = data.images("test", np.arange(args.batch))
    with torch.no_grad():
        y = model(x).argmax(1)
    floor_pass = None
    if only & {"floor", "eval", "fix"}:
        # the pass costs every speed benchmark uses (benchmarks/speed.py), on a fresh random network for training
        floor_pass = 1 / pass_costs(model, tuple(x.shape[1:]), len(x), x.device, 3, train=False)["attack_step"]
        m2 = harden.create_model(args.arch, 1000, 3, (224, 224))
        train_pass = 1 / pass_costs(m2, tuple(x.shape[1:]), len(x), x.device, 3)["train_step"]
        write(out, {"row": "floor", "arch": args.arch, "batch": len(x), "fwd_bwd_input_grad_img_s": round(floor_pass, 2),
                    "train_step_img_s": round(train_pass, 2)})
    if "eval" in only:
        from harden.attacks import build_attack
        atk = build_attack("pgd:steps=10,early_stop=false")
        with frozen(model):
            t = time.perf_counter()
            atk.run(model, x, y, generator=torch.Generator().manual_seed(0))
            rate = len(x) / (time.perf_counter() - t)
        write(out, {"row": "eval pgd-10", "arch": args.arch, "batch": len(x), "img_s": round(rate, 3),
                    "vs_floor": round(rate * 10 / floor_pass, 2)})
    if "fix" in only:
        # harden's training PGD leaves a misclassified image at its clean point, and a random network misclassifies
        # nearly every real label: the list labels each image with the model's own prediction, so every image is
        # attacked (the 'acc' column: the share of training crops it still classifies as labelled)
        base = out.parent / f"{args.arch}-random.safetensors"
        if base.exists():
            base.unlink()
        harden.save(model, base)
        rows = []
        for split in ("train", "test"):
            lst = data.listing(split)
            xs, _ = data.images(split, np.arange(len(lst)))
            with torch.no_grad():
                pred = torch.cat([model(xs[i:i + 16]).argmax(1) for i in range(0, len(xs), 16)])
            part = "train" if split == "train" else "val"
            rows += [f"{os.path.abspath(lst.location(i))},{int(p)},{part}\n" for i, p in enumerate(pred)]
        (out.parent / "photos224-own-labels.csv").write_text("path,label,split\n" + "".join(rows))
        result = harden.fix(base, str(out.parent / "photos224-own-labels.csv"), sets=["val_frac=0"], data_frac=0.5,
                            epochs=1, batch_size=args.batch, device="cpu", report=False, data_target={"workers": 2})
        n = result.model.spec.extra["subset"]["n"]
        params = result.config["params"]
        write(out, {"row": "fix at (1 epoch)", "arch": args.arch, "images": n, "seconds": round(result.train_seconds, 1),
                    "img_s": round(n / result.train_seconds, 3), "attack": params.get("attack"),
                    "attack_steps": int(params.get("steps", 0)), "acc": round(result.history[-1]["acc"], 3),
                    "floor_img_s": round(1 / (int(params.get("steps", 0)) / floor_pass + 1 / train_pass), 3)})
    if "report" in only:
        from harden.attacks import DEFAULT_ATTACKS
        ds = load_data(root, DataTarget.for_model(model, workers=1))
        idx = ds.eval_indices(args.images, 0)
        xs, _ = ds.images("test", idx)
        with torch.no_grad():
            preds = torch.cat([model(xs[i:i + 8]).argmax(1) for i in range(0, len(xs), 8)])
        from harden.data import ImageData  # the model's predictions as labels: every image is attacked
        u8 = (xs * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        arr = ImageData(u8, preds.numpy(), u8, preds.numpy(), f"{root} (labels: the model's predictions)", 1000)
        def one(name, n):
            with PeakMemory() as mem:
                rep = harden.evaluate(model, arr, attacks=[name], n=n, metrics=False, masking_checks=False,
                                      batch_size=args.batch, device="cpu")
            a = rep.attacks[0]
            write(out, {"row": "report attack", "arch": args.arch, "attack": name, "images": rep.n,
                        "seconds": round(a.seconds, 1), "robust": a.robust_accuracy, "peak_rss_mb": round(mem.peak)})
        for name in DEFAULT_ATTACKS:
            if name != "jsma":
                one(name, args.images)
        t = time.perf_counter()
        with PeakMemory() as mem:
            rep = harden.evaluate(model, arr, n=args.images, batch_size=args.batch, device="cpu")
        write(out, {"row": "default report", "arch": args.arch, "images": rep.n, "attacks": [a.name for a in rep.attacks],
                    "seconds": round(time.perf_counter() - t, 1), "notes": rep.notes,
                    "attack_seconds": round(sum(a.seconds for a in rep.attacks), 1), "peak_rss_mb": round(mem.peak)})
        one("jsma", args.jsma_images)  # left out of the default set at this size: its cost, measured last


if __name__ == "__main__":
    main()
