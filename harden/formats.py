"""Checkpoints that harden did not write: the format found by content (never by extension), the state dict
found inside whatever container holds it, and its keys fitted to the architecture.

- Formats: safetensors (by its header), torch zip files and legacy (pre-1.6) torch pickles, whatever the
  file is called. Torch files go through torch.load(weights_only=True) only: non-tensor entries (epoch,
  optimizer state, scores, a training script's argparse Namespace, numpy scalars: data_only_globals) are read as
  data and never executed. TorchScript archives: torchscript.py; whole pickled models (which name their
  class): pickled_model.py.
- Containers: a top-level state dict, or the one mapping of names to tensors nested inside (under
  `state_dict`, `model`, `net`, `ema`, a Lightning checkpoint's `state_dict`, a list, ...). Several candidates
  are ambiguous: the error lists them and `--key a.b.0` picks one.
- Keys: any prefix in front of the architecture's own keys (`module.` from DataParallel/DDP, `_orig_mod.`
  from torch.compile, a LightningModule's attribute name) is found by matching, not by a list of names;
  BatchNorm buffers `num_batches_tracked` that predate PyTorch 0.4.1 are filled in (that buffer only)."""
from __future__ import annotations

import contextlib
import json
import math
import pickle
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import HardenError, WeightsDoNotFit
from .inert_pickle import Inert

SAFETENSORS = "safetensors"
TORCH_ZIP = "torch zip"
TORCH_LEGACY = "torch legacy pickle"
# Containers people save a model under, most specific first: picked without --key when they hold the only
# candidate, and listed first in the ambiguity message.
USUAL_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "ema", "model_ema",
              "state_dict_ema", "weights", "params")


# container entries that hold training state, never the model's weights
_NOT_WEIGHTS = ("optim", "sched", "scaler", "callbacks", "loops")


def sniff_format(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
        if head[:4] == b"PK\x03\x04":
            return TORCH_ZIP
        if len(head) >= 9:
            (n,) = struct.unpack("<Q", head[:8])
            if 2 <= n <= 100_000_000 and head[8:9] == b"{":
                f.seek(8)
                try:
                    json.loads(f.read(n))
                    return SAFETENSORS
                except (ValueError, UnicodeDecodeError):
                    pass
        if head[:1] == b"\x80":  # pickle protocol 2+: torch's legacy serialization starts with a magic number
            return TORCH_LEGACY
    return "unknown"


def legacy_header(path: Path) -> bool:
    """Whether a pickle file starts as torch's legacy format does (its magic number first), not as a plain pickle."""
    from .inert_pickle import LEGACY_MAGIC, _PlainUnpickler
    try:
        with open(path, "rb") as f:
            return _PlainUnpickler(f).load() == LEGACY_MAGIC
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OverflowError, MemoryError):
        return False


class PickleRefused(HardenError):
    """torch's weights-only unpickler refused a global the file names (a whole pickled model asks for its class)."""


def data_only_globals() -> list:
    """What training scripts leave beside their weights that a pickle rebuilds as plain data, running none of the
    file's code, but that torch's weights-only unpickler refuses by default: argparse's Namespace (timm's and
    torchvision's training scripts save `args`), numpy scalars and arrays (a best accuracy as np.float64), paths
    and dates. Anything else (a model class, a function) is still refused."""
    import argparse
    import datetime
    import pathlib

    import numpy as np
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    allowed: list = [argparse.Namespace, np.ndarray, np.dtype, pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath,
                     pathlib.PurePosixPath, pathlib.PureWindowsPath, datetime.datetime, datetime.date,
                     datetime.time, datetime.timedelta, datetime.timezone]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype, named in numpy 2's pickles
    allowed += [getattr(dtypes, name) for name in getattr(dtypes, "__all__", ())]
    # a file written under numpy 1 names numpy.core, under numpy 2 numpy._core: the same two functions
    for fn in (multiarray.scalar, multiarray._reconstruct):
        allowed += [(fn, f"{module}.multiarray.{fn.__name__}") for module in ("numpy.core", "numpy._core")]
    return allowed


def read_torch(path: Path) -> Any:
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with allow(data_only_globals()) if allow else contextlib.nullcontext(), warnings.catch_warnings():
            # a plain pickle (pickle.dump, not torch.save) of protocol 3+: torch warns before refusing it, and harden
            # reads it inert below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PickleRefused(f"Refused to load {str(path)!r}: it is a pickle that asks to run code or build objects "
                          f"other than tensors and plain data ({_refusal_reason(str(e))}). harden loads "
                          "checkpoints with torch.load(weights_only=True) only. Where you trust the file, save its "
                          "weights once with torch.save(torch.load(path, weights_only=False).state_dict(), "
                          "'weights.pt') (for a whole pickled model) or convert them to .safetensors, and pass "
                          "that file with --arch.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        if "invalid magic number" in str(e).lower():  # a whole plain pickle read as the legacy header: read inert
            raise PickleRefused(f"{str(path)!r} is a plain pickle, not torch's format.") from None
        archive = archive_of_checkpoints(path)
        if archive:
            raise HardenError(f"{str(path)!r} is {archive}") from None
        raise HardenError(f"{str(path)!r} is not a readable PyTorch checkpoint ({str(e)[:200]}).{cut_short(path)}"
                          ) from None


CHECKPOINT_MEMBERS = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".safetensors", ".onnx", ".pt2", ".th", ".npz", ".h5")


def archive_of_checkpoints(path: Path) -> str:
    """Where a file is an archive holding checkpoint files (a download's .zip that is not torch's own zip format, a
    tar gzipped or not: SageMaker's model.tar.gz), or one gzip-compressed file: what it is and how to get at the
    checkpoint; empty otherwise. Members are listed only up to the first four checkpoint-like ones (an error path: a
    large archive is not read through)."""
    import gzip
    import tarfile
    import zipfile
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                return ""  # torch's own format, damaged some other way
            kind, extract = "zip archive", f"unzip {path.name}"
            found = [n for n in names if n.lower().endswith(CHECKPOINT_MEMBERS)]
        elif tarfile.is_tarfile(path):
            kind, extract = "tar archive", f"tar xf {path.name}"
            with tarfile.open(path, "r:*") as tar:
                for i, member in enumerate(tar):
                    if member.isfile() and member.name.lower().endswith(CHECKPOINT_MEMBERS):
                        found.append(member.name)
                    if len(found) > 4 or i >= 2000:
                        break
        else:
            with open(path, "rb") as f:
                if f.read(2) != b"\x1f\x8b":
                    return ""
            with gzip.open(path) as g:
                g.read(1)
            inner = path.name[:-3] if path.name.lower().endswith(".gz") else "the file it holds"
            return f"gzip-compressed, not a checkpoint itself: decompress it (gunzip -k {path.name}) and give {inner}."
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, ValueError):
        return ""
    if not found:
        return ""
    shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
    return f"a {kind} holding {shown}, not a checkpoint itself: extract it ({extract}) and give that file ({found[0]})."


