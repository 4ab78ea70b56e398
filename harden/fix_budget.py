"""`harden fix --time-budget`: the whole run, training and its before/after report, fitted to a time.

Training: the recipe is timed on throwaway copies of the model, one epoch on one batch's worth of the training images
(a warm-up: its time holds one-off costs such as kernel selection), then one on 20 batches' worth (or as many whole
batches as fit in CALIBRATION_SHARE of training's share, by the warm-up's rate), whose cost per image, its fixed costs
counted in it (an upper end), plans an epoch. The run then trains for the
recipe's epochs, or as many as fit in TRAIN_SHARE of what is left of the budget (fewer is said; none fitting is
refused before any training, with the budget that would fit one). The OneCycle schedule and the eps ramp are planned
for the chosen count, as `--epochs` plans them. The plan is an estimate (12% under the CIFAR-10 ResNet-20's real
epoch on a 2-core CPU): training ends at an epoch's end where another would run past its share (TrainConfig.deadline),
so that the report keeps its time. Adding epochs while validation still rises (`extend`) is off under a budget: it
would outlast the plan.

Report: before any training, the base's white-box report is timed on a few images (REPORT_PROBE): the three reports
of the report's minimum (MIN_USEFUL_IMAGES) are planned at REPORTS_PER_FIX times that, and training's share is what
the budget leaves beside them (at most TRAIN_SHARE). A budget that cannot hold them and one epoch is refused then,
with the budget that would: a 224-px ResNet-18 on a 2-core CPU, whose report on 20 images takes many minutes, was
given a 6-minute budget, trained for four of them and then overran it several times over. After training, the three
reports (base white-box, hardened white-box, transfer) take as many of --num-images as fit in what the training left,
calibrated as `eval --time-budget` calibrates (report/budget.py). Where fewer than its minimum fit (the timing before
training was short of the reports' cost), the minimum runs anyway and the overrun is said: the trained weights are not
thrown away for a report.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from .errors import HardenError
from .report.budget import MIN_USEFUL_IMAGES, SAFETY, parse_duration

TRAIN_SHARE = 0.6  # of the time left after calibration, training's; the report's is the rest (and what training leaves)
# one epoch on this many batches each; the first only warms up. An epoch is then planned at the last one's cost per
# image, its fixed costs with it (an upper end): a rate and a fixed cost fitted to two timings (2 and 6 batches, then
# 10 and 20) planned the CIFAR-10 ResNet-20's 34 s epoch at 24-28.5 s, the difference of two short timings being as
# noisy as this machine's +/-15%
CALIBRATION_BATCHES = (1, 20)
CALIBRATION_SHARE = 0.25  # at most this share of training's time is spent timing it (a later timing is cut to fit)
REPORT_PROBE = 8  # images the base's report is timed on before training
# the fix's three reports on the minimum's images against the probe's cost per image: the hardened model's attacks run
# longer (its images stay robust, so early stopping spares fewer steps; the masking checks run on the survivors), the
# transfer report's about as the base's. Fitted (BENCHMARKS.md "What a budgeted fix reserves for its reports"): 14
# base/hardened pairs (digits, MNIST, CIFAR-10 ResNet-20, a 224-px MobileNetV3; with JSMA and without) gave 1.0-5.8,
# 2.9-5.8 where the hardened model was more robust than its base (what fix is for); 3, the figure before, fell short
# in 8 of the 14. The upper end, so that a budget the reports then overrun is refused before training
REPORTS_PER_FIX = 6


@dataclass
class EpochPlan:
    budget_s: float
    epochs: int  # what the run trains for
    asked: int  # the recipe's (or --epochs') count
    seconds_per_epoch: float
    calibration_s: float
    share_s: float  # training's share of the budget, as planned
    resumed: bool = False  # the interrupted run's plan, taken again
    report_min_s: float = 0.0  # the reports' expected minimum, kept out of training's share (report_minimum)
    report_probe_s: float = 0.0  # what timing the base's report took

    def summary(self) -> dict[str, Any]:
        return {"budget_s": round(self.budget_s, 1), "epochs": self.epochs, "epochs_asked": self.asked,
                "seconds_per_epoch": round(self.seconds_per_epoch, 2), "calibration_s": round(self.calibration_s, 1),
                "training_share_s": round(self.share_s, 1),
                **({"report_minimum_s": round(self.report_min_s, 1), "report_probe_s": round(self.report_probe_s, 1)}
                   if self.report_probe_s else {})}

    def line(self) -> str:
        fewer = (f"{self.epochs} of the {self.asked} epochs fit" if self.epochs < self.asked
                 else f"the {self.asked} epochs fit")
        taken = "; the interrupted run's plan" if self.resumed else ""
        return (f"time budget {self.budget_s:.0f} s: {fewer} at about {self.seconds_per_epoch:.1f} s an epoch "
                f"(timed in {self.calibration_s:.1f} s{taken})")


def budget_seconds(time_budget: str | float | None) -> float | None:
    """--time-budget in seconds (None: no budget), refused before any work when it is not a positive duration."""
    if time_budget is None:
        return None
    s = float(time_budget) if isinstance(time_budget, (int, float)) else parse_duration(time_budget)
    if not s > 0:
        raise HardenError(f"--time-budget must be a positive duration (90s, 10m, 1h), got {time_budget!r}.")
    return s


def report_minimum(budget_s: float, started: float, n_test: int, base_report: Callable[[int], Any]
                   ) -> tuple[float, float]:
    """The seconds the fix's reports on MIN_USEFUL_IMAGES images are expected to take, from `base_report(k)` (the
    base's white-box report on k images) timed on REPORT_PROBE of them, its fixed costs counted per image (an upper
    end for them), and the seconds the timing took. A budget that this alone overruns is refused here, before any
    training."""
    from . import distributed
    from .runtime import held_warnings, quieted
    k = max(1, min(REPORT_PROBE, n_test))
    t0 = time.perf_counter()
    with quieted(), held_warnings():  # a timing's bars and warnings are not the run's (the real report says them)
        base_report(k)  # under torchrun every process takes its part (the report's attacks are collective)
    took = time.perf_counter() - t0
    need = REPORTS_PER_FIX * took * min(MIN_USEFUL_IMAGES, n_test) / k
    spent = time.perf_counter() - started
    took, need, spent = distributed.from_main(lambda: (took, need, spent))  # one plan, or one refusal, for all
    if spent + need > budget_s:
        raise HardenError(f"--time-budget {budget_s:g}s: the base's report took {took:.1f} s on {k} images, so the "
                          f"fix's three reports (base, hardened, transfer) on the {min(MIN_USEFUL_IMAGES, n_test)} "
                          f"images of a useful report take about {need:.0f} s, more than the {max(budget_s - spent, 0):.0f}"
                          f" s left before any training. Give a budget of at least {math.ceil(spent + need)} s plus the "
                          "training's, fewer --attack, --no-masking-checks, or --no-report. Nothing was trained or "
                          "written.")
    return need, took


def plan_epochs(budget_s: float, started: float, asked: int, n_images: int, batch_size: int,
                one_epoch: Callable[[int], None], report: bool, saved: dict | None = None,
                report_s: float = 0.0, report_probe_s: float = 0.0) -> EpochPlan:
    """The epochs that fit: `one_epoch(k)` trains a throwaway copy for one epoch on k of the n_images training images.
    `saved`: an interrupted run's plan (its summary()) for the same budget, taken without timing again. `report_s`:
    the report's expected minimum (report_minimum), kept out of training's share; `report_probe_s` the seconds its
    timing took (recorded)."""
    if saved is not None and abs(float(saved.get("budget_s", -1)) - round(budget_s, 1)) < 0.05:
        return EpochPlan(budget_s, int(saved["epochs"]), int(saved["epochs_asked"]), float(saved["seconds_per_epoch"]),
                         float(saved["calibration_s"]), float(saved["training_share_s"]), resumed=True,
                         report_min_s=float(saved.get("report_minimum_s", 0.0)),
                         report_probe_s=float(saved.get("report_probe_s", 0.0)))
    from . import distributed
    share = TRAIN_SHARE if report else 1.0
    sizes = sorted({max(1, min(n_images, b * batch_size)) for b in CALIBRATION_BATCHES})
    t_start = time.perf_counter()
    timed: list[tuple[int, float]] = []
    for k in sizes:
        if timed:  # a next timing that would take too much of training's share is cut to the batches that fit
            rate = timed[-1][1] / timed[-1][0]  # an upper end: the warm-up's one-off costs counted per image
            allowance = (CALIBRATION_SHARE * share * (budget_s - (time.perf_counter() - started))
                         - (time.perf_counter() - t_start))
            if rate * k > allowance:  # the whole batches that fit (the warm-up alone, scaled up with its one-off
                # costs, planned a 90-s budget's CIFAR-10 ResNet-20 epoch of 11 s at 101 s and refused the budget)
                k = int(max(allowance, 0.0) / rate) // batch_size * batch_size
            # under torchrun every process times the same size, or none times it (the steps are collective)
            k = -distributed.all_max([-k])[0]
            if k <= timed[-1][0]:
                break
        t0 = time.perf_counter()
        one_epoch(k)
        timed.append((k, time.perf_counter() - t0))
    calibration_s = time.perf_counter() - t_start
    k, t = timed[-1]  # the warm-up left out where another timing ran (a set of one batch: timed once, whole)
    epoch_s, rough = t * n_images / k, k < n_images
    left = budget_s - (time.perf_counter() - started)
    share_s = min(share * left, left - report_s)
    fit = int(math.floor(SAFETY * share_s / epoch_s)) if epoch_s > 0 else asked
    if fit < 1:
        _refuse(budget_s, started, epoch_s, n_images, timed[-1][0], share, report, rough, report_s)
    return EpochPlan(budget_s, min(asked, fit), asked, epoch_s, calibration_s, share_s, report_min_s=report_s,
                     report_probe_s=report_probe_s)


def _refuse(budget_s: float, started: float, epoch_s: float, n_images: int, timed_on: int, share: float,
            report: bool, rough: bool = False, report_s: float = 0.0) -> None:
    spent = time.perf_counter() - started
    need = spent + max(epoch_s / (SAFETY * share), epoch_s / SAFETY + report_s)
    where = (f"{share:.0%} of what is left goes to training, the rest to the report" if report
             else "with --no-report training has all of what is left")
    if report_s:
        where += f", which needs about {report_s:.0f} s"
    timed = (f"up to about {epoch_s:.1f} s here (scaled from an epoch on {timed_on:,}, its start-up included)" if rough
             else f"about {epoch_s:.1f} s here (timed)")
    raise HardenError(f"--time-budget {budget_s:g}s: one epoch on the {n_images:,} training images takes {timed}, and "
                      f"{spent:.1f} s of the budget are spent ({where}), so not one epoch fits. About "
                      f"{math.ceil(need)} s would fit one; give a longer budget, a smaller --data-frac, or --no-report. "
                      "Nothing was trained or written.")


def report_images(budget_s: float, started: float, most: int, run_reports: Callable[[int], Any], memory=None
                  ) -> tuple[int, dict[str, Any]]:
    """(images, the report plan's summary): as many of `most` as fit in what is left of the budget, `run_reports(k)`
    running the three reports on k images to time them (report/budget.py's calibration). Fewer than the report's
    minimum fitting: the minimum, the expected overrun said. Under torchrun every process times its share and rank
    0's plan holds for all."""
    from . import distributed
    n, summary = _report_images(budget_s, started, most, run_reports, memory)
    return distributed.from_main(lambda: (n, summary))


def _report_images(budget_s: float, started: float, most: int, run_reports: Callable[[int], Any], memory
                   ) -> tuple[int, dict[str, Any]]:
    from .report.budget import plan
    from .runtime import quieted, warn
    now = time.perf_counter()
    left = budget_s - (now - started)
    def timed(k: int):
        with quieted():  # the timings' progress bars are not the report's
            return run_reports(k)  # the reports: their Square check's step is planned apart (report/budget.py)
    try:
        p = plan(max(left, 1e-3), most, timed, now, memory)
    except HardenError:
        n = min(MIN_USEFUL_IMAGES, most)
        warn(f"--time-budget {budget_s:.0f}s: the training left {max(left, 0):.0f} s, too little for a report on "
             f"{MIN_USEFUL_IMAGES} images by its timing; the report runs on {n} anyway (the hardened weights are kept), "
             "which may run past the budget. A longer budget, or fewer --attack, fits the report.")
        return n, {"images": n, "left_s": round(max(left, 0.0), 1), "minimum_forced": True}
    summary = {k: v for k, v in p.summary().items() if k != "budget_s"}  # the budget is the run's, not this part's
    return p.n, {**summary, "left_s": round(left, 1)}


def epochs_in_budget(budget_s: float, started: float, train_cfg: dict[str, Any], train_ds, model, trained,
                     report: bool, state, run_cfg: dict[str, Any],
                     base_report: Callable[[int], Any] | None = None, n_test: int = 0) -> EpochPlan:
    """fix's epochs under the budget: `trained(copy, data, cfg)` is fix's training call (its compile, rounding and
    output-kind settings); each timing trains a copy of `model` on a seeded sample of `train_ds`, the random streams
    that the real run draws from put back after (a budgeted run trains as `--epochs` of its count would). Under
    torchrun every process times (each trains its share) and rank 0's plan, or refusal, holds for all. Resumed, the
    interrupted run's plan for the same budget is taken (kept in its state: fix's `state.begin`)."""
    import numpy as np

    from . import distributed, random_streams
    from .reparametrized import copy_module
    from .runtime import held_warnings, info, quieted
    from .training import TrainConfig
    saved = (state.saved_fingerprint() or {}).get("time_budget") if state is not None else None
    order = np.random.default_rng(run_cfg.get("seed", 0)).permutation(train_ds.n_train)

    def one_epoch(k: int) -> None:
        streams, data_stream = random_streams.global_random_state(), train_ds.random_state()
        cfg = TrainConfig(**run_cfg, **{**train_cfg, "epochs": 1, "extend": 0.0})
        try:
            with quieted(), held_warnings():  # a timing's lines and warnings (a one-epoch run's) are not the run's
                trained(copy_module(model), train_ds.take_train(np.sort(order[:k])), cfg)
        finally:
            random_streams.set_global_random_state(streams)
            train_ds.set_random_state(data_stream)
    try:
        report_s, probe_s = report_minimum(budget_s, started, n_test, base_report) \
            if report and base_report is not None and saved is None else (0.0, 0.0)
        local, refusal = plan_epochs(budget_s, started, int(train_cfg["epochs"]), train_ds.n_train,
                                     int(train_cfg["batch_size"]), one_epoch, report, saved, report_s, probe_s), None
    except HardenError as e:
        local, refusal = None, str(e)
    plan, refusal = distributed.from_main(lambda: (local, refusal))
    if refusal:
        raise HardenError(refusal)
    if float(train_cfg.get("extend") or 0) > 0:
        info(f"time budget: extend {train_cfg['extend']} (epochs added while validation still rises) is off under "
             "a budget, which it would outlast")
    info(plan.line())
    return plan


def say_budget(reports: dict, model, epoch_plan: EpochPlan, report_plan: dict[str, Any], budget_s: float,
               started: float) -> None:
    """The budget's plan and the time used: in each report (its notes and JSON) and the hardened model's metadata."""
    used = round(time.perf_counter() - started, 1)
    training = model.spec.extra["time_budget"]["training"]  # the plan, and where training was cut short
    model.spec.extra["time_budget"] = {"budget_s": round(budget_s, 1), "training": training,
                                       "report": report_plan, "used_s": used}
    images = report_plan["images"]
    cut = f" (training {training['cut_short']})" if training.get("cut_short") else ""
    note = (f"time budget {budget_s:.0f} s (fix): {epoch_plan.epochs} of the recipe's {epoch_plan.asked} epochs{cut}, "
            f"{images} report images " + ("(the report's minimum, run though its timing said fewer fit)"
                                          if report_plan.get("minimum_forced") else "planned to fit what training left")
            + f"; used {used:.0f} s")
    for r in reports.values():
        r.time_budget = {**report_plan, "budget_s": round(budget_s, 1), "training": training, "used_s": used}
        r.notes.append(note)
