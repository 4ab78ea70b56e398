"""Random draws made per image, so that a report's verdicts do not depend on how its images were batched.

The report attacks its images in batches whose size is the machine's (128 on the CPU, found from free memory on a
card, or `--batch-size`). A random start drawn for a whole batch from one generator gives an image another start at
another batch size: the same model measured on a CPU runner and on a GPU runner (or on one card with more or less
memory free) had images change verdict by chance alone, and JSMA's random target classes moved its robust accuracy
by 9 points on 100 images between batches of 64 and 17. A `RowStreams` is the batch's generator that also knows
which images its rows are (their positions in the report's sample): `uniform_noise` and `row_randint` draw each row
from a stream seeded by the report's seed, that image and how many draws the image has had, on the CPU, so an image
gets the same random start wherever it is batched and on whichever device. It is a torch Generator too (seeded by
the batch), for draws made for a batch as a whole. Square draws its squares from the report's seed alone and its
signs per image (square.py: L-inf's starting stripes from `per_row`, L2's thousands of per-iteration signs hashed on
the device by `hashed_signs`, no Python loop over images); AutoAttack's FAB-T (one run, no random start) draws
nothing."""
from __future__ import annotations

from typing import Callable

import torch

_MASK = (1 << 64) - 1
_M32 = (1 << 32) - 1


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

    def keys(self, device: torch.device) -> torch.Tensor:
        """One 62-bit key an image (its next draw), on `device`: the seeds `hashed_signs` draws from."""
        return self.per_row(lambda g: torch.randint(0, 2**62, (), generator=g)).to(device)

    def per_row(self, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
        """draw(generator) for each row from its image's next (CPU) stream, stacked (each image's count moves on)."""
        out = []
        for r in self.rows:
            k = self.counts.get(r, 0)
            self.counts[r] = k + 1
            out.append(draw(torch.Generator().manual_seed(row_seed(self.seed, r, k))))
        return torch.stack(out)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """x * c mod 2**32 for x in [0, 2**32), in 16-bit halves of c: no product leaves int64 (overflow is not defined)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32, Wellons): every input bit moves every output bit."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hashed_signs(keys: torch.Tensor, draw: int, per_row: int) -> torch.Tensor:
    """(len(keys), per_row) signs in {-1, 1}: row i's `draw`-th draw from its key, on the keys' device. A counter-based
    draw (a hash of key, draw and position) rather than a generator per image: one image's signs whatever the batch,
    with a few elementwise kernels however many images and draws (L2 Square makes one draw an image per query)."""
    lo, hi = keys & _M32, (keys >> 32) & _M32
    pos = torch.arange(per_row, device=keys.device, dtype=torch.long)
    where = _mix32((_mul32(torch.full_like(pos, draw & _M32), 0x9E3779B9) + pos) & _M32)  # this draw's positions
    h = _mix32(lo[:, None] ^ _mix32(hi[:, None] ^ where[None, :]))
    return ((h >> 31) & 1).to(torch.float32) * 2 - 1  # the top bit: a multiplicative hash mixes it best


def rows_of(generator: torch.Generator | None, idx: torch.Tensor) -> torch.Generator | None:
    """The generator for rows `idx` of a batch: their own streams where it knows its rows, else itself."""
    return generator.subset(idx) if isinstance(generator, RowStreams) else generator


def row_randint(generator: torch.Generator | None, low: int, high: int, n: int, device: torch.device) -> torch.Tensor:
    """n integers in [low, high), one a row: drawn per image where the generator knows its rows."""
    if isinstance(generator, RowStreams) and len(generator.rows) == n and n:
        return generator.per_row(lambda g: torch.randint(low, high, (), generator=g)).to(device)
    return torch.randint(low, high, (n,), generator=generator, device="cpu").to(device)
