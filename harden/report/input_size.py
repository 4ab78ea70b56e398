"""Does the model see the images at the size it was trained at? A plain state dict of a network written in a file says
no input size, and a network with adaptive pooling runs at any: loading assumes 32x32 (warned), and a network
trained on 224-pixel photos then scores well above chance on 32-pixel thumbnails, so nothing else trips, and every
robust accuracy measured on it describes another function. Where the input size was assumed, the clean accuracy on
some of the report's images is measured again with the images read at the sizes training code uses most (files on
disk: decoded again through the same transform at that size; arrays: at their own size); one that does clearly better
(McNemar's exact test on the same images, p < 0.01) is named with its flag. Nothing is changed: the numbers stay those
of the model as loaded."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..batching import predict_labels
from ..errors import HardenError
from .checks import flag
from .compare import paired

SAMPLE = 128  # images per size (each size decodes them again; a 224-pixel pass of a ResNet-50 is ~15 s on 2 cores)
PAIRED_P = 0.01  # as the normalisation check: several sizes are tried
SIZES = (64, 96, 128, 224)  # Tiny ImageNet's, STL-10's, downsampled ImageNet's, ImageNet's
# the files' own size is tried too, up to twice ImageNet's pixels (a camera's photographs are not a training size)


LIBRARY_SOURCES = ("timm config", "torchvision weights")  # a library's size for its own weights (models/config.py)


def assumed(model: Any, at_chance: bool = False) -> bool:
    """True where loading took the default input size (nothing said one; the network runs at it), or, for a model
    whose clean accuracy is at chance, a library's size for its own weights (a timm or torchvision architecture
    retrained on other images, at their size, is loaded at ImageNet's 224 unless told)."""
    source = (getattr(model, "config_sources", None) or {}).get("input_size", "")
    return source == "default" or (at_chance and source.startswith(LIBRARY_SOURCES))


def _candidates(model, data) -> list[tuple[int, int]]:
    """Sizes to try: for files, the common training sizes and the files' own (data.files_size: 48x96 crops are
    trained at 48x96, which no square tries); for arrays, their own size (the report resizes them to the model's)."""
    from ..data import files_size, is_on_disk
    own = tuple(int(v) for v in model.spec.input_size)
    if is_on_disk(data):
        sizes = [(s, s) for s in SIZES]
        try:
            native = files_size(data)
        except HardenError:  # no file of the sample reads (the report names unreadable files itself)
            native = None
        if native is not None and native not in sizes and native[0] * native[1] <= 2 * max(SIZES) ** 2:
            sizes.append(native)
    else:
        sizes = [tuple(data.input_size)]
    return [s for s in sizes if s != own]


def _read_at(data, split: str, idx: np.ndarray, size: tuple[int, int], device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
    from ..data import is_on_disk
    if is_on_disk(data):
        return data.at_size(size).images(split, idx, device)
    return data.images(split, idx, device)  # arrays at their own size


def better_input_size(model, data, split: str, idx: np.ndarray, y: torch.Tensor, pred: torch.Tensor,
                      batch_size: int, device: torch.device) -> dict[str, Any] | None:
    """A tripped check naming an input size at which the model's clean accuracy is clearly higher than at the assumed
    one; a quiet one where none is; None where the size was not assumed, nothing else can be tried, or too few
    images. `idx`, `y`, `pred`: the images of `split` the caller has, their labels, the model's predictions for them
    at the assumed size."""
    if not hasattr(model, "spec") or len(y) < 20:
        return None
    from .checks import above_chance
    chance = above_chance(pred, y, int(model.spec.num_classes))
    if not assumed(model, at_chance=bool(chance and chance["tripped"])):
        return None
    sizes = _candidates(model, data)
    if not sizes:
        return None
    keep = min(SAMPLE, len(y))
    idx, ys = np.asarray(idx)[:keep], y[:keep]
    base_right = (pred[:keep] == ys).cpu().numpy()
    rows = []
    for size in sizes:
        try:
            x, y_at = _read_at(data, split, idx, size, device)
            if len(y_at) != len(ys) or not torch.equal(y_at.to(ys.device), ys):
                continue  # files left out as unreadable among them: not the same images
            right = (predict_labels(model, x, batch_size, device) == ys).cpu().numpy()
        except (RuntimeError, HardenError):
            continue  # a network that does not run at that size (a flatten before a linear layer)
        rows.append((int(right.sum()), size, paired(base_right, right)))
    if not rows:
        return None
    best, size, test = max(rows, key=lambda r: r[0])
    n, base = len(ys), int(base_right.sum())
    own = "x".join(str(int(v)) for v in model.spec.input_size)
    shown = "x".join(map(str, size))
    better = test["lower"] > 0 and test["p"] < PAIRED_P
    source = model.config_sources.get("input_size", "")
    which = "the assumed input size" if source == "default" else f"the input size from the {source}"
    detail = f"clean accuracy on {n} images {base / n:.1%} at {which} {own}; {best / n:.1%} at {shown}"
    if better:
        detail += (f": the model was likely trained at another size: pass --input-size {shown} (or the size of its "
                   f"training code); harden measures and trains the model as loaded, at {own}")
    return flag("input size assumed", better, detail, kind="check")
