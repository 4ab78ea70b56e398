"""Confidence intervals of the report's accuracies. Every accuracy is a proportion of n images; its interval is
Wilson's score interval (Wilson 1927), which keeps its coverage near the nominal level for the 100-1,000 images a CI
job affords and, unlike the normal approximation, never leaves [0, 1] or collapses to a point at 0% or 100%.
Clopper-Pearson (exact, conservative) is available for comparison."""
from __future__ import annotations

import math
from statistics import NormalDist

METHODS = ("wilson", "clopper-pearson")
DEFAULT_CONFIDENCE = 0.95


def _z(confidence: float) -> float:
    # the standard library's quantile (Wichura's AS241, as scipy's): importing scipy.stats costs seconds per run
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # at 0 and n of n the bound is exactly 0 or 1 (rounding left 1 - 1e-16, below the accuracy itself)
    return 0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half)


def clopper_pearson(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    from scipy.stats import beta
    if n <= 0:
        return 0.0, 1.0
    a = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def interval(accuracy: float, n: int, confidence: float = DEFAULT_CONFIDENCE,
             method: str = "wilson") -> tuple[float, float]:
    """The interval of an accuracy measured on n images (the count is recovered from the proportion)."""
    k = int(round(accuracy * n))
    return (wilson if method == "wilson" else clopper_pearson)(k, n, confidence)
