"""FGSM (Goodfellow et al. 2015) through ART's FastGradientMethod; one gradient pass."""
import numpy as np
import torch

from .base import Attack, AttackOutput, art_classifier, num_classes_of, register_attack, to_numpy


@register_attack
class FGSM(Attack):
    name = "fgsm"
    norm = "inf"
    defaults = {"eps": 8 / 255}
    source = "seed 000 appendix A.2 (eps 8/255)"

    def run(self, model, x, y, generator=None):
        from art.attacks.evasion import FastGradientMethod
        clf = art_classifier(model, tuple(x.shape[1:]), num_classes_of(model, x))
        atk = FastGradientMethod(clf, norm=np.inf, eps=self.params["eps"], batch_size=len(x))
        x_adv = atk.generate(to_numpy(x), y=to_numpy(y).astype(np.int64))
        return AttackOutput(torch.from_numpy(x_adv).to(x.device), grad_passes=len(x))
