"""Release gate: `--require METRIC>=VALUE` or a TOML file. Exit 0 all hold, 1 any fails, 2 bad input.
`METRIC.lower>=x` / `METRIC.upper<=x` gate on an accuracy's confidence interval (stats.py); with --baseline,
`METRIC.change[.lower|.upper]` on its paired difference from the baseline's report and that difference's interval
(compare.py)."""
from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Any

from ..attacks import NORM_LABELS, parse_number
from ..errors import HardenError

TRIPPED_CHECKS = "checks.tripped"  # the count of gradient-masking and evaluation checks that tripped
CHANGE = ".change"  # an accuracy's difference from the baseline's (new - baseline), and its interval's bounds
CHANGE_KEYS = {"difference": "", "lower": ".lower", "upper": ".upper"}

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
# A value this close to its bar is the bar: reports written before 2026-12-06 kept accuracies as float32 means (70.0%
# as 0.699999988, which failed `pgd>=0.7`), and a bar may be a sum (baseline-0.02); an accuracy of n images moves in
# steps of 1/n, far above this
TIE = 1e-7


def holds(op: str, actual: float, bar: float) -> bool:
    """`actual op bar`, a value within TIE of the bar counted as equal to it (>= and <= hold, > and < do not)."""
    if abs(actual - bar) <= TIE:
        return op in (">=", "<=")
    return OPS[op](actual, bar)


_REQ = re.compile(r"^\s*([A-Za-z0-9_.#-]+)\s*(>=|<=|>|<)\s*(baseline(?:\s*[+-]\s*[0-9./eE]+%?)?|[0-9./eE+-]+%?)\s*$")
_FORM = ("METRIC>=VALUE (e.g. clean>=0.9, pgd>=0.5, pgd>=50%, pgd.success<=0.3, pgd>=baseline-0.02; the operators are >=, "
         "<=, > and <)")


def parse_requirement(text: str) -> dict[str, Any]:
    """METRIC OP VALUE, where VALUE is a number or `baseline[+-x]` (the same metric in --baseline's report)."""
    m = _REQ.match(text)
    if not m:
        hint = ""
        if re.fullmatch(r"\s*[A-Za-z0-9_.#-]+\s*", text):  # the rest went to a file: `--require pgd>=0.5` unquoted
            hint = (" Quote each requirement ('pgd>=0.5'): unquoted, the shell reads > and < as redirections (and may "
                    "have written a file named like '=0.5' here).")
        elif "," in text or ";" in text:
            hint = " Give one requirement per --require (repeat the flag), or list them in a --gate file."
        raise HardenError(f"Requirement {text!r} is not of the form {_FORM}.{hint}")
    value = m.group(3).replace(" ", "")
    if value.startswith("baseline"):
        offset = value[len("baseline"):]
        return {"metric": m.group(1), "op": m.group(2), "value": None, "text": text.strip(),
                "baseline_offset": _number(offset) if offset else 0.0}
    return {"metric": m.group(1), "op": m.group(2), "value": _number(value), "text": text.strip()}


def _number(text: str) -> float:
    """A bar: a number, a fraction (8/255) or a percentage (50% = 0.5, as the tables print accuracies)."""
    return parse_number(text[:-1]) / 100 if text.endswith("%") else parse_number(text)


def needs_baseline(requirements: list[dict[str, Any]]) -> bool:
    return any(r.get("baseline_offset") is not None or CHANGE in r["metric"] for r in requirements)


def no_baseline(lacking: str) -> HardenError:
    """The refusal of a requirement on the baseline where `lacking` says what is missing."""
    return HardenError(f"A requirement compares with the baseline (METRIC>=baseline..., METRIC.change...), but "
                       f"{lacking}.")


def change_values(comparison: dict[str, dict[str, float]]) -> dict[str, float]:
    """The gateable values of a comparison with the baseline (compare.compare): per accuracy `<metric>.change`
    (new - baseline) and `.change.lower` / `.change.upper`, its interval's bounds."""
    return {f"{metric}{CHANGE}{suffix}": float(c[key]) for metric, c in comparison.items()
            for key, suffix in CHANGE_KEYS.items()}


def load_gate_file(path: str | Path) -> list[dict[str, Any]]:
    """TOML: `require = ["clean>=0.9", ...]` and/or a [require] table of `metric = ">=0.9"`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise HardenError(f"Gate file {str(path)!r} does not exist.")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HardenError(f"Gate file {str(path)!r} is not valid TOML ({e}).") from None
    other = sorted(k for k in doc if k != "require")
    if other:  # a misspelt `require`, or a setting the file cannot hold (--confidence, --baseline are flags)
        raise HardenError(f"Gate file {str(path)!r}: unknown key{'s' if len(other) > 1 else ''} "
                          f"{', '.join(map(repr, other))}; it holds `require`, a list (require = [\"clean>=0.9\"]) or a "
                          "table ([require] with clean = \">=0.9\"). --confidence and --baseline are given as flags.")
    req = doc.get("require", [])
    out = []
    if isinstance(req, list):
        out += [parse_requirement(str(r)) for r in req]
    elif isinstance(req, dict):
        for k, v in _dotted(req):
            v = str(v).strip()
            out.append(parse_requirement(f"{k}{v}" if v[:1] in "<>" else f"{k}>={v}"))
    else:
        raise HardenError(f"Gate file {str(path)!r}: 'require' must be a list or a table.")
    if not out:
        raise HardenError(f"Gate file {str(path)!r} holds no requirement.")
    return out


def _dotted(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A [require] table's metrics and bars: TOML reads `pgd.lower = ">=0.5"` as a table pgd holding lower, so the
    nested tables' keys are joined back into the metric's name."""
    out = []
    for k, v in table.items():
        out += _dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


