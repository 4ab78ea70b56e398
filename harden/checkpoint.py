"""Checkpoints: safetensors (primary, model facts in its metadata), .pt/.pth/.bin state dicts (only through
torch.load(weights_only=True)) and timm hub folders (config.json + model.safetensors or pytorch_model.bin). Saving
is atomic and never overwrites without force."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from .errors import ConstructorFailed, DoesNotRun, HardenError, MissingArguments, WeightsDoNotFit
from .hub_cache import local
from .models import Classifier, create_model, is_known_arch
from .models.registry import CHANNEL_ORDER, arg_text
from .models.config import (ARCH_HPARAM, BESIDE, CONV_CHANNELS, GUESSED, HYPER_PARAMETERS, NORMALISER_SOURCE,
                            OUTPUT_WIDTH, SETTINGS, SIZE_FROM, SIZES_TRIED, SOURCES_KEY, SPEC_KEYS, UNKNOWN_ARCH,
                            hub_weights, is_hub_folder, last_linear, read_hub_config, resolve, size_parameter)
from .outputs import LOGITS_KEY
from .runtime import held_warnings, warn
from .pickled_model import arch_hint, read_pickled_model
from .torchscript import is_torchscript, read_torchscript_weights

FORMAT_VERSION = "1"
SAFETENSORS_EXT = {".safetensors"}
# spec values kept beside the architecture's (in spec.extra, so they travel in the metadata)
CONFIG_EXTRA = ("test_input_size", "test_crop_pct", "label_names", CHANNEL_ORDER)
PATCH_PREFIX = "patch."  # a recipe's added modules; architecture keys stay unprefixed
PICKLED_CLASS = "pickled_class"  # read_checkpoint: the class of a whole pickled model (for --arch's hint; not kept)
SCRIPTED_CLASS = "scripted_class"  # the same for a TorchScript archive's module


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256; for a hub folder, the sha256 of its config's and its weights' digests."""
    path = Path(local(path, "model"))
    if is_hub_folder(path):
        from .models.hf_transformers import is_transformers_folder, weight_files
        weights = weight_files(path) if is_transformers_folder(path) else [hub_weights(path)]
        # each weight file's own digest (a shard's, not its set's; an ONNX export's with its external data)
        parts = [_file_digest(path / "config.json")] + [sha256_file(w) if w.suffix == ".onnx" else _file_digest(w)
                                                        for w in weights]
        return hashlib.sha256("".join(parts).encode()).hexdigest()
    from .sharded_weights import digest_parts, shard_set
    found = shard_set(path) if path.exists() else None
    if found is not None:  # a sharded save, from its folder, its index or a shard: the whole set's digests
        return hashlib.sha256("".join(_file_digest(f) for f in digest_parts(*found)).encode()).hexdigest()
    from .dcp_checkpoint import METADATA, SHARD_EXT, is_dcp_folder
    if is_dcp_folder(path):  # its metadata's and its shards' digests
        shards = sorted(e.name for e in os.scandir(path) if e.name.endswith(SHARD_EXT))
        parts = [_file_digest(path / METADATA)] + [_file_digest(path / n) for n in shards]
        return hashlib.sha256("".join(parts).encode()).hexdigest()
    digest = _file_digest(path)
    from .models.onnx_graph import external_data_files
    data = external_data_files(path)
    if data:  # an ONNX graph whose weights lie in files beside it: they are the model too
        return hashlib.sha256("".join([digest] + [_file_digest(d) for d in data]).encode()).hexdigest()
    return digest


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_readable(path: str | os.PathLike) -> None:
    """The one-paragraph error for a checkpoint that is missing, empty or a folder of neither hub layout (an
    hf:org/name not in the cache included); reads no weights."""
    path = Path(local(path, "model"))
    if not path.exists():
        from .hub_cache import hint
        raise HardenError(f"Checkpoint {str(path)!r} does not exist.{hint(path, 'model')}")
    if path.is_dir():
        from .dcp_checkpoint import is_dcp_folder
        from .sharded_weights import shard_set
        if is_hub_folder(path) or is_dcp_folder(path) or shard_set(path) is not None:
            return
        from .foreign_formats import describe
        if describe(path):
            raise HardenError(describe(path))
        raise HardenError(f"{str(path)!r} is a directory without config.json; give a checkpoint file (.safetensors, "
                          ".pt, .pth or .bin) or a hub folder (config.json + model.safetensors: timm's, or a transformers "
                          "classifier's)." + _weights_inside(path))
    if path.stat().st_size == 0:
        raise HardenError(f"Checkpoint {str(path)!r} is empty (0 bytes); it was probably not written completely.")


WEIGHT_FILE_EXT = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".tar", ".pt2", ".onnx")


def _weights_inside(path: Path) -> str:
    """The files a folder holds that may be the model's weights (accelerate's save_state leaves model.safetensors
    beside optimizer.bin and random_states_0.pkl), named so that the error says which to give."""
    from .hub_cache import NOT_WEIGHTS
    try:
        files = sorted(e.name for e in os.scandir(path) if e.is_file() and e.name.lower().endswith(WEIGHT_FILE_EXT)
                       and not e.name.lower().startswith(NOT_WEIGHTS))
    except OSError:
        return ""
    if not files:
        return ""
    shown = ", ".join(files[:4]) + (", ..." if len(files) > 4 else "")
    return f" It holds {shown}: give the weights file itself ({path / files[0]}), with --arch where it needs one."


