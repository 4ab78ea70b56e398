"""A crafting model (`--craft-on`) that takes another input size than the evaluated one: it is fed the evaluated
model's pixels resized to its own size, inside the attack's graph, so that the perturbation (and its budget) lives in
the evaluated model's pixels, where it is applied, while the crafting model sees images as it was trained to. Without
this a fixed-size network (a ViT at 224 px crafting for a 32-px CNN) could not run at all, and a size-agnostic one ran
on images at a scale it never saw."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResizedInput(nn.Module):
    """net(x resized to `size`): bilinear, antialiased when shrinking (differentiable either way)."""

    def __init__(self, net: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.net, self.size = net, tuple(int(v) for v in size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shrink = x.shape[-2] > self.size[0] or x.shape[-1] > self.size[1]
        return self.net(F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink))


def fed_at_its_size(source: nn.Module, name: str, pixels: tuple[int, int]) -> tuple[nn.Module, str | None]:
    """(the crafting model as the attacks call it, the report's note where it is resized). `pixels`: the evaluated
    model's input height and width."""
    spec = getattr(source, "spec", None)
    own = tuple(int(v) for v in spec.input_size) if spec is not None else None
    if own is None or own == tuple(pixels):
        return source, None
    return ResizedInput(source, own), (f"{name} takes {own[0]}x{own[1]} pixels: it crafted on the evaluated images "
                                       f"({pixels[0]}x{pixels[1]}) resized to that (bilinear) inside the attack, so "
                                       "the perturbation and its budget are in the evaluated model's pixels")
