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


def predict_labels(model: torch.nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
                   finite: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The model's predicted classes for x, in batches (halved on CUDA out-of-memory). `finite`: a list that gets,
    batch by batch, whether each image's scores are all finite."""
    def batch(s: int, e: int) -> torch.Tensor:
        z = model(x[s:e])
        if finite is not None:
            finite.append(torch.isfinite(z).all(1))
        return z.argmax(1)
    with torch.no_grad():
        outs = run_batched(batch, len(x), batch_size, device)
    return torch.cat(outs)


def non_finite_scores(finite: list[torch.Tensor], model_name: str, where: str = "test images") -> str | None:
    """The error for scores that are NaN or infinite on some images (predict_labels' `finite`), else None."""
    ok = torch.cat(finite) if finite else torch.ones(0, dtype=torch.bool)
    bad = (~ok).nonzero().flatten()
    if not bad.numel():
        return None
    return (f"{model_name}'s scores are NaN or infinite on {bad.numel()} of {ok.numel()} {where} (the first at "
            f"position {int(bad[0])}): its forward divides by zero or takes a log or square root out of its domain on "
            "them (a flat image's standard deviation, the log of a zero). No class is predicted for such an image, "
            "so neither accuracy nor robustness is defined on it: make the forward safe there (a small epsilon) and "
            "run again.")
