"""Recipe `patch-ft` (seed 003, sections 3 and 3.1): for every training image one random function,
fixed for the whole fine-tune, alters a w x w patch near the centre; the modified images are added to
the clean ones and the whole network is fine-tuned (RMSprop by default: figure 3, a different optimiser
from pre-training helped).

The nine functions run batched on the patch crops, grouped by function (no per-pixel or per-image
loops); the modified set is produced once, before training, since each image's function and location
are fixed for the whole fine-tune."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import ImageData, in_memory, to_tensor
from ..errors import HardenError
from .base import register_recipe
from .finetune import FineTuneRecipe


def _rotate(p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """10 degrees clockwise, bicubic (section 3.1 item 1); the corners sample the patch's own border."""
    a = math.radians(10.0)  # grid_sample's y axis points down: a positive angle here turns clockwise on screen
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], device=p.device)
    grid = F.affine_grid(theta.expand(len(p), 2, 3), list(p.shape), align_corners=False)
    return F.grid_sample(p, grid, mode="bicubic", padding_mode="border", align_corners=False)


def _translate(p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Shift 2 px right and down; the uncovered strip takes the patch mean (item 2)."""
    s = min(2, p.shape[-1] - 1)
    mean = p.mean(dim=(2, 3), keepdim=True).expand_as(p)
    out = mean.clone()
    out[..., s:, s:] = p[..., :-s, :-s]
    return out


def _gaussian(p, g):
    """Additive N(0, 0.05) (item 3: mean 0, variance 0.05)."""
    return p + math.sqrt(0.05) * torch.randn(p.shape, generator=g, device="cpu").to(p.device)


def _poisson(p, g):
    """Poisson noise from the patch's own intensities (item 4), on the 8-bit grey-level scale."""
    return torch.poisson((p * 255.0).cpu(), generator=g).to(p.device) / 255.0


def _salt_pepper(p, g):
    """Density 0.5: half of the switched pixels to 0, half to the maximum (item 5)."""
    u = torch.rand(p.shape, generator=g, device="cpu").to(p.device)
    return torch.where(u < 0.25, torch.zeros_like(p), torch.where(u < 0.5, torch.ones_like(p), p))


def _speckle(p, g):
    """p + n * p with n uniform, mean 0, variance 0.05 (item 6): U(-a, a), a^2 / 3 = 0.05."""
    a = math.sqrt(0.15)
    return p + p * ((torch.rand(p.shape, generator=g, device="cpu").to(p.device) * 2 - 1) * a)


def _blur(p, g):
    """Gaussian blur, sigma 1.5 (item 7), reflect padding inside the patch."""
    from torchvision.transforms.functional import gaussian_blur
    k = min(2 * math.ceil(3 * 1.5) + 1, 2 * (p.shape[-1] // 2) + 1 if p.shape[-1] % 2 else p.shape[-1] - 1)
    return gaussian_blur(p, kernel_size=[max(3, k)] * 2, sigma=[1.5, 1.5])


def _mask(p, g):
    """Pixel masking (item 8): the patch is nulled."""
    return torch.zeros_like(p)


def _flip(p, g):
    """Horizontal or vertical flip of the patch (item 9), the direction drawn per image."""
    vertical = torch.rand(len(p), generator=g, device="cpu").to(p.device) < 0.5
    return torch.where(vertical.view(-1, 1, 1, 1), p.flip(-2), p.flip(-1))


PATCH_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "rotation": _rotate, "translation": _translate, "gaussian": _gaussian, "poisson": _poisson,
    "salt_pepper": _salt_pepper, "speckle": _speckle, "blur": _blur, "mask": _mask, "flip": _flip,
}


def assign(n: int, size: tuple[int, int], w: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image: a function index (n,) and k patch corners (n, k, 2) near the centre (jitter up to w/2),
    all drawn from the seed in image order, so image i's choice is fixed for the whole fine-tune."""
    h, wd = size
    if w > min(h, wd):
        raise HardenError(f"patch side {w} is larger than the {h}x{wd} images.")
    rng = np.random.default_rng([seed, 3])
    funcs = rng.integers(0, len(PATCH_FUNCTIONS), size=n)
    jitter = max(1, w // 2)
    cy, cx = (h - w) // 2, (wd - w) // 2
    dy = rng.integers(-jitter, jitter + 1, size=(n, k))
    dx = rng.integers(-jitter, jitter + 1, size=(n, k))
    corners = np.stack([np.clip(cy + dy, 0, h - w), np.clip(cx + dx, 0, wd - w)], axis=-1)
    return funcs, corners


def apply_patches(x: torch.Tensor, funcs: np.ndarray, corners: np.ndarray, w: int, seed: int) -> torch.Tensor:
    """Apply each image's function to its k patches; batched per function and patch slot."""
    out = x.clone()
    n = len(x)
    ar = torch.arange(w, device=x.device)
    for slot in range(corners.shape[1]):
        ys = torch.as_tensor(corners[:, slot, 0], device=x.device)[:, None] + ar  # (n, w)
        xs = torch.as_tensor(corners[:, slot, 1], device=x.device)[:, None] + ar
        rows = ys[:, :, None].expand(n, w, w)
        cols = xs[:, None, :].expand(n, w, w)
        idx = torch.arange(n, device=x.device)[:, None, None]
        crops = out[idx, :, rows, cols].permute(0, 3, 1, 2)  # (n, C, w, w)
        for fi, fn in enumerate(PATCH_FUNCTIONS.values()):
            sel = torch.as_tensor(np.flatnonzero(funcs == fi), device=x.device)
            if len(sel) == 0:
                continue
            g = torch.Generator().manual_seed(seed * 1009 + slot * 97 + fi)
            crops[sel] = fn(crops[sel], g).clamp(0, 1).to(crops.dtype)
        out[idx, :, rows, cols] = crops.permute(0, 2, 3, 1)
    return out


def auto_epochs(frac: float) -> int:
    """Table 11: robustness peaks at 50-60 epochs on the full data; fewer for small fractions
    (50 * sqrt(fraction), at least 5: 16 epochs at 10%, 5 at 1%)."""
    return max(5, round(50 * math.sqrt(frac)))


@register_recipe
class PatchFineTune(FineTuneRecipe):
    name = "patch-ft"

    def auto_epochs(self, data_frac: float) -> int:
        return auto_epochs(data_frac)

    def prepare_data(self, data, params: dict[str, Any], seed: int) -> ImageData:
        """The training set: the clean images plus their patch-modified copies (section 3), in memory (files of the
        training fraction are decoded once, at the model's size)."""
        data = in_memory(data)
        w, k = int(params["patch"]), int(params["patches"])
        if w < 2 or k < 1:
            raise HardenError(f"patch-ft needs patch >= 2 and patches >= 1, got {w} and {k}.")
        funcs, corners = assign(len(data.x_train), data.input_size, w, k, seed)
        x = to_tensor(data.x_train)
        mod = apply_patches(x, funcs, corners, w, seed)
        mod_u8 = (mod * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return ImageData(np.concatenate([data.x_train, mod_u8]), np.concatenate([data.y_train, data.y_train]),
                         data.x_test, data.y_test, data.source, data.num_classes, subset=data.subset)

    def batch_transform(self, params, data, cfg, device):
        return lambda m, x, y: (x, y, {})
