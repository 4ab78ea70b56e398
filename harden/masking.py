"""Gradient-masking signals (Carlini et al. 2019, "On Evaluating Adversarial Robustness", section 5):
a defence that only hides gradients shows them. Each check returns a flag dict; a tripped flag means
the white-box numbers may overstate robustness and stronger or different attacks are needed."""
from __future__ import annotations

from typing import Any, Callable

import torch

# Tolerances: differences smaller than these are sampling noise on a few hundred images.
ITERATIVE_TOL = 0.02
STRONGER_PGD_TOL = 0.03
TRANSFER_TOL = 0.02
LARGE_BUDGET_EPS = 0.5   # at L-inf 0.5 every image can be pushed to mid-grey: nothing should survive
LARGE_BUDGET_MAX = 0.10


def flag(check: str, tripped: bool, detail: str) -> dict[str, Any]:
    return {"check": check, "tripped": bool(tripped), "detail": detail}


def iterative_vs_single_step(robust: dict[str, float]) -> dict[str, Any] | None:
    if "fgsm" not in robust or not ({"pgd", "autopgd"} & set(robust)):
        return None
    it = min(robust[k] for k in ("pgd", "autopgd") if k in robust)
    return flag("iterative weaker than single-step", it > robust["fgsm"] + ITERATIVE_TOL,
                f"best iterative robust accuracy {it:.3f} vs FGSM {robust['fgsm']:.3f}")


def run_white_box_checks(model, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, eps: float,
                         pgd_robust: torch.Tensor | None, attack_fn: Callable[[str, torch.Tensor, torch.Tensor],
                                                                             torch.Tensor]) -> list[dict[str, Any]]:
    """The checks that need extra attack runs, on the images given: a large budget must reach ~0, and a
    stronger PGD (twice the steps, a random restart) must not change the default PGD's result."""
    out = []
    x_big = attack_fn(f"pgd:eps={LARGE_BUDGET_EPS},step={LARGE_BUDGET_EPS / 10},steps=20,restarts=1", x, y)
    big = float((correct & (_pred(model, x_big) == y)).float().mean())
    out.append(flag("robust accuracy does not reach ~0 at a large budget", big > LARGE_BUDGET_MAX,
                    f"PGD at L-inf {LARGE_BUDGET_EPS}: robust accuracy {big:.3f} (expected <= {LARGE_BUDGET_MAX})"))
    if pgd_robust is not None:
        x_strong = attack_fn(f"pgd:eps={eps},step={eps / 8},steps=100,restarts=1", x, y)
        strong = float((pgd_robust & (_pred(model, x_strong) == y)).float().mean())
        base = float(pgd_robust.float().mean())
        out.append(flag("more PGD steps or restarts change the result", base - strong > STRONGER_PGD_TOL,
                        f"PGD robust accuracy {base:.3f}; with 100 steps and a random start on top {strong:.3f}"))
    return out


def transfer_vs_white_box(white_box: dict[str, float], transfer: dict[str, float]) -> dict[str, Any] | None:
    common = [k for k in white_box if k in transfer and k != "clean"]
    if not common:
        return None
    worst = min(common, key=lambda k: transfer[k] - white_box[k])
    gap = white_box[worst] - transfer[worst]
    return flag("transfer attacks stronger than white-box", gap > TRANSFER_TOL,
                f"{worst}: transfer robust accuracy {transfer[worst]:.3f} vs white-box {white_box[worst]:.3f}")


def _pred(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)
