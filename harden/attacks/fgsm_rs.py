"""FGSM with a uniform random start ("fast" adversarial training, Wong et al. 2020, "Fast is better than
free"): delta ~ U(-eps, eps), one signed step of alpha = 1.25 eps, projected back to the ball. Torch:
ART has it only inside its FBF trainer, not as an attack."""
import torch

from .base import Attack, AttackOutput, register_attack, uniform_noise


@register_attack
class FGSMRandomStart(Attack):
    name = "fgsm-rs"
    single_step = True
    norm = "inf"
    defaults = {"eps": 8 / 255, "alpha": 10 / 255}
    source = "Wong et al. 2020 (alpha = 1.25 eps)"

    def run(self, model, x, y, generator=None):
        eps, alpha = self.params["eps"], self.params["alpha"]
        delta = uniform_noise(x.shape, generator, x.device) * eps
        x0 = (x + delta).clamp(0, 1).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x0), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x0)
        x_adv = x0.detach() + alpha * g.sign()
        return AttackOutput(torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1), grad_passes=len(x))
