"""When the host waits for the device, and how often it may.

On CUDA every data-dependent shape or Python value (`bool(t)`, `t.item()`, `nonzero`, boolean-mask indexing) makes
the host wait until the card has finished everything queued: the Python side can no longer run ahead, and a small
model's step becomes launch latency. On the CPU those calls cost nothing. So loops that shrink their batch as
images are fooled (the attacks) or that print a running loss (the training loop) ask `due(i)` whether step i may
synchronise: every step on the CPU, and on CUDA at steps 1, 2, 4, 8, then every 8th (an image fooled at step s is
carried at most until step 2s or s + 8, frozen, before it leaves the batch).

`SyncCounter` counts the synchronising operations of a block on any device (a dispatch mode, so the CPU tests see
what CUDA's sync debug mode would flag) plus the deliberate reads made through `read` (a copy to the host, which on
the CPU dispatches nothing), and `policy("deferred")` makes the CPU follow CUDA's schedule in tests.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

DEFERRED_EVERY = 8  # on CUDA: the most steps between two synchronisations once past the first doublings

_forced: list[str] = []  # a policy forced by `policy(...)` (tests, benchmarks), innermost last


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """Force "eager" (synchronise every step, the CPU's default) or "deferred" (CUDA's) inside the block."""
    if name not in ("eager", "deferred"):
        raise ValueError(name)
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()


def deferred(device: torch.device) -> bool:
    if _forced:
        return _forced[-1] == "deferred"
    return device.type != "cpu"


def due(step: int, device: torch.device) -> bool:
    """Whether 1-based step `step` of a loop may synchronise with the host."""
    if not deferred(device):
        return True
    return step & (step - 1) == 0 if step < DEFERRED_EVERY else step % DEFERRED_EVERY == 0


def batch_ladder(m: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5 times them) that is >= m."""
    if m <= 0:
        return 0
    p = 1 << (m - 1).bit_length()  # the power of two >= m
    return p * 3 // 4 if p >= 4 and p * 3 // 4 >= m else p


def kept_rows(done: torch.Tensor, active_count: int | None = None) -> torch.Tensor:
    """The rows an early-stopping attack keeps when it synchronises: those not yet `done` (fooled). Where syncs are
    deferred (CUDA) the batch keeps a size from `batch_ladder`, the not-done rows first, then done rows as padding
    (they stay frozen where they were fooled, and writing them back again changes nothing); no smaller than the ladder
    allows, and unchanged when the ladder's size is not below the batch's. Why: on the H200 the early-stopping attacks
    ran at a quarter of their floor while the full-batch ones met it (BENCHMARKS.md "On the card"), and a batch that
    takes a new size at every sync meets two costs a fixed set of sizes avoids: the per-shape preparation of
    convolution libraries and the card's allocator, and a step of a few hundred small images costing its launches, so
    that a smaller batch saves nothing. One host read either way, as the plain `nonzero` was; none where the caller
    read the number of rows not done (`active_count`) already."""
    active = ~done
    if not deferred(done.device):
        return active.nonzero().squeeze(1)
    m = int(active.sum()) if active_count is None else active_count
    size = batch_ladder(m)
    if size >= len(done):
        return torch.arange(len(done), device=done.device)
    return torch.argsort(done.to(torch.uint8), stable=True)[:size]  # not-done rows first, in order


def _syncs(func, args) -> bool:
    name = func.overloadpacket.__name__
    if name in ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "_unique2", "unique_dim",
                "unique_consecutive", "repeat_interleave"):
        return name != "repeat_interleave" or isinstance(args[0], torch.Tensor) and len(args) == 1
    if name in ("index", "index_put", "index_put_", "_index_put_impl_"):
        indices = args[1] if len(args) > 1 else ()
        return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in indices or ())
    return False


def _in_optimizer() -> bool:
    """torch.optim's step counters live on the CPU (unless capturable or fused): their `.item()` never waits on
    the card, so it is not counted."""
    frame = sys._getframe(2)
    for _ in range(8):
        if frame is None:
            return False
        if "torch/optim/" in frame.f_code.co_filename.replace("\\", "/"):
            return True
        frame = frame.f_back
    return False


_counters: list["SyncCounter"] = []


def read(t: torch.Tensor) -> list:
    """t's values on the host as a list: the one deliberate way to read the device, counted by SyncCounter."""
    for c in _counters:
        c.add("read")
    return t.detach().cpu().tolist()


class SyncCounter(TorchDispatchMode):
    """Counts what inside the block makes the host wait for the device on CUDA: data-dependent shapes and Python
    values (`nonzero`, mask indexing, `.item()`, `bool()`) and reads through `read`."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.names: dict[str, int] = {}

    def add(self, key: str) -> None:
        self.count += 1
        self.names[key] = self.names.get(key, 0) + 1

    def __enter__(self):
        _counters.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        _counters.remove(self)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _syncs(func, args) and not (func.overloadpacket.__name__ == "_local_scalar_dense" and _in_optimizer()):
            self.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))
