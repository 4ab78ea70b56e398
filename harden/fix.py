"""`harden.fix`: harden a base model with a recipe on a fraction of its data, then measure it before and
after under both threat models (white-box on each model, and transfer from the base)."""
from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from .recipes.base import DEFAULT_RECIPE
from .as_given import gives_back
from .checkpoint import load, sha256_file
from .data import (Data, DataTarget, check_fits, check_recorded_data, load_data, remember_columns, remember_label_names,
                   remember_orientation, subsample, untrained_classes)
from .data.arrays import is_arrays
from .data.dataset_objects import is_dataset, model_for, normalize_undone, wrapped_for
from .compiling import compiled
from .device_defaults import prepare_for_device
from .errors import HardenError, NoInputGradient
from .report.model import Report
from .report.preflight import checks_before_training
from .reparametrized import copy_module
from .report.runner import evaluate
from .models import Classifier
from .models.registry import gives_input_gradient, no_input_gradient, weights_dtype
from .data import held_out
from .data.test_copies import leave_out_test_images
from .data.unlabeled import load_unlabeled, pseudo_label
from .recipes import RECIPES, apply_overrides, get_recipe, load_recipe_config
from .recipes.base import apply_kind_defaults, resolve_auto
from .resume import state_digest
from .runtime import flushing_denormals, frozen, info, resolve_device, seed_everything, warn
from .training import TrainConfig

if TYPE_CHECKING:
    from .resume import RunState


@dataclass
class FixResult:
    model: Classifier
    base: Classifier
    config: dict[str, Any]
    train_seconds: float
    history: list[dict]
    reports: dict[str, Report] = field(default_factory=dict)  # base_white_box, fixed_white_box, fixed_transfer
    base_sha256: str = ""
    train_input_seconds: float = 0.0  # of train_seconds, those spent waiting for batches (TrainResult.input_seconds)

    def __repr__(self) -> str:
        """One line a notebook shows: the recipe, the training time and each report's line."""
        reports = "".join(f"\n  {k}: {r!r}" for k, r in self.reports.items())
        return (f"FixResult(recipe {self.config.get('name')}, {self.train_seconds:.1f} s of training, "
                f"{len(self.history)} epochs{';' if reports else ''}{reports})")

    def metadata(self) -> dict[str, Any]:
        return {"report": {k: r.summary() for k, r in self.reports.items()}}

    def change(self) -> dict[str, dict[str, float]]:
        """Hardened minus base, both white-box on the same images: per accuracy (clean, each attack, worst) the
        paired difference, its interval, McNemar's p, images gained and lost (report.compare.hardening_change);
        empty without the report."""
        from .report.compare import hardening_change
        if "base_white_box" not in self.reports or "fixed_white_box" not in self.reports:
            return {}
        fixed = self.reports["fixed_white_box"]
        return hardening_change(self.reports["base_white_box"].to_dict(), fixed.to_dict(), fixed.confidence)

    def training(self) -> dict[str, Any]:
        """What the report's JSON keeps of the training run (for the training-curve figure)."""
        extra = self.model.spec.extra
        out = {"recipe": self.config.get("name"), "params": self.config.get("params"),
               "data_fraction": extra.get("data_fraction"), "data": training_data_label(extra),
               "seconds": round(self.train_seconds, 2), "input_seconds": round(self.train_input_seconds, 2),
               "history": self.history}
        for key in ("unlabeled", "kind_defaults"):
            if extra.get(key):
                out[key] = extra[key]
        return out


def report_attacks(config: dict[str, Any], attacks: Sequence[str] | None, input_size
                   ) -> tuple[Sequence[str] | None, dict[str, float | None], list[str]]:
    """fix's report: (attacks, budgets for evaluate, notes). The attacks run at the budget the recipe trained for:
    L-inf at its eps (the seed's 8/255 unless --set eps=...); an L2 training attack's eps is the report's L2 budget,
    and L2 PGD joins the default attacks (the L-inf ones then at their own default)."""
    from .attacks import default_attacks, parse_number
    eps = check_budget(config)
    if trained_norm(config) != "2":
        return attacks, {"eps": parse_number(eps) if eps is not None else None}, []
    notes: list[str] = []
    if attacks is None:
        defaults, note = default_attacks(input_size)
        attacks, notes = [*defaults, "pgd-l2"], [note] if note else []
    return attacks, {"eps": None, "eps_l2": parse_number(eps)}, notes


