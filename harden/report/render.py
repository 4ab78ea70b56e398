"""Report renderings: rich table (terminal), JSON, Markdown, JUnit XML. The threat model is in each."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import provenance
from .by_class import weakest_line
from .checks import state_word
from .gate import settle_note
from .html_page import data_note, render, run_where, stage_seconds_cell
from .model import Report


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _norm_label(norm: str) -> str:
    return {"inf": "Linf", "2": "L2", "0": "L0"}[norm]


def _budget(a) -> str:
    from ..attacks.base import _fmt
    value = f"{a.budget:.0f}" if a.norm == "0" else _fmt(a.budget)
    return f"{_norm_label(a.norm)} {value}"


def _ci(intervals: dict, key: str) -> str:
    lo, hi = intervals.get(key, (None, None))
    return "-" if lo is None else f"{100 * lo:.1f}-{100 * hi:.1f}"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e3 else str(n))


WORST_CASE_NOTE = "worst case: robust only if the image survives every attack above at its budget"


def _failing_metrics(report: Report) -> set[str]:
    return {g["metric"] for g in report.gate if not g["passed"]}


def baseline_lines(report) -> list[str]:
    """The comparison with --baseline, a line per accuracy: difference in points, interval, p-value and test."""
    b = report.get("baseline", {}) if isinstance(report, dict) else report.baseline
    if not b:
        return []
    lines = [f"against the baseline {b['file']} ({b.get('model')}): new - baseline"]
    for m, r in b["comparison"].items():
        lines.append(f"{m}: {100 * r['difference']:+.1f} points [{100 * r['lower']:+.1f}, {100 * r['upper']:+.1f}], "
                     f"p = {r['p']:.3g} ({r['test']})")
    return lines


def render_terminal(report: Report, console: Console) -> None:
    fails = _failing_metrics(report)
    # the user's names (a file `model[v2].pt`, a folder `photos[2024]/`) are text, not markup
    title = (f"{escape(report.model)} - threat model: [bold]{escape(report.threat_model)}[/] - {report.n} images of "
             f"{escape(str(report.data))} - device {escape(run_where(report))}")
    note = "\n".join([data_note(report)] + list(report.notes)).strip()
    t = Table(title=title + (f"\n[dim]{escape(note)}[/]" if note else ""), title_justify="left")
    ci = report.intervals()
    for col in ("attack", "budget", "robust acc %", f"{report.confidence:.0%} CI", "success %", "median norm", "s",
                "img/s", "grad passes"):
        t.add_column(col, justify="left" if col == "attack" else "right")
    transfer = report.source_clean_accuracy is not None
    if transfer:
        t.add_column("acc on src-correct %", justify="right")
    clean_row = ["clean", "-", _pct(report.clean_accuracy), _ci(ci, "clean"), "-", "-", "-", "-", "-"] + (
        [_pct(report.clean_on_source_correct)] if transfer else [])
    t.add_row(*clean_row, style="red" if "clean" in fails else None)
    for a in report.attacks:
        bad = a.name in fails or any(f.startswith(a.name + ".") for f in fails)
        for stage, v in a.stages.items():
            t.add_row(f"  after {stage}", _budget(a), _pct(v), _ci(ci, f"{a.name}.{stage}"), "-", "-",
                      stage_seconds_cell(a, stage), "-", "-", *(["-"] if transfer else []),
                      style="red" if f"{a.name}.{stage}" in fails else "dim")
        row = [a.name, _budget(a), _pct(a.robust_accuracy), _ci(ci, a.name), _pct(a.success_rate),
               "-" if a.median_norm is None else f"{a.median_norm:.4g}", f"{a.seconds:.1f}", f"{a.images_per_s:.0f}",
               _count(a.backward_passes)]
        if transfer:
            row.append(_pct(a.accuracy_on_source_correct))
        t.add_row(*row, style="red" if bad else None)
    for norm, v in report.worst_by_norm.items():
        if len(report.worst_by_norm) > 1:  # one norm: the same as the worst case
            t.add_row(f"worst {norm}", f"each {norm} attack's", _pct(v), _ci(ci, f"worst.{norm}"), *["-"] * 5,
                      *(["-"] if transfer else []), style="red" if f"worst.{norm}" in fails else None)
    if report.worst_case is not None:
        t.add_row("worst case", "each attack's", _pct(report.worst_case), _ci(ci, "worst"), *["-"] * 5,
                  *(["-"] if transfer else []), style="bold red" if "worst" in fails else "bold")
    console.print(t)
    console.print(f"  [dim]intervals: Wilson score, {report.confidence:.0%} confidence, {report.n} images[/]")
    for a in report.attacks:
        console.print(f"  [dim]{escape(a.preset)}[/]")
    if report.worst_case is not None:
        console.print(f"  [dim]{WORST_CASE_NOTE}; grad passes: image-level forward+backward passes that ran[/]")
    if report.metrics:
        console.print("  " + "  ".join(f"{k} {v:.4g}" for k, v in report.metrics.items()) + " (white-box, seed 004)")
    if transfer:
        console.print(f"  crafting model clean accuracy {_pct(report.source_clean_accuracy)}%")
    weakest = weakest_line(report.per_class, report.confidence)
    if weakest:
        console.print(f"  [dim]{escape(weakest)}[/]")
    render_masking(report, console)
    for i, line in enumerate(baseline_lines(report)):
        console.print(("  " if i == 0 else "    ") + escape(line))
    for g in report.gate:
        mark = "[green]PASS[/]" if g["passed"] else "[red]FAIL[/]"
        actual = "missing" if g["actual"] is None else f"{g['actual']:.4g}"
        console.print(f"  {mark} {escape(g['text'])} (actual {actual}{escape(settle_note(g))})")


def render_masking(report: Report, console: Console) -> None:
    for f in report.masking:
        if not f["tripped"]:
            continue
        kind = f.get("kind", "masking")
        if kind == "masking":
            console.print(f"  [bold yellow]warning: possible gradient masking ({escape(report.model)}):[/] "
                          f"{escape(f['check'])} - {escape(f['detail'])}. White-box numbers may overstate robustness.")
        elif kind == "check":
            console.print(f"  [bold yellow]warning ({escape(report.model)}):[/] {escape(f['check'])} - "
                          f"{escape(f['detail'])}.")
        else:
            console.print(f"  note ({escape(report.model)}): {escape(f['detail'])}.")
    warnings = [f for f in report.masking if f["tripped"] and f.get("kind", "masking") != "note"]
    if report.masking and not warnings:
        console.print(f"  gradient-masking and evaluation checks ({len(report.masking)}): none tripped")
    if report.check_seconds:
        parts = sorted(report.check_seconds.items(), key=lambda kv: -kv[1])
        console.print(f"  [dim]the checks took {sum(report.check_seconds.values()):.1f} s: "
                      + escape(", ".join(f"{k} {v:.1f} s" for k, v in parts)) + "[/]")


def report_document(reports: Sequence[Report], training: dict | None = None) -> dict:
    """The JSON document: one report as is, several under "reports"; `harden fix` adds "kind": "fix" and its
    training history, so that `harden report` can redraw every figure from the file alone."""
    body = [r.to_dict() for r in reports]
    doc = body[0] if len(body) == 1 and training is None else {"reports": body}
    if training is not None:
        doc["kind"] = "fix"
        doc["training"] = training
        if len(body) >= 2:  # base and hardened, white-box on the same images: the paired change
            from .compare import hardening_change
            doc["change"] = hardening_change(body[0], body[1], float(body[1].get("confidence", 0.95)))
    return json.loads(json.dumps(_finite(doc)))  # plain JSON types: a re-render from the file is identical


def _finite(obj):
    """NaN and infinity as null: json.dumps would write NaN / Infinity, which are not JSON (jq and strict parsers
    in a CI pipeline reject the file)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(reports: Sequence[Report], training: dict | None = None) -> str:
    return json.dumps(report_document(reports, training), indent=2, allow_nan=False)