def cut_short(path: Path) -> str:
    """Where a torch zip file lacks its end (the zip directory is written last): said, with what usually caused it."""
    import zipfile
    try:
        with open(path, "rb") as f:
            starts_as_zip = f.read(4) == b"PK\x03\x04"
        if starts_as_zip and not zipfile.is_zipfile(path):
            return (f" It starts as torch's zip format but ends after {path.stat().st_size:,} bytes without the zip's "
                    "directory: the file was cut short (a copy, download or save that did not finish); copy or save "
                    "it again.")
    except OSError:
        pass
    return ""


def container_meta(obj: Any) -> dict[str, Any]:
    """What a training script's container says of its model: timm's train.py and PyTorch's ImageNet example save the
    architecture's name under 'arch'. Taken only where timm knows the name (a flag still wins); torchvision's ResNets
    and timm's share their keys, and any other mismatch is the usual shape error. timm's train.py also saves its
    `args`, whose model and preprocessing options override the model's defaults in timm's own evaluation: read as
    timm reads them."""
    names = class_names(obj)
    found = {"label_names": names} if names else {}
    if not isinstance(obj, dict):
        return found
    found.update(hyper_parameters(obj))
    found.update(settings_objects(obj))
    found.update(beside_the_weights(obj))
    args = settings_fields(obj.get("args")) or {}
    arch = obj.get("arch")
    config = settings_fields(obj.get("config")) or {}
    if not isinstance(arch, str) and settings_fields(config.get("MODEL")) and settings_fields(config.get("DATA")):
        swin = _swin_train_config(config)  # Microsoft's Swin Transformer repository: a yacs CfgNode
        if swin:
            return {**found, **swin}
    if not isinstance(arch, str) and not isinstance(args.get("model"), str):
        return found  # nothing names an architecture (and timm's import, 1.3 s, is not needed)
    import timm
    if isinstance(arch, str) and timm.is_model(arch) and args.get("model") == arch:  # timm's train.py
        return {**found, "arch": arch, **_timm_train_args(args, arch)}
    from .models.config import torchvision_factory
    if not isinstance(arch, str) and isinstance(args.get("model"), str):
        name = next((n for n in (args["model"], f"{args['model']}_224") if timm.is_model(n)), None)
        if name is not None and "nb_classes" in args:
            # DeiT's, MAE's, BEiT's and ConvNeXt's main.py and main_finetune.py: a timm name (MAE's `vit_base_patch16`
            # is timm's at 224), nb_classes, input_size, and MAE's --global_pool for the averaged tokens. Their models
            # are timm's (or registered with timm's create_model in the repository's layout, which timm converts):
            # ConvNeXt's `convnext_tiny` is a torchvision factory's name too, whose layout is another
            return {**found, "arch": name, **_facebook_train_args(args)}
        # torchvision's reference scripts save no 'arch', but their args: the factory's name and the evaluation sizes
        if torchvision_factory(f"torchvision.models:{args['model']}"):
            return {**found, "arch": f"torchvision.models:{args['model']}", **_torchvision_train_args(args)}
        return found
    if not isinstance(arch, str):
        return found
    if torchvision_factory(f"torchvision.models:{arch}"):
        # PyTorch's ImageNet example builds `torchvision.models.__dict__[args.arch]` (timm's ResNets share their keys,
        # its VGGs, MobileNets and EfficientNets do not)
        return {**found, "arch": f"torchvision.models:{arch}"}
    from .models.config import UNKNOWN_ARCH
    # a name of the author's own: not guessed past (checkpoint.arch_from_weights), and said in the error
    return {**found, "arch": arch} if timm.is_model(arch) else {**found, UNKNOWN_ARCH: arch}


SETTINGS_KEYS = ("args", "opt", "opts", "cfg", "config", "hparams", "hyperparameters", "settings")  # a training
# script's settings saved beside the weights (`torch.save({'state_dict': ..., 'args': args}, ...)`: argparse's Namespace)


def settings_objects(obj: dict[str, Any]) -> dict[str, Any]:
    """A training script's settings object saved beside the weights (argparse's Namespace, an EasyDict or a dict under
    `args`, `opt`, `cfg`, ...), its plain values, for a constructor that takes that object (`Net(args)`, reading
    `args.depth`): config.resolve passes it where the constructor names it."""
    from .models.config import SETTINGS
    found = {}
    for key in SETTINGS_KEYS:
        plain = {str(k): list(v) if isinstance(v, tuple) else v for k, v in (settings_fields(obj.get(key)) or {}).items()
                 if isinstance(k, str) and _plain(v)}
        if plain:
            found[key] = plain
    if len(found) != 1:
        return {SETTINGS: found} if found else {}
    # one settings object: its class and channel counts and input size, as Lightning's hyper_parameters give them
    return {SETTINGS: found, **_counts_and_size(next(iter(found.values())))}


def beside_the_weights(obj: dict[str, Any]) -> dict[str, Any]:
    """The plain values a training script saved at its container's top level beside the weights (network slimming's
    `torch.save({'cfg': cfg, 'state_dict': ...})`: the pruned widths its `vgg(cfg=cfg)` is rebuilt with): config
    passes those a `file.py:Class` constructor takes by that name; a group of settings (a dict) is read apart."""
    from .models.config import BESIDE
    found = {k: list(v) if isinstance(v, tuple) else v for k, v in obj.items()
             if isinstance(k, str) and v is not None and not isinstance(v, dict) and _plain(v)}
    return {BESIDE: found} if found else {}


def settings_fields(value: Any) -> dict[str, Any] | None:
    """A settings object's fields: an inert object's attributes (argparse's Namespace pickles its __dict__) or a dict
    subclass's items, a live object's attributes, a dict's items; None for anything else."""
    from .inert_pickle import as_mapping
    if isinstance(value, Inert):
        items = as_mapping(value)
        return items if items is not None else value.fields
    if isinstance(value, dict):
        return value
    return vars(value) if hasattr(value, "__dict__") and not isinstance(value, (torch.Tensor, torch.nn.Module)) \
        else None


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return len(value) <= 64 and all(_plain(v) for v in value)
    if isinstance(value, dict):  # a nested group of settings (`{'act': 'relu'}`)
        return len(value) <= 64 and all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


