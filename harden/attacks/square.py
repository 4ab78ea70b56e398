"""Square Attack (Andriushchenko et al. 2020): random square-shaped updates accepted when the margin loss
drops; no gradients, so gradient masking does not stop it. The original code (the `pyautoattack` package),
with AutoAttack's settings (p_init 0.8, no rescaled schedule), on the model's device."""
import torch

from .base import Attack, AttackOutput, register_attack
from .row_streams import RowStreams, hashed_signs


def square(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "inf", queries: int = 5000,
           seed: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The original's Square. With the report's per-image streams (`generator` a RowStreams), a run is the same for
    an image at any batch size: the original draws each square's place from its one seed (then the report's: the
    same places in every batch) and its signs for the batch as a whole; here an image's signs are its own. L-inf:
    the starting stripes from each image's stream (one draw an image) and each square's one sign vector from the
    report's seed, as the original; L2: the starting tiles' and each query's signs, one vector an image and query,
    hashed from the image's key (row_streams.hashed_signs)."""
    from pyautoattack.square import SquareAttack

    class PerImageSigns(SquareAttack):
        starts: RowStreams | None = None  # the streams of the images its one run starts on
        keys: torch.Tensor | None = None  # L2: those images' keys
        active: torch.Tensor | None = None  # L2: the positions among them still unfooled (the original's idx_to_fool)
        draws = 0  # L2: sign vectors drawn so far (the same count for every image: one a tile, then one a query)

        def random_choice(self, shape):
            s = self.starts
            if s is not None and self.norm == "Linf" and len(shape) == 4 and shape[0] == len(s.rows) and shape[2] == 1:
                self.starts = None  # the stripes
                return s.per_row(lambda g: torch.sign(2 * torch.rand(tuple(shape[1:]), generator=g) - 1)).to(self.device)
            if s is not None and self.norm == "L2" and len(shape) == 4 and tuple(shape[2:]) == (1, 1):
                if self.keys is None:
                    self.keys = s.keys(self.device)
                keys = self.keys if self.active is None else self.keys[self.active]
                if len(keys) == shape[0]:
                    self.draws += 1
                    return hashed_signs(keys, self.draws - 1, shape[1]).view(tuple(shape))
            return super().random_choice(shape)

        def margin_and_loss(self, x, y):
            margin, loss = super().margin_and_loss(x, y)
            if self.keys is not None:  # an image leaves the run at its first margin <= 0, as in attack_single_run
                still = (margin > 0).nonzero().reshape(-1)
                self.active = still if self.active is None else self.active[still]
            return margin, loss

    per_image = isinstance(generator, RowStreams) and norm in ("inf", "2")
    sq = PerImageSigns(model, p_init=0.8, n_queries=queries, eps=eps, norm="Linf" if norm == "inf" else "L2",
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
