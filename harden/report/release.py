"""A release check: the report sized to a time budget (budget.py), compared with a baseline report image by image
(compare.py), and gated (gate.py). `harden eval` is this plus printing; a CI script can call it directly."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import HardenError
from . import provenance
from .budget import SAFETY, parse_duration
from .budget import keep_plan
from .budget import plan as plan_images
from .compare import baseline_report, compare, draws_note, moved_data_note, unlike_worst_cases
from .compare import images_counted, single_reports
from .gate import (CHANGE, apply_gate, bound_gate, chance_failure_note, change_values, check_known, needs_baseline,
                   no_baseline)
from .model import Report
from .stats import MOST_IMAGES, fewest_images_for_bar, images_for_accuracy_bound, images_for_change_bound, wilson


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
    # a paired comparison needs the baseline's images: its count, unless --num-images asks for another (refused here,
    # before the attacks' time, rather than after them)
    paired_n = images_counted(baseline_doc) if baseline_doc is not None and not allow_mismatch else None
    if paired_n is not None and (paired_n > available or (n is not None and n != paired_n)):
        way_out = ("Leave out --num-images (the baseline's count is then taken)" if paired_n <= available else
                   "Measure both on the same data")
        asked = (f"--num-images {n} asks for {n}" if n is not None and n != paired_n and paired_n <= available else
                 f"the evaluation split holds {available}")
        raise HardenError(f"The baseline was measured on {paired_n} images and {asked}: a comparison image by image "
                          f"needs the same images. {way_out}, or pass --allow-mismatch for an unpaired comparison. "
                          "Nothing was attacked.")
    plan = None
    if time_budget is not None:
        budget_s = parse_duration(time_budget)
        most = paired_n or (min(n, available) if n else available)
        try:  # every rank calibrates (the attacks are sharded); rank 0's plan, or its refusal, holds for all
            local, refusal = plan_images(budget_s, most, run, started, memory), None
            if paired_n is not None and local.n < paired_n:
                need = time.perf_counter() - started + local.fixed_s + paired_n * local.seconds_per_image / SAFETY
                local, refusal = None, (
                    f"--time-budget {budget_s:.0f}s fits {local.n} images at the measured {local.seconds_per_image:.2f} "
                    f"s per image, and the baseline was measured on {paired_n}: a comparison image by image needs "
                    f"the same images. About {math.ceil(need)} s would fit them; give that budget, or pass "
                    "--allow-mismatch for an unpaired comparison. Nothing was written.")
        except HardenError as e:
            local, refusal = None, str(e)
        plan, refusal = distributed.from_main(lambda: (local, refusal))
        if refusal:
            raise HardenError(refusal)
        if not plan.resumed:
            keep_plan(memory, plan)
        taken = " (the interrupted run's plan)" if plan.resumed else ""
        square = f", {plan.square_s:.1f} s expected for the Square check" if plan.square_s >= 0.05 else ""
        info(f"time budget {budget_s:.0f} s{taken}: {plan.seconds_per_image:.3f} s per image and {plan.fixed_s:.1f} s fixed"
             f"{square} (calibrated in {plan.calibration_s:.1f} s) -> {plan.n} images, about {plan.estimate_s:.0f} s in "
             f"all; a 95% interval of +/- {100 * plan.summary()['interval_half_width_at_50pct']:.1f} points at 50% accuracy")
    k = plan.n if plan else (paired_n or (500 if n is None else n))
    refuse_unreachable(requirements, min(k, available), confidence)  # before the attacks: no model could pass
    run_started = time.perf_counter()
    report = run(k)
    # the cost of one more image: the plan's calibrated rate, else this run's (its fixed costs included: an upper end)
    per_image = plan.seconds_per_image if plan else (time.perf_counter() - run_started) / max(report.n, 1)
    if plan is not None:
        report.time_budget = {**plan.summary(), "used_s": round(time.perf_counter() - started, 1)}
        report.notes.append(f"time budget {plan.budget_s:.0f} s: {plan.n} images planned at "
                            f"{plan.seconds_per_image:.2f} s each, estimate {plan.estimate_s:.0f} s, used "
                            f"{report.time_budget['used_s']:.0f} s"
                            + (" (resumed: the interrupted run's plan; the time before the resume not counted)"
                               if plan.resumed else ""))
    return gate_report(report, requirements, baseline=baseline, baseline_doc=baseline_doc,
                       allow_mismatch=allow_mismatch, confidence=confidence, per_image=per_image, available=available)


def gate_report(report: Report, requirements: Sequence, *, baseline: str | Path | None = None,
                baseline_doc: dict | None = None, allow_mismatch: bool = False, confidence: float = 0.95,
                per_image: float | None = None, available: int | None = None) -> Report:
    """The report compared with a baseline report (its JSON, read by compare.read_report) and its gate's results in
    `report.gate`; without a baseline, a comparison the report already holds (a saved one's) serves the requirements
    on the change. `per_image` (seconds) and `available` (the test split's size), where known, size a failing
    interval requirement's images_to_pass."""
    report.confidence = confidence
    base_values, values = None, report.metric_values()
    if baseline_doc is not None:
        base = baseline_report(baseline_doc, report.threat_model, baseline)
        now = json.loads(json.dumps(report.to_dict()))
        report.baseline = {"file": str(baseline), "model": base.get("model"),
                           "comparison": compare(base, now, allow_mismatch, confidence)}
        unlike = unlike_worst_cases(base, now)
        unlike_keys = {f"{m}{bound}" for m in unlike for bound in ("", ".lower", ".upper")}
        base_values = {k: v for k, v in base.get("values", {}).items()  # `worst>=baseline`: the same measure only
                       if k not in unlike_keys}
        report.notes += [why for m, why in unlike.items() if m in base.get("values", {}) and m in now.get("values", {})]
        moved = moved_data_note(base, now)
        if moved:
            report.notes.append(moved)
        older = draws_note(base)
        if older:
            report.notes.append(older)
        report.notes += provenance.differences(base, now)  # another harden, torch or device, or the same weights
    comparison = (report.baseline or {}).get("comparison")
    if comparison:
        values = {**values, **change_values(comparison)}
        if base_values is None:  # a saved comparison: the baseline's accuracies are the report's less the change
            base_values = {m: values[m] - c["difference"] for m, c in comparison.items() if m in values}
    report.gate = apply_gate(values, list(requirements), base_values)  # the same on every rank
    for g in report.gate:  # a bound short of its bar with the value past it: how many images would settle it
        m = images_to_pass(g, values, report.n, comparison, confidence)
        if m:
            g["images_to_pass"] = m
            if per_image is not None:
                g["seconds_to_pass"] = round(m * per_image, 1)
            if available is not None and m > available:  # more than the test split holds: more data, not more time
                g["images_available"] = int(available)
    chance = chance_failure_note(list(requirements), confidence)
    if chance and chance not in report.notes:
        report.notes.append(chance)
    return report


def images_to_pass(g: dict[str, Any], values: dict[str, float], n: int, comparison: dict[str, dict] | None,
                   confidence: float) -> int | None:
    """For a failing requirement on an interval's bound (`pgd.lower>=0.45`, `pgd.change.lower>=-0.02`) whose measured
    value is past the bar: about how many images would pass it if the value held (the evidence was too thin, not the
    model too weak); None for any other requirement."""
    kind, bar = bound_gate(g), g.get("value")
    if g["passed"] or bar is None or kind is None or not kind[1]:
        return None
    side = kind[0]
    measured = g["metric"][: -len(side) - 1]
    if measured.endswith(CHANGE):
        c = (comparison or {}).get(measured[: -len(CHANGE)])
        if not c or "both" not in c:  # unpaired: no counts to scale
            return None
        return images_for_change_bound(c["both"], c["gained"], c["lost"], n - c["both"] - c["gained"] - c["lost"], bar,
                                       side, confidence)
    return images_for_accuracy_bound(values[measured], n, bar, side, confidence) if measured in values else None


def refuse_unreachable(requirements: Sequence, n: int, confidence: float) -> None:
    """A requirement on an accuracy's interval bound that no model could meet on n images (`pgd.lower>=0.97` on 100:
    even 100 of 100 give a lower bound of 0.963) is bad input, said before minutes of attacks."""
    for r in requirements:
        kind, bar = bound_gate(r), r.get("value")
        if bar is None or CHANGE in r["metric"] or kind is None or not kind[1]:
            continue
        side = kind[0]
        need = fewest_images_for_bar(float(bar), side, confidence)
        if n < need:
            best = wilson(n, n, confidence)[0] if side == "lower" else wilson(0, n, confidence)[1]
            every = "survived" if side == "lower" else "were fooled"
            needs = (f"It needs at least {need:,} images (--num-images, or a longer --time-budget; and a test split "
                     "that holds them), or a bar that evidence can reach." if need <= MOST_IMAGES else
                     f"No number of images reaches a {side} bound of {float(bar):g}: give a bar inside (0, 1).")
            raise HardenError(
                f"Requirement {r['text']!r} cannot pass on {n:,} images even if every image {every}: the best "
                f"{confidence:.0%} {side} bound {n:,} images can give is {best:.3f}. {needs}")


class _SavedAttack:
    """A saved report's attack as check_known reads a run's: its name, norm and stages."""

    def __init__(self, result):
        self.name, self.norm, self._stages = result.name, result.norm, list(result.stages)

    def stage_names(self) -> list[str]:
        return self._stages


def gate_saved_report(doc: dict[str, Any], requirements: Sequence, *, path: str | Path = "report",
                      baseline: str | Path | None = None, baseline_doc: dict | None = None,
                      allow_mismatch: bool = False, confidence: float = 0.95) -> Report:
    """A saved report JSON gated again, with no model and no attack (`harden gate`): other bars, another
    --confidence, another baseline, after the run that measured it. A fix's before/after file gives its hardened
    model's white-box report, with its base's as the baseline unless another is given (`pgd.change.lower>=0`: the
    hardening shown to help)."""
    from ..data.predicted import refuse_clean_requirements
    reports = single_reports(doc)
    chosen = [r for r in reports if r.get("threat_model") == "white-box"] or reports
    report = Report.from_dict(chosen[-1])
    report.gate = []
    if baseline_doc is not None:
        report.baseline = {}
    elif doc.get("kind") == "fix" and len(reports) >= 2 and doc.get("change"):
        report.baseline = {"file": str(path), "model": reports[0].get("model"), "comparison": doc["change"]}
    if baseline_doc is None and report.baseline.get("comparison") and report.confidence != confidence and any(
            CHANGE in r["metric"] for r in requirements):  # its intervals were drawn at the saved level
        raise HardenError(f"{str(path)!r} holds its comparison with {report.baseline.get('model')} at "
                          f"{report.confidence:.0%} confidence; to gate the change at {confidence:.0%}, give that "
                          "model's report again (--baseline).")
    if needs_baseline(list(requirements)) and baseline_doc is None and not report.baseline.get("comparison"):
        raise no_baseline(f"{str(path)!r} holds no comparison: give --baseline REPORT.json")
    if "labels" in report.data_details:  # eval --labels predicted
        refuse_clean_requirements(list(requirements))
    check_known(list(requirements), [_SavedAttack(a) for a in report.attacks], Path(path).name,
                transfer=report.threat_model != "white-box", metrics=bool(report.metrics))
    refuse_unreachable(requirements, report.n, confidence)
    # the cost of one more image: the run's calibrated rate (--time-budget), else its attacks' time per image
    attack_seconds = sum(a.seconds for a in report.attacks)
    per_image = (report.time_budget or {}).get("seconds_per_image") or (attack_seconds / report.n if report.n else None)
    return gate_report(report, requirements, baseline=baseline, baseline_doc=baseline_doc,
                       allow_mismatch=allow_mismatch, confidence=confidence, per_image=per_image or None)


def gate(report: "str | Path | dict", require: Sequence[str] = (), *, gate_file: str | Path | None = None,
         baseline: str | Path | None = None, allow_mismatch: bool = False, confidence: float = 0.95) -> Report:
    """`harden gate` as a function: a saved report (its JSON file or the document) gated with `require`
    (METRIC>=VALUE strings) and a gate file's requirements; the results in `.gate` (each with `passed`)."""
    from .compare import read_report
    from .gate import load_gate_file, parse_requirement
    requirements = [parse_requirement(r) for r in require] + (load_gate_file(gate_file) if gate_file else [])
    if not requirements:
        raise HardenError("Nothing to gate: give requirements (METRIC>=VALUE) or a gate file.")
    doc = report if isinstance(report, dict) else read_report(report)
    return gate_saved_report(doc, requirements, path=report if not isinstance(report, dict) else "report",
                             baseline=baseline, baseline_doc=read_report(baseline) if baseline is not None else None,
                             allow_mismatch=allow_mismatch, confidence=confidence)