SEED004_METRICS = ("empirical_robustness", "loss_sensitivity")
ON_SOURCE_CORRECT = ".on_source_correct"


def check_known(requirements: list[dict[str, Any]], attacks: list, saved: str | None = None, *,
                transfer: bool = True, metrics: bool = True) -> None:
    """Fail early (exit 2) on a metric no report would contain, before minutes of attacks. `attacks`: the
    run's Attack objects (their report keys and stages are derived as evaluate does); `saved`: the name of the saved
    report the requirements are checked against (None: a run about to start), which the refusals name and their
    remedies depend on. `transfer`: the run crafts on another model (only then is accuracy on the images the source
    gets right measured); `metrics`: seed 004's metrics are computed."""
    holder = f"{saved} holds" if saved else "this run reports"
    order = ["clean"]  # the accuracies in the report's order, for the refusal below
    known = {TRIPPED_CHECKS} | ({"clean" + ON_SOURCE_CORRECT} if transfer else set()) | (
        set(SEED004_METRICS) if metrics else set())
    seen: set[str] = set()
    for i, atk in enumerate(attacks):
        a = atk.name if atk.name not in seen else f"{atk.name}#{i}"
        seen.add(atk.name)
        order += [a] + [f"{a}.{stage}" for stage in atk.stage_names()]
        known |= {f"{a}.success", f"{a}.median_norm"} | ({a + ON_SOURCE_CORRECT} if transfer else set())
    order += ["worst"] + sorted({f"worst.{NORM_LABELS[a.norm]}" for a in attacks if a.norm in NORM_LABELS})
    accuracies = set(order)
    for r in requirements:  # a name that exists, but not in this kind of run: say why, not "unknown"
        if r["metric"].endswith(ON_SOURCE_CORRECT) and not transfer:
            raise HardenError(
                f"Requirement {r['text']!r}: {r['metric']} is measured only under transfer (the accuracy on the images "
                "the model the attacks are crafted on classifies right), and "
                + (f"{saved} is a white-box report; gate the accuracy itself." if saved else
                   "this run is white-box: give --craft-on SOURCE, or gate the accuracy itself."))
        if r["metric"] in SEED004_METRICS and not metrics:
            raise HardenError(f"Requirement {r['text']!r}: {r['metric']} is one of seed 004's metrics, and "
                              + (f"{saved} holds none (its run left them out)." if saved else
                                 "--no-metrics leaves them out of this run."))
    known |= accuracies | {f"{m}.{bound}" for m in accuracies for bound in ("lower", "upper")}
    known |= {f"{m}{CHANGE}{suffix}" for m in accuracies for suffix in CHANGE_KEYS.values()}
    # proportions of the report's images: bars and baseline offsets outside their range could never fail or pass
    fractions = accuracies | {f"{m}.{bound}" for m in accuracies for bound in ("lower", "upper")}
    fractions |= {k for k in known if k.endswith((".success", ".on_source_correct"))}
    changes = {f"{m}{CHANGE}{suffix}" for m in accuracies for suffix in CHANGE_KEYS.values()}
    for r in requirements:
        if r["metric"] not in known:
            close = [k for k in known if k.lower() == r["metric"].lower()]
            if not close:
                _refuse_an_attack_not_made(r, attacks, saved)
            raise HardenError(f"Requirement {r['text']!r} names unknown metric {r['metric']!r}"
                              + (f" (metric names are lower case: {close[0]!r})" if close else "")
                              + f"; {holder} {_metric_names(order, known)}.")
        lo = 0.0 if r["metric"] in fractions else -1.0 if r["metric"] in changes else None
        bar, offset = r.get("value"), r.get("baseline_offset")
        if lo is not None and ((bar is not None and not lo <= bar <= 1) or (offset is not None and abs(offset) > 1)):
            v = bar if bar is not None else offset
            what = "a change of the fraction" if lo < 0 else "a fraction of the report's images"
            raise HardenError(
                f"Requirement {r['text']!r}: {r['metric']} is {what}, in [{lo:g}, 1], so this bar could never "
                + ("fail" if (r["op"] in ("<=", "<")) == (v > 0) else "pass") + " (the tables print accuracies in "
                "percent; the gate reads fractions)."
                + ("" if not 1 < abs(v) <= 100 else f" Write {v / 100:g} or {v:g}%." if bar is not None else
                   f" Write baseline{v / 100:+g} or baseline{v:+g}%."))


