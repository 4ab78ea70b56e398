"""Attack registry: one attack per file, one uniform call (`attack.run(model, x, y)`)."""
from . import autoattack, autopgd, cw, cw_l2, deepfool, fgsm, fgsm_rs, jsma, nfgsm, pgd, random_fgsm, square  # noqa: F401  (register)
from .base import ATTACKS, Attack, AttackOutput, build_attack, margin, parse_attack_spec, parse_number, perturbation_norm

# The report's default six (the tool's headline table).
DEFAULT_ATTACKS = ("fgsm", "pgd", "autopgd", "cw", "deepfool", "jsma")
# Named sets usable wherever attacks are listed (`--attack seed004`).
ATTACK_SUITES = {
    "default": DEFAULT_ATTACKS,
    # seed 004 section 4.1: FGSM, Random+FGSM, JSMA, DeepFool, C&W-L2
    "seed004": ("fgsm", "random-fgsm", "jsma", "deepfool", "cw-l2"),
}


def expand_suites(specs):
    out = []
    for s in specs:
        out += list(ATTACK_SUITES[s]) if s in ATTACK_SUITES else [s]
    return out

__all__ = ["ATTACKS", "ATTACK_SUITES", "Attack", "AttackOutput", "DEFAULT_ATTACKS", "build_attack", "expand_suites",
           "margin", "parse_attack_spec", "parse_number", "perturbation_norm"]
