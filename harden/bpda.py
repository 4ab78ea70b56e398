"""Attacks through rounding in a model's forward: straight-through gradients (BPDA, Athalye et al. 2018, "Obfuscated
Gradients Give a False Sense of Security", section 4.1). torch.round, floor, ceil, trunc and sign have a zero gradient
almost everywhere, so a model that rounds its input (bit-depth reduction, an input-quantization defence, a quantized
model written in plain torch) stops every gradient attack there and looks robust. While the report attacks it, each
such call in the model's forward returns x + (rounded - x).detach(): the same value, and the identity's gradient.

Only the model's forward is changed (the attacks' own sign of the gradient is not), only where the input needs a
gradient (judging predictions runs without gradients: exactly the model's own outputs), and only for eager modules:
a TorchScript program's calls are not seen. ONNX graphs' Round is read the same way when they are loaded
(models/onnx_extra_ops.py). `fix` trains such a model the same way (training_through_rounding)."""
from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

ROUNDING = {f: name for name in ("round", "floor", "ceil", "trunc", "sign", "fix")
            for f in (getattr(torch, name), getattr(torch.Tensor, name))}


class _StraightThrough(TorchFunctionMode):
    def __init__(self, seen: Counter):
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))  # the mode is off inside its own handler
        name = ROUNDING.get(func)
        if name is not None and args and isinstance(args[0], torch.Tensor) and args[0].requires_grad \
                and isinstance(out, torch.Tensor) and out.dtype.is_floating_point:
            self.seen[f"torch.{name}"] += 1
            x = args[0]
            return x + (out - x).detach()
        return out


class StraightThrough(nn.Module):
    """`model` whose rounding passes gradients straight through (above); `seen` counts the calls it changed."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.seen: Counter = Counter()
        if hasattr(model, "spec"):
            self.spec = model.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _StraightThrough(self.seen):
            return self.model(x)


def rounds(model: nn.Module, x: torch.Tensor) -> str | None:
    """The rounding calls one forward of x makes where a gradient would pass ("torch.round x2"), or None."""
    from .errors import NoInputGradient
    from .runtime import frozen
    probe = StraightThrough(model)
    try:
        with torch.enable_grad(), frozen(model):  # eval mode: a probe must not move BatchNorm's statistics
            probe(x.detach().clone().requires_grad_(True))
    except NoInputGradient:  # no gradient to pass anywhere (a forward under no_grad)
        return None
    return ", ".join(f"{k} x{v}" for k, v in sorted(probe.seen.items())) or None


@contextlib.contextmanager
def training_through_rounding(calls: str | None) -> Iterator[None]:
    """Training (`fix`) of a model that rounds (`calls`: what rounds() found; None: nothing changes): every rounding
    call on a tensor that needs a gradient passes it straight through, for the training attack's input gradient
    (BPDA) and for the update's weight gradient (the straight-through estimator of quantization-aware training)."""
    with _StraightThrough(Counter()) if calls else contextlib.nullcontext():
        yield


def straight_through(model: nn.Module, x: torch.Tensor, on: bool = True) -> tuple[nn.Module, str | None]:
    """(model, note): with `on`, the model wrapped where one forward of x (an image or two) calls rounding with a
    gradient to pass, and the report's note saying so ("<model>'s " + note); without, the model as it is and, where
    it rounds, a note saying that its zero gradient was attacked. Neither where it does not round."""
    calls = rounds(model, x)  # None also where the forward gives no gradient: judged only, under transfer
    if calls is None:
        return model, None
    if not on:
        return model, (f"forward rounds ({calls} a pass), and --no-bpda attacked its zero gradient there: gradient "
                       "attacks cannot move such inputs (--bpda passes it straight through)")
    return StraightThrough(model), (f"forward rounds ({calls} a pass): the attacks passed gradients straight through "
                                    "it (BPDA, Athalye et al. 2018), the standard white-box attack on rounding; "
                                    "--no-bpda attacks its zero gradient instead")
