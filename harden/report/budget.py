"""`--time-budget`: how many images a report can afford. The chosen attacks (and the masking checks, when on) run on
calibration samples of 8, 16, 32, ... images until one takes CALIBRATION_SHARE of the budget (or the next would take
the calibration past 30% of it): the attacks' seconds per image are their average over the larger of the last two
samples, the rest of a run's (checks, metrics, set-up) a fixed cost and a rate fitted from the two, or the one sample
gives its time per image, and fixed + per image x images must fit in what the budget has left. Measured on the
CIFAR-10 ResNet-20 (BENCHMARKS.md): one 8-image run charged the fixed cost to every image (planned 0.31 s an image,
used 62 s of 180); 4 and 16 images both fit in one batch, whose cost barely grows with its size (planned 0.006 s an
image, 0.018 s at scale).
The calibration is paid from the budget too. The interval half-width the image count buys is printed, so the trade
is visible.

One part of a report is not linear in its images: the masking checks' Square runs only where enough images survive
every L-inf attack to trip it (checks.black_box), 500 queries on each of at most 32 of them. The calibration samples
(8 and 16 images) seldom cross that threshold while the planned sample may: on a 224-px ResNet-18 on CPU, 38 images
planned from a calibration without Square's step used 124 s of a 120-s budget, Square taking 36 s of it
(BENCHMARKS.md). So Square's seconds are taken out of the calibration's times and its step is planned on its own
(square_step): its expected seconds at the planned count, given the survivors the calibration saw."""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from ..errors import HardenError
from .checks import BLACK_BOX_CHECK, BLACK_BOX_FIRST, BLACK_BOX_QUERIES, CHECKED_MOST, black_box_vs_gradient
from .stats import wilson

MIN_USEFUL_IMAGES = 20  # below this a robust accuracy's 95% interval is wider than 40 points
CALIBRATION_START = 8
CALIBRATION_SHARE = 0.04  # stop doubling once a calibration run takes this share of the budget
SAFETY = 0.9  # plan for 90% of what is left: attacks on robust images cost more than the calibration's average
# a forward+backward pass counted as this many forward passes when a forward's time is read from the attacks' (the
# backward costs at least the forward: an upper end of a forward's time, which Square's small batches need; a 224-px
# ResNet-18 on CPU: 19 ms read from its attacks, 18 ms measured in Square's batches of four)
FORWARDS_PER_GRADIENT = 2


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h30m', '45' (seconds)."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
    if not parts or "".join(a + b for a, b in parts) != t.replace(" ", ""):
        raise HardenError(f"--time-budget {text!r} is not a duration (examples: 90s, 10m, 1h30m).")
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)


def half_width(n: int, p: float = 0.5, confidence: float = 0.95) -> float:
    """The Wilson interval's half-width at accuracy p on n images (its widest at p = 0.5)."""
    lo, hi = wilson(round(p * n), n, confidence)
    return (hi - lo) / 2


def reports_of(result) -> list:
    """The reports a calibration run returned: one report, a dict of them (fix's three), or none."""
    if isinstance(result, dict):
        return [r for r in result.values() if hasattr(r, "masking")]
    return [result] if hasattr(result, "masking") else []


def square_seconds(reports: list) -> float:
    """The seconds the reports' masking checks spent in Square (its check_seconds parts)."""
    return sum(v for r in reports for k, v in r.check_seconds.items() if k.startswith("square"))


def _beta_binomial(k: int, n: int, a: float, b: float) -> float:
    """P(k of n) where the share is Beta(a, b): what the calibration says of the images it did not see."""
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + math.lgamma(k + a) + math.lgamma(n - k + b) - math.lgamma(n + a + b)
                    - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b))


def square_step(reports: list, n: int) -> float:
    """The expected seconds of the masking checks' Square (checks.black_box) in a report on n images, given a
    calibration report on the first of the same images: its survivors of every L-inf attack among the checked images
    are counted, the rest of the n images' checked ones drawn from the share they show (a Jeffreys prior: 0 of 16
    still leaves a chance of survivors), and Square charged, where their number would let it trip the check, 500
    queries on each of at most 32 at a forward's time read from the report's attacks. Nothing where the checks are
    off, or an AutoAttack row ran Square among the attacks (then linear in the images, timed by the calibration)."""
    total = 0.0
    for r in reports:
        if not any(f.get("check") == BLACK_BOX_CHECK for f in r.masking) or any("square" in a.stages
                                                                                for a in r.attacks):
            continue
        keys = list(r.robust_images)
        linf = [keys[i] for i, a in enumerate(r.attacks) if i < len(keys) and a.norm == "inf" and not a.minimal]
        if linf:
            import torch
            left = torch.stack([r.robust_images[k].bool() for k in linf]).all(0)
        elif r.correct_images is not None:
            left = r.correct_images.bool()
        else:
            continue
        seen = min(len(left), CHECKED_MOST)
        survived = int(left[:seen].sum())
        m = min(n, CHECKED_MOST)
        unseen = max(m - seen, 0)
        passes = sum(a.forward_passes + FORWARDS_PER_GRADIENT * a.backward_passes for a in r.attacks)
        if m == 0 or passes == 0:
            continue
        forward_s = sum(a.seconds for a in r.attacks) / passes
        a, b = survived + 0.5, seen - survived + 0.5
        expected_images = 0.0
        for more in range(unseen + 1):
            s = min(survived + more, m)
            if s and black_box_vs_gradient(s / m, 0.0, m, "")["tripped"]:
                expected_images += _beta_binomial(more, unseen, a, b) * min(s, BLACK_BOX_FIRST)
        total += expected_images * BLACK_BOX_QUERIES * forward_s
    return total


