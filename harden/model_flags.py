"""The shared flag sets, each defined once and added to every command that needs it by a decorator: the model flags
(`--arch --num-classes --in-chans --input-size --mean --std --interpolation --crop-pct --crop-mode --key
--model-arg --logits-key --channel-order`, bundled as `model_flags: ModelFlags`) and the on-disk data flags
(`--workers --class-map --skip-unreadable --exif-orientation --test-size`, bundled as `data_flags: DataFlags`)."""
from __future__ import annotations

import functools
import inspect
import json
from dataclasses import asdict, dataclass
from typing import List, Optional

import typer

from .errors import HardenError

MODEL_ARG_OPTION = typer.Option(  # the model flags' --model-arg, and train's (which builds a network from --arch)
    None, "--model-arg", help="A keyword argument of the architecture's constructor, key=value (repeatable; the "
    "value read as JSON, else as text; text naming a class, or a function by its dotted path, passes it, as the "
    "constructor's own code does: block=BasicBlock, norm_layer=nn.BatchNorm2d, act=F.gelu), e.g. depth=28 "
    "widen_factor=10 for a WideResNet, or timm's drop_path_rate=0.1. Kept in the metadata of every checkpoint "
    "harden writes.", rich_help_panel="Model")

_OPTIONS = {
    "arch": (Optional[str], typer.Option(
        None, "--arch", help="Architecture when the checkpoint's metadata lacks it (or to override it): a built-in, a "
        "timm name, package.module:callable or path/to/file.py:callable. A plain state dict that has exactly one timm "
        "model's or torchvision factory's names and shapes needs none.", rich_help_panel="Model")),
    "num_classes": (Optional[int], typer.Option(None, "--num-classes", help="Number of classes.",
                                                rich_help_panel="Model")),
    "in_chans": (Optional[int], typer.Option(None, "--in-chans", help="Input channels.", rich_help_panel="Model")),
    "input_size": (Optional[str], typer.Option(None, "--input-size", help="Input size HxW, e.g. 32x32.",
                                               rich_help_panel="Model")),
    "mean": (Optional[str], typer.Option(None, "--mean", help="Per-channel mean of the normalisation, comma-separated "
                                         "(pixels in [0, 1]; values in 0-255 units, 123.675,116.28,103.53, are "
                                         "divided by 255).", rich_help_panel="Model")),
    "std": (Optional[str], typer.Option(None, "--std", help="Per-channel std, comma-separated (0-255 units divided "
                                        "by 255, as --mean).", rich_help_panel="Model")),
    "interpolation": (Optional[str], typer.Option(None, "--interpolation", help="Resize interpolation of images read "
                                                  "from files: bilinear, bicubic, ... (default: the checkpoint's, else "
                                                  "timm's config for the architecture).", rich_help_panel="Model")),
    "crop_pct": (Optional[float], typer.Option(None, "--crop-pct", help="Evaluation crop fraction: the shorter side is "
                                               "resized to size / crop-pct, then centre-cropped.",
                                               rich_help_panel="Model")),
    "crop_mode": (Optional[str], typer.Option(None, "--crop-mode", help="center, squash or border (timm's).",
                                              rich_help_panel="Model")),
    "key": (Optional[str], typer.Option(None, "--key", help="Where the state dict sits in a container that holds "
                                        "several, as a dotted path (e.g. state_dict, ema, state_dict.0).",
                                        rich_help_panel="Model")),
    "model_args": (Optional[List[str]], MODEL_ARG_OPTION),
    "channel_order": (Optional[str], typer.Option(
        None, "--channel-order", help="rgb (default) or bgr: the order of the channels the network takes (Caffe's "
        "classifiers and their conversions: bgr, with --mean/--std in that order, e.g. --mean "
        "103.939,116.779,123.68 --std 1,1,1). Kept in the metadata.", rich_help_panel="Model")),
    "logits_key": (Optional[str], typer.Option(
        None, "--logits-key", help="Where the class scores are when the model's forward returns more than them: "
        "an index of a returned tuple (0) or a name of a returned dict or output object (logits). Found by itself "
        "when one entry has the scores' shape.", rich_help_panel="Model")),
}


