"""PGD (Madry et al. 2018), L-inf, batched in torch: signed gradient steps on the cross-entropy, projected to
the eps ball. An image leaves the batch at the first point where it is misclassified (that point is kept), so
robust accuracy is never higher than with ART's ProjectedGradientDescent, which returns the last iterate
(ART stays the reference in tests); restarts=0 starts from the clean image, as ART's default does."""
from typing import Callable

import torch
import torch.nn.functional as F

from ..host_sync import due, kept_rows
from .base import Attack, AttackOutput, ascent_direction, frozen_where, project, random_start, register_attack
from .refill import clean_fooled, refilled
from .row_streams import rows_of


def pgd(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int, restarts: int = 0,
        generator: torch.Generator | None = None, early_stop: bool = True,
        start: torch.Tensor | None = None, norm: str = "inf", chunk: int | None = None,
        progress: Callable[[float], None] | None = None) -> tuple[torch.Tensor, int, int]:
    """Returns (x_adv, gradient passes, forward-only passes) at image level, counting the images actually pushed
    through the model. early_stop=False runs every step on every image and returns the last iterate (Madry et
    al.'s training attack: high-loss points, not merely misclassified ones) without a single host synchronisation;
    with early stopping a fooled image stops moving at once and leaves the batch at the next step `host_sync.due`
    allows (every step on the CPU). `start`: the first run starts there (projected to the ball) instead of at x or a
    random point: PGD continued from where an earlier run stopped (the report's stronger-PGD check). norm "2": steps
    along the normalised gradient, projected to the L2 ball (Madry et al.'s L2 PGD; the attack pgd-l2). `chunk`
    (several of the report's batches given at once): at most this many images at a time, the batch kept full as
    images leave it (refill.py; the same paths, fewer calls of the network); `progress(share)` then says how far."""
    if not early_stop:  # (`start` is for the early-stopping form)
        return _pgd_all_steps(model, x, y, eps=eps, step=step, steps=steps, restarts=restarts, generator=generator,
                              norm=norm)
    if chunk is not None and chunk < len(x):
        return _pgd_refilled(model, x, y, eps=eps, step=step, steps=steps, restarts=restarts, generator=generator,
                             start=start, norm=norm, chunk=chunk, progress=progress)
    with torch.no_grad():
        fooled = model(x).argmax(1) != y
    x_adv = x.clone()
    grad_passes, fwd = 0, len(x)
    for r in range(max(1, restarts)):
        idx = (~fooled).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0, y0 = x[idx], y[idx]
        xa = x0.clone()
        if start is not None and r == 0:
            xa = project(start[idx], x0, eps, norm)
        elif restarts > 0:
            xa = random_start(x0, eps, norm, rows_of(generator, idx))
        done = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        for i in range(steps + 1):
            last = i == steps
            xr = xa.detach().requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                z = model(xr)
            done = done | (z.detach().argmax(1) != y0)
            if last:
                fwd += len(idx)
                break
            (g,) = torch.autograd.grad(F.cross_entropy(z, y0, reduction="sum"), xr)
            grad_passes += len(idx)
            xa = frozen_where(done, xa, project(xa + step * ascent_direction(g, norm), x0, eps, norm))
            if due(i + 1, x.device):  # fooled images (frozen at the point that fooled them) leave the batch
                x_adv[idx], fooled[idx] = xa, done
                keep = kept_rows(done)
                idx, x0, y0, xa, done = idx[keep], x0[keep], y0[keep], xa[keep], done[keep]
                if idx.numel() == 0:
                    break
        # the rest: fooled ones at the point that fooled them, unfooled ones at the last iterate
        x_adv[idx], fooled[idx] = xa, done
    return x_adv, grad_passes, fwd


def _pgd_refilled(model, x, y, *, eps, step, steps, restarts, generator, start, norm, chunk, progress
                  ) -> tuple[torch.Tensor, int, int]:
    """The early-stopping form over several batches, `chunk` images at a time with the batch refilled (refill.py):
    each restart over the images every earlier one left robust, each image from its own start."""
    fooled = clean_fooled(model, x, y, chunk)
    out, passes, rounds = x.clone(), 0, max(1, restarts)
    for r in range(rounds):
        todo = (~fooled).nonzero().squeeze(1)
        if not len(todo):
            break

        def start_of(new: torch.Tensor, r: int = r) -> torch.Tensor:
            if start is not None and r == 0:
                return project(start[new], x[new], eps, norm)
            if restarts > 0:
                return random_start(x[new], eps, norm, rows_of(generator, new))
            return x[new].clone()
        passes += refilled(model, x, y, todo, chunk=chunk, steps=steps, start_of=start_of,
                           score=lambda z, y0: (F.cross_entropy(z, y0, reduction="none"), z.detach().argmax(1) != y0),
                           move=lambda xa, g, x0: project(xa + step * ascent_direction(g, norm), x0, eps, norm),
                           out=out, fooled=fooled,
                           progress=None if progress is None else lambda share, r=r: progress((r + share) / rounds))
    return out, passes, len(x)


def _pgd_all_steps(model, x, y, *, eps, step, steps, restarts, generator, norm="inf") -> tuple[torch.Tensor, int, int]:
    """Every step on every image, the last iterate returned; images the model already misclassifies are left
    clean (as the early-stopping form leaves them), and with several restarts an image keeps the first restart whose
    last iterate fooled it. No data-dependent shapes, so nothing waits on the card."""
    with torch.no_grad():
        fooled = model(x).argmax(1) != y
    out, fwd = x.clone(), len(x)
    for r in range(max(1, restarts)):
        xa = x.clone()
        if restarts > 0:
            xa = random_start(x, eps, norm, generator)
        for _ in range(steps):
            xr = xa.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
            xa = project(xa + step * ascent_direction(g, norm), x, eps, norm)
        out = frozen_where(fooled, out, xa.detach())
        if r + 1 < restarts:  # which images the next restart still has to fool
            with torch.no_grad():
                fooled = fooled | (model(out).argmax(1) != y)
            fwd += len(x)
    return out, len(x) * steps * max(1, restarts), fwd


@register_attack
class PGD(Attack):
    name = "pgd"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 50, "restarts": 0, "early_stop": True}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 50 iterations; no random start, as ART's default)"

    batches_at_once = 8  # the early-stopping form keeps its batch full from the run's later batches (refill.py)
    launch_bound_only = True  # on a CPU, full batches are slower per image (base.Attack)

    def run(self, model, x, y, generator=None, start: torch.Tensor | None = None, chunk: int | None = None):
        """`start` (harden's extension, not part of the attack protocol): continue from these points. `chunk`: the
        most images attacked at once, where the report hands over several batches."""
        p = self.params
        x_adv, grad_passes, fwd = pgd(model, x, y, eps=p["eps"], step=p["step"], steps=p["steps"],
                                      restarts=p["restarts"], generator=generator, early_stop=p["early_stop"],
                                      start=start, chunk=chunk, progress=self.progressed)
        return AttackOutput(x_adv, grad_passes=grad_passes, forward_passes=fwd)