@dataclass
class Plan:
    budget_s: float
    n: int
    estimate_s: float
    seconds_per_image: float
    calibration_s: float
    started: float
    fixed_s: float = 0.0
    available: int = 0  # the most images it could have chosen
    resumed: bool = False  # taken from the saved progress of an interrupted run
    square_s: float = 0.0  # the masking checks' Square step expected at n images (square_step), in estimate_s

    def summary(self) -> dict:
        return {"budget_s": round(self.budget_s, 1), "images": self.n, "estimate_s": round(self.estimate_s, 1),
                "seconds_per_image": round(self.seconds_per_image, 3), "fixed_s": round(self.fixed_s, 1),
                "calibration_s": round(self.calibration_s, 1), "square_check_s": round(self.square_s, 1),
                "interval_half_width_at_50pct": round(half_width(self.n), 4)}


def plan(budget_s: float, available: int, calibrate, started: float, memory=None) -> Plan:
    """calibrate(k) runs the report on k images and returns; the plan fits the rest of the budget. `memory`
    (ReportStates.memory(), with --resume) keeps the plan in the first calibration's saved progress: a resumed run
    takes the interrupted run's plan, so it evaluates the same images, and a calibration resumed part-way is timed
    with the seconds its saved batches took (a resumed batch costs nothing, which would plan too many images)."""
    credited = memory.credited if memory is not None else (lambda: 0.0)

    def clock() -> float:  # the time an uninterrupted run would have spent
        return time.perf_counter() + credited()
    key = f"time budget plan|{budget_s!r}|{available}"
    times, sizes, attack_times, calib_total = [], [], [], 0.0
    k = min(CALIBRATION_START, available)
    while True:
        t0 = clock()
        reports = reports_of(calibrate(k))
        took = clock() - t0
        calib_total += took
        times.append(max(took - square_seconds(reports), 0.0))  # Square's step is planned on its own (square_step)
        attack_times.append(sum(a.seconds for r in reports for a in r.attacks) if reports else None)
        sizes.append(k)
        if len(sizes) == 1 and memory is not None:
            from .. import distributed
            saved = memory.recall(key)
            if distributed.all_ok(saved is not None):  # under torchrun every process calibrates again, or none
                return Plan(**{**saved, "started": started, "resumed": True})
        spent = clock() - started
        if (len(sizes) >= 2 and took >= CALIBRATION_SHARE * budget_s) or spent + 2 * took > 0.3 * budget_s:
            # a larger sample would take too much of the budget; from one sample alone its time per image (fixed
            # costs included) plans fewer images than fit, never more, and a budget that cannot fit a useful report
            # is refused at once rather than after another, longer sample (a 224-px model on a CPU)
            break
        if k >= available:
            break
        k = min(2 * k, available)
    times, sizes, attack_times = times[-2:], sizes[-2:], attack_times[-2:]
    if len(sizes) == 2 and sizes[1] > sizes[0]:
        if None not in attack_times:
            # the attacks' seconds have no fixed part: their rate is the larger sample's average (the difference of
            # two samples' totals, a handful of images apart, is several times noisier: 0.061 s an image where 774
            # MNIST images took 0.075, 0.89 where 77 ResNet-18 images at 224 px took 1.7); the rest (clean
            # predictions, checks, metrics) is fitted from the two, fixed part and rate
            rest = [t - a for t, a in zip(times, attack_times, strict=True)]
            rate = attack_times[1] / sizes[1] + max((rest[1] - rest[0]) / (sizes[1] - sizes[0]), 0.0)
        else:  # a calibration that returns no report: its totals alone
            rate = (times[1] - times[0]) / (sizes[1] - sizes[0])
        per_image = max(rate, times[1] / sizes[1] / 10)
        fixed = max(0.0, times[1] - per_image * sizes[1])
    else:
        per_image, fixed = times[-1] / max(sizes[-1], 1), 0.0
    k = sizes[-1]
    left = budget_s - (clock() - started) - fixed
    n = min(available, int(math.floor(SAFETY * left / per_image))) if per_image > 0 else available
    n = _fit_square_step(n, per_image, SAFETY * left, lambda k: square_step(reports, k))
    square_s = square_step(reports, n)
    if n < min(MIN_USEFUL_IMAGES, available):
        least = min(MIN_USEFUL_IMAGES, available)
        need = (clock() - started) + fixed + (least * per_image + square_step(reports, least)) / SAFETY
        raise HardenError(f"--time-budget {budget_s:.0f}s fits {max(n, 0)} images at the measured {per_image:.2f} s per "
                          f"image (calibrated on {k}), fewer than the {MIN_USEFUL_IMAGES} a useful report needs (its 95% "
                          f"interval would be wider than {200 * half_width(max(n, 1)):.0f} points). About "
                          f"{math.ceil(need)} s would fit {MIN_USEFUL_IMAGES} images; give a larger budget or fewer "
                          "attacks. Nothing was written.")
    return Plan(budget_s, n, (clock() - started) + fixed + n * per_image + square_s, per_image, calib_total, started,
                fixed, available, square_s=square_s)


def _fit_square_step(n: int, per_image: float, room: float, step) -> int:
    """The most images, at most n, whose attacks and expected Square step fit in `room` seconds (the step grows
    with the images: a bisection)."""
    if n <= 0 or n * per_image + step(n) <= room:
        return n
    lo, hi = 0, n  # lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if mid * per_image + step(mid) <= room else (lo, mid)
    return lo


def keep_plan(memory, p: Plan) -> None:
    """Saves the plan every rank follows (rank 0's) where a resumed run of this report finds it."""
    if memory is not None:
        from dataclasses import asdict
        memory.remember(f"time budget plan|{p.budget_s!r}|{p.available}", {k: v for k, v in asdict(p).items()
                                                                            if k not in ("started", "resumed")})
