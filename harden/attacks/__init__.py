"""Attack registry: one attack per file, one uniform call (`attack.run(model, x, y)`)."""
from . import autopgd, cw, cw_l2, deepfool, fgsm, jsma, pgd, random_fgsm  # noqa: F401  (register)
from .base import ATTACKS, Attack, AttackOutput, build_attack, margin, parse_attack_spec, parse_number, perturbation_norm

# The report's default six (the tool's headline table).
DEFAULT_ATTACKS = ("fgsm", "pgd", "autopgd", "cw", "deepfool", "jsma")

__all__ = ["ATTACKS", "Attack", "AttackOutput", "DEFAULT_ATTACKS", "build_attack", "margin", "parse_attack_spec",
           "parse_number", "perturbation_norm"]
