"""A model's configuration from where it lives, each value with where it came from.

Order, per value: a command-line flag; the checkpoint's own metadata (harden's safetensors); a timm hub folder's
`config.json` (`architecture`, `num_classes`, `model_args`, `pretrained_cfg`, `label_names`); timm's pretrained
config for the architecture's name (with or without its tag); a default, with a warning naming the assumed values.
The preprocessing values are timm's data-config names: input size, interpolation, crop fraction, crop mode, mean
and std."""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from ..errors import HardenError

# Values that describe the network and how it expects its images (stored in every checkpoint harden writes)
NET_KEYS = ("arch", "num_classes", "in_chans", "model_args")
PREPROCESS_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")
SPEC_KEYS = NET_KEYS + PREPROCESS_KEYS
HYPER_PARAMETERS = "hyper_parameters"  # meta: a training container's constructor arguments (formats.hyper_parameters)
SETTINGS = "settings_objects"  # meta: a training script's settings objects by their keys (formats.settings_objects)
BESIDE = "beside_the_weights"  # meta: plain values saved at the container's top level (formats.beside_the_weights)
ARCH_HPARAM = "arch_hyper_parameter"  # meta: which of them named the timm architecture (formats.ARCH_HPARAMS)
UNKNOWN_ARCH = "arch_not_known"  # meta: the name a file gives its architecture where no library knows it
DEFAULTS: dict[str, Any] = {"in_chans": 3, "input_size": [32, 32], "interpolation": "bilinear", "crop_pct": 1.0,
                            "crop_mode": "center", "mean": [0.0], "std": [1.0], "model_args": {}}
HUB_CONFIG = "config.json"
SOURCES_KEY = "_sources"  # read_hub_config: {key: the file it came from} where that is not config.json
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def is_hub_folder(path: Path) -> bool:
    return path.is_dir() and (path / HUB_CONFIG).is_file()


def hub_weights(path: Path) -> Path:
    for name in HUB_WEIGHTS:
        if (path / name).is_file():
            return path / name
    raise HardenError(f"The hub folder {str(path)!r} has {HUB_CONFIG} but no weights ({' or '.join(HUB_WEIGHTS)}).")


HUB_RECORD = "harden"  # config.json's entry where `harden export -o DIR` keeps how the model's data is read
RECORD_KEYS = ("data", "held_out_test", "exif_orientation")  # the data it names, the split a hardened model never
# trained on (data/held_out.py), how EXIF orientation was taken


def hub_record(path: Path) -> dict[str, Any]:
    """The HUB_RECORD a folder `harden export` wrote keeps (RECORD_KEYS), as checkpoint metadata; {} for any other."""
    try:
        cfg = json.loads((path / HUB_CONFIG).read_text())
    except (OSError, ValueError):
        return {}
    rec = cfg.get(HUB_RECORD) if isinstance(cfg, dict) else None
    return {k: rec[k] for k in RECORD_KEYS if k in rec and rec[k]} if isinstance(rec, dict) else {}


