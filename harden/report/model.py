"""The report model: what a robustness report holds (per attack and per AutoAttack stage), its accuracies with
their confidence intervals, the gateable values, and its JSON form (per-image verdicts included)."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .compare import unpack, verdicts_of
from .gate import TRIPPED_CHECKS
from .stats import interval

if TYPE_CHECKING:
    import torch

PRECISION_LABELS = {"off": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}


@dataclass
class AttackResult:
    name: str
    preset: str
    norm: str
    minimal: bool
    budget: float
    robust_accuracy: float
    success_rate: float
    median_norm: float | None
    seconds: float
    images_per_s: float
    backward_passes: int  # image-level backward passes the attack made (its main cost)
    forward_passes: int
    # transfer only: accuracy on the images the crafting model classifies correctly when clean (seed 000)
    accuracy_on_source_correct: float | None = None
    # multi-stage attacks (autoattack): robust accuracy after each stage, in cascade order
    stages: dict[str, float] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # and the time each stage took (all batches)
    # a few adversarial examples (see examples.py): label, prediction, clean and adversarial thumbnails
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    model: str
    threat_model: str
    crafted_on: str
    n: int
    data: str
    device: str
    seed: int
    clean_accuracy: float
    attacks: list[AttackResult]
    metrics: dict[str, float] = field(default_factory=dict)
    source_clean_accuracy: float | None = None
    clean_on_source_correct: float | None = None  # transfer only: clean accuracy where the source is right
    # gradient-masking signals (Carlini et al. 2019); see checks.py
    masking: list[dict[str, Any]] = field(default_factory=list)
    # the seconds the masking checks' parts took: each extra attack by name and budget, "outputs and gradients"
    check_seconds: dict[str, float] = field(default_factory=dict)
    gate: list[dict[str, Any]] = field(default_factory=list)
    # an image is robust in the worst case only if it survives every attack of the report at its budget
    worst_case: float | None = None
    output_kind: str = "logits"
    # per-image robust flags by attack (the report key), for worst-case accounting and sharded runs; not in JSON
    robust_images: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    correct_images: torch.Tensor | None = field(default=None, repr=False)  # per-image clean verdicts; JSON: verdicts
    class_names: list[str] | None = None
    # robustness curves: attack -> [[budget, robust accuracy], ...] (see curves.py); norm of their budgets
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    attack_precision: str = "fp32"  # the attacks' arithmetic: fp32, or bf16 / fp16 autocast (--attack-amp)
    processes: int = 1  # torchrun ranks that shared the attacks
    # the attack batch the report started with (halved on CUDA out-of-memory): verdicts do not depend on it
    # (attacks/row_streams.py); kept to say how a run was made
    batch_size: int | None = None
    # which images: the data's identity (layout, listing hash, preprocessing), the evaluated indices' hash, files
    # skipped as unreadable; for files, "after resize and crop" says where the budgets' pixels live
    data_details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the report chose for the user (e.g. an attack left out)
    # the worst case within each threat model's norm (linf, l2, l0): an image counts only if it survives every attack
    # of that norm; `worst` mixes them (an L0 attack can set it while a team gates on L-inf)
    worst_by_norm: dict[str, float] = field(default_factory=dict)
    # each class among the images: n, clean, worst case and each attack's robust accuracy (by_class.py)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confidence: float = 0.95  # level of every accuracy's interval (stats.py: Wilson's score interval)
    baseline: dict[str, Any] = field(default_factory=dict)  # --baseline: its file and the paired comparison
    time_budget: dict[str, Any] = field(default_factory=dict)  # --time-budget: budget, plan, estimate, time used
    # what made it: harden's and torch's versions, the machine, when, the weights' sha256 (provenance.py)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line a notebook shows (the whole report is to_dict(); a table, harden.report.render)."""
        accs = ", ".join(f"{k} {100 * v:.1f}%" for k, v in self.accuracies().items() if "." not in k)
        tripped = sum(1 for f in self.masking if f["tripped"] and f.get("kind", "masking") != "note")
        return (f"Report({self.model!r}, {self.threat_model}, {self.n} images of {self.data}: {accs}"
                + (f"; {tripped} check(s) tripped" if tripped else "") + ")")

    def accuracies(self) -> dict[str, float]:
        """The metrics that are proportions of the report's n images (each has an interval)."""
        out = {"clean": self.clean_accuracy}
        for a in self.attacks:
            out[a.name] = a.robust_accuracy
            out.update({f"{a.name}.{stage}": v for stage, v in a.stages.items()})
        if self.worst_case is not None:
            out["worst"] = self.worst_case
        out.update({f"worst.{k}": v for k, v in self.worst_by_norm.items()})
        return out

    def intervals(self) -> dict[str, tuple[float, float]]:
        return {k: interval(v, self.n, self.confidence) for k, v in self.accuracies().items()}

    def metric_values(self) -> dict[str, float]:
        """Flat names the gate uses: clean, <attack>, <attack>.success, <attack>.median_norm, worst, worst.<norm>,
        metrics, and <accuracy>.lower / <accuracy>.upper (the interval's bounds)."""
        out: dict[str, float] = {"clean": self.clean_accuracy}
        if self.clean_on_source_correct is not None:
            out["clean.on_source_correct"] = self.clean_on_source_correct
        for a in self.attacks:
            out[a.name] = a.robust_accuracy
            out[f"{a.name}.success"] = a.success_rate
            if a.median_norm is not None:
                out[f"{a.name}.median_norm"] = a.median_norm
            if a.accuracy_on_source_correct is not None:
                out[f"{a.name}.on_source_correct"] = a.accuracy_on_source_correct
            for stage, v in a.stages.items():
                out[f"{a.name}.{stage}"] = v
        if self.worst_case is not None:
            out["worst"] = self.worst_case
        out.update({f"worst.{k}": v for k, v in self.worst_by_norm.items()})
        out.update(self.metrics)
        for k, (lo, hi) in self.intervals().items():
            out[f"{k}.lower"], out[f"{k}.upper"] = lo, hi
        # the gradient-masking and evaluation checks that tripped (notes are not counted): `checks.tripped<=0`
        # fails a build whose numbers the checks say not to trust
        out[TRIPPED_CHECKS] = float(sum(1 for f in self.masking if f["tripped"] and f.get("kind", "masking") != "note"))
        return out

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict, replace
        d = asdict(replace(self, robust_images={}, correct_images=None))
        d.pop("robust_images")
        d.pop("correct_images")
        d["verdicts"] = verdicts_of(self)
        d["values"] = self.metric_values()
        return d

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Report":
        """The report a JSON document holds (to_dict's inverse; `harden gate` of a saved report): the per-image
        verdicts back as masks, fields a newer harden wrote and this one lacks left out, missing ones at defaults."""
        import torch

        from ..errors import HardenError
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        lacking = [k for k in required if k not in doc]
        if lacking:
            raise HardenError(f"The report lacks {', '.join(lacking)}: it was not written by `harden eval --json` or "
                              "`harden fix --json`.")
        doc = dict(doc)
        verdicts = doc.pop("verdicts", None) or {}
        attack_fields = {f.name for f in fields(AttackResult)}
        doc["attacks"] = [AttackResult(**{k: v for k, v in a.items() if k in attack_fields})
                          for a in doc.get("attacks", [])]
        report = cls(**{k: v for k, v in doc.items() if k in {f.name for f in fields(cls)} - {"robust_images",
                                                                                             "correct_images"}})
        bits, n = verdicts.get("bits") or {}, int(verdicts.get("n") or 0)
        if "clean" in bits:
            report.correct_images = torch.from_numpy(unpack(bits["clean"], n))
            report.robust_images = {a.name: torch.from_numpy(unpack(bits[a.name], n)) for a in report.attacks
                                    if a.name in bits}
        return report

    def summary(self) -> dict[str, Any]:
        """Compact form stored in checkpoint metadata."""
        return {"threat_model": self.threat_model, "n": self.n, "data": self.data,
                "values": {k: round(v, 4) for k, v in self.metric_values().items()}}
