"""CI-native output of `harden eval`: on GitHub Actions (GITHUB_STEP_SUMMARY set) the Markdown report is appended to
the job's summary page, and each failing requirement prints an `::error` workflow command, which GitHub shows as an
annotation on the run. Elsewhere nothing changes; exit codes stay 0 / 1 / 2."""
from __future__ import annotations

import os
from typing import Callable, Sequence

from .gate import CHANGE, settle_note


def _escape(text: str) -> str:
    """GitHub's workflow-command escaping of a message (%, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A property's value (`title=`) escapes the command's own delimiters too (`:` and `,`): a requirement
    `pgd>=0.5,clean>=0.9` from a gate file would otherwise end the title at its comma."""
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def error_lines(reports: Sequence) -> list[str]:
    """One `::error title=...::message` line per failing requirement: metric, value, interval and bar."""
    lines = []
    for r in reports:
        intervals = r.intervals()
        for g in r.gate:
            if g["passed"]:
                continue
            metric = g["metric"]
            base = metric.rsplit(".", 1)[0] if metric.endswith((".lower", ".upper")) else metric
            value = "missing" if g["actual"] is None else f"{g['actual']:.4g}"
            ci = intervals.get(base)
            point = r.accuracies().get(base) if hasattr(r, "accuracies") else None
            ci_text = (f" ({base} {point:.4g}, " if point is not None and base != metric else " (") + (
                f"{r.confidence:.0%} CI [{ci[0]:.4g}, {ci[1]:.4g}] on {r.n} images)" if ci else "no interval)")
            change = ((getattr(r, "baseline", None) or {}).get("comparison") or {}).get(metric.split(CHANGE)[0]) \
                if CHANGE in metric else None
            if change:  # a difference from the baseline: its own interval and test
                ci_text = (f" (new - baseline {change['difference']:+.4g}, {r.confidence:.0%} CI "
                           f"[{change['lower']:+.4g}, {change['upper']:+.4g}], {change['test']}, p={change['p']:.3g})")
            msg = f"{r.model} ({r.threat_model}): {metric} = {value}{ci_text}; requirement {g['text']} fails" \
                + settle_note(g)
            lines.append(f"::error title={_escape_property('harden gate: ' + g['text'])}::{_escape(msg)}")
    return lines


def publish(reports: Sequence, to_markdown: Callable[[Sequence], str], echo: Callable[[str], None] = print) -> None:
    """On GitHub Actions: append the Markdown report to $GITHUB_STEP_SUMMARY (when set) and print the annotations."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(to_markdown(reports) + "\n")
    if summary or os.environ.get("GITHUB_ACTIONS") == "true":
        for line in error_lines(reports):
            echo(line)
