"""Confidence intervals of the report's accuracies. Every accuracy is a proportion of n images; its interval is
Wilson's score interval (Wilson 1927), which keeps its coverage near the nominal level for the 100-1,000 images a CI
job affords and, unlike the normal approximation, never leaves [0, 1] or collapses to a point at 0% or 100%.
Clopper-Pearson (exact, conservative) is available for comparison."""
from __future__ import annotations

import math
from statistics import NormalDist

METHODS = ("wilson", "clopper-pearson")
DEFAULT_CONFIDENCE = 0.95


def share(mask) -> float:
    """The proportion of True in a boolean tensor, from its integer count: 42 of 60 is 0.7 exactly (a float32 mean
    gave 0.699999988, which failed a gate's `pgd>=0.7` at 70.0%)."""
    n = mask.numel()
    return int(mask.sum()) / n if n else float("nan")


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


def newcombe_paired(both: int, gained: int, lost: int, neither: int,
                    confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Newcombe's square-and-add interval (1998, method 10) of new - base accuracy on the same images: each
    accuracy's Wilson interval, combined with the two verdicts' correlation (Newcombe's corrected phi). Counts:
    images right under both, right only under the new model (gained), only under the base (lost), under neither.
    Unlike the Wald interval it keeps its coverage where few images changed, and has a width where none did."""
    n = both + gained + lost + neither
    if n <= 0:
        return -1.0, 1.0
    p_new, p_base = (both + gained) / n, (both + lost) / n
    l_new, u_new = wilson(both + gained, n, confidence)
    l_base, u_base = wilson(both + lost, n, confidence)
    margins = (both + gained) * (lost + neither) * (both + lost) * (gained + neither)
    psi = 0.0
    if margins > 0:
        a = both * neither - gained * lost
        psi = (a - n / 2) / math.sqrt(margins) if a > n / 2 else 0.0 if a >= 0 else a / math.sqrt(margins)
    d = p_new - p_base
    down = (p_new - l_new) ** 2 + (u_base - p_base) ** 2 - 2 * psi * (p_new - l_new) * (u_base - p_base)
    up = (p_base - l_base) ** 2 + (u_new - p_new) ** 2 - 2 * psi * (p_base - l_base) * (u_new - p_new)
    return d - math.sqrt(max(down, 0.0)), d + math.sqrt(max(up, 0.0))


def newcombe_unpaired(k_new: int, n_new: int, k_base: int, n_base: int,
                      confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) of new - base accuracy on other images: the two Wilson
    intervals squared and added (the Wald interval collapses to a point at 0% and 100%)."""
    if n_new <= 0 or n_base <= 0:
        return -1.0, 1.0
    p_new, p_base = k_new / n_new, k_base / n_base
    l_new, u_new = wilson(k_new, n_new, confidence)
    l_base, u_base = wilson(k_base, n_base, confidence)
    d = p_new - p_base
    return (d - math.sqrt((p_new - l_new) ** 2 + (u_base - p_base) ** 2),
            d + math.sqrt((u_new - p_new) ** 2 + (p_base - l_base) ** 2))


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


MOST_IMAGES = 10_000_000  # beyond this many images a bar is said to be out of reach at the measured value


def _fewest(ok, n: int) -> int | None:
    """The smallest m > n with ok(m), for an ok that holds from some m on (an interval narrowing as images are
    added at the same measured value); None where it does not hold by MOST_IMAGES."""
    hi = max(2 * n, 2)
    while not ok(hi):
        if hi > MOST_IMAGES:
            return None
        hi *= 2
    lo = n
    while hi - lo > max(1, lo // 100):  # to about 1%: the figure is an estimate at the measured value
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def images_for_accuracy_bound(p: float, n: int, bar: float, side: str,
                              confidence: float = DEFAULT_CONFIDENCE) -> int | None:
    """About how many images an accuracy measured at p on n would need for its Wilson `side` bound ('lower' or
    'upper') to reach `bar` (lower >= bar, upper <= bar) if it stayed at p; None where p itself is not past the bar
    (no number of images settles it that way) or it takes more than MOST_IMAGES."""
    if (side == "lower" and p <= bar) or (side == "upper" and p >= bar):
        return None

    def ok(m: int) -> bool:
        lo, hi = wilson(round(p * m), m, confidence)
        return lo >= bar if side == "lower" else hi <= bar
    return _fewest(ok, n)


def images_for_change_bound(both: int, gained: int, lost: int, neither: int, bar: float, side: str,
                            confidence: float = DEFAULT_CONFIDENCE) -> int | None:
    """As images_for_accuracy_bound, for the paired difference's Newcombe bound: the four counts kept in proportion."""
    n = both + gained + lost + neither
    d = (gained - lost) / max(n, 1)
    if n <= 0 or (side == "lower" and d <= bar) or (side == "upper" and d >= bar):
        return None

    def ok(m: int) -> bool:
        k = m / n
        lo, hi = newcombe_paired(round(both * k), round(gained * k), round(lost * k), round(neither * k), confidence)
        return lo >= bar if side == "lower" else hi <= bar
    return _fewest(ok, n)


def fewest_images_for_bar(bar: float, side: str, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest images on which a Wilson `side` bound can reach `bar` at all: the lower bound of n of n is
    n / (n + z^2), so `lower >= bar` needs n >= z^2 bar / (1 - bar); the upper bound of 0 of n is z^2 / (n + z^2), so
    `upper <= bar` needs n >= z^2 (1 - bar) / bar."""
    z2 = _z(confidence) ** 2
    if side == "lower":
        return 1 if bar <= 0 else MOST_IMAGES + 1 if bar >= 1 else max(1, math.ceil(z2 * bar / (1 - bar) - 1e-9))
    return 1 if bar >= 1 else MOST_IMAGES + 1 if bar <= 0 else max(1, math.ceil(z2 * (1 - bar) / bar - 1e-9))