# where a LightningModule's hyper_parameters name the timm model it builds
ARCH_HPARAMS = ("model_name", "arch", "architecture", "model_arch", "timm_model", "backbone", "model", "net",
                "encoder", "encoder_name")


def hyper_parameters(obj: dict[str, Any]) -> dict[str, Any]:
    """Lightning's `hyper_parameters` (what `save_hyperparameters()` kept of the LightningModule's constructor
    arguments, which `load_from_checkpoint` passes back): its plain values (numbers, strings, lists of them), kept
    for a `file.py:Class` architecture's constructor (config.resolve takes the ones it names), and the class and
    channel counts and the input size among them, under the names published code gives them."""
    from .inert_pickle import as_mapping
    from .models.config import ARCH_HPARAM, HYPER_PARAMETERS
    hp = as_mapping(obj.get(HYPER_PARAMETERS))
    plain = {str(k): list(v) if isinstance(v, tuple) else v for k, v in (hp or {}).items() if _plain(v)}
    if not plain:
        return {}
    out: dict[str, Any] = {HYPER_PARAMETERS: plain}
    import timm
    named = next((k for k in ARCH_HPARAMS if isinstance(plain.get(k), str) and timm.is_model(plain[k])), None)
    if named is not None:  # a LightningModule around `timm.create_model(self.hparams.model_name, ...)`
        out["arch"], out[ARCH_HPARAM] = plain[named], named
    return {**out, **_counts_and_size(plain)}


def _counts_and_size(plain: dict[str, Any]) -> dict[str, Any]:
    """The class and channel counts and the input size among a container's saved settings, under the names published
    code gives them."""
    from .models.config import parameter_for, size_default_of
    out: dict[str, Any] = {}
    for key in ("num_classes", "in_chans"):
        value = plain.get(parameter_for(plain, key) or "")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[key] = value
    size = size_default_of(plain.get(parameter_for(plain, "input_size") or ""))
    if size:
        out["input_size"] = size
    return out


def _facebook_train_args(args: dict[str, Any]) -> dict[str, Any]:
    """The class count, input size, pooling and evaluation transform of a DeiT/MAE/BEiT/ConvNeXt fine-tuning
    script's args: their build_transform resizes by 256/224 up to 224 px (a crop of the whole image above, or
    ConvNeXt's crop_pct), bicubic, and normalises with ImageNet's mean and std (BEiT's with 0.5 unless
    imagenet_default_mean_and_std)."""
    meta: dict[str, Any] = {"interpolation": "bicubic"}
    n, size = args.get("nb_classes"), args.get("input_size")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        meta["num_classes"] = n
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        meta["input_size"] = [size, size]
        crop = args.get("crop_pct")
        meta["crop_pct"] = float(crop) if isinstance(crop, float) and 0 < crop <= 1 else (224 / 256 if size <= 224
                                                                                          else 1.0)
    inception = args.get("imagenet_default_mean_and_std") is False
    meta["mean"] = [0.5, 0.5, 0.5] if inception else [0.485, 0.456, 0.406]
    meta["std"] = [0.5, 0.5, 0.5] if inception else [0.229, 0.224, 0.225]
    if args.get("global_pool") is True:
        meta["model_args"] = {"global_pool": "avg"}
    return meta


SWIN_SIZES = {(96, (2, 2, 6, 2)): "tiny", (96, (2, 2, 18, 2)): "small", (128, (2, 2, 18, 2)): "base",
              (192, (2, 2, 18, 2)): "large"}  # Swin's variants by their embedding width and stage depths


