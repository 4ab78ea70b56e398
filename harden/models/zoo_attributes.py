"""The preprocessing a model object states in its own attributes, as Cadene's pretrainedmodels sets them.

pretrainedmodels (the `pretrainedmodels` package: Inception-v3/v4, Inception-ResNet-v2, Xception, NASNet, PNASNet,
SENets, DPNs, PolyNet, BNInception and its ports of torchvision's models) keeps each model's input convention as
plain attributes of the model object: `input_space` ('RGB' or 'BGR'), `input_range` ([0, 1] or [0, 255]: the pixel
units its mean and std are in), `input_size` ([C, H, W]), `mean` and `std`. Its `TransformImage` reads them: the
shorter side resized to the size / 0.875 (bilinear), the centre cropped, channels reversed for 'BGR', pixels scaled
to 0-255 for a [0, 255] range, then normalised. The factories set the attributes only when they download weights, so
a whole pickled model (`torch.save(model)` after fine-tuning) keeps them and a state dict does not: for a state dict
the package's `pretrained_settings` table holds the same values under the factory's name. Code written after the same
convention (a repository's own model that sets these attributes, a wrapper around a pretrainedmodels network) is read
the same way. These values are read only with all four of input_space, input_range, mean and std present and sound:
a lone `self.mean` may be what a forward subtracts itself (formats.normalising_layer), not the input's statistics."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .registry import CHANNEL_ORDER

SIGNATURE = ("input_space", "input_range", "mean", "std")
TRANSFORM_SCALE = 0.875  # TransformImage's default `scale`: the crop's share of the resized shorter side
PACKAGE = "pretrainedmodels"


def _numbers(value: Any) -> list[float] | None:
    """A short list of plain numbers (a list, a tuple, a small 1-D tensor), or None."""
    import torch
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist() if value.numel() <= 4 and value.dim() <= 1 else None
    if not isinstance(value, (list, tuple)) or not value or len(value) > 4 or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    return [float(v) for v in value]


def said_by(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """harden's preprocessing (mean and std in [0, 1] pixel units, input_size, channel order, TransformImage's
    resize and crop) from pretrainedmodels-style attributes or settings; None unless all of SIGNATURE are there and
    sound."""
    space, bounds = values.get("input_space"), _numbers(values.get("input_range"))
    mean, std = _numbers(values.get("mean")), _numbers(values.get("std"))
    if not isinstance(space, str) or space.upper() not in ("RGB", "BGR") or bounds is None or len(bounds) != 2 \
            or min(bounds) != 0 or max(bounds) not in (1, 255) or not mean or not std or len(mean) != len(std) \
            or len(mean) not in (1, 3) or any(v <= 0 for v in std) or \
            any(v != v or abs(v) == float("inf") for v in mean + std):
        return None
    unit = max(bounds)  # TransformImage's ToRange255: the mean and std are in 0-255 pixels
    out: dict[str, Any] = {"mean": [float(f"{v / unit:.6g}") for v in mean],
                           "std": [float(f"{v / unit:.6g}") for v in std],
                           "interpolation": "bilinear", "crop_pct": TRANSFORM_SCALE, "crop_mode": "center"}
    size = values.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 3 and \
            all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        out["input_size"] = [int(size[1]), int(size[2])]
    if space.upper() == "BGR":
        out[CHANNEL_ORDER] = "bgr"
    return out


TRANSFORM_KEYS = ("interpolation", "crop_pct", "crop_mode")  # not in the attributes: TransformImage's own
TRANSFORM_SOURCE = f"pretrainedmodels' TransformImage (its default scale {TRANSFORM_SCALE})"


def _described(where: str) -> str:
    return f"{where} attributes (input_space, input_range, mean, std: Cadene's pretrainedmodels convention)"


def sources(said: dict[str, Any], where: str) -> dict[str, str]:
    """Where each value `said_by` gave came from: the attributes, or the transform that reads them."""
    return {k: TRANSFORM_SOURCE if k in TRANSFORM_KEYS else where for k in said}


def pickled(module: Any, own: dict[str, Any] | None) -> dict[str, Any] | None:
    """`own` (what a pickled module's class says of its architecture: pickled_model.own_architecture), with what the
    module (pickled_model's inert holder of its `__dict__`) or the first of its submodules states in such attributes
    beneath it, as checkpoint metadata, where those came from under config.SOURCES_KEY."""
    from ..pickled_model import _entries, is_module
    from .config import SOURCES_KEY
    stack: list[tuple[str, Any]] = [("", module)]
    seen = 0
    while stack and seen < 10000:  # breadth first: the outermost module that says it
        name, m = stack.pop(0)
        seen += 1
        said = said_by(m.fields)
        if said:
            said = {k: v for k, v in said.items() if k not in (own or {})}
            where = _described("its" if not name else f"its module {name}'s")
            return {**said, **(own or {}), SOURCES_KEY: sources(said, where)}
        stack.extend((f"{name}.{n}" if name else n, c) for n, c in _entries(m.fields.get("_modules")) if is_module(c))
    return own


def built(net: Any) -> dict[str, Any] | None:
    """What a built network (or the first of its modules) states in such attributes, as metadata with its sources
    (a factory written after pretrainedmodels' convention that sets them whatever it loads)."""
    from .config import SOURCES_KEY
    for name, m in net.named_modules():
        said = said_by(vars(m))
        if said:
            return {**said, SOURCES_KEY: sources(said, _described("its" if not name else f"its module {name}'s"))}
    return None


def package_settings(arch: str) -> tuple[dict[str, Any], str] | None:
    """(preprocessing, where) from pretrainedmodels' own table for a `pretrainedmodels...:name` factory (its
    'imagenet' weights' entry, else its first): what a model fine-tuned from those weights was fed; the resize and
    crop are TransformImage's (TRANSFORM_SOURCE)."""
    module, _, name = arch.partition(":")
    if module.split(".")[0] != PACKAGE or not name:
        return None
    try:
        import pretrainedmodels
        table = pretrainedmodels.pretrained_settings
    except Exception:  # noqa: BLE001 - not installed, or an import that fails: nothing said
        return None
    entries = table.get(name) or table.get(name.lower())
    if not isinstance(entries, dict) or not entries:
        return None
    tag = "imagenet" if "imagenet" in entries else next(iter(entries))
    said = said_by(entries[tag]) if isinstance(entries[tag], dict) else None
    return (said, f"pretrainedmodels settings ({name}, {tag})") if said else None


def timm_statistics(net: Any) -> dict[str, Any] | None:
    """The mean and std of the timm model a network is or holds (its first module of timm's with a `pretrained_cfg`:
    fine-tuning code wraps `timm.create_model(...)` as its backbone), as metadata with its source, "timm config ...":
    the guess a timm name's checkpoint takes too, which the normalisation check measures. None where there is none."""
    from .config import SOURCES_KEY
    for name, m in net.named_modules():
        cfg = getattr(m, "pretrained_cfg", None)
        if not type(m).__module__.startswith("timm.") or not isinstance(cfg, dict):
            continue
        mean, std = cfg.get("mean"), cfg.get("std")
        if not (isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple)) and len(mean) == len(std)):
            return None
        what = cfg.get("architecture") or type(m).__name__
        where = f"timm config ({what}: the pretrained_cfg of {'the module' if not name else f'its module {name}'})"
        return {"mean": tuple(mean), "std": tuple(std), SOURCES_KEY: {"mean": where, "std": where}}
    return None
