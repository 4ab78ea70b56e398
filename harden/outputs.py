"""What a model's forward returns: logits, log-probabilities (public MNIST code often ends in log_softmax) or
probabilities (a softmax at the end). Found on a probe batch. Attacks and losses need logits or anything
shift-equivalent to them: log-probabilities are logits shifted per image, so CE, DLR, margins and C&W are
unchanged on them; probabilities are not, so attacks see their logarithm instead."""
from __future__ import annotations

import torch
from torch import nn

LOGITS = "logits"
LOG_PROBABILITIES = "log-probabilities"
PROBABILITIES = "probabilities"

_TOL = 1e-4


def detect_output_kind(model: nn.Module, x: torch.Tensor) -> str:
    """Probabilities: every row non-negative and summing to 1. Log-probabilities: every row non-positive with
    logsumexp 0. Anything else: logits."""
    with torch.no_grad():
        z = model(x).float()
    if z.ndim != 2 or z.shape[1] < 2:
        return LOGITS
    if (z >= -_TOL).all() and (z.sum(1) - 1).abs().max() < _TOL * z.shape[1]:
        return PROBABILITIES
    if (z <= _TOL).all() and z.logsumexp(1).abs().max() < _TOL * z.shape[1]:
        return LOG_PROBABILITIES
    return LOGITS


class LogOfProbabilities(nn.Module):
    """log(p) of a model that outputs probabilities: logits up to a per-image shift, for the attacks' losses."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        if hasattr(model, "spec"):
            self.spec = model.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).clamp_min(1e-30).log()


def as_logits(model: nn.Module, kind: str) -> nn.Module:
    return LogOfProbabilities(model) if kind == PROBABILITIES else model
