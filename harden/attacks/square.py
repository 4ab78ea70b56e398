"""Square Attack (Andriushchenko et al. 2020): random square-shaped updates accepted when the margin loss
drops; no gradients, so gradient masking does not stop it. The original code (the `pyautoattack` package),
with AutoAttack's settings (p_init 0.8, no rescaled schedule), on the model's device."""
import torch

from .base import Attack, AttackOutput, register_attack
from .row_streams import RowStreams


def square(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "inf", queries: int = 5000,
           seed: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The original's Square. With the report's per-image streams (`generator` a RowStreams), an L-inf run is the
    same for an image at any batch size: the original draws one square and its signs per iteration for the whole
    batch (from the report's seed alone, then: the same sequence in every batch) and only its starting stripes per
    image (drawn here from each image's own stream)."""
    from pyautoattack.square import SquareAttack

    class PerImageStart(SquareAttack):
        starts: RowStreams | None = None  # the streams of the images its one run starts on

        def random_choice(self, shape):
            s = self.starts
            if s is not None and len(shape) == 4 and shape[0] == len(s.rows) and shape[2] == 1:  # the stripes
                self.starts = None
                return s.per_row(lambda g: torch.sign(2 * torch.rand(tuple(shape[1:]), generator=g) - 1)).to(self.device)
            return super().random_choice(shape)

    per_image = isinstance(generator, RowStreams) and norm == "inf"
    sq = PerImageStart(model, p_init=0.8, n_queries=queries, eps=eps, norm="Linf" if norm == "inf" else "L2",
                       n_restarts=1, seed=generator.seed if per_image else seed, verbose=False, device=x.device,
                       resc_schedule=False)
    with torch.no_grad():
        if per_image:  # its one run starts on the images the model still gets right
            sq.starts = generator.subset((model(x).argmax(1) == y).nonzero().reshape(-1).cpu())
        return sq.perturb(x, y)


@register_attack
class Square(Attack):
    name = "square"
    norm = "inf"
    defaults = {"eps": 8 / 255, "queries": 5000}
    source = "Andriushchenko et al. 2020; AutoAttack's settings (5000 queries, p_init 0.8)"

    def run(self, model, x, y, generator=None):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        x_adv = square(model, x, y, eps=self.params["eps"], queries=self.params["queries"], seed=seed,
                       generator=generator)
        # every query is one forward pass of the images still unfooled; the bound is queries per image
        return AttackOutput(x_adv, grad_passes=0, forward_passes=len(x) * (self.params["queries"] + 1))
