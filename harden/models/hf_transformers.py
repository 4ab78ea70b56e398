"""Image classifiers of Hugging Face's transformers library (`ViTForImageClassification`, `ConvNextFor...`,
`SwinFor...`, `ResNetFor...`, ...) as `save_pretrained` and the hub leave them: a folder with `config.json`
(`architectures`, `model_type`, `id2label`), the weights, and `preprocessor_config.json` (the image processor's
size, crop, resampling, mean and std).

The architecture is `transformers:<class name>`, built from the configuration (kept whole in the model's
`model_args`, so every checkpoint harden writes rebuilds it with no folder beside it); its forward takes pixel
values and gives the logits, and its state dict keys are the library's own, so the folder's weights load as saved.
The image processor's steps become harden's transform (timm's names): a fixed height x width is a `squash` resize,
a shortest edge with a centre crop is a `center` crop of that fraction. The pixels then match the processor's to
a grey level (it resizes in floating point, timm's transform in 8 bits), except that where the margin around a
centre crop is odd, timm rounds the crop's offset half to even and the library floors it: one pixel apart."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import HardenError
from .config import SOURCES_KEY

PREFIX = "transformers:"
PROCESSOR_CONFIG = "preprocessor_config.json"
# PIL's resampling numbers, as image processors store them
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")  # what transformers names classes nobody named


def is_transformers_config(cfg: dict[str, Any]) -> bool:
    """transformers' own models; its TimmWrapper (a timm model inside, timm's config keys beside) is read as timm."""
    return (bool(cfg.get("model_type")) and cfg.get("model_type") != "timm_wrapper"
            and isinstance(cfg.get("architectures"), list) and bool(cfg["architectures"]))


def is_transformers_folder(path: Path) -> bool:
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and is_transformers_config(cfg)


def _class_name(path: Path, cfg: dict[str, Any]) -> str:
    """The configuration's model class, refused where its code ships in the folder (auto_map)."""
    cls_name = str(cfg["architectures"][0])
    if cfg.get("auto_map") and not hasattr(_library(), cls_name):
        raise HardenError(f"{str(path)!r} holds a model whose code ships in the folder ({cls_name}, its auto_map: "
                          "transformers' trust_remote_code). harden never runs code that comes with a model; import "
                          "the class into a file of your own and pass --arch file.py:factory with --num-classes.")
    return cls_name


def _library():
    try:
        import transformers
    except ImportError:  # a dependency (pyproject); absent only from a bare environment
        raise HardenError("This is a transformers model; reading it needs the transformers library "
                          "(pip install transformers).") from None
    return transformers


def read_transformers_folder(path: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """config.json (+ preprocessor_config.json) -> harden's metadata names."""
    cls_name = _class_name(path, cfg)
    if not cls_name.endswith("ForImageClassification"):
        raise HardenError(f"{str(path)!r} holds a transformers {cls_name}, not an image classifier (a class "
                          "...ForImageClassification); harden evaluates and hardens classifiers.")
    config = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "_name_or_path")}
    labels = {int(k): str(v) for k, v in (cfg.get("id2label") or {}).items()}
    meta: dict[str, Any] = {"arch": PREFIX + cls_name, "model_args": {"config": config}}
    if labels:
        meta["num_classes"] = max(labels) + 1
        if len(labels) == max(labels) + 1 and not all(DEFAULT_LABEL.match(v) for v in labels.values()):
            meta["label_names"] = [labels[i] for i in range(len(labels))]
    elif cfg.get("num_labels"):
        meta["num_classes"] = int(cfg["num_labels"])
    meta["in_chans"] = int(cfg.get("num_channels", 3))
    processor = path / PROCESSOR_CONFIG
    if processor.is_file():
        try:
            proc = json.loads(processor.read_text())
        except (OSError, ValueError) as e:
            raise HardenError(f"{str(processor)!r} is not readable JSON ({e}).") from None
        meta["model_args"]["processor"] = proc  # kept whole: `harden export` writes it back beside the weights
        settings = processor_preprocess(proc, meta["in_chans"])
        meta.update(settings)
        measured = measure_processor(path, meta)
        if measured.pop("flip_channels", False):
            meta["model_args"]["flip_channels"] = True
        meta.update(measured)
        meta[SOURCES_KEY] = {**{k: PROCESSOR_CONFIG for k in settings},
                             **{k: f"{PROCESSOR_CONFIG}, measured" for k in measured}}
    elif cfg.get("image_size"):  # no processor saved: the model's own input size; mean/std left to the defaults
        size = cfg["image_size"]
        meta["input_size"] = [int(size)] * 2 if isinstance(size, (int, float)) else [int(v) for v in size][-2:]
    return meta


