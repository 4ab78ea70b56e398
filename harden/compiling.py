"""`--compile`: torch.compile the model's network for the length of an evaluation or a fix.

The compiled network is kept beside the model, not registered in it: state dicts, checkpoints, ONNX export and deep
copies are those of the plain model, and it is removed again when the block ends. `dynamic=True` because the attacks'
batches shrink as images are fooled (a static shape would recompile at every new size). Off by default: on this
project's CPU (BENCHMARKS.md, "Speed on the card and on the CPU") a compiled ResNet-20 ran 1.4-1.9x faster but took
about 115 s to compile, paying only after ~7 epochs of `fix`, and it has not been measured on a GPU."""
from __future__ import annotations

import contextlib
import shutil
from typing import Iterator

import torch
from torch import nn

from .errors import HardenError

COMPILED = "_compiled_net"


@contextlib.contextmanager
def compiled(model: nn.Module | None, on: bool, backend: str = "inductor") -> Iterator[None]:
    """Inside the block, `model`'s forward runs its network through torch.compile (a no-op when `on` is False or
    the model is None or not a harden Classifier). `backend`: torch.compile's (the tests use "eager": the same
    tracing, no kernel build)."""
    net = getattr(model, "net", None)
    if not on or model is None or not isinstance(net, nn.Module) or COMPILED in model.__dict__:
        yield
        return
    device = next(iter(net.parameters()), torch.empty(0)).device
    if backend == "inductor" and device.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
        raise HardenError("--compile on the CPU needs a C++ compiler (torch.compile's inductor backend builds its "
                          "kernels with one); install g++ or leave --compile off.")
    model.__dict__[COMPILED] = torch.compile(net, dynamic=True, backend=backend)
    try:
        yield
    finally:
        model.__dict__.pop(COMPILED, None)


def network(model: nn.Module) -> nn.Module:
    """The network a Classifier's forward runs: the compiled one inside `compiled(...)`, else its own."""
    fast = model.__dict__.get(COMPILED)
    return model.net if fast is None else fast
