"""Attack throughput: per attack, harden's images/s, a direct plain-ART call's images/s on the same
model and batch, and the model's cost floor (the forward+backward passes the attack's algorithm needs at
its settings x the measured pass time), as ratios. Also times the full default report.

    python benchmarks/attack_throughput.py --data ../shared/data/mnist.npz [--checkpoint m.safetensors]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

import harden
from harden.attacks import DEFAULT_ATTACKS, build_attack
from harden.attacks.base import art_classifier, to_numpy
from harden.data import to_tensor
from harden.report.runner import DEFAULT_MAX_L0
from harden.runtime import frozen, resolve_device, set_quiet
from speed import pass_costs, sync  # noqa: E402  (benchmarks/ is on the path when run as a script)


def art_reference(name, clf, x, y, batch):
    from art.attacks.evasion import (AutoProjectedGradientDescent, CarliniLInfMethod, DeepFool, FastGradientMethod,
                                     ProjectedGradientDescent, SaliencyMapMethod)
    eps = 8 / 255
    atk = {
        "fgsm": lambda: FastGradientMethod(clf, eps=eps, batch_size=batch),
        "pgd": lambda: ProjectedGradientDescent(clf, eps=eps, eps_step=0.005, max_iter=50, batch_size=batch,
                                                verbose=False),
        "autopgd": lambda: AutoProjectedGradientDescent(clf, eps=eps, eps_step=0.005, max_iter=25, batch_size=batch,
                                                        verbose=False),
        # ART's C&W-Linf is a different (tau-shrinking, unbounded) algorithm: the nearest plain-ART call.
        "cw": lambda: CarliniLInfMethod(clf, max_iter=25, batch_size=batch, verbose=False),
        "deepfool": lambda: DeepFool(clf, max_iter=100, epsilon=0.02, batch_size=batch, verbose=False),
        "jsma": lambda: SaliencyMapMethod(clf, theta=0.1, gamma=1.0, batch_size=batch, verbose=False),
    }[name]()
    t = time.perf_counter()
    atk.generate(to_numpy(x), y=to_numpy(y).astype(np.int64) if name not in ("cw", "jsma", "deepfool") else None)
    return len(x) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/mnist.npz")
    ap.add_argument("--checkpoint", help="model to attack (default: train cnn-small on --data for 3 epochs)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--art-n", type=int, default=100, help="images for the fast plain-ART references")
    ap.add_argument("--art-slow-n", type=int, default=10, help="images for ART's numpy-loop attacks (cw, deepfool, jsma)")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="bench-out/attack_throughput.json")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    set_quiet(args.quiet)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    data = harden.load_data(args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        model = harden.load(args.checkpoint, device=device)
        ckpt = args.checkpoint
    else:
        ckpt = out.parent / "bench-cnn-small.safetensors"
        if ckpt.exists():
            model = harden.load(ckpt, device=device)
        else:
            model = harden.train("cnn-small", data, harden.TrainConfig(epochs=3, batch_size=128, lr=0.05,
                                                                       augment="crop"), device)
            harden.save(model, ckpt)
    model = model.to(device).eval()
    x = to_tensor(data.x_test[:args.n], device)
    y = torch.from_numpy(data.y_test[:args.n]).to(device)
    rows = []
    with frozen(model):
        c = pass_costs(model, tuple(x.shape[1:]), args.batch_size, device, reps=5, train=False)
        t_fb, t_f = c["attack_step"], c["forward"]
        clf = art_classifier(model, tuple(x.shape[1:]), model.spec.num_classes)
        for name in DEFAULT_ATTACKS:
            atk = build_attack(name)
            if name == "jsma":
                atk.params["max_l0"] = DEFAULT_MAX_L0
            gp = floor = 0.0
            sync(device)
            t = time.perf_counter()
            for s in range(0, len(x), args.batch_size):
                o = atk.run(model, x[s:s + args.batch_size], y[s:s + args.batch_size], torch.Generator().manual_seed(s))
                gp += o.grad_passes + o.extra_backward_passes
                floor += o.floor_seconds(t_fb, t_f)
            sync(device)
            secs = time.perf_counter() - t
            n_art = args.art_n if name in ("fgsm", "pgd", "autopgd") else args.art_slow_n
            art_ips = art_reference(name, clf, x[:n_art], y[:n_art], min(args.batch_size, n_art))
            rows.append(dict(attack=name, harden_img_s=len(x) / secs, harden_s=secs, art_img_s=art_ips,
                             art_images=n_art, floor_img_s=len(x) / floor, backward_passes_per_img=gp / len(x),
                             harden_over_floor=secs / floor, harden_over_art=(len(x) / secs) / art_ips))
    t = time.perf_counter()
    rep = harden.evaluate(model, data, n=args.n, batch_size=args.batch_size, device=device)
    full = time.perf_counter() - t
    cpu = platform.processor() or platform.machine()
    result = dict(date=str(date.today()), device=str(device),
                  device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
                  threads=torch.get_num_threads(), checkpoint=str(ckpt), data=args.data, n=args.n,
                  batch_size=args.batch_size, pass_ms_per_img=t_fb * 1e3, fwd_ms_per_img=t_f * 1e3, attacks=rows,
                  full_report_s=full, clean=rep.clean_accuracy,
                  robust={a.name: a.robust_accuracy for a in rep.attacks}, metrics=rep.metrics)
    out.write_text(json.dumps(result, indent=2))
    print(f"device {result['device_name']} ({device}), {torch.get_num_threads()} threads; pass "
          f"{t_fb * 1e3:.3f} ms/img fwd+bwd, {t_f * 1e3:.3f} ms/img fwd; batch {args.batch_size}; n {args.n}")
    print("| attack | harden img/s | plain ART img/s (n) | floor img/s | backward passes/img | harden/floor time | "
          "harden/ART speed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attack']} | {r['harden_img_s']:.0f} | {r['art_img_s']:.1f} ({r['art_images']}) | "
              f"{r['floor_img_s']:.0f} | {r['backward_passes_per_img']:.1f} | {r['harden_over_floor']:.2f}x | "
              f"{r['harden_over_art']:.1f}x |")
    print(f"full default report (six attacks + seed 004 metrics) on {args.n} images: {full:.1f} s; clean "
          f"{rep.clean_accuracy:.3f}; robust " + ", ".join(f"{k} {v:.3f}" for k, v in result["robust"].items()))


if __name__ == "__main__":
    main()
