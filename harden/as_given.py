"""A module the caller hands to the library is given back as it came. `harden.evaluate` puts a network in eval mode,
on the run's device (and channels-last on CUDA) for its attacks; a researcher who evaluates between epochs goes on
training the very module they passed, so none of that may outlive the call: each submodule's train/eval flag, the
device of its weights and their memory layout are put back (requires_grad is, by `runtime.frozen`). So is torch's
default dtype: a notebook's `torch.set_default_dtype(torch.float64)` would make every tensor harden creates float64
beside the float32 it computes in, so the call runs at float32's (the caller's network is fed in its own weights' type
all the same: Classifier.normalize)."""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
from typing import Callable, Iterator

import torch
from torch import nn


def _device(module: nn.Module) -> torch.device | None:
    t = next(itertools.chain(module.parameters(), module.buffers()), None)
    return None if t is None else t.device


def _plain_layout(module: nn.Module) -> bool:
    """Every 4-d weight in the plain (contiguous) layout."""
    return all(p.is_contiguous() for p in module.parameters() if p.ndim == 4)


@contextlib.contextmanager
def as_given(*modules: object) -> Iterator[None]:
    """Inside the block the modules may be switched to eval mode, moved and converted; after it, each is as given."""
    kept = [(m, [(sub, sub.training) for sub in m.modules()], _device(m), _plain_layout(m))
            for m in modules if isinstance(m, nn.Module)]
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(default_dtype)
        for m, flags, device, plain in kept:
            for sub, training in flags:
                sub.training = training
            if device is not None and _device(m) != device:
                m.to(device)
            if plain and not _plain_layout(m):
                m.to(memory_format=torch.contiguous_format)


def gives_back(*names: str) -> Callable:
    """Decorator: the named arguments of the call, where they are modules, are given back as they came (as_given)."""
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            given = signature.bind_partial(*args, **kwargs).arguments
            with as_given(*(given.get(n) for n in names)):
                return fn(*args, **kwargs)
        return call
    return decorate