REPORT_EPS = "report_eps"  # a config's --eps for a recipe that trains against no budget: the report's alone


def check_budget(config: dict[str, Any]) -> Any:
    """The recipe's eps as set (else a --eps given for the report alone; None where neither is), refused where it is
    not > 0, or above 1 for an L-inf budget: said as the recipe's setting, before the report's attacks, which take it
    as their budget, say it as their own."""
    from .attacks import parse_number
    from .attacks.base import in_255_hint
    trains = "eps" in config["params"]
    eps = config["params"]["eps"] if trains else config.get(REPORT_EPS)
    what = "the budget it trains for and the report measures at" if trains else "the budget the report measures at"
    if eps is not None and not parse_number(eps) > 0:
        raise HardenError(f"{config['name']}: eps, {what}, must be > 0, got {eps} (--eps"
                          f"{', --set eps=...' if trains else ''}).")
    if eps is not None and parse_number(eps) > 1 and (trained_norm(config) == "inf" or not trains):
        raise HardenError(f"{config['name']}: eps, {what.replace('the budget', 'the L-inf budget')}, is in pixel "
                          f"units of [0, 1], got {eps}{in_255_hint(parse_number(eps), '--eps ')}.")
    return eps


def trained_norm(config: dict[str, Any]) -> str | None:
    """The norm of the attack a recipe trains against ("inf", "2"), or None for a recipe without one."""
    params = config.get("params", {})
    if "attack" not in params or "eps" not in params:
        return None
    from .attacks.base import norm_of  # None for an attack setting of the recipe's own (said when it trains)
    return norm_of(params["attack"])


def _check_minimal_budgets(config: dict[str, Any], eps_l2: float | None, max_l0: float | None) -> None:
    """The report's L2 and L0 budgets, refused before any training: not > 0, or an L2 budget beside an L2 recipe's
    own (its eps is the report's L2 budget)."""
    for flag, value in (("--eps-l2", eps_l2), ("--max-l0", max_l0)):
        if value is not None and not value > 0:
            raise HardenError(f"{flag} is a budget, > 0; got {value:g}.")
    if eps_l2 is not None and trained_norm(config) == "2":
        raise HardenError(f"{config['name']} trains against an L2 attacker: its eps ({config['params']['eps']}) is the "
                          "report's L2 budget; give it with --eps, not --eps-l2.")


def training_data_label(extra: dict[str, Any]) -> str:
    """'10% labelled + 45,000 unlabeled': what the hardened model was trained on."""
    frac = extra.get("data_fraction")
    text = f"{100 * frac:g}% labelled" if isinstance(frac, (int, float)) else "labelled data"
    subset = extra.get("subset") or {}
    if subset.get("classes_rounded_up_to_one"):  # the share it really trained on, not the one asked for
        text = f"{subset['n']:,} labelled images (--data-frac {frac:g}, every class kept)"
    if extra.get("labels"):  # fix --labels predicted
        text = text.replace("labelled", "of the images") + ", labelled by the base's predictions"
    pool = extra.get("unlabeled")
    return text + (f" + {pool['used']:,} unlabeled (pseudo-labels from the base)" if pool else "")


def recipe_config(recipe: str = DEFAULT_RECIPE, sets: Sequence[str] = (), epochs: int | None = None,
                  batch_size: int | None = None, lr: float | None = None, eps: str | float | None = None
                  ) -> dict[str, Any]:
    """The recipe file (a name or a .toml) with `--set` and the --epochs / --batch-size / --lr / --eps flags applied,
    each recorded as the user's choice (data-kind defaults never override them). Bad settings fail here, before any
    work."""
    sets = list(sets)
    config = load_recipe_config(recipe)
    trains = "eps" in config["params"]  # gda-brelu and patch-ft train against no budget: --eps is the report's
    if eps is not None and trains:
        given = [s.split("=", 1)[1].strip() for s in sets if s.split("=", 1)[0].strip() == "eps" and "=" in s]
        from .attacks import parse_number
        if given and abs(parse_number(given[-1]) - parse_number(eps)) > 1e-12:
            raise HardenError(f"--eps {eps} and --set eps={given[-1]} disagree: give the budget once.")
        sets.append(f"eps={eps}")
    config = apply_overrides(config, sets)
    if eps is not None and not trains:
        config[REPORT_EPS] = str(eps)
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            config["train"][key] = value
            config["explicit"].append(key)
    check_budget(config)
    return config