def _hw(value: Any) -> tuple[int, int] | None:
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    if isinstance(value, (int, float)):
        return int(value), int(value)
    return None


def processor_preprocess(proc: dict[str, Any], in_chans: int) -> dict[str, Any]:
    """An image processor's configuration -> input_size, crop_pct, crop_mode, interpolation, mean, std."""
    out: dict[str, Any] = {}
    if proc.get("do_normalize", True) and proc.get("image_mean") is not None:
        out["mean"] = [float(v) for v in _list(proc["image_mean"])]
        out["std"] = [float(v) for v in _list(proc["image_std"])]
    elif not proc.get("do_normalize", True):
        out["mean"], out["std"] = [0.0] * in_chans, [1.0] * in_chans
    resample = proc.get("resample")
    if isinstance(resample, int) and resample in RESAMPLE:
        out["interpolation"] = RESAMPLE[resample]
    size = proc.get("size")
    crop = _hw(proc.get("crop_size")) if proc.get("do_center_crop", "crop_size" in proc) else None
    shortest = size.get("shortest_edge") if isinstance(size, dict) else None
    if proc.get("crop_pct") is not None and shortest:  # ConvNeXt's processor: resize to edge/crop_pct, crop edge
        edge = int(shortest)
        if edge < 384:
            out.update(input_size=[edge, edge], crop_pct=float(proc["crop_pct"]), crop_mode="center")
        else:  # its processor warps to a square at 384 and above, without cropping
            out.update(input_size=[edge, edge], crop_pct=1.0, crop_mode="squash")
    elif shortest and crop:
        out.update(input_size=list(crop), crop_pct=min(crop) / float(shortest), crop_mode="center")
    elif shortest:
        out.update(input_size=[int(shortest)] * 2, crop_pct=1.0, crop_mode="center")
    elif _hw(size):
        out.update(input_size=list(_hw(size)), crop_pct=1.0, crop_mode="squash")
        if crop:  # resized to a fixed size, then cropped: timm's squash mode at that fraction
            out.update(input_size=list(crop), crop_pct=min(crop) / min(_hw(size)))
    return out


