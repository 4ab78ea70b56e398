"""AutoPGD (Croce & Hein 2020), cross-entropy loss, through ART's AutoProjectedGradientDescent."""
import numpy as np

from .base import Attack, AttackOutput, art_generate, register_attack


@register_attack
class AutoPGD(Attack):
    name = "autopgd"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 25, "restarts": 1}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 25 iterations)"

    def run(self, model, x, y, generator=None):
        from art.attacks.evasion import AutoProjectedGradientDescent
        p = self.params
        x_adv = art_generate(model, x, y, lambda clf: AutoProjectedGradientDescent(
            clf, norm=np.inf, eps=p["eps"], eps_step=p["step"], max_iter=p["steps"], nb_random_init=p["restarts"],
            batch_size=len(x), verbose=False))
        return AttackOutput(x_adv, grad_passes=len(x) * p["steps"] * p["restarts"])
