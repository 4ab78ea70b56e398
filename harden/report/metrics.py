"""Seed 004's section 4.1 metrics on the evaluated model (white-box): ART's definitions (art.metrics), computed in
torch on the model's device. ART's own functions go through numpy and predict the whole batch at every one of up to
100 budget steps; they stay the reference in tests/test_attacks.py, which checks that both give the same values."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import frozen

ER_EPS_STEP, ER_EPS_MAX = 0.01, 1.0  # the minimal FGSM's budget grid, as harden has always passed it to ART


def empirical_robustness(model: nn.Module, x: torch.Tensor, batch_size: int, eps_step: float = ER_EPS_STEP,
                         eps_max: float = ER_EPS_MAX) -> float:
    """art.metrics.empirical_robustness(classifier, x, "fgsm", {eps_step, eps}): the minimal FGSM (the sign of the
    cross-entropy gradient at the model's own prediction, scaled by eps_step, 2 eps_step, ... until the prediction
    changes, at most eps_max), then the mean over changed predictions of ||x_adv - x||_inf / ||x||_inf (FGSM's norm).
    Each budget step forwards only the images it has not changed yet. An all-black image (||x|| = 0) has no ratio
    (ART's mean becomes infinite) and is left out of the mean."""
    ratios = []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]
        with torch.no_grad():
            pred = model(xb).argmax(1)
        xr = xb.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xr), pred, reduction="sum"), xr)
        pert = g.sign()
        adv = xb.clone()
        active = torch.arange(len(xb), device=xb.device)
        eps = eps_step
        with torch.no_grad():
            while active.numel() and eps <= eps_max:
                cand = (xb[active] + eps * pert[active]).clamp(0, 1)
                adv[active] = cand
                active = active[model(cand).argmax(1) == pred[active]]
                eps += eps_step
            changed = model(adv).argmax(1) != pred
            norm = xb.flatten(1).abs().amax(1)
            keep = changed & (norm > 0)
            size = (adv - xb).flatten(1).abs().amax(1)[keep] / norm[keep]
        ratios.append(size)
    ratios_all = torch.cat(ratios) if ratios else torch.zeros(0)
    return float(ratios_all.mean()) if ratios_all.numel() else 0.0


def loss_sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """art.metrics.loss_sensitivity(classifier, x, y): the mean L2 norm of the input gradient of the loss, the loss
    being ART's cross-entropy averaged over all of x at once (so each gradient carries a factor 1/len(x))."""
    norms = []
    for s in range(0, len(x), batch_size):
        xr = x[s:s + batch_size].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y[s:s + batch_size], reduction="sum") / len(x), xr)
        norms.append(g.flatten(1).norm(dim=1))
    return float(torch.cat(norms).mean())


def seed004_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    device: torch.device) -> dict[str, float]:
    """Seed 004 section 4.1: empirical robustness (minimal FGSM perturbation / input norm; ART's only supported
    crafter) and loss sensitivity (mean L2 norm of the input gradient of the loss)."""
    with frozen(model):
        return {"empirical_robustness": empirical_robustness(model, x, batch_size),
                "loss_sensitivity": loss_sensitivity(model, x, y, batch_size)}