def _swin_train_config(config: dict[str, Any]) -> dict[str, Any]:
    """The architecture, class count and evaluation transform that Microsoft's Swin Transformer repository (and those
    built on it) saves as its yacs `config` beside the weights: MODEL.NAME where it is a timm name (its released
    models' are), else the timm name its MODEL.TYPE, MODEL.SWIN sizes and DATA.IMG_SIZE spell; MODEL.NUM_CLASSES;
    DATA.IMG_SIZE; DATA.INTERPOLATION; its build_transform resizes by 256/224 and crops the centre where TEST.CROP,
    else resizes to the size, with ImageNet's mean and std. Its checkpoints' own layout is converted by timm's."""
    import timm
    model, data, test = (settings_fields(config.get(k)) or {} for k in ("MODEL", "DATA", "TEST"))  # nested CfgNodes
    name = model.get("NAME")
    if not (isinstance(name, str) and timm.is_model(name)):
        swin = settings_fields(model.get("SWINV2" if model.get("TYPE") == "swinv2" else "SWIN")) or {}
        size = SWIN_SIZES.get((swin.get("EMBED_DIM", 96), tuple(swin.get("DEPTHS") or (2, 2, 6, 2))))
        window, side = swin.get("WINDOW_SIZE", 7), data.get("IMG_SIZE", 224)
        names = [f"swin_{size}_patch{swin.get('PATCH_SIZE', 4)}_window{window}_{s}" for s in (side, 224)] \
            if model.get("TYPE", "swin") == "swin" else [f"swinv2_{size}_window{window}_{s}" for s in (side, 256)] \
            if model.get("TYPE") == "swinv2" else []
        name = next((n for n in names if size and timm.is_model(n)), None)
    if name is None:
        return {}
    meta: dict[str, Any] = {"arch": name, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    n, side = model.get("NUM_CLASSES"), data.get("IMG_SIZE")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        meta["num_classes"] = n
    if isinstance(side, int) and not isinstance(side, bool) and side > 0:
        meta["input_size"] = [side, side]
        meta["crop_pct"], meta["crop_mode"] = (224 / 256, "center") if test.get("CROP", True) else (1.0, "squash")
    if data.get("INTERPOLATION") in ("bicubic", "bilinear", "nearest"):
        meta["interpolation"] = data["INTERPOLATION"]
    return meta


def _torchvision_train_args(args: dict[str, Any]) -> dict[str, Any]:
    """torchvision's reference classification script's evaluation options -> harden's names; its presets normalise
    with ImageNet's mean and std whatever the data (its defaults where the size options are missing are those of the
    factory's weights, which torchvision_config gives)."""
    meta: dict[str, Any] = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    crop, resize = args.get("val_crop_size"), args.get("val_resize_size")
    if isinstance(crop, int) and crop > 0:
        meta["input_size"] = [crop, crop]
        if isinstance(resize, int) and resize >= crop:
            meta["crop_pct"] = crop / resize
    if isinstance(args.get("interpolation"), str) and args["interpolation"]:
        meta["interpolation"] = args["interpolation"]
    return meta


# where training scripts keep their class names beside the weights: torchvision's ImageFolder.class_to_idx (the
# classic transfer-learning tutorial's checkpoint), plain lists, OpenMMLab's meta (mmpretrain: dataset_meta.classes;
# mmcls 0.x: CLASSES), Lightning's hyper_parameters
CLASS_NAME_PATHS = (("class_to_idx",), ("classes",), ("class_names",), ("idx_to_class",), ("label_names",),
                    ("meta", "dataset_meta", "classes"), ("meta", "CLASSES"), ("meta", "classes"),
                    ("hyper_parameters", "class_names"), ("hyper_parameters", "classes"))


def class_names(obj: Any) -> list[str] | None:
    """The class names a training container holds (index order), or None; a mapping of names to indices (or
    indices to names) must cover 0..K-1 exactly."""
    for path in CLASS_NAME_PATHS:
        value = obj
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        names = _as_names(value)
        if names:
            return names
    return None


# the input normalisation research code keeps as buffers of a wrapper around the network, beside its weights: Madry
# et al.'s robustness library (normalizer.new_mean / new_std, and attacker.normalize.*), RobustBench-style wrappers
# (mu / sigma, mean / std), OpenMMLab's data_preprocessor and detectron2's pixel_mean / pixel_std (0-255 pixels)
NORMALISER_NAMES = (("new_mean", "new_std"), ("mean", "std"), ("mu", "sigma"), ("pixel_mean", "pixel_std"))


def normaliser_buffers(state: dict[str, Any]) -> tuple[list[float], list[float], list[str]] | None:
    """(mean, std, their keys as 'a.b.mean/std') of per-channel normalisation buffers saved beside the weights (one
    or three values each, any of [C], [C,1,1], [1,C,1,1]; in 0-255 units divided by 255); None where there are none,
    or where two disagree."""
    found: list[tuple[list[float], list[float], str]] = []
    names = dict(NORMALISER_NAMES)
    for key, mean in state.items():
        parent, _, name = key.rpartition(".")
        s = names.get(name)
        if s is not None:  # only a mean's name is looked at: a model's weights are never converted here
            std = state.get(f"{parent}.{s}" if parent else s)
            values = [v.detach().float().flatten() for v in (mean, std)
                      if isinstance(v, torch.Tensor) and v.numel() in (1, 3)]
            if len(values) != 2 or values[0].numel() not in (1, 3) or values[0].numel() != values[1].numel() \
                    or any(v.dim() > 4 or not torch.isfinite(v).all() for v in values) or (values[1] <= 0).any():
                continue
            scale = 255.0 if values[0].max() > 1.5 or values[1].max() > 1.5 else 1.0  # 0-255 pixel units
            found.append(([float(f"{v:.6g}") for v in (values[0] / scale).tolist()],
                          [float(f"{v:.6g}") for v in (values[1] / scale).tolist()], f"{key}/{s}"))
    if not found or any(f[:2] != found[0][:2] for f in found):
        return None
    return found[0][0], found[0][1], [f[2] for f in found]


NORMALISER_KEPT = "kept the architecture's own input normalisation"


def _own_normaliser_kept(own: dict[str, Any], state: dict[str, Any]) -> tuple[str, str] | None:
    """(mean's key, std's key) of the input normalisation buffers the architecture holds and the file lacks, both
    (DeepMind's WideResNet registers `mean` and `std` from its constructor's arguments; files converted from JAX, and
    those saved before the buffers were added, lack them); None where there are none or the file holds either."""
    names = dict(NORMALISER_NAMES)
    for key, mean in own.items():
        parent, _, name = key.rpartition(".")
        s = names.get(name)
        std_key = f"{parent}.{s}" if parent else s
        if s is None or std_key not in own or key in state or std_key in state:
            continue
        if all(isinstance(t, torch.Tensor) and t.numel() in (1, 3) for t in (mean, own[std_key])):
            return key, std_key
    return None


def values_text(values: Any) -> str:
    """A mean's or std's values as the flags take them (0.4914,0.4822,0.4465)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().flatten().tolist()
    return ",".join(f"{float(v):.6g}" for v in values)


def normalises_itself(net: nn.Module) -> str | None:
    """What of a network normalises its input: its own mean/std buffers (not the identity), else a normalising layer
    (normalising_layer); None where nothing does."""
    held = normaliser_buffers(net.state_dict())
    if held and (any(v != 0 for v in held[0]) or any(v != 1 for v in held[1])):
        return f"its buffers {held[2][0]}"
    return normalising_layer(net)


def normalising_layer(net: nn.Module) -> str | None:
    """Where a network holds its input normalisation as a layer whose statistics are plain attributes, not buffers
    (torchvision's `transforms.Normalize` inside an nn.Sequential, adversarial-robustness code's own `Normalize`
    module that keeps `self.mean = torch.tensor(mean)`): "its layer NAME (CLASS: mean ..., std ...)"; None where none.
    The first such layer only, and only a mean and std of one or three positive values. A module of another name
    counts where the pair are plain tensor attributes shaped to broadcast over an image batch's channels ([C, 1, 1]
    or [1, C, 1, 1]: research code's `self.mu = torch.tensor(cifar10_mean).view(1, 3, 1, 1)` beside the layers its
    forward normalises for), which a network holds only to compute with; lists, as Cadene's pretrainedmodels keeps
    the statistics its transform uses, are not taken there."""
    for name, module in net.named_modules():
        named = "normali" in type(module).__name__.lower()
        for pair in LAYER_STATISTICS:
            if not named and not all(_channel_shaped(vars(module).get(attr)) for attr in pair):
                continue
            values = [getattr(module, attr, None) for attr in pair]
            try:
                values = [torch.as_tensor(v, dtype=torch.float32).flatten() for v in values
                          if isinstance(v, (torch.Tensor, list, tuple))]
            except (TypeError, ValueError, RuntimeError):  # a list of something else
                continue
            if len(values) != 2 or any(v.numel() not in (1, 3) or v.is_meta or not torch.isfinite(v).all()
                                       for v in values) or bool((values[1] <= 0).any()):
                continue
            return (f"its layer {name or '(the network)'} ({type(module).__name__}: mean {values_text(values[0])}, "
                    f"std {values_text(values[1])})")
    return None


# a normalising layer's statistics as attributes: torchvision's and most code's, Cohen et al.'s randomized-smoothing
# NormalizeLayer (means, sds), and the names the buffers above go by (Wong et al.'s mu and std among them)
LAYER_STATISTICS = (("mean", "std"), ("means", "sds"), ("means", "stds"), ("mu", "sigma"), ("mu", "std"))


def _channel_shaped(value: Any) -> bool:
    """A tensor of one or three values shaped to broadcast over an image batch's channels."""
    return isinstance(value, torch.Tensor) and tuple(value.shape) in ((1, 1, 1), (3, 1, 1), (1, 1, 1, 1), (1, 3, 1, 1))


