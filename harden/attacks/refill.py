"""Early-stopping attacks over a run of several batches, with the working batch kept full.

An early-stopping attack (PGD, bounded C&W; AutoPGD keeps its own loop, autopgd.py) drops an image from its batch once
it is fooled, but a batch still takes every step while one image in it is robust: on a card bound by its launches a
step costs about the same at any batch size, so a batch of mostly fooled images costs as much as a full one (the
H200's PGD-50 at 0.29 of its floor, BENCHMARKS.md "On the card"). Given several of the report's batches at once
(`Attack.batches_at_once`), the images are instead taken into a working batch of `chunk` as others leave it: each step
moves a full batch of images, each at its own step count, until the last ones finish. An image's path is the one it
takes alone (its start from its own random stream, its moves from its own gradient), so the verdicts are those of one
batch at a time; what changes is the number of the network's calls (counted on the CPU, where arithmetic, not
launches, sets the time). The report does this on launch-bound devices only (`Attack.launch_bound_only`): on the CPU
full batches of a small network were slower per image than the shrinking ones they replace."""
from __future__ import annotations

from typing import Callable

import torch

from ..host_sync import due, kept_rows

# (outputs, labels) -> (a loss per image whose gradient the move follows, whether each image is fooled)
Score = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# (points, gradient, clean images) -> the next points (inside the ball and [0, 1])
Move = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def clean_fooled(model, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """Which images the model already misclassifies, `chunk` at a time."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + chunk]).argmax(1) != y[i:i + chunk] for i in range(0, len(x), chunk)])


def refilled(model, x: torch.Tensor, y: torch.Tensor, todo: torch.Tensor, *, chunk: int, steps: int,
             start_of: Callable[[torch.Tensor], torch.Tensor], score: Score, move: Move, out: torch.Tensor,
             fooled: torch.Tensor, progress: Callable[[float], None] | None = None) -> int:
    """Images `todo` (positions in x), each from start_of(positions) through at most `steps` moves, evaluated before
    each move and after the last, until an evaluation finds it fooled (it stays at that point). At most `chunk`
    images at a time, filled up from `todo` in order as images leave. Writes each image's final point into `out`
    and whether it was fooled into `fooled`; returns the image-level gradient passes made. `progress(share)`: the
    share of `todo` finished, after each synchronisation."""
    device = x.device
    pos, passes, i = 0, 0, 0
    idx = todo[:0]
    xa, x0, y0 = x[:0], x[:0], y[:0]
    count = torch.zeros(0, dtype=torch.long, device=device)
    done = torch.zeros(0, dtype=torch.bool, device=device)
    while True:
        room = chunk - len(idx)
        if room > 0 and pos < len(todo):  # the batch refilled in the order given
            new = todo[pos:pos + room]
            pos += len(new)
            idx, x0, y0 = torch.cat([idx, new]), torch.cat([x0, x[new]]), torch.cat([y0, y[new]])
            xa = torch.cat([xa, start_of(new)])
            count = torch.cat([count, torch.zeros(len(new), dtype=torch.long, device=device)])
            done = torch.cat([done, torch.zeros(len(new), dtype=torch.bool, device=device)])
        if not len(idx):
            return passes
        xr = xa.detach().requires_grad_(True)
        loss, now = score(model(xr), y0)
        done = done | (now.detach() & (count <= steps))  # a row past its last evaluation (kept as padding) is as it was
        # every row's gradient, the batch being one pass however many rows are at their last evaluation
        (g,) = torch.autograd.grad(loss.sum(), xr)
        passes += len(idx)
        moving = ~done & (count < steps)
        xa = torch.where(moving.view(-1, *[1] * (x.dim() - 1)), move(xa.detach(), g, x0), xa.detach())
        count = count + 1
        i += 1
        if due(i, device):  # finished images leave (fooled: at the point that fooled them; else at their last point)
            finished = done | (count > steps)
            staying = len(idx) - int(finished.sum())  # the one host read of a synchronisation
            order = torch.argsort(finished.to(torch.uint8), stable=True)  # the rows that stay first, in order
            gone = order[staying:]
            out[idx[gone]], fooled[idx[gone]] = xa[gone], done[gone]
            # while images wait, the rows that stay are made room for; once none wait, the batch shrinks as the
            # early-stopping attacks' batches do (on CUDA through a fixed ladder of sizes, finished rows as padding)
            keep = order[:staying] if pos < len(todo) else kept_rows(finished, staying)
            idx, xa, x0, y0, count, done = idx[keep], xa[keep], x0[keep], y0[keep], count[keep], done[keep]
            if progress is not None:
                progress((pos - len(idx)) / max(len(todo), 1))