@dataclass(frozen=True)
class ModelFlags:
    arch: str | None = None
    num_classes: int | None = None
    in_chans: int | None = None
    input_size: str | None = None
    mean: str | None = None
    std: str | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    crop_mode: str | None = None
    key: str | None = None
    model_args: list[str] | None = None
    logits_key: str | None = None
    channel_order: str | None = None

    def load_kwargs(self) -> dict:
        """Keyword arguments of harden.load."""
        return dict(arch=self.arch, num_classes=self.num_classes, in_chans=self.in_chans,
                    input_size=parse_size(self.input_size), mean=parse_floats(self.mean, "mean"),
                    std=parse_floats(self.std, "std"), interpolation=self.interpolation, crop_pct=self.crop_pct,
                    crop_mode=self.crop_mode, key=self.key, logits_key=self.logits_key,
                    channel_order=self.channel_order, model_args=parse_model_args(self.model_args))

    def given(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HardenError(f"--{what} takes comma-separated numbers, got {text!r}.") from None


def parse_model_args(items: list[str] | None) -> dict | None:
    """`--model-arg key=value` items -> keyword arguments; a value is JSON (28, 0.1, true, [2, 2], "x"), else
    text (relu)."""
    if not items:
        return None
    args = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise HardenError(f"--model-arg {item!r} is not of the form name=value (e.g. depth=28).")
        try:
            args[key.strip()] = json.loads(value)
        except ValueError:
            args[key.strip()] = value.strip()
    return args


def flags_for(spec) -> str:
    """The model flags that rebuild a checkpoint of `spec` from a file with no metadata (a plain state dict that
    `harden export -o weights.pth` wrote): its architecture, classes, size and preprocessing, as a shell takes them."""
    import shlex

    from .models.registry import CHANNEL_ORDER, arg_text
    parts = [("--arch", spec.arch), ("--num-classes", spec.num_classes)]
    if spec.in_chans != 3:
        parts.append(("--in-chans", spec.in_chans))
    parts.append(("--input-size", f"{spec.input_size[0]}x{spec.input_size[1]}"))
    if any(v != 0 for v in spec.mean) or any(v != 1 for v in spec.std):
        parts += [("--mean", ",".join(f"{v:g}" for v in spec.mean)), ("--std", ",".join(f"{v:g}" for v in spec.std))]
    if spec.interpolation != "bilinear":
        parts.append(("--interpolation", spec.interpolation))
    if spec.crop_pct != 1.0:
        parts.append(("--crop-pct", f"{spec.crop_pct:g}"))
    if spec.crop_mode != "center":
        parts.append(("--crop-mode", spec.crop_mode))
    if spec.extra.get(CHANNEL_ORDER) == "bgr":
        parts.append(("--channel-order", "bgr"))
    for key, value in spec.model_args.items():
        parts.append(("--model-arg", f"{key}={arg_text(value)}"))
    return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in parts)


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.lower().replace(",", "x").split("x")]
        if len(parts) > 2 or min(parts) < 1:
            raise ValueError
        return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    except (ValueError, IndexError):
        raise HardenError(f"--input-size takes HxW in pixels (e.g. 32x32, or 32 for a square), got {text!r}.") from None


_DATA_OPTIONS = {
    "workers": (Optional[int], typer.Option(None, "--workers", min=0, help="Processes that decode image files (default: "
                                            "one per core, at most 16; 0 = decode in the main process). The same "
                                            "seed gives the same batches whatever the worker count.",
                                            rich_help_panel="Data")),
    "class_map": (Optional[str], typer.Option(None, "--class-map", help="JSON or CSV file mapping folder name -> the "
                                              "model's class index (folders of WordNet synsets map by themselves).",
                                              rich_help_panel="Data")),
    "skip_unreadable": (bool, typer.Option(False, "--skip-unreadable", help="Leave out image files that cannot be "
                                           "decoded (the report counts them) instead of stopping.",
                                           rich_help_panel="Data")),
    "exif_orientation": (str, typer.Option("auto", "--exif-orientation", help="Image files with a camera's EXIF "
                                           "orientation tag: stored (read as stored, as torchvision's ImageFolder "
                                           "and timm do), upright (turned as the tag says, as Hugging Face's "
                                           "datasets and transformers do), or auto: upright for a Hugging Face "
                                           "dataset or a transformers model, else stored.", rich_help_panel="Data")),
    "label_column": (Optional[str], typer.Option(None, "--label-column", help="The column of a CSV/TSV list or a "
                                                 "parquet/Arrow table (the feature of TFRecord files) that holds the "
                                                 "labels, where its name is not one harden knows (label, class, "
                                                 "target, dx, ...). Kept in a hardened checkpoint.",
                                                 rich_help_panel="Data")),
    "image_column": (Optional[str], typer.Option(None, "--image-column", help="The column of a list that holds the "
                                                 "image paths (of a table: the images or their paths; of TFRecords: "
                                                 "the encoded-image feature), where harden's choice by name would not "
                                                 "find it. Kept in a hardened checkpoint.", rich_help_panel="Data")),
    "label_from_name": (Optional[str], typer.Option(None, "--label-from-name", metavar="PATTERN", help="A folder "
                                                    "of images without class folders, labelled by their file names: "
                                                    "a regular expression whose group named label (else its first "
                                                    "group, else its match) is the class, e.g. '^\\[a-z]+' for "
                                                    "cat.0.jpg. Kept in a hardened checkpoint.",
                                                    rich_help_panel="Data")),
    "test_size": (bool, typer.Option(False, "--test-size", help="Evaluate image files at timm's test size and crop "
                                     "(test_input_size, test_crop_pct) instead of the training size; the report "
                                     "states which.", rich_help_panel="Data")),
}


@dataclass(frozen=True)
class DataFlags:
    workers: int | None = None
    class_map: str | None = None
    skip_unreadable: bool = False
    exif_orientation: str = "auto"
    label_column: str | None = None
    image_column: str | None = None
    label_from_name: str | None = None
    test_size: bool = False

    def target_kwargs(self) -> dict:
        """Keyword arguments of harden.data.DataTarget.for_model."""
        return asdict(self)


def _with_flags(options: dict, bundle, name: str):
    def deco(fn):
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != name]
        extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
                 for k, (ann, opt) in options.items()]
        # keep **kwargs-free keyword parameters in order: the command's own, then the bundled flags
        new_sig = sig.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                          if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD else p
                                          for p in params] + extra)

        @functools.wraps(fn)
        def wrapper(**kwargs):
            flags = bundle(**{k: kwargs.pop(k) for k in options})
            return fn(**kwargs, **{name: flags})

        wrapper.__signature__ = new_sig
        return wrapper
    return deco


with_model_flags = _with_flags(_OPTIONS, ModelFlags, "model_flags")
with_model_flags.__doc__ = "Add the model flags to a typer command; it receives them as `model_flags`."
with_data_flags = _with_flags(_DATA_OPTIONS, DataFlags, "data_flags")
