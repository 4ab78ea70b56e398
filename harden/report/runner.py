"""`harden.evaluate`: clean accuracy and robust accuracy under each attack, under a named threat model
(white-box: crafted on the evaluated model; transfer: crafted on another model and applied to it)."""
from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from ..attacks import DEFAULT_ATTACKS, NORM_LABELS, Attack, build_attack, default_attacks, perturbation_norm
from ..as_given import gives_back
from ..attacks.row_streams import RowStreams
from ..batching import non_finite_scores, predict_labels
from ..compiling import compiled
from ..device_defaults import attack_batch_size, prepare_for_device
from ..errors import HardenError
from ..models.registry import gives_input_gradient
from ..data import Data, check_fits, index_hash, is_on_disk
from ..data.held import held_images
from ..data.base import SAMPLE_DRAW
from ..data.predicted import check_labels
from ..runtime import flushing_denormals, frozen, progress, resolve_device, warn
from . import checks as mk, provenance
from .curves import at_budget, check_curve_attacks, monotonic_flag, robustness_curves
from .examples import KeptInputs, example_indices, pick_examples
from .metrics import seed004_metrics
from .input_size import better_input_size
from .normalisation import better_normalisation
from .by_class import by_class
from .model import PRECISION_LABELS, AttackResult, Report
from .stats import share

if TYPE_CHECKING:
    from ..resume import ReportState, ReportStates

# Budgets for the minimal-perturbation attacks (an image counts as robust when the attack fails or needs
# more than this). L2 0.5: RobustBench's CIFAR-10 L2 threat model. L0 14.5% of input features: the
# distortion bound of the JSMA paper (Papernot et al. 2016, section IV).
DEFAULT_EPS_L2 = 0.5
DEFAULT_MAX_L0 = 0.145


class AttackSet(list):
    """The attacks a report runs, with the notes it carries about how they were chosen: whether they are the default
    set for the model's size, and the default attacks that set leaves out."""
    notes: list[str] = []
    from_defaults: bool = False
    left_out: tuple[str, ...] = ()


SKIPPED_NAMED = 20  # unreadable files the report names (each with why), of those it skipped


def attack_set(specs: Sequence[str | Attack] | None, input_size, eps: float | None = None) -> AttackSet:
    """Attack objects for these specs (names, presets with options, or Attack objects), or with None the default set
    for the model's input size and a note of what it leaves out (attacks.default_attacks)."""
    notes, from_defaults = [], specs is None
    if specs is None:
        specs, note = default_attacks(input_size)
        notes += [note] if note else []
    out = AttackSet(a if isinstance(a, Attack) else build_attack(a, eps=eps) for a in specs)
    if from_defaults:
        out.from_defaults, out.left_out = True, tuple(a for a in DEFAULT_ATTACKS if a not in specs)
    out.notes = notes + [n for n in map(short_of_its_ball, out) if n]
    for note in out.notes[len(notes):]:  # before the attacks' time; once (fix's three reports share their attacks)
        if note not in _WARNED:
            _WARNED.add(note)
            warn(note)
    return out


_WARNED: set[str] = set()


def short_of_its_ball(atk: Attack) -> str | None:
    """A fixed-step attack whose steps cannot take an image to the edge of its ball (`pgd:steps=5` keeps the preset's
    step, 0.005 at 8/255: 0.025 in all): it attacks a smaller ball than the one its row reports."""
    p = atk.params
    if not all(k in p for k in ("eps", "step", "steps")) or atk.norm not in ("inf", "2"):
        return None
    reach = float(p["step"]) * int(p["steps"])
    if reach >= float(p["eps"]) - 1e-12:
        return None
    return (f"{atk.name}: {int(p['steps'])} steps of {p['step']:.4g} move an image at most {reach:.4g}, short of its "
            f"budget {float(p['eps']):.4g}: it attacks a smaller ball than its row reports and may overstate "
            f"robustness (give a step, e.g. step={2.5 * float(p['eps']) / int(p['steps']):.4g}, 2.5 x eps / steps as "
            "Madry et al.)")


