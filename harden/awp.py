"""Adversarial weight perturbation (AWP, Wu et al. 2020, "Adversarial Weight Perturbation Helps Robust
Generalization"): each training step takes its gradient at weights w + v, where v pushes every layer's weight
tensor a fixed fraction gamma of its own norm up the adversarial loss, and applies the update to w itself.
Flattening the robust loss landscape this way narrows the gap between training and test robust accuracy, which
is widest when a model is fine-tuned on a few thousand images.

Use: `perturb(loss_fn)` before the training loss is computed (loss_fn evaluates the adversarial loss at the
current weights), then `restore()` once the optimizer has stepped (the shared loop's `after_step`)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .runtime import batchnorm_statistics_kept


class WeightPerturbation:
    """AWP on every trainable weight tensor with more than one dimension (convolution and linear weights; biases
    and normalisation parameters are left alone, as in Wu et al.'s code): v_l = gamma ||w_l|| g_l / ||g_l||, g_l
    the gradient of the adversarial loss (one ascent step normalised per layer, their eq. 9 with one step)."""

    def __init__(self, model: nn.Module, gamma: float):
        self.model = model
        self.gamma = float(gamma)
        self.params = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
        self.v: list[torch.Tensor] | None = None

    def perturb(self, loss_fn: Callable[[], torch.Tensor]) -> None:
        if self.v is not None:
            raise RuntimeError("AWP: perturb() called twice without restore()")
        with batchnorm_statistics_kept(self.model):
            loss = loss_fn()
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        with torch.no_grad():
            self.v = []
            for p, g in zip(self.params, grads, strict=True):
                if g is None:
                    v = torch.zeros_like(p)
                else:
                    v = self.gamma * p.norm() * g / (g.norm() + 1e-20)
                p.add_(v)
                self.v.append(v)

    def restore(self) -> None:
        """Take v off again (after the optimizer's step, so the update found at w + v lands on w)."""
        if self.v is None:
            return
        with torch.no_grad():
            for p, v in zip(self.params, self.v, strict=True):
                p.sub_(v)
        self.v = None