def to_markdown(reports: Sequence[Report]) -> str:
    lines = []
    for r in reports:
        lines += [f"## {r.model}", "", f"Threat model: **{r.threat_model}** (crafted on {r.crafted_on}); "
                  f"{r.n} test images of {r.data}; device {run_where(r)}; seed {r.seed}."
                  + (f" Images: {data_note(r)}." if data_note(r) else "")
                  + (f" Made with {provenance.line(r.provenance)}." if r.provenance else "")
                  + "".join(f" Note: {n}." for n in r.notes), ""]
        transfer = r.source_clean_accuracy is not None
        ci = r.intervals()
        head = (f"| attack | budget | robust acc % | {r.confidence:.0%} CI (Wilson) | success % | median norm | s | img/s "
                "| grad passes |")
        sep = "|---|---|---|---|---|---|---|---|---|"
        if transfer:
            head += " acc on src-correct % |"
            sep += "---|"
        dash = " - |" if transfer else ""
        lines += [head, sep, f"| clean | - | {_pct(r.clean_accuracy)} | {_ci(ci, 'clean')} | - | - | - | - | - |"
                  + (f" {_pct(r.clean_on_source_correct)} |" if transfer else "")]
        for a in r.attacks:
            for stage, v in a.stages.items():
                lines.append(f"| {a.name} after {stage} | {_budget(a)} | {_pct(v)} | {_ci(ci, f'{a.name}.{stage}')} "
                             f"| - | - | {stage_seconds_cell(a, stage)} | - | - |" + dash)
            med = "-" if a.median_norm is None else f"{a.median_norm:.4g}"
            row = (f"| {a.name} | {_budget(a)} | {_pct(a.robust_accuracy)} | {_ci(ci, a.name)} | "
                   f"{_pct(a.success_rate)} | {med} | {a.seconds:.1f} | {a.images_per_s:.0f} | {a.backward_passes} |")
            if transfer:
                row += f" {_pct(a.accuracy_on_source_correct)} |"
            lines.append(row)
        for norm, v in r.worst_by_norm.items() if len(r.worst_by_norm) > 1 else ():  # one norm: the worst case
            lines.append(f"| worst {norm} | each {norm} attack's | {_pct(v)} | {_ci(ci, f'worst.{norm}')} "
                         "| - | - | - | - | - |" + dash)
        if r.worst_case is not None:
            lines.append(f"| **worst case** | each attack's | **{_pct(r.worst_case)}** | {_ci(ci, 'worst')} "
                         "| - | - | - | - | - |" + dash)
        lines.append("")
        if r.worst_case is not None:
            lines.append(f"- {WORST_CASE_NOTE}")
        lines += [f"- `{a.preset}`" for a in r.attacks]
        if r.metrics:
            lines.append("- " + ", ".join(f"{k} {v:.4g}" for k, v in r.metrics.items()) + " (white-box)")
        weakest = weakest_line(r.per_class, r.confidence)
        if weakest:
            lines.append(f"- {weakest}")
        for f in r.masking:
            what = "gradient-masking check" if f.get("kind", "masking") == "masking" else "check"
            lines.append(f"- {what} `{f['check']}`: {state_word(f)} ({f['detail']})")
        base = baseline_lines(r)
        if base:
            lines += [f"- {base[0]}"] + [f"  - {line}" for line in base[1:]]
        for g in r.gate:
            lines.append(f"- {'PASS' if g['passed'] else 'FAIL'} `{g['text']}` (actual {g['actual']}{settle_note(g)})")
        lines.append("")
    return "\n".join(lines)


