"""Whole-network fine-tuning recipes (`at`, `gda-brelu`, `patch-ft`) differ only in how a batch is
transformed before the loss, plus an optional architecture edit. This is their one shared piece on top
of the shared loop: a recipe supplies `batch_transform`; the loss is focal CE on what it returns."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..models import Classifier
from ..training import TrainConfig, fit, focal_loss
from .base import Recipe

# (model, x, y) -> (x for the loss, y for the loss, extra display fields); x's first len(x) rows are clean.
BatchTransform = Callable[[Classifier, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict]]


class FineTuneRecipe(Recipe):
    def frozen_base(self) -> bool:
        return False

    def attach(self, model: Classifier, params: dict[str, Any]) -> None:
        """No modules to add by default (the architecture edit of gda-brelu overrides this)."""

    def prepare_data(self, data, params: dict[str, Any], seed: int):
        """A recipe may build its training set once before training (patch-ft); default: as given."""
        return data

    def batch_transform(self, params: dict[str, Any], data, cfg: TrainConfig,
                        device: torch.device) -> BatchTransform:
        """(model, x, y) -> (x', y', extra fields); a transform that draws from random streams of its own names them
        in an attribute `carries` (saved with the run: resume.py)."""
        raise NotImplementedError

    def train(self, model: Classifier, data, params: dict[str, Any], cfg: TrainConfig, device: torch.device):
        if params.get("from_scratch"):
            for m in model.net.modules():
                if m is not model.net and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        for p in model.net.parameters():
            p.requires_grad_(True)
        data = self.prepare_data(data, params, cfg.seed)
        transform = self.batch_transform(params, data, cfg, device)
        gamma = float(params.get("focal_gamma", 0.0))

        def step(m: Classifier, x: torch.Tensor, y: torch.Tensor):
            xb, yb, extra = transform(m, x, y)
            logits = m(xb)
            return focal_loss(logits, yb, gamma), logits[: len(x)], extra

        return fit(model, data, cfg, device, step=step, desc=self.name, carries=getattr(transform, "carries", None))
