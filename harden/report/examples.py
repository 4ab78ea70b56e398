"""Adversarial examples kept in a report (and its JSON) so that pictures can be drawn, and redrawn from the
JSON alone: a few images per attack, as uint8 thumbnails (base64 of C x H x W bytes) with label and prediction."""
from __future__ import annotations

import base64
from typing import Any, Iterable

import numpy as np
import torch

THUMB_MAX = 64  # thumbnails larger than this (ImageNet-size inputs) are area-downsampled to keep the JSON small


def _thumb(img: torch.Tensor) -> torch.Tensor:
    h, w = img.shape[-2:]
    scale = THUMB_MAX / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return torch.nn.functional.interpolate(img[None].float(), size=size, mode="area")[0]


def _encode(img: torch.Tensor) -> str:
    arr = (img.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return base64.b64encode(arr.tobytes()).decode()


def decode(example: dict[str, Any], which: str) -> np.ndarray:
    """'clean' or 'adv' as an H x W x C float array in [0, 1]."""
    c, h, w = example["shape"]
    arr = np.frombuffer(base64.b64decode(example[which]), dtype=np.uint8).reshape(c, h, w)
    return arr.transpose(1, 2, 0).astype(np.float32) / 255.0


def spread_order(i: int) -> int:
    """An image's place in the examples' order: a fixed scramble of its index (Knuth's multiplicative hash), so the
    k chosen spread over the report's images, which a folder's sample holds in class order (its first k fooled were
    all of its first class)."""
    return (i * 2654435761) % 2**32


def _first(indices, k: int) -> list[int]:
    return sorted(indices, key=spread_order)[:k]


def example_indices(correct: torch.Tensor, fooled: torch.Tensor, k: int) -> list[int]:
    """k images the attack fooled, first in the scrambled order (spread_order); where it fooled fewer, the first ones it
    did not."""
    idx = _first(fooled.nonzero().squeeze(1).tolist(), k)
    if len(idx) < k:
        idx += _first((correct & ~fooled).nonzero().squeeze(1).tolist(), k - len(idx))
    return sorted(idx)


class KeptInputs:
    """The judged adversarial inputs an attack run keeps while it runs: those of the images in `keep` (the
    stronger-PGD check continues from them) and the candidates for its k examples, which are example_indices'
    choice among the images seen so far: the first k fooled and the first k correct but not fooled, in its order.
    Whatever the order of the batches, the final choice is among them, so at most len(keep) + 2k images are held, not
    the whole set (at 224 px each is 0.6 MB of fp32 on the device)."""

    def __init__(self, k: int, keep: Iterable[int] = ()):
        self.k, self.keep = k, set(keep)
        self.rows: dict[int, torch.Tensor] = {}
        self._fooled: list[int] = []  # the first k seen, in example_indices' order
        self._held: list[int] = []

    def add(self, start: int, x_adv: torch.Tensor, correct: torch.Tensor, ok: torch.Tensor) -> None:
        """One batch's judged inputs (images start, start+1, ...), with its clean and under-attack correctness."""
        pos = torch.arange(start, start + len(x_adv), device=correct.device)
        self._fooled = _first(self._fooled + pos[correct & ~ok].tolist(), self.k)
        self._held = _first(self._held + pos[correct & ok].tolist(), self.k)
        want = set(self._fooled) | set(self._held)
        self.rows = {i: r for i, r in self.rows.items() if i in want or i in self.keep}
        end = start + len(x_adv)
        for i in {i for i in self.keep | want if start <= i < end}:
            self.rows[i] = x_adv[i - start].clone()  # a copy: a view would hold the whole batch


def pick_examples(x: torch.Tensor, x_adv: dict[int, torch.Tensor], y: torch.Tensor, pred: torch.Tensor,
                  fooled: torch.Tensor, idx: list[int]) -> list[dict[str, Any]]:
    """Thumbnails of images idx: x_adv maps each index to its (judged) adversarial input."""
    out = []
    for i in idx:
        clean, adv = _thumb(x[i]), _thumb(x_adv[i])
        out.append({"index": int(i), "label": int(y[i]), "pred": int(pred[i]), "fooled": bool(fooled[i]),
                    "shape": list(clean.shape), "clean": _encode(clean), "adv": _encode(adv),
                    "linf": float((x_adv[i] - x[i]).abs().max())})
    return out
