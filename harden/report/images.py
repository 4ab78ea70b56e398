"""The report's evaluation images, held as the uint8 pixels they were decoded as and served as fp32 a batch at a
time. Files and arrays at the model's size are uint8 before they are anything else, and images() is pixels / 255,
so x[s:e] is bitwise what the float images would have held, at a quarter of their memory on the device (n x 0.15 MB
at 224 px, not 0.6 MB). Arrays resized to the model's size are held as the fp32 the resize made."""
from __future__ import annotations

import torch


class EvalImages:
    """Indexed like the N x C x H x W fp32 tensor in [0, 1] it stands for; every index gives fp32 (a copy)."""

    def __init__(self, pixels: torch.Tensor):
        self.pixels = pixels  # uint8, or fp32 in [0, 1] where a resize made them

    def __getitem__(self, key) -> torch.Tensor:
        part = self.pixels[key]
        return part.float().div_(255.0) if part.dtype == torch.uint8 else part

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def shape(self) -> torch.Size:
        return self.pixels.shape

    @property
    def device(self) -> torch.device:
        return self.pixels.device
