"""Published code's own moves to the GPU, kept on the CPU on a machine without CUDA.

Research code moves tensors to the GPU by hand: in a constructor (`self.mu = torch.tensor(mean).view(1, 3, 1, 1)
.cuda()`, `torch.zeros(n, device='cuda')`), in a forward (`x + torch.randn(x.size()).cuda() * sigma`, `mask.to(device)`
with a module-level `device = 'cuda'`), in a module the model file imports (`mu = torch.tensor(cifar10_mean).view(3,
1, 1).cuda()` at the top of a utils.py). On a machine without CUDA (a CI runner, a laptop) every such call can only
raise, so on such a machine:

- before harden imports a user's architecture code, `Tensor.cuda()` and `Module.cuda()` are made to leave what they
  are called on where it is;
- that code's import and its constructor run with CUDA device arguments (`device='cuda'`, `.to('cuda')`,
  `.type(torch.cuda.FloatTensor)`) read as the CPU (`GpuMovesOn`, a TorchFunctionMode: torch's own hook for every
  function call, active only there);
- a network whose forward makes or moves tensors to CUDA (it raised so on the probe batch, or its code's files name
  the device 'cuda') runs each forward under the same mode, aimed at the device of its input (`keep_forward_on`).

Every such call is counted so that the load notes say so. `torch.cuda.is_available()` still says False (code that picks
its device by it is unchanged). On a machine with CUDA nothing is changed, but for a network that raised for mixing
devices on the probe batch (one asked to run on the CPU there), whose forward then runs under the mode too."""
from __future__ import annotations

import contextlib
import inspect
import re
from typing import Any, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_calls = [0]  # moves to CUDA left on the CPU (or the input's device) so far, in this process
_installed = [False]


def _tensor_cuda(self, device=None, non_blocking=False, memory_format=torch.preserve_format):
    _calls[0] += 1
    return self if memory_format == torch.preserve_format else self.contiguous(memory_format=memory_format)


def _module_cuda(self, device=None):
    _calls[0] += 1
    return self


# old code's typed constructors (`torch.cuda.FloatTensor(x.size()).normal_()`, `dtype = torch.cuda.LongTensor`)
LEGACY_TYPES = ("Float", "Double", "Half", "BFloat16", "Byte", "Char", "Short", "Int", "Long", "Bool")


def keep_cuda_calls_on_cpu() -> None:
    """On a machine without CUDA, from now on in this process: `.cuda()` leaves a tensor or module on the CPU, and
    `torch.cuda.FloatTensor` and its kin are the CPU's types (which they could only fail to make here)."""
    if _installed[0] or torch.cuda.is_available():
        return
    torch.Tensor.cuda = _tensor_cuda
    torch.nn.Module.cuda = _module_cuda
    for kind in LEGACY_TYPES:
        if hasattr(torch, f"{kind}Tensor"):
            setattr(torch.cuda, f"{kind}Tensor", getattr(torch, f"{kind}Tensor"))
    _installed[0] = True


def cuda_calls() -> int:
    """How many moves to CUDA have been left on the CPU (or the input's device) so far."""
    return _calls[0]


def _is_cuda(d: Any) -> bool:
    """A device argument naming CUDA: 'cuda', 'cuda:1', torch.device('cuda'), a bare index (torch reads 0 as cuda:0)."""
    if isinstance(d, torch.device):
        return d.type == "cuda"
    if isinstance(d, int) and not isinstance(d, bool):
        return True
    return isinstance(d, str) and d.strip().lower().split(":")[0] == "cuda"


def _cuda_type(t: Any) -> str | None:
    """`torch.cuda.FloatTensor` (the class or its name), as old code hands it to `Tensor.type`: the CPU type's name."""
    name = t if isinstance(t, str) else getattr(t, "__module__", "") + "." + getattr(t, "__name__", "")
    found = re.fullmatch(r"torch\.cuda\.(\w+Tensor)", name)
    return f"torch.{found.group(1)}" if found else None