def to_junit(reports: Sequence[Report]) -> str:
    suites = ET.Element("testsuites")
    for r in reports:
        cases = r.gate or []
        suite = ET.SubElement(suites, "testsuite", name=f"harden eval {r.model} ({r.threat_model})",
                              tests=str(max(1, len(cases))), failures=str(sum(not g["passed"] for g in cases)))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="threat_model", value=r.threat_model)
        for k in ("harden", "torch", "device_name", "weights_sha256", "file_sha256"):  # what made it
            if r.provenance.get(k):
                ET.SubElement(props, "property", name=f"provenance.{k}", value=str(r.provenance[k]))
        for k, v in r.metric_values().items():
            ET.SubElement(props, "property", name=k, value=f"{v:.6g}")
        if not cases:
            ET.SubElement(suite, "testcase", classname="harden.report", name="report produced")
        for g in cases:
            tc = ET.SubElement(suite, "testcase", classname=f"harden.gate[{r.threat_model}]", name=g["text"])
            if not g["passed"]:
                f = ET.SubElement(tc, "failure", message=f"{g['text']}: actual {g['actual']}")
                f.text = f"{g['metric']} = {g['actual']} (threat model: {r.threat_model}){settle_note(g)}"
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def write_outputs(reports: Sequence[Report], json_path=None, markdown_path=None, junit_path=None, html_path=None,
                  plots_dir=None, training: dict | None = None) -> None:
    from ..stdout_outputs import write
    for path, text in ((json_path, lambda r: to_json(r, training)), (markdown_path, to_markdown),
                       (junit_path, to_junit)):
        if path:
            write(path, text(reports))  # a file, or standard output for "-"
    if html_path or plots_dir:
        render(report_document(reports, training), html_path, plots_dir)