def read_checkpoint(path: str | os.PathLike, key: str | None = None, shard_alone: bool = False
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata) without building a model. The format is found by content (see formats.py). A
    shard of a sharded save is read with the rest of its set (sharded_weights.py), unless `shard_alone`."""
    from . import formats
    path = Path(local(path, "model"))
    if not shard_alone and path.exists():
        from .sharded_weights import read_shards, shard_set
        found = shard_set(path)
        if found is not None:
            state, meta = read_shards(*found)
            return formats.select(state, key, path)[0], meta  # as a file's dict: `module.` and EMA copies told apart
    check_readable(path)
    from .dcp_checkpoint import is_dcp_folder, read_dcp
    if is_dcp_folder(path):  # torch.distributed.checkpoint's folder: read as torch.load reads a file
        container = read_dcp(path)
        state, _ = formats.select(container, key, path)
        return state, formats.container_meta(container)
    if path.is_dir():  # a hub folder: its weights file (the config is read by load), and what harden kept in it
        from .models.config import hub_record
        from .models.hf_transformers import is_transformers_folder, onnx_export, onnx_hints, read_weights
        record = hub_record(path)
        if is_transformers_folder(path):
            if onnx_export(path) is not None:  # its ONNX export: the graph is the architecture, the rest the folder's
                from .models.onnx_graph import read_onnx
                return read_onnx(onnx_export(path), onnx_hints(path))
            return read_weights(path), record
        state, meta = read_checkpoint(hub_weights(path), key)
        return state, {**record, **meta}
    kind = formats.sniff_format(path)
    if kind == formats.SAFETENSORS:
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                raw_meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise HardenError(f"{str(path)!r} is not a readable safetensors file ({e}). It may be truncated or "
                              "corrupted; re-export it from the training run.") from None
        return state, decode_meta(raw_meta)
    if kind == formats.TORCH_ZIP:
        from .models.exported_program import looks_like_exported_program, read_exported_program
        if looks_like_exported_program(path):  # torch.export's archive: the program is the architecture
            return read_exported_program(path)
    if kind == formats.TORCH_ZIP and is_torchscript(path):
        state, scripted = read_torchscript_weights(path)
        return state, {SCRIPTED_CLASS: scripted}
    from .foreign_formats import describe, npz_state_dict
    arrays = npz_state_dict(path) if kind == formats.TORCH_ZIP else None
    if arrays is not None:  # np.savez of a state dict's arrays
        return arrays, {}
    if kind == formats.TORCH_ZIP:
        from .foreign_formats import _npz_members
        from .jax_vit import read_jax_vit
        converted = read_jax_vit(path, _npz_members(path))  # Google's JAX ViT .npz: the timm ViT it describes
        if converted is not None:
            return converted
    if kind == formats.TORCH_ZIP and describe(path, by_name=False):  # a Keras 3 archive is a zip too
        raise HardenError(describe(path, by_name=False))
    if kind in (formats.TORCH_ZIP, formats.TORCH_LEGACY):
        classes: list[str] = []
        architectures: list = []
        try:
            container = formats.read_torch(path)
        except formats.PickleRefused:  # a whole pickled model, read without running it (zip or legacy format)
            if kind == formats.TORCH_LEGACY and not formats.legacy_header(path) and describe(path):
                # a plain pickle that another framework names (PaddlePaddle's .pdparams: numpy arrays in its own
                # layouts, a Linear's weight transposed), said rather than read as torch weights
                raise HardenError(describe(path)) from None
            container, classes, architectures = read_pickled_model(path)
        except HardenError:
            if describe(path):  # a pickle torch cannot read that another framework names (PaddlePaddle's .pdparams)
                raise HardenError(describe(path)) from None
            raise
        state, _ = formats.select(container, key, path)
        meta = formats.container_meta(container)
        if classes:
            meta[PICKLED_CLASS] = classes[0]
        if len(architectures) == 1 and architectures[0] is not None:
            meta.update(architectures[0])  # one model that says its architecture (timm, torchvision, torch.nn's layers)
        return state, meta
    from .models.onnx_graph import looks_like_onnx, read_onnx
    if looks_like_onnx(path):
        return read_onnx(path)
    if describe(path):  # another framework's model, named with the way to ONNX where there is one
        raise HardenError(describe(path))
    from .file_kinds import what_path_is
    what = what_path_is(path)
    if what:  # a Git LFS pointer (a model repository cloned without LFS), a web page saved as the file
        raise HardenError(f"{str(path)!r} is {what}; it holds no model's weights.")
    if path.suffix.lower() in SAFETENSORS_EXT:
        raise HardenError(f"{str(path)!r} is not a readable safetensors file (no valid header). It may be "
                          "truncated or corrupted; re-export it from the training run.")
    archive = formats.archive_of_checkpoints(path)
    if archive:  # a model.tar.gz (SageMaker's artifact), a tar or a gzipped checkpoint
        raise HardenError(f"{str(path)!r} is {archive}")
    raise HardenError(f"{str(path)!r} is neither a safetensors file, a PyTorch checkpoint (zip or legacy pickle), a "
                      "torch.export program (.pt2) nor an ONNX model; harden reads those, whatever the file is called.")


def decode_meta(raw: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            meta[k] = v
    return meta


def encode_meta(meta: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in meta.items() if v is not None}


def _classes_hint(state: dict[str, torch.Tensor]) -> str:
    """What the weights say of the class count: the rows of the last 2-D weight (a classifier is usually last)."""
    found = last_linear(state)
    if found is None:
        from .models.config import conv_head
        head = conv_head(state)  # an all-convolutional head (SqueezeNet's)
        return f" Its last 1x1 convolution, {head[0]}, has {head[1]} output channels: --num-classes {head[1]} if " \
            "that layer is the classifier." if head else ""
    name, rows = found
    return f" Its last linear weight, {name}, has {rows} rows: --num-classes {rows} if that layer is the classifier."


def arch_from_weights(state: dict[str, torch.Tensor], num_classes: int | None, path: str | os.PathLike | None = None
                      ) -> tuple[dict[str, Any] | None, list[str] | None]:
    """(metadata to load a plain state dict with, the timm names found) where no --arch was given: the one
    torchvision factory or timm model whose weights have exactly its names and shapes (torchvision_match,
    timm_match.the_one_fitting), where no other of either library's has them. None where several do: models built
    alike may differ in their preprocessing (a DeiT's and a ViT's weights: ImageNet's statistics or 0.5; timm's
    ResNet-50 and torchvision's: their resize and crop) or in their forward (TensorFlow's padding in
    `tf_efficientnet_b0`), so --arch must choose, unless the file's path names one of those timm models and no
    torchvision factory fits. Where none fits, a timm model the path names whose converter turns the weights, as its
    original repository saved them, into exactly its own (timm_match.converted_from_original)."""
    from .models.config import conv_head
    found = last_linear(state) or conv_head(state)
    if found is None:
        return None, None
    from .models.timm_match import index_known, the_one_fitting
    from .models.torchvision_match import factories_fitting, factories_fitting_under_prefixes
    factories = factories_fitting(state, found[1]) or factories_fitting_under_prefixes(state, found[1])[0]
    if factories:
        from types import SimpleNamespace

        from .models.torchvision_match import factory_shapes, transforms_its_input
        # timm's twins of the factory's own keys (the file's may be under OpenMMLab's `backbone.` and `head.`); no
        # index: no twin can be ruled out; GoogLeNet and Inception-v3 re-normalise their input where fine-tuned from
        # ImageNet weights (`transform_input`), which their weights do not say
        own = {k: SimpleNamespace(shape=shape) for k, shape in factory_shapes(factories[0], found[1])}
        if len(factories) > 1 or not index_known() or transforms_its_input(factories[0], found[1]) \
                or the_one_fitting(own, found[1])[1]:
            return None, None
        arch, fitting = f"torchvision.models:{factories[0]}", []
        said = (f"its weights have exactly the names and shapes of torchvision's {factories[0]}, and of no other timm "
                "or torchvision model")
    else:
        from .models.timm_match import chosen_by_path, converted_from_original
        name, fitting = the_one_fitting(state, found[1])
        where = str(path) if path is not None else None
        if name is not None:
            said = (f"its weights have exactly the names and shapes of timm's {name}, and of no other timm or "
                    "torchvision model")
        elif len(fitting) > 1:
            name = chosen_by_path(fitting, where)
            said = (f"its weights have exactly the names and shapes of timm's {', '.join(fitting)} (built alike) and "
                    f"its path names {name}")
        else:
            name = converted_from_original(state, found[1], where)
            said = (f"its path names timm's {name}, whose converter (timm's checkpoint_filter_fn) turns its weights, "
                    f"as {name}'s original repository saved them, into exactly that model's names and shapes")
        if name is None:
            return None, fitting or None
        arch = name
    meta = {"arch": arch, SOURCES_KEY: {"arch": said}}
    if num_classes is None:
        meta["num_classes"] = found[1]
        meta[SOURCES_KEY]["num_classes"] = f"the {found[1]} outputs of its classifier, {found[0]}"
    return meta, fitting


def _factories_hint(state: dict[str, torch.Tensor], path: str | os.PathLike | None = None,
                    timm_names: list[str] | None = None) -> str:
    """Which torchvision factories build exactly these weights (names and shapes), for the missing --arch; else those
    whose names they have, built with other arguments that a search reads from the weights (of `path`)."""
    from .models.config import conv_head
    found = last_linear(state) or conv_head(state)
    if found is None:
        return ""
    from .models.torchvision_match import factories_fitting, factories_fitting_under_prefixes
    names, prefixes = factories_fitting(state, found[1]), []
    if not names:
        names, prefixes = factories_fitting_under_prefixes(state, found[1])
    if not names:
        from .models.torchvision_match import classes_named_alike, factories_named_alike
        # a torchvision family's names at other widths or depths: its own search says more than timm's models
        factories = factories_named_alike(state, found[1])
        classes = None if factories else classes_named_alike(state, found[1])
        return (not (factories or classes) and _timm_models_hint(state, found[1], path, timm_names)) or (
            _built_otherwise_hint(state, found[1], path, factories, classes) if path is not None else "")
    shown = " or ".join(f"--arch torchvision.models:{n}" for n in names[:3])
    under = f" (under the key prefixes {', '.join(repr(p) for p in prefixes)}, which a load removes)" if prefixes else ""
    import timm

    from .models.torchvision_match import transforms_its_input
    twin = any(timm.is_model(n) for n in names[:3])  # timm's resnet18 has torchvision's names and shapes
    inside = (" Fine-tuned from torchvision's ImageNet weights, it re-normalises its input inside, which its weights "
              "do not say: add --model-arg transform_input=true then." if transforms_its_input(names[0], found[1])
              else "")
    return (f" Its weights have exactly the names and shapes of torchvision's {', '.join(names[:3])}{under}: {shown}"
            + (" (timm's model of the same name may fit them too, with its own preprocessing)." if twin else ".")
            + inside)


HINT_SECONDS = 5.0  # searches for an error's hint start within this time


def _timm_models_hint(state: dict[str, torch.Tensor], rows: int, path: str | os.PathLike | None,
                      names: list[str] | None = None) -> str:
    """The timm models whose weights have exactly these names and shapes (timm_match.py: those named in the path,
    then those of the timm modules whose layer names the weights use, built within HINT_SECONDS); `names`: a search
    made already (arch_from_weights)."""
    from .models.timm_match import shared_prefix, timm_models_fitting
    if names is None:
        names = timm_models_fitting(state, rows, str(path) if path is not None else None, HINT_SECONDS)
    if not names:
        return ""
    which = (f"timm's {names[0]}" if len(names) == 1 else
             f"timm's {', '.join(names[:3])} (built alike; their preprocessing, timm's config of each name, or their "
             "forward may differ)")
    prefix = shared_prefix(state)
    under = f" (under the key prefix {prefix!r}, which a load removes)" if prefix else ""
    return (f" Its weights have exactly the names and shapes of {which}{under}: "
            + " or ".join(f"--arch {n}" for n in names[:3]) + f" --num-classes {rows}.")


def _built_otherwise_hint(state: dict[str, torch.Tensor], rows: int, path: str | os.PathLike, factories: list[str],
                          classes: list[str] | None) -> str:
    """The torchvision factories whose names the weights have (`factories`: factories_named_alike's), each with the
    arguments the search reads from the weights (a MobileNetV2 saved from `mobilenet_v2(width_mult=0.5)`); else the
    classes whose family's names they have but for their numbers (`classes`: classes_named_alike's, found here where
    None), the same way: "" where none is found so."""
    import time

    from .models.torchvision_match import classes_named_alike
    start = time.perf_counter()

    def found_for(candidates) -> list[str]:
        out = []
        for arch, what in candidates:
            if time.perf_counter() - start > HINT_SECONDS:  # a search that finds nothing stops by itself, an error waits
                break
            try:
                with held_warnings():
                    got = _arguments_from_weights(path, {"arch": arch, "num_classes": rows})
            except HardenError:
                got = None
            if got:
                args = " ".join(f"--model-arg {k}={arg_text(v)}" for k, v in got[0].items())
                out.append(f"{what} built with {', '.join(f'{k}={v!r}' for k, v in got[0].items())} (--arch {arch}, "
                           f"whose arguments harden reads from the weights, or {args} with it)")
        return out
    # ResNet-50's names are ResNeXt-50's and Wide ResNet-50's too: three at most
    fitting = found_for((f"torchvision.models:{n}", f"torchvision's {n}") for n in factories[:3]) \
        or found_for((a, f"torchvision's {a.rpartition(':')[2]} class at other depths,")
                     for a in (classes if classes is not None else classes_named_alike(state, rows))[:2])
    return f" Its weights have the names of {' and of '.join(fitting)}." if fitting else ""


def _scripted_hint(cls: str) -> str:
    """--arch for a TorchScript archive of `cls`, and the formats that carry the network itself."""
    return (arch_hint([cls], "is a TorchScript archive of a") + " A network exported with torch.export (.pt2) or to "
            "ONNX needs no --arch: harden reads those graphs as they are (TorchScript's code it would have to run).")


def _merge_spec(meta: dict[str, Any], overrides: dict[str, Any], path: Path, state: dict[str, torch.Tensor],
                normaliser: tuple | None = None, tried_size: list[int] | None = None,
                tried_chans: int | None = None, inside: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(spec, where each value came from): flags, the checkpoint's metadata, a hub folder's config.json, timm's
    pretrained config, defaults (models/config.py)."""
    from .models import exported_program, onnx_graph, torch_layers
    if overrides.get("arch") and meta.get("arch") and overrides["arch"] != meta["arch"] and "model_args" in meta \
            and (meta.get(PICKLED_CLASS) or meta["arch"] in (onnx_graph.ARCH, exported_program.ARCH, torch_layers.ARCH)):
        # the constructor arguments of the architecture the file describes itself (its tree of layers, its graph, a
        # pickled ViT's img_size) are not --arch's
        meta = {k: v for k, v in meta.items() if k != "model_args"}
    for k, v in overrides.items():
        if v is not None and meta.get(k) is not None and _norm(meta[k]) != _norm(v):
            warn(f"--{k.replace('_', '-')} {v} overrides the checkpoint's metadata ({meta[k]}).")
    hub = read_hub_config(path) if is_hub_folder(path) else None
    timm_names = None
    if overrides.get("arch") is None and meta.get("arch") is None and hub is None and not meta.get(PICKLED_CLASS) \
            and not meta.get(SCRIPTED_CLASS) and not meta.get(UNKNOWN_ARCH):
        found, timm_names = arch_from_weights(state, overrides.get("num_classes"), path)
        if found is not None:
            library = "torchvision's" if found["arch"].startswith("torchvision.models:") else "timm's"
            warn(f"{str(path)!r} does not say its architecture, and {found[SOURCES_KEY]['arch']}: loaded as "
                 f"{found['arch']}, with {library} preprocessing for it (--arch, --mean, --std or --input-size say "
                 "otherwise).")
            meta = {**meta, **found, SOURCES_KEY: {**(meta.get(SOURCES_KEY) or {}), **found[SOURCES_KEY]}}
    if overrides.get("arch") is None and meta.get("arch") is None and hub is None:
        missing = "architecture" + (" and number of classes" if overrides.get("num_classes") is None else "")
        why = ("its TorchScript code is not run" if meta.get(SCRIPTED_CLASS) else "a pickled model's code is not run"
               if meta.get(PICKLED_CLASS) else f"its 'arch', {meta[UNKNOWN_ARCH]!r}, is no timm or torchvision name"
               if isinstance(meta.get(UNKNOWN_ARCH), str) else "a plain state dict has no metadata")
        raise HardenError(f"{str(path)!r} does not say its {missing} ({why}); pass "
                          "--arch" + (" and --num-classes" if overrides.get("num_classes") is None else "")
                          + ". The preprocessing (--input-size, --mean, --std, --interpolation, --crop-pct) comes "
                          "from timm's config for a timm name, else give it too."
                          + (_classes_hint(state) if overrides.get("num_classes") is None else "")
                          + (arch_hint([meta[PICKLED_CLASS]]) if meta.get(PICKLED_CLASS) else
                             _scripted_hint(meta[SCRIPTED_CLASS]) + _factories_hint(state) if meta.get(SCRIPTED_CLASS)
                             else _factories_hint(state, path, timm_names)))
    arch = overrides.get("arch") or meta.get("arch") or hub["arch"]
    if not is_known_arch(str(arch)):
        from .models.registry import _build_net, ModelSpec  # raises the detailed message
        _build_net(ModelSpec(arch=str(arch), num_classes=2))
    return resolve(overrides, meta, hub, path, _classes_hint(state), state, normaliser, tried_size, tried_chans, inside)