class GpuMovesOn(TorchFunctionMode):
    """While active, a function given a CUDA device (a `device=` argument, `Tensor.to`'s device, `Tensor.cuda`,
    `Tensor.type` with a CUDA type) is given `device` instead; each is counted (cuda_calls)."""

    def __init__(self, device: torch.device | str = "cpu"):
        super().__init__()
        self.device = torch.device(device)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            _calls[0] += 1
            return args[0].to(self.device)
        if _is_cuda(kwargs.get("device")):
            kwargs = {**kwargs, "device": self.device}
            _calls[0] += 1
        if func is torch.Tensor.to and any(_is_cuda(a) for a in args[1:]):
            args = (args[0], *(self.device if _is_cuda(a) else a for a in args[1:]))
            _calls[0] += 1
        elif func is torch.Tensor.type and len(args) > 1 and _cuda_type(args[1]):
            args = (args[0], _cuda_type(args[1]), *args[2:])
            _calls[0] += 1
        return func(*args, **kwargs)


# CUDA's device management, as a training script's top level or a constructor calls it (`torch.cuda.set_device(0)`,
# `torch.cuda.current_device()`): with no CUDA each raises; while such code runs, each does nothing (device 0)
DEVICE_CALLS = {"set_device": lambda *a, **k: None, "synchronize": lambda *a, **k: None,
                "empty_cache": lambda *a, **k: None, "current_device": lambda *a, **k: 0}


@contextlib.contextmanager
def _device_calls_stubbed() -> Iterator[None]:
    saved = {name: getattr(torch.cuda, name) for name in DEVICE_CALLS}
    try:
        for name, stand_in in DEVICE_CALLS.items():
            setattr(torch.cuda, name, stand_in)
        yield
    finally:
        for name, original in saved.items():
            setattr(torch.cuda, name, original)


@contextlib.contextmanager
def gpu_moves_on_cpu() -> Iterator[None]:
    """On a machine without CUDA: the code run inside (a user's module imported, its constructor) makes and moves its
    tensors on the CPU where it names CUDA, and its calls of CUDA's device management do nothing. Elsewhere
    nothing."""
    if torch.cuda.is_available():
        yield
        return
    with _device_calls_stubbed(), GpuMovesOn("cpu"):
        yield


def _enter(module: nn.Module, args: tuple) -> None:
    first = args[0] if args and isinstance(args[0], torch.Tensor) else next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    held = contextlib.ExitStack()
    if not torch.cuda.is_available():  # its own torch.cuda.current_device() too, as at its import
        held.enter_context(_device_calls_stubbed())
    held.enter_context(GpuMovesOn(device))
    module.__dict__.setdefault("_harden_gpu_modes", []).append(held)


def _leave(module: nn.Module, args: tuple, output: Any) -> None:
    modes = module.__dict__.get("_harden_gpu_modes")
    if modes:
        modes.pop().close()


def keep_forward_on(net: nn.Module) -> None:
    """Each forward of `net` runs under GpuMovesOn, aimed at its input's device (the mode left when the forward
    raises too)."""
    if not keeps_forward_on(net):
        net.register_forward_pre_hook(_enter)
        net.register_forward_hook(_leave, always_call=True)


def keeps_forward_on(net: nn.Module) -> bool:
    return any(hook is _enter for hook in net._forward_pre_hooks.values())


CUDA_NAMED = re.compile(r"""(['"])cuda(:\d+)?\1|torch\.cuda\.\w+Tensor""")


def names_cuda(net: nn.Module) -> bool:
    """Whether the source files of the network's own classes (not an installed library's: timm, torchvision) name the
    CUDA device ('cuda', "cuda:0", torch.cuda.FloatTensor), which a forward may use in a branch the probe batch does
    not take (training's noise, a defence's)."""
    import os

    from .models.registry import installed_file
    own = os.path.dirname(os.path.abspath(__file__))  # harden's own wrappers, where it is installed editable
    files = set()
    for m in net.modules():
        try:
            path = inspect.getsourcefile(type(m))
        except (TypeError, OSError):
            continue
        if path and not os.path.abspath(path).startswith(own + os.sep) and not installed_file(path):
            files.add(path)
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if CUDA_NAMED.search(f.read()):
                    return True
        except OSError:
            continue
    return False
