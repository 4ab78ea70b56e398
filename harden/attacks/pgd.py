"""PGD (Madry et al. 2018), L-inf, batched in torch: signed gradient steps on the cross-entropy, projected to
the eps ball. An image leaves the batch at the first point where it is misclassified (that point is kept), so
robust accuracy is never higher than with ART's ProjectedGradientDescent, which returns the last iterate
(ART stays the reference in tests); restarts=0 starts from the clean image, as ART's default does."""
import torch
import torch.nn.functional as F

from .base import Attack, AttackOutput, register_attack


def pgd(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int, restarts: int = 0,
        generator: torch.Generator | None = None, early_stop: bool = True) -> tuple[torch.Tensor, int, int]:
    """Returns (x_adv, gradient passes, forward-only passes) at image level. early_stop=False runs every step
    on every image and returns the last iterate (Madry et al.'s training attack: high-loss points, not merely
    misclassified ones)."""
    with torch.no_grad():
        fooled = model(x).argmax(1) != y
    x_adv = x.clone()
    grad_passes, fwd = 0, len(x)
    for _ in range(max(1, restarts)):
        idx = (~fooled).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0, y0 = x[idx], y[idx]
        xa = x0.clone()
        if restarts > 0:
            noise = (torch.rand(x0.shape, generator=generator) * 2 - 1).to(x.device)
            xa = (x0 + eps * noise).clamp(0, 1)
        for i in range(steps + 1):
            last = i == steps
            xr = xa.clone().requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                z = model(xr)
            hit = z.argmax(1) != y0
            if not early_stop and not last:
                hit = torch.zeros_like(hit)
            if hit.any():
                x_adv[idx[hit]] = xa[hit]
                fooled[idx[hit]] = True
            if last:
                fwd += len(idx)
                x_adv[idx[~hit]] = xa[~hit]
                break
            (g,) = torch.autograd.grad(F.cross_entropy(z, y0, reduction="sum"), xr)
            grad_passes += len(idx)
            keep = ~hit
            idx, x0, y0 = idx[keep], x0[keep], y0[keep]
            if idx.numel() == 0:
                break
            xa = xa[keep] + step * g[keep].sign()
            xa = torch.min(torch.max(xa, x0 - eps), x0 + eps).clamp(0, 1)
    return x_adv, grad_passes, fwd


@register_attack
class PGD(Attack):
    name = "pgd"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 50, "restarts": 0, "early_stop": True}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 50 iterations; no random start, as ART's default)"

    def run(self, model, x, y, generator=None):
        p = self.params
        x_adv, grad_passes, fwd = pgd(model, x, y, eps=p["eps"], step=p["step"], steps=p["steps"],
                                      restarts=p["restarts"], generator=generator, early_stop=p["early_stop"])
        return AttackOutput(x_adv, grad_passes=grad_passes, forward_passes=fwd)