CHANNEL_ORDERS = ("rgb", "bgr")


def _set_channel_order(model: Classifier, flag: str | None, sources: dict[str, str], path: Path) -> None:
    """--channel-order over the checkpoint's metadata over RGB; BGR only for a three-channel network."""
    saved = model.spec.extra.get(CHANNEL_ORDER)
    if flag is not None:
        flag = flag.lower()
        if flag not in CHANNEL_ORDERS:
            raise HardenError(f"--channel-order takes {' or '.join(CHANNEL_ORDERS)}, got {flag!r}.")
        if saved and saved != flag:
            warn(f"--channel-order {flag} overrides the checkpoint's metadata ({saved}).")
        model.spec.extra[CHANNEL_ORDER] = flag
    order = model.spec.extra.get(CHANNEL_ORDER, "rgb")
    if order == "rgb":
        model.spec.extra.pop(CHANNEL_ORDER, None)  # the default is not written
    elif model.spec.in_chans != 3:
        raise HardenError(f"{str(path)!r}: channel order {order} needs a three-channel network; this one takes "
                          f"{model.spec.in_chans}.")
    if flag is not None:
        sources["channel_order"] = "flag"
    elif saved:  # the metadata's, or what config.resolve found it in
        sources.setdefault("channel_order", "checkpoint")


def in_pixel_units(mean, std) -> tuple[list[float] | None, list[float] | None]:
    """--mean and --std given in 0-255 units (OpenMMLab's and detectron2's `mean=[123.675, 116.28, 103.53]`, Caffe's
    `mean=[103.94, 116.78, 123.68], std=[1, 1, 1]`): in the [0, 1] pixel units harden's normalisation takes, with a
    warning. No statistic of [0, 1] pixels exceeds 1, so one value above 1 says the units of both flags given
    together (Caffe's std of 1 is 1/255 of a pixel)."""
    given = {name: [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
             for name, values in (("mean", mean), ("std", std)) if values is not None}
    if not given or max(max(v) for v in given.values()) <= 1.0:
        return given.get("mean"), given.get("std")
    scaled = {name: [v / 255.0 for v in values] for name, values in given.items()}
    warn(" and ".join(f"--{name} {','.join(f'{v:g}' for v in given[name])}" for name in given)
         + f" {'are' if len(given) > 1 else 'is'} in 0-255 units: taken as "
         + " and ".join(','.join(f'{v:.4g}' for v in scaled[name]) for name in given)
         + " (harden's pixels are in [0, 1]).")
    return scaled.get("mean"), scaled.get("std")


def output_width(spec: dict[str, Any], logits_key: str | None) -> int | None:
    """The class count of a constructor that takes none (published code's `Net()`): the width of what its forward
    returns for two images, at the assumed size or the smallest common one it runs at. A network that registers a
    layer after its classifier (a spatial transformer's localisation head) has another last linear layer, so the
    file's last 2-D weight cannot say it. None where no size runs or the output is not N x K scores."""
    from .models.registry import ModelSpec, _build_net
    from .outputs import _at, class_count
    try:
        net = _build_net(ModelSpec(arch=str(spec["arch"]), num_classes=int(spec["num_classes"]),
                                   in_chans=int(spec["in_chans"]), model_args=dict(spec["model_args"] or {}))).eval()
    except HardenError:
        return None
    own = [int(v) for v in _as_list(spec["input_size"])][-2:]
    for size in [tuple(own), *((s, s) for s in SIZES_TRIED)]:
        try:
            with torch.no_grad():
                out = net(torch.zeros(2, int(spec["in_chans"]), *size))
            if logits_key is not None:
                out = _at(out, logits_key)
        except (RuntimeError, ValueError, TypeError, IndexError, AssertionError, LookupError, AttributeError):
            continue  # a size it does not run at (a flatten before a linear layer: torch's layers, timm's asserts)
        if isinstance(out, torch.Tensor) and out.shape[0] == 2 and (out.ndim == 2 or out.shape[2:] == (1, 1)):
            return class_count(int(out.shape[1])) if out.shape[1] >= 1 else None
        return None
    return None


def size_it_runs_at(spec: dict[str, Any], logits_key: str | None, state: dict[str, Any] | None = None
                    ) -> list[int] | None:
    """The smallest of the common square input sizes at which the network returns its class scores, for one that
    does not run at the assumed size (published code's `x.view(-1, 7*7*64)` before a linear layer fixes the size its
    file was trained at). A constructor that takes the size (`Net(img_size=64)`, whose flatten it sizes) is built at
    each size, and the size must also be one the file's weights fit (`state`). None where none does."""
    from .models.config import size_parameter
    from .models.lazy import shape_lazy_layers
    from .models.registry import ModelSpec, _build_net
    from .outputs import attach_scores
    rebuilt = size_parameter(str(spec["arch"])) is not None

    def net_at(size: int | None) -> torch.nn.Module:
        sized = {"input_size": (size, size)} if size else {}
        net = _build_net(ModelSpec(arch=str(spec["arch"]), num_classes=int(spec["num_classes"]),
                                   in_chans=int(spec["in_chans"]), model_args=dict(spec["model_args"] or {}), **sized))
        if state is not None:
            shape_lazy_layers(net, state)
        return net
    try:
        net = None if rebuilt else net_at(None)
    except HardenError:
        return None
    for size in SIZES_TRIED:
        try:
            at = net_at(size) if rebuilt else net
            attach_scores(at, int(spec["num_classes"]), int(spec["in_chans"]), (size, size), logits_key)
        except DoesNotRun as e:
            if not e.size_may_help:  # it runs at this size, on one image only: that is what to say
                raise
            continue
        except HardenError:
            continue
        if rebuilt and state is not None and not weights_fit(at, state):
            continue
        return [size, size]
    return None


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [float(x) for x in v]
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def refuse_non_finite(state: dict[str, Any], path: Path) -> None:
    """NaN anywhere, or an infinite weight or bias: a file saved after its training diverged. Such a network scores
    every image NaN, and every attack and check downstream would fail on it far from the cause. (An infinite buffer
    can be meant: an attention mask of -inf.)"""
    bad = []
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all()):
            nan = int(torch.isnan(v).sum())  # one pass over a finite tensor (every tensor of a sound file)
            inf = int(torch.isinf(v).sum()) if k.rsplit(".", 1)[-1] in ("weight", "bias") else 0
            if nan or inf:
                counts = [f"{nan} NaN"] * bool(nan) + [f"{inf} infinite"] * bool(inf)
                bad.append(f"{k} ({', '.join(counts)} of {v.numel()})")
    if bad:
        raise HardenError(f"The weights in {str(path)!r} are not all finite: {'; '.join(bad[:3])}"
                          f"{f' and {len(bad) - 3} more tensors' if len(bad) > 3 else ''}. A file like this is saved "
                          "after its training diverged (a loss that became NaN); the network scores every image NaN. "
                          "Load a checkpoint from before the divergence.")


