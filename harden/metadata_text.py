"""A checkpoint's metadata as `harden inspect` prints it: short lines a person reads, not Python reprs. The fix
report kept in a hardened file (fix.py: each report's threat model, images and flat gate values, with every
interval bound and attack stage) becomes one line a report with its headline accuracies; other mappings become
`key value` pairs."""
from __future__ import annotations

from typing import Any

REPORT_LABELS = {"base_white_box": "base", "fixed_white_box": "hardened", "fixed_transfer": "hardened"}


def metadata_text(key: str, value: Any) -> str:
    if key == "report" and isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
        return "\n".join(_report_line(k, v) for k, v in value.items())
    if isinstance(value, dict):  # an empty value (a plain train's subset: none) says nothing: left out
        return ", ".join(f"{k} {_scalar(v)}" for k, v in value.items() if v not in ("", None, [], {}))
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list, tuple)) for v in value):
        return ", ".join(_scalar(v) for v in value)
    return _scalar(value)


def _report_line(kind: str, summary: dict[str, Any]) -> str:
    """'hardened, white-box, 60 images of photos: clean 23.3% (14.4-35.4), pgd 0.0% (0.0-6.0), worst 0.0% (0.0-6.0)'
    : the accuracies (the values with an interval) of the report as a whole, not of its attacks' stages."""
    values = summary.get("values") or {}
    accuracies = [k for k in values if "." not in k and f"{k}.lower" in values]

    def pct(v: float) -> str:
        return f"{100 * float(v):.1f}"
    shown = ", ".join(f"{k} {pct(values[k])}% ({pct(values[k + '.lower'])}-{pct(values[k + '.upper'])})"
                      for k in accuracies)
    head = ", ".join(str(p) for p in (REPORT_LABELS.get(kind, kind), summary.get("threat_model"),
                                      f"{summary.get('n')} images of {summary.get('data')}") if p)
    return f"{head}: {shown or 'no accuracies'}"


def _scalar(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list, tuple)):
        return metadata_text("", v) if isinstance(v, dict) else "[" + ", ".join(_scalar(x) for x in v) + "]"
    return str(v)
