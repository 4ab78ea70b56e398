"""Speed against the floor, on whatever device it runs on (the lent GPU's one call, or this machine's CPU): JSON rows
appended to --out as each finishes, a Markdown summary at the end.

- floor: forward+backward passes/s (input gradient, frozen weights: what an attack step costs), forward passes/s, and
  training passes/s (weight gradients + the optimizer step) of ResNet-20 at 32 px and ResNet-50 at 224 px;
- attacks: each L-inf attack's images/s on ResNet-20 and the ratio of its floor (the passes it made x the measured
  pass costs) to its time; PGD-10 without early stop on ResNet-50 at 224 px;
- autoattack: harden's AutoAttack (standard) and the original (`pyautoattack`) on the same images, both times and
  both robust accuracies;
- train: `harden fix` (the default recipe, `at`) on a fraction of the training split, its training time against the
  floor of the passes it made (every pass through the model counted by kind), the part of it the loop waited for its
  batches, and with --eval its white-box AutoAttack; validation is counted with the rest;
- loader: harden's file loader at 224 px (synthetic JPEG photographs, the machine's cores as workers) against the
  ResNet-50 training floor.

    python benchmarks/speed.py --data ../shared/data/cifar10.npz --r20 ../shared/models/resnet20_cifar10.th \\
        --hardened bench-out/unl/cifar10u.safetensors --n 1000 --out bench-out/speed.jsonl
    python benchmarks/speed.py --tiny --out /tmp/speed.jsonl      # seconds, random weights: the suite runs this

Without --r20 / --hardened the models have random weights and the labels are their own predictions (so every image
is attacked). Without --data the images are random pixels (and `train` uses sklearn's digits).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import harden  # noqa: E402
from harden.allocator import keep_freed_memory  # noqa: E402
from harden.attacks import build_attack, parse_number  # noqa: E402
from harden.attacks.row_streams import RowStreams  # noqa: E402
from harden.compiling import compiled  # noqa: E402
from harden.device_defaults import attack_batch_size  # noqa: E402
from harden.data import to_tensor  # noqa: E402
from harden.models.registry import Classifier  # noqa: E402
from harden.runtime import frozen, resolve_device, set_quiet  # noqa: E402

ARCHS = Path(__file__).parent / "archs.py"
SECTIONS = ("floor", "attacks", "autoattack", "train", "loader")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, reps: int = 1) -> float:
    """Seconds per call of fn, after one warm-up call."""
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / reps


def pass_costs(model: Classifier, shape: tuple[int, ...], batch: int, device: torch.device, reps: int,
               train: bool = True) -> dict:
    """Seconds per image of: an attack step (forward + input gradient, frozen weights, eval mode), a forward, and
    (with `train`) a training step (forward + weight gradients + Adam, train mode), at `batch`."""
    x = torch.rand(batch, *shape, device=device)
    with frozen(model):
        xg = x.clone().requires_grad_(True)
        t_in = timed(lambda: torch.autograd.grad(model(xg).sum(), xg), device, reps)
        with torch.no_grad():
            t_fwd = timed(lambda: model(x), device, reps)
    costs = {"attack_step": t_in / batch, "forward": t_fwd / batch}
    if not train:
        return costs
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)

    def train_step():
        opt.zero_grad(set_to_none=True)
        model(x).logsumexp(1).mean().backward()
        opt.step()
    t_train = timed(train_step, device, reps)
    model.load_state_dict(state)
    model.eval()
    return {**costs, "train_step": t_train / batch}


def new_shape_costs(model: Classifier, shape: tuple[int, ...], batch: int, device: torch.device) -> dict:
    """An attack step at batch sizes this process has not run before, timed at its first call and again: what an
    early-stopping attack pays once for each new size its shrinking batch takes (the card's per-shape preparation),
    against the steady cost, and the steady cost per image at each size (a small batch of small images may cost its
    launches rather than its size)."""
    sizes = sorted({max(1, batch - 3), max(1, batch * 3 // 4 - 5), max(1, batch // 2 + 7), max(1, batch // 3 + 5),
                    max(1, batch // 5 + 3)}, reverse=True)
    first, again = [], []
    with frozen(model):
        for b in sizes:
            xg = torch.rand(b, *shape, device=device, requires_grad=True)
            for out in (first, again):
                sync(device)
                t = time.perf_counter()
                torch.autograd.grad(model(xg).sum(), xg)
                sync(device)
                out.append(time.perf_counter() - t)
    return {"sizes": sizes, "first_ms": [round(t * 1e3, 2) for t in first],
            "again_ms": [round(t * 1e3, 2) for t in again],
            "new_size_extra_ms": round(1e3 * sum(f - a for f, a in zip(first, again, strict=True)) / len(sizes), 2)}


@contextlib.contextmanager
def counting_passes():
    """Counts every image that goes through a Classifier, by kind (attack step, training step, forward)."""
    counts = {"attack_step": 0, "train_step": 0, "forward": 0}
    real = Classifier.forward

    def forward(self, x):
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            counts["train_step"] += len(x)
        elif torch.is_grad_enabled() and x.requires_grad:
            counts["attack_step"] += len(x)
        else:
            counts["forward"] += len(x)
        return real(self, x)
    Classifier.forward = forward
    try:
        yield counts
    finally:
        Classifier.forward = real


@contextlib.contextmanager
def counted_calls(model: Classifier):
    """The network's calls, however many images each (a card bound by its kernel launches pays per call, so the
    count compares two implementations' sequential steps); `.pop()` gives the count so far and starts again."""
    calls = [0]

    def hook(module, args):
        calls[0] += 1

    class Calls:
        def pop(self) -> int:
            n, calls[0] = calls[0], 0
            return n
    handle = model.net.register_forward_pre_hook(hook)
    try:
        yield Calls()
    finally:
        handle.remove()


def model_r20(args, device, path=None) -> Classifier:
    flags = dict(arch=f"{ARCHS}:resnet20", num_classes=10, in_chans=3, input_size=(32, 32),
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    if path:
        return harden.load(path, device=device, **flags).eval()
    torch.manual_seed(0)
    return harden.create_model(**flags).to(device).eval()


def model_r50(args, device) -> Classifier:
    torch.manual_seed(0)
    size = args.r50_size
    return harden.create_model("resnet50", num_classes=1000, in_chans=3, input_size=(size, size),
                               mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)).to(device).eval()


def test_images(data_path: str | None, model: Classifier, device, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n test images of data_path with their labels, or (None) random pixels labelled by the model itself."""
    if data_path:
        data = harden.load_data(data_path)
        x = to_tensor(data.x_test[:n], device)
        return x, torch.from_numpy(data.y_test[:n]).to(device)
    x = torch.rand(n, model.spec.in_chans, *model.spec.input_size, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    with torch.no_grad():
        return x, model(x).argmax(1)


def run_attack(atk, model, x, y, batch, device) -> tuple[float, "harden.attacks.AttackOutput", list]:
    outs = []
    sync(device)
    t = time.perf_counter()
    for s in range(0, len(x), batch):
        outs.append(atk.run(model, x[s:s + batch], y[s:s + batch], torch.Generator().manual_seed(s)))
    sync(device)
    return time.perf_counter() - t, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", help="CIFAR-10 .npz (attacks, autoattack, train); random pixels / digits without it")
    ap.add_argument("--r20", help="ResNet-20 checkpoint (benchmarks/archs.py:resnet20); random weights without it")
    ap.add_argument("--hardened", help="a hardened ResNet-20 for the attack and AutoAttack rows (default: --r20)")
    ap.add_argument("--n", type=int, default=1000, help="test images for the attacks and AutoAttack")
    ap.add_argument("--batch", type=int, default=0, help="attack batch (0: 500 on CUDA, 250 on the CPU)")
    ap.add_argument("--r50-size", type=int, default=224)
    ap.add_argument("--r50-batch", type=int, default=0, help="ResNet-50 batch (0: 128 on CUDA, 16 on the CPU)")
    ap.add_argument("--frac", type=float, default=0.1, help="train: fraction of the training split")
    ap.add_argument("--epochs", type=int, default=0, help="train: epochs (0: the recipe's automatic number)")
    ap.add_argument("--train-base", help="train: the checkpoint to fix (default: --r20 with --data, else a cnn-small "
                    "trained on digits)")
    ap.add_argument("--train-data", help="train: its data (default: --data, else digits)")
    ap.add_argument("--set", action="append", default=[], help="train: recipe settings (KEY=VALUE)")
    ap.add_argument("--amp", default="off", help="train: the training step's precision (off = fp32, bf16, fp16)")
    ap.add_argument("--eval", action="store_true", help="train: white-box AutoAttack of the fixed model on --n images")
    ap.add_argument("--loader-images", type=int, default=512)
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--compile", action="store_true", help="torch.compile the models (the rows say so)")
    ap.add_argument("--tiny", action="store_true", help="a few images, small sizes: checks the script, not speed")
    ap.add_argument("--out", default="bench-out/speed.jsonl")
    ap.add_argument("--malloc-default", action="store_true",
                    help="leave glibc's allocator as it is (the CLI's harden.allocator.keep_freed_memory is off)")
    args = ap.parse_args()
    set_quiet(True)
    allocator = "default" if args.malloc_default else ("kept" if keep_freed_memory() else "default (not glibc)")
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.tiny:
        args.n, args.r50_size, args.loader_images = 4, 32, 8
        args.batch, args.r50_batch = args.batch or 4, args.r50_batch or 2
        args.epochs = args.epochs or 2
    batch = args.batch or (500 if cuda else 250)
    r50_batch = args.r50_batch or (128 if cuda else 16)
    reps = 1 if args.tiny else (20 if cuda else 3)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    machine = f"{name}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    rows = []

    def write(row: dict) -> None:
        row = {"date": str(date.today()), "device": str(device), "machine": machine, "compile": args.compile,
               "tiny": args.tiny, "allocator": allocator, **row}
        rows.append(row)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    r20 = model_r20(args, device, args.r20)
    hardened = model_r20(args, device, args.hardened) if args.hardened else r20
    r50_label = f"resnet50-{args.r50_size}px"
    r50 = model_r50(args, device) if {"floor", "attacks", "loader"} & set(only) else None
    compiled_ctx = contextlib.ExitStack()
    for m in (r20, hardened, r50):
        compiled_ctx.enter_context(compiled(m, args.compile))
    floors = {}
    if {"floor", "attacks", "loader"} & set(only):
        for label, model, b in (("resnet20-32px", hardened, batch), (r50_label, r50, r50_batch)):
            c = pass_costs(model, (3, *model.spec.input_size), b, device, reps)
            floors[label] = c
            write({"row": "floor", "model": label, "batch": b,
                   **{f"{k}_img_s": round(1 / v, 1) for k, v in c.items()}})
            write({"row": "new_shape", "model": label, **new_shape_costs(model, (3, *model.spec.input_size), b, device)})
    if "attacks" in only:
        # each attack's floor is the mean of the pass costs measured right before and right after it (the same
        # machine state), and the attack runs once on one batch first (warm-up): a busy neighbour moves both alike
        x, y = test_images(args.data, hardened, device, args.n)
        specs = ["fgsm", "fgsm-rs", "pgd", "pgd:steps=10,restarts=1,early_stop=false", "autopgd", "cw"]
        for label, model, spec, xs, ys, b in (
                [("resnet20-32px", hardened, sp, x, y, batch) for sp in specs]
                + [(r50_label, r50, f"pgd:steps=10,step={0.25 / 255},restarts=1,early_stop=false", None, None,
                    r50_batch)]):
            if xs is None:
                xs, ys = test_images(None, model, device, b * (1 if args.tiny else 2))
            atk = build_attack(spec, eps=2 / 255 if model is r50 else None)
            c = pass_costs(model, (3, *model.spec.input_size), b, device, reps)
            with frozen(model), counted_calls(model) as calls:
                run_attack(atk, model, xs[:b], ys[:b], b, device)
                calls.pop()
                secs, outs = run_attack(atk, model, xs, ys, b, device)
                batch_calls = calls.pop()  # a batch at a time, as the CPU runs the report
                with torch.no_grad():
                    robust = float((model(torch.cat([o.x_adv for o in outs])).argmax(1) == ys).float().mean())
            after = pass_costs(model, (3, *model.spec.input_size), b, device, reps)  # the drift of a busy machine
            c = {k: (c[k] + after[k]) / 2 for k in c}
            floor = sum(o.floor_seconds(c["attack_step"], c["forward"]) for o in outs)
            write({"row": "attack", "model": label, "attack": spec, "images": len(xs), "batch": b,
                   "seconds": round(secs, 3), "img_s": round(len(xs) / secs, 1),
                   "passes_per_img": round(sum(o.grad_passes for o in outs) / len(xs), 2),
                   "floor_over_time": round(floor / secs, 3), "robust": robust, "model_calls": batch_calls,
                   "threat_model": "white-box"})
            if atk.launch_bound_only and atk.params.get("early_stop", True) and len(xs) > 1:
                # the same images as the report runs them on a card: one run of its batches, the working batch kept
                # full from the later ones as images are fooled (attacks/refill.py)
                chunk = min(b, max(1, len(xs) // 2))
                with frozen(model), counted_calls(model) as calls:
                    sync(device)
                    t = time.perf_counter()
                    o = atk.run(model, xs, ys, RowStreams(0, torch.arange(len(xs)), batch_seed=0), chunk=chunk)
                    sync(device)
                    secs = time.perf_counter() - t
                    with torch.no_grad():
                        robust = float((model(o.x_adv).argmax(1) == ys).float().mean())
                    write({"row": "attack_run", "model": label, "attack": spec, "images": len(xs), "chunk": chunk,
                           "seconds": round(secs, 3), "img_s": round(len(xs) / secs, 1), "model_calls": calls.pop(),
                           "passes_per_img": round(o.grad_passes / len(xs), 2),
                           "floor_over_time": round(o.floor_seconds(c["attack_step"], c["forward"]) / secs, 3),
                           "robust": robust, "threat_model": "white-box"})
    if "autoattack" in only:
        x, y = test_images(args.data, hardened, device, args.n)
        # the batch harden's report takes on this device (from free memory on CUDA) unless --batch is given; the
        # original runs at the same batch
        aa_batch = args.batch or attack_batch_size(hardened, device, None, tuple(x.shape[1:]))
        with frozen(hardened), counted_calls(hardened) as calls:
            sync(device)
            t = time.perf_counter()
            rep = harden.evaluate(hardened, _arrays(x, y), attacks=["autoattack"], n=len(x), eps=8 / 255,
                                  device=device, metrics=False, masking_checks=False, batch_size=aa_batch, examples=0)
            sync(device)
            write({"row": "autoattack", "impl": "harden", "images": len(x), "batch": aa_batch,
                   "seconds": round(time.perf_counter() - t, 1),
                   "stage_seconds": {k: round(v, 2) for k, v in rep.attacks[0].stage_seconds.items()},
                   "model_calls": calls.pop(), "clean": rep.clean_accuracy,
                   "robust": rep.attacks[0].robust_accuracy, "threat_model": "white-box"})
            from pyautoattack import AutoAttack
            sync(device)
            t = time.perf_counter()
            aa = AutoAttack(hardened, eps=8 / 255, norm="Linf", version="standard", seed=0, device=device)
            xa = aa.run_standard_evaluation(x, y, batch_size=aa_batch)
            xa = xa[0] if isinstance(xa, tuple) else xa
            sync(device)
            secs = time.perf_counter() - t
            with torch.no_grad():
                acc = float((hardened(xa).argmax(1) == y).float().mean())
            write({"row": "autoattack", "impl": "original (pyautoattack)", "images": len(x), "batch": aa_batch,
                   "seconds": round(secs, 1), "model_calls": calls.pop(),
                   "robust": acc, "threat_model": "white-box"})
    if "train" in only:
        data = harden.load_data(args.train_data or args.data or "digits")
        if args.train_base:
            base = harden.load(args.train_base, device=device)
        else:
            base = r20 if args.data else harden.train("cnn-small", data, harden.TrainConfig(epochs=2), device)
        train_label = Path(args.train_base).name if args.train_base else \
            ("resnet20-32px" if args.data else "cnn-small (digits)")
        costs = pass_costs(base, (base.spec.in_chans, *base.spec.input_size), 32, device, reps)
        with counting_passes() as counts:
            t = time.perf_counter()
            res = harden.fix(base, data, data_frac=args.frac, epochs=args.epochs or None, device=device, report=False,
                             base_name=train_label, sets=args.set, compile=args.compile, amp=args.amp)
            wall = time.perf_counter() - t
        floor = sum(counts[k] * costs[k] for k in counts)
        row = {"row": "train", "model": train_label, "data": data.source, "frac": args.frac,
               "epochs": len(res.history), "batch": res.model.spec.extra.get("recipe_train", {}).get("batch_size"),
               "lr": res.model.spec.extra.get("recipe_train", {}).get("lr"), "amp": args.amp, "sets": args.set,
               "settings": {k: res.config["params"].get(k) for k in ("attack", "steps", "eps", "loss")},
               "fix_wall_s": round(wall, 1), "train_s": round(res.train_seconds, 1),
               # of train_s, the loop's waits for its next batch (indexing or decoding, augmentation, the copy)
               "input_wait_s": round(res.train_input_seconds, 3),
               "passes": counts, "floor_s": round(floor, 1), "floor_over_time": round(floor / res.train_seconds, 3),
               "per_img_ms_at_32": {k: round(v * 1e3, 3) for k, v in costs.items()}}
        if args.eval:
            eps = res.config["params"].get("eps")  # the budget it trained for, as `harden fix`'s own report
            rep = harden.evaluate(res.model, data, attacks=["autoattack"], n=args.n, device=device, metrics=False,
                                  masking_checks=False, examples=0, eps=parse_number(eps) if eps is not None else None)
            row.update(clean=rep.clean_accuracy, autoattack=rep.attacks[0].robust_accuracy, threat_model="white-box")
        write(row)
    if "loader" in only:
        for row in loader_rows(r50, floors[r50_label], args.loader_images, device, 1 if args.tiny else 8):
            write(row)
    compiled_ctx.close()
    print(summary(rows))


def _arrays(x: torch.Tensor, y: torch.Tensor):
    """In-memory data holding these test images (uint8, NHWC), for harden.evaluate."""
    from harden.data import ImageData
    imgs = (x.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    labels = y.cpu().numpy()
    return ImageData(imgs[:1], labels[:1], imgs, labels, "speed-bench", 10)


SUMMARY = {  # row kind -> (on, at, result) of the Markdown summary
    "floor": lambda r: (r["model"], f"batch {r['batch']}", f"attack step {r['attack_step_img_s']} img/s, forward "
                        f"{r['forward_img_s']}, training step {r['train_step_img_s']}"),
    "attack": lambda r: (f"{r['model']} {r['attack']}", f"batch {r['batch']}",
                         f"{r['img_s']} img/s, floor/time {r['floor_over_time']}, {r.get('model_calls', '-')} calls"),
    "attack_run": lambda r: (f"{r['model']} {r['attack']}", f"one run, batch {r['chunk']} kept full",
                             f"{r['img_s']} img/s, floor/time {r['floor_over_time']}, {r['model_calls']} calls"),
    "new_shape": lambda r: (r["model"], f"batches {r['sizes']}", f"first call {r['first_ms']} ms, again "
                            f"{r['again_ms']} ms: {r['new_size_extra_ms']} ms more per new size"),
    "autoattack": lambda r: (r["impl"], f"{r['images']} images, batch {r['batch']}",
                             f"{r['seconds']} s, {r.get('model_calls', '-')} model calls, robust {r['robust']:.3f}" + (
                                 " (" + ", ".join(f"{k} {v} s" for k, v in r["stage_seconds"].items()) + ")"
                                 if r.get("stage_seconds") else "")),
    "train": lambda r: (f"{r['model']} {r['frac']:g}", f"{r['epochs']} epochs, batch {r['batch']}, lr {r['lr']}, "
                        f"amp {r['amp']}", f"{r['train_s']} s, floor {r['floor_s']} s, floor/time "
                        f"{r['floor_over_time']}, waited {r.get('input_wait_s', '-')} s for batches"
                        + (f", AutoAttack {r['autoattack']:.3f} at clean {r['clean']:.3f}" if "autoattack" in r else "")),
    "loader": lambda r: (f"{r['size']} px, {r['workers']} workers", f"{r['kind']}, {r['images']} images",
                         f"{r['img_s']} img/s vs the model's training step {r['resnet50_train_img_s']}"
                         + (f", an FGSM-RS fix {r['fgsm_rs_fix_img_s']}; first batch {r['first_batch_s']} s"
                            if "fgsm_rs_fix_img_s" in r else "")),
}


def loader_rows(r50: Classifier, c50: dict, photos: int, device: torch.device, tasks_per_worker: int) -> list[dict]:
    """harden's file loader at the model's size, the machine's cores as workers, on synthetic JPEG photographs (four
    classes, sizes around 250-500 px): an eval's decode of `photos` test images (as `harden eval` pays it, the
    workers' start included), and the training feeder's steady rate at `fix`'s batch (32) against what the model
    consumes: its training step alone, and an FGSM-RS fix (one attack pass and one training pass per image), the
    cheapest recipe and so the one a loader could hold back."""
    from imagenet_scale import make_photos

    from harden.data import DataTarget, default_workers
    workers, batch = default_workers(), 32
    train_img_s, fix_img_s = 1 / c50["train_step"], 1 / (c50["attack_step"] + c50["train_step"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_photos(root, ["0", "1", "2", "3"], max(1, photos // 4))  # class names: outputs 0-3
        made = {split: sorted((root / split).rglob("*.jpg")) for split in ("train", "val")}
        # the training list repeats the photographs until every worker decodes `tasks_per_worker` batches: the steady
        # rate, not the workers' start, is measured (a repeated file is decoded again: only its read is cached)
        repeat = max(1, -(-tasks_per_worker * batch * max(1, workers) // len(made["train"])))
        with open(root / "list.csv", "w") as f:
            f.write("path,label,split\n")
            for split, files in made.items():
                for p in files * (repeat if split == "train" else 1):
                    f.write(f"{p.relative_to(root)},{p.parent.name},{split}\n")
        d = harden.load_data(str(root / "list.csv"), DataTarget.for_model(r50, workers=workers))
        idx = np.arange(d.n_test)
        d.images("test", idx[:4])  # the first decode in this process (PIL's plugins, the transform) left out
        t = time.perf_counter()
        d.images("test", idx, device)
        sync(device)
        eval_s = time.perf_counter() - t
        feeder = d.feeder("flip-crop", 0, device)
        n, t = 0, time.perf_counter()
        for i, (_, y) in enumerate(feeder.epoch(d.epoch_batches(batch, np.random.default_rng(0)), 0)):
            if i == 0:
                sync(device)
                first_s, t_first = time.perf_counter() - t, time.perf_counter()
            else:
                n += len(y)
        sync(device)
        steady = n / max(time.perf_counter() - t_first, 1e-9)
    base = {"row": "loader", "size": r50.spec.input_size[0], "workers": workers}
    return [{**base, "kind": "eval decode (workers' start included)", "images": len(idx),
             "img_s": round(len(idx) / eval_s, 1), "resnet50_train_img_s": round(train_img_s, 1),
             "loader_over_model": round(len(idx) / eval_s / train_img_s, 2)},
            {**base, "kind": f"training feeder, batch {batch}, steady", "images": n, "first_batch_s": round(first_s, 3),
             "img_s": round(steady, 1), "resnet50_train_img_s": round(train_img_s, 1),
             "fgsm_rs_fix_img_s": round(fix_img_s, 1), "loader_over_model": round(steady / train_img_s, 2),
             "loader_over_fix": round(steady / fix_img_s, 2)}]


def summary(rows: list[dict]) -> str:
    lines = ["| what | on | at | result |", "|---|---|---|---|"]
    lines += ["| " + " | ".join((r["row"], *SUMMARY[r["row"]](r))) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