def load(path: str | os.PathLike, *, arch: str | None = None, num_classes: int | None = None,
         in_chans: int | None = None, input_size=None, mean=None, std=None, interpolation: str | None = None,
         crop_pct: float | None = None, crop_mode: str | None = None, key: str | None = None,
         model_args: dict[str, Any] | None = None, logits_key: str | None = None,
         channel_order: str | None = None, device: str | torch.device = "cpu") -> Classifier:
    """Load a checkpoint (a file, or a timm hub folder) into a Classifier (takes [0,1] pixels). Flags fill or
    override metadata; `key` picks the state dict inside an ambiguous container (dotted path, e.g. 'state_dict.0');
    `model_args` are keyword arguments of the architecture's constructor (timm's create_model or a callable);
    `logits_key` the class scores in what the network returns, where it returns more (an index or a name);
    `channel_order` "bgr" for a network fed its channels reversed (Caffe's; mean and std then in that order).
    `model.config_sources` says where each value of the spec came from. A `file.py:Class` architecture that cannot
    be built for the weights (a required argument not given, or its defaults building another network) has the
    arguments the weights say searched (models/args_from_weights.py), only then: a load that works pays nothing."""
    kw = dict(arch=arch, num_classes=num_classes, in_chans=in_chans, input_size=input_size, mean=mean, std=std,
              interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode, key=key, model_args=model_args,
              logits_key=logits_key, channel_order=channel_order, device=device)
    from .models.arch_in_file import callable_for_weights, is_file_alone
    if is_file_alone(arch):  # `--arch resnet.py`: the network it defines that the weights fit (models/arch_in_file.py)
        arch, found_args, said = callable_for_weights(path, kw)
        given_args = dict(model_args or {})
        model_args = {**found_args, **given_args}
        kw.update(arch=arch, model_args=model_args)
        with held_warnings() as held:
            model = load(path, **kw)
        model.config_sources["arch"] = f"the one of {str(kw['arch']).rpartition(':')[0]}'s networks the weights fit"
        if found_args:
            model.config_sources["model_args"] = _found_source(found_args, given_args)
        warn(f"{str(path)!r} with --arch {str(kw['arch']).rpartition(':')[0]}: {said}.")
        for msg in held:
            warn(msg)
        return model
    failed: HardenError | None = None
    with held_warnings() as held:  # said once: after this load, or after the one with the arguments found
        try:
            model = _load(path, **kw)
        except (MissingArguments, WeightsDoNotFit, ConstructorFailed) as e:  # the last: with arguments the file gave
            failed = e
    found = None
    try:
        if failed is not None:
            found = _arguments_from_weights(path, kw)  # a HardenError: found in part, the rest asked for
    except HardenError as refused:
        # a timm name's width moved by the weights: another name of its family may be the file's
        hint = _siblings_hint(path, kw) if arch and ":" not in arch else ""
        if hint:
            raise HardenError(f"{refused}{hint}") from None
        raise
    finally:
        if found is None:  # this load's warnings stand: it worked, or its error (or the search's) is said
            for msg in dict.fromkeys(held):  # once each: a build redone with what the weights said resolves again
                warn(msg)
    if failed is None:
        return _unsaid_warned(model, path) if arch is not None else model
    if found is None:
        narrowed, why_not = _narrowed_load(path, kw, failed, list(held))
        if narrowed is not None:
            return narrowed
        hint = _siblings_hint(path, kw) or why_not or _whole_file_hint(path, kw)
        if hint:
            raise type(failed)(f"{failed}{hint}") from None
        raise failed
    model = _load(path, **{**kw, "model_args": {**(model_args or {}), **found[0]}})
    model.config_sources["model_args"] = _found_source(found[0], model_args or {})
    if "img_size" in found[0] and model.config_sources.get("input_size") == "--model-arg img_size":
        model.config_sources["input_size"] = model.config_sources["model_args"]  # a timm ViT's size, searched
    size = "x".join(str(v) for v in _as_list(model.spec.input_size))
    # a timm name built with another attention window (Swin's) was likely trained at another size, one the window
    # tiles, and no tensor holds the size
    unsized = "" if ":" in str(model.spec.arch) or not any("window" in k for k in found[0]) or \
        not model.config_sources.get("input_size", "").startswith("timm") \
        else f"; its input size stays the name's {size}, which the weights cannot check (--input-size sets it)"
    warn(f"{str(path)!r} ({model.spec.arch}): {found[1]}{unsized}.")
    return _unsaid_warned(model, path)


def _habits_so_far() -> tuple[int, int, int]:
    """How many of published code's habits harden has met in this process so far (`.cuda()` calls kept on the CPU,
    pretrained weights not fetched, GPU-default arguments given as the CPU), for _habits_said after a load."""
    from .cuda_calls import cuda_calls
    from .models.pretrained_skipped import skipped
    from .models.registry import CPU_ARGUMENTS
    return cuda_calls(), len(skipped()), len(CPU_ARGUMENTS)


def _habits_said(net: torch.nn.Module, before: tuple[int, int, int]) -> list[str]:
    """The load notes for what harden did about the code's habits since `before` (_habits_so_far), and for a
    network fed flattened images."""
    from .cuda_calls import cuda_calls
    from .models.pretrained_skipped import skipped
    from .models.registry import CPU_ARGUMENTS
    from .input_layouts import layout_of
    calls, fetched, on_cpu = before
    notes = []
    layout = layout_of(net)
    if layout is not None:
        notes.append(layout.note)
    not_fetched = sorted(set(skipped()[fetched:]))
    if not_fetched:
        notes.append(f"its constructor asks for pretrained weights ({', '.join(not_fetched[:3])}): not fetched, the "
                     "checkpoint supplies every weight")
    if len(CPU_ARGUMENTS) > on_cpu:
        notes.append(f"built with {', '.join(sorted(set(CPU_ARGUMENTS[on_cpu:])))}: its constructor's default is the "
                     "GPU, which this machine lacks (not kept in what harden writes)")
    if cuda_calls() > calls:
        notes.append("its code's own moves to the GPU (.cuda(), device='cuda', .to('cuda')) were kept where its input "
                     f"is, the {_device_of(net)} (harden/cuda_calls.py)")
    return notes


def _device_of(net: torch.nn.Module) -> str:
    p = next(net.parameters(), None)
    return "CPU" if p is None or p.device.type == "cpu" else str(p.device)


def _first_cause(error: Exception) -> str:
    """The network's own words in a DoesNotRun ("... cannot run on a batch of ... (its words). Where ...")."""
    import re
    found = re.search(r"\((.*?)\)\.(?: |$)", str(error))
    return (found.group(1) if found else str(error))[:200]


def _narrowed_load(path, kw: dict[str, Any], failed: HardenError, said: list[str]) -> tuple[Classifier | None, str]:
    """The model rebuilt at the narrower widths of a structurally pruned file (torch-pruning's: every tensor of the
    architecture there, some with fewer channels), warned; else None (the first load's error stands) and a sentence
    for that error where the narrowed network was built but does not run."""
    if not isinstance(failed, WeightsDoNotFit):
        return None, ""
    with held_warnings() as held:
        try:
            model = _load(path, **kw, narrow=True)
        except DoesNotRun as e:  # the network as first built ran: its narrowing is what does not
            return None, (f" Its tensors are narrower than the architecture's, as a structurally pruned network's "
                          f"are, but rebuilt at their widths it does not run ({_first_cause(e)}): "
                          "its code reads a width it was built with (an attention's head size); save the pruned "
                          "model whole (torch.save(model)) or give those sizes as --model-arg.")
        except HardenError:
            return None, ""
    layers = getattr(model, "narrowed", [])
    if not layers:
        return None, ""
    for msg in held:
        if msg not in said:  # the first load said the rest
            warn(msg)
    shown = "; ".join(layers[:2]) + ("; ..." if len(layers) > 2 else "")
    warn(f"{str(path)!r} ({model.spec.arch}): its weights are a structurally pruned {model.spec.arch}: {len(layers)} "
         f"layer(s) hold fewer channels than the architecture builds ({shown}). Rebuilt at the file's widths, as "
         "torch-pruning loads its models; where the pruning also changed what the code computes from a width (an "
         "attention's head count), the scores are not the pruned model's: check its clean accuracy.")
    model.config_sources["layer widths"] = f"checkpoint weights (structurally pruned: {len(layers)} layers narrowed)"
    return (_unsaid_warned(model, path) if kw.get("arch") is not None else model), ""


def _found_source(found: dict[str, Any], given: dict[str, Any]) -> str:
    """Where constructor arguments came from when the weights said some: the flags' named beside them."""
    flagged = [k for k in given if k not in found]
    return "checkpoint weights (the arguments they fit)" + (
        f": {', '.join(found)}; --model-arg: {', '.join(flagged)}" if flagged else "")


def _unsaid_warned(model: Classifier, path) -> Classifier:
    """The model, after a warning for each constructor argument the weights cannot say and nothing gave
    (models/unsaid_args.py: an activation class its module offers others of, a text or true/false value whose others
    build the same tensors into a network that scores otherwise). Only where --arch named the architecture: harden's
    own files were warned of when they were written."""
    from .models.unsaid_args import UNSAID, unsaid_arguments
    unsaid = unsaid_arguments(model)
    if unsaid:  # for the chance check's advice, should the report find the network reading no image right
        model.config_sources[UNSAID] = ", ".join(name for name, _, _ in unsaid)
    for name, default, alike in unsaid:
        shown = ", ".join(alike[:4]) + (", ..." if len(alike) > 4 else "")
        warn(f"{str(path)!r} ({model.spec.arch}): built with {name}={default}, its default, which nothing gave and "
             f"the weights cannot say: {shown} {'builds' if len(alike) == 1 else 'build'} the same tensors into "
             f"another network. Where it was trained with {'it' if len(alike) == 1 else 'one of them'}, give "
             f"--model-arg {name}={alike[0]}; --model-arg {name}={default} says the default and ends this warning.")
    return model


