"""`harden.evaluate`: clean accuracy and robust accuracy under each attack, under a named threat model
(white-box: crafted on the evaluated model; transfer: crafted on another model and applied to it)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .attacks import NORM_LABELS, Attack, build_attack, default_attacks, perturbation_norm
from .data import Data, check_fits, fit_size, index_hash, is_on_disk
from .runtime import frozen, progress, resolve_device, run_batched

# Budgets for the minimal-perturbation attacks (an image counts as robust when the attack fails or needs
# more than this). L2 0.5: RobustBench's CIFAR-10 L2 threat model. L0 14.5% of input features: the
# distortion bound of the JSMA paper (Papernot et al. 2016, section IV).
DEFAULT_EPS_L2 = 0.5
DEFAULT_MAX_L0 = 0.145
_PRECISION = {"off": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}


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
    # gradient-masking signals (Carlini et al. 2019); see harden/masking.py
    masking: list[dict[str, Any]] = field(default_factory=list)
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
    # which images: the data's identity (layout, listing hash, preprocessing), the evaluated indices' hash, files
    # skipped as unreadable; for files, "after resize and crop" says where the budgets' pixels live
    data_details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the report chose for the user (e.g. an attack left out)
    # the worst case within each threat model's norm (linf, l2, l0): an image counts only if it survives every attack
    # of that norm; `worst` mixes them (an L0 attack can set it while a team gates on L-inf)
    worst_by_norm: dict[str, float] = field(default_factory=dict)
    confidence: float = 0.95  # level of every accuracy's interval (stats.py: Wilson's score interval)
    baseline: dict[str, Any] = field(default_factory=dict)  # --baseline: its file and the paired comparison
    time_budget: dict[str, Any] = field(default_factory=dict)  # --time-budget: budget, plan, estimate, time used

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
        from .stats import interval
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
        return out

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict, replace
        from .compare import verdicts_of
        d = asdict(replace(self, robust_images={}, correct_images=None))
        d.pop("robust_images")
        d.pop("correct_images")
        d["verdicts"] = verdicts_of(self)
        d["values"] = self.metric_values()
        return d

    def summary(self) -> dict[str, Any]:
        """Compact form stored in checkpoint metadata."""
        return {"threat_model": self.threat_model, "n": self.n, "data": self.data,
                "values": {k: round(v, 4) for k, v in self.metric_values().items()}}


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        outs = run_batched(lambda s, e: model(x[s:e]).argmax(1), len(x), batch_size, device)
    return torch.cat(outs)


def evaluate(model: nn.Module, data: Data, *, attacks: Sequence[str | Attack] | None = None,
             n: int | None = 500, eps: float | None = None, eps_l2: float = DEFAULT_EPS_L2,
             max_l0: float = DEFAULT_MAX_L0, craft_on: nn.Module | None = None, batch_size: int = 128,
             device: str | torch.device = "auto", seed: int = 0, metrics: bool = True, model_name: str = "model",
             craft_name: str | None = None, masking_checks: bool = True, masking_n: int = 200,
             examples: int = 4, curve: Sequence[float] | None = None, curve_cascades: bool = True,
             attack_amp: str = "off") -> Report:
    """Robustness report of `model` on n test images of `data` (the first n of in-memory data; a seeded stratified
    sample of files, decoded through the model's evaluation transform). `attacks` None: the default set for the
    model's input size (attacks.default_attacks; the report notes what it left out). `examples`: adversarial examples kept
    per attack (for pictures); `curve`: L-inf budgets at which the L-inf attacks are run again (curves.py);
    curve_cascades=False leaves autoattack out of the curve; attack_amp (off | bf16 | fp16) runs the attacks under
    autocast (the report says which precision they used). Under torchrun the attacks are sharded across the ranks
    and every rank returns the whole report (harden/distributed.py)."""
    device = resolve_device(device)
    from .training import autocast_setup
    autocast_setup(attack_amp, device, "--attack-amp")  # a bad precision fails before any work
    spec = getattr(model, "spec", None)
    if spec is not None:
        check_fits(data, spec.in_chans, spec.num_classes)
    if craft_on is not None and getattr(craft_on, "spec", None) is not None:
        check_fits(data, craft_on.spec.in_chans, craft_on.spec.num_classes)
    model = model.to(device).eval()
    source = craft_on.to(device).eval() if craft_on is not None else model
    idx = data.eval_indices(n, seed)
    skipped_before = len(getattr(data, "skipped", []))
    x, y = data.images("test", idx, device)
    # files come at the size their transform made (the model's, or timm's test size); arrays are resized to the model's
    size = tuple(spec.input_size) if spec is not None and not is_on_disk(data) else data.input_size
    x = fit_size(x, size)
    details = {**data.identity(), "images_sha256": index_hash(idx)}
    if is_on_disk(data):
        details["pixels"] = (f"budgets in [0, 1] pixels after the model's transform: {data.preprocess.describe()}"
                             + (f" ({data.size_note})" if data.size_note else ""))
        details["skipped_unreadable"] = len(data.skipped) - skipped_before
    threat = "white-box" if craft_on is None else f"transfer from {craft_name or 'source model'}"
    # Attacks and losses need logits (or log-probabilities, the same up to a shift): a probability output is
    # attacked through its logarithm; predictions are unchanged by it.
    from .outputs import as_logits, detect_output_kind
    output_kind = detect_output_kind(model, x[:batch_size])
    model = as_logits(model, output_kind)
    source = as_logits(source, detect_output_kind(source, x[:batch_size])) if craft_on is not None else model

    notes = []
    if attacks is None:
        attacks, note = default_attacks(size)
        notes += [note] if note else []
    atk_objs: list[Attack] = []
    for a in attacks:
        atk = a if isinstance(a, Attack) else build_attack(a, eps=eps)
        if atk.name == "jsma" and atk.params["max_l0"] == 0:
            atk.params["max_l0"] = max_l0
        if atk.norm == "2" and not atk.minimal and "eps" not in getattr(atk, "explicit", set()):
            atk.params["eps"] = eps_l2  # a bounded L2 attack (autoattack:norm=L2) takes the report's L2 budget
        atk_objs.append(atk)

    clean_pred = _predict(model, x, batch_size, device)
    correct = clean_pred == y
    src_correct = _predict(source, x, batch_size, device) == y if craft_on is not None else None
    nfeat = x[0].numel()
    results: list[AttackResult] = []
    robust_by_attack: dict[str, torch.Tensor] = {}
    with frozen(source), frozen(model):
        for ai, atk in enumerate(atk_objs):
            key = atk.name if atk.name not in robust_by_attack else f"{atk.name}#{ai}"
            if not atk.minimal:
                budget = atk.params.get("eps", 0.0)
            else:
                budget = eps_l2 if atk.norm == "2" else (max_l0 * nfeat if max_l0 < 1 else max_l0)
            result, robust_by_attack[key] = _attack_once(
                model, source, atk, key, budget, x, y, correct, src_correct, batch_size, device,
                seed * 1_000_003 + ai * 10_007, examples, attack_amp)
            results.append(result)

    worst = None
    if robust_by_attack:
        worst = float(torch.stack(list(robust_by_attack.values())).all(0).float().mean())
    worst_by_norm = {}
    for norm, label in NORM_LABELS.items():
        keys = [k for a, k in zip(atk_objs, robust_by_attack, strict=True) if a.norm == norm]
        if keys:
            worst_by_norm[label] = float(torch.stack([robust_by_attack[k] for k in keys]).all(0).float().mean())
    curves: dict[str, list[list[float]]] = {}
    if curve:
        from .curves import robustness_curves
        curves = robustness_curves(model, source, atk_objs, results, list(curve), x, y, correct, batch_size, device,
                                   seed, cascades=curve_cascades, attack_amp=attack_amp, attack_once=_attack_once)
    from . import distributed
    extra_metrics = distributed.from_main(lambda: _seed004_metrics(model, x, y, batch_size, device)) if metrics else {}
    flags = []
    if masking_checks and craft_on is None:
        flags = _masking(model, x, y, correct, atk_objs, results, robust_by_attack, eps, masking_n, batch_size,
                         device, seed, output_kind)
        if curves:
            from .curves import monotonic_flag
            flags.append(monotonic_flag(curves, len(x)))
    return Report(model=model_name, threat_model=threat, crafted_on=craft_name or model_name, n=len(x),
                  data=data.source, device=str(device), seed=seed, clean_accuracy=float(correct.float().mean()),
                  attacks=results, metrics=extra_metrics, masking=flags, worst_case=worst, output_kind=output_kind,
                  robust_images={k: v.cpu() for k, v in robust_by_attack.items()}, curves=curves,
                  correct_images=correct.cpu(),
                  class_names=data.class_names, attack_precision=_PRECISION[attack_amp],
                  processes=distributed.world(), data_details=details, notes=notes, worst_by_norm=worst_by_norm,
                  source_clean_accuracy=float(src_correct.float().mean()) if src_correct is not None else None,
                  clean_on_source_correct=float(correct[src_correct].float().mean())
                  if src_correct is not None and src_correct.any() else None)


def _attack_once(model: nn.Module, source: nn.Module, atk: Attack, key: str, budget: float, x: torch.Tensor,
                 y: torch.Tensor, correct: torch.Tensor, src_correct: torch.Tensor | None, batch_size: int,
                 device: torch.device, seed: int, n_examples: int = 0,
                 attack_amp: str = "off") -> tuple[AttackResult, torch.Tensor]:
    """Craft atk on `source`, judge on `model`; returns the result row and the per-image robust mask. Under
    torchrun each rank attacks and judges its batches (distributed.my_batches); the per-image verdicts are
    gathered, so every rank returns the whole result."""
    from . import distributed as dd
    from .training import autocast_setup
    amp_dtype, _ = autocast_setup(attack_amp, device, "--attack-amp")
    passes = [0, 0]

    def judge(xa: torch.Tensor, s: int, e: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Correct on the input the attacker may use: a perturbation beyond the budget does not count, so
        there the clean input stands. Returns (correct-under-attack mask, norms, predictions, judged input)."""
        x0, c0 = x[s:e], correct[s:e]
        xa = xa.float().clamp(0, 1)
        if atk.norm == "inf":  # guard the threat model: never count a perturbation outside the ball
            xa = torch.min(torch.max(xa, x0 - budget), x0 + budget)
        norms = perturbation_norm(xa - x0, atk.norm)
        adv_pred = _predict(model, xa, batch_size, device)
        within = norms <= budget + 1e-5 if atk.norm != "inf" else torch.ones_like(c0)
        return torch.where(within, adv_pred == y[s:e], c0), norms, adv_pred, xa

    mine: list[dict[str, Any]] = []
    judged: dict[int, torch.Tensor] = {}  # batch start -> judged adversarial inputs (this rank's batches only)
    t0 = time.perf_counter()
    own = dd.my_batches(len(x), batch_size)
    with progress(f"{key:<10}", sum(e - s for s, e in own)) as advance:
        def run(s: int, e: int) -> None:
            gen = torch.Generator().manual_seed(seed + s)  # by position in the whole set: sharding keeps it
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = atk.run(source, x[s:e], y[s:e], generator=gen)
            passes[0] += out.grad_passes + out.extra_backward_passes
            passes[1] += out.forward_passes
            ok, norms, pred, xj = judge(out.x_adv.detach(), s, e)
            judged[s] = xj
            mine.append({"start": s, "ok": ok.cpu(), "norms": norms.cpu(), "pred": pred.cpu(),
                         "stages": {stage: judge(xa.detach(), s, e)[0].cpu() for stage, xa in (out.stages or {}).items()}})
        dd.run_my_batches(run, len(x), batch_size, device, on_batch=advance)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - t0
    per_rank = dd.gather({"pieces": mine, "passes": passes, "seconds": secs})
    pieces = sorted((p for r in per_rank for p in r["pieces"]), key=lambda p: p["start"])
    secs = max(r["seconds"] for r in per_rank)  # wall time: the slowest rank
    passes = [sum(r["passes"][i] for r in per_rank) for i in (0, 1)]

    def whole(k: str) -> torch.Tensor:
        return torch.cat([p[k] for p in pieces]).to(device) if pieces else torch.zeros(0, device=device)

    ok_adv, norms, adv_pred = whole("ok").bool(), whole("norms"), whole("pred").long()
    robust = correct & ok_adv
    succ = correct & ~ok_adv
    on_src = None
    if src_correct is not None:
        on_src = float(ok_adv[src_correct].float().mean()) if src_correct.any() else 0.0
    stage_names = list(pieces[0]["stages"]) if pieces else []
    stages = {st: float((correct & torch.cat([p["stages"][st] for p in pieces]).to(device)).float().mean())
              for st in stage_names}
    from .examples import example_indices, pick_examples
    shown = []
    if n_examples:
        idx = example_indices(correct, succ, n_examples)
        rows = {}  # the chosen images' judged inputs, from the ranks that hold them
        for part in dd.gather({i: judged[s][i - s].cpu() for s in judged for i in idx
                               if s <= i < s + len(judged[s])}):
            rows.update(part)
        shown = pick_examples(x, {i: r.to(device) for i, r in rows.items()}, y, adv_pred, succ, idx)
    return AttackResult(
        name=key, preset=atk.describe(), norm=atk.norm, minimal=atk.minimal, budget=float(budget),
        robust_accuracy=float(robust.float().mean()), success_rate=float(succ.sum()) / max(1, int(correct.sum())),
        median_norm=float(norms[succ].median()) if succ.any() else None, seconds=secs,
        images_per_s=len(x) / max(secs, 1e-9), backward_passes=passes[0], forward_passes=passes[1],
        accuracy_on_source_correct=on_src, stages=stages, examples=shown), robust


def _seed004_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     device: torch.device) -> dict[str, float]:
    """Seed 004 section 4.1 metrics through ART (art.metrics), on the evaluated model (white-box):
    empirical robustness (minimal FGSM perturbation / input norm; ART's only supported crafter) and
    loss sensitivity (mean L2 norm of the input gradient of the loss)."""
    from art.metrics import empirical_robustness, loss_sensitivity

    from .attacks.base import art_classifier, to_numpy
    with frozen(model):
        clf = art_classifier(model, tuple(x.shape[1:]), int(model.spec.num_classes) if hasattr(model, "spec")
                             else int(model(x[:1]).shape[1]))
        xn = to_numpy(x)
        onehot = np.eye(clf.nb_classes, dtype=np.float32)[to_numpy(y).astype(np.int64)]
        er = float(empirical_robustness(clf, xn, "fgsm", {"eps_step": 0.01, "eps": 1.0, "batch_size": batch_size}))
        ls = float(loss_sensitivity(clf, xn, onehot))
    return {"empirical_robustness": er, "loss_sensitivity": ls}


