"""Robust accuracy by class: a model robust on average can leave one class easy to fool (class-wise robustness
disparity: Xu et al. 2021, "To be robust or to be fair"), and a team gating a traffic-sign model cares which. Each
class present among the report's images gets its count, clean accuracy, worst-case and per-attack robust accuracy.

Ranked (weakest and strongest said) only among classes with at least MIN_RANKED images: below that a class's number
moves by 10 points or more with one image, and its interval spans most of [0, 1]."""
from __future__ import annotations

from typing import Any

import torch

from .stats import interval

MIN_RANKED = 20  # images a class needs to be ranked (one image: 5 points; a 95% interval about +/- 20 at 50%)
SHOWN = 3  # classes named as weakest in the terminal


def by_class(y: torch.Tensor, correct: torch.Tensor, robust: dict[str, torch.Tensor],
             class_names: list[str] | None) -> list[dict[str, Any]]:
    """One row per class among `y`, in class order: index, name, n, clean, worst (every attack survived; None
    without attacks) and each attack's robust accuracy."""
    y = y.cpu().long()
    correct = correct.cpu().bool()
    masks = {k: v.cpu().bool() for k, v in robust.items()}
    worst = torch.stack(list(masks.values())).all(0) if masks else None
    rows = []
    for c in torch.unique(y).tolist():
        sel = y == c
        n = int(sel.sum())
        rows.append({"index": int(c), "name": class_names[c] if class_names and c < len(class_names) else str(c),
                     "n": n, "clean": float(correct[sel].double().mean()),
                     "worst": float(worst[sel].double().mean()) if worst is not None else None,
                     "attacks": {k: float(m[sel].double().mean()) for k, m in masks.items()}})
    return rows


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The classes with at least MIN_RANKED images and a worst case, weakest first (ties by index)."""
    return sorted((r for r in rows if r["n"] >= MIN_RANKED and r["worst"] is not None),
                  key=lambda r: (r["worst"], r["index"]))


def weakest_line(rows: list[dict[str, Any]], confidence: float = 0.95) -> str | None:
    """One line naming the weakest classes under the worst case (None where fewer than two can be ranked)."""
    order = ranked(rows)
    if len(order) < 2:
        return None
    shown = ", ".join(f"{r['name']} {100 * r['worst']:.1f}% ({_interval(r, confidence)}, {r['n']} images)"
                      for r in order[:SHOWN])
    best = order[-1]
    return (f"by class, worst case: weakest {shown}; strongest {best['name']} {100 * best['worst']:.1f}% "
            f"({len(order)} of {len(rows)} classes with {MIN_RANKED}+ images ranked; every class in the JSON)")


def _interval(row: dict[str, Any], confidence: float) -> str:
    lo, hi = interval(row["worst"], row["n"], confidence)
    return f"{100 * lo:.0f}-{100 * hi:.0f}"
