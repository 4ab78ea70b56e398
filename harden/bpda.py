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


class _Reentry:
    """A forward that leaves torch and comes back (an input-transformation defence written with numpy or PIL:
    `a = x.detach().cpu().numpy(); ...; x = torch.from_numpy(a)`, Xu et al.'s bit-depth reduction, Guo et al.'s
    JPEG and total-variance denoising) cuts autograd there, so that no gradient attack can run at all. BPDA's
    standard approximation of such a transformation g is the identity (Athalye et al. 2018, section 4.1, as for
    rounding): while this is entered, a module whose first input needs no gradient, where the last tensor that
    needed one (a module's input or output) had its shape, dtype and device, gets that value with that tensor's
    gradient, g(x) + (x - x.detach()). Only under autograd (judging runs the model's own outputs), and only where the
    caller has found that the model gives no input gradient otherwise (detoured)."""

    def __init__(self, model: nn.Module, where: Counter):
        self.model, self.where = model, where
        self.handles: list = []
        self.last: torch.Tensor | None = None

    def __enter__(self) -> "_Reentry":
        for name, m in self.model.named_modules():
            self.handles.append(m.register_forward_pre_hook(lambda mod, args, n=name: self._into(n, mod, args)))
            self.handles.append(m.register_forward_hook(lambda mod, args, out: self._seen(out)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.last = [], None

    def _seen(self, t) -> None:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            self.last = t

    def _into(self, name: str, module: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], torch.Tensor) or not torch.is_grad_enabled():
            return None
        a, last = args[0], self.last
        if a.requires_grad:
            self.last = a
            return None
        if last is None or a.shape != last.shape or a.dtype != last.dtype or a.device != last.device:
            return None
        self.where[f"{name.removeprefix('net.') or 'the network'} ({type(module).__name__})"] += 1
        back = a + (last - last.detach())
        self.last = back
        return (back, *args[1:])


class StraightThrough(nn.Module):
    """`model` whose rounding passes gradients straight through (above); `seen` counts the calls it changed. With
    `reenter`, a detour out of torch passes them through too (_Reentry), counted in `seen` by the module it returns
    to."""

    def __init__(self, model: nn.Module, reenter: bool = False):
        super().__init__()
        self.model, self.reenter = model, reenter
        self.seen: Counter = Counter()
        if hasattr(model, "spec"):
            self.spec = model.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _StraightThrough(self.seen), _Reentry(self.model, self.seen) if self.reenter else contextlib.nullcontext():
            return self.model(x)


def _probe(model: nn.Module, x: torch.Tensor, reenter: bool = False) -> tuple[str | None, bool]:
    """(what one forward of x passed straight through: "torch.round x2", the modules a detour returned to with
    `reenter`; None for nothing), and whether its scores then depend on x through autograd."""
    from .errors import NoInputGradient
    from .runtime import frozen
    probe = StraightThrough(model, reenter)
    try:
        with torch.enable_grad(), frozen(model):  # eval mode: a probe must not move BatchNorm's statistics
            out = probe(x.detach().clone().requires_grad_(True))
    except NoInputGradient:  # no gradient to pass anywhere (a forward under no_grad, a detour out of torch)
        return None, False
    gave = isinstance(out, torch.Tensor) and out.requires_grad
    return ", ".join(f"{k} x{v}" for k, v in sorted(probe.seen.items())) or None, gave


def rounds(model: nn.Module, x: torch.Tensor) -> str | None:
    """The rounding calls one forward of x makes where a gradient would pass ("torch.round x2"), or None."""
    return _probe(model, x)[0]


def detoured(model: nn.Module, x: torch.Tensor, gives: bool | None = None) -> str | None:
    """Where a model that gives no input gradient (its forward leaves torch: numpy, PIL) gives one with its detour
    passed straight through (_Reentry): the modules it returns to ("conv x1"); None where it gives one anyway, or none
    even so (a forward under torch.no_grad()). `gives`: whether it gives one, where a probe has found it already."""
    if _probe(model, x)[1] if gives is None else gives:
        return None
    where, gave = _probe(model, x, reenter=True)
    return where if gave else None


@contextlib.contextmanager
def training_through_rounding(calls: str | None, detour_of: nn.Module | None = None) -> Iterator[None]:
    """Training (`fix`) of a model that rounds (`calls`: what rounds() found; None: nothing changes): every rounding
    call on a tensor that needs a gradient passes it straight through, for the training attack's input gradient
    (BPDA) and for the update's weight gradient (the straight-through estimator of quantization-aware training).
    `detour_of`: the model whose detour out of torch passes them through too (detoured)."""
    with _StraightThrough(Counter()) if calls else contextlib.nullcontext(), \
            _Reentry(detour_of, Counter()) if detour_of is not None else contextlib.nullcontext():
        yield


def straight_through(model: nn.Module, x: torch.Tensor, on: bool = True) -> tuple[nn.Module, str | None]:
    """(model, note): with `on`, the model wrapped where one forward of x (an image or two) calls rounding with a
    gradient to pass, and the report's note saying so ("<model>'s " + note); without, the model as it is and, where
    it rounds, a note saying that its zero gradient was attacked. Neither where it does not round."""
    calls, gave = _probe(model, x)  # None also where the forward gives no gradient
    if calls is None:
        where = detoured(model, x, gave) if on else None
        if where is not None:
            return StraightThrough(model, reenter=True), (
                f"forward leaves torch (numpy, PIL: no gradient) and comes back at {where} a pass: the attacks passed "
                "gradients straight through that detour, as if it were the identity (BPDA, Athalye et al. 2018), the "
                "standard white-box attack on an input transformation; --no-bpda refuses white-box attacks on it")
        return model, None
    if not on:
        return model, (f"forward rounds ({calls} a pass), and --no-bpda attacked its zero gradient there: gradient "
                       "attacks cannot move such inputs (--bpda passes it straight through)")
    return StraightThrough(model), (f"forward rounds ({calls} a pass): the attacks passed gradients straight through "
                                    "it (BPDA, Athalye et al. 2018), the standard white-box attack on rounding; "
                                    "--no-bpda attacks its zero gradient instead")