def normaliser_consumed(keys: list[str], own: dict[str, Any]) -> bool:
    """Whether the architecture holds these buffers itself (then it normalises inside: they are not the input's)."""
    keys = [k.rpartition("/")[0] for k in keys]
    return any(k == o or k.endswith("." + o) for k in keys for o in own)


def _as_names(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict) and len(value) >= 2:
        items = list(value.items())
        if all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in items):
            by_index = {v: k for k, v in items}  # class_to_idx
        elif all(isinstance(k, (int, str)) and str(k).isdigit() and isinstance(v, str) for k, v in items):
            by_index = {int(k): v for k, v in items}  # idx_to_class
        else:
            return None
        if sorted(by_index) == list(range(len(value))):
            return [by_index[i] for i in range(len(value))]
    return None


def _timm_train_args(args: dict[str, Any], arch: str) -> dict[str, Any]:
    """timm train.py's options -> harden's names. None or '' there means the model's default, and that default is
    filled in here as timm's resolve_data_config fills it (its pretrained config)."""
    from .models.config import channel_statistics, timm_config
    meta: dict[str, Any] = {}
    size = args.get("input_size")
    if args.get("num_classes"):
        meta["num_classes"] = int(args["num_classes"])
    if args.get("in_chans") or size:
        meta["in_chans"] = int(args.get("in_chans") or size[0])
    if size:
        meta["input_size"] = [int(size[1]), int(size[2])]
    elif args.get("img_size"):
        meta["input_size"] = [int(args["img_size"])] * 2
    for key in ("interpolation", "crop_pct", "mean", "std"):
        if args.get(key) not in (None, "", []):
            meta[key] = list(args[key]) if isinstance(args[key], (list, tuple)) else args[key]
    model_args = dict(args.get("model_kwargs") or {})
    if args.get("gp"):
        model_args["global_pool"] = args["gp"]
    if model_args:
        meta["model_args"] = model_args
    if meta:
        filled = {k: v for k, v in (timm_config(arch) or {}).items()
                  if k in ("interpolation", "crop_pct", "crop_mode", "mean", "std") and k not in meta}
        for key in ("mean", "std"):
            if key in filled:
                filled[key] = channel_statistics(filled[key], int(meta.get("in_chans", 3)))
        meta.update(filled)
    return meta


def _refusal_reason(message: str) -> str:
    """The object torch's weights-only unpickler refused (e.g. a whole pickled model's class), not the
    generic first lines of its message (which carry terminal escape codes)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if found:
        return (f"it asks for {found.group(1)}, which a weights-only load never calls; a whole pickled model "
                "asks for its class this way")
    first = re.sub(r"\x1b\[[0-9;]*m", "", message).strip().splitlines()
    return first[0][:200] if first else "no reason given"


def _tensor_dict(obj: Any, arrays: bool = False) -> dict[str, torch.Tensor] | None:
    """A mapping of names to tensors, non-tensor entries dropped (Lightning puts none there, but some
    trainers keep a step counter beside the weights); None when it holds no tensor or has non-str keys. `arrays`:
    numpy's numeric arrays count as tensors (weights converted with `.numpy()` and saved so, as an `.npz` of them
    would be), for a file that holds no tensor dict at all."""
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        return None
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if arrays and not tensors:
        import numpy as np
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in obj.items()
                   if isinstance(v, np.ndarray) and v.dtype.kind in "fiub"}
    return tensors if len(tensors) >= max(1, len(obj) // 2) else None


def candidates(obj: Any, path: str = "", depth: int = 0, arrays: bool = False
               ) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Every place in the container that holds a state dict, as (dotted key, tensors); `arrays` as _tensor_dict."""
    found = []
    sd = _tensor_dict(obj, arrays)
    if sd is not None:
        return [(path, sd)]
    if depth >= 3 or (isinstance(obj, dict) and "param_groups" in obj):  # an optimizer's state, not weights
        return found
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    for k, v in items:
        if isinstance(k, str) and any(w in k.lower() for w in _NOT_WEIGHTS):
            continue
        if isinstance(k, (str, int)):
            found += candidates(v, f"{path}.{k}" if path else str(k), depth + 1, arrays)
    return found


def _module_dicts_flattened(obj: Any) -> dict[str, torch.Tensor] | None:
    """torch-pruning's `tp.state_dict(model)`: {'full_state_dict': {module name: a copy of the module's __dict__},
    'attributions': ...}, a pruned model saved so that its narrower layers can be rebuilt: each module's persistent
    parameters and buffers under the dotted names model.state_dict() gives them. None for any other container."""
    full = obj.get("full_state_dict") if isinstance(obj, dict) and "attributions" in obj else None
    if not isinstance(full, dict):
        return None
    out: dict[str, torch.Tensor] = {}
    for name, fields in full.items():
        if not isinstance(name, str) or not isinstance(fields, dict):
            continue
        transient = fields.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for k, v in dict(fields.get(group) or {}).items():
                if isinstance(v, torch.Tensor) and not (group == "_buffers" and k in transient):
                    out[f"{name}.{k}" if name else k] = v
    return out or None


