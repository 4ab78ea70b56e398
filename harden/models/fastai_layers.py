"""fastai's head layers, for a pickled fastai model rebuilt without fastai (models/torch_layers.py): `vision_learner`'s
head (`create_head`) pools with AdaptiveConcatPool2d and flattens with fastai's Flatten before torch.nn's
BatchNorm1d, Dropout and Linear layers; a timm architecture's body is a TimmBody around the timm model. Each stand-in
keeps fastai's fields (its pickled settings) and computes what fastai's forward computes (fastai 2.x)."""
from __future__ import annotations

import torch
from torch import nn


class AdaptiveConcatPool2d(nn.Module):
    """fastai.layers.AdaptiveConcatPool2d: adaptive max pooling then average pooling, concatenated over channels."""

    def __init__(self, size: int | None = None):
        super().__init__()
        self.size = size or 1
        self.ap, self.mp = nn.AdaptiveAvgPool2d(self.size), nn.AdaptiveMaxPool2d(self.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


class Flatten(nn.Module):
    """fastai.layers.Flatten: one row per image (or one vector with `full`)."""

    def __init__(self, full: bool = False):
        super().__init__()
        self.full = full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1) if self.full else x.reshape(x.size(0), -1)


class TimmBody(nn.Module):
    """fastai.vision.learner.TimmBody: a timm model built with num_classes=0, its features (unpooled where its config
    has a pool size, for fastai's own head to pool)."""

    def __init__(self, model: nn.Module, needs_pool: bool = True):
        super().__init__()
        self.needs_pool, self.model = needs_pool, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x) if self.needs_pool else self.model(x)


STAND_INS = {"fastai.layers.AdaptiveConcatPool2d": AdaptiveConcatPool2d, "fastai.layers.Flatten": Flatten,
             "fastai.vision.learner.TimmBody": TimmBody}
