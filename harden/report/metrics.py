"""Seed 004's section 4.1 metrics through ART (art.metrics), on the evaluated model (white-box)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..runtime import frozen


def seed004_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     device: torch.device) -> dict[str, float]:
    """Seed 004 section 4.1 metrics through ART (art.metrics), on the evaluated model (white-box):
    empirical robustness (minimal FGSM perturbation / input norm; ART's only supported crafter) and
    loss sensitivity (mean L2 norm of the input gradient of the loss)."""
    from art.metrics import empirical_robustness, loss_sensitivity

    from ..attacks.base import art_classifier, to_numpy
    with frozen(model):
        clf = art_classifier(model, tuple(x.shape[1:]), int(model.spec.num_classes) if hasattr(model, "spec")
                             else int(model(x[:1]).shape[1]))
        xn = to_numpy(x)
        onehot = np.eye(clf.nb_classes, dtype=np.float32)[to_numpy(y).astype(np.int64)]
        er = float(empirical_robustness(clf, xn, "fgsm", {"eps_step": 0.01, "eps": 1.0, "batch_size": batch_size}))
        ls = float(loss_sensitivity(clf, xn, onehot))
    return {"empirical_robustness": er, "loss_sensitivity": ls}