@flushing_denormals
@gives_back("model", "craft_on")  # the caller's modules back in their mode, on their device, after the report
def evaluate(model: nn.Module | str | os.PathLike, data: Data | str | os.PathLike | None = None, *,
             attacks: Sequence[str | Attack] | None = None, n: int | None = 500, eps: float | None = None,
             eps_l2: float | None = None, max_l0: float = DEFAULT_MAX_L0, craft_on: nn.Module | None = None,
             batch_size: int | None = None, device: str | torch.device = "auto", seed: int = 0, metrics: bool = True,
             model_name: str = "model", craft_name: str | None = None, masking_checks: bool = True,
             masking_n: int = mk.CHECKED_MOST,
             examples: int = 4, curve: Sequence[float] | None = None, curve_cascades: bool = True,
             attack_amp: str = "off", compile: bool = False, bpda: bool = True,
             state: "ReportStates | None" = None, labels: str = "given") -> Report:
    """Robustness report of `model` on n test images of `data` (the first n of in-memory data, unless it comes in class
    order; a seeded stratified sample of files, decoded through the model's evaluation transform). `attacks` None: the
    default set for the model's input size (attacks.default_attacks; the report notes what it left out). `examples`:
    adversarial examples kept per attack (for pictures); `curve`: L-inf budgets at which the L-inf attacks are run
    again (curves.py); curve_cascades=False leaves autoattack out of the curve; batch_size None: 128 on the CPU,
    from free memory on CUDA; attack_amp (off | bf16 | fp16) runs the attacks under autocast (the report says which
    precision they used). Under torchrun the attacks are sharded across the ranks
    and every rank returns the whole report (harden/distributed.py). compile: torch.compile the networks meanwhile
    (compiling.py). `model` may be a checkpoint's path (harden.load) and `data` what --data takes (None: the data the
    checkpoint's metadata names). `bpda`: rounding in the model's forward passes the attacks' gradients straight
    through (bpda.py; the report notes it where the model rounds). `state`: where the attacks keep their verdicts
    batch by batch, to resume an interrupted report (resume.ReportStates). `labels` "predicted": each image's label
    is the model's own clean prediction (images without labels; data/predicted.py), so robust accuracy measures how
    often an attack cannot change the prediction."""
    check_labels(labels)
    model, data = _model_and_data(model, data, labels)
    if craft_on is not None:
        craft_on = _classifier(craft_on, data)
    args = {k: v for k, v in locals().items() if k != "compile"}
    with compiled(model, compile), compiled(craft_on, compile):
        return _evaluate(**args)


def _model_and_data(model, data, labels: str = "given") -> tuple[nn.Module, Data]:
    """A checkpoint path loaded; data given as --data takes it (or None: the checkpoint's own) read for the model."""
    if isinstance(model, (str, os.PathLike)):
        from ..checkpoint import load
        model = load(model)
    from ..data.dataset_objects import model_for
    if isinstance(data, Data):
        return _classifier(model_for(model, data), data), data
    from ..data.arrays import is_arrays
    if getattr(model, "spec", None) is not None:
        from ..api import data_for
        return model, data_for(model, None if data is None else data if is_arrays(data) else str(data),
                               labels=labels)
    if data is None:
        raise HardenError("evaluate: a model without harden's spec needs data (a Data, or what --data takes).")
    from ..data.predicted import data_for_module
    data = data_for_module(data, labels)
    return _classifier(model_for(model, data), data), data


def _classifier(model: nn.Module, data: Data) -> nn.Module:
    """A plain module as fix takes one (models.from_module at the data's size): its scores read out of what its
    forward returns (a tuple, a dict, a transformers output), its class count checked against the data's."""
    if getattr(model, "spec", None) is not None:
        return model
    from ..data.dataset_objects import wrapped_for
    return wrapped_for(model, data)


