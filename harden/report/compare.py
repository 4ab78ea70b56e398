"""Per-image verdicts and comparisons between reports.

A report's JSON keeps, for every accuracy over its n images (clean, each attack, worst, worst per norm), one bit
per image (robust / correct), packed and base64-encoded, with the evaluated images' index hash and the data's
identity. Two reports of the same images are compared image by image: the difference of each accuracy, its 95%
interval (Newcombe's square-and-add interval of a paired difference, stats.newcombe_paired) and the exact McNemar
p-value (a two-sided binomial test on the discordant images). Reports of other images, budgets, presets or data are
refused with what differs, unless the caller allows a mismatch; then the comparison is unpaired (two independent
proportions: Fisher's exact test and Newcombe's hybrid score interval of the difference) and says so."""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ..errors import HardenError
from . import provenance
from .stats import interval, newcombe_paired, newcombe_unpaired


def pack(flags) -> str:
    a = np.asarray(flags, dtype=bool)
    return base64.b64encode(np.packbits(a).tobytes()).decode("ascii")


def unpack(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[:n].astype(bool)


def verdicts_of(report) -> dict[str, Any]:
    """What a report's JSON keeps of its per-image results (Report -> plain data)."""
    if report.correct_images is None:
        return {}
    correct = np.asarray(report.correct_images, dtype=bool)
    flags = {"clean": correct}
    per_attack = {k: np.asarray(v, dtype=bool) for k, v in report.robust_images.items()}
    flags.update(per_attack)
    if per_attack:
        flags["worst"] = np.all(np.stack(list(per_attack.values())), 0)
        norms = {a.name: a.norm for a in report.attacks}
        from ..attacks import NORM_LABELS
        for norm, label in NORM_LABELS.items():
            keys = [k for k in per_attack if norms.get(k) == norm]
            if keys:
                flags[f"worst.{label}"] = np.all(np.stack([per_attack[k] for k in keys]), 0)
    return {"n": int(len(correct)), "images_sha256": report.data_details.get("images_sha256"),
            "draws": PER_IMAGE_DRAWS, "bits": {k: pack(v) for k, v in flags.items()}}


PER_IMAGE_DRAWS = "per image, L2 Square too"  # the report's random draws (attacks/row_streams.py); older values:
BATCH_L2_SQUARE = "per image"  # a report of 2026-12-05 or before, whose L2 Square (AutoAttack's L2) drew per batch


def draws_note(base: dict[str, Any]) -> str | None:
    """What to say of a baseline whose random draws were made per batch (written before they were made per image)."""
    v = base.get("verdicts") or {}
    if not v or v.get("draws") == PER_IMAGE_DRAWS:
        return None
    if v.get("draws") == BATCH_L2_SQUARE:
        if not any(a.get("name") == "autoattack" and a.get("norm") == "2" for a in base.get("attacks", [])):
            return None
        return ("the baseline's L2 AutoAttack drew its Square stage's signs per batch (a report written before harden "
                "drew them per image): an image that reached that stage may have changed verdict by chance alone; "
                "measure the baseline again for a comparison of the attacks alone")
    return ("the baseline's random starts and targets were drawn per batch (a report written before harden drew them "
            "per image): images attacked from a random start (PGD with restarts, AutoPGD, AutoAttack, JSMA) may have "
            "changed verdict by chance alone; measure the baseline again for a comparison of the attacks alone")


def identity(doc: dict[str, Any]) -> dict[str, Any]:
    """What must agree for two reports to be compared image by image."""
    v = doc.get("verdicts") or {}
    details = doc.get("data_details") or {}
    return {"images": v.get("images_sha256") or details.get("images_sha256"), "n": doc.get("n"),
            # written since 2026-12-05; a report from before has none, and is paired by the indices alone
            "image contents": details.get("images_content_sha256"),
            # written since 2026-12-06: the images' bytes (an array's pixels) and labels, wherever they were read
            "image bytes": details.get("images_bytes_sha256"),
            "data": details.get("source", doc.get("data")), "threat model": doc.get("threat_model"),
            # each model's own predictions (--labels predicted) are not the data's labels
            "labels": "the model's predictions" if details.get("labels") else "the data's",
            "attacks": {a["name"]: (a["preset"], round(float(a["budget"]), 9)) for a in doc.get("attacks", [])}}


def differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences that make a paired comparison meaningless."""
    a, b = identity(base), identity(new)
    out = []
    same_bytes = a["image bytes"] is not None and a["image bytes"] == b["image bytes"]
    if a["image bytes"] and b["image bytes"] and not same_bytes:
        out.append(f"image bytes: {a['image bytes']!r} vs {b['image bytes']!r} (other images, or other labels)")
    for key in ("data", "n", "images", "threat model", "labels"):
        if same_bytes and key in ("data", "images"):  # the same images in the same order, read through another path
            continue
        if a[key] != b[key]:
            out.append(f"{key}: {a[key]!r} vs {b[key]!r}" + (older_sample(base, new) if key == "images" else ""))
    if a["image contents"] and b["image contents"] and a["image contents"] != b["image contents"] and \
            a["images"] == b["images"] and not same_bytes:
        out.append(f"image contents: {a['image contents']!r} vs {b['image contents']!r} (the same positions in the "
                   "data hold other images: files added or removed, or other arrays)")
    for name in sorted(set(a["attacks"]) & set(b["attacks"])):
        (pa, ba), (pb, bb) = a["attacks"][name], b["attacks"][name]
        if ba != bb:
            out.append(f"{name} budget: {ba:g} vs {bb:g}")
        elif pa != pb:
            out.append(f"{name} preset: {pa} vs {pb}")
    return out


def moved_data_note(base: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Said where two reports paired by their images' bytes read them through other paths."""
    a, b = identity(base), identity(new)
    if a["image bytes"] is None or a["image bytes"] != b["image bytes"] or a["data"] == b["data"]:
        return None
    return (f"the baseline's images were read from {a['data']!r} and this run's from {b['data']!r}: the same images "
            "byte for byte, with the same labels, so they are compared image by image")


def older_sample(base: dict[str, Any], new: dict[str, Any]) -> str:
    """Why the same data, count and seed gave other images: the baseline's harden drew its sample the earlier way
    (data/base.py SAMPLE_DRAW)."""
    drawn = [(d.get("data_details") or {}).get("sample_draw") for d in (base, new)]
    same = all(base.get(k) == new.get(k) for k in ("n", "seed")) and identity(base)["data"] == identity(new)["data"]
    if not same or drawn[0] == drawn[1]:
        return ""
    return (" (the baseline was written by a harden that drew its sample the earlier way, giving the classes' "
            "fractional shares to the first classes and taking the first n of in-memory data in class order; this "
            "one draws those shares at random: measure the baseline again with this harden)")


def unlike_worst_cases(base: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    """The worst-case accuracies (worst, worst.<norm>) two reports hold that are not the same measure, each with why:
    a worst case is over the attacks its report ran, so one over fewer attacks (`--attack pgd` against the six) reads
    higher without the model being any more robust."""
    from ..attacks import NORM_LABELS

    def names(doc: dict[str, Any], norm: str | None = None) -> list[str]:
        return sorted(a["name"] for a in doc.get("attacks", []) if norm is None or str(a.get("norm")) == norm)
    out = {}
    for metric, norm in [("worst", None), *((f"worst.{label}", n) for n, label in NORM_LABELS.items())]:
        a, b = names(base, norm), names(new, norm)
        if a != b:
            out[metric] = (f"{metric} is not compared with the baseline: it is over other attacks there "
                           f"({', '.join(a) or 'none'}) than here ({', '.join(b) or 'none'})")
    return out


def paired(base: np.ndarray, new: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """new - base on the same images: difference, Newcombe's interval of the paired difference, exact McNemar p."""
    from scipy.stats import binomtest
    n = len(base)
    lost = int(np.sum(base & ~new))  # robust before, not now
    gained = int(np.sum(~base & new))
    both = int(np.sum(base & new))
    d = (gained - lost) / n
    lower, upper = newcombe_paired(both, gained, lost, n - both - gained - lost, confidence)
    p = 1.0 if gained + lost == 0 else float(binomtest(min(gained, lost), gained + lost, 0.5).pvalue)
    return {"difference": d, "lower": lower, "upper": upper, "p": p, "lost": lost, "gained": gained, "both": both,
            "test": "paired (McNemar exact)"}


def unpaired(base_acc: float, n_base: int, new_acc: float, n_new: int, confidence: float = 0.95) -> dict[str, float]:
    from scipy.stats import fisher_exact
    kb, kn = round(base_acc * n_base), round(new_acc * n_new)
    d = new_acc - base_acc
    lower, upper = newcombe_unpaired(kn, n_new, kb, n_base, confidence)
    p = float(fisher_exact([[kn, n_new - kn], [kb, n_base - kb]]).pvalue)
    return {"difference": d, "lower": lower, "upper": upper, "p": p, "test": "unpaired (Fisher exact)"}


def compare(base: dict[str, Any], new: dict[str, Any], allow_mismatch: bool = False,
            confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Per accuracy present in both: the difference new - base with its interval and p-value."""
    diff = differences(base, new)
    if diff and not allow_mismatch:
        raise HardenError("The baseline was measured differently, so the two cannot be compared image by image: "
                          + "; ".join(diff) + ". Measure both on the same data, images (--num-images, --seed), "
                          "budgets and presets, or pass --allow-mismatch for an unpaired comparison.")
    vb, vn = base.get("verdicts") or {}, new.get("verdicts") or {}
    unlike = unlike_worst_cases(base, new)
    out = {}
    for metric in [m for m in (vn.get("bits") or {}) if m in (vb.get("bits") or {}) and m not in unlike] \
            if not diff else []:
        out[metric] = paired(unpack(vb["bits"][metric], vb["n"]), unpack(vn["bits"][metric], vn["n"]), confidence)
    if diff or not out:  # unpaired: from the accuracies alone
        va, vnn = base.get("values", {}), new.get("values", {})
        for metric in [m for m in vnn if m in va and _is_accuracy(m, new) and m not in unlike]:
            out[metric] = unpaired(va[metric], int(base["n"]), vnn[metric], int(new["n"]), confidence)
    return out


def _is_accuracy(metric: str, doc: dict[str, Any]) -> bool:
    names = {"clean", "worst"} | {a["name"] for a in doc.get("attacks", [])}
    names |= {f"worst.{k}" for k in (doc.get("worst_by_norm") or {})}
    names |= {f"{a['name']}.{s}" for a in doc.get("attacks", []) for s in a.get("stages", {})}
    return metric in names


def single_reports(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["reports"] if "reports" in doc else [doc]


def images_counted(doc: dict[str, Any]) -> int | None:
    """How many images a baseline file's reports were measured on (a fix's file: all of them alike), else None."""
    counts = {r.get("n") for r in single_reports(doc)}
    return int(counts.pop()) if len(counts) == 1 and isinstance(next(iter(counts)), int) else None


def read_report(path) -> dict[str, Any]:
    """A report JSON written by `harden eval --json` or `harden fix --json`."""
    import json
    from pathlib import Path
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise HardenError(f"{str(path)!r} does not exist.") from None
    except IsADirectoryError:
        raise HardenError(f"{str(path)!r} is a folder; give a report's JSON file.") from None
    except OSError as e:
        raise HardenError(f"{str(path)!r} cannot be read ({e.strerror or e}).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HardenError(f"{str(path)!r} is not a JSON report ({e}).") from None
    if not isinstance(doc, dict) or not ("attacks" in doc or "reports" in doc):
        raise HardenError(f"{str(path)!r} is JSON but not a harden report (no 'attacks' or 'reports').")
    reports = doc.get("reports", [doc])
    for r in reports if isinstance(reports, list) else [None]:
        lacking = [k for k in REPORT_KEYS if not isinstance(r, dict) or k not in r]
        if lacking or not isinstance(r.get("attacks"), list):
            raise HardenError(f"{str(path)!r} is JSON but not a report harden wrote (it lacks "
                              f"{', '.join(lacking) or 'a list of attacks'}).")
    return doc


REPORT_KEYS = ("model", "threat_model", "n", "data", "clean_accuracy", "attacks")  # what every reader of a report needs


def baseline_report(doc: dict[str, Any], threat_model: str, path) -> dict[str, Any]:
    """The report of a baseline file to compare a run with: the file's only report, or (a fix's before/after file)
    the last one of the run's threat model, which is the hardened model's."""
    reports = [r for r in single_reports(doc) if r.get("threat_model") == threat_model] or single_reports(doc)
    if not reports[-1].get("verdicts"):
        raise HardenError(f"{str(path)!r} keeps no per-image verdicts (written before harden kept them); measure the "
                          "baseline again with this harden to compare image by image.")
    return reports[-1]


def table_rows(docs: list[dict[str, Any]], allow_mismatch: bool = False, confidence: float = 0.95
               ) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, notes) of a side-by-side table: each accuracy of every report with its interval, then each
    report's difference from the first with its interval and p-value."""
    ref = docs[0]
    comparisons = [compare(ref, d, allow_mismatch, confidence) for d in docs[1:]]
    metrics = [m for m in ref.get("values", {}) if _is_accuracy(m, ref) and all(m in d.get("values", {}) for d in docs)]
    names = [f"{d.get('model', '?')} ({d.get('threat_model', '?')})" for d in docs]
    header = ["metric"] + names + [f"{names[i + 1]} - {names[0]}" for i in range(len(comparisons))]
    rows = []
    for m in metrics:
        row = [m]
        for d in docs:
            v = d["values"][m]
            lo, hi = interval(v, int(d["n"]), confidence)
            row.append(f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]")
        for c in comparisons:
            r = c.get(m)
            row.append("-" if r is None else f"{100 * r['difference']:+.1f} [{100 * r['lower']:+.1f}, "
                                              f"{100 * r['upper']:+.1f}] p={r['p']:.3g}")
        rows.append(row)
    tests = sorted({r["test"] for c in comparisons for r in c.values()})
    notes = [f"values: accuracy % [{confidence:.0%} Wilson interval]; differences in points [{confidence:.0%} "
             f"interval], p: {', '.join(tests) or '-'}"]
    for name, d in zip(names[1:], docs[1:], strict=True):  # another harden, torch or device, or the same weights
        notes += [f"{name}: {n}" for n in provenance.differences(ref, d, names[0])]
    return header, rows, notes


def hardening_change(base: dict[str, Any], hardened: dict[str, Any], confidence: float = 0.95
                     ) -> dict[str, dict[str, float]]:
    """A fix's hardened model against its base, both attacked white-box on the same images (the before/after
    report's first two): the paired difference of clean, each attack's and the worst-case accuracy. Empty where
    either keeps no per-image verdicts or they were measured differently."""
    if differences(base, hardened) or not (base.get("verdicts") and hardened.get("verdicts")):
        return {}
    keys = ["clean", *(a["name"] for a in hardened.get("attacks", [])), "worst"]
    return {k: v for k, v in compare(base, hardened, confidence=confidence).items() if k in keys}


def masking_tripped(checks: list[dict[str, Any]]) -> int:
    """How many gradient-masking checks (not evaluation checks or notes) tripped."""
    return sum(1 for f in checks if f["tripped"] and f.get("kind", "masking") == "masking")


def change_lines(change: dict[str, dict[str, float]], n: int, confidence: float = 0.95, masking: int = 0
                 ) -> tuple[list[str], bool]:
    """(lines, worse): the before/after change in words, and whether the hardened model is less robust than its base
    at the worst case beyond noise: the interval of the paired difference wholly below zero and McNemar's exact test
    below 1 - confidence too (the two need not agree where few images changed: 5 of 40 lost and none gained lies
    wholly below zero at p=0.0625). `masking`: how many gradient-masking checks the hardened model tripped
    (a gain is then not to be trusted as it stands)."""
    if "worst" not in change:
        return [], False

    def said(key: str) -> str:
        c = change[key]
        return (f"{100 * c['difference']:+.1f} points ({confidence:.0%} interval {100 * c['lower']:+.1f} to "
                f"{100 * c['upper']:+.1f}, McNemar p={c['p']:.2g}; {c['gained']} image{'' if c['gained'] == 1 else 's'} "
                f"gained, {c['lost']} lost)")
    w = change["worst"]
    lines = [f"white-box, hardened - base on the same {n} images: worst case {said('worst')}"
             + (f"; clean {said('clean')}" if "clean" in change else "")]
    exact = w["p"] < 1 - confidence
    worse = w["upper"] < 0 and exact
    if worse:
        lines.append("the hardened model is LESS robust than its base under white-box attack, beyond noise: keep the "
                     "base, or harden again with more data (--data-frac), more epochs or a lower --lr")
    elif w["lower"] <= 0 or not exact:
        lines.append(f"the worst-case change is within noise on {n} images: no gain shown (more --num-images "
                     "narrows the interval" + _images_to_show(w, n, confidence) + ")")
        c = change.get("clean")
        if c and c["upper"] < 0 and c["p"] < 1 - confidence:  # paid for in clean accuracy, for nothing shown
            lines.append(f"and clean accuracy fell beyond noise ({100 * c['difference']:+.1f} points): the hardened "
                         "model costs accuracy for no robustness shown; keep the base, or harden again with more data "
                         "(--data-frac), more epochs or a smaller budget")
    elif masking:
        lines.append(f"the hardened model tripped {masking} gradient-masking check(s): this gain may be the attacks "
                     "failing rather than robustness (see the checks below)")
    return lines, worse


def _images_to_show(c: dict[str, Any], n: int, confidence: float) -> str:
    """For a gain within noise: about how many images would show it beyond noise if it held (the interval's lower
    bound above zero, the paired counts in proportion); '' where there is no gain or no counts to scale."""
    from .stats import images_for_change_bound
    if c.get("difference", 0) <= 0 or "both" not in c:
        return ""
    m = images_for_change_bound(c["both"], c["gained"], c["lost"], n - c["both"] - c["gained"] - c["lost"], 0.0,
                                "lower", confidence)
    return f": at this difference about {m:,} images would show it" if m else ""
