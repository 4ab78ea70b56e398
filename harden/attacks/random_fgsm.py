"""Random+FGSM (Tramer et al. 2018; seed 004 section 4.1): a random sign step of alpha, then FGSM with
the rest of the budget. Written in torch: it is two lines, and ART has no such attack."""
import torch

from .base import Attack, AttackOutput, register_attack, uniform_noise


@register_attack
class RandomFGSM(Attack):
    name = "random-fgsm"
    single_step = True
    norm = "inf"
    # seed 004: alpha 0.05 at MNIST's eps 0.3, i.e. alpha = eps / 6; it scales with eps like a step.
    defaults = {"eps": 8 / 255, "alpha": 8 / 255 / 6}
    source = "seed 004 section 4.1 (random step alpha = 0.05 at eps 0.3, taken from the budget)"

    def run(self, model, x, y, generator=None):
        eps, alpha = self.params["eps"], min(self.params["alpha"], self.params["eps"])
        noise = uniform_noise(x.shape, generator, x.device, normal=True)
        x0 = (x + alpha * noise.sign()).clamp(0, 1).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x0), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x0)
        x_adv = (x0.detach() + (eps - alpha) * g.sign())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        return AttackOutput(x_adv, grad_passes=len(x))
