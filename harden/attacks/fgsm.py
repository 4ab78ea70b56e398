"""FGSM (Goodfellow et al. 2015) through ART's FastGradientMethod; one gradient pass."""
import numpy as np

from .base import Attack, AttackOutput, art_generate, register_attack


@register_attack
class FGSM(Attack):
    name = "fgsm"
    norm = "inf"
    defaults = {"eps": 8 / 255}
    source = "seed 000 appendix A.2 (eps 8/255)"

    def run(self, model, x, y, generator=None):
        from art.attacks.evasion import FastGradientMethod
        x_adv = art_generate(model, x, y, lambda clf: FastGradientMethod(
            clf, norm=np.inf, eps=self.params["eps"], batch_size=len(x)))
        return AttackOutput(x_adv, grad_passes=len(x))
