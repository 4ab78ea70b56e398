"""`harden export -o DIR`: the model as a folder its own library loads, so hardened weights go back into the stack they
came from. A transformers classifier: `save_pretrained`'s layout (config.json with its id2label, the weights, and the
image processor's preprocessor_config.json as it was read). A timm model: timm's hub layout (config.json with
`architecture`, `num_classes`, `pretrained_cfg` holding harden's preprocessing, `label_names`; model.safetensors),
which `timm.create_model("local-dir:DIR")` and `harden` both read. Written into a temporary folder beside the
output, checked by loading it back with the library itself and comparing its outputs with harden's on the check
images, and only then renamed into place."""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from .errors import HardenError
from .export import ExportCheck, data_record, refuse_beyond_architecture
from .models import Classifier
from .models.config import HUB_RECORD


def export_folder(model: Classifier, path: str | os.PathLike, x_check: torch.Tensor, images: str,
                  force: bool = False) -> tuple[ExportCheck, str]:
    """Write the folder (atomically) and check it; returns (the check, the library that read it back). A folder
    whose outputs under its library differ from harden's is not put in place."""
    path = Path(path)
    model = model.cpu().eval()
    refuse_beyond_architecture(model, "no library folder can hold them", "its library")
    if model.spec.extra.get("channel_order") == "bgr":
        raise HardenError(f"{model.spec.arch} takes its channels as BGR, which a library folder's preprocessing "
                          "cannot say; export to ONNX (-o model.onnx), whose graph takes RGB pixels and reverses them.")
    arch = model.spec.arch
    from .models.hf_transformers import PREFIX
    if arch.startswith(PREFIX):
        write, library = _write_transformers, "transformers"
    else:
        import timm
        if not timm.is_model(arch):
            raise HardenError(f"A folder export writes a transformers or timm model in its library's layout; "
                              f"{arch!r} is neither. Export to ONNX instead (-o model.onnx).")
        write, library = _write_timm, "timm"
    if path.exists() and not force:
        raise HardenError(f"{str(path)!r} exists; pass --force to replace it.")
    if path.exists() and not path.is_dir():
        raise HardenError(f"{str(path)!r} is a file; a folder export writes a folder (-o model.onnx for ONNX).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent)))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        outputs = write(model, tmp)
        _same_preprocessing(model, tmp)
        with torch.no_grad():
            ref, got = model(x_check), outputs(model.normalize(x_check))
        check = ExportCheck(n=len(x_check), agreement=float((ref.argmax(1) == got.argmax(1)).float().mean()),
                            max_abs_diff=float((ref - got).abs().max()), scale=float(ref.abs().max()), images=images)
        if not check.ok:  # the library does not reproduce the model: nothing is put in place
            return check, library
        if path.exists():  # --force: the old folder goes only once the new one is complete and checked
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=str(path.parent)))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        return check, library
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _same_preprocessing(model: Classifier, folder: Path) -> None:
    """harden reads the folder back with the model's own class count, channels, input and normalisation."""
    from .checkpoint import load
    back = load(folder).spec
    spec = model.spec
    differ = [k for k in ("num_classes", "in_chans", "input_size", "interpolation", "crop_mode")
              if tuple(_flat(getattr(back, k))) != tuple(_flat(getattr(spec, k)))]
    differ += [k for k in ("mean", "std")
               if any(abs(float(a) - float(b)) > 1e-4 for a, b in zip(_flat(getattr(back, k)), _flat(getattr(spec, k)),
                                                                      strict=False))]
    if _resized_to(back) != _resized_to(spec):  # crop fractions that resize to the same size are the same transform
        differ.append("crop_pct")
    if differ:
        raise HardenError(f"The exported folder reads back with other {', '.join(differ)} "
                          f"({', '.join(f'{k}: {getattr(back, k)} vs {getattr(spec, k)}' for k in differ)}); nothing "
                          "was written.")


def _resized_to(spec) -> tuple[int, ...]:
    import math
    return tuple(math.floor(int(v) / float(spec.crop_pct)) for v in spec.input_size)


