"""Attack registry: one attack per file, one uniform call (`attack.run(model, x, y)`)."""
from . import autoattack, autopgd, cw, cw_l2, deepfool, fgsm, fgsm_rs, jsma, nfgsm, pgd, pgd_l2, random_fgsm, square  # noqa: F401,E501  (register)
from .base import ATTACKS, Attack, AttackOutput, build_attack, margin, parse_attack_spec, parse_number, perturbation_norm

# The report's default six (the tool's headline table).
DEFAULT_ATTACKS = ("fgsm", "pgd", "autopgd", "cw", "deepfool", "jsma")
# An attack's norm -> the name of its threat model's worst case in the report (worst.linf, worst.l2, worst.l0)
NORM_LABELS = {"inf": "linf", "2": "l2", "0": "l0"}
# Named sets usable wherever attacks are listed (`--attack seed004`).
ATTACK_SUITES = {
    "default": DEFAULT_ATTACKS,
    # seed 004 section 4.1: FGSM, Random+FGSM, JSMA, DeepFool, C&W-L2
    "seed004": ("fgsm", "random-fgsm", "jsma", "deepfool", "cw-l2"),
}


# Above this input side the default report leaves JSMA out: its steps do not shrink with the image (measured on a
# 224-px ResNet-50: BENCHMARKS.md, "ImageNet-class models and data on disk"); `--attack default` (the six) still
# runs it, `--attack jsma` runs it alone.
JSMA_DEFAULT_MAX_SIDE = 64


def default_attacks(input_size) -> tuple[tuple[str, ...], str | None]:
    """The default set for a model's input size, and a note for the report when an attack was left out."""
    if max(int(v) for v in input_size) > JSMA_DEFAULT_MAX_SIDE:
        return (tuple(a for a in DEFAULT_ATTACKS if a != "jsma"),
                f"jsma left out of the default attacks above {JSMA_DEFAULT_MAX_SIDE} px (its cost per robust image "
                "grows with the input: BENCHMARKS.md); --attack default runs the six with it")
    return DEFAULT_ATTACKS, None


def expand_suites(specs):
    out = []
    for s in specs:
        out += list(ATTACK_SUITES[s]) if s in ATTACK_SUITES else [s]
    return out

__all__ = ["ATTACKS", "ATTACK_SUITES", "NORM_LABELS", "Attack", "AttackOutput", "DEFAULT_ATTACKS", "build_attack",
           "default_attacks", "expand_suites",
           "margin", "parse_attack_spec", "parse_number", "perturbation_norm"]
