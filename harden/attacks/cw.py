"""Bounded L-inf Carlini-Wagner: projected sign-gradient steps on C&W's margin loss inside the eps ball
(the "CW-inf" of Madry et al. and RobustBench). ART's CarliniLInfMethod has no eps bound (it shrinks tau
instead), so this is written in torch; tests compare its success with ART's on the same images."""
import torch

from ..host_sync import due, kept_rows
from .base import Attack, AttackOutput, frozen_where, margin, project, register_attack
from .refill import refilled


@register_attack
class CarliniWagnerLinf(Attack):
    name = "cw"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 25, "confidence": 0.0}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 25 iterations, confidence 0)"

    batches_at_once = 8  # an early-stopping attack: its batch kept full from the run's later batches (refill.py)
    launch_bound_only = True  # on a CPU, full batches are slower per image (base.Attack)

    def run(self, model, x, y, generator=None, chunk: int | None = None):
        p = self.params
        eps, step, kappa = p["eps"], p["step"], p["confidence"]

        def score(z: torch.Tensor, y0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # minimise max(Z_y - max_other, -kappa): the loss to descend, and whether the margin fools
            m = margin(z, y0)
            return torch.clamp(m, min=-kappa), (m.detach() < -kappa if kappa > 0 else m.detach() < 0)
        if chunk is not None and chunk < len(x):  # several batches at once, the batch kept full as images leave it
            out, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
            passes = refilled(model, x, y, torch.arange(len(x), device=x.device), chunk=chunk, steps=p["steps"],
                              start_of=lambda new: x[new].clone(), score=score,
                              move=lambda xa, g, x0: project(xa - step * g.sign(), x0, eps, "inf"),
                              out=out, fooled=fooled, progress=self.progressed)
            return AttackOutput(out, grad_passes=passes, forward_passes=0)
        best = x.clone()
        idx = torch.arange(len(x), device=x.device)  # images not yet fooled by the margin
        xa, x0, y0 = x.clone(), x, y
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        passes = fwd = 0
        for i in range(p["steps"] + 1):
            last = i == p["steps"]
            xr = xa.detach().requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                loss, now = score(model(xr), y0)
            done = done | now
            if last:
                fwd += len(idx)
                break
            # a fooled image stops moving and leaves at the next sync
            (g,) = torch.autograd.grad(loss.sum(), xr)
            passes += len(idx)
            xa = frozen_where(done, xa, project(xa - step * g.sign(), x0, eps, "inf"))
            if due(i + 1, x.device):
                best[idx] = xa
                keep = kept_rows(done)
                idx, x0, y0, xa, done = idx[keep], x0[keep], y0[keep], xa[keep], done[keep]
                if idx.numel() == 0:
                    break
        best[idx] = xa  # fooled: the point that fooled them; unfooled: the last iterate
        return AttackOutput(best, grad_passes=passes, forward_passes=fwd)
