"""Batching with out-of-memory halving, shared by the report and distributed.py (which runtime.py imports: this
module imports neither)."""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from rich.console import Console

T = TypeVar("T")


def run_batched(fn: Callable[[int, int], T], n: int, batch_size: int, device: torch.device,
                on_batch: Callable[[int], None] | None = None) -> list[T]:
    """Call fn(start, stop) over [0, n) in batches; on CUDA out-of-memory halve the batch and retry."""
    out: list[T] = []
    start = 0
    bs = max(1, int(batch_size))
    while start < n:
        stop = min(n, start + bs)
        try:
            out.append(fn(start, stop))
        except torch.OutOfMemoryError:
            if device.type != "cuda" or bs == 1:
                raise
            torch.cuda.empty_cache()
            bs = max(1, bs // 2)
            Console(stderr=True).print(f"[yellow]CUDA out of memory: batch size halved to {bs}[/]")
            continue
        if on_batch:
            on_batch(stop - start)
        start = stop
    return out


def predict_labels(model: torch.nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """The model's predicted classes for x, in batches (halved on CUDA out-of-memory)."""
    with torch.no_grad():
        outs = run_batched(lambda s, e: model(x[s:e]).argmax(1), len(x), batch_size, device)
    return torch.cat(outs)