def _load(path: str | os.PathLike, *, arch: str | None = None, num_classes: int | None = None,
          in_chans: int | None = None, input_size=None, mean=None, std=None, interpolation: str | None = None,
          crop_pct: float | None = None, crop_mode: str | None = None, key: str | None = None,
          model_args: dict[str, Any] | None = None, logits_key: str | None = None,
          channel_order: str | None = None, device: str | torch.device = "cpu", narrow: bool = False) -> Classifier:
    """load() without the search of constructor arguments; `narrow`: the layers rebuilt at a structurally pruned
    file's narrower shapes (models/narrowed.py)."""
    path = Path(local(path, "model"))
    if isinstance(input_size, int) and not isinstance(input_size, bool):  # 224: a square, as the CLI's --input-size
        input_size = (input_size, input_size)
    habits = _habits_so_far()
    state, meta = read_checkpoint(path, key)
    refuse_non_finite(state, path)
    from .formats import (NORMALISER_KEPT, normaliser_buffers, normaliser_consumed, normalises_itself,
                          normalising_layer, values_text)
    mean, std = in_pixel_units(mean, std)
    flags = dict(arch=arch, num_classes=num_classes, in_chans=in_chans, input_size=input_size, mean=mean, std=std,
                 interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode, model_args=model_args)
    normaliser = normaliser_buffers(state) if "recipe" not in meta else None
    tried_size = None  # the size a network that fixes its own runs at, where nothing says it (size_it_runs_at)
    tried_chans = None  # its channels, where nothing says them either and it runs on no three-channel image
    width: list[int | None] = []  # a constructor's output width, found once (output_width)

    def merged(*args, **kw) -> tuple[dict[str, Any], dict[str, str]]:
        spec, sources = _merge_spec(*args, **kw)
        if sources.get("num_classes") == f"{GUESSED}{OUTPUT_WIDTH}":
            if not width:
                width.append(output_width(spec, logits_key if logits_key is not None else meta.get(LOGITS_KEY)))
            if width[0] is not None:
                spec["num_classes"] = width[0]
            elif not spec["num_classes"]:  # nothing else gave a count to try
                raise HardenError(f"{str(path)!r} does not say its number of classes, and its output for two "
                                  "images is not N x K scores; pass --num-classes.")
        return spec, sources
    with held_warnings() as held:  # said below, unless the spec is resolved again without the buffers
        spec, sources = merged(meta, flags, path, state, normaliser)
    def build() -> Classifier:
        return create_model(str(spec["arch"]), int(spec["num_classes"]), int(spec["in_chans"]),
                            tuple(_as_list(spec["input_size"])), tuple(_as_list(spec["mean"])),
                            tuple(_as_list(spec["std"])), data=str(meta.get("data", "")),
                            interpolation=str(spec["interpolation"]), crop_pct=float(spec["crop_pct"]),
                            crop_mode=str(spec["crop_mode"]), model_args=dict(spec["model_args"] or {}),
                            logits_key=logits_key if logits_key is not None else meta.get(LOGITS_KEY),
                            sized_from=state, narrow_to=state if narrow else None)

    guessed = sources.get("num_classes", "").startswith(GUESSED)  # kept only if the weights then load strictly
    no_count = HardenError(f"{str(path)!r} does not say its number of classes; pass --num-classes."
                           f"{_classes_hint(state)}")
    size_assumed = sources.get("input_size") in ("default", f"default of {spec['arch']}")
    rebuilt = size_parameter(str(spec["arch"])) is not None  # a constructor that takes the size builds for it
    scores_key = logits_key if logits_key is not None else meta.get(LOGITS_KEY)
    try:
        model = build()
    except HardenError as e:
        sized = size_assumed and getattr(e, "size_may_help", True)
        tried_size = size_it_runs_at(spec, scores_key, state) if sized else None
        if tried_size is None and sized and sources.get("in_chans") == "default":
            # nothing said the channels (no convolution or image-sized linear layer to read: an LSTM over rows of
            # pixels): grey images, at the common sizes
            tried_size = size_it_runs_at({**spec, "in_chans": 1}, scores_key, state)
            tried_chans = 1 if tried_size is not None else None
        if tried_size is None:
            for msg in held:
                warn(msg)
            if guessed and not isinstance(e, (DoesNotRun, MissingArguments, ConstructorFailed)):  # a network that
                # cannot run (or be built for want of its own arguments, or whose constructor raised) says nothing of
                # its count
                raise no_count from None
            if isinstance(e, DoesNotRun) and sized:
                raise DoesNotRun(f"{e} Nor at any common square size from {SIZES_TRIED[0]} to {SIZES_TRIED[-1]} "
                                 "pixels: pass the size it was trained at as --input-size (HxW: 32x64 for images 32 "
                                 "high and 64 wide).", size_assumed=True) from None
            raise
    else:
        if size_assumed and rebuilt and not meta.get("recipe") and not weights_fit(model.net, state):
            # built at the assumed size, a layer sized from it (`nn.Linear(32 * (img_size // 4) ** 2, ...)`) does
            # not fit the file: the smallest common size it does fit (else loading's usual error, below)
            tried_size = size_it_runs_at(spec, scores_key, state)
        trained_at = _position_embedding_size(model, spec, sources, meta, state)
        if trained_at is not None:
            # a ViT fine-tuned at another size (timm's `create_model(..., img_size=384)`, torchvision's
            # `vit_b_16(image_size=384)` from its SWAG weights): its position embedding says the size, which the
            # library takes as a constructor argument, as --model-arg would give it (torchvision's transform then
            # the one of its weights at that size, where it has such weights)
            vit_size, arg, key, said = trained_at
            was = "x".join(str(v) for v in _as_list(spec["input_size"]))
            flags = {**flags, "model_args": {**(flags.get("model_args") or {}), arg: vit_size}}
            if arg == "image_size":  # timm's config reads its img_size; torchvision's is given the size
                flags.update({"input_size": [vit_size, vit_size], SIZE_FROM: f"the file's {key}"})
            spec, sources = merged(meta, flags, path, state, normaliser)
            sources["input_size"] = sources["model_args"] = f"checkpoint weights ({key}'s positions)"
            warn(f"{str(path)!r}: its position embedding was trained at {vit_size}x{vit_size} ({said} "
                 f"{was}): built with {arg}={vit_size} (--model-arg {arg} sets it).")
            model = build()
        for fits, arg, value, why in BUILT_AS_SAVED:
            if arg in (flags.get("model_args") or {}) or arg in (meta.get("model_args") or {}) or \
                    meta.get("recipe") or not fits(model.net, state):
                continue
            # a constructor argument the file's keys say and nothing else did: built again with it, warned
            flags = {**flags, "model_args": {**(flags.get("model_args") or {}), arg: value}}
            spec, sources = merged(meta, flags, path, state, normaliser)
            sources["model_args"] = f"checkpoint weights ({why})"
            warn(f"{str(path)!r} holds {why}: built with {arg}={value!r} (--model-arg {arg} sets it).")
            model = build()
    if tried_size is not None:
        with held_warnings() as held:  # the first resolution's "assuming input_size ..." no longer holds
            spec, sources = merged(meta, flags, path, state, normaliser, tried_size, tried_chans)
        warn(f"{str(path)!r} does not say its input size, and {spec['arch']} "
             + ("builds for its size: " if rebuilt else "runs only at some: ")
             + f"--input-size {tried_size[0]}, the smallest of the common sizes it "
             + ("runs at and its weights fit" if rebuilt else "runs at")
             + (", on one channel (it runs on no three-channel image)" if tried_chans else "")
             + " (pass --input-size" + (" and --in-chans" if tried_chans else "") + " to set it).")
        model = build()
    assumed = sources.get("mean") == "default" and sources.get("std") == "default"
    itself = normalises_itself(model.net) if assumed else None  # its own buffers or layer, read once for both below
    if assumed and not itself:
        from .models.config import channel_statistics
        from .models.zoo_attributes import built, timm_statistics
        # a factory that sets pretrainedmodels' attributes on what it builds; else a network of one's own around a
        # timm model (a guess, as a timm name's config is: the normalisation check measures it; a timm name itself
        # has its config's rule, models/config.py, which a given size leaves out)
        said = built(model.net) or (timm_statistics(model.net) if ":" in str(spec["arch"]) else None)
        if said:  # RGB's statistics averaged for a grey network, as for a timm name's
            said = {**said, **{k: channel_statistics(list(said[k]), int(spec["in_chans"])) for k in ("mean", "std")}}
            held.clear()  # the first resolution's "assuming mean 0, std 1" no longer holds
            meta = {**said, **meta}
            spec, sources = merged(meta, flags, path, state, normaliser, tried_size, tried_chans)
            model = build()
    inside = None  # what of the architecture normalises its input (its buffers, a layer)
    if sources.get("mean", "").startswith(NORMALISER_SOURCE) and \
            normaliser_consumed(normaliser[2], model.net.state_dict()):
        inside = f"its buffers {normaliser[2][0]}"  # the file's buffers are the architecture's own
    elif sources.get("mean") == "default" and sources.get("std") == "default":
        inside = itself  # buffers the file lacks (formats.fit_keys keeps them), or a layer (the network unchanged since)
    if inside:
        # its input is pixels, said so (the preprocessing warning asked for --mean/--std, which normalise twice)
        spec, sources = merged(meta, flags, path, state, tried_size=tried_size, tried_chans=tried_chans,
                               inside=inside)
        model = build()
    else:
        for msg in held:
            warn(msg)
        again = None  # what of the network normalises again what flags normalised
        if "flag" in (sources.get("mean"), sources.get("std")):
            if normaliser and normaliser_consumed(normaliser[2], model.net.state_dict()):
                again = (f"its buffers {normaliser[2][0]}: mean {values_text(normaliser[0])}, std "
                         f"{values_text(normaliser[1])}") if \
                    any(v != 0 for v in normaliser[0]) or any(v != 1 for v in normaliser[1]) else None
            elif not normaliser:
                again = normalising_layer(model.net)
        if again:
            warn(f"{str(path)!r}: --mean/--std normalise the images, and the network normalises them again itself "
                 f"({again}); its input is pixels in [0, 1], without the flags.")
    if sources.get("num_classes", "").startswith(("default of", "timm config")):
        # a default class count (the constructor's, timm's config's), and the file's head has other rows, seen once
        # its keys are fitted (a prefix removed, an original repository's layout converted): the file's count
        from .formats import fit_keys
        own = model.net.state_dict()
        rows = head_rows(own, fit_keys(own, state, dict(model.net.named_modules()))[0])
        if rows is not None:
            warn(f"--num-classes {rows[0]}, from the file's head ({sources['num_classes']} says "
                 f"{spec['num_classes']}).")
            spec["num_classes"], sources["num_classes"] = rows[0], "checkpoint weights (its head's rows)"
            model = build()
    model.config_sources = sources
    model.spec.extra.update({k: v for k, v in meta.items()
                             if k not in SPEC_KEYS and k not in ("data", LOGITS_KEY, PICKLED_CLASS, SCRIPTED_CLASS,
                                                                 HYPER_PARAMETERS, SETTINGS, BESIDE,
                                                                 ARCH_HPARAM, UNKNOWN_ARCH, SOURCES_KEY)})
    model.spec.extra.update({k: spec[k] for k in CONFIG_EXTRA if k in spec and k not in model.spec.extra})
    _set_channel_order(model, channel_order, sources, path)
    names = model.spec.extra.get("label_names")
    if names is not None and len(names) != model.spec.num_classes:
        # class names found beside the weights (a training script's class_to_idx, ...) for another head
        warn(f"{str(path)!r} holds {len(names)} class names for a model of {model.spec.num_classes} classes; they are "
             "not used.")
        del model.spec.extra["label_names"]
    patch_state = {k[len(PATCH_PREFIX):]: v for k, v in state.items() if k.startswith(PATCH_PREFIX)}
    state = {k: v for k, v in state.items() if not k.startswith(PATCH_PREFIX)}
    if meta.get("recipe"):  # a hardened checkpoint: replay the recipe's attach, then load its weights
        from .recipes import get_recipe
        get_recipe(str(meta["recipe"])).attach(model, dict(meta.get("recipe_params", {})))
    try:
        model.load_notes = load_state_strict(model.net, state, path)
        for note in model.load_notes:
            if note.startswith(NORMALISER_KEPT):  # values the file does not say: where they were others, say them
                warn(f"{str(path)!r} ({model.spec.arch}): {note}; where it was trained with others, give them as "
                     "its constructor takes them (--model-arg).")
    except HardenError as e:
        if guessed and not _count_implicated(model.net, state, int(spec["num_classes"])):
            # the rows guessed fit the layers sized by the count: the mismatch that matters is the one the error names
            raise type(e)(f"{e} (--num-classes {spec['num_classes']} was read from "
                          f"{sources['num_classes'][len(GUESSED):]}.)") from None
        if guessed and sources["num_classes"] == f"{GUESSED}{OUTPUT_WIDTH}" and isinstance(e, WeightsDoNotFit):
            # a network that takes no class count: its other arguments set its head's rows (load() searches them;
            # --num-classes would not help)
            raise WeightsDoNotFit(f"{e} ({spec['arch']} takes no class count: its other arguments set the "
                                  f"{spec['num_classes']} scores it outputs as built, and the file's head has other "
                                  "rows; give the arguments it was trained with as --model-arg.)") from None
        if guessed:
            raise no_count from None
        if meta.get(ARCH_HPARAM) and sources.get("arch") == "checkpoint":
            raise HardenError(f"{e} (The architecture, {spec['arch']}, was read from the checkpoint's "
                              f"hyper_parameters['{meta[ARCH_HPARAM]}']: where the training module builds more around "
                              "that model, give the whole network as --arch file.py:Class.)") from None
        raise
    if guessed:
        rows_of = sources["num_classes"][len(GUESSED):]
        if rows_of == OUTPUT_WIDTH:
            warn(f"--num-classes {spec['num_classes']}: {OUTPUT_WIDTH}; {spec['arch']} takes no class count.")
            sources["num_classes"] = OUTPUT_WIDTH
        else:
            what = "the file's head, a 1x1 convolution" if rows_of.endswith(CONV_CHANNELS) else \
                "the rows of the file's last linear weight"
            warn(f"--num-classes {spec['num_classes']}: {what} ({rows_of}); "
                 f"{spec['arch']} has no default count, and its output and weights fit it.")
            sources["num_classes"] = f"checkpoint weights ({rows_of})"
    if meta.get(PICKLED_CLASS):
        rebuilt = "" if spec["arch"] != meta.get("arch") else (
            ", rebuilt from torch.nn's own layers (with timm's and torchvision's blocks, fastai's head layers) as it "
            "pickles them"
            if "tree" in (meta.get("model_args") or {}) else f", its architecture the {meta['arch']} it says it is")
        model.load_notes.insert(0, f"read the whole pickled {meta[PICKLED_CLASS]} as data (none of it ran){rebuilt}")
    if meta.get(SCRIPTED_CLASS):
        model.load_notes.insert(0, f"read the weights of a TorchScript archive of a {meta[SCRIPTED_CLASS]} as data (its "
                                   f"code did not run); the architecture is {spec['arch']}")
    model.load_notes += _habits_said(model.net, habits)
    if model.patch is not None:
        load_state_strict(model.patch, patch_state, path, what="recipe modules")
    elif patch_state:
        raise HardenError(f"{str(path)!r} holds recipe weights (patch.*) but its metadata names no recipe.")
    model.eval()
    return model.to(device)


