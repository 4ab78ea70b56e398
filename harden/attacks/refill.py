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


class WorkingBatch:
    """The images a refilled attack holds, as named per-image tensors (`rows`, "ids" their positions in x among them):
    filled up to `chunk` from `todo` in the order given as images leave, the leaving ones taken out at a
    synchronisation. `make(positions)` gives fresh images' rows."""

    def __init__(self, todo: torch.Tensor, chunk: int, make: Callable[[torch.Tensor], dict[str, torch.Tensor]]):
        self.todo, self.chunk, self.make = todo, chunk, make
        self.pos = 0  # how many of `todo` have entered
        self.rows: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.rows["ids"]) if self.rows else 0

    def fill(self) -> bool:
        """Fresh images up to `chunk`; False once none are held and none wait."""
        held = len(self)
        if held < self.chunk and self.pos < len(self.todo):
            new = self.make(self.todo[self.pos:self.pos + self.chunk - held])
            self.pos += len(new["ids"])
            self.rows = {key: torch.cat([self.rows[key], v]) for key, v in new.items()} if self.rows else new
        return len(self) > 0

    def leave(self, finished: torch.Tensor, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The `finished` rows leave (one host read); returns their `keys`. While images wait the rows that stay are
        made room for; once none wait, the batch shrinks as the early-stopping attacks' batches do (on CUDA through a
        fixed ladder of sizes, finished rows as padding: those are returned again, unchanged)."""
        staying = len(finished) - int(finished.sum())
        order = torch.argsort(finished.to(torch.uint8), stable=True)  # the rows that stay first, in order
        gone = {key: self.rows[key][order[staying:]] for key in keys}
        keep = order[:staying] if self.pos < len(self.todo) else kept_rows(finished, staying)
        self.rows = {key: v[keep] for key, v in self.rows.items()}
        return gone

    def share_done(self) -> float:
        return (self.pos - len(self)) / max(len(self.todo), 1)


def refilled(model, x: torch.Tensor, y: torch.Tensor, todo: torch.Tensor, *, chunk: int, steps: int,
             start_of: Callable[[torch.Tensor], torch.Tensor], score: Score, move: Move, out: torch.Tensor,
             fooled: torch.Tensor, progress: Callable[[float], None] | None = None) -> int:
    """Images `todo` (positions in x), each from start_of(positions) through at most `steps` moves, evaluated before
    each move and after the last, until an evaluation finds it fooled (it stays at that point). At most `chunk`
    images at a time, filled up from `todo` in order as images leave. Writes each image's final point into `out`
    and whether it was fooled into `fooled`; returns the image-level gradient passes made. `progress(share)`: the
    share of `todo` finished, after each synchronisation."""
    device = x.device
    passes, i = 0, 0

    def make(new: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ids": new, "x0": x[new], "y0": y[new], "xa": start_of(new),
                "count": torch.zeros(len(new), dtype=torch.long, device=device),
                "done": torch.zeros(len(new), dtype=torch.bool, device=device)}
    batch = WorkingBatch(todo, chunk, make)
    while batch.fill():
        r = batch.rows
        xr = r["xa"].detach().requires_grad_(True)
        loss, now = score(model(xr), r["y0"])
        # a row past its last evaluation (kept as padding) is as it was
        r["done"] = r["done"] | (now.detach() & (r["count"] <= steps))
        # every row's gradient, the batch being one pass however many rows are at their last evaluation
        (g,) = torch.autograd.grad(loss.sum(), xr)
        passes += len(xr)
        moving = ~r["done"] & (r["count"] < steps)
        r["xa"] = torch.where(moving.view(-1, *[1] * (x.dim() - 1)), move(xr.detach(), g, r["x0"]), xr.detach())
        r["count"] = r["count"] + 1
        i += 1
        if due(i, device):  # finished images leave (fooled: at the point that fooled them; else at their last point)
            gone = batch.leave(r["done"] | (r["count"] > steps), ("ids", "xa", "done"))
            out[gone["ids"]], fooled[gone["ids"]] = gone["xa"], gone["done"]
            if progress is not None:
                progress(batch.share_done())
    return passes