def read_hub_config(path: Path) -> dict[str, Any]:
    """config.json as timm's save_for_hf writes it -> harden's metadata names."""
    try:
        cfg = json.loads((path / HUB_CONFIG).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HardenError(f"{str(path / HUB_CONFIG)!r} is not readable JSON ({e}).") from None
    from .hf_transformers import is_transformers_config, read_transformers_folder
    if isinstance(cfg, dict) and is_transformers_config(cfg):
        return read_transformers_folder(path, cfg)
    arch = cfg.get("architecture") or cfg.get("arch")
    if not arch:
        raise HardenError(f"{str(path / HUB_CONFIG)!r} names no architecture (timm's hub folders say it under "
                          "'architecture'); pass --arch.")
    return timm_meta(cfg, str(arch))


def timm_meta(cfg: dict[str, Any], arch: str) -> dict[str, Any]:
    """harden's metadata from a timm config (a hub folder's config.json; a pickled timm model's own attributes:
    num_classes, in_chans and its pretrained_cfg)."""
    pre = dict(cfg.get("pretrained_cfg") or {})
    args = dict(cfg.get("model_args") or {})
    meta: dict[str, Any] = {"arch": str(arch)}
    if "num_classes" in cfg:
        meta["num_classes"] = int(cfg["num_classes"])
    if pre.get("input_size"):
        meta["in_chans"] = int(pre["input_size"][0])
        meta["input_size"] = [int(v) for v in pre["input_size"][1:]]
    if "in_chans" in args:
        meta["in_chans"] = int(args.pop("in_chans"))
    args.pop("num_classes", None)
    if args:
        meta["model_args"] = args
    for key in ("interpolation", "crop_pct", "crop_mode", "mean", "std"):
        if pre.get(key) is not None:
            meta[key] = list(pre[key]) if isinstance(pre[key], (list, tuple)) else pre[key]
    for key in ("test_input_size", "test_crop_pct"):
        if pre.get(key) is not None:
            meta[key] = list(pre[key])[1:] if key == "test_input_size" else pre[key]
    if cfg.get("label_names"):
        meta["label_names"] = list(cfg["label_names"])
    return meta


def timm_config(arch: str) -> dict[str, Any] | None:
    """timm's pretrained config for a timm name (its default tag when the name has none), in harden's names."""
    from .registry import list_builtin
    if ":" in arch or arch in list_builtin():  # harden's own names win over timm's (and need no timm import: 2 s)
        return None
    import timm
    from timm.models import get_pretrained_cfg
    try:
        if not timm.is_model(arch):
            return None
        cfg = get_pretrained_cfg(arch)
    except RuntimeError:  # an unknown tag
        return None
    if cfg is None:
        return None
    out: dict[str, Any] = {"in_chans": int(cfg.input_size[0]), "input_size": [int(v) for v in cfg.input_size[1:]],
                           "interpolation": cfg.interpolation, "crop_pct": float(cfg.crop_pct),
                           "crop_mode": cfg.crop_mode, "mean": list(cfg.mean), "std": list(cfg.std),
                           "num_classes": int(cfg.num_classes) if cfg.num_classes else None}
    if cfg.test_input_size:
        out["test_input_size"] = [int(v) for v in cfg.test_input_size[1:]]
    if cfg.test_crop_pct:
        out["test_crop_pct"] = float(cfg.test_crop_pct)
    return {k: v for k, v in out.items() if v is not None}


def _height_width(size: Any) -> list[int]:
    """A size as a side (224), H x W or C x H x W: [H, W]."""
    return [int(size)] * 2 if isinstance(size, (int, float, str)) else [int(v) for v in size][-2:]


def resolve(flags: dict[str, Any], meta: dict[str, Any], hub: dict[str, Any] | None, path: Path, classes_hint: str = "",
            state: dict[str, Any] | None = None, normaliser: tuple | None = None,
            tried_size: list[int] | None = None, tried_chans: int | None = None, inside: str | None = None
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """(spec, where each value came from). Raises when arch or num_classes are found nowhere (`classes_hint`: what the
    weights suggest, added to that message). `state`: the file's weights, read where timm's config alone gave the
    class or channel count (weights_override). `normaliser`: (mean, std, keys) of normalisation buffers saved beside
    the weights (formats.normaliser_buffers), below the file's metadata and a hub config, above timm's defaults.
    `tried_size`: the input size a network that fixes its own was found to run at (checkpoint.size_it_runs_at), below
    every source that says one; `tried_chans`: the channels it was found to run with where none were said; `inside`:
    what of the network normalises its input (its buffers, a layer): mean 0, std 1 outside."""
    from ..runtime import warn
    from .registry import CHANNEL_ORDER
    spec: dict[str, Any] = {}
    source: dict[str, str] = {}
    layers: list[tuple[str, dict[str, Any]]] = [("flag", {k: v for k, v in flags.items() if v is not None}),
                                                 ("checkpoint", meta)]
    hub_sources: dict[str, str] = {}
    if hub:
        hub = dict(hub)
        hub_sources = hub.pop(SOURCES_KEY, {})  # values a hub folder takes from another of its files
        layers.append((f"hub {HUB_CONFIG}", hub))
    for key in ("arch",):
        _pick(key, layers, spec, source)
    if "arch" not in spec:
        raise HardenError(f"{str(path)!r} does not say its architecture (a plain state dict has no metadata); pass "
                          "--arch (and --num-classes).")
    if normaliser:
        layers.append((f"{NORMALISER_SOURCE} ({normaliser[2][0]})", {"mean": normaliser[0], "std": normaliser[1]}))
    if inside:  # DeepMind's WideResNet: `(x - self.mean) / self.std` in its forward; --mean/--std would normalise twice
        layers.append((f"{INSIDE_SOURCE} ({inside})", {"mean": [0.0], "std": [1.0]}))
    given_size = next((name for name, layer in layers if layer.get("input_size") is not None), None)
    tcfg = timm_config(str(spec["arch"]))
    timm_left_out = bool(tcfg and given_size and not given_size.startswith("hub"))  # its own weights' size
    if tcfg and not timm_left_out:
        layers.append((f"timm config ({spec['arch']})", tcfg))
    vcfg = torchvision_config(str(spec["arch"])) if not tcfg else None
    if vcfg and given_size:
        # its weights at the size given, where it has such (ViT_B_16's SWAG weights at 384): their transform holds
        side = _as_side(next(layer["input_size"] for name, layer in layers if name == given_size))
        sized = torchvision_config(str(spec["arch"]), side) if side else None
        if sized:
            vcfg, given_size = sized, None
    if vcfg and not given_size:
        layers.append((f"{TORCHVISION_SOURCE} ({vcfg.pop('weights')})", vcfg))
    library_left_out = tcfg if timm_left_out else (vcfg if vcfg and given_size else None)
    if not tcfg and not vcfg:  # Cadene's pretrainedmodels: its convention (BGR, 0-255) holds whatever the size
        from .zoo_attributes import TRANSFORM_KEYS, TRANSFORM_SOURCE, package_settings
        zoo = package_settings(str(spec["arch"]))
        if zoo:
            layers.append((zoo[1], {k: v for k, v in zoo[0].items() if k not in TRANSFORM_KEYS}))
            layers.append((TRANSFORM_SOURCE, {k: v for k, v in zoo[0].items() if k in TRANSFORM_KEYS}))
    if tried_size:
        layers.append((TRIED_SIZE_SOURCE, {"input_size": list(tried_size)}))
    if tried_chans:
        layers.append((TRIED_CHANS_SOURCE, {"in_chans": int(tried_chans)}))
    for key in SPEC_KEYS[1:] + ("test_input_size", "test_crop_pct", "label_names", CHANNEL_ORDER):
        _pick(key, layers, spec, source)
    for key, where in hub_sources.items():
        if source.get(key) == f"hub {HUB_CONFIG}":
            source[key] = where
    for key, where in (meta.get(SOURCES_KEY) or {}).items():  # values the file's metadata read from elsewhere in it
        if source.get(key) == "checkpoint":
            source[key] = where
    _constructor_arguments(str(spec["arch"]), meta, spec, source)
    if tcfg and state:
        weights_override(str(spec["arch"]), spec, source, state)
    img_size = (spec.get("model_args") or {}).get("img_size")
    if img_size and source.get("input_size", "").startswith("timm"):
        # timm's ViTs take their size as a constructor argument (and accept no other) but keep their config's size
        spec["input_size"], source["input_size"] = _height_width(img_size), "--model-arg img_size"
        spec.pop("test_input_size", None)
    elif timm_left_out and not img_size and _height_width(spec["input_size"]) != _height_width(tcfg["input_size"]):
        # a size given (--input-size, DeiT's `args.input_size` saved beside the weights) to a timm ViT or Swin, which
        # runs only at the size it is built for: built for it, as `create_model(name, img_size=...)` was to train it
        from .timm_args import takes_image_size
        if takes_image_size(str(spec["arch"])):
            size = _height_width(spec["input_size"])
            spec["model_args"] = {**(spec.get("model_args") or {}), "img_size": size[0] if size[0] == size[1] else size}
            by = "--input-size" if source["input_size"] == "flag" else f"the input size ({source['input_size']})"
            source["model_args"] = by + (
                f" and {source['model_args']}" if source.get("model_args") else "")
    elif torchvision_factory(str(spec["arch"])) and "image_size" not in (spec.get("model_args") or {}) and \
            spec.get("input_size") is not None and torchvision_image_size(str(spec["arch"])) not in (
                None, _height_width(spec["input_size"])[0]):
        # torchvision's ViT at a size given (--input-size 384 takes its SWAG weights' transform): it asserts the size
        # it is built for, `vit_b_16(image_size=384)`
        spec["model_args"] = {**(spec.get("model_args") or {}), "image_size": _height_width(spec["input_size"])[0]}
        source["model_args"] = "--input-size" if source["input_size"] == "flag" else \
            f"the input size ({source['input_size']})"
    if "num_classes" not in spec and ":" in str(spec["arch"]) and not str(spec["arch"]).startswith("transformers:"):
        default = constructor_default(str(spec["arch"]), "num_classes")
        if isinstance(default, int) and not isinstance(default, bool) and default > 0:
            # the constructor's own default; loading the weights strictly then checks it against the file's head
            spec["num_classes"], source["num_classes"] = default, f"default of {spec['arch']}"
        elif state and last_linear(state):
            # torchvision's resnet50(*, weights, progress, **kwargs): no default to read; published code's Net()
            # takes no count at all (its output width is the count), or takes one with no default (WideResNet-pytorch's
            # `WideResNet(depth, num_classes, ...)`). The file's last linear weight's rows, tried: the output's width
            # and loading strictly must then accept them (checkpoint.load), else the usual error
            from ..outputs import class_count
            name, rows = last_linear(state)
            spec["num_classes"], source["num_classes"] = class_count(rows), f"{GUESSED}{name}'s rows"
            if not takes_parameter(str(spec["arch"]), "num_classes") and not takes_keywords(str(spec["arch"])):
                # Net(): its output, not the last registered linear layer,
                source["num_classes"] = f"{GUESSED}{OUTPUT_WIDTH}"  # says the count (checkpoint.output_width)
        elif state and conv_head(state) and (takes_keywords(str(spec["arch"])) or
                                             takes_parameter(str(spec["arch"]), "num_classes")):
            # torchvision's squeezenet1_0(**kwargs): its head a 1x1 convolution to the classes, tried as rows are
            name, channels = conv_head(state)
            spec["num_classes"], source["num_classes"] = channels, f"{GUESSED}{name}'s {CONV_CHANNELS}"
        elif state and not takes_keywords(str(spec["arch"])) and not takes_parameter(str(spec["arch"]), "num_classes"):
            # Net() with no linear layer at all (an all-convolutional head): its output alone says the count
            spec["num_classes"], source["num_classes"] = 0, f"{GUESSED}{OUTPUT_WIDTH}"
    if "num_classes" not in spec and str(spec["arch"]) == TORCH_LAYERS and state:
        # a whole pickled network of torch.nn's layers with no linear layer (an all-convolutional head: a 1x1
        # convolution and a global pool): what it returns for two images says the count (checkpoint.output_width;
        # the 0 is never built with: the rebuilt tree has its own head)
        spec["num_classes"], source["num_classes"] = 0, f"{GUESSED}{OUTPUT_WIDTH}"
    if "num_classes" not in spec:
        raise HardenError(f"{str(path)!r} does not say its number of classes; pass --num-classes.{classes_hint}")
    sized_by = size_parameter(str(spec["arch"])) if "input_size" not in spec and \
        not counts_features(str(spec["arch"])) else None
    given = (spec.get("model_args") or {}).get(sized_by.name) if sized_by is not None else None
    if size_default_of(given):  # --model-arg img_size=64
        spec["input_size"], source["input_size"] = size_default_of(given), f"--model-arg {sized_by.name}"
    elif sized_by is not None and size_default_of(sized_by.default):
        # the constructor's own default size (one it sizes a flatten from, or records): the author's word, not 32x32;
        # a file trained at another size does not fit it, and loading then tries the common sizes (checkpoint.load)
        spec["input_size"], source["input_size"] = size_default_of(sized_by.default), f"default of {spec['arch']}"
    # published code's Net() for MNIST: its first convolution's weight says the image channels (the weights then
    # fit, or loading says which layer does not); an MLP's first linear layer reads channels x H x W
    stem = (first_conv(state) or first_linear_image(state)) if "in_chans" not in spec and state and \
        ":" in str(spec["arch"]) and not str(spec["arch"]).startswith("transformers:") else None
    if stem:
        spec["in_chans"], source["in_chans"] = stem[1], f"checkpoint weights ({stem[0]})"
    image = first_linear_image(state) if "input_size" not in spec and state and ":" in str(spec["arch"]) and \
        not str(spec["arch"]).startswith("transformers:") else None
    if image and image[1] == int(spec.get("in_chans", image[1])):
        # an MLP reads exactly C x H x W values: its side is the image's, not an assumed 32 (sklearn's 8x8 digits)
        spec["input_size"], source["input_size"] = [image[2], image[2]], f"checkpoint weights ({image[0]})"
    for key in ("mean", "std"):
        if key in spec and source.get(key, "").startswith(("timm", TORCHVISION_SOURCE)):
            spec[key] = channel_statistics(spec[key], int(spec.get("in_chans", 3)))
    assumed = []
    for key in SPEC_KEYS:
        if key not in spec:
            spec[key] = DEFAULTS[key]
            source[key] = "default"
            if key in ("input_size", "mean", "std"):
                assumed.append(f"{key} {_show(spec[key])}")
    if assumed:
        what, hint = "no checkpoint metadata, flag or timm config gives the preprocessing", ""
        if library_left_out:
            # timm's (torchvision's) preprocessing is its own weights' at their size, so a given size keeps it out;
            # its statistics are still the likeliest for a file fine-tuned with that library's scripts: named, not
            # taken
            by = flags.get(SIZE_FROM) or ("--input-size" if given_size == "flag" else "the checkpoint's metadata")
            lib, config = ("timm", "config") if timm_left_out else ("torchvision", "weights' transform")
            what = (f"no checkpoint metadata or flag gives the preprocessing, and {lib}'s {config} for {spec['arch']} "
                    f"(its own weights' at their size) is not taken with a size given by {by}")
            cfg = library_left_out
            hint = (f"; a file fine-tuned with {lib}'s scripts takes --mean {','.join(f'{v:g}' for v in cfg['mean'])} "
                    f"--std {','.join(f'{v:g}' for v in cfg['std'])} --interpolation {cfg['interpolation']}")
        flags = ["--input-size"] * ("input_size" in spec and source["input_size"] == "default") + \
            ["--mean", "--std"] * (source.get("mean") == "default") + ["--interpolation", "--crop-pct"]
        inside_said = f"; {source['mean']}" if source.get("mean", "").startswith(INSIDE_SOURCE) else ""
        warn(f"{str(path)!r} ({spec['arch']}): {what}; assuming {', '.join(assumed)}, interpolation "
             f"{spec['interpolation']}, crop fraction {spec['crop_pct']} (pass {', '.join(flags)} to set "
             f"them){inside_said}{hint}.")
    return spec, source


TORCHVISION_SOURCE = "torchvision weights"
SIZE_FROM = "input_size_from"  # beside a size given as a flag by the load itself: what said it (a position embedding)


def torchvision_factory(arch: str) -> str | None:
    """The classification factory's name of a `torchvision.models...:name` architecture (None for anything else)."""
    module, _, name = arch.partition(":")
    if not name or not (module == "torchvision.models" or module.startswith("torchvision.models.")):
        return None
    import torchvision
    return name if name in torchvision.models.list_models(module=torchvision.models) else None


@functools.lru_cache(maxsize=32)
def torchvision_image_size(arch: str) -> int | None:
    """The image side a torchvision factory's network is built for and asserts (its ViTs' `image_size`), read from a
    build on the meta device; None for one that takes any size."""
    from .meta_build import shapes_build
    from .registry import _import_callable
    try:
        net = shapes_build(lambda: _import_callable(arch)(num_classes=2))
    except Exception:  # noqa: BLE001 - a factory that cannot be built so: no size of its own
        return None
    side = getattr(net, "image_size", None)
    return side if isinstance(side, int) and not isinstance(side, bool) else None


def torchvision_config(arch: str, size: int | None = None) -> dict[str, Any] | None:
    """torchvision's evaluation transform for a factory's default weights (ResNet50_Weights.IMAGENET1K_V2: resize
    the shorter side to 232, centre crop 224, bilinear, ImageNet's mean and std), in harden's names: what a model
    fine-tuned from those weights with torchvision's recipes expects, as timm's pretrained config is for timm's. Read
    from the weights' metadata (nothing is downloaded). `size`: the weights it has at that square size instead (the
    default first; ViT_B_16's SWAG weights at 384), None where it has none."""
    name = torchvision_factory(arch)
    if name is None:
        return None
    from torchvision.models import get_model_weights
    try:
        enum = get_model_weights(name)
        weights = enum.DEFAULT if size is None else next(
            (w for w in [enum.DEFAULT, *enum] if int(w.transforms().crop_size[0]) == size), None)
        if weights is None:
            return None
        t = weights.transforms()
        crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
        return {"input_size": [crop, crop], "crop_pct": crop / resize, "crop_mode": "center",
                "interpolation": str(t.interpolation.value), "mean": [float(v) for v in t.mean],
                "std": [float(v) for v in t.std], "weights": f"{type(weights).__name__}.{weights.name}"}
    except (ValueError, KeyError, AttributeError, TypeError, IndexError):  # a factory without classification weights
        return None


def _as_side(size: Any) -> int | None:
    """A square input size's side, as a flag or metadata gives it (384, [384, 384], [3, 384, 384], "384x384")."""
    if isinstance(size, str):
        size = [int(v) for v in size.lower().split("x") if v.strip().isdigit()]
    values = [int(size)] if isinstance(size, (int, float)) else [int(v) for v in size][-2:]
    return values[0] if values and len(set(values)) == 1 else None


def channel_statistics(values: list[float], in_chans: int) -> list[float]:
    """Per-channel statistics given for another channel count (timm's three-channel ImageNet mean, for a model built
    for grayscale): their average, one value for every channel."""
    return list(values) if len(values) in (1, in_chans) else [sum(values) / len(values)]


NORMALISER_SOURCE = "checkpoint buffers"  # mean/std found as a wrapper's buffers beside the weights
INSIDE_SOURCE = "the network normalises its input itself"  # those buffers are the architecture's own
TORCH_LAYERS = "torch-layers"  # torch_layers.ARCH: a whole pickled network of torch.nn's layers, rebuilt
GUESSED = "tried: "  # a source of num_classes that loading must confirm
CONV_CHANNELS = "output channels"  # a count read from an all-convolutional head (conv_head)
OUTPUT_WIDTH = "the network's output width"  # a constructor that takes no count: what its forward returns
TRIED_SIZE_SOURCE = "tried: the smallest common size it runs at"
TRIED_CHANS_SOURCE = "tried: one channel (it runs on no three-channel image of a common size)"
SIZES_TRIED = (28, 32, 64, 96, 112, 128, 160, 192, 224, 256, 288, 299, 320, 384, 448, 512)


# a layer's weight as a state dict holds it: plain, or the tensor it is computed from with its shape, under
# torch.nn.utils' spectral_norm and weight_norm (hooks: weight_orig, weight_v) or their parametrizations
# (parametrizations.weight.original; weight_norm's original1 is v, original0 the norms g)
WEIGHT_FORMS = ("weight", "weight_orig", "weight_v", "parametrizations.weight.original",
                "parametrizations.weight.original1")


def layer_weight(key: str, value: Any, ndim: int) -> bool:
    """Whether `key` holds a layer's weight (or what it is computed from, of its shape) of `ndim` dimensions."""
    return getattr(value, "ndim", 0) == ndim and key.endswith(WEIGHT_FORMS)


def alphabetical(state: dict[str, Any]) -> bool:
    """Whether the keys come in alphabetical order, not the network's: a safetensors file lists its tensors so
    (timm's `blocks.0.0.conv_dw.weight`, a depthwise convolution of one input channel, before `conv_stem.weight`)."""
    keys = list(state)
    return len(keys) > 2 and keys == sorted(keys)


def _natural(key: str) -> tuple:
    """`classifier.6.weight` after `classifier.3.weight`, `blocks.10` after `blocks.9`."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


STEM_NAMES = re.compile(r"(^|[._])(stem|conv_?1|conv_?first|conv0|patch_embed|first)([._]|\d|$)|^features\.0\.",
                        re.IGNORECASE)
HEAD_NAMES = re.compile(r"(^|\.)_?(head|fc|classifier|linear|logits|last_linear|output|out)(\.|$)", re.IGNORECASE)


def last_linear(state: dict[str, Any]) -> tuple[str, int] | None:
    """The file's last 2-D weight and its rows (a classifier is usually last); in a file that lists its keys
    alphabetically, the last of those named as a head (`head.fc`, `classifier.6`), else the last one."""
    linear = [k for k in state if layer_weight(k, state[k], 2)]
    named = [k for k in linear if HEAD_NAMES.search(k.rsplit(".", 1)[0])] if alphabetical(state) else []
    name = max(named, key=_natural) if named else (linear[-1] if linear else None)
    return (name, int(state[name].shape[0])) if name is not None else None


def conv_head(state: dict[str, Any]) -> tuple[str, int] | None:
    """Where the file holds no linear layer: its last 1x1 convolution (the last named as a head where the keys are
    alphabetical) and its output channels: an all-convolutional head, as SqueezeNet's `classifier.1` before a global
    pool, whose channels are the class count."""
    if any(layer_weight(k, v, 2) for k, v in state.items()):
        return None
    convs = [k for k in state if layer_weight(k, state[k], 4) and tuple(state[k].shape[2:]) == (1, 1)]
    if alphabetical(state):
        convs = [k for k in convs if HEAD_NAMES.search(k.rsplit(".", 1)[0]) or "classifier" in k]
        convs = sorted(convs, key=_natural)
    return (convs[-1], int(state[convs[-1]].shape[0])) if convs else None


def first_conv(state: dict[str, Any]) -> tuple[str, int] | None:
    """The file's first 4-D weight and its input channels, where they are an image's (1, 3 or 4): a network's first
    registered convolution is its stem. In a file that lists its keys alphabetically, the stem among its 4-D
    weights: one reading 3 or 4 channels first (a depthwise convolution reads one), then one named as a stem, then
    the least nested."""
    convs = [k for k in state if layer_weight(k, state[k], 4)]
    if alphabetical(state):
        convs = sorted(convs, key=lambda k: (int(state[k].shape[1]) not in (3, 4), not STEM_NAMES.search(k),
                                             k.count("."), _natural(k)))
    name = convs[0] if convs else None
    return (name, int(state[name].shape[1])) if name is not None and int(state[name].shape[1]) in (1, 3, 4) else None


def first_linear_image(state: dict[str, Any]) -> tuple[str, int, int] | None:
    """For a network without convolutions (an MLP on flattened images): its first 2-D weight's inputs read as
    channels x H x W, where exactly one of one or three channels gives a square image of 8 to 512 pixels a side
    (784: 1 x 28 x 28; 3072: 3 x 32 x 32): (what it reads, in words; the channels; the side)."""
    if any(getattr(v, "ndim", 0) == 4 for v in state.values()):
        return None
    # the first matrix the network registers: a recurrent layer's (LSTM's weight_ih_l0, reading rows of pixels) or an
    # embedding's comes before any linear layer's, and the linear layer behind it reads its features, not the image
    matrices = [k for k in state if getattr(state[k], "ndim", 0) == 2 and "weight" in k.rsplit(".", 1)[-1]]
    if alphabetical(state) and all(layer_weight(k, state[k], 2) for k in matrices):
        # listed alphabetically (a safetensors file: `head.weight` before `layers.0.weight`): the linear layer that
        # reads the most inputs, as the first layer of an MLP on flattened images does
        matrices = sorted(matrices, key=lambda k: -int(state[k].shape[1]))
    first = matrices[0] if matrices else None
    name = first if first is not None and layer_weight(first, state[first], 2) else None
    if name is None:
        return None
    features = int(state[name].shape[1])
    fits = [(c, round((features / c) ** 0.5)) for c in (1, 3)]
    fits = [(c, side) for c, side in fits if c * side * side == features and 8 <= side <= 512]
    if len(fits) != 1:
        return None
    c, side = fits[0]
    return f"{name}: {features} inputs, {c} x {side} x {side}", c, side


def _parameters(arch: str) -> dict[str, Any] | None:
    """A `file.py:callable` / `package.module:callable` architecture's parameters (None: no signature to read, as a
    builtin or C callable has none)."""
    import inspect

    from .registry import _import_callable
    try:
        return dict(inspect.signature(_import_callable(arch)).parameters)
    except (TypeError, ValueError):
        return None


# what published constructors call the class and channel counts (harden's names first): `ResNet(n_classes=10)`,
# `Net(in_channels=1)`; a width such as `channels=64` is not among them
ARG_ALIASES = {"num_classes": ("num_classes", "n_classes", "nb_classes", "num_class", "n_class", "classes",
                               "num_labels", "num_outputs",
                               # camelCase, as Torch7 ports write it (bamos' DenseNet(..., nClasses, ...))
                               "nClasses", "numClasses", "nclasses", "nclass"),
               # DeepMind's and RobustBench's WideResNet take `num_input_channels`
               "in_chans": ("in_chans", "in_channels", "in_ch", "input_channels", "n_channels", "inp_channels",
                            "num_input_channels", "img_channels", "image_channels"),
               # a constructor that sizes a layer from it (`nn.Linear(64 * (img_size // 4) ** 2, ...)`) or keeps it
               "input_size": ("input_size", "img_size", "image_size", "input_resolution",
                              # C x H x W, as Keras-minded code sizes its flatten: `c, h, w = input_shape`
                              "input_shape", "in_shape", "img_shape", "image_shape")}


def parameter_for(params, key: str) -> str | None:
    """The name under which a constructor with parameters `params` takes harden's `key` (num_classes, in_chans)."""
    return next((name for name in ARG_ALIASES.get(key, (key,)) if name in params), None)


MAX_SIDE = 512  # an `input_size` int above this is an MLP's flattened length (784 = 28 x 28), not an image side


def size_parameter(arch: str):
    """The parameter (inspect.Parameter) under which a `...:callable` architecture takes its input size (an image
    side, or an MLP's flattened length: counts_features), or None."""
    if ":" not in arch or arch.startswith("transformers:"):
        return None
    params = _parameters(arch)
    name = parameter_for(params, "input_size") if params else None
    return params[name] if name else None


def counts_features(arch: str) -> bool:
    """Whether the architecture's `input_size` is the length of the flattened image (tutorials' MLP:
    `NeuralNet(input_size=784, hidden_size=500, num_classes=10)`): an int default above MAX_SIDE, or no default
    beside a `hidden...` width."""
    import inspect
    param = size_parameter(arch)
    if param is None or param.name != "input_size":
        return False
    default = param.default
    if isinstance(default, int) and not isinstance(default, bool):
        return default > MAX_SIDE
    return default is inspect.Parameter.empty and any(n.startswith("hidden") for n in _parameters(arch) or {})


def size_argument(arch: str, param, size: tuple[int, int], in_chans: int) -> Any:
    """The input size in the form the constructor's default has: C, H, W for a sequence default of three or a shape
    (`input_shape`, the channels harden gives); H, W for one of two; one int for an int default, or for none where
    the size is square (published code writes `img_size // patch_size`); else (H, W).
    An MLP's `input_size` (counts_features) gets C x H x W."""
    import inspect
    h, w = (int(v) for v in size)
    if counts_features(arch):
        return in_chans * h * w
    default = param.default
    if isinstance(default, (list, tuple)) and len(default) == 3 or param.name.endswith("shape") and \
            not (isinstance(default, (list, tuple)) and len(default) == 2):
        return (type(default) if isinstance(default, (list, tuple)) else tuple)([in_chans, h, w])  # C, H, W
    if isinstance(default, (list, tuple)) and len(default) >= 2:
        return type(default)([*default[:-2], h, w])
    if (isinstance(default, int) and not isinstance(default, bool) or default is inspect.Parameter.empty) and h == w:
        return h
    return (h, w)


def size_default_of(value: Any) -> list[int] | None:
    """A constructor's size argument (`224`, `(224, 224)`, `(3, 224, 224)`) as [H, W]; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SIDE:
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) in (2, 3) and all(isinstance(v, int) for v in value):
        return [int(v) for v in value[-2:]]
    return None


def takes_keywords(arch: str) -> bool:
    """Whether a `...:callable` architecture passes on **kwargs (so a class count reaches the class it builds)."""
    params = _parameters(arch)
    return params is not None and any(p.kind == p.VAR_KEYWORD for p in params.values())


def takes_parameter(arch: str, key: str) -> bool:
    """Whether a `...:callable` architecture takes harden's `key` under one of its names (True where that cannot be
    read)."""
    params = _parameters(arch)
    return params is None or parameter_for(params, key) is not None


def constructor_default(arch: str, key: str) -> Any:
    """The default of a `...:callable` architecture's parameter for harden's `key`, under whichever of its names the
    callable uses (None if it has none)."""
    import inspect
    params = _parameters(arch) or {}
    name = parameter_for(params, key)
    param = params.get(name) if name else None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def weights_override(arch: str, spec: dict[str, Any], source: dict[str, str], state: dict[str, Any]) -> None:
    """timm's config gives the class and channel counts of timm's own pretrained weights (1000, 3); a file fine-tuned
    to 10 classes or to grayscale says otherwise in the shapes of the layers timm names as its classifier and first
    convolution. Where timm's config is the only source of a count, those shapes win (and say so): no guess, the
    layer is the one timm names."""
    from timm.models import get_pretrained_cfg

    from ..runtime import warn
    cfg = get_pretrained_cfg(arch)
    for key, layer, dim in (("num_classes", cfg.classifier, 0), ("in_chans", cfg.first_conv, 1)):
        # a count from timm's config, or none at all (a backbone such as DINOv2 has no classifier of its own)
        if not (source.get(key, "").startswith("timm") or key not in spec) or not layer:
            continue
        name = f"{layer[0] if isinstance(layer, (list, tuple)) else layer}.weight"
        found = _named_weight(state, name)
        if found is None or state[found].ndim <= dim or int(state[found].shape[dim]) == int(spec.get(key, -1)):
            continue
        count = int(state[found].shape[dim])
        # timm's own count, also where a given size kept its config out of spec
        timm_count = cfg.num_classes if key == "num_classes" else cfg.input_size[0]
        if count != timm_count:
            warn(f"--{key.replace('_', '-')} {count}, from the shape of the file's {found} (timm's config for {arch} "
                 f"says {timm_count or 'none'}, for timm's own weights).")
        spec[key], source[key] = count, f"checkpoint weights ({found})"


def _named_weight(state: dict[str, Any], name: str) -> str | None:
    """The key for a layer's weight, under any wrapper prefix (`module.`, `model.`); the shortest such key, so that
    a classifier `fc` is not taken from a block's `se.fc`."""
    found = [k for k in state if k == name or k.endswith("." + name)]
    return min(found, key=len) if found else None


