"""AutoAttack (Croce & Hein 2020), the field's standard robustness evaluation, as one attack of the registry.

version=standard: APGD-CE (100 iterations, 1 restart), APGD-T (DLR-targeted, the 9 likeliest other classes,
100 iterations each), FAB-T (9 targets, 100 iterations) and Square (5000 queries, p_init 0.8), L-inf or L2.
version=rand, for randomized defences: APGD-CE and APGD-DLR with 20 EOT samples per gradient.
A cascade: each stage attacks only the images every earlier stage left robust, and the adversarial images
after each stage are kept so that the report gives robust accuracy stage by stage.

APGD is harden's batched port (autopgd.py, tested against the original); FAB and Square are the original
code (the `pyautoattack` package), called on the still-robust images."""
from __future__ import annotations

import time

import torch
from torch import nn

from ..errors import HardenError
from ..host_sync import deferred
from .autopgd import apgd
from .base import Attack, AttackOutput, register_attack
from .row_streams import rows_of
from .square import square

STAGES = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}
NORMS = {"linf": "inf", "inf": "inf", "l2": "2", "2": "2"}


class _Counting(nn.Module):
    """Counts image-level passes through the model: forwards that build a graph count as gradient passes
    (each is followed by one backward in these attacks), the rest as forward-only passes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.grad = 0
        self.fwd = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad += len(x)
        else:
            self.fwd += len(x)
        return self.model(x)


@register_attack
class AutoAttack(Attack):
    name = "autoattack"
    norm = "inf"
    defaults = {"eps": 8 / 255, "norm": "Linf", "version": "standard", "steps": 100, "n_targets": 9,
                "fab_steps": 100, "queries": 5000, "eot": 20}
    source = ("Croce & Hein 2020, AutoAttack version=standard (APGD-CE, APGD-T, FAB-T, Square 5000 queries) "
              "or rand (APGD-CE, APGD-DLR, 20 EOT samples); RobustBench's evaluation")

    def __init__(self, **params):
        super().__init__(**params)
        norm = NORMS.get(self.params["norm"].lower())
        if norm is None:
            raise HardenError(f"autoattack: norm must be Linf or L2, got {self.params['norm']!r}.")
        self.params["norm"] = "Linf" if norm == "inf" else "L2"
        self.norm = norm
        self.check()  # again, with the norm asked for (an L2 eps may exceed 1)
        if self.params["version"] not in STAGES:
            raise HardenError(f"autoattack: version must be one of {', '.join(STAGES)}, got "
                              f"{self.params['version']!r}.")

    def stage_names(self) -> list[str]:
        return list(STAGES[self.params["version"]])

    batches_at_once = 8

    def run(self, model, x, y, generator=None, chunk: int | None = None):
        """`chunk`: the most images attacked at once (the report's batch, where it hands over several batches): each
        stage runs over the images still robust after the earlier ones, `chunk` at a time."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        chunk = chunk or len(x)
        counted = _Counting(model)
        with torch.no_grad():
            robust = torch.cat([counted(x[i:i + chunk]).argmax(1) == y[i:i + chunk] for i in range(0, len(x), chunk)])
        x_adv = x.clone()
        names = self.stage_names()
        fooled_at = torch.full((len(x),), len(names), dtype=torch.long, device=x.device)
        seconds: dict[str, float] = {}
        for k, stage in enumerate(names):
            t = time.perf_counter()  # a stage ends in indexing by a mask, which waits for the device
            left = robust.nonzero().squeeze(1)
            said = f"stage {k + 1} of {len(names)}, {stage}: {left.numel():,} of {len(x):,} still robust"
            self.say(said, k / len(names))
            # APGD over all of them with its batch kept full (refill.py), where launches are the cost; else a chunk
            # at a time
            refill = stage.startswith("apgd") and deferred(x.device) and left.numel() > chunk
            chunks = [left] if refill else left.split(chunk) if left.numel() else ()
            for j, idx in enumerate(chunks):
                if j:  # the stage's share, by the chunks it has attacked (each stage one share of the run)
                    self.say(said, (k + j / len(chunks)) / len(names))
                xa = self._stage(stage, counted, x[idx], y[idx], seed, rows_of(generator, idx),
                                 chunk=chunk if refill else None,  # a refilled stage's bar moves as images finish
                                 progress=lambda share, k=k, said=said: self.say(said, (k + share) / len(names)))
                with torch.no_grad():  # the cascade's own check: misclassified and inside the ball
                    fooled = torch.cat([counted(xa[i:i + chunk]).argmax(1) != y[idx[i:i + chunk]]
                                        for i in range(0, len(idx), chunk)]) & self._within(xa - x[idx])
                x_adv[idx[fooled]] = xa[fooled]
                robust[idx[fooled]] = False
                fooled_at[idx[fooled]] = k
            seconds[stage] = time.perf_counter() - t
        return AttackOutput(x_adv, grad_passes=counted.grad, forward_passes=counted.fwd, stages=names,
                            fooled_at=fooled_at, stage_seconds=seconds)

    def _within(self, delta: torch.Tensor) -> torch.Tensor:
        flat = delta.flatten(1)
        size = flat.abs().amax(1) if self.norm == "inf" else flat.norm(dim=1)
        return size <= self.params["eps"] + 1e-5

    def _stage(self, stage, model, x, y, seed, generator, chunk: int | None = None, progress=None):
        p = self.params
        eps, norm = p["eps"], self.norm
        if stage.startswith("apgd"):
            rand = p["version"] == "rand"
            loss = "ce" if stage == "apgd-ce" else "dlr"
            n_targets = p["n_targets"] if stage == "apgd-t" else 0
            x_adv, _, _ = apgd(model, x, y, eps=eps, norm=norm, steps=p["steps"], loss=loss, step=None,
                               restarts=1, n_targets=n_targets, eot=p["eot"] if rand else 1, generator=generator,
                               chunk=chunk, progress=progress)
            return x_adv
        with torch.no_grad():
            n_cls = model(x[:1]).shape[1]
        orig_norm = "Linf" if norm == "inf" else "L2"
        if stage == "fab-t":
            from pyautoattack.fab_pt import FABAttack_PT
            fab = FABAttack_PT(model, norm=orig_norm, n_restarts=1, n_iter=p["fab_steps"], eps=eps, seed=seed,
                               targeted=True, n_target_classes=max(1, min(p["n_targets"], n_cls - 1)),
                               device=x.device, verbose=False)
            return fab.perturb(x, y)
        if stage == "square":
            return square(model, x, y, eps=eps, norm=norm, queries=p["queries"], seed=seed, generator=generator)
        raise ValueError(stage)