def select(obj: Any, key: str | None, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside a loaded container; returns (state, where it was found)."""
    if key:
        cur = obj
        for part in key.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, (list, tuple)) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            elif isinstance(cur, dict) and any(isinstance(k, str) and k.startswith(part + ".") for k in cur):
                # a flat state dict's key prefix, as a container level (`model_ema.` beside `model.`)
                cur = {k[len(part) + 1:]: v for k, v in cur.items() if isinstance(k, str) and k.startswith(part + ".")}
            else:
                raise HardenError(f"--key {key!r}: {str(path)!r} has no entry {part!r} there. "
                                  f"{describe(obj)}")
        sd = _tensor_dict(cur)
        sd = _tensor_dict(cur, arrays=True) if sd is None else sd
        if sd is None:
            raise HardenError(f"--key {key!r} in {str(path)!r} does not hold a state dict (a mapping of names to "
                              f"tensors). {describe(obj)}")
        return sd, key
    modules = _module_dicts_flattened(obj)
    if modules is not None:
        return modules, "full_state_dict (torch-pruning's state_dict: each module's parameters and buffers)"
    found = candidates(obj) or candidates(obj, arrays=True)  # numpy arrays only where no tensor dict is held
    if len(found) == 1:
        return found[0][1], found[0][0] or "(top level)"
    if not found:
        raise HardenError(f"{str(path)!r} holds no state dict (no mapping of names to tensors). {describe(obj)}")
    usual = [(k, sd) for k, sd in found if k in USUAL_KEYS[:5]]
    averaged = [k for k, _ in found if _averaged(k)]
    if len(usual) == 1 and all("." not in k for k, _ in found) and not averaged and \
            not any(k in USUAL_KEYS[5:] for k, _ in found):
        return usual[0][1], usual[0][0]
    if all(_same_tensors(found[0][1], sd) for _, sd in found[1:]):
        # one model kept twice (a whole pickled model beside its state_dict()): it does not matter which is taken
        first = min(found, key=lambda c: USUAL_KEYS.index(c[0]) if c[0] in USUAL_KEYS else len(USUAL_KEYS))
        return first[1], f"{first[0]} (the same weights as {', '.join(k for k, _ in found if k != first[0])})"
    why = (f" {', '.join(repr(k) for k in averaged)} {'is' if len(averaged) == 1 else 'are'} an average of the "
           "weights over training (an exponential moving average, which timm's train script and Lightning's EMA "
           "callbacks save beside them, or torch's stochastic weight averaging); it often scores better, and timm's "
           "validate.py takes the plain weights unless --use-ema: harden does not pick for you."
           if averaged and len(averaged) < len(found) else "")
    raise HardenError(f"{str(path)!r} holds several state dicts: "
                      + ", ".join(f"{k!r} ({len(sd)} tensors)" for k, sd in found)
                      + f".{why} Choose one with --key (e.g. --key " + found[0][0] + ").")


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same names, shapes, types and values."""
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k])
                                        for k in a)


def _averaged(key: str) -> bool:
    """Whether a container's key names averaged weights (model_ema, state_dict_ema, ema, swa_model, averaged_model)."""
    import re
    return bool({"ema", "swa", "averaged", "avg", "polyak"} & set(re.split(r"[^a-z]+", key.lower().split(".")[-1])))


