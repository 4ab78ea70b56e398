"""A release check: the report sized to a time budget (budget.py), compared with a baseline report image by image
(compare.py), and gated (gate.py). `harden eval` is this plus printing; a CI script can call it directly."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

from ..errors import HardenError
from .budget import parse_duration
from .budget import keep_plan
from .budget import plan as plan_images
from .compare import baseline_report, compare
from .gate import apply_gate, chance_failure_note, change_values, images_to_pass
from .model import Report


def release_report(run: Callable[[int], Report], *, n: int | None, available: int,
                   time_budget: str | None = None, started: float | None = None,
                   baseline: str | Path | None = None, baseline_doc: dict | None = None,
                   allow_mismatch: bool = False, confidence: float = 0.95,
                   requirements: Sequence = (), memory=None) -> Report:
    """`run(k)` evaluates k test images. With `time_budget` the attacks are timed on calibration samples first
    and k is chosen to fit (at most n); else k = n (500 when None). With a baseline (a report JSON read by
    compare.read_report) the report holds the paired comparison; the gate's results are in `report.gate`. `memory`
    (ReportStates.memory(), with --resume): the plan an interrupted run chose is taken again (budget.plan)."""
    from .. import distributed
    from ..runtime import info
    started = time.perf_counter() if started is None else started
    plan = None
    if time_budget is not None:
        budget_s = parse_duration(time_budget)
        try:  # every rank calibrates (the attacks are sharded); rank 0's plan, or its refusal, holds for all
            local, refusal = plan_images(budget_s, min(n, available) if n else available, run, started, memory), None
        except HardenError as e:
            local, refusal = None, str(e)
        plan, refusal = distributed.from_main(lambda: (local, refusal))
        if refusal:
            raise HardenError(refusal)
        if not plan.resumed:
            keep_plan(memory, plan)
        taken = " (the interrupted run's plan)" if plan.resumed else ""
        info(f"time budget {budget_s:.0f} s{taken}: {plan.seconds_per_image:.3f} s per image and {plan.fixed_s:.1f} s fixed "
             f"(calibrated in {plan.calibration_s:.1f} s) -> {plan.n} images, about {plan.estimate_s:.0f} s in all; a "
             f"95% interval of +/- {100 * plan.summary()['interval_half_width_at_50pct']:.1f} points at 50% accuracy")
    report = run(plan.n if plan else (500 if n is None else n))
    if plan is not None:
        report.time_budget = {**plan.summary(), "used_s": round(time.perf_counter() - started, 1)}
        report.notes.append(f"time budget {plan.budget_s:.0f} s: {plan.n} images planned at "
                            f"{plan.seconds_per_image:.2f} s each, estimate {plan.estimate_s:.0f} s, used "
                            f"{report.time_budget['used_s']:.0f} s"
                            + (" (resumed: the interrupted run's plan; the time before the resume not counted)"
                               if plan.resumed else ""))
    report.confidence = confidence
    base_values, values = None, report.metric_values()
    if baseline_doc is not None:
        base = baseline_report(baseline_doc, report.threat_model, baseline)
        now = json.loads(json.dumps(report.to_dict()))
        report.baseline = {"file": str(baseline), "model": base.get("model"),
                           "comparison": compare(base, now, allow_mismatch, confidence)}
        base_values = base.get("values", {})
        values = {**values, **change_values(report.baseline["comparison"])}
    report.gate = apply_gate(values, list(requirements), base_values)  # the same on every rank
    for g in report.gate:  # a bound short of its bar with the value past it: how many images would settle it
        m = images_to_pass(g, values, report.n, (report.baseline or {}).get("comparison"), confidence)
        if m:
            g["images_to_pass"] = m
    chance = chance_failure_note(list(requirements), confidence)
    if chance:
        report.notes.append(chance)
    return report
