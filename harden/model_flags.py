"""The one set of model flags (`--arch --num-classes --in-chans --input-size --mean --std --key`), defined once
and added to every command that reads a model checkpoint by the `with_model_flags` decorator: the command
receives them bundled as `model_flags: ModelFlags`."""
from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass
from typing import Optional

import typer

from .errors import HardenError

_OPTIONS = {
    "arch": (Optional[str], typer.Option(
        None, "--arch", help="Architecture when the checkpoint's metadata lacks it (or to override it): a built-in, a "
        "timm name, package.module:callable or path/to/file.py:callable.", rich_help_panel="Model")),
    "num_classes": (Optional[int], typer.Option(None, "--num-classes", help="Number of classes.",
                                                rich_help_panel="Model")),
    "in_chans": (Optional[int], typer.Option(None, "--in-chans", help="Input channels.", rich_help_panel="Model")),
    "input_size": (Optional[str], typer.Option(None, "--input-size", help="Input size HxW, e.g. 32x32.",
                                               rich_help_panel="Model")),
    "mean": (Optional[str], typer.Option(None, "--mean", help="Per-channel mean of the normalisation, comma-separated "
                                         "(pixels in [0, 1]).", rich_help_panel="Model")),
    "std": (Optional[str], typer.Option(None, "--std", help="Per-channel std, comma-separated.",
                                        rich_help_panel="Model")),
    "key": (Optional[str], typer.Option(None, "--key", help="Where the state dict sits in a container that holds "
                                        "several, as a dotted path (e.g. state_dict, ema, state_dict.0).",
                                        rich_help_panel="Model")),
}


@dataclass(frozen=True)
class ModelFlags:
    arch: str | None = None
    num_classes: int | None = None
    in_chans: int | None = None
    input_size: str | None = None
    mean: str | None = None
    std: str | None = None
    key: str | None = None

    def load_kwargs(self) -> dict:
        """Keyword arguments of harden.load."""
        return dict(arch=self.arch, num_classes=self.num_classes, in_chans=self.in_chans,
                    input_size=parse_size(self.input_size), mean=parse_floats(self.mean, "mean"),
                    std=parse_floats(self.std, "std"), key=self.key)

    def given(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HardenError(f"--{what} takes comma-separated numbers, got {text!r}.") from None


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.lower().replace(",", "x").split("x")]
        return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    except (ValueError, IndexError):
        raise HardenError(f"--input-size takes HxW (e.g. 32x32), got {text!r}.") from None


def with_model_flags(fn):
    """Add the model flags to a typer command; it receives them as `model_flags`."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "model_flags"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
             for name, (ann, opt) in _OPTIONS.items()]
    # keep **kwargs-free keyword parameters in order: the command's own, then the model flags
    new_sig = sig.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                      if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD else p
                                      for p in params] + extra)

    @functools.wraps(fn)
    def wrapper(**kwargs):
        flags = ModelFlags(**{k: kwargs.pop(k) for k in _OPTIONS})
        return fn(**kwargs, model_flags=flags)

    wrapper.__signature__ = new_sig
    return wrapper
