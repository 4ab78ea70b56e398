"""The report as one self-contained HTML file (tables, checks, threat models, settings, and figures embedded as
PNG data URIs; no scripts, fonts or anything fetched), and the same figures as PNG files. Everything is drawn
from the report's JSON document, so `harden report report.json` redraws exactly what `--html` wrote."""
from __future__ import annotations

import base64
import functools
import html
import io
from pathlib import Path
from typing import Any

from ..metadata_text import metadata_text
from . import provenance
from .checks import state_word
from .examples import decode
from .gate import settle_note
from .stats import interval

FIG_DPI = 100


# ------------------------------------------------------------------ figures (matplotlib, Agg)

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "harden"})
    return plt


def run_where(report) -> str:
    """'cpu', or 'cuda:0 x 8 processes, attacks in bf16 autocast' (a Report or its JSON dict)."""
    get = (lambda k, d: report.get(k, d)) if isinstance(report, dict) else (lambda k, d: getattr(report, k, d))
    text = str(get("device", "?"))
    if int(get("processes", 1)) > 1:
        text += f" x {get('processes', 1)} processes"
    precision = get("attack_precision", "fp32")
    return text + (f", attacks in {precision}" if precision != "fp32" else "")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def reports_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["reports"] if "reports" in doc else [doc]