def _as_list(v):
    return v if isinstance(v, (list, tuple)) else [v]


def _fitted(net: torch.nn.Module, state: dict[str, torch.Tensor]):
    """(the net's own state, the file's after fitting its keys, notes, missing keys, unexpected keys, shape
    mismatches), nothing loaded."""
    from .formats import fit_keys
    from .norms_as_saved import norms_as_saved
    from .pruned import prune_as_saved
    pruned = prune_as_saved(net, state)  # torch.nn.utils.prune's weight_orig and weight_mask: the masks put back
    pruned += norms_as_saved(net, state)  # weight_g/weight_v, weight_orig/_u/_v, parametrizations: the norms put back
    own = net.state_dict()
    state, notes = fit_keys(own, state, dict(net.named_modules()))
    notes = pruned + notes
    # buffers the architecture registers as non-persistent (Swin's relative position index, attention masks) are
    # computed by its constructor: a file that holds them anyway (a TorchScript archive does) has them dropped
    computed = [k for k, _ in net.named_buffers() if k not in own and k in state]
    if computed:
        state = {k: v for k, v in state.items() if k not in computed}
        notes = [*notes, f"ignored {len(computed)} buffer(s) the architecture computes itself ({computed[0]}, ...)"]
    tied = _tied_aliases(own, state)
    if tied:
        state = {**state, **tied}
        notes = [*notes, f"filled {len(tied)} tied tensor(s) ({', '.join(list(tied)[:2])}, ...) from the tensor each "
                         "shares in the architecture: safetensors' save_model writes a shared tensor once"]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    return own, state, notes, missing, unexpected, shapes