def _flat(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_transformers(model: Classifier, folder: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import json

    from .models.hf_transformers import _library, library_class
    transformers = _library()
    net = copy.deepcopy(model.net)
    flip = bool(getattr(net, "flip_channels", False))
    cls = library_class(net)
    net.__class__ = cls
    net.__dict__.pop("flip_channels", None)
    if model.spec.extra.get("label_names"):
        names = [str(n) for n in model.spec.extra["label_names"]]
        net.config.id2label = dict(enumerate(names))
        net.config.label2id = {n: i for i, n in enumerate(names)}
    record = data_record(model)
    if record:  # config.json's "harden" entry (transformers keeps an unknown setting as it is)
        setattr(net.config, HUB_RECORD, record)
    elif hasattr(net.config, HUB_RECORD):  # one read with the folder, for other data
        delattr(net.config, HUB_RECORD)
    processor = (model.spec.model_args or {}).get("processor") or _processor_for(model.spec)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        net.save_pretrained(str(folder))
        if processor:
            (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
        back = cls.from_pretrained(str(folder), local_files_only=True).eval()
        if processor:
            transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()
    return lambda x: back(pixel_values=x.flip(1) if flip else x).logits


def _processor_for(spec) -> dict | None:
    """An image processor configuration that does what harden's transform does, for a model read without one:
    ViT's (a fixed size), DeiT's (a fixed size, then a crop) or BiT's (a shortest edge, then a crop)."""
    import math

    from .models.hf_transformers import RESAMPLE
    resample = {v: k for k, v in RESAMPLE.items()}.get(spec.interpolation)
    if resample is None or getattr(spec, "model_args", {}).get("flip_channels"):
        return None
    h, w = (int(v) for v in spec.input_size)
    base = {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(spec.mean), "image_std": list(spec.std), "resample": resample}
    if spec.crop_mode == "squash" and spec.crop_pct >= 1:
        return {**base, "image_processor_type": "ViTImageProcessor", "size": {"height": h, "width": w}}
    if spec.crop_mode == "squash":
        return {**base, "image_processor_type": "DeiTImageProcessor", "do_center_crop": True,
                "size": {"height": math.floor(h / spec.crop_pct), "width": math.floor(w / spec.crop_pct)},
                "crop_size": {"height": h, "width": w}}
    if spec.crop_mode == "center" and h == w:
        return {**base, "image_processor_type": "BitImageProcessor", "do_center_crop": True, "do_convert_rgb": True,
                "size": {"shortest_edge": math.floor(h / spec.crop_pct)}, "crop_size": {"height": h, "width": w}}
    return None


def _write_timm(model: Classifier, folder: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import timm
    from timm.models import _hub
    spec = model.spec
    net = copy.deepcopy(model.net)
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    cfg.update(input_size=(spec.in_chans, *spec.input_size), interpolation=spec.interpolation,
               crop_pct=spec.crop_pct, crop_mode=spec.crop_mode, mean=tuple(spec.mean), std=tuple(spec.std),
               num_classes=spec.num_classes)
    test = spec.extra.get("test_input_size")
    if test:
        cfg["test_input_size"] = (spec.in_chans, *test)
        if spec.extra.get("test_crop_pct"):
            cfg["test_crop_pct"] = spec.extra["test_crop_pct"]
    else:
        cfg.pop("test_input_size", None)
    cfg.pop("label_names", None)
    net.pretrained_cfg = cfg
    names = spec.extra.get("label_names")
    extra = {"label_names": list(names)} if names else {}
    record = data_record(model)
    if record:  # config.json's "harden" entry (timm reads past it)
        extra[HUB_RECORD] = record
    _hub.save_for_hf(net, str(folder), model_config=extra or None,
                     model_args=dict(spec.model_args or {}) or None, safe_serialization=True)
    from timm.models import _factory
    if "local-dir" not in getattr(_factory, "_MODEL_SOURCES", ()):  # a timm that reads no local folders
        from .checkpoint import load
        reread = load(folder)  # harden's reader, as a user of this timm would read the folder
        return lambda x: reread.net(x)
    try:
        return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    except Exception as e:  # noqa: BLE001 - whatever timm raises on the folder: nothing is put in place
        raise HardenError(f"timm {timm.__version__} cannot load the exported folder ({type(e).__name__}: {e}); "
                          "nothing was written.") from None
