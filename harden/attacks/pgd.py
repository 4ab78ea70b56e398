"""PGD (Madry et al. 2018), L-inf, batched in torch: signed gradient steps on the cross-entropy, projected to
the eps ball. An image leaves the batch at the first point where it is misclassified (that point is kept), so
robust accuracy is never higher than with ART's ProjectedGradientDescent, which returns the last iterate
(ART stays the reference in tests); restarts=0 starts from the clean image, as ART's default does."""
import torch
import torch.nn.functional as F

from ..host_sync import due, kept_rows
from .base import Attack, AttackOutput, ascent_direction, frozen_where, project, random_start, register_attack
from .row_streams import rows_of


def pgd(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int, restarts: int = 0,
        generator: torch.Generator | None = None, early_stop: bool = True,
        start: torch.Tensor | None = None, norm: str = "inf") -> tuple[torch.Tensor, int, int]:
    """Returns (x_adv, gradient passes, forward-only passes) at image level, counting the images actually pushed
    through the model. early_stop=False runs every step on every image and returns the last iterate (Madry et
    al.'s training attack: high-loss points, not merely misclassified ones) without a single host synchronisation;
    with early stopping a fooled image stops moving at once and leaves the batch at the next step `host_sync.due`
    allows (every step on the CPU). `start`: the first run starts there (projected to the ball) instead of at x or a
    random point: PGD continued from where an earlier run stopped (the report's stronger-PGD check). norm "2": steps
    along the normalised gradient, projected to the L2 ball (Madry et al.'s L2 PGD; the attack pgd-l2)."""
    if not early_stop:  # (`start` is for the early-stopping form)
        return _pgd_all_steps(model, x, y, eps=eps, step=step, steps=steps, restarts=restarts, generator=generator,
                              norm=norm)
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

    def run(self, model, x, y, generator=None, start: torch.Tensor | None = None):
        """`start` (harden's extension, not part of the attack protocol): continue from these points."""
        p = self.params
        x_adv, grad_passes, fwd = pgd(model, x, y, eps=p["eps"], step=p["step"], steps=p["steps"],
                                      restarts=p["restarts"], generator=generator, early_stop=p["early_stop"],
                                      start=start)
        return AttackOutput(x_adv, grad_passes=grad_passes, forward_passes=fwd)
