"""Images a run holds for its whole length (the report's evaluation images, `at`'s validation slice), kept as the
uint8 pixels they were decoded as and served as fp32 a batch at a time. Files and arrays at the model's size are
uint8 before they are anything else, and images() is pixels / 255, so x[s:e] is bitwise what the float images would
have held, at a quarter of their memory (n x 0.14 MiB at 224 px, not 0.57 MiB), and on the host, not the card. Arrays
of another size than the model's are resized a batch at a time as they are read."""
from __future__ import annotations

import numpy as np
import torch

from .base import Data, fit_size


def held_images(data: Data, split: str, idx: np.ndarray, device: torch.device | str, size: tuple[int, int]
                ) -> tuple["EvalImages", torch.Tensor]:
    """(x, y) of these images at `size` (arrays of another size resized as a batch is read; files come at their
    transform's). x is held on the host and each batch goes to `device` when it is read; y is on `device`."""
    try:
        x, y = data.pixels(split, idx, "cpu")
    except NotImplementedError:  # a Data of one's own that gives float images only: held as they come
        x, y = data.images(split, idx, "cpu")
    return EvalImages(x, device, size), y.to(device)


class EvalImages:
    """Indexed like the N x C x H x W fp32 tensor in [0, 1] on `device` it stands for; every index gives fp32 on the
    device (a copy). The pixels stay on the host (pinned for CUDA, so a batch's copy is asynchronous): a report of
    10,000 images at 224 px holds 1.5 GB of host memory, not of the card's, and moves 2.4 MB a batch of 16 (the
    card's time for that batch's attack is seconds)."""

    def __init__(self, pixels: torch.Tensor, device: torch.device | str = "cpu", size: tuple[int, int] | None = None):
        self._device = torch.device(device)
        if self._device.type == "cuda" and pixels.device.type == "cpu" and torch.cuda.is_available():
            pixels = pixels.pin_memory()
        self.pixels = pixels  # uint8 (or fp32 in [0, 1] from a Data of one's own), at the source's size
        self.size = tuple(size) if size is not None else tuple(pixels.shape[-2:])

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, torch.Tensor) and key.device != self.pixels.device:
            key = key.to(self.pixels.device)
        part = self.pixels[key].to(self._device, non_blocking=True)
        part = part.float().div_(255.0) if part.dtype == torch.uint8 else part
        if tuple(part.shape[-2:]) == self.size:
            return part
        # arrays of another size: resized as a batch is read (image by image, as a resize of them all)
        return fit_size(part, self.size) if part.ndim == 4 else fit_size(part[None], self.size)[0]

    def head(self, n: int) -> "EvalImages":
        """The first n images, held the same way (a view)."""
        return EvalImages(self.pixels[:n], self._device, self.size)

    def take(self, idx: torch.Tensor) -> "EvalImages":
        """The images at idx, held the same way (a copy of their pixels)."""
        return EvalImages(self.pixels[idx.to(self.pixels.device)], self._device, self.size)

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.pixels.shape[:-2], *self.size))

    @property
    def device(self) -> torch.device:
        return self._device
