"""PGD (Madry et al.) through ART's ProjectedGradientDescent (its PyTorch implementation is used because
the Classifier normalizes inside and ART has no preprocessing to apply)."""
import numpy as np

from .base import Attack, AttackOutput, art_generate, register_attack


@register_attack
class PGD(Attack):
    name = "pgd"
    norm = "inf"
    defaults = {"eps": 8 / 255, "step": 0.005, "steps": 50, "restarts": 0}
    source = "seed 000 appendix A.2 (eps 8/255, step 0.005, 50 iterations; ART default: no random start)"

    def run(self, model, x, y, generator=None):
        from art.attacks.evasion import ProjectedGradientDescent
        p = self.params
        x_adv = art_generate(model, x, y, lambda clf: ProjectedGradientDescent(
            clf, norm=np.inf, eps=p["eps"], eps_step=p["step"], max_iter=p["steps"], num_random_init=p["restarts"],
            batch_size=len(x), verbose=False))
        return AttackOutput(x_adv, grad_passes=len(x) * p["steps"] * max(1, p["restarts"]))
