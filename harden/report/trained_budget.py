"""A hardened model evaluated at a budget other than the one it was hardened for, with no budget asked for: said in
the report's notes. `harden fix --eps 0.3` reports at 0.3, but `harden eval` of its output measures the default 8/255
unless told (the default stays one number for every model, so that a gate's bar means the same from run to run)."""
from __future__ import annotations

from typing import Any


def trained_budget_note(extra: dict[str, Any], attacks: list, eps: float | None, eps_l2: float, l2_asked: bool,
                        model_name: str) -> str | None:
    """The note, where the checkpoint's recipe trained for a budget (`recipe_params`: eps, attack) that the report's
    attacks of that norm do not measure, and the report's own budget was left to its default (`eps` None; `eps_l2`
    the report's L2 budget, `l2_asked` whether it was given)."""
    params = (extra or {}).get("recipe_params") or {}
    if not isinstance(params, dict) or "eps" not in params or "attack" not in params:
        return None
    from ..attacks import parse_number
    from ..attacks.base import norm_of
    from ..errors import HardenError
    norm = norm_of(params["attack"])
    try:
        trained = parse_number(params["eps"])
    except HardenError:  # a setting that is not a number (written by another version): nothing to compare
        return None
    recipe = extra.get("recipe", "its recipe")
    if norm == "inf" and eps is None:
        measured = sorted({float(a.params["eps"]) for a in attacks if a.norm == "inf" and not a.minimal
                           and "eps" in a.params and "eps" not in getattr(a, "explicit", set())})
        if measured and any(abs(m - trained) > 1e-9 for m in measured):
            return (f"{model_name} was hardened for an L-inf budget of {params['eps']} ({recipe}); this report's L-inf "
                    f"attacks measure {', '.join(f'{m:.4g}' for m in measured)}: --eps {params['eps']} measures the "
                    "threat it was trained for")
    if norm == "2" and not l2_asked and abs(eps_l2 - trained) > 1e-9 and any(
            a.norm == "2" and "eps" not in getattr(a, "explicit", set()) for a in attacks):
        # the L2 rows at the report's budget: DeepFool's and C&W-L2's (minimal, counted at it) and bounded ones given
        # no eps of their own
        return (f"{model_name} was hardened for an L2 budget of {params['eps']} ({recipe}); this report's L2 attacks "
                f"measure {eps_l2:g}: --eps-l2 {params['eps']} measures the threat it was trained for")
    return None