def measure_processor(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What the folder's own image processor does to intensities, measured on uniform images: per channel, the
    affine map from [0, 1] pixels to its output (whatever its settings: rescale offsets, EfficientNet's second
    division, defaults the file leaves out) as mean and std, and whether it reverses the channels (MobileViT feeds
    BGR). Its output size must be the input size read from its settings. {} where the library cannot build it."""
    import numpy as np
    transformers = _library()
    from ..runtime import warn
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - a processor class this version lacks: the settings read above stand
        warn(f"transformers {transformers.__version__} cannot build the image processor saved in {str(path)!r} "
             f"({type(e).__name__}: {e}); its settings are used as written, unmeasured.")
        return {}
    c = int(meta.get("in_chans", 3))

    def run(colour, shape=(60, 80)) -> "np.ndarray":
        img = np.broadcast_to(np.asarray(colour, np.uint8), (*shape, 3)).copy()
        if c == 1:
            img = img[..., :1]
        out = processor(images=img, return_tensors="np")["pixel_values"][0]
        return out
    try:
        black, white, red, grey = run((0, 0, 0)), run((255, 255, 255)), run((255, 0, 0)), run((128, 128, 128))
    except Exception as e:  # noqa: BLE001 - whatever the library raises on a plain image: its settings stand
        warn(f"The image processor saved in {str(path)!r} could not be run on a plain image ({type(e).__name__}: "
             f"{e}); its settings are used as written, unmeasured.")
        return {}
    v0 = black.reshape(black.shape[0], -1).mean(1)
    v1 = white.reshape(white.shape[0], -1).mean(1)
    if np.any(np.abs(v1 - v0) < 1e-6):
        raise HardenError(f"The image processor saved in {str(path)!r} maps black and white to the same value.")
    std = 1.0 / (v1 - v0)
    mean = -v0 * std
    predicted = (128 / 255 - mean) / std
    if np.abs(grey.reshape(grey.shape[0], -1).mean(1) - predicted).max() > 2e-2 * np.abs(1 / std).max():
        raise HardenError(f"The image processor saved in {str(path)!r} maps intensities in a way that is not one "
                          "scale and offset per channel; harden's transform cannot reproduce it.")
    out: dict[str, Any] = {}
    r = red.reshape(red.shape[0], -1).mean(1)
    flip = c == 3 and abs(r[2] - v1[2]) < abs(r[2] - v0[2]) and abs(r[0] - v0[0]) < abs(r[0] - v1[0])
    if flip:
        out["flip_channels"] = True
        mean, std = mean[::-1], std[::-1]
    out["mean"] = [round(float(v), 6) + 0.0 for v in mean]  # + 0.0: no -0.0 in the metadata
    out["std"] = [round(float(v), 6) + 0.0 for v in std]
    size = tuple(int(v) for v in black.shape[-2:])
    expected = tuple(meta.get("input_size") or ())
    if expected and size != expected:
        raise HardenError(f"The image processor saved in {str(path)!r} gives {size[0]}x{size[1]} images where its "
                          f"settings read as {expected[0]}x{expected[1]}; pass --input-size, --crop-pct and "
                          "--crop-mode to say how it resizes.")
    if not expected:
        out["input_size"] = list(size)
    out.update(_check_geometry(processor, {**meta, **out}, flip, path))
    return out


GEOMETRY_TOLERANCE = 4 / 255  # mean difference on a smooth pattern: a crop a pixel over stays far below it
CROP_CANDIDATES = [(mode, pct) for mode in ("center", "squash") for pct in (1.0, 0.95, 0.9, 0.875, 0.85, 0.8)]


def _check_geometry(processor, meta: dict[str, Any], flip: bool, path: Path) -> dict[str, Any]:
    """harden's transform, read from the processor's settings, against the processor itself on a smooth, non-square
    pattern (a zoom or crop that differs moves its waves; a crop one pixel over barely does). Where they disagree
    (a processor may resize in ways its settings do not say: LeViT's scales its shortest edge by 256/224), the crop
    fraction and mode that reproduce it are looked for among the usual ones and returned; failing that, a warning."""
    import numpy as np
    from PIL import Image

    from ..data.transforms import Preprocess
    from ..runtime import warn
    c = int(meta.get("in_chans", 3))
    h, w = 150, 200
    yy, xx = np.mgrid[0:h, 0:w] / w
    waves = np.stack([np.sin(2 * np.pi * (5 * xx + 1 * yy)), np.cos(2 * np.pi * (4 * yy - 3 * xx)),
                      np.sin(2 * np.pi * 6 * xx * yy)], -1)
    pattern = np.clip(waves * 100 + 128, 0, 255).astype(np.uint8)
    image = Image.fromarray(pattern[..., 0] if c == 1 else pattern)
    size = tuple(int(v) for v in meta["input_size"])
    interpolation = str(meta.get("interpolation", "bilinear"))
    try:
        theirs = processor(images=np.array(image) if c == 3 else np.array(image)[..., None],
                           return_tensors="np")["pixel_values"][0]
    except Exception as e:  # noqa: BLE001 - the comparison is a check; the values stand as read, and it is said
        warn(f"{str(path)!r}: its image processor failed on a test pattern ({type(e).__name__}: {e}); the crop read "
             "from its settings is used unchecked.")
        return {}
    mean, std = np.asarray(meta["mean"], np.float64), np.asarray(meta["std"], np.float64)
    theirs = theirs[::-1] if flip else theirs
    theirs = theirs * std.reshape(-1, 1, 1)[: theirs.shape[0]] + mean.reshape(-1, 1, 1)[: theirs.shape[0]]

    def gap(mode: str, pct: float) -> float:
        ours = Preprocess(c, size, interpolation, pct, mode).eval_transform()(image).numpy().astype(np.float64) / 255
        return float(np.abs(theirs - ours).mean()) if ours.shape == theirs.shape else float("inf")
    read = (str(meta.get("crop_mode", "center")), float(meta.get("crop_pct", 1.0)))
    first = gap(*read)
    if first <= GEOMETRY_TOLERANCE:
        return {}
    found = min(CROP_CANDIDATES, key=lambda cand: gap(*cand))
    if gap(*found) <= GEOMETRY_TOLERANCE:
        return {"crop_mode": found[0], "crop_pct": found[1]}
    described = Preprocess(c, size, interpolation, read[1], read[0]).describe()
    warn(f"{str(path)!r}: harden's transform read from its image processor's settings ({described}) gives other "
         f"pixels than the processor itself (a mean difference of {first * 255:.1f} grey levels on a test pattern), "
         "and no usual crop fraction matches it: it resizes or crops in a way its settings do not say. Inputs will "
         "differ from the library's unless --input-size, --crop-pct, --crop-mode and --interpolation say how it does.")
    return {}


def _list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


class _Logits:
    """Mixed into the library's class: forward(pixels) -> logits (channels reversed first for a model fed BGR),
    nothing else of its interface changed."""
    flip_channels = False

    def forward(self, x):  # noqa: D401
        if self.flip_channels:
            x = x.flip(1)
        return super().forward(pixel_values=x, return_dict=True).logits


def _no_init_weights():
    """The library's switch that skips random initialisation (its home moved between versions); else nothing."""
    import contextlib
    for module in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            return __import__(module, fromlist=["no_init_weights"]).no_init_weights()
        except (ImportError, AttributeError):
            continue
    return contextlib.nullcontext()


_CLASSES: dict[type, type] = {}


def library_class(net: nn.Module) -> type:
    """The transformers class a model harden built is (its forward-to-logits subclass taken off)."""
    return next(c for c in type(net).__mro__ if c is not _Logits and not c.__module__.startswith(__name__))


def arch_of(net: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """A transformers image classifier of the caller's (models.from_module) as the architecture a checkpoint written
    from it names: `transformers:<class>` with its configuration kept whole, as a model folder's is; None for any
    other of the library's classes."""
    cls = library_class(net)
    transformers = _library()
    if not cls.__name__.endswith("ForImageClassification") or getattr(transformers, cls.__name__, None) is not cls \
            or not hasattr(getattr(net, "config", None), "to_dict"):
        return None
    config = {k: v for k, v in net.config.to_dict().items()
              if k not in ("architectures", "transformers_version", "_name_or_path")}
    return PREFIX + cls.__name__, {"config": config}


def build(arch: str, num_classes: int, in_chans: int, model_args: dict[str, Any]) -> nn.Module:
    transformers = _library()
    cls_name = arch[len(PREFIX):]
    hf_cls = getattr(transformers, cls_name, None)
    if hf_cls is None or not isinstance(hf_cls, type) or not issubclass(hf_cls, nn.Module):
        raise HardenError(f"{arch!r}: transformers {transformers.__version__} has no model class {cls_name!r}.")
    config = dict((model_args or {}).get("config") or {})
    if not config.get("model_type"):
        raise HardenError(f"{arch!r} needs its configuration (the model folder's config.json, kept in model_args).")
    if int(config.get("num_labels", len(config.get("id2label") or {}) or num_classes)) != num_classes:
        config.pop("id2label", None)
        config.pop("label2id", None)
    config["num_labels"] = num_classes
    config["num_channels"] = in_chans
    try:
        cfg = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        cfg.num_labels = num_classes
        with _no_init_weights():  # every weight comes from the checkpoint, loaded strictly after this
            net = hf_cls(cfg)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise HardenError(f"transformers could not build {cls_name} from its configuration: {e}") from None
    if hf_cls not in _CLASSES:  # one subclass per library class (deepcopy and `isinstance` keep working)
        _CLASSES[hf_cls] = type(hf_cls.__name__, (_Logits, hf_cls), {"__module__": __name__})
    net.__class__ = _CLASSES[hf_cls]
    net.flip_channels = bool((model_args or {}).get("flip_channels"))
    return net


# a folder of the ONNX export of a transformers classifier (optimum's, transformers.js's `onnx/` subfolder): the
# graph, read by models/onnx_graph.py, with the folder's configuration and image processor
ONNX_FILES = ("model.onnx", "onnx/model.onnx", "onnx/model_fp16.onnx")
WEIGHT_INDICES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")  # sharded weights
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def onnx_export(path: Path) -> Path | None:
    """The folder's ONNX graph where it holds no torch weights."""
    if any((path / n).is_file() for n in WEIGHT_INDICES + WEIGHT_FILES):
        return None
    return next((path / n for n in ONNX_FILES if (path / n).is_file()), None)


def onnx_hints(path: Path) -> dict[str, Any]:
    """What the configuration says of the input, for a graph whose input shape leaves it open."""
    cfg = json.loads((path / "config.json").read_text())
    hints: dict[str, Any] = {"in_chans": int(cfg.get("num_channels", 3))}
    size = cfg.get("image_size")
    if isinstance(size, (int, float)):
        hints["input_size"] = [int(size)] * 2
    elif isinstance(size, (list, tuple)) and len(size) >= 2:
        hints["input_size"] = [int(v) for v in size][-2:]
    return hints


def weight_files(path: Path) -> list[Path]:
    """The folder's weight files (one, or the shards its index names; or its ONNX graph)."""
    if onnx_export(path) is not None:
        return [onnx_export(path)]
    for index in WEIGHT_INDICES:
        if (path / index).is_file():
            try:
                shards = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as e:
                raise HardenError(f"{str(path / index)!r} is not a readable shard index ({e}).") from None
            return [path / index] + [path / s for s in shards]
    found = [path / n for n in WEIGHT_FILES if (path / n).is_file()]
    if not found:
        raise HardenError(f"The transformers folder {str(path)!r} has config.json but no weights (model.safetensors, "
                          "pytorch_model.bin, or their sharded index).")
    return found[:1]


def read_weights(path: Path) -> dict[str, Any]:
    """The folder's weights in the layout the installed library builds (it renames older layouts as it loads them),
    read by the library itself; every weight of the model must come from the file."""
    import torch
    transformers = _library()
    weight_files(path)  # a clear error when there are none
    cfg = json.loads((path / "config.json").read_text())
    cls_name = _class_name(path, cfg)
    hf_cls = getattr(transformers, cls_name, None)
    if hf_cls is None:
        raise HardenError(f"{str(path)!r}: transformers {transformers.__version__} has no model class {cls_name!r}.")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        try:
            net, info = hf_cls.from_pretrained(str(path), local_files_only=True, dtype=torch.float32,
                                               output_loading_info=True, use_safetensors=None)
        except TypeError:  # transformers 4 names it torch_dtype
            net, info = hf_cls.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32,
                                               output_loading_info=True)
    except HardenError:
        raise
    except Exception as e:  # whatever the library raises for a damaged or foreign folder
        raise HardenError(f"transformers could not read the weights in {str(path)!r} ({type(e).__name__}: {e}).") \
            from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()
    missing = list(info.get("missing_keys") or []) + [str(m[0]) if isinstance(m, (tuple, list)) else str(m)
                                                     for m in info.get("mismatched_keys") or []]
    if missing:
        raise HardenError(f"The weights in {str(path)!r} do not cover the model {cls_name}: {len(missing)} weight(s) "
                          f"missing or of another shape (first: {', '.join(missing[:3])}); the library would fill "
                          "them at random. Check that config.json belongs to these weights.")
    return {k: v.detach() for k, v in net.state_dict().items()}
