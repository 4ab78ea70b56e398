"""Bounded L-inf Carlini-Wagner: projected sign-gradient steps on C&W's margin loss inside the eps ball
(the "CW-inf" of Madry et al. and RobustBench). ART's CarliniLInfMethod has no eps bound (it shrinks tau
instead), so this is written in torch; tests compare its success with ART's on the same images."""
import torch

from ..host_sync import due, kept_rows
from .base import Attack, AttackOutput, frozen_where, margin, register_attack


@register_attack
class CarliniWagnerLinf(Attack):
    name = "cw"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 25, "confidence": 0.0}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 25 iterations, confidence 0)"

    def run(self, model, x, y, generator=None):
        p = self.params
        eps, step, kappa = p["eps"], p["step"], p["confidence"]
        best = x.clone()
        idx = torch.arange(len(x), device=x.device)  # images not yet fooled by the margin
        xa, x0, y0 = x.clone(), x, y
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        passes = fwd = 0
        for i in range(p["steps"] + 1):
            last = i == p["steps"]
            xr = xa.detach().requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                m = margin(model(xr), y0)
            done = done | (m.detach() < -kappa if kappa > 0 else m.detach() < 0)
            if last:
                fwd += len(idx)
                break
            # minimise max(Z_y - max_other, -kappa); a fooled image stops moving and leaves at the next sync
            (g,) = torch.autograd.grad(torch.clamp(m, min=-kappa).sum(), xr)
            passes += len(idx)
            xn = xa - step * g.sign()
            xa = frozen_where(done, xa, torch.min(torch.max(xn, x0 - eps), x0 + eps).clamp(0, 1))
            if due(i + 1, x.device):
                best[idx] = xa
                keep = kept_rows(done)
                idx, x0, y0, xa, done = idx[keep], x0[keep], y0[keep], xa[keep], done[keep]
                if idx.numel() == 0:
                    break
        best[idx] = xa  # fooled: the point that fooled them; unfooled: the last iterate
        return AttackOutput(best, grad_passes=passes, forward_passes=fwd)
