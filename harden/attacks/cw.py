"""Bounded L-inf Carlini-Wagner: projected sign-gradient steps on C&W's margin loss inside the eps ball
(the "CW-inf" of Madry et al. and RobustBench). ART's CarliniLInfMethod has no eps bound (it shrinks tau
instead), so this is written in torch; tests compare its success with ART's on the same images."""
import torch

from .base import Attack, AttackOutput, margin, register_attack


@register_attack
class CarliniWagnerLinf(Attack):
    name = "cw"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 25, "confidence": 0.0}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 25 iterations, confidence 0)"

    def run(self, model, x, y, generator=None):
        p = self.params
        eps, step, kappa = p["eps"], p["step"], p["confidence"]
        x_adv = x.clone()
        best = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(p["steps"]):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            m = margin(logits, y)
            hit = m.detach() < -kappa if kappa > 0 else m.detach() < 0
            new = hit & ~found
            best[new] = x_adv.detach()[new]
            found |= hit
            # minimise max(Z_y - max_other, -kappa): zero gradient once fooled by the margin.
            loss = torch.clamp(m, min=-kappa).sum()
            (g,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() - step * g.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
        with torch.no_grad():
            hit = margin(model(x_adv), y) < 0
        best[hit & ~found] = x_adv[hit & ~found]
        best[~(found | hit)] = x_adv[~(found | hit)]
        return AttackOutput(best, grad_passes=len(x) * p["steps"], forward_passes=len(x))
