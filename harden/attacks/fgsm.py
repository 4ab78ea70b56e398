"""FGSM (Goodfellow et al. 2015): one signed gradient step of eps on the cross-entropy, clipped to [0, 1]. Torch on
the model's device (ART's FastGradientMethod, the reference in tests/test_attacks.py, goes through numpy: a third of
the floor's speed on a CIFAR ResNet-20, BENCHMARKS.md)."""
import torch
import torch.nn.functional as F

from .base import Attack, AttackOutput, register_attack


@register_attack
class FGSM(Attack):
    name = "fgsm"
    single_step = True
    norm = "inf"
    defaults = {"eps": 8 / 255}
    source = "seed 000 appendix A.2 (eps 8/255)"

    def run(self, model, x, y, generator=None):
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
        return AttackOutput((x + self.params["eps"] * g.sign()).clamp(0, 1), grad_passes=len(x))