def _constructor_arguments(arch: str, meta: dict[str, Any], spec: dict, source: dict) -> None:
    """A Lightning checkpoint's hyper_parameters are its module's constructor arguments (`load_from_checkpoint`
    passes them back): those a `file.py:Class` architecture takes become its model_args, under the ones a flag or
    the metadata gives (the counts and the input size are the spec's, read apart: formats.hyper_parameters). A
    training script's settings object saved beside the weights (`'args': args`) is the argument of the constructor
    that takes it by that name (`Net(args)`), or the one settings-like argument it requires where the file holds one
    such object (`Net(opt)` beside `'args'`); else its fields named as the constructor's parameters are those
    (`args.depth` for `WideResNet(depth, ...)`, `args.heads`, which the weights cannot say), under hyper_parameters,
    never one that fetches, seeds or logs, nor an unset (None) one."""
    saved, objects = meta.get(HYPER_PARAMETERS) or {}, meta.get(SETTINGS) or {}
    beside = meta.get(BESIDE) or {}
    if not (saved or objects or beside) or ":" not in arch or arch.startswith("transformers:"):
        return
    from .args_from_weights import UNTRIED
    params = _parameters(arch) or {}
    counted = {name for names in ARG_ALIASES.values() for name in names}
    given = spec.get("model_args") or {}
    takes = {k: v for k, v in saved.items() if k in params and k not in counted}
    settings = {k: v for k, v in objects.items() if k in params and k not in given}
    unnamed = [p for p in params.values() if p.default is p.empty and p.name not in given and p.name not in settings
               and p.name in SETTINGS_NAMES]
    if not settings and len(objects) == 1 and len(unnamed) == 1:
        settings = {unnamed[0].name: next(iter(objects.values()))}
    if not settings:
        for fields in objects.values():
            for k, v in fields.items():
                if k in params and k not in counted and k not in takes and v is not None and not UNTRIED.search(k):
                    settings.setdefault(k, v)
    # a value saved beside the weights under the name of a parameter (network slimming's pruned `cfg`), last
    entries = {k: v for k, v in beside.items() if k in params and k not in counted and k not in given
               and k not in takes and k not in settings and v is not None and not UNTRIED.search(k)}
    said = (["checkpoint hyper_parameters"] if takes else []) + \
        ([f"the checkpoint's {', '.join(objects)}"] if settings else []) + \
        ([f"the checkpoint's entr{'y' if len(entries) == 1 else 'ies'} {', '.join(entries)}"] if entries else [])
    takes = {**entries, **settings, **takes}
    if takes:
        spec["model_args"] = {**takes, **given}
        source["model_args"] = " and ".join(said) + (f" and {source['model_args']}" if given else "")


SETTINGS_NAMES = ("args", "opt", "opts", "cfg", "config", "hparams", "hyperparameters", "settings", "params")


def _pick(key: str, layers, spec: dict, source: dict) -> None:
    for name, layer in layers:
        if layer.get(key) is not None:
            spec[key], source[key] = layer[key], name
            return


def _show(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v) if all(isinstance(x, int) for x in v) else "/".join(f"{x:g}" for x in v)
    return str(v)