def check_l0_counts(attacks, max_l0: float, shape: tuple[int, ...]) -> None:
    """An L0 count (JSMA's budget: --max-l0, or jsma:max_l0) beyond the features of an input of `shape` (C, H, W) is a
    budget no image could spend, which the report would print as given ("L0 100000"): refused before any attack (and,
    in fix, before any training)."""
    features = int(torch.Size(shape).numel())
    for atk in attacks:
        count = float(atk.params.get("max_l0") or max_l0) if atk.name == "jsma" else 0.0
        if count >= 1 and count > features:
            raise HardenError(f"The L0 budget {count:g} (--max-l0, or jsma:max_l0) is more than the {features:,} "
                              f"features of the model's input ({' x '.join(map(str, shape))}): give a count of at "
                              f"most {features:,}, or a fraction below 1 (the default {DEFAULT_MAX_L0:g} is "
                              f"{round(DEFAULT_MAX_L0 * features):,} of them).")


def _evaluate(model: nn.Module, data: Data, *, attacks, n, eps, eps_l2, max_l0, craft_on, batch_size, device, seed,
              metrics, model_name, craft_name, masking_checks, masking_n, examples, curve, curve_cascades,
              attack_amp, bpda, state, labels) -> Report:
    l2_asked = eps_l2 is not None  # None: the default L2 budget, not asked for (the trained-budget note reads which)
    eps_l2 = DEFAULT_EPS_L2 if eps_l2 is None else eps_l2
    if not eps_l2 > 0 or not max_l0 > 0:  # a budget of zero or less counts every image as robust
        raise HardenError(f"The L2 budget (--eps-l2) and the L0 budget (--max-l0) must be > 0, got {eps_l2} and "
                          f"{max_l0}.")
    device = resolve_device(device)
    from ..training import autocast_setup
    autocast_setup(attack_amp, device, "--attack-amp")  # a bad precision fails before any work
    spec = getattr(model, "spec", None)
    sources = getattr(model, "config_sources", None)  # what loading assumed, for the chance-level check
    if spec is not None:
        check_fits(data, spec.in_chans, spec.num_classes)
    if craft_on is not None and getattr(craft_on, "spec", None) is not None:
        check_fits(data, craft_on.spec.in_chans, craft_on.spec.num_classes)
    model = prepare_for_device(model.to(device).eval(), device)
    loaded = model  # the Classifier itself, before the wrapping below: its normalisation is checked
    source = prepare_for_device(craft_on.to(device).eval(), device) if craft_on is not None else model
    idx, sample_kind = data.eval_sample(n, seed)
    skipped_before = len(getattr(data, "skipped", []))
    oriented_before = data.oriented["n"] if is_on_disk(data) else 0
    # files come at the size their transform made (the model's, or timm's test size); arrays are resized to the model's
    size = tuple(spec.input_size) if spec is not None and not is_on_disk(data) else data.input_size
    x, y = held_images(data, "test", idx, device, size)
    from .craft_size import fed_at_its_size
    source, resized = fed_at_its_size(source, craft_name or "the source model", tuple(x.shape[-2:])) \
        if craft_on is not None else (source, None)
    # None: 128 on the CPU, found from free memory on CUDA (device_defaults.py)
    batch_size = attack_batch_size(source, device, batch_size, tuple(x.shape[1:]))
    details = {**data.identity(), "images_sha256": index_hash(idx), "sample": sample_kind,
               "sample_draw": SAMPLE_DRAW}
    content = data.images_digest("test", idx)
    if content is not None:
        details["images_content_sha256"] = content
    content = data.images_bytes_digest("test", idx, getattr(x, "pixels", None))
    if content is not None:
        details["images_bytes_sha256"] = content
    own = tuple(int(v) for v in getattr(x, "pixels", x).shape[-2:])
    if not is_on_disk(data) and own != tuple(int(v) for v in x.shape[-2:]):  # arrays of another size than the model's
        details["resized"] = (f"arrays of {own[0]}x{own[1]} pixels resized to the model's {x.shape[-2]}x{x.shape[-1]} "
                              "(bilinear); budgets in the resized pixels")
    if is_on_disk(data):
        details["pixels"] = (f"budgets in [0, 1] pixels after the model's transform: {data.preprocess.describe()}"
                             + (f" ({data.size_note})" if data.size_note else ""))
        details["skipped_unreadable"] = len(data.skipped) - skipped_before
        if details["skipped_unreadable"]:  # which, and why (an LFS pointer, an empty file): the first few
            details["skipped_files"] = data.skipped[skipped_before:skipped_before + SKIPPED_NAMED]
        details.pop("exif_oriented", None)  # the report's own images, not every read of the run
        if data.oriented["n"] > oriented_before:
            details["exif_oriented"] = data.oriented_note(data.oriented["n"] - oriented_before)
    threat = "white-box" if craft_on is None else f"transfer from {craft_name or 'source model'}"
    # Attacks and losses need logits (or log-probabilities, the same up to a shift): a probability output is
    # attacked through its logarithm; predictions are unchanged by it.
    from ..outputs import as_logits, detect_output_kind
    output_kind = detect_output_kind(model, x[:batch_size])
    model = as_logits(model, output_kind)
    source = as_logits(source, detect_output_kind(source, x[:batch_size])) if craft_on is not None else model
    from ..bpda import straight_through  # its probe runs the model frozen
    model, rounding = straight_through(model, x[:2], bpda)
    source, source_rounding = straight_through(source, x[:2], bpda) if craft_on is not None else (model, None)
    try:
        grad_ok = gives_input_gradient(source, x)
    except HardenError:  # a model that cannot score one image alone (batch statistics) says so where an attack does
        grad_ok = True
    if not grad_ok:  # a graph cut (torch.ao's quantized layers) would stop the attacks inside autograd
        from ..errors import NoInputGradient
        from ..models.registry import no_input_gradient
        net = getattr(craft_on if craft_on is not None else loaded, "net", None)
        raise NoInputGradient(no_input_gradient(craft_name if craft_on is not None else model_name or "the model",
                                                net))

    chosen = attacks if isinstance(attacks, AttackSet) else attack_set(attacks, size, eps)
    notes = list(chosen.notes) + ([resized] if resized else [])
    notes += [f"{who}'s {note}" for who, note in ((model_name, rounding), (craft_name or "source model",
                                                                          source_rounding)) if note]
    if n and n > len(idx):  # a CI gate sized for n images must not believe it measured them
        notes.append(f"the evaluation split holds {len(idx)} image{'s' * (len(idx) != 1)}, fewer than --num-images "
                     f"({n}): all evaluated")
    atk_objs: list[Attack] = []
    for atk in chosen:
        if atk.name == "jsma" and atk.params["max_l0"] == 0:
            atk.params["max_l0"] = max_l0
        if atk.norm == "2" and not atk.minimal and "eps" not in getattr(atk, "explicit", set()):
            # a bounded L2 attack (autoattack:norm=L2, pgd-l2) takes the report's L2 budget, a preset step in
            # proportion (as build_attack scales an L-inf preset's)
            atk = at_budget(atk, eps_l2)
        atk_objs.append(atk)
    nfeat = x[0].numel()
    check_l0_counts(atk_objs, max_l0, tuple(x.shape[1:]))
    if curve:
        check_curve_attacks(atk_objs, f"curve={list(curve)}")
    if craft_on is None and spec is not None:
        from .trained_budget import trained_budget_note
        said = trained_budget_note(spec.extra, atk_objs, eps, eps_l2, l2_asked, model_name or "the model")
        notes += [said] if said else []

    progress_kept = None
    if state is not None:  # what every attack's verdicts depend on: a resumed report takes only its own
        from .. import distributed
        from ..resume import state_digest
        progress_kept = state.open({
            "model": state_digest(model), "source": state_digest(source) if craft_on is not None else None,
            "images": details, "attacks": [[a.name, a.describe(), a.norm] for a in atk_objs], "eps": eps,
            "eps_l2": eps_l2, "max_l0": max_l0, "seed": seed, "batch_size": batch_size, "precision": attack_amp,
            "bpda": [bool(rounding) and bpda, bool(source_rounding) and bpda],
            "device": device.type, "processes": distributed.world()})
    finite: list[torch.Tensor] = []
    clean_pred = predict_labels(model, x, batch_size, device, finite)
    if (said := non_finite_scores(finite, model_name)) is not None:
        raise HardenError(said)
    predicted = labels == "predicted"
    if predicted:  # no labels: each image's is the evaluated model's own clean prediction
        from ..data.predicted import labels_note
        from ..data.predicted import one_answer_warning
        details["labels"] = labels_note(y, clean_pred)
        said = one_answer_warning(clean_pred, model_name)
        if said:
            warn(said + ".")
            notes.append(said)
        y = clean_pred.clone()
    correct = clean_pred == y
    with frozen(loaded):  # both checks compare accuracies with the data's labels: none to compare with predictions
        preprocessing_flags = [] if predicted else [
            f for f in (better_normalisation(loaded, x, y, clean_pred, batch_size, device),
                        better_input_size(loaded, data, "test", idx, y, clean_pred, batch_size, device))
            if f is not None]
    for f in preprocessing_flags:
        if f["tripped"]:  # said now, before the attacks' time
            warn(f"{model_name}: {f['detail']}.")
    src_correct = predict_labels(source, x, batch_size, device) == y if craft_on is not None else None
    results: list[AttackResult] = []
    robust_by_attack: dict[str, torch.Tensor] = {}
    pgd_end: torch.Tensor | None = None  # where the report's PGD left the masking checks' images
    checked = mk.checked_images(y, masking_n) if masking_checks and craft_on is None else []
    with frozen(source), frozen(model):
        for ai, atk in enumerate(atk_objs):
            key = atk.name if atk.name not in robust_by_attack else f"{atk.name}#{ai}"
            if not atk.minimal:
                budget = atk.params.get("eps", 0.0)
            else:
                budget = eps_l2 if atk.norm == "2" else (max_l0 * nfeat if max_l0 < 1 else max_l0)
            keep = masking_checks and craft_on is None and key == "pgd"  # the stronger-PGD check continues it
            result, robust_by_attack[key], first = _attack_once(
                model, source, atk, key, budget, x, y, correct, src_correct, batch_size, device,
                seed * 1_000_003 + ai * 10_007, examples, attack_amp, keep=checked if keep else (),
                state=progress_kept)
            if keep:
                pgd_end = first
            results.append(result)

    worst = None
    if robust_by_attack:
        worst = share(torch.stack(list(robust_by_attack.values())).all(0))
    worst_by_norm = {}
    for norm, label in NORM_LABELS.items():
        keys = [k for a, k in zip(atk_objs, robust_by_attack, strict=True) if a.norm == norm]
        if keys:
            worst_by_norm[label] = share(torch.stack([robust_by_attack[k] for k in keys]).all(0))
    curves: dict[str, list[list[float]]] = {}
    if curve:
        curves = robustness_curves(model, source, atk_objs, results, list(curve), x, y, correct, batch_size, device,
                                   seed, cascades=curve_cascades, attack_amp=attack_amp,
                                   attack_once=functools.partial(_attack_once, state=progress_kept))
    from .. import distributed
    if metrics and craft_on is not None and not gives_input_gradient(model, x):  # transfer is all it allows
        metrics = False
        notes.append(f"seed 004 metrics left out: they attack {model_name} white-box, and its scores give no "
                     "gradient with respect to its input")
    extra_metrics = _metrics_once(model, x, y, batch_size, device, progress_kept) if metrics else {}
    num_classes = spec.num_classes if spec is not None else data.num_classes
    flags = [f for f in [mk.above_chance(clean_pred, y, num_classes, sources), *preprocessing_flags]
             if f is not None]
    check_seconds: dict[str, float] = {}
    if masking_checks and craft_on is None:
        checked_flags, check_seconds = mk.run_checks(model, x, y, correct, atk_objs, results, robust_by_attack, eps,
                                                     checked, batch_size, device, seed, output_kind, pgd_end,
                                                     state=progress_kept)
        flags += checked_flags
        if curves:
            flags.append(monotonic_flag(curves, len(x)))
    return Report(model=model_name, threat_model=threat, crafted_on=craft_name or model_name, n=len(x),
                  data=data.source, device=str(device), seed=seed, clean_accuracy=share(correct),
                  attacks=results, metrics=extra_metrics, masking=flags, check_seconds=check_seconds,
                  worst_case=worst, output_kind=output_kind,
                  robust_images={k: v.cpu() for k, v in robust_by_attack.items()}, curves=curves,
                  correct_images=correct.cpu(),
                  class_names=data.class_names, attack_precision=PRECISION_LABELS[attack_amp],
                  processes=distributed.world(), batch_size=int(batch_size), data_details=details, notes=notes,
                  worst_by_norm=worst_by_norm,
                  per_class=by_class(y, correct, robust_by_attack, data.class_names),
                  source_clean_accuracy=share(src_correct) if src_correct is not None else None,
                  clean_on_source_correct=share(correct[src_correct])
                  if src_correct is not None and src_correct.any() else None,
                  provenance=provenance.of_run(loaded, device, craft_on))


