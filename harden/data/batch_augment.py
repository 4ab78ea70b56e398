"""Pad + random crop (+ horizontal flip) for a whole batch at once, on the batch's device: the adversarial-training
augmentations of small images ('crop', 'flip-crop') as one gather, not a Python call per image.

albumentations' per-image pipeline (transforms.build_augment: PadIfNeeded with reflect-101 borders, RandomCrop,
HorizontalFlip) stays the reference: tests/test_batch_augment.py checks that the same crops and flips give the same
pixels. Why by hand: on a card a training step of small images costs its host work, and albumentations' calls were a
fifth of it (one thread, the network replaced by one linear layer: 3.35-3.51 ms a step, 2.70-3.16 batched; 32 CIFAR
images augmented in 0.66 ms by albumentations, 0.21 ms here; BENCHMARKS.md, "On the card"). The other pipelines
(seed 000's, with solarize and cutout) stay with albumentations."""
from __future__ import annotations

import torch

BATCHED_KINDS = ("crop", "flip-crop")


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices outside [0, n) mirrored back without repeating the edge (OpenCV's BORDER_REFLECT_101)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def pad_crop_flip(x: torch.Tensor, pad: tuple[int, int], top: torch.Tensor, left: torch.Tensor,
                  flip: torch.Tensor) -> torch.Tensor:
    """x: N x H x W x C (any dtype). Each image padded by `pad` (rows, columns) on every side with reflected borders,
    cropped back to H x W at (top, left) of the padded image, and mirrored left-right where `flip`."""
    n, h, w, c = x.shape
    dev = x.device
    rows = _reflect(top.to(dev)[:, None] + torch.arange(h, device=dev) - pad[0], h)  # N x H
    cols = left.to(dev)[:, None] + torch.arange(w, device=dev)
    cols = _reflect(torch.where(flip.to(dev)[:, None], cols.flip(1), cols) - pad[1], w)  # N x W
    # one row gather over the flattened pixels (2.2x faster on the CPU than indexing with three broadcast tensors)
    at = (torch.arange(n, device=dev)[:, None, None] * (h * w) + rows[:, :, None] * w + cols[:, None, :]).reshape(-1)
    return x.reshape(n * h * w, c).index_select(0, at).reshape(n, h, w, c)


class BatchCrop:
    """The 'crop' / 'flip-crop' pipeline of transforms.build_augment for batches: the same padding (1/8 of the side,
    at least 1), crop and flip probability, drawn from one CPU generator seeded by `seed` (its state is the feeder's
    random state, saved with a run)."""

    def __init__(self, kind: str, size: tuple[int, int], seed: int):
        h, w = size
        self.pad = (max(1, h // 8), max(1, w // 8))
        self.flips = kind == "flip-crop"
        self.generator = torch.Generator().manual_seed(int(seed))

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        top = torch.randint(0, 2 * self.pad[0] + 1, (n,), generator=self.generator)
        left = torch.randint(0, 2 * self.pad[1] + 1, (n,), generator=self.generator)
        flip = torch.rand(n, generator=self.generator) < 0.5 if self.flips else torch.zeros(n, dtype=torch.bool)
        return top, left, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x H x W x C pixels (on any device) -> augmented, same layout and dtype."""
        return pad_crop_flip(x, self.pad, *self.draw(len(x)))


def build_batch_augment(kind: str, size: tuple[int, int], seed: int) -> BatchCrop | None:
    """The batched form of `kind` where there is one (None: use transforms.build_augment). Reflected borders need a
    side longer than its padding (max(1, side // 8) < side from 2 pixels on)."""
    h, w = size
    if kind not in BATCHED_KINDS or min(h, w) < 2:
        return None
    return BatchCrop(kind, (h, w), seed)


def small_image_augment(kind: str, size: tuple[int, int], seed: int):
    """(the batched pipeline or None, albumentations' per-image pipeline or None, the random stream the one in use
    draws from): what a feeder of small images augments with, and saves with a run (resume.py)."""
    from .transforms import build_augment
    batched = build_batch_augment(kind, size, seed)
    if batched is not None:
        return batched, None, batched.generator
    per_image = build_augment(kind, size, seed)
    return None, per_image, per_image
