"""Robustness curves: robust accuracy against the L-inf budget, one line per bounded L-inf attack of the report
(budget 0 is clean accuracy; the report's own budget reuses its row). `--curve START:STOP:K`, or for `--html`
alone a small default around the report's budget."""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from ..attacks import Attack, parse_number
from ..errors import HardenError
from .checks import ITERATIVE_TOL, flag, margin
from .stats import share


def parse_curve(spec: str) -> list[float]:
    """'0:0.3:7' -> 7 budgets from 0 to 0.3; fractions allowed (0:16/255:5)."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise HardenError(f"--curve takes START:STOP:K (e.g. 0:0.3:7 or 0:16/255:5), got {spec!r}.")
    start, stop = parse_number(parts[0]), parse_number(parts[1])
    try:
        k = int(parts[2])
    except ValueError:
        raise HardenError(f"--curve: K must be a whole number, got {parts[2]!r}.") from None
    if k < 2 or not (0 <= start < stop <= 1):
        raise HardenError(f"--curve needs 0 <= START < STOP <= 1 and K >= 2, got {spec!r}.")
    return [float(v) for v in np.linspace(start, stop, k)]


def default_budgets(eps: float) -> list[float]:
    """0, eps/2, eps, 3eps/2: two new runs per L-inf attack, so that --html stays near twice the report's time."""
    return [0.0, eps / 2, eps, 1.5 * eps]


def at_budget(atk: Attack, eps: float) -> Attack:
    """The same attack at another eps; a preset step keeps its step/eps ratio (as build_attack does)."""
    new = copy.deepcopy(atk)
    old = atk.params["eps"]
    new.params["eps"] = eps
    for key in ("step", "alpha"):
        if key in new.params and key not in getattr(atk, "explicit", set()) and old > 0:
            new.params[key] = atk.params[key] * eps / old
    return new


def check_curve_attacks(attacks: Sequence[Attack], what: str) -> None:
    """A curve (`what`: how it was asked for) draws the L-inf attacks that are not minimal-perturbation ones: refused,
    before any attack runs, where the run has none (it would be left out without a word)."""
    if not any(a.norm == "inf" and not a.minimal for a in attacks):
        raise HardenError(f"{what} draws the L-inf attacks at its budgets (fgsm, pgd, autopgd, cw, autoattack, ...); "
                          f"this run's ({', '.join(a.name for a in attacks)}) have none: add one, e.g. --attack pgd.")


def robustness_curves(model, source, atks, results, budgets, x, y, correct, batch_size, device, seed,
                      cascades: bool = True, attack_amp: str = "off", *, attack_once) -> dict[str, list[list[float]]]:
    """cascades=False leaves multi-stage attacks (autoattack) out: the default curve of --html must stay cheap.
    `attack_once` is the report's attack runner (evaluate passes its own: curves never imports evaluate)."""
    clean = share(correct)
    curves: dict[str, list[list[float]]] = {}
    for ai, (atk, res) in enumerate(zip(atks, results, strict=True)):
        if atk.norm != "inf" or atk.minimal or (not cascades and atk.stage_names()):
            continue
        points = []
        for bi, b in enumerate(sorted(set(budgets))):
            if b <= 0:
                acc = clean
            elif abs(b - res.budget) < 1e-9:
                acc = res.robust_accuracy
            else:
                r, _, _ = attack_once(model, source, at_budget(atk, b), f"{res.name}@{b:.3g}", b, x, y, correct, None,
                                       batch_size, device, seed * 1_000_003 + ai * 10_007 + bi * 101,
                                       attack_amp=attack_amp)
                acc = r.robust_accuracy
            points.append([float(b), float(acc)])
        curves[res.name] = points
    return curves


def monotonic_flag(curves: dict[str, list[list[float]]], n: int) -> dict[str, Any]:
    """Robust accuracy must not rise with the budget (beyond noise): where it does, the attack is being misled."""
    rises = []
    for name, pts in curves.items():
        for (b0, a0), (b1, a1) in zip(pts, pts[1:], strict=False):
            if a1 > a0 + margin(ITERATIVE_TOL, a0, a1, n):
                rises.append(f"{name} {a0:.3f} at {b0:.4g} -> {a1:.3f} at {b1:.4g}")
    return flag("robust accuracy rises with the budget", bool(rises),
                "; ".join(rises) if rises else f"every curve is non-increasing ({len(curves)} attacks)")
