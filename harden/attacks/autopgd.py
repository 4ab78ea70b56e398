"""AutoPGD (Croce & Hein 2020), cross-entropy loss, through ART's AutoProjectedGradientDescent."""
import numpy as np
import torch

from .base import Attack, AttackOutput, art_classifier, num_classes_of, register_attack, to_numpy


@register_attack
class AutoPGD(Attack):
    name = "autopgd"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 25, "restarts": 1}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 25 iterations)"

    def run(self, model, x, y, generator=None):
        from art.attacks.evasion import AutoProjectedGradientDescent
        p = self.params
        clf = art_classifier(model, tuple(x.shape[1:]), num_classes_of(model, x))
        atk = AutoProjectedGradientDescent(clf, norm=np.inf, eps=p["eps"], eps_step=p["step"], max_iter=p["steps"],
                                           nb_random_init=p["restarts"], batch_size=len(x), verbose=False)
        x_adv = atk.generate(to_numpy(x), y=to_numpy(y).astype(np.int64))
        return AttackOutput(torch.from_numpy(x_adv).to(x.device), grad_passes=len(x) * p["steps"] * p["restarts"])
