"""Images a run holds for its whole length (the report's evaluation images, `at`'s validation slice), kept as the
uint8 pixels they were decoded as and served as fp32 a batch at a time. Files and arrays at the model's size are
uint8 before they are anything else, and images() is pixels / 255, so x[s:e] is bitwise what the float images would
have held, at a quarter of their memory on the device (n x 0.14 MiB at 224 px, not 0.57 MiB). Arrays resized to the
model's size are held as the fp32 the resize made."""
from __future__ import annotations

import numpy as np
import torch

from .base import Data, fit_size


def held_images(data: Data, split: str, idx: np.ndarray, device: torch.device | str, size: tuple[int, int]
                ) -> tuple["EvalImages", torch.Tensor]:
    """(x, y) of these images at `size` (arrays of another size resized; files come at their transform's)."""
    try:
        x, y = data.pixels(split, idx, device)
    except NotImplementedError:  # a Data of one's own that gives float images only: held as they come
        x, y = data.images(split, idx, device)
    return EvalImages(x if tuple(x.shape[-2:]) == tuple(size) else fit_size(x.float().div_(255.0), size)), y


class EvalImages:
    """Indexed like the N x C x H x W fp32 tensor in [0, 1] it stands for; every index gives fp32 (a copy)."""

    def __init__(self, pixels: torch.Tensor):
        self.pixels = pixels  # uint8, or fp32 in [0, 1] where a resize made them

    def __getitem__(self, key) -> torch.Tensor:
        part = self.pixels[key]
        return part.float().div_(255.0) if part.dtype == torch.uint8 else part

    def head(self, n: int) -> "EvalImages":
        """The first n images, held the same way (a view)."""
        return EvalImages(self.pixels[:n])

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def shape(self) -> torch.Size:
        return self.pixels.shape

    @property
    def device(self) -> torch.device:
        return self.pixels.device
