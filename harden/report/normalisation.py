"""Does the model read these images as it was trained to? A plain state dict says no mean or std, and
published training code normalises in its data transform (pytorch-cifar's `transforms.Normalize((0.4914, ...),
(0.2023, ...))`), so loading assumes mean 0, std 1, under which a CIFAR network still scores well above chance but
far below its own accuracy, and every robust accuracy measured on it describes another function. Where the mean and
std were assumed (the default, or timm's or torchvision's values for the architecture's own pretrained weights, which
a network fine-tuned elsewhere need not share), the clean accuracy on some of the report's images is measured again
under the normalisations published code uses most; one that does clearly better (McNemar's exact test on the same
images, p < 0.01) is named, with the flags that give it. Nothing is changed: the numbers stay those of the model as
loaded. The same check runs before `harden fix` trains and in `harden data --model` (preflight.py)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

from ..batching import predict_labels
from ..models.registry import CHANNEL_ORDER
from .checks import flag
from .compare import paired

SAMPLE = 256  # images where mean 0 and std 1 were assumed
CONFIG_SAMPLE = 128  # where timm's or torchvision's values were taken: usually right, so half the passes (a ResNet-50
# at 224 px on 2 CPU cores: 256 images under 7 normalisations took 175 s)
PAIRED_P = 0.01  # McNemar's p below which a candidate counts as better (several are tried)
# (name, mean, std, channel order) in [0, 1] pixel units and the network's channel order, three-channel values
# averaged for a one-channel network
CANDIDATES = (("no normalisation's (0, 1: pixels as robustness code often trains on them)", (0.0,) * 3, (1.0,) * 3,
               "rgb"),  # tried where a library's config was taken; where mean 0 and std 1 were assumed, the base
              ("ImageNet's", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb"),
              ("CIFAR-10's", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "rgb"),
              ("CIFAR-100's", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "rgb"),
              ("[-1, 1] (0.5, 0.5)", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "rgb"),
              ("0-255 pixels' (0, 1/255)", (0.0,) * 3, (1 / 255,) * 3, "rgb"),
              # Caffe's classifiers and their conversions: BGR 0-255 pixels less ImageNet's mean (B, G, R order)
              ("Caffe's (BGR, 0-255 less 103.94,116.78,123.68)", (103.939 / 255, 116.779 / 255, 123.68 / 255),
               (1 / 255,) * 3, "bgr"),
              ("MNIST's", (0.1307,), (0.3081,), "rgb"),
              ("Fashion-MNIST's", (0.2860,), (0.3530,), "rgb"))


def assumed(model: Any) -> str | None:
    """Where the model's mean and std came from, when that is a guess rather than the file's or the user's word: the
    default (mean 0, std 1), or timm's or torchvision's values for the architecture's own pretrained weights (which
    a network fine-tuned elsewhere need not share). None otherwise."""
    from ..models.config import TORCHVISION_SOURCE
    sources = getattr(model, "config_sources", None) or {}
    mean, std = sources.get("mean", ""), sources.get("std", "")
    guesses = ("default", "timm config", TORCHVISION_SOURCE)
    return mean if mean.startswith(guesses) and std.startswith(guesses) else None


@contextmanager
def _normalised_as(model, mean: tuple[float, ...], std: tuple[float, ...], order: str = "rgb") -> Iterator[None]:
    """The Classifier's normalisation buffers set to mean/std and its channel order to `order`, then restored."""
    c = model.mean.shape[1]
    old = model.mean.clone(), model.std.clone()
    extra = model.spec.extra
    had_order, old_order = CHANNEL_ORDER in extra, extra.get(CHANNEL_ORDER)
    try:
        model.mean.copy_(_channels(mean, c).view_as(model.mean))
        model.std.copy_(_channels(std, c).view_as(model.std))
        if order == "bgr":
            extra[CHANNEL_ORDER] = "bgr"
        else:
            extra.pop(CHANNEL_ORDER, None)
        yield
    finally:
        model.mean.copy_(old[0])
        model.std.copy_(old[1])
        if had_order:
            extra[CHANNEL_ORDER] = old_order
        else:
            extra.pop(CHANNEL_ORDER, None)


def _channels(values: tuple[float, ...], c: int) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float32)
    return t if len(t) == c else t.mean().repeat(c)


def better_normalisation(model, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, batch_size: int,
                         device: torch.device) -> dict[str, Any] | None:
    """A tripped check naming a normalisation under which the model's clean accuracy is clearly higher than under
    the assumed one (assumed()); a quiet one where none is; None where the mean and std were not assumed (or the
    model is not a harden Classifier). `pred`: the model's predictions for x as it is (the caller has them)."""
    source = assumed(model)
    if source is None or not hasattr(model, "mean") or len(y) < 20:
        return None
    keep = SAMPLE if source == "default" else CONFIG_SAMPLE
    xs, ys = x[:keep], y[:keep]
    n = len(ys)

    def correct() -> np.ndarray:
        return (predict_labels(model, xs, batch_size, device) == ys).cpu().numpy()

    base_right = (pred[:keep] == ys).cpu().numpy()
    base = int(base_right.sum())
    c = model.mean.shape[1]
    given = ("mean 0, std 1" if source == "default" else
             f"mean {','.join(f'{v:.4g}' for v in model.mean.flatten().tolist())}, std "
             f"{','.join(f'{v:.4g}' for v in model.std.flatten().tolist())} ({source})")
    own_order = model.spec.extra.get(CHANNEL_ORDER, "rgb")
    rows = []
    for name, mean, std, order in CANDIDATES:
        if len(mean) == 1 and c != 1:
            continue  # a grey dataset's statistics say nothing of a colour network
        if order != own_order and (c != 3 or own_order != "rgb" or source != "default"):
            # a channel order is a colour network's; one the user gave (--channel-order bgr) stands; a timm or
            # torchvision architecture's own config is an RGB pipeline's (and each candidate is a pass)
            continue
        if order == own_order and torch.allclose(_channels(mean, c), model.mean.flatten().cpu(), atol=1e-3) and \
                torch.allclose(_channels(std, c), model.std.flatten().cpu(), atol=1e-3):
            continue  # the normalisation it has (timm's ImageNet values): measured already
        with _normalised_as(model, mean, std, order):
            right = correct()
        rows.append((int(right.sum()), name, mean, std, order, paired(base_right, right)))
    if not rows:
        return None
    best, name, mean, std, order, test = max(rows, key=lambda r: r[0])

    def shown(values: tuple[float, ...]) -> str:
        return ",".join(f"{float(t):.4g}" for t in _channels(values, c))
    # the same images under both: McNemar's exact test on the images that change, strict for the several tried
    better = test["lower"] > 0 and test["p"] < PAIRED_P
    detail = (f"clean accuracy on {n} images {base / n:.1%} with the assumed {given}; "
              f"{best / n:.1%} with {name} mean and std")
    if better:
        flags = f"--mean {shown(mean)} --std {shown(std)}" + (" --channel-order bgr" if order != own_order else "")
        if getattr(model, "plain_module", False):  # a module given to the library
            flags = (f"harden.models.from_module(net, input_size=..., mean=({shown(mean)}), std=({shown(std)})) as the "
                     "model")
        detail += (f": the model was likely trained with its images normalised otherwise: pass {flags} (or the "
                   f"values of its training code); harden measures and trains the model as loaded, with "
                   f"{given.split(' (')[0]}")
    return flag("normalisation assumed", better, detail, kind="check")