def _metrics_once(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
                  state: "ReportState | None") -> dict[str, float]:
    """Seed 004's metrics (computed on rank 0), kept in the report's progress: a resumed report takes them."""
    from .. import distributed
    kept = state.piece("seed 004 metrics") if state is not None else None
    if distributed.all_ok(kept is not None):  # under torchrun all take them or all compute them (a collective)
        return dict(kept["values"])
    t = time.perf_counter()
    values = distributed.from_main(lambda: seed004_metrics(model, x, y, batch_size, device))
    if state is not None:
        state.keep("seed 004 metrics", {"values": values, "seconds": time.perf_counter() - t}, "seed 004's metrics")
    return values


UNIT_BYTES = 512 * 2**20  # the images of one run of a cascade (its adversarial copy and the judged ones: a few times this)


def batches_at_once(atk: Attack, x: torch.Tensor, batch_size: int, processes: int = 1,
                    device: torch.device | None = None) -> int:
    """How many of the report's batches one run of `atk` takes: its own limit, at most UNIT_BYTES of images, and no
    more than leaves every torchrun process a run of its own; one where the grouping pays only on a launch-bound
    device and `device` is not one (host_sync.deferred: the CPU, unless a test forces CUDA's schedule)."""
    from ..host_sync import deferred
    if atk.batches_at_once <= 1 or not len(x) or (atk.launch_bound_only and not deferred(device or x.device)):
        return 1
    per_batch = batch_size * 4 * int(torch.Size(x.shape[1:]).numel())  # fp32 on the device, however held
    batches = -(-len(x) // batch_size)
    return max(1, min(atk.batches_at_once, UNIT_BYTES // max(per_batch, 1), -(-batches // max(processes, 1))))


def run_chunk(s: int, e: int, unit: int, n: int, batch_size: int) -> int:
    """The images a run of several batches (images s to e of n, in runs of `unit`) attacks at once: the report's
    batch, or as much less as CUDA's out-of-memory halving made the run (batching.run_batched), so that the halving
    reaches the attack's own batch."""
    nominal = min(unit, n - s)
    return max(1, batch_size * (e - s) // nominal) if e - s < nominal else batch_size


def _attack_once(model: nn.Module, source: nn.Module, atk: Attack, key: str, budget: float, x: torch.Tensor,
                 y: torch.Tensor, correct: torch.Tensor, src_correct: torch.Tensor | None, batch_size: int,
                 device: torch.device, seed: int, n_examples: int = 0,
                 attack_amp: str = "off", keep: Sequence[int] = (),
                 state: "ReportState | None" = None) -> tuple[AttackResult, torch.Tensor, torch.Tensor | None]:
    """Craft atk on `source`, judge on `model`; returns the result row, the per-image robust mask and, with `keep`
    (positions, ascending), the judged adversarial inputs of those images (the stronger-PGD check continues from
    them; else None). Under torchrun each rank attacks and judges its batches (distributed.my_batches); the
    per-image verdicts are gathered, so every rank returns the whole result. `state`: each batch's verdicts are kept
    there and taken from there (a resumed report); a batch taken so is attacked again only where its adversarial
    inputs are needed (the examples, the images in keep)."""
    from .. import distributed as dd
    from ..training import autocast_setup
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
        adv_pred = predict_labels(model, xa, batch_size, device)
        within = norms <= budget + 1e-5 if atk.norm != "inf" else torch.ones_like(c0)
        return torch.where(within, adv_pred == y[s:e], c0), norms, adv_pred, xa

    mine: list[dict[str, Any]] = []
    kept_inputs = KeptInputs(n_examples, keep)  # judged inputs that may be needed (this rank's batches only)
    ends: dict[int, int] = {}  # batch start -> end (this rank's batches)
    kept_seconds = [0.0]  # the time the batches taken from `state` took when they ran
    t0 = time.perf_counter()
    # the images one run takes: a batch, or several where the attack runs them a batch at a time (a cascade)
    unit = batch_size * batches_at_once(atk, x, batch_size, dd.world(), device)
    own = dd.my_batches(len(x), unit)

    def chunked(s: int, e: int) -> dict[str, int]:
        return {"chunk": run_chunk(s, e, unit, len(x), batch_size)} if atk.batches_at_once > 1 else {}

    def attack(s: int, e: int):
        # each image's random draws from its own stream (the same at any batch size); the batch's, for draws made per
        # batch, by position in the whole set: sharding keeps it
        gen = RowStreams(seed, torch.arange(s, e), batch_seed=seed + s)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            return atk.run(source, x[s:e], y[s:e], generator=gen, **chunked(s, e))

    with progress(f"{key:<10}", sum(e - s for s, e in own)) as advance:
        def run(s: int, e: int) -> None:
            ends[s] = e
            where = f"{key}|{budget!r}|{seed}|{s}:{e}"
            kept = state.piece(where) if state is not None else None
            if kept is not None:
                mine.append({k: kept[k] for k in ("start", "ok", "norms", "pred", "stages")}
                            | {"stage_seconds": kept.get("stage_seconds", {})})  # states kept before it: none
                passes[0] += kept["passes"][0]
                passes[1] += kept["passes"][1]
                kept_seconds[0] += kept["seconds"]
                return
            t = time.perf_counter()
            shown = [0.0]  # images the bar moved by inside this run, taken back when the run ends (on_batch adds them)

            def notify(text: str, done: float) -> None:  # a cascade's stage beside the bar, and its share done
                moved = (e - s) * min(max(done, 0.0), 1.0) - shown[0]
                shown[0] += moved
                advance(moved, info=text)
            atk.notify = notify
            try:
                out = attack(s, e)
            finally:
                atk.notify = None
                advance(-shown[0], info="")
            done = [out.grad_passes + out.extra_backward_passes, out.forward_passes]
            passes[0] += done[0]
            passes[1] += done[1]
            ok, norms, pred, xj = judge(out.x_adv.detach(), s, e)
            kept_inputs.add(s, xj, correct[s:e], ok)
            mine.append({"start": s, "ok": ok.cpu(), "norms": norms.cpu(), "pred": pred.cpu(),
                         "stages": {stage: judge(xa.detach(), s, e)[0].cpu() for stage, xa in out.stage_images(x[s:e])},
                         "stage_seconds": dict(out.stage_seconds or {})})
            if state is not None:
                state.keep(where, {**mine[-1], "passes": done, "seconds": time.perf_counter() - t},
                           f"the report's {key} at images {s}-{e} of {len(x)}")
        dd.run_my_batches(run, len(x), unit, device, on_batch=advance)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - t0 + kept_seconds[0]

    def judged_for(wanted: Sequence[int]) -> dict[int, torch.Tensor]:
        """The judged inputs of the images `wanted` that lie in this rank's batches, on the host. A batch taken from `state`
        that holds one is attacked again (same seed, same batch: the same inputs)."""
        for s, e in ends.items():
            missing = [i for i in wanted if s <= i < e and i not in kept_inputs.rows]
            if missing:
                xj = judge(attack(s, e).x_adv.detach(), s, e)[3]
                kept_inputs.rows.update((i, xj[i - s].clone()) for i in missing)
        return {i: kept_inputs.rows[i].cpu() for i in wanted if i in kept_inputs.rows}
    if state is not None and dd.active():
        state.save()  # all this process's batches, before it waits for the others' (ReportStates)
    per_rank = dd.gather({"pieces": mine, "passes": passes, "seconds": secs})
    pieces = sorted((p for r in per_rank for p in r["pieces"]), key=lambda p: p["start"])
    secs = max(r["seconds"] for r in per_rank)  # wall time: the slowest rank
    passes = [sum(r["passes"][i] for r in per_rank) for i in (0, 1)]

    def whole(k: str) -> torch.Tensor:
        return torch.cat([p[k] for p in pieces]).to(device) if pieces else torch.zeros(0, device=device)

    first = None
    if len(keep):
        parts: dict[int, torch.Tensor] = {}
        for part in dd.gather(judged_for(keep)):
            parts.update(part)
        first = torch.stack([parts[i] for i in keep]).to(device)
    ok_adv, norms, adv_pred = whole("ok").bool(), whole("norms"), whole("pred").long()
    robust = correct & ok_adv
    succ = correct & ~ok_adv
    on_src = None
    if src_correct is not None:
        on_src = share(ok_adv[src_correct]) if src_correct.any() else 0.0
    stage_names = list(pieces[0]["stages"]) if pieces else []
    stages = {st: share(correct & torch.cat([p["stages"][st] for p in pieces]).to(device))
              for st in stage_names}
    # each stage's time over this process's batches; across processes, the slowest's (wall time, as `secs`)
    stage_seconds = {st: max(sum(p.get("stage_seconds", {}).get(st, 0.0) for p in r["pieces"]) for r in per_rank)
                     for st in stage_names}
    shown = []
    if n_examples:
        idx = example_indices(correct, succ, n_examples)
        rows = {}  # the chosen images' judged inputs, from the ranks that hold them
        for part in dd.gather(judged_for(idx)):
            rows.update(part)
        shown = pick_examples(x, {i: r.to(device) for i, r in rows.items()}, y, adv_pred, succ, idx)
    return AttackResult(
        name=key, preset=atk.describe(), norm=atk.norm, minimal=atk.minimal, budget=float(budget),
        robust_accuracy=share(robust), success_rate=float(succ.sum()) / max(1, int(correct.sum())),
        median_norm=float(norms[succ].median()) if succ.any() else None, seconds=secs,
        images_per_s=len(x) / max(secs, 1e-9), backward_passes=passes[0], forward_passes=passes[1],
        accuracy_on_source_correct=on_src, stages=stages, stage_seconds=stage_seconds, examples=shown), robust, first
