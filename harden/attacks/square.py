"""Square Attack (Andriushchenko et al. 2020): random square-shaped updates accepted when the margin loss
drops; no gradients, so gradient masking does not stop it. The original code (the `pyautoattack` package),
with AutoAttack's settings (p_init 0.8, no rescaled schedule), on the model's device."""
import torch

from .base import Attack, AttackOutput, register_attack


def square(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "inf", queries: int = 5000,
           seed: int = 0) -> torch.Tensor:
    from pyautoattack.square import SquareAttack
    sq = SquareAttack(model, p_init=0.8, n_queries=queries, eps=eps, norm="Linf" if norm == "inf" else "L2",
                      n_restarts=1, seed=seed, verbose=False, device=x.device, resc_schedule=False)
    with torch.no_grad():
        return sq.perturb(x, y)


@register_attack
class Square(Attack):
    name = "square"
    norm = "inf"
    defaults = {"eps": 8 / 255, "queries": 5000}
    source = "Andriushchenko et al. 2020; AutoAttack's settings (5000 queries, p_init 0.8)"

    def run(self, model, x, y, generator=None):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        x_adv = square(model, x, y, eps=self.params["eps"], queries=self.params["queries"], seed=seed)
        # every query is one forward pass of the images still unfooled; the bound is queries per image
        return AttackOutput(x_adv, grad_passes=0, forward_passes=len(x) * (self.params["queries"] + 1))
