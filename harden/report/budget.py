"""`--time-budget`: how many images a report can afford. The chosen attacks (and the masking checks, when on) run on
calibration samples of 8, 16, 32, ... images until one takes CALIBRATION_SHARE of the budget (or the next would take
the calibration past 30% of it): the last two give the seconds per image (their difference) and the fixed cost of a
run (checks, metrics, set-up), or the one sample its time per image, and fixed + per image x images must fit in what
the budget has left. Measured on the CIFAR-10 ResNet-20 (BENCHMARKS.md): one 8-image run
charged the fixed cost to every image (planned 0.31 s an image, used 62 s of 180); 4 and 16 images both fit in one
batch, whose cost barely grows with its size (planned 0.006 s an image, 0.018 s at scale).
The calibration is paid from the budget too. The interval half-width the image count buys is printed, so the trade
is visible."""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from ..errors import HardenError
from .stats import wilson

MIN_USEFUL_IMAGES = 20  # below this a robust accuracy's 95% interval is wider than 40 points
CALIBRATION_START = 8
CALIBRATION_SHARE = 0.04  # stop doubling once a calibration run takes this share of the budget
SAFETY = 0.9  # plan for 90% of what is left: attacks on robust images cost more than the calibration's average


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

    def summary(self) -> dict:
        return {"budget_s": round(self.budget_s, 1), "images": self.n, "estimate_s": round(self.estimate_s, 1),
                "seconds_per_image": round(self.seconds_per_image, 3), "fixed_s": round(self.fixed_s, 1),
                "calibration_s": round(self.calibration_s, 1),
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
    times, sizes = [], []
    k = min(CALIBRATION_START, available)
    while True:
        t0 = clock()
        calibrate(k)
        times.append(clock() - t0)
        sizes.append(k)
        if len(sizes) == 1 and memory is not None:
            from .. import distributed
            saved = memory.recall(key)
            if distributed.all_ok(saved is not None):  # under torchrun every process calibrates again, or none
                return Plan(**{**saved, "started": started, "resumed": True})
        spent = clock() - started
        if (len(sizes) >= 2 and times[-1] >= CALIBRATION_SHARE * budget_s) or spent + 2 * times[-1] > 0.3 * budget_s:
            # a larger sample would take too much of the budget; from one sample alone its time per image (fixed
            # costs included) plans fewer images than fit, never more, and a budget that cannot fit a useful report
            # is refused at once rather than after another, longer sample (a 224-px model on a CPU)
            break
        if k >= available:
            break
        k = min(2 * k, available)
    calib = sum(times)
    times, sizes = times[-2:], sizes[-2:]
    if len(sizes) == 2 and sizes[1] > sizes[0]:
        per_image = max((times[1] - times[0]) / (sizes[1] - sizes[0]), times[1] / sizes[1] / 10)
        fixed = max(0.0, times[1] - per_image * sizes[1])
    else:
        per_image, fixed = times[-1] / max(sizes[-1], 1), 0.0
    k = sizes[-1]
    left = budget_s - (clock() - started) - fixed
    n = min(available, int(math.floor(SAFETY * left / per_image))) if per_image > 0 else available
    if n < min(MIN_USEFUL_IMAGES, available):
        need = (clock() - started) + fixed + MIN_USEFUL_IMAGES * per_image / SAFETY
        raise HardenError(f"--time-budget {budget_s:.0f}s fits {max(n, 0)} images at the measured {per_image:.2f} s per "
                          f"image (calibrated on {k}), fewer than the {MIN_USEFUL_IMAGES} a useful report needs (its 95% "
                          f"interval would be wider than {200 * half_width(max(n, 1)):.0f} points). About "
                          f"{math.ceil(need)} s would fit {MIN_USEFUL_IMAGES} images; give a larger budget or fewer "
                          "attacks. Nothing was written.")
    return Plan(budget_s, n, (clock() - started) + fixed + n * per_image, per_image, calib, started, fixed, available)


def keep_plan(memory, p: Plan) -> None:
    """Saves the plan every rank follows (rank 0's) where a resumed run of this report finds it."""
    if memory is not None:
        from dataclasses import asdict
        memory.remember(f"time budget plan|{p.budget_s!r}|{p.available}", {k: v for k, v in asdict(p).items()
                                                                            if k not in ("started", "resumed")})
