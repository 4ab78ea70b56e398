"""Catastrophic-overfitting hunt: whole `at` runs with single-step training attacks, the stop switched off, and
the epoch at which today's rule would have stopped each (BENCHMARKS.md, "Catastrophic overfitting ... hunted").

    python benchmarks/co_hunt.py '{"eps": 0.3, "epochs": 20}' '{"arch": "wide-bn", "eps": 0.2}' \
        '{"data": "../shared/data/mnist.npz", "base": "mnist.safetensors", "frac": 0.1, "eps": 0.3, "fgsm_rs": 1, "ramp": 3}'

Each argument is one run (JSON): data (default digits; a path or name for load_data) with base (a checkpoint;
without it a base is trained with the tests' settings), arch (cnn-small | wide-bn, trained bases only), size (digits
upsampled to size x size, nearest), eps, ramp, val, frac, epochs, lr, seed, fgsm_rs (FGSM-RS instead of FGSM without
a random start), sets (extra --set strings). One JSON line per run: history rows [epoch, adv_acc, val_clean,
val_robust, val_train_attack]."""
import json
import math
import sys
import time

import numpy as np
import torch
from torch import nn

import harden
import harden.recipes.at as at_recipe
from harden.data import ImageData
from harden.models import register_model
from harden.runtime import set_quiet
from harden.training import TrainConfig

RULE = at_recipe.catastrophic_overfitting


@register_model("wide-bn")
def wide_bn(num_classes=10, in_chans=1, input_size=(8, 8)):
    """A higher-capacity BatchNorm net than cnn-small: three 3x3 convolutions 64-128-128, global pooling."""
    def block(i, o, s=1):
        return [nn.Conv2d(i, o, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*block(in_chans, 64), *block(64, 128, 2), *block(128, 128), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(128, num_classes))


def upsampled(data: ImageData, size: int) -> ImageData:
    r = size // data.x_train.shape[1]
    if r <= 1:
        return data
    up = lambda a: np.repeat(np.repeat(a, r, axis=1), r, axis=2)  # noqa: E731
    return ImageData(up(data.x_train), data.y_train, up(data.x_test), data.y_test, f"{data.source}@{size}",
                     data.num_classes, class_names=data.class_names)


def main() -> None:
    set_quiet(True)
    torch.set_num_threads(1)
    at_recipe.catastrophic_overfitting = lambda history, **_: None  # whole runs; the rule is applied afterwards
    for c in (json.loads(a) for a in sys.argv[1:]):
        data = harden.load_data(c.get("data", "digits"))
        data = upsampled(data, c["size"]) if "size" in c else data
        base = harden.load(c["base"]) if "base" in c else harden.train(
            c.get("arch", "cnn-small"), data, TrainConfig(epochs=10, batch_size=64, lr=0.05, augment="crop", seed=0),
            "cpu")
        ramp = c.get("ramp", 5)
        attack = ["attack=fgsm-rs"] if c.get("fgsm_rs") else ["attack=pgd", "steps=1", "restarts=0", "step=eps/1"]
        sets = [f"eps={c.get('eps', 0.2)}", f"eps_ramp={ramp}", f"val_frac={c.get('val', 0.3)}", *attack,
                *c.get("sets", [])]
        t = time.time()
        res = harden.fix(base, data, sets=sets, data_frac=c.get("frac", 1.0), epochs=c.get("epochs", 30),
                         lr=c.get("lr", 0.01), seed=c.get("seed", 0), device="cpu", report=False)
        full_budget = math.ceil(ramp) + 1
        would = next((i for i in range(1, len(res.history) + 1)
                      if RULE(res.history[:i], full_budget_epoch=full_budget)), None)
        hist = [[h["epoch"], *(round(h.get(k, -1), 3) for k in ("adv_acc", "val_clean", "val_robust",
                                                                "val_train_attack"))] for h in res.history]
        print(json.dumps({"cfg": c, "would_stop_at": would, "best": res.model.spec.extra.get("best_epoch"),
                          "secs": round(time.time() - t, 1), "history": hist}), flush=True)


if __name__ == "__main__":
    main()