def _refuse_an_attack_not_made(r: dict[str, Any], attacks: list, saved: str | None) -> None:
    """A requirement on a registered attack the run does not make: said as that, with the way to make it (not as
    an unknown metric). The default set leaves jsma out above its size; `--attack default` is the six with it."""
    from ..attacks import ATTACKS, JSMA_DEFAULT_MAX_SIDE
    name = r["metric"].split(".", 1)[0]
    made = [a.name for a in attacks]
    if name not in ATTACKS or name in made:
        return
    said = f"Requirement {r['text']!r} gates {name}, an attack "
    if saved:
        raise HardenError(f"{said}{saved}'s run did not make (it made {', '.join(made)}): gate a run that does "
                          f"(harden eval ... --attack {name}, beside the attacks it needs).")
    if name in getattr(attacks, "left_out", ()):
        how = (f"{name} is left out of the default attacks above {JSMA_DEFAULT_MAX_SIDE} px (its cost per robust image "
               "grows with the input); --attack default runs the six with it")
    elif getattr(attacks, "from_defaults", False):
        how = f"--attack default --attack {name} runs it beside the default attacks"
    else:
        how = f"add --attack {name} to the run's --attack options"
    raise HardenError(f"{said}this run does not make (it makes {', '.join(made)}): {how}. Checked before any attack "
                      "ran.")


def _metric_names(order: list[str], known: set[str]) -> str:
    """The metrics a report holds, said by family (a run of six attacks has about seventy names)."""
    per_attack = [s for s in (".success", ".median_norm", ON_SOURCE_CORRECT) if any(k.endswith(s) for k in known)]
    rest = sorted(k for k in known if k not in order and not k.endswith((".lower", ".upper", *per_attack))
                  and CHANGE not in k)
    text = ", ".join(order) + " (each also as NAME.lower and NAME.upper" + (
        f", and with --baseline NAME{CHANGE}[.lower|.upper]" if any(CHANGE in k for k in known) else "") + ")"
    if per_attack:
        text += f"; each attack's NAME{', NAME'.join(per_attack)}"
    return text + (f"; {', '.join(rest)}" if rest else "")


def apply_gate(values: dict[str, float], requirements: list[dict[str, Any]],
               baseline: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Each requirement with its actual value and verdict; `baseline`: the --baseline report's values, for bars
    written as baseline[+-x] (the bar is then that metric's baseline value plus the offset)."""
    results = []
    for r in requirements:
        actual = values.get(r["metric"])
        bar = r["value"]
        if r.get("baseline_offset") is not None:
            base = (baseline or {}).get(r["metric"])
            bar = None if base is None else base + r["baseline_offset"]
        ok = actual is not None and bar is not None and holds(r["op"], actual, bar)
        results.append({**r, "value": bar, "actual": actual, "passed": bool(ok)})
    return results


def bound_gate(r: dict[str, Any]) -> tuple[str, bool] | None:
    """(the interval bound a requirement reads, 'lower' or 'upper'; whether it passes only when the data show the
    model on the right side of its bar: `pgd.lower>=x`, `pgd.upper<=x`), or None for a requirement on no bound."""
    side = r["metric"].rsplit(".", 1)[-1]
    if side not in ("lower", "upper"):
        return None
    return side, (side == "lower") == (r["op"] in (">=", ">"))


def fails_only_when_shown(r: dict[str, Any]) -> bool:
    """A requirement that fails only when the data show the model on the wrong side of its bar (`pgd.upper>=x`,
    `pgd.change.upper>=0`, `pgd.lower<=x`): it can fail by chance alone, at most (1 - confidence) / 2."""
    kind = bound_gate(r)
    return kind is not None and not kind[1]


def chance_failure_note(requirements: list[dict[str, Any]], confidence: float) -> str | None:
    """Where two or more requirements each fail only when shown on the wrong side of their bar, the chance that one of
    them fails by chance alone adds up (at most k (1 - c) / 2); what --confidence holds it at (1 - c) / 2 (Bonferroni).
    Requirements that pass only when shown above a bar (`.lower>=`) need no such care: all must hold."""
    k = sum(map(fails_only_when_shown, requirements))
    if k < 2:
        return None
    alpha = (1 - confidence) / 2
    return (f"{k} requirements fail only when their {confidence:.0%} interval shows the model on the wrong side of the "
            f"bar: each can fail by chance alone at most {alpha:.1%} of the time, so one of them up to {k * alpha:.1%}; "
            f"--confidence {1 - (1 - confidence) / k:.4g} holds that at {alpha:.1%} (Bonferroni)")


def settle_note(g: dict[str, Any]) -> str:
    """What a failing interval requirement's images_to_pass says, or ''."""
    m = g.get("images_to_pass")
    if not m:
        return ""
    t, held = g.get("seconds_to_pass"), g.get("images_available")
    took = "" if t is None else f", {'' if t < 1 else 'about '}{_duration(t)} at this run's rate"
    more = "" if held is None else f" (the test split holds {held:,}: more data, not more time)"
    return f"; at the measured value about {m:,} images would pass it{took}{more}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"