def _fingerprint(path: Path) -> tuple:
    """Size and modification time of a checkpoint file (or of each file of a hub folder): what a write changes."""
    from .hub_cache import local
    path = Path(local(path, "model"))
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


@flushing_denormals
@gives_back("base")  # a module of the caller's back in its mode, on its device (it is trained as a copy)
def fix(base: str | Path | Classifier, data: str | Data | None = None, *, recipe: str | dict = DEFAULT_RECIPE,
        sets: Sequence[str] = (), data_frac: float = 0.1, seed: int = 0, epochs: int | None = None,
        batch_size: int | None = None, lr: float | None = None, eps: str | float | None = None,
        device: str | torch.device = "auto", report_n: int | None = 500, attacks: Sequence[str] | None = None,
        report: bool = True,
        base_name: str | None = None, metrics: bool = True, masking_checks: bool = True,
        model_flags: dict | None = None, curve: Sequence[float] | None = None,
        curve_cascades: bool = True, amp: str = "off", sync_bn: bool = False, attack_amp: str = "off",
        data_target: dict | None = None, unlabeled: str | Path | Data | None = None,
        compile: bool = False, unfold_bn: str = "auto", bpda: bool = True,
        state: "RunState | None" = None, labels: str = "given", eps_l2: float | None = None,
        max_l0: float | None = None, time_budget: str | float | None = None,
        started: float | None = None) -> FixResult:
    """Harden `base` with `recipe` (a name or a recipe .toml) on a stratified `data_frac` of its training data.
    `eps`: the budget the recipe trains for and the report attacks at (the recipe's eps, as `sets=["eps=..."]`; the
    report's alone for a recipe that trains against none: gda-brelu, patch-ft). `eps_l2` and `max_l0`: the report's
    L2 and L0 budgets (evaluate's defaults where None; an L2 recipe's L2 budget is its eps).
    `metrics` and `masking_checks` switch seed 004's metrics and the gradient-masking checks of the report;
    `model_flags` (harden.load's arch, num_classes, ..., key) describe a base that harden did not write.
    `amp` (off | bf16 | fp16) is the training step's precision, `attack_amp` the report attacks' one; `sync_bn`
    synchronises BatchNorm statistics across torchrun's ranks (CUDA). Under torchrun every rank calls fix and
    trains on its share; the reports are sharded (see harden/distributed.py). `data_target`: DataTarget's workers,
    class_map and skip_unreadable for image files. `unlabeled`: a source of images without labels (robust
    self-training): the base labels them once and the recipe mixes them into its batches (at, fixer). `compile`:
    torch.compile the network for training and the reports (compiling.py). `unfold_bn` (auto | on | off): BatchNorm
    inserted for training after the convolutions an exporter folded one into, folded back after (bn_unfold.wanted
    says where). `bpda`: rounding in the model's forward passes gradients straight through (bpda.py), in training
    (its attack and its updates) and in the reports' attacks. `state`: where the run keeps its training state, to
    resume from it or after it (resume.py); the caller removes it (`state.finish()`) once the hardened model is
    written. `time_budget` ("10m", or seconds): the whole run, report included, fitted to it from `started` (a
    time.perf_counter(); default: the call), the epochs and the report's images chosen by timing them
    (fix_budget.py). `labels` "predicted": the data's images (labelled or not) labelled by the base's clean predictions, for
    training and the reports (data/predicted.py)."""
    from .data.predicted import check_labels, data_for_module, images_to_predict, labelled_by
    from .fix_budget import budget_seconds
    started = time.perf_counter() if started is None else started
    budget_s = budget_seconds(time_budget)
    check_labels(labels)
    from . import bn_unfold
    bn_unfold.check_mode(unfold_bn)
    device = resolve_device(device)
    if isinstance(recipe, dict):  # a config of the caller's own, its flags applied (recipe_config checks its own)
        config = copy.deepcopy(recipe)
        check_budget(config)
    else:
        config = recipe_config(recipe, sets, epochs, batch_size, lr, eps)
    _check_minimal_budgets(config, eps_l2, max_l0)  # before the training, which they would outlive
    rcp = get_recipe(config["name"])
    if unlabeled is not None and not rcp.takes_unlabeled:
        takers = ", ".join(sorted(k for k, v in RECIPES.items() if v.takes_unlabeled))
        raise HardenError(f"--unlabeled: recipe {config['name']} cannot use unlabeled images (recipes that can: "
                          f"{takers}).")
    if isinstance(base, torch.nn.Module) and not isinstance(base, Classifier):
        # a module of the caller's, taking [0, 1] pixels: wrapped at its data's size and channels
        if data is None:
            raise HardenError("fix: a plain nn.Module needs its data (images and labels in memory, a Data, or what "
                              "--data takes).")
        data = data_for_module(data, labels)
        # at the data's size; a dataset's Normalize (undone to read pixels) and resize given to it
        base = model_for(base, data) if normalize_undone(data) else wrapped_for(base, data)
    if isinstance(base, Classifier):
        base_model, base_sha, base_name = base, state_digest(base), base_name or "base"
        model = copy_module(base)
    else:
        base_model, base_sha = load(base, device=device, **(model_flags or {})), sha256_file(base)
        base_name, untouched = base_name or Path(base).name, _fingerprint(Path(base))
        model = copy_module(base_model)
    weights = weights_dtype(model.net)
    if weights in (torch.float16, torch.bfloat16):
        # an optimizer's steps on half-precision weights underflow (Adam's diverged at its second step on MNIST):
        # the copy trains in float32, as mixed precision keeps its master weights (--amp trains in half)
        model.float()
        info(f"{base_name}'s weights are {str(weights).replace('torch.', '')}: the hardened copy trains, is reported on "
             "and is written in float32 (the base is reported on as it is)")
    if base_model.spec.extra.get("recipe"):
        from .model_flags import flags_for
        # its metadata (recipe, settings, subset, report, base_sha256) describes that hardening: a second one on top
        # would mix the two records, and a patch recipe's modules would be patched again
        raise HardenError(f"{base_name} is already hardened (recipe {base_model.spec.extra.get('recipe')}, from the "
                          f"base of sha256 {str(base_model.spec.extra.get('base_sha256', '?'))[:12]}...); fix that base "
                          "instead (with --eps, --epochs or another recipe for a stronger result). To fine-tune these "
                          "weights further as a new base, write them as a plain state dict (harden export "
                          f"{base_name} -o weights.pth) and fix that file with the flags its metadata holds: "
                          f"{flags_for(base_model.spec)}.")
    if report:  # the report's L0 budget against the input's features, before the training it would outlive
        from .report.runner import DEFAULT_MAX_L0, attack_set, check_l0_counts
        specs, budgets, _ = report_attacks(config, attacks, base_model.spec.input_size)
        check_l0_counts(attack_set(specs, base_model.spec.input_size, budgets.get("eps")),
                        DEFAULT_MAX_L0 if max_l0 is None else max_l0,
                        (base_model.spec.in_chans, *base_model.spec.input_size))
    if isinstance(data, Data):
        ds = data
    else:
        if not is_arrays(data):
            given, data = data, data or base_model.spec.data
            if not data:
                raise HardenError("The checkpoint does not name its data; pass --data.")
            if not given:
                check_recorded_data(data)
        target = DataTarget.for_model(base_model, **(data_target or {}))
        # images alone (a folder, a pool, a dataset without labels) where labels are to be the base's answers; images
        # and labels in memory as an .npz of the same arrays
        predicted = labels == "predicted" and (is_dataset(data) or not is_arrays(data))  # as data_for reads it
        ds = images_to_predict(data, target, {}, base_name) if predicted else load_data(data, target)
    model_for(base_model, ds)  # a dataset's Normalize: the model's where its own was assumed, else compared with it
    model_for(model, ds, say=False)  # and the copy that is hardened
    ds = held_out.hold_out_for_training(ds)
    if labels == "predicted":  # after the hold-out, drawn as a later `eval --labels predicted` draws it
        ds = labelled_by(base_model.to(device), ds, device)
    check_fits(ds, base_model.spec.in_chans, base_model.spec.num_classes)
    # two seeded images of the model's shape, for the probes of its forward below (gradient, rounding, output kind)
    probe = torch.rand(2, model.spec.in_chans, *model.spec.input_size, generator=torch.Generator().manual_seed(0))
    detour = None  # a forward that leaves torch (numpy, PIL) and comes back: trained and attacked through it (BPDA)
    if not gives_input_gradient(base_model):  # every recipe's result is judged white-box: say so before training
        from .bpda import detoured
        detour = detoured(base_model.to(device), probe.to(device)) if bpda else None
        if detour is None:
            raise NoInputGradient(no_input_gradient(type(base_model.net).__name__, base_model.net))
        info(f"{base_name}'s forward leaves torch (numpy, PIL) and comes back at {detour} a pass: training and its "
             "report pass gradients straight through that detour as if it were the identity (BPDA; --no-bpda: "
             "refused)")
        model.spec.extra["trained_through_detour"] = detour
    train_ds = subsample(ds, data_frac, seed)
    # the same image under train/ and val/ (or twice in one split that `fix` held a share out of): trained on, the
    # report would count it as unseen (with --no-report the test split is not read at all, as below)
    train_ds, copies = leave_out_test_images(train_ds, ds) if report else (train_ds, 0)
    if copies:
        warn(f"{copies:,} of the training images of {ds.source} are the test split's images (byte-for-byte copies, or "
             "the same pixels): left out of training, so that the report counts no image the model was trained on. "
             "Remove the duplicates from the data for other tools' sake too.")
        train_ds.subset = {**train_ds.subset, "test_copies_left_out": copies}
        if train_ds.n_train == 0:
            raise HardenError(f"Every one of the {copies:,} training images drawn from {ds.source} is a copy of a test "
                              "image, so nothing is left to train on: give training images that are not the test "
                              "split's (or a data set whose test split is its own).")
    untrained = untrained_classes(train_ds, ds) if report and labels != "predicted" else []
    if untrained:
        shown = ", ".join(untrained[:5]) + (f" and {len(untrained) - 5:,} more" if len(untrained) > 5 else "")
        one = len(untrained) == 1
        warn(f"{len(untrained):,} of the test split's classes {'has' if one else 'have'} no image among the "
             f"{train_ds.n_train:,} training images drawn from {ds.source} ({shown}): hardening never shows the model "
             f"{'it' if one else 'them'}, and its accuracy on {'it' if one else 'them'} tends to fall (the report's "
             "per-class figures show it). Give the training split images of every class.")
    # on the report's test images; with --no-report on the images it trains on (it reads no test split)
    for tripped in checks_before_training(base_model.to(device), ds if report else train_ds, device, seed,
                                          "test" if report else "train"):
        warn(f"{base_name}: {tripped['check']}: {tripped['detail']}.")
    kind_defaults = apply_kind_defaults(config, ds.kind)
    if kind_defaults:
        info(f"{ds.kind} data: {', '.join(f'{k}={v}' for k, v in kind_defaults['applied'].items())} "
             f"(recipes/{config['name']}.toml: {kind_defaults['why']})")
    pseudo = None
    if unlabeled is not None:
        pool = unlabeled if isinstance(unlabeled, Data) else load_unlabeled(
            unlabeled, DataTarget.for_model(base_model, **(data_target or {})))
        pool, tested = leave_out_test_images(pool, ds)
        if tested and not pool.n_train:
            raise HardenError(f"--unlabeled {pool.source}: all {tested:,} of its images are {ds.source}'s test "
                              "images, which the report tests on, so none is left to train on (training on them, even "
                              "unlabelled, would count trained-on images in the report); give images the report "
                              "does not test on (the training split's folder, or other photographs of the same kind).")
        if tested:
            info(f"unlabeled: {tested:,} images of {pool.source} are the report's test images (or byte-for-byte copies "
                 "of them), left out of the pool "
                 "(training on them, even unlabelled, would count trained-on images in the report)")
        p = config["params"]
        pseudo = pseudo_label(base_model, pool, threshold=float(p.get("pseudo_threshold", 0.0)),
                              balance=float(p.get("pseudo_balance", 0.0)), limit=int(p.get("unlabeled_max", 0)),
                              seed=seed, device=device)
        pseudo.meta.update(ratio=float(p.get("unlabeled_ratio", 0.5)),
                           teacher_temperature=float(p.get("teacher_temperature", 0.0)))
        m = pseudo.meta
        info(f"unlabeled: {m['used']:,} of {m['listed']:,} images of {m['source']} pseudo-labelled by the base "
             f"(dropped: {m['dropped_below_threshold']} below the threshold, {m['dropped_for_balance']} for class "
             "balance" + (f"; agreement with the source's own labels, unused: "
                          f"{m['agreement_with_source_labels']['rate']:.3f}" if "agreement_with_source_labels" in m
                          else "") + ")" + (f"; adapted: {m['adapted']}" if m.get("adapted") else ""))
    if isinstance(data, (str, os.PathLike)):
        # the hardened file names what it was hardened and reported on (a base's own data, or none, may be other
        # files: its test split may hold images of this data's training part), so its later `eval` needs no --data
        # and tests where the fix's report did
        from .data.from_code import is_code_spec, remembered_code
        from .data.shard_patterns import is_pattern
        model.spec.data = str(Path(data).resolve()) if Path(data).exists() else \
            str(Path(data).absolute()) if is_pattern(str(data)) else \
            remembered_code(str(data)) if is_code_spec(str(data)) else str(data)
    seed_everything(seed)
    rcp.attach(model, config["params"])
    prepare_for_device(model.to(device), device)  # channels_last on CUDA for convolutional networks
    from . import distributed
    model.spec.extra.update({"recipe": config["name"], "recipe_params": config["params"],
                             "recipe_train": config["train"], "data_fraction": data_frac, "seed": seed,
                             "precision": amp, "processes": distributed.world(),
                             "subset": train_ds.subset, "base_sha256": base_sha})
    held = held_out.record(ds)
    if held:  # a later eval on the same data tests on these images again
        model.spec.extra[held_out.KEY] = held
    if labels == "predicted":
        model.spec.extra["labels"] = "the base's clean predictions (fix --labels predicted)"
    remember_orientation(model, (data_target or {}).get("exif_orientation", "auto"), ds)
    remember_columns(model, data_target, ds)
    if labels != "predicted":  # the classes it was trained under, by name (a base that names none)
        remember_label_names(model, ds)
    if kind_defaults:
        model.spec.extra["kind_defaults"] = kind_defaults
    train_cfg = dict(config["train"])
    auto_epochs = "auto" in str(train_cfg.get("epochs"))
    auto_batch = "auto" in str(train_cfg.get("batch_size"))
    train_cfg["batch_size"] = resolve_auto("batch_size", train_cfg["batch_size"],
                                           lambda: rcp.auto_batch_size(train_ds.n_train))
    train_cfg["batch_size"] = whole_program_chunks(model, train_cfg["batch_size"], auto_batch)
    train_cfg["epochs"] = resolve_auto("epochs", train_cfg["epochs"], lambda: rcp.auto_epochs(data_frac))
    if pseudo is not None:
        if auto_epochs:
            train_cfg["epochs"] = epochs_with_pool(train_cfg["epochs"], train_ds.n_train, pseudo.data.n_train,
                                                   train_cfg["batch_size"], pseudo.meta["ratio"],
                                                   float(config["params"].get("val_frac") or 0.0),
                                                   int(config["params"].get("val_max") or 0))
        model.spec.extra["unlabeled"] = pseudo.meta
    if train_cfg.get("augment", "auto") == "auto":
        own = (getattr(ds, "from_dataset", None) or {}).get("train_augments")
        train_cfg["augment"] = "none" if own else rcp.auto_augment(ds)
        if own and pseudo is not None:  # the pool's files pass through no transform of the dataset's
            train_cfg["unlabeled_augment"] = rcp.auto_augment(ds)
        if own:  # its crops and flips on top of the dataset's would shift and crop every image twice
            info(f"the training dataset's transform augments its images ({', '.join(own)}): harden adds no "
                 "augmentation of its own (augment none; --set augment=... adds it)"
                 + (f"; the unlabeled images, which it does not read, get harden's {train_cfg['unlabeled_augment']}"
                    if pseudo is not None else ""))
    before = state_digest(model.net)
    if bn_unfold.wanted(model, unfold_bn, trains_base=not rcp.frozen_base()):
        model.spec.extra["unfolded_batchnorm"] = bn_unfold.insert(model, train_ds, device, seed=seed)
    from .bpda import rounds, training_through_rounding
    rounding = rounds(model, probe.to(device)) if bpda else None  # what the training passes gradients through
    if rounding:
        info(f"the model rounds ({rounding} a forward pass): training passes gradients straight through it, for its "
             "attacks (BPDA) and its updates (--no-bpda: not)")
        model.spec.extra["trained_through_rounding"] = rounding
    from .outputs import PROBABILITIES, detect_output_kind, trained_as_log_probabilities
    with frozen(model):
        probabilities = detect_output_kind(model, probe.to(device)) == PROBABILITIES
    if probabilities:
        info("the model returns probabilities (a softmax at its end): training takes their logarithm, as the report's "
             "attacks do, so its loss and its attack see log-probabilities; the model is written as it is")

    def trained(m: Classifier, d: Data, c: TrainConfig):
        with compiled(m, compile), training_through_rounding(rounding, m if detour else None), \
                trained_as_log_probabilities(m, probabilities):
            return rcp.train(m, d, config["params"], c, device,
                             **({"unlabeled": pseudo.data} if pseudo is not None else {}))
    def report_kw(on: Classifier) -> tuple[dict[str, Any], list[str]]:
        """evaluate's settings for the fix's reports (of `on`: its input size), and the notes on what was set."""
        specs, budgets, set_notes = report_attacks(config, attacks, on.spec.input_size)
        budgets.update({k: v for k, v in (("eps_l2", eps_l2), ("max_l0", max_l0)) if v is not None})
        return dict(attacks=specs, n=report_n, device=device, seed=seed, masking_checks=masking_checks, curve=curve,
                    curve_cascades=curve_cascades, attack_amp=attack_amp, compile=compile, bpda=bpda,
                    **budgets), set_notes
    epoch_plan = None
    if budget_s is not None:
        from .fix_budget import epochs_in_budget

        def base_report(k: int) -> None:  # timed before training: the report's share of the budget
            evaluate(base_model, ds, model_name=base_name, metrics=metrics, **{**report_kw(base_model)[0], "n": k})
        epoch_plan = epochs_in_budget(budget_s, started, train_cfg, train_ds, model, trained, report, state,
                                       dict(seed=seed, amp=amp, sync_bn=sync_bn), base_report, ds.n_test)
        train_cfg.update(epochs=epoch_plan.epochs, extend=0.0)
        model.spec.extra["time_budget"] = {"training": epoch_plan.summary()}
    model.spec.extra["recipe_train"] = dict(train_cfg)  # as run: "auto" epochs, batch and augmentation resolved
    cfg = TrainConfig(seed=seed, amp=amp, sync_bn=sync_bn, **train_cfg)
    if epoch_plan is not None:  # the share's end: an epoch that would run past it is not started (the report's time)
        cfg.deadline = time.perf_counter() + epoch_plan.share_s
    asked = "" if not train_ds.subset.get("classes_rounded_up_to_one") else ", every class kept"
    info(f"recipe {config['name']} ({config['file']}) on {train_ds.n_train} images "
         f"({data_frac:g} of {ds.source}{asked}), {cfg.epochs} epochs, batch {cfg.batch_size}")
    if state is not None:  # what an uninterrupted run's result depends on: a resume must match it all
        from . import resume
        state.begin({"base_sha256": base_sha, "base": resume.spec_settings(base_model.spec), "recipe": config["name"],
                     "params": config["params"], "train": train_cfg, "data": ds.source, "subset": train_ds.subset,
                     "seed": seed, "precision": amp, "sync_bn": sync_bn, "processes": distributed.world(),
                     "unlabeled": pseudo.meta if pseudo is not None else None, "unfold_bn": unfold_bn,
                     "compile": compile, "device": device.type,
                     "through_rounding": rounding,
                     **({"time_budget": epoch_plan.summary()} if epoch_plan is not None else {})})
    with state.active() if state is not None else contextlib.nullcontext():
        result = trained(model, train_ds, cfg)
    if epoch_plan is not None and result.out_of_time:
        model.spec.extra["time_budget"]["training"]["cut_short"] = result.out_of_time
    if model.spec.extra.get("unfolded_batchnorm"):
        bn_unfold.fold_checked(model, train_ds, device)
    if rcp.frozen_base() and state_digest(model.net) != before:
        raise RuntimeError("internal error: the frozen base changed during training")
    out = FixResult(model=model.eval(), base=base_model.eval(), config=config, train_seconds=result.seconds,
                    history=result.history, base_sha256=base_sha, train_input_seconds=result.input_seconds)
    model.spec.extra["train_seconds"] = round(result.seconds, 2)
    if report:
        kw, set_notes = report_kw(model)
        kw["state"] = state.reports if state is not None else None
        fixed_name = f"{base_name} + {config['name']}"

        def reports_on(k: int | None) -> dict[str, Report]:
            on = {**kw, "n": k}
            done = {"base_white_box": evaluate(base_model, ds, model_name=base_name, metrics=metrics, **on)}
            if not isinstance(base, torch.nn.Module):  # the base's file, as its artifact store names it
                done["base_white_box"].provenance["file_sha256"] = base_sha
            done["fixed_white_box"] = evaluate(model, ds, model_name=fixed_name, metrics=metrics, **on)
            done["fixed_transfer"] = evaluate(model, ds, model_name=fixed_name, craft_on=base_model,
                                              craft_name=base_name, metrics=False, **on)
            return done
        with state.reports.stoppable() if state is not None else contextlib.nullcontext():
            if budget_s is None:
                out.reports.update(reports_on(report_n))
            else:
                from .fix_budget import report_images, say_budget
                most = min(report_n, ds.n_test) if report_n else ds.n_test
                k, report_plan = report_images(budget_s, started, most, reports_on,
                                               state.reports.memory() if state is not None else None)
                out.reports.update(reports_on(k))
                say_budget(out.reports, model, epoch_plan, report_plan, budget_s, started)
        from .report.checks import chance_after_hardening, transfer_vs_white_box
        for key in ("fixed_white_box", "fixed_transfer"):  # at chance where the base was not: the hardening's doing
            chance_after_hardening(out.reports["base_white_box"].masking, out.reports["base_white_box"].clean_accuracy,
                                   out.reports[key].masking)
        wb_vals = {a.name: a.robust_accuracy for a in out.reports["fixed_white_box"].attacks}
        tr_vals = {a.name: a.robust_accuracy for a in out.reports["fixed_transfer"].attacks}
        f = transfer_vs_white_box(wb_vals, tr_vals, out.reports["fixed_white_box"].n) if masking_checks else None
        if f is not None:
            out.reports["fixed_white_box"].masking.append(f)
        notes = [f"hardened on {training_data_label(model.spec.extra)}"] + (
            [f"settings for {kind_defaults['kind']} data: " + ", ".join(f"{k}={v}" for k, v in
                                                                        kind_defaults["applied"].items())
             + f" ({kind_defaults['why']})"] if kind_defaults else []) + (
            [f"trained with BatchNorm after {model.spec.extra['unfolded_batchnorm']} convolutions, folded back into "
             "them (--unfold-bn)"] if model.spec.extra.get("unfolded_batchnorm") else [])
        for key in ("fixed_white_box", "fixed_transfer"):
            out.reports[key].notes[:0] = notes
        for r in out.reports.values():
            r.notes[:0] = set_notes
        model.spec.extra.update(out.metadata())
    if not isinstance(base, Classifier) and _fingerprint(Path(base)) != untouched:
        raise RuntimeError(f"internal error: the input checkpoint {base} changed during fix")
    return out


