"""Random draws made per image, so that a report's verdicts do not depend on how its images were batched.

The report attacks its images in batches whose size is the machine's (128 on the CPU, found from free memory on a
card, or `--batch-size`). A random start drawn for a whole batch from one generator gives an image another start at
another batch size: the same model measured on a CPU runner and on a GPU runner (or on one card with more or less
memory free) had images change verdict by chance alone, and JSMA's random target classes moved its robust accuracy
by 9 points on 100 images between batches of 64 and 17. A `RowStreams` is the batch's generator that also knows
which images its rows are (their positions in the report's sample): `uniform_noise` and `row_randint` draw each row
from a stream seeded by the report's seed, that image and how many draws the image has had, on the CPU, so an image
gets the same random start wherever it is batched and on whichever device. It is a torch Generator too (seeded by
the batch, as before), for the draws that stay per batch (L2 Square's); L-inf Square draws its starting stripes per
image and its squares from the report's seed alone (square.py), and AutoAttack's FAB-T (one run, no random start)
draws nothing."""
from __future__ import annotations

from typing import Callable

import torch

_MASK = (1 << 64) - 1


def _splitmix(h: int) -> int:
    h = (h + 0x9E3779B97F4A7C15) & _MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


def row_seed(seed: int, row: int, draw: int) -> int:
    """The seed of image `row`'s `draw`-th draw under the report's `seed` (63 bits, well mixed)."""
    h = 0
    for v in (seed, row, draw):
        h = _splitmix(h ^ (int(v) & _MASK))
    return h >> 1


class RowStreams(torch.Generator):
    """A batch's generator that knows its rows' images (`rows`: their positions in the report's sample). Draws
    counted per image (`counts`, shared with every subset taken of it), so an image's k-th draw is the same whatever
    else was in its batch."""

    def __new__(cls, seed: int, rows: torch.Tensor, batch_seed: int, counts: dict[int, int] | None = None):
        return super().__new__(cls)

    def __init__(self, seed: int, rows: torch.Tensor, batch_seed: int, counts: dict[int, int] | None = None):
        super().__init__()
        self.manual_seed(int(batch_seed))  # the batch's own stream: draws made for a batch as a whole
        self.seed, self.batch_seed = int(seed), int(batch_seed)
        self.rows = [int(r) for r in torch.as_tensor(rows).reshape(-1).tolist()]
        self.counts = {} if counts is None else counts

    def subset(self, idx: torch.Tensor) -> "RowStreams":
        """The streams of rows `idx` of this batch (an attack's active images), sharing the images' draw counts."""
        picked = torch.as_tensor(idx).reshape(-1).tolist()
        return RowStreams(self.seed, torch.tensor([self.rows[i] for i in picked], dtype=torch.long),
                          self.batch_seed + 1, self.counts)

    def per_row(self, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
        """draw(generator) for each row from its image's next (CPU) stream, stacked (each image's count moves on)."""
        out = []
        for r in self.rows:
            k = self.counts.get(r, 0)
            self.counts[r] = k + 1
            out.append(draw(torch.Generator().manual_seed(row_seed(self.seed, r, k))))
        return torch.stack(out)


def rows_of(generator: torch.Generator | None, idx: torch.Tensor) -> torch.Generator | None:
    """The generator for rows `idx` of a batch: their own streams where it knows its rows, else itself."""
    return generator.subset(idx) if isinstance(generator, RowStreams) else generator


def row_randint(generator: torch.Generator | None, low: int, high: int, n: int, device: torch.device) -> torch.Tensor:
    """n integers in [low, high), one a row: drawn per image where the generator knows its rows."""
    if isinstance(generator, RowStreams) and len(generator.rows) == n and n:
        return generator.per_row(lambda g: torch.randint(low, high, (), generator=g)).to(device)
    return torch.randint(low, high, (n,), generator=generator, device="cpu").to(device)
