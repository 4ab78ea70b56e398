"""Attacks through rounding in a model's forward: straight-through gradients (BPDA, Athalye et al. 2018, "Obfuscated
Gradients Give a False Sense of Security", section 4.1). torch.round, floor, ceil, trunc and sign have a zero gradient
almost everywhere, so a model that rounds its input (bit-depth reduction, an input-quantization defence, a quantized
model written in plain torch) stops every gradient attack there and looks robust. While the report attacks it, each
such call in the model's forward returns x + (rounded - x).detach(): the same value, and the identity's gradient.

Only the model's forward is changed (the attacks' own sign of the gradient is not), only where the input needs a
gradient (judging predictions runs without gradients: exactly the model's own outputs), and only for eager modules:
a TorchScript program's calls are not seen. ONNX graphs' Round is read the same way when they are loaded
(models/onnx_extra_ops.py)."""
from __future__ import annotations

from collections import Counter

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


def straight_through(model: nn.Module, x: torch.Tensor, on: bool = True) -> tuple[nn.Module, str | None]:
    """(model, note): with `on`, the model wrapped where one forward of x (an image or two) calls rounding with a
    gradient to pass, and the report's note saying so ("<model>'s " + note); without, the model as it is and, where
    it rounds, a note saying that its zero gradient was attacked. Neither where it does not round."""
    from .errors import NoInputGradient
    probe = StraightThrough(model)
    xs = x.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            probe(xs)
    except NoInputGradient:  # no gradient to pass anywhere (a forward under no_grad): judged only, under transfer
        return model, None
    if not probe.seen:
        return model, None
    calls = ", ".join(f"{k} x{v}" for k, v in sorted(probe.seen.items()))
    if not on:
        return model, (f"forward rounds ({calls} a pass), and --no-bpda attacked its zero gradient there: gradient "
                       "attacks cannot move such inputs (--bpda passes it straight through)")
    probe.seen.clear()
    return probe, (f"forward rounds ({calls} a pass): the attacks passed gradients straight through it (BPDA, "
                   "Athalye et al. 2018), the standard white-box attack on rounding; --no-bpda attacks its zero "
                   "gradient instead")