def render_before_after(reports: dict[str, Report], console: Console) -> None:
    """Seed 000 table 1 layout: base and hardened model, white-box and transfer from the base, plus the
    accuracy on the images the base classifies correctly when clean."""
    base, wb, tr = reports["base_white_box"], reports["fixed_white_box"], reports["fixed_transfer"]
    cis = {id(r): r.intervals() for r in (base, wb, tr)}

    def cell(r, key):  # value and its interval, in %
        v = r.accuracies().get(key)
        lo, hi = cis[id(r)].get(key, (None, None))
        return _pct(v) if lo is None else f"{_pct(v)} ({100 * lo:.1f}-{100 * hi:.1f})"
    t = Table(title=f"before / after - {base.n} test images of {escape(str(base.data))} - robust accuracy % "
              f"({base.confidence:.0%} "
              "Wilson interval)", title_justify="left")
    t.add_column("attack")
    t.add_column("budget", justify="right")
    t.add_column("base\n(white-box)", justify="right")
    t.add_column("hardened\n(white-box)", justify="right")
    t.add_column(f"hardened\n({escape(tr.threat_model)})", justify="right")
    t.add_column("hardened, on images\nthe base gets right\n(transfer)", justify="right")
    t.add_row("clean", "-", cell(base, "clean"), cell(wb, "clean"), cell(tr, "clean"), _pct(tr.clean_on_source_correct))
    for a, b, c in zip(base.attacks, wb.attacks, tr.attacks, strict=True):
        for stage in a.stages:
            key = f"{a.name}.{stage}"
            t.add_row(f"  after {stage}", _budget(a), cell(base, key), cell(wb, key), cell(tr, key), "-", style="dim")
        t.add_row(a.name, _budget(a), cell(base, a.name), cell(wb, b.name), cell(tr, c.name),
                  _pct(c.accuracy_on_source_correct))
    t.add_row("worst case", "each attack's", cell(base, "worst"), cell(wb, "worst"), cell(tr, "worst"), "-",
              style="bold")
    console.print(t)
    from .compare import change_lines, hardening_change, masking_tripped
    lines, worse = change_lines(hardening_change(base.to_dict(), wb.to_dict(), wb.confidence), wb.n, wb.confidence,
                                masking_tripped(wb.masking))
    for i, line in enumerate(lines):
        console.print(f"  [yellow]warning: {escape(line)}[/]" if worse and i else f"  {escape(line)}")
    for a in base.attacks:
        console.print(f"  [dim]{escape(a.preset)}[/]")
    if data_note(base):
        console.print(f"  [dim]data: {escape(data_note(base))}[/]")
    for label, r in (("base", base), ("hardened", wb)):
        if r.metrics:
            console.print(f"  {label}: " + "  ".join(f"{k} {v:.4g}" for k, v in r.metrics.items()) + " (white-box)")
    for note in wb.notes:
        console.print(f"  [dim]note: {note}[/]")
    render_masking(wb, console)