def _tied_aliases(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{missing key: the file's tensor} for keys of the architecture that share their tensor with a key the file has
    (a module used under two names, `fc2.weight = fc1.weight`): safetensors' save_model, which Hugging Face's and
    timm's savers use, writes such a tensor under one of its names only."""
    groups: dict[tuple, list[str]] = {}
    for k, v in own.items():
        if v.is_meta or not v.numel():  # a meta tensor has no storage to share
            continue
        groups.setdefault((v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride()),
                          []).append(k)
    out = {}
    for names in groups.values():
        have = [n for n in names if n in state]
        if have and len(have) < len(names):
            out.update({n: state[have[0]] for n in names if n not in state})
    return out


def _count_implicated(net: torch.nn.Module, state: dict[str, torch.Tensor], num_classes: int) -> bool:
    """Whether a layer built with `num_classes` outputs holds another count of them in the file (a guessed count
    that is not the classifier's: the file's last linear layer was a projection after it). A head whose rows agree
    and whose inputs differ (an MLP's hidden width) is a mismatch of another argument, not of the count."""
    own, fitted = _fitted(net, state)[:2]
    return any(k in fitted and v.ndim >= 1 and v.shape[0] == num_classes and fitted[k].shape[:1] != v.shape[:1]
               for k, v in own.items())


def _position_embedding_size(model: Classifier, spec: dict[str, Any], sources: dict[str, str], meta: dict[str, Any],
                             state: dict[str, torch.Tensor]) -> tuple[int, str, str, str] | None:
    """The size a timm or torchvision ViT's file was trained at, from its position embedding (formats.trained_size),
    where the library's config gave the size, nothing gave the constructor's size argument and the embedding does
    not fit as built: (the size, that argument, the embedding's key, the library's config in words); else None."""
    from .formats import position_grid, trained_size
    from .models.config import TORCHVISION_SOURCE, torchvision_factory
    arch, source = str(spec["arch"]), sources.get("input_size", "")
    if ":" not in arch and source.startswith("timm"):
        arg, said = "img_size", f"timm's config for {arch} says"
    elif torchvision_factory(arch) and source.startswith(TORCHVISION_SOURCE):
        arg, said = "image_size", f"torchvision's weights for {arch.partition(':')[2]} say"
    else:
        return None
    where = position_grid(model.net)
    if meta.get("recipe") or where is None or arg in (spec.get("model_args") or {}):
        return None
    own, fitted = _fitted(model.net, state)[:2]  # only a ViT's keys are fitted here (loading fits them again)
    size = trained_size(model.net, own, fitted)  # None where its position embedding fits
    return None if size is None else (size, arg, where[0], said)


AUX_HEADS = ("AuxLogits", "aux1", "aux2")  # torchvision's Inception-v3's and GoogLeNet's auxiliary classifiers


def _without_aux_heads(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """torchvision's Inception-v3 or GoogLeNet trained with aux_logits=False (their factories' default is True): the
    network built with auxiliary classifiers, the file lacking exactly them (never used in evaluation anyway)."""
    if getattr(net, "aux_logits", None) is not True:
        return False
    missing, unexpected, shapes = _fitted(net, state)[3:]
    return bool(missing) and not unexpected and not shapes and all(k.split(".")[0] in AUX_HEADS for k in missing)


def _averaged_vit(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """MAE's, BEiT's and data2vec's fine-tuning: a timm ViT built with class-token pooling meets a file whose final
    norm is fc_norm (the tokens averaged: timm's global_pool='avg')."""
    if not type(net).__module__.startswith("timm.models.") or getattr(net, "global_pool", None) != "token":
        return False
    own, fitted = _fitted(net, state)[:2]
    return "norm.weight" in own and "fc_norm.weight" not in own and "fc_norm.weight" in fitted and \
        "norm.weight" not in fitted


LAYER_SCALES = (".ls1.gamma", ".ls2.gamma")  # timm's transformer blocks' per-channel scales, when built with them


def _layer_scaled(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """A timm ViT built without layer scale (init_values=None, the name's default) meets a file that holds it
    (DeiT-III's, CaiT-style fine-tuning's `init_values=1e-5`): whatever value it is built with, the file's scales
    replace it."""
    blocks = getattr(net, "blocks", None)
    if not type(net).__module__.startswith("timm.models.") or not isinstance(blocks, torch.nn.Sequential) or \
            not len(blocks) or not isinstance(getattr(blocks[0], "ls1", None), torch.nn.Identity):
        return False
    own, fitted = _fitted(net, state)[:2]
    return not any(k.endswith(LAYER_SCALES) for k in own) and any(k.endswith(LAYER_SCALES) for k in fitted)


def _search_inputs(path: str | os.PathLike, kw: dict[str, Any]):
    """What a search of a `file.py:Class` architecture's arguments builds from: (the callable, the arguments harden
    gives its builds, those the user or the metadata gave, the score of a build against the file's tensors, the sizes
    of those tensors, the architecture's name, the file's tensors); None for an architecture no search applies to: a
    `file.py:Class` or a timm name (models/timm_args.py)."""
    state, meta = read_checkpoint(Path(local(path, "model")), kw.get("key"))
    arch = kw.get("arch") or meta.get("arch")
    if not arch or meta.get("recipe") or str(arch).startswith("transformers:"):
        return None
    from .models.config import _constructor_arguments, first_conv, parameter_for, size_argument
    from .models.lazy import shape_lazy_layers
    from .models.registry import _import_callable
    from .models.timm_args import timm_callable
    try:
        fn = _import_callable(str(arch)) if ":" in str(arch) else timm_callable(str(arch))
        if fn is None:
            return None
        if str(getattr(fn, "__module__", "")).startswith("torchvision.models"):
            # a torchvision factory (`mobilenet_v2(*, weights, progress, **kwargs)`) searched over what its keywords
            # reach (MobileNetV2's width_mult); loads keep its own signature
            from .models.forwarding import with_forwarded_signature
            fn = with_forwarded_signature(fn)
        params = inspect.signature(fn).parameters
    except (HardenError, TypeError, ValueError):
        return None
    given = {"model_args": {**(meta.get("model_args") or {}), **(kw.get("model_args") or {})}}
    _constructor_arguments(str(arch), meta, given, {"model_args": ""})  # a Lightning module's, a script's args
    known = {k: kw.get(k) if kw.get(k) is not None else meta.get(k) for k in ("num_classes", "in_chans", "input_size")}
    if ":" not in str(arch) and known["in_chans"] is None and first_conv(state):
        known["in_chans"] = first_conv(state)[1]  # a timm name's channels, read from its stem as config.resolve does
    count_name = parameter_for(params, "num_classes")
    if known["num_classes"] is None and count_name and params[count_name].default is inspect.Parameter.empty and \
            last_linear(state):
        # a count it needs and nothing gave (`WideResNet(depth, num_classes)`): the rows config.resolve tries too
        known["num_classes"] = last_linear(state)[1]
    offered: dict[str, Any] = {}
    for k, v in known.items():
        name = parameter_for(params, k)
        if v is None or name is None or name in given["model_args"]:
            continue
        if k == "input_size":
            size = (v, v) if isinstance(v, int) else tuple(_as_list(v))
            v = size_argument(str(arch), params[name], size, int(known["in_chans"] or 3))
        offered[name] = v

    total = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    # a constructor that takes no class count (network slimming's `vgg(dataset='cifar10')`: 100 rows for
    # 'cifar100') builds its head's rows from its other arguments, which the search must then match too
    takes_count = count_name is not None or any(p.kind == p.VAR_KEYWORD for p in params.values())

    def unmatched(net: torch.nn.Module) -> tuple[int, int, int, bool]:
        lazy = shape_lazy_layers(net, state, every=True)  # a lazy layer has no shape until sized (no forward here)
        own, fitted, _, missing, unexpected, shapes = _fitted(net, state)
        kept = sum(t.numel() for t in fitted.values() if isinstance(t, torch.Tensor))
        # a build that takes a small part of the file under a prefix (one of a DenseNet's blocks, its `dense1.0.`),
        # the rest set aside as outside the model, is not the file's network: a wrapper's extra copies (an
        # attacker's, a normaliser's) are at most about as large as the network they sit beside
        aside = len(state) - len(fitted) if total - kept > 2 * kept else 0
        # rows that differ in one layer are a head built for another count only where the builds are given none (a
        # ViT's position embedding differs in its rows alone at another image size)
        head = takes_count and count_name not in offered and count_name not in given["model_args"] and \
            head_rows(own, fitted) is not None
        if lazy and head:  # a lazy layer takes the file's inputs whatever came before: only the last layer is a head
            last = list(own)[-1].rpartition(".")[0]
            head = all(s.split(": ", 1)[0].rpartition(".")[0] == last for s in shapes)
        return len(missing) + len(unexpected) + aside, len(shapes), len(missing), head
    sizes = {int(d) for t in state.values() if isinstance(t, torch.Tensor) for d in t.shape}
    if getattr(fn, "searched_size", None):
        from .models.timm_args import sides_from_positions
        sizes |= sides_from_positions(state)
    return fn, offered, given["model_args"], unmatched, sizes, str(arch), state


def _keys_say(fn, model_args: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, tuple[Any, str]]:
    """The arguments BUILT_AS_SAVED reads from the file's keys, for a search to start from (a ViT saved with
    class_token=False holds fc_norm: global_pool='avg', with which alone a build without a class token is made):
    {argument: (value, what the file holds)}."""
    from .models.args_from_weights import _built
    params = inspect.signature(fn).parameters
    todo = [rule for rule in BUILT_AS_SAVED if rule[1] in params and rule[1] not in model_args]
    net = _built(fn, model_args) if todo else None
    return {arg: (value, why) for fits, arg, value, why in todo if isinstance(net, torch.nn.Module) and fits(net, state)}


def _arguments_from_weights(path: str | os.PathLike, kw: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """A `file.py:Class` architecture's arguments that nothing gave and the weights say (models/args_from_weights.py),
    with the sentence that says so: a required one naming a configuration its code defines, or the integers and
    true/false values its defaults build wrong (a WideResNet's depth and width). The search's builds get what the
    real one would (the class count, channels and input size where a flag or the metadata says them)."""
    inputs = _search_inputs(path, kw)
    if inputs is None:
        return None
    from .models.args_from_weights import configuration_from_weights
    fn, offered, given, unmatched, sizes, _, state = inputs
    said = _keys_say(fn, {**offered, **given}, state)
    start = {**given, **{k: v for k, (v, _) in said.items()}}
    found = configuration_from_weights(fn, {**offered, **start}, unmatched, sizes)
    if found is None:
        return None
    first = "".join(f"it holds {why}, so built with {k}={v!r}; " for k, (v, why) in said.items())
    return {**{k: v for k, (v, _) in said.items()}, **{k: v for k, v in found[0].items() if k not in offered}}, \
        first + found[1]


def _whole_file_hint(path: str | os.PathLike, kw: dict[str, Any]) -> str:
    """For a `file.py:Name` that cannot be built for the weights, where nothing named alike beside it fits: the
    network or factory of the same file that builds them as it is, one build each (RepDistiller's
    `MobileNetV2(T, feature_dim, width_mult=1.)` named, whose file's `mobile_half(num_classes)` builds them; the
    searches of the file given alone cost seconds a candidate, too many for an error)."""
    from .models.arch_in_file import callable_for_weights
    file, _, name = str(kw.get("arch") or "").rpartition(":")
    if not file.endswith(".py"):
        return ""
    try:
        with held_warnings():
            arch, found, _ = callable_for_weights(path, {**kw, "arch": file}, search=False)
    except HardenError:
        return ""
    if arch.rpartition(":")[2] == name:
        return ""
    args = "".join(f" --model-arg {k}={arg_text(v)}" for k, v in found.items())
    return (f" {arch.rpartition(':')[2]}, which {file} defines beside it, builds the network the weights hold: "
            f"--arch {arch}{args} (or --arch {file} alone, which finds it).")


def _siblings_hint(path: str | os.PathLike, kw: dict[str, Any]) -> str:
    """Where the architecture named cannot be built for the weights: the callables its file defines beside it that
    build one they fit (pytorch-cifar's `ResNet34()` where `ResNet18` or `ResNet(block, num_blocks)` was named), as
    a sentence for the error; "" where none does."""
    inputs = _search_inputs(path, kw)
    if inputs is None:
        return ""
    from .models.args_from_weights import fitting_siblings
    fn, offered, given, unmatched, _, arch, _ = inputs
    if ":" not in arch:  # a timm name: the names of its family
        from .models.timm_args import fitting_names
        names = fitting_names(arch, {k: v for k, v in offered.items() if k in ("num_classes", "in_chans")}, unmatched)
        return (f" The weights fit timm's {' and '.join(names[:3])}{' (and more)' if len(names) > 3 else ''}: --arch "
                f"{names[0]}.") if names else ""
    names = fitting_siblings(fn, {**offered, **given}, unmatched)
    if not names:
        return ""
    where = arch.rpartition(":")[0]
    return (f" The weights fit {' and '.join(names[:3])}, which {where} defines beside it: --arch "
            f"{where}:{names[0]}{' (or another of them)' if len(names) > 1 else ''}.")


# constructor arguments a file's keys say where nothing else gave them: (test, argument, value, what the file holds)
BUILT_AS_SAVED = ((_without_aux_heads, "aux_logits", False, "no auxiliary classifiers"),
                  (_averaged_vit, "global_pool", "avg", "fc_norm in place of norm (a ViT fine-tuned on its averaged "
                                                        "tokens, as MAE's, BEiT's and data2vec's are; one built with "
                                                        "fc_norm=True on its class token holds the same tensors: "
                                                        "--model-arg fc_norm=true --model-arg global_pool=token)"),
                  (_layer_scaled, "init_values", 1e-5, "layer scales (ls1.gamma, ls2.gamma), which replace the value "
                                                       "it is built with"))


def weights_fit(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Whether the file's weights would load strictly into net (keys fitted; nothing loaded)."""
    return not any(_fitted(net, state)[3:])


def load_state_strict(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path,
                      what: str = "architecture") -> list[str]:
    """Load strictly after fitting the keys (formats.fit_keys); returns notes on what the fitting did."""
    from .formats import count_hint, mismatch_hint, quantization_hint, stem_hint, trained_size_hint
    own, state, notes, missing, unexpected, shapes = _fitted(net, state)
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatches: " + "; ".join(shapes[:3]))
        if missing:
            parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:3])}")
        buffers = {k for k, _ in net.named_buffers()}
        if missing and not unexpected and not shapes and set(missing) <= buffers:
            kept = ("BatchNorm's running mean and variance among them, the statistics it normalises with in "
                    "evaluation" if any(k.endswith(("running_mean", "running_var")) for k in missing)
                    else "tensors the network keeps beside its weights")
            raise HardenError(
                f"The weights in {str(path)!r} hold every parameter of the {what} but lack {len(missing)} of its "
                f"buffers (first: {', '.join(missing[:3])}; {kept}). Such a file was saved from model.parameters() or "
                "named_parameters(), not model.state_dict(), and the network cannot score images as it was trained "
                "without them. Save model.state_dict() from the training code and load that.")
        rows = head_rows(own, state)
        head = f" The file's head has {rows[0]} outputs where the model has {rows[1]}: --num-classes {rows[0]}?" \
            if rows else ""
        head += trained_size_hint(net, own, state) + stem_hint(net, own, state) + quantization_hint(unexpected)
        counted = count_hint(own, state) if missing or unexpected else ""  # the keys fit: their counts do not
        head += counted
        raise WeightsDoNotFit(f"The weights in {str(path)!r} do not fit the {what} ({'; '.join(parts)})." + head
                          + (mismatch_hint(own, state, notes) if (missing or unexpected) and not counted else
                             f" harden already {'; '.join(notes)}." if counted and notes else "")
                          + " Check --arch, --num-classes, --in-chans and --model-arg (the constructor's arguments, "
                            "such as a depth or a width), or the checkpoint's metadata.")
    narrow = sorted({str(v.dtype).removeprefix("torch.") for k, v in state.items()
                     if v.is_floating_point() and k in own and own[k].is_floating_point()
                     and torch.finfo(v.dtype).bits < torch.finfo(own[k].dtype).bits})
    if narrow:  # a half-precision export: harden attacks and trains the float32 network they widen to exactly
        notes.append(f"weights stored as {' and '.join(narrow)}, widened exactly to the network's float32 (attacked "
                     "and trained in float32; what harden writes is float32)")
    wide = sorted({str(v.dtype).removeprefix("torch.") for k, v in state.items()
                   if v.is_floating_point() and k in own and own[k].is_floating_point()
                   and torch.finfo(v.dtype).bits > torch.finfo(own[k].dtype).bits})
    if wide:  # a model trained in double precision: its scores move by float32's rounding, far below any decision
        notes.append(f"weights stored as {' and '.join(wide)}, rounded to the network's float32 (attacked and trained "
                     "in float32; what harden writes is float32)")
    if getattr(state, "_metadata", None) is None:
        # the keys are the network's own now, so its modules' layout versions hold: a module that reads its version
        # (torchvision's MNASNet: "version should be set to 1 or 2 instead of None") is given it, where the file's
        # were lost with the dict harden rebuilt
        from collections import OrderedDict
        state = OrderedDict(state)
        state._metadata = getattr(net.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    net.load_state_dict(state, strict=True)
    return notes


def head_rows(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> tuple[int, int] | None:
    """(the file's rows, the model's) where the only difference between the two is one layer's output count (a
    weight and its bias, all else equal): a classifier built for another number of classes. None otherwise."""
    if set(own) != set(state):
        return None
    differ = [k for k in own if state[k].shape != own[k].shape]
    if not 1 <= len(differ) <= 2 or any(not state[k].ndim or state[k].shape[1:] != own[k].shape[1:] for k in differ):
        return None
    rows = {(int(state[k].shape[0]), int(own[k].shape[0])) for k in differ}
    return next(iter(rows)) if len(rows) == 1 else None


def check_output_path(out: str | os.PathLike, inputs: list[str | os.PathLike] = (), force: bool = False) -> Path:
    """Refuse to write over an input, or over an existing file without force ('-', standard output: nothing to
    refuse)."""
    from .stdout_outputs import is_stdout
    if is_stdout(out):
        return Path(out)
    out = Path(out)
    for inp in inputs:
        if inp is not None and out.resolve() == Path(inp).resolve():
            raise HardenError(f"Output {str(out)!r} is the same path as an input; harden never writes to its "
                              "input. Choose another -o path.")
    if out.exists() and out.is_dir():
        raise HardenError(f"Output {str(out)!r} is a directory; give a file path.")
    if out.exists() and not force:
        raise HardenError(f"Output {str(out)!r} already exists; pass --force to overwrite it.")
    # a missing folder is made when the output is written (a CI job's `--json reports/robustness.json` in a fresh
    # checkout); the nearest folder that exists must let this user make it, said before the work it would lose
    existing = next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir():
        raise HardenError(f"Output {str(out)!r} lies under {str(existing)!r}, which is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise HardenError(f"Output {str(out)!r} cannot be written: {str(existing)!r} is not writable by this user. "
                          "Choose another path.")
    return out


def check_checkpoint_path(path: str | os.PathLike) -> None:
    """A checkpoint harden writes is a .safetensors file: the commands say so before any work (a fix's training is
    not lost to the output's extension), with the export that writes the other formats."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return
    other = {".onnx": "an ONNX file", ".pt2": "a torch.export program", ".pth": "a state dict for the network's own code",
             ".pt": "a state dict for the network's own code", ".bin": "a state dict for the network's own code"
             }.get(path.suffix.lower())
    route = (f" For {other}, write the checkpoint and export it: harden export {path.stem}.safetensors -o "
             f"{path.name}." if other else "")
    raise HardenError(f"harden writes .safetensors checkpoints; {str(path)!r} has another extension.{route}")


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask sets as it reads, which
    would race with another thread creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file in path's folder (so the final rename is atomic) with the permissions a file created
    by open() would get: mkstemp makes it owner-only, and the renamed output would stay unreadable to the
    group a CI job or a shared model store runs as."""
    path.parent.mkdir(parents=True, exist_ok=True)  # check_output_path let a missing folder through
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """`write(file)` into a temporary file beside `path`, synced, then renamed onto it: a reader (or a run killed
    half-way) sees the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_meta(model: Classifier, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"format_version": FORMAT_VERSION, "harden_version": _version()}
    meta.update({k: v for k, v in model.spec.extra.items()})
    spec = model.spec.to_dict()
    meta.update({k: spec[k] for k in SPEC_KEYS})
    meta["arch"] = remembered_arch(spec["arch"])
    meta["data"] = model.spec.data
    meta.update(extra or {})
    return meta


def remembered_arch(arch: str) -> str:
    """A file-defined architecture (`net.py:Net`, or `repo/models:Net` of a package's folder, given from the folder a
    command ran in) as an absolute path, so the checkpoints harden writes load from any folder; so too a module that
    only the folder a command ran in provides (`--arch models:ResNet18` from a repository's root), as its file."""
    file, sep, fn = arch.rpartition(":")
    if sep and (file.endswith(".py") and Path(file).expanduser().is_file() or
                "/" in file and (Path(file).expanduser() / "__init__.py").is_file()):  # a file, or a package's folder
        return f"{Path(file).expanduser().resolve()}:{fn}"
    from .models.registry import MAIN
    if sep and re.fullmatch(r"[A-Za-z_][\w.]*", file) and file != MAIN:  # the running script is never imported
        found = _found_in_working_folder_alone(file)
        if found is not None:
            return f"{found}:{fn}"
    return arch


def _found_in_working_folder_alone(mod_name: str) -> Path | None:
    """The file of an imported module that was found in the current folder and nowhere else on sys.path (not
    installed), which another folder could not import by its name; None otherwise."""
    import sys
    path = getattr(sys.modules.get(mod_name), "__file__", None)
    if not path:
        return None
    here, path = Path.cwd().resolve(), Path(path).resolve()
    if here not in path.parents:
        return None
    from .models.registry import FOLDERS_ADDED
    # what puts the current folder on sys.path for this run alone: `python -m`'s first entry, and harden's own look
    # there; an installed package (a .pth entry, an editable install's finder) is found without them
    run_only = {"", *FOLDERS_ADDED} | ({sys.path[0]} if sys.path and Path(sys.path[0] or ".").resolve() == here else set())
    saved = sys.path[:]
    try:
        sys.path[:] = [p for p in saved if p not in run_only]
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is not None and find(mod_name.split(".")[0], None) is not None:
                return None  # installed: its name loads anywhere it is installed
    finally:
        sys.path[:] = saved
    return path


def _version() -> str:
    from . import __version__
    return __version__


def save(model: Classifier, path: str | os.PathLike, meta: dict[str, Any] | None = None, *,
         force: bool = False, inputs: list[str | os.PathLike] = ()) -> Path:
    """Save weights + metadata as safetensors, atomically (temp file + rename)."""
    from safetensors.torch import save as st_save
    path = check_output_path(path, inputs, force)
    check_checkpoint_path(path)
    from .models.registry import MAIN, TORCHSCRIPT
    if str(model.spec.arch).startswith(MAIN + ":"):
        import sys
        script = getattr(sys.modules.get(MAIN), "__file__", None)
        name = model.spec.arch.split(":", 1)[1]
        warn(f"{name} is defined in the running script{f' ({script})' if script else ''}, not in a module: "
             f"{path.name} will load elsewhere only with --arch naming a file that defines it (path/to/models.py:"
             f"{name}). Define the class in its own module and the checkpoint names it.")
    elif str(model.spec.arch).startswith(TORCHSCRIPT + ":"):
        name = model.spec.arch.split(":", 1)[1]
        warn(f"the network is a TorchScript module (made from a class {name}), whose compiled code a checkpoint does "
             f"not hold: {path.name} will load only with --arch naming the Python class it was made from "
             f"(path/to/models.py:{name}); harden.models.from_module of that class's module names it.")
    state = _tensors(model.net.state_dict())
    if model.patch is not None:
        state.update({PATCH_PREFIX + k: v for k, v in _tensors(model.patch.state_dict()).items()})
    atomic_write_bytes(path, st_save(state, metadata=encode_meta(model_meta(model, meta))))
    return path


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


# what a patch keeps of the hardened model's metadata, and `apply` gives the rebuilt model back: the recipe, how and
# on what it was trained, and how its data is read (models/config.RECORD_KEYS, as every export keeps it: the data
# `fix` was given, the test split it held out, the EXIF choice), so an eval of the rebuilt model tests where the
# hardened one's did
PATCH_KEYS = ("recipe", "recipe_params", "base_sha256", "data_fraction", "seed", "subset", "taps", "report", "labels",
              "unlabeled")


def patch_meta(model: Classifier) -> dict[str, Any]:
    """What `fix --patch-out` writes: PATCH_KEYS of a hardened model's metadata and its data record."""
    from .export import data_record
    return {**{k: model.spec.extra[k] for k in PATCH_KEYS if k in model.spec.extra and k != "report"},
            **data_record(model)}


def save_patch(model: Classifier, path: str | os.PathLike, meta: dict[str, Any], *, force: bool = False,
               inputs: list[str | os.PathLike] = ()) -> Path:
    """The recipe's modules alone, bound to the base checkpoint by its sha256 (meta['base_sha256'])."""
    from safetensors.torch import save as st_save
    if model.patch is None:
        raise HardenError("This model has no recipe modules to export.")
    if "base_sha256" not in meta:
        raise ValueError("a patch must name its base's sha256")
    path = check_output_path(path, inputs, force)
    full = {"format_version": FORMAT_VERSION, "kind": "patch", "harden_version": _version(), **meta}
    atomic_write_bytes(path, st_save(_tensors(model.patch.state_dict()), metadata=encode_meta(full)))
    return path


def apply_patch(base_path: str | os.PathLike, patch_path: str | os.PathLike, device="cpu",
                model_flags: dict[str, Any] | None = None) -> Classifier:
    """Rebuild a hardened model from its base checkpoint and a patch file; refuse a different base."""
    from .recipes import get_recipe
    patch_state, meta = read_checkpoint(patch_path)
    if meta.get("kind") != "patch" or "recipe" not in meta or "base_sha256" not in meta:
        raise HardenError(f"{str(patch_path)!r} is not a harden patch file (written by `harden fix --patch-out`).")
    digest = sha256_file(base_path)
    if digest != meta["base_sha256"]:
        raise HardenError(f"{str(patch_path)!r} was trained on a base with sha256 {meta['base_sha256'][:16]}..., but "
                          f"{str(base_path)!r} has sha256 {digest[:16]}...; a patch only fits the exact base it "
                          "was trained on.")
    model = load(base_path, **(model_flags or {}))
    if model.patch is not None:
        raise HardenError(f"{str(base_path)!r} is already hardened ({model.spec.extra.get('recipe')}).")
    get_recipe(str(meta["recipe"])).attach(model, dict(meta.get("recipe_params", {})))
    load_state_strict(model.patch, patch_state, Path(patch_path), what="recipe modules")
    from .models.config import RECORD_KEYS
    for k in PATCH_KEYS + RECORD_KEYS:
        if k in meta and k != "data":
            model.spec.extra[k] = meta[k]
    if meta.get("data"):  # the data `fix` was given, as the hardened checkpoint names it
        model.spec.data = str(meta["data"])
    return model.eval().to(device)