def position_grid(net: nn.Module) -> tuple[str, tuple[int, int], int] | None:
    """A ViT's learnt position embedding as built: (its key, the grid of patches it has a row for, the patch side) for
    timm's (`pos_embed`, its patch_embed's grid) and torchvision's (`encoder.pos_embedding`, image_size // patch_size
    a side); None for anything else."""
    pe = getattr(net, "patch_embed", None)
    grid, patch = getattr(pe, "grid_size", None), getattr(pe, "patch_size", None)
    if grid and patch:
        return "pos_embed", (int(grid[0]), int(grid[1])), int(patch[0])
    side, patch = getattr(net, "image_size", None), getattr(net, "patch_size", None)
    if isinstance(side, int) and isinstance(patch, int) and patch > 0 and \
            isinstance(getattr(getattr(net, "encoder", None), "pos_embedding", None), torch.Tensor):
        return "encoder.pos_embedding", (side // patch, side // patch), patch
    return None


def trained_size(net: nn.Module, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> int | None:
    """A ViT's position embedding has one entry per patch (and per class token): a file trained at another image
    size has another count, and that size follows from it and the patch size (square images only). None where the
    counts agree or say no square size."""
    where = position_grid(net)
    if where is None:
        return None
    key, grid, patch = where
    if key not in own or key not in state or own[key].ndim != 3 or state[key].ndim != 3:
        return None
    if own[key].shape[1] == state[key].shape[1]:
        return None
    prefix = int(own[key].shape[1]) - grid[0] * grid[1]  # class/register tokens that carry a position
    cells = int(state[key].shape[1]) - prefix
    side = math.isqrt(max(cells, 0))
    if cells <= 0 or side * side != cells:
        return None
    return side * patch


def trained_size_hint(net: nn.Module, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """trained_size said as a hint for the mismatch error."""
    size = trained_size(net, own, state)
    if size is None:
        return ""
    key = position_grid(net)[0]
    arg = "timm: --model-arg img_size" if key == "pos_embed" else "torchvision: --model-arg image_size"
    return (f" Its {key} has {state[key].shape[1]} positions where the model has {own[key].shape[1]}: the file was "
            f"trained at {size}x{size} ({arg}={size}).")


def stem_hint(net: nn.Module, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """CIFAR training code builds torchvision's or timm's ResNet and swaps its stem for a 3x3 stride-1 convolution
    (and the max-pool for an identity, which no weight shows): the file's first convolution is then 3x3 where the
    architecture's is 7x7."""
    first = next((k for k, v in own.items() if v.ndim == 4), None)
    if first is None or first not in state or state[first].ndim != 4 or own[first].shape == state[first].shape:
        return ""
    k_file, k_model = tuple(state[first].shape[2:]), tuple(own[first].shape[2:])
    if k_file >= k_model or state[first].shape[:2] != own[first].shape[:2]:
        return ""
    conv = first.rsplit(".", 1)[0]
    pool = next((name for name, m in net.named_modules() if isinstance(m, nn.MaxPool2d)), None)
    c_out, c_in = (int(v) for v in state[first].shape[:2])
    swap = f"m.{conv} = nn.Conv2d({c_in}, {c_out}, {k_file[0]}, 1, {k_file[0] // 2}, bias=False)"
    return (f" Its first convolution ({first}) is {k_file[0]}x{k_file[1]} where the architecture's is "
            f"{k_model[0]}x{k_model[1]}: a small-image stem, as CIFAR training code swaps it in. Pass --arch "
            f"file.py:make, where make() builds the network as that code did (e.g. m = <the architecture>; {swap}"
            + (f"; m.{pool} = nn.Identity()" if pool else "") + "; return m).")


def count_hint(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """Where a numbered container of layers holds another number of entries in the file than in the architecture (a
    ViT's `blocks` built with `depth=4` where the name's default is 12, a stage of a ResNet or Swin with other
    depths): said, with the counts, as a constructor argument nothing gave (its name is the code's to say)."""
    def entries(keys) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for key in keys:
            parts = key.split(".")
            for i, part in enumerate(parts[:-1]):
                if part.isdigit() and i:
                    found.setdefault(".".join(parts[:i]), set()).add(int(part))
        return found
    theirs, ours = entries(state), entries(own)
    differ = [(name, theirs[name], ours[name]) for name in ours
              if name in theirs and len(theirs[name]) != len(ours[name])]
    if not differ:
        return ""
    said = "; ".join(f"{name} holds {len(file)} ({min(file)}-{max(file)}) where the architecture's holds {len(arch)}"
                     for name, file, arch in differ[:3])
    vit = f"; a timm ViT built with another depth takes --model-arg depth={len(differ[0][1])}" \
        if len(differ) == 1 and differ[0][0] == "blocks" else ""
    return (f" In the file, {said}{'; ...' if len(differ) > 3 else ''}: the network was built with other depths than "
            "this architecture's (another size of the same family, as resnet34's weights given --arch resnet18, or a "
            f"count its constructor takes, given with --model-arg{vit}).")


def describe(obj: Any) -> str:
    if isinstance(obj, dict):
        parts = [f"{k!r}: {_kind(v)}" for k, v in list(obj.items())[:12]]
        return "It holds {" + ", ".join(parts) + ("" if len(obj) <= 12 else ", ...") + "}."
    return f"It holds a {_kind(obj)}."


def _kind(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}"
    if isinstance(v, dict):
        n = sum(isinstance(x, torch.Tensor) for x in v.values())
        return f"dict of {len(v)}" + (f" ({n} tensors)" if n else "")
    if isinstance(v, (list, tuple)):
        return f"list of {len(v)}"
    return type(v).__name__


# ------------------------------------------------------------------ fitting keys to an architecture

PROFILER_BUFFERS = ("total_ops", "total_params")  # thop.profile's per-module counters


def fit_keys(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], modules: dict[str, nn.Module]
             ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a checkpoint's keys onto the architecture's (`own`). Returns (state, notes on what was done)."""
    notes: list[str] = []
    counters = [k for k in state if k.rsplit(".", 1)[-1] in PROFILER_BUFFERS and k not in own]
    if counters:  # thop.profile registers two buffers on every module, and a model saved after it keeps them
        dropped = set(counters)
        state = {k: v for k, v in state.items() if k not in dropped}
        notes.append(f"dropped {len(counters)} profiler counter(s) ({counters[0]}, ...: thop's total_ops and "
                     "total_params, left by a FLOP count before saving)")
    unwrapped = _inner_wrappers_removed(own, state)
    if unwrapped is not None:
        state = unwrapped
        notes.append("removed the `module.` of submodules wrapped in DataParallel (PyTorch's ImageNet example wraps "
                     "AlexNet's and VGG's `features` alone)")
    copies = full_copies(own, state)
    blocks = _numbered_blocks(copies, state)
    if blocks:
        raise WeightsDoNotFit(
            f"The architecture builds one block of the file's network: its {len(own)} tensors are there "
            f"{len(copies)} times, as the numbered blocks {', '.join(map(repr, copies[:4]))}"
            f"{', ...' if len(copies) > 4 else ''}, and the file holds {len(blocks)} tensors more besides "
            f"({', '.join(blocks[:3])}{', ...' if len(blocks) > 3 else ''}). Give --arch the class or factory that "
            "builds the whole network.")
    if len(copies) > 1 and not _same_values(own, state, copies):  # the robustness library saves one model twice
        shown = ", ".join(repr(c) if c else "(no prefix)" for c in copies)
        raise HardenError(f"The state dict holds {len(copies)} whole copies of the model's weights, under the prefixes "
                          f"{shown} (weights averaged over training, a teacher or a target network beside the model); "
                          "harden does not pick for you. Choose one with --key: the state dict's place in the file, "
                          f"then the prefix (e.g. --key state_dict.{(copies[-1] or copies[0]).rstrip('.')}).")
    if not all(k in state for k in own):
        prefix = find_prefix(own, state)
        if prefix:
            rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            more = _parts_under_other_prefixes(own, state, rest)
            notes.append(f"removed the key prefix {prefix!r}" if not more else
                         f"removed the key prefixes {', '.join(repr(p) for p in [prefix, *more])} (the model's "
                         "parts saved under names of their own)")
            if rest:  # what the file holds beside the model (a temperature, a loss's weights, a second copy)
                few = ", ".join(list(rest)[:3]) + (", ..." if len(rest) > 3 else "")
                notes.append(f"set aside {len(rest)} key(s) of the file outside the model ({few})")
        else:  # the other way round: the architecture holds the saved network under a name of its own (an adapter
            # whose forward(x) calls it as it wants to be called, a wrapper that normalises first)
            inner = find_prefix(state, own)
            if inner and all(inner + k in own for k in state) and all(
                    k.startswith(inner) and (k[len(inner):] in state or k.endswith("num_batches_tracked")) for k in own):
                state = {inner + k: v for k, v in state.items()}
                notes.append(f"added the key prefix {inner!r} (the architecture holds the saved network there)")
    filled = []
    for k in own:
        mod, _, buf = k.rpartition(".")
        if k not in state and buf == "num_batches_tracked" and \
                isinstance(modules.get(mod), nn.modules.batchnorm._BatchNorm):
            state = {**state, k: torch.tensor(0, dtype=torch.long)}
            filled.append(k)
    if filled:
        notes.append(f"filled {len(filled)} BatchNorm num_batches_tracked buffer(s) the file predates")
    kept = _own_normaliser_kept(own, state)
    if kept:
        state = {**state, **{k: own[k] for k in kept}}
        notes.append(f"{NORMALISER_KEPT} {kept[0]}/{kept[1].rpartition('.')[2]}"
                     + ("" if own[kept[0]].is_meta else f" (mean {values_text(own[kept[0]])}, std "
                                                        f"{values_text(own[kept[1]])})")
                     + ", which the file does not hold: its constructor's values (RobustBench loads such files so)")
    if set(state) != set(own):
        converted = _timm_original_layout(modules.get(""), own, state)
        if converted is not None:
            state = converted
            notes.append(f"converted from its original repository's layout by timm's "
                         f"{type(modules['']).__module__}.checkpoint_filter_fn")
    return state, notes


WRAPPER_SEGMENTS = ("module", "_orig_mod")  # DataParallel/DDP and torch.compile keep the wrapped module under these


def _inner_wrappers_removed(own: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
    """The state with the wrapper segments (`features.module.0.weight`) taken out of keys below the top, where the
    architecture has no such segment and the result then fits it (whole, or under one prefix); else None."""
    def inner(key: str) -> str:
        head, *rest = key.split(".")
        return ".".join([head, *(p for p in rest if p not in WRAPPER_SEGMENTS)])

    if all(k in state for k in own) or any(set(k.split(".")[1:]) & set(WRAPPER_SEGMENTS) for k in own):
        return None
    if not any(set(k.split(".")[1:-1]) & set(WRAPPER_SEGMENTS) for k in state):
        return None
    out = {inner(k): v for k, v in state.items()}
    if len(out) != len(state):
        return None
    if all(k in out for k in own):
        return out
    prefix = find_prefix(own, out)
    return out if prefix and all(prefix + k in out for k in own) else None


def _timm_original_layout(net: nn.Module | None, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
                          ) -> dict[str, torch.Tensor] | None:
    """A timm architecture's weights as its original repository saved them (FB's ConvNeXt, OpenAI's or Google's
    ViTs, ...): timm's own checkpoint_filter_fn for the model renames and reshapes them to timm's keys. Taken only
    where the result is exactly the architecture's keys and every tensor keeps its element count (a rename or a
    reshape; never a resampled position embedding, which would hide a size mismatch)."""
    import sys
    from collections import Counter
    if net is None or not type(net).__module__.startswith("timm.models."):
        return None
    convert = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return None
    import warnings
    try:
        with warnings.catch_warnings():  # its resampling's notices, for a result that is not taken (below)
            warnings.simplefilter("ignore")
            out = convert(dict(state), net)
    except Exception:  # timm's converter for other layouts than this file's: not a conversion that applies
        return None
    if not isinstance(out, dict) or set(out) != set(own) or not all(isinstance(v, torch.Tensor) for v in out.values()):
        return None
    counts = Counter(int(v.numel()) for v in state.values() if isinstance(v, torch.Tensor))
    if Counter(int(v.numel()) for v in out.values()) - counts:
        return None
    return out


def _parts_under_other_prefixes(own: dict[str, Any], state: dict[str, Any], rest: dict[str, Any]) -> list[str]:
    """Research code that wraps a model's parts under names of their own (OpenMMLab's `backbone.` and `head.`, an
    `encoder.` and a `classifier.`): after the main prefix, the architecture keys still missing are looked for among
    the file's other keys under one further prefix at a time, same shape required. Adds them to `state`; returns
    the prefixes used."""
    used: list[str] = []
    while rest:
        missing = {k for k in own if k not in state}
        if not missing or len(rest) * len(missing) > 4_000_000:
            break
        counts: dict[str, int] = {}
        for rk, value in rest.items():
            for ok in missing:
                if (rk == ok or rk.endswith("." + ok)) and getattr(value, "shape", None) == getattr(own[ok], "shape", 0):
                    p = rk[: len(rk) - len(ok)]
                    counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], -len(p)))
        taken = [rk for rk in rest if rk.startswith(best) and rk[len(best):] in missing]
        for rk in taken:
            state[rk[len(best):]] = rest.pop(rk)
        used.append(best)
    return used


QAT_MARKS = ("weight_fake_quant.", "activation_post_process.", "fake_quant_enabled", "observer_enabled")


def quantization_hint(unexpected: list[str]) -> str:
    """Where the keys the architecture lacks are torch.ao.quantization's fake-quantize observers: what the file is."""
    if not unexpected or not all(any(m in k for m in QAT_MARKS) or k.endswith((".scale", ".zero_point"))
                                 for k in unexpected):
        return ""
    return (" The extra keys are torch.ao.quantization's fake-quantize observers: a quantization-aware training "
            "checkpoint, whose model rounds its weights and activations to int8. Evaluate the model you deploy: "
            "convert it (torch.ao.quantization.convert) and export it to ONNX with QuantizeLinear/DequantizeLinear, "
            "which harden reads with its rounding passed straight through (BPDA), or give as --arch a function that "
            "returns your network prepared the same way (prepare_qat).")


def full_copies(own: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """The key prefixes ('' included) under which the file holds every one of the architecture's keys at its shape:
    more than one where a state dict keeps a second copy of the model (`model.` and `model_ema.`)."""
    own_keys = set(own)
    counts: dict[str, int] = {}
    for sk, value in state.items():
        parts = sk.split(".")
        for i in range(len(parts)):  # each way of reading the key as prefix + one of the architecture's keys
            rest = ".".join(parts[i:])
            if rest in own_keys and getattr(value, "shape", None) == getattr(own[rest], "shape", 0):
                prefix = ".".join(parts[:i]) + ("." if i else "")
                counts[prefix] = counts.get(prefix, 0) + 1
    return sorted(p for p, n in counts.items() if n == len(own_keys) and own_keys)


def _numbered_blocks(copies: list[str], state: dict[str, Any]) -> list[str]:
    """Where the copies are a container's numbered children (`layer1.0.`, `layer1.1.`, ...: the architecture is one
    block of a larger network, no second model beside the first) and the file holds more than them, the keys of that
    more; else nothing."""
    parts = [c.rstrip(".").split(".") for c in copies]
    if len(copies) < 2 or "" in copies or len({len(p) for p in parts}) != 1:
        return []
    differ = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    if len(differ) != 1 or not all(p[differ[0]].isdigit() for p in parts):
        return []
    return [k for k in state if not k.startswith(tuple(copies))]


def _same_values(own: dict[str, Any], state: dict[str, Any], copies: list[str]) -> bool:
    """Whether every copy holds the same tensors (Madry's robustness library keeps `module.model.` and its attacker's
    `module.attacker.model.`, one model saved twice), so that it does not matter which is taken."""
    return all(torch.equal(state[copies[0] + k], state[c + k]) for c in copies[1:] for k in own
               if isinstance(state[copies[0] + k], torch.Tensor) and isinstance(state[c + k], torch.Tensor))


def find_prefix(own: dict[str, Any], state: dict[str, Any]) -> str:
    """The prefix p such that the checkpoint's keys p+k cover most of the architecture's keys k; '' if none
    does better than no prefix. Finds `module.`, `_orig_mod.`, `model.`, `net.module.`, ... alike."""
    counts: dict[str, int] = {}
    own_keys = set(own)
    for sk in state:
        parts = sk.split(".")
        for i in range(len(parts)):  # each way of reading the key as prefix + one of the architecture's keys
            if ".".join(parts[i:]) in own_keys:
                p = ".".join(parts[:i]) + ("." if i else "")
                counts[p] = counts.get(p, 0) + 1
    if not counts:
        return ""
    best = max(counts, key=lambda p: (counts[p], -len(p)))
    return best if best and counts[best] > counts.get("", 0) else ""


def mismatch_hint(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], notes: list[str]) -> str:
    """Whether a key prefix would fix a mismatch, and what was already tried."""
    done = f" harden already {'; '.join(notes)}." if notes else ""
    return (f"{done} No key prefix makes the file's keys fit (the architecture's keys look like "
            f"{', '.join(sorted(own)[:2])}; the file's like {', '.join(sorted(state)[:2])}): check --arch, or "
            "pick another state dict with --key.")