def _role(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """fix documents: base white-box, hardened white-box, hardened transfer (in that order)."""
    reps = reports_of(doc)
    if len(reps) == 3 and doc.get("kind") == "fix":
        return {"base": reps[0], "hardened": reps[1], "transfer": reps[2]}
    return {}


def figure_curves(doc: dict[str, Any]) -> bytes | None:
    plt = _plt()
    roles = _role(doc)
    if roles:
        names = [k for k in roles["hardened"].get("curves", {})]
        if not names:
            return None
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            for role, style, label in (("base", dict(color="0.45", ls="-"), "base (white-box)"),
                                       ("hardened", dict(color="C0", ls="-"), "hardened (white-box)"),
                                       ("transfer", dict(color="C0", ls="--"), "hardened (transfer from base)")):
                pts = roles[role].get("curves", {}).get(name)
                if pts:
                    ax.errorbar([b for b, _ in pts], [100 * a for _, a in pts], yerr=_yerr(pts, roles[role]),
                                marker="o", ms=3, capsize=2, label=label, **style)
            _mark_budget(ax, roles["hardened"], name)
            ax.set_title(name)
            ax.set_xlabel("L-inf budget")
            ax.set_ylim(-2, 102)
        axes[0][0].set_ylabel("robust accuracy %")
        axes[0][0].legend(fontsize=7, loc="upper right")
        return _png(fig)
    rep = reports_of(doc)[0]
    curves = rep.get("curves") or {}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for i, (name, pts) in enumerate(curves.items()):
        ax.errorbar([b for b, _ in pts], [100 * a for _, a in pts], yerr=_yerr(pts, rep), marker="o", ms=3,
                    capsize=2, color=f"C{i}", label=name)
    _mark_budget(ax, rep, next(iter(curves)))
    ax.set_xlabel("L-inf budget")
    ax.set_ylabel("robust accuracy %")
    ax.set_ylim(-2, 102)
    ax.set_title(_figure_text(f"{rep['model']} ({rep['threat_model']})"))
    ax.legend(fontsize=7)
    return _png(fig)


def _yerr(pts, rep: dict[str, Any]) -> list[list[float]]:
    """Error bars: each point's confidence interval (stats.py, Wilson) on the report's n images, in points."""
    n, conf = int(rep.get("n", 0)), float(rep.get("confidence", 0.95))
    bounds = [interval(a, n, conf) for _, a in pts]
    # never below 0: matplotlib refuses a negative bar (an accuracy on its interval's bound, less rounding)
    return [[max(0.0, 100 * (a - lo)) for (_, a), (lo, _) in zip(pts, bounds, strict=True)],
            [max(0.0, 100 * (hi - a)) for (_, a), (_, hi) in zip(pts, bounds, strict=True)]]


def _mark_budget(ax, rep: dict[str, Any], name: str) -> None:
    row = next((a for a in rep["attacks"] if a["name"] == name), None)
    if row is not None:
        ax.axvline(row["budget"], color="0.6", lw=0.8, ls=":")


def figure_examples(rep: dict[str, Any]) -> bytes | None:
    """One row per attack: for each example, clean | adversarial | perturbation (amplified to fill [0, 1])."""
    rows = [a for a in rep["attacks"] if a.get("examples")]
    if not rows:
        return None
    plt = _plt()
    names = rep.get("class_names")
    k = max(len(a["examples"]) for a in rows)
    fig, axes = plt.subplots(len(rows), 3 * k, figsize=(1.0 * 3 * k, 1.25 * len(rows) + 0.3), squeeze=False)
    for r, a in enumerate(rows):
        for j in range(k):
            trio = axes[r][3 * j: 3 * j + 3]
            for ax in trio:
                ax.axis("off")
            if j >= len(a["examples"]):
                continue
            ex = a["examples"][j]
            clean, adv = decode(ex, "clean"), decode(ex, "adv")
            delta = adv - clean
            amp = delta / (2 * max(float(abs(delta).max()), 1e-8)) + 0.5
            # the examples are kept as 8-bit pixels: a perturbation under half a step (DeepFool's, C&W's on an image
            # near its boundary) rounds away, and the panel would be a puzzling flat grey
            shown = "perturbation" if abs(delta).max() > 0 else "perturbation < 1/255"
            cmap = "gray" if clean.shape[2] == 1 else None
            for ax, img, title in ((trio[0], clean, _name(ex["label"], names)),
                                   (trio[1], adv, ("fooled: " if ex["fooled"] else "kept: ") + _name(ex["pred"], names)),
                                   (trio[2], amp, shown)):
                ax.imshow(img.squeeze(2) if cmap else img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(title, fontsize=7, color="C3" if title.startswith("fooled") else "black")
        axes[r][0].text(-0.15, 0.5, a["name"], transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(_figure_text(f"adversarial examples - {rep['model']} ({rep['threat_model']}); clean | "
                              "adversarial | perturbation x contrast"), fontsize=8)
    return _png(fig)


def _name(label: int, names: list[str] | None) -> str:
    """A class's name for a figure; its index where the figure's font lacks a glyph of it (CJK, emoji: drawn as
    empty boxes, with a warning per glyph)."""
    name = names[label] if names and 0 <= label < len(names) else None
    return name if name is not None and _drawable(name) else str(label)


@functools.cache
def _figure_font():
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font
    return FT2Font(font_manager.findfont(font_manager.FontProperties()))


def _drawable(text: str) -> bool:
    font = _figure_font()
    return all(font.get_char_index(ord(c)) for c in text if not c.isspace())


def _figure_text(text: str) -> str:
    """A title for a figure: '?' for each character its font cannot draw (the HTML around it shows the text whole)."""
    return "".join(c if _drawable(c) else "?" for c in text)


def training_series(history: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(loss terms, accuracies) of a training history: the accuracies, the validation slice's val_clean and
    val_robust too, share the right-hand panel; val_n (the slice's size) is not a series."""
    keys = [k for k in history[0] if k not in ("epoch", "val_n")]
    accs = [k for k in keys if "acc" in k or k.startswith("val_")]
    return [k for k in keys if k not in accs], accs


def figure_training(history: list[dict[str, Any]]) -> bytes | None:
    if not history:
        return None
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    losses, accs = training_series(history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 2.8))
    for i, k in enumerate(losses):
        ax1.plot(epochs, [h.get(k) for h in history], marker="o", ms=3, color=f"C{i}", label=k)
    for i, k in enumerate(accs):
        ax2.plot(epochs, [100 * h[k] if h.get(k) is not None else None for h in history], marker="o", ms=3,
                 color=f"C{i}", label=k)
    ax1.set_xlabel("epoch")
    ax1.set_title("training loss terms")
    ax2.set_xlabel("epoch")
    ax2.set_title("accuracy % (training batches" + ("; val_*: held-out slice)" if any(k.startswith("val")
                                                                                       for k in accs) else ")"))
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    return _png(fig)


def figures(doc: dict[str, Any]) -> dict[str, bytes]:
    """name -> PNG bytes, in display order."""
    out: dict[str, bytes] = {}
    curves = figure_curves(doc)
    if curves:
        out["robustness_curves"] = curves
    roles = _role(doc)
    shown = [("base", roles["base"]), ("hardened", roles["hardened"])] if roles else \
        [("report", r) for r in reports_of(doc)[:1]]
    for label, rep in shown:
        png = figure_examples(rep)
        if png:
            out[f"examples_{label}"] = png
    train = figure_training(doc.get("training", {}).get("history", []))
    if train:
        out["training_curves"] = train
    return out


def write_plots(folder: str | Path, figs: dict[str, bytes]) -> list[Path]:
    from ..checkpoint import atomic_write_bytes
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in figs.items():
        atomic_write_bytes(folder / f"{name}.png", png)
        paths.append(folder / f"{name}.png")
    return paths


# ------------------------------------------------------------------ HTML

CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1b1f24;max-width:1100px;margin:24px auto;
padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 14px}table{border-collapse:collapse;margin:8px 0 6px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 9px;text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{
text-align:left}tr.stage td{color:#57606a;font-size:12.5px}tr.worst td{font-weight:600;background:#f6f8fa}
tr.fail td{background:#ffebe9;color:#a40e26}.tm{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;
background:#ddf4ff;color:#0969da}.tm.transfer{background:#fff8c5;color:#7d4e00}ul{margin:4px 0 8px;padding-left:20px}
li.tripped{color:#9a6700}li.fail{color:#a40e26}li.pass{color:#1a7f37}code{font-size:12.5px;background:#f6f8fa;
padding:0 3px}img{max-width:100%;border:1px solid #eaeef2;margin:6px 0}.note{color:#57606a;font-size:12.5px}
"""


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _per_class_table(rep: dict[str, Any]) -> list[str]:
    """The classes with enough images to rank, weakest first under the worst case (by_class.py)."""
    from .by_class import MIN_RANKED, ranked
    rows = rep.get("per_class") or []
    order = ranked(rows)
    if len(order) < 2:
        return [f"<p class='note'>By class: {len(rows)} classes among the report's images, none with "
                f"{MIN_RANKED}+ of them to rank (every class in the JSON).</p>"] if rows else []
    level = rep.get("confidence", 0.95)
    head = ["class", "images", "clean %", "worst case %", f"{level:.0%} CI"]
    out = [f"<h3>By class (worst case, weakest first; {len(order)} of {len(rows)} classes with {MIN_RANKED}+ "
           "images)</h3><table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in order[:20]:
        lo, hi = interval(r["worst"], r["n"], level)
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            r["name"], r["n"], _pct(r["clean"]), _pct(r["worst"]), f"{100 * lo:.1f}-{100 * hi:.1f}")) + "</tr>")
    out.append("</table>" + (f"<p class='note'>and {len(order) - 20} more classes in the JSON</p>"
                             if len(order) > 20 else ""))
    return out


def stage_seconds_cell(a, stage: str) -> str:
    """A cascade stage's own time ('-' in reports written before it was kept); `a` an AttackResult or its JSON."""
    s = (a.stage_seconds if hasattr(a, "stage_seconds") else a.get("stage_seconds", {})).get(stage)
    return "-" if s is None else f"{s:.1f}"


def _budget(a: dict[str, Any]) -> str:
    from ..attacks.base import _fmt
    label = {"inf": "Linf", "2": "L2", "0": "L0"}[a["norm"]]
    return f"{label} {a['budget']:.0f}" if a["norm"] == "0" else f"{label} {_fmt(a['budget'])}"


def data_note(report) -> str:
    """What the images are: for files, the transform the budgets are measured after, the sample's hash, files skipped
    or carrying an EXIF orientation; for arrays, channels converted and a size changed for the model (an MNIST model
    given CIFAR-10's arrays says so); for any data, a test split fix held out and labels that are predictions. A
    Report or its JSON dict; '' for arrays of the model's own kind, of their own test split with their own labels."""
    d = report.get("data_details", {}) if isinstance(report, dict) else report.data_details
    sample = d.get("sample") or "seeded stratified sample"  # a report saved before it was recorded: files' own way
    parts = [f"{d['pixels']}; images {d.get('images_sha256', '?')} ({sample})"] if d.get("pixels") else []
    if not parts and "class order" in sample:  # arrays in class order: not their first n, as other arrays are
        parts.append(f"images {d.get('images_sha256', '?')} ({sample})")
    if not d.get("pixels"):  # arrays made to fit the model (files say it in their transform)
        parts += [d[k] for k in ("channels", "resized") if d.get(k)]
    if d.get("held_out_test"):
        parts.append(f"test split held out of the data, never trained on: {d['held_out_test']['n']} images")
    if d.get("labels"):
        parts.append(f"labels: {d['labels']}")
    from ..data.class_order import ASKED
    if ASKED in str(d.get("classes", "")):  # numbered class folders, read as the model was found to read them
        parts.append(f"classes: {d['classes']}")
    if d.get("pixels") and d.get("skipped_unreadable"):
        named = d.get("skipped_files") or []
        more = d["skipped_unreadable"] - min(len(named), 2)
        parts.append(f"{d['skipped_unreadable']} unreadable file(s) skipped"
                     + (f" ({'; '.join(named[:2])}" + (f"; {more} more{', named in the JSON' if len(named) > 2 else ''}"
                                                       if more > 0 else "") + ")" if named else ""))
    if d.get("pixels") and d.get("exif_oriented"):
        parts.append(d["exif_oriented"])
    return "; ".join(parts)


def _report_html(rep: dict[str, Any], title: str) -> str:
    e = html.escape
    fails = {g["metric"] for g in rep.get("gate", []) if not g["passed"]}
    transfer = rep.get("source_clean_accuracy") is not None
    tm_class = "tm transfer" if transfer else "tm"
    out = [f"<h2>{e(title)}</h2>",
           f"<p class='sub'>{e(rep['model'])} &middot; threat model <span class='{tm_class}'>{e(rep['threat_model'])}</span>"
           f" (crafted on {e(rep['crafted_on'])}) &middot; {rep['n']} test images of {e(str(rep['data']))} &middot; "
           f"device {e(run_where(rep))} &middot; seed {rep['seed']} &middot; outputs: {e(rep.get('output_kind', 'logits'))}"
           "</p>"]
    if data_note(rep):  # what the images are: transform, held-out split, labels that are predictions
        out.append(f"<p class='note'>images: {e(data_note(rep))}</p>")
    if rep.get("provenance"):
        out.append(f"<p class='note'>made with {e(provenance.line(rep['provenance']))}</p>")
    if rep.get("notes"):
        out.append("<ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in rep["notes"]) + "</ul>")
    values = rep.get("values", {})

    def ci(metric):  # the interval's bounds as the JSON keeps them (reports written before intervals: "-")
        lo, hi = values.get(f"{metric}.lower"), values.get(f"{metric}.upper")
        return "-" if lo is None or hi is None else f"{100 * lo:.1f}-{100 * hi:.1f}"
    head = ["attack", "budget", "robust acc %", f"{float(rep.get('confidence', 0.95)):.0%} CI", "success %",
            "median norm", "s", "img/s", "grad passes"]
    if transfer:
        head.append("acc on src-correct %")
    out.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    dash = ["-"] * (len(head) - 4)

    def row(cells, cls="", metric=None, value=None):
        attrs = f" data-metric='{e(metric)}' data-value='{value!r}'" if metric is not None else ""
        tds = [f"<td>{e(str(cells[0]))}</td>", f"<td>{e(str(cells[1]))}</td>", f"<td{attrs}>{e(str(cells[2]))}</td>"]
        tds += [f"<td>{e(str(c))}</td>" for c in cells[3:]]
        return f"<tr class='{cls}'>" + "".join(tds) + "</tr>"

    clean = ["clean", "-", _pct(rep["clean_accuracy"]), ci("clean"), *dash]
    if transfer:  # the clean accuracy on the images the source model gets right, as the attacks' own
        clean[-1] = _pct(rep.get("clean_on_source_correct"))
    out.append(row(clean, "fail" if "clean" in fails else "", "clean", rep["clean_accuracy"]))
    for a in rep["attacks"]:
        for stage, v in a.get("stages", {}).items():
            m = f"{a['name']}.{stage}"
            cells = [f"  after {stage}", _budget(a), _pct(v), ci(m), *dash]
            cells[6] = stage_seconds_cell(a, stage)  # the "s" column: the stage's own time
            out.append(row(cells, "stage fail" if m in fails else "stage", m, v))
        bad = a["name"] in fails or any(f.startswith(a["name"] + ".") for f in fails)
        med = "-" if a["median_norm"] is None else f"{a['median_norm']:.4g}"
        cells = [a["name"], _budget(a), _pct(a["robust_accuracy"]), ci(a["name"]), _pct(a["success_rate"]), med,
                 f"{a['seconds']:.1f}", f"{a['images_per_s']:.0f}", a["backward_passes"]]
        if transfer:
            cells.append(_pct(a.get("accuracy_on_source_correct")))
        out.append(row(cells, "fail" if bad else "", a["name"], a["robust_accuracy"]))
    by_norm = rep.get("worst_by_norm") or {}
    for norm, v in by_norm.items() if len(by_norm) > 1 else ():  # one norm: the same as the worst case
        out.append(row([f"worst {norm}", f"each {norm} attack's", _pct(v), ci(f"worst.{norm}"), *dash],
                       "fail" if f"worst.{norm}" in fails else "", f"worst.{norm}", v))
    if rep.get("worst_case") is not None:
        out.append(row(["worst case", "each attack's", _pct(rep["worst_case"]), ci("worst"), *dash],
                       "worst fail" if "worst" in fails else "worst", "worst", rep["worst_case"]))
    out.append("</table>")
    out.append("<p class='note'>worst case: robust only if the image survives every attack above at its budget. "
               "Presets: " + "; ".join(f"<code>{e(a['preset'])}</code>" for a in rep["attacks"]) + "</p>")
    if rep.get("metrics"):
        out.append("<p class='note'>" + ", ".join(f"{e(k)} {'undefined' if v is None else format(v, '.4g')}"
                                                  for k, v in rep["metrics"].items())
                   + " (white-box, seed 004)</p>")
    out += _per_class_table(rep)
    if rep.get("gate"):
        out.append("<ul>" + "".join(
            f"<li class='{'pass' if g['passed'] else 'fail'}'>{'PASS' if g['passed'] else 'FAIL'} "
            f"<code>{e(g['text'])}</code> (actual {e(str(g['actual']))}{e(settle_note(g))})</li>" for g in rep["gate"])
            + "</ul>")
    if rep.get("masking"):
        warned = [f for f in rep["masking"] if f["tripped"] and f.get("kind", "masking") != "note"]
        out.append(f"<p><b>{len(rep['masking'])} gradient-masking and evaluation checks: "
                   + (f"{len(warned)} tripped</b> (the white-box numbers may overstate robustness; see below)"
                      if warned else "none tripped</b>") + "</p>")
        items = []
        for f in rep["masking"]:
            kind = f.get("kind", "masking")
            what = "gradient-masking check" if kind == "masking" else "check"
            state = state_word(f)
            items.append(f"<li class='{'tripped' if f['tripped'] and kind != 'note' else ''}'>{what} "
                         f"<b>{e(f['check'])}</b>: {state} &mdash; {e(f['detail'])}</li>")
        out.append("<ul>" + "".join(items) + "</ul>")
    if rep.get("check_seconds"):
        parts = sorted(rep["check_seconds"].items(), key=lambda kv: -kv[1])
        out.append(f"<p>The checks took {sum(rep['check_seconds'].values()):.1f} s: "
                   + e(", ".join(f"{k} {v:.1f} s" for k, v in parts)) + ".</p>")
    return "\n".join(out)


def to_html(doc: dict[str, Any], figs: dict[str, bytes]) -> str:
    e = html.escape
    reps = reports_of(doc)
    roles = _role(doc)
    titles = ["base (white-box)", "hardened (white-box)", "hardened (transfer from the base)"] if roles else \
        [f"report {i + 1}" if len(reps) > 1 else "report" for i in range(len(reps))]
    name = reps[0]["model"] if not roles else f"{roles['base']['model']} -> {roles['hardened']['model']}"
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>harden report - {e(name)}</title>", f"<style>{CSS}</style></head><body>",
             f"<h1>harden report &middot; {e(name)}</h1>",
             "<p class='sub'>Every robustness number names its threat model: <b>white-box</b> (crafted on the "
             "evaluated model: the number to trust) or <b>transfer from &lt;model&gt;</b> (crafted on another "
             "model; never robustness on its own).</p>"]
    if "training" in doc:
        t = doc["training"]
        on = t.get("data") or f"{t.get('data_fraction')} of the training data"
        parts.append(f"<p class='sub'>recipe <code>{e(str(t.get('recipe')))}</code> on {e(str(on))}, "
                     f"{e(str(t.get('seconds')))} s of training; settings "
                     f"<code>{e(metadata_text('params', t.get('params')))}</code></p>")
    captions = {"robustness_curves": "Robust accuracy against the budget (dotted line: the report's budget)",
                "examples_base": "Adversarial examples on the base", "examples_hardened":
                "Adversarial examples on the hardened model", "examples_report": "Adversarial examples",
                "training_curves": "Training curves"}
    if roles:
        parts.append(_before_after(roles))
        parts.append(_change(doc, roles))
    if "robustness_curves" in figs:
        parts.append(_img("robustness_curves", captions["robustness_curves"], figs["robustness_curves"]))
    for rep, title in zip(reps, titles, strict=False):
        parts.append(_report_html(rep, title))
    for key, png in figs.items():
        if key != "robustness_curves":
            parts.append(_img(key, captions.get(key, key), png))
    parts.append("<p class='note'>Written by harden; self-contained (figures embedded, nothing fetched).</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _before_after(roles: dict[str, dict[str, Any]]) -> str:
    """The terminal's before/after table: robust accuracy % of base and hardened, each threat model named."""
    base, wb, tr = roles["base"], roles["hardened"], roles["transfer"]
    rows = [("clean", "-", base["clean_accuracy"], wb["clean_accuracy"], tr["clean_accuracy"])]
    for a, b, c in zip(base["attacks"], wb["attacks"], tr["attacks"], strict=False):
        rows.append((a["name"], _budget(a), a["robust_accuracy"], b["robust_accuracy"], c["robust_accuracy"]))
    rows.append(("worst case", "each attack's", base.get("worst_case"), wb.get("worst_case"), tr.get("worst_case")))
    head = ("attack", "budget", "base (white-box)", "hardened (white-box)", f"hardened ({tr['threat_model']})")
    body = "".join(f"<tr class='{'worst' if r[0] == 'worst case' else ''}'><td>{html.escape(r[0])}</td>"
                   f"<td>{html.escape(r[1])}</td>" + "".join(f"<td>{_pct(v)}</td>" for v in r[2:]) + "</tr>"
                   for r in rows)
    return ("<h2>Before / after: robust accuracy %</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>"
                                                                              for h in head)
            + "</tr>" + body + "</table>")


def _change(doc: dict[str, Any], roles: dict[str, dict[str, Any]]) -> str:
    """The paired change of the white-box numbers, as the terminal says it (a file written before the document kept
    it: from the two reports' per-image verdicts)."""
    from .compare import change_lines, hardening_change, masking_tripped
    conf = float(roles["hardened"].get("confidence", 0.95))
    change = doc.get("change") or hardening_change(roles["base"], roles["hardened"], conf)
    lines, worse = change_lines(change, int(roles["hardened"].get("n", 0)), conf,
                                masking_tripped(roles["hardened"].get("masking") or []))
    return "<ul>" + "".join(f"<li class='{'fail' if worse and i else ''}'>{html.escape(line)}</li>"
                            for i, line in enumerate(lines)) + "</ul>" if lines else ""


def _img(key: str, caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return (f"<h2>{html.escape(caption)}</h2>\n<img alt='{html.escape(key)}' data-figure='{html.escape(key)}' "
            f"src='data:image/png;base64,{data}'>")


def render(doc: dict[str, Any], html_path: str | Path | None = None, plots_dir: str | Path | None = None) -> str:
    """Draw the figures once; write the HTML and/or the PNGs (atomically). Returns the HTML."""
    from ..checkpoint import atomic_write_bytes
    figs = figures(doc)
    text = to_html(doc, figs)
    if html_path:
        atomic_write_bytes(Path(html_path), text.encode())
    if plots_dir:
        write_plots(plots_dir, figs)
    return text