def whole_program_chunks(model: torch.nn.Module, batch_size: int, auto: bool) -> int:
    """A torch.export program of a fixed batch runs each call in chunks of that batch, the last padded with copies of
    one image, which BatchNorm's batch statistics in training then count: an automatic training batch is rounded up
    to whole chunks on every process; a batch given that is not gets a warning."""
    from . import distributed
    from .export import exported_program_batch
    from .runtime import info, warn
    chunk = exported_program_batch(model) or 0
    unit = chunk * distributed.world()
    if chunk <= 1 or batch_size % unit == 0:
        return batch_size
    whole = -(-batch_size // unit) * unit
    each = f" on each of {distributed.world()} processes" if distributed.world() > 1 else ""
    if auto:
        info(f"training batch {whole} (not {batch_size}): whole chunks of the program's fixed batch of {chunk}{each}")
        return whole
    warn(f"training batch {batch_size} is not a whole number of the program's fixed batch of {chunk}{each}: each "
         f"step's last chunk is padded with copies of one image, which BatchNorm's batch statistics count; "
         f"--batch-size {whole} avoids it")
    return batch_size


def epochs_with_pool(epochs: int, n_labelled: int, n_pool: int, batch_size: int, ratio: float,
                     val_frac: float = 0.0, val_max: int = 0) -> int:
    """With pseudo-labelled images and automatic epochs: enough epochs (passes over the labelled images the recipe
    trains on, its validation slice `val_frac`, at most `val_max`, left out) that the pool is seen about once, never
    fewer than without it and at most twice as many (the cost doubles at most)."""
    import math
    from .data.unlabeled import extra_per_batch
    held = round(n_labelled * val_frac)
    steps = max(1, math.ceil((n_labelled - (min(held, val_max) if val_max else held)) / batch_size))
    once = math.ceil(n_pool / (extra_per_batch(batch_size, ratio) * steps))
    return int(min(2 * epochs, max(epochs, once)))