def _masking(model, x, y, correct, atk_objs, results, robust_by_attack, eps, masking_n, batch_size, device, seed,
             output_kind):
    """White-box gradient-masking signals and AutoAttack's checks on the first masking_n images (see
    harden/masking.py)."""
    from . import masking as mk
    m = min(len(x), masking_n)
    robust = {r.name: r.robust_accuracy for r in results}
    flags = [f for f in [mk.iterative_vs_single_step(robust, len(x))] if f is not None]
    pgd = next((a for a in atk_objs if a.name == "pgd"), None)
    linf = [a for a in atk_objs if a.norm == "inf" and not a.minimal]
    check_eps = pgd.params["eps"] if pgd is not None else (
        linf[0].params["eps"] if linf else (eps if eps is not None else 8 / 255))

    def attack_fn(spec: str, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        from . import distributed as dd
        atk = build_attack(spec)
        with frozen(model):  # sharded under torchrun, as the report's attacks
            mine = dd.run_my_batches(lambda s, e: (s, atk.run(
                model, xs[s:e], ys[s:e], generator=torch.Generator().manual_seed(seed + s)).x_adv.detach().cpu()),
                len(xs), batch_size, device)
        parts = sorted((p for r in dd.gather(mine) for p in r), key=lambda p: p[0])
        return torch.cat([p[1] for p in parts]).to(device)

    with progress("masking checks", 1) as advance:
        flags += mk.run_white_box_checks(model, x[:m], y[:m], correct[:m], check_eps,
                                         robust_by_attack["pgd"][:m] if "pgd" in robust_by_attack else None,
                                         attack_fn)
        with frozen(model):
            flags.append(mk.randomized_outputs(model, x[:min(m, batch_size)]))
            flags.append(mk.output_kind_note(output_kind))
            flags.append(mk.zero_gradients(model, x[:m], y[:m], correct[:m]))
            flags.append(_black_box(model, x[:m], y[:m], atk_objs, results, robust_by_attack, check_eps, attack_fn))
        advance(1)
    return flags


def _black_box(model, x, y, atk_objs, results, robust_by_attack, eps, attack_fn):
    """Square on the images the gradient attacks left robust; an autoattack row has done it already."""
    from . import masking as mk
    for r in results:
        if "square" in r.stages:
            names = list(r.stages)
            before = r.stages[names[names.index("square") - 1]]
            return mk.black_box_vs_gradient(before, r.stages["square"], None, f"{r.name} stages")
    linf = [k for a, k in zip(atk_objs, robust_by_attack, strict=True) if a.norm == "inf" and not a.minimal]
    m = len(x)
    left = torch.stack([robust_by_attack[k][:m] for k in linf]).all(0) if linf else \
        (_predict(model, x, len(x), x.device) == y)
    before = float(left.float().mean())
    idx = left.nonzero().squeeze(1)
    after = before
    if idx.numel():
        xa = attack_fn(f"square:eps={eps},queries={mk.BLACK_BOX_QUERIES}", x[idx], y[idx])
        after = float((_predict(model, xa.clamp(0, 1), len(xa), x.device) == y[idx]).sum()) / m
    src = "the report's L-inf attacks" if linf else "clean"
    return mk.black_box_vs_gradient(before, after, m, f"{src} at eps {eps:.4g} on {m} images")
