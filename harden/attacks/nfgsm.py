"""N-FGSM (de Jorge et al. 2022, "Make some noise"): a uniform noise start of twice the budget, then one signed
step of alpha = eps, with no projection back to the eps ball (only to valid pixels). A single-step training
attack that avoids catastrophic overfitting at larger budgets without the cost of PGD."""
import torch

from .base import Attack, AttackOutput, register_attack, uniform_noise


@register_attack
class NFGSM(Attack):
    name = "nfgsm"
    single_step = True
    norm = "inf"
    defaults = {"eps": 8 / 255, "noise": 2.0, "alpha": 8 / 255}
    source = "de Jorge et al. 2022 (noise 2 eps, step eps, no clipping to the ball)"

    def run(self, model, x, y, generator=None):
        eps, alpha, k = self.params["eps"], self.params["alpha"], self.params["noise"]
        delta = uniform_noise(x.shape, generator, x.device) * k * eps
        x0 = (x + delta).clamp(0, 1).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x0), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x0)
        return AttackOutput((x0.detach() + alpha * g.sign()).clamp(0, 1), grad_passes=len(x))
