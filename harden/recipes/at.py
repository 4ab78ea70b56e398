"""Recipe `at`: adversarial fine-tuning of every weight, from the user's checkpoint, on a small data fraction.

Losses: PGD-AT (Madry et al. 2018; `mix` > 0 adds the clean half of seed 000 section 4.4's pairs), TRADES (Zhang
et al. 2019: CE on clean + beta KL(f(x') || f(x)) with x' maximising that KL) and MART (Wang et al. 2020).
Training attacks: PGD with a random start (all steps, the high-loss last iterate), FGSM-RS (Wong et al. 2020),
N-FGSM (de Jorge et al. 2022). Optionally adversarial weight perturbation (AWP, Wu et al. 2020: `awp_gamma`).
An eps ramp over the first epochs. A validation slice carved from the fraction (stratified, seeded, recorded in
the metadata) is attacked with PGD after every epoch: the best epoch's weights are kept (robust overfitting, Rice
et al. 2020) and training stops on catastrophic overfitting (Wong et al. 2020 section 5: a single-step training
attack that the model has learned to defeat on the validation slice while PGD still succeeds, or validation PGD
accuracy collapsing while accuracy on the training examples climbs), saying so.

ART's trainers (AdversarialTrainer, the Madry and FBF trainers, TRADES) each run a loop of their own, without
the data-fraction subsets, validation-based weight selection or shared progress and metadata, so `at` is the
shared loop with harden's batched attacks."""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..attacks import build_attack
from ..attacks.base import ascent_direction, project, uniform_noise
from ..awp import WeightPerturbation
from ..data import Data, index_hash, stratified_sample
from ..data.held import held_images
from ..data.unlabeled import MixedData
from ..errors import HardenError
from ..host_sync import read
from ..reparametrized import copy_module
from ..runtime import frozen
from ..training import Monitor, TrainConfig, fit, focal_loss
from .base import register_recipe, training_attack
from .finetune import FineTuneRecipe

LOSSES = ("pgd-at", "trades", "mart")
MIN_STEPS_PER_EPOCH = 128  # batch_size = "auto" (see AdversarialTraining.auto_batch_size)


def _logp(z: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(z.float(), dim=1)  # outputs that are log-probabilities already are unchanged by it


def trades_example(model, x: torch.Tensor, eps: float, step: float, steps: int,
                   generator: torch.Generator, norm: str = "inf") -> torch.Tensor:
    """TRADES' inner maximisation: PGD on KL(f(x') || f(x)) from x + 0.001 N(0, 1), all steps, in the L-inf ball
    (signed steps) or the L2 ball (normalised-gradient steps, as Zhang et al.'s code does for `distance='l_2'`)."""
    with torch.no_grad():
        p_clean = _logp(model(x)).exp()
    xa = (x + 0.001 * uniform_noise(x.shape, generator, x.device, normal=True)).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        kl = F.kl_div(_logp(model(xa)), p_clean, reduction="sum")
        (g,) = torch.autograd.grad(kl, xa)
        xa = project(xa.detach() + step * ascent_direction(g, norm), x, eps, norm)
    return xa.detach()


def mart_loss(z_adv: torch.Tensor, z_clean: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """MART (Wang et al. 2020, eq. 6): boosted CE on the adversarial example plus beta KL(p_clean || p_adv)
    weighted by 1 - p_y(clean), so misclassified clean images weigh more."""
    lp_adv = _logp(z_adv)
    p_adv = lp_adv.exp()
    other = p_adv.scatter(1, y[:, None], 0.0).amax(1)
    bce = F.nll_loss(lp_adv, y) - torch.log(1.0001 - other).mean()
    p_clean = _logp(z_clean).exp()
    kl = F.kl_div(lp_adv, p_clean, reduction="none").sum(1)
    py = p_clean.gather(1, y[:, None]).squeeze(1)
    return bce + beta * (kl * (1 - py)).mean()


def ramp_length(eps_ramp: Any, epochs: int) -> float:
    """Epochs of the eps ramp: a number, or auto = a fifth of the run (MNIST at 1%, 30 epochs: a 6-epoch ramp
    gave AutoAttack 25.5% where a 2-epoch one gave 1.5%; BENCHMARKS.md)."""
    if str(eps_ramp).strip().lower() == "auto":
        return epochs / 5
    try:
        value = float(eps_ramp)
    except ValueError:
        raise HardenError(f"at: eps_ramp takes a number of epochs or auto, got {eps_ramp!r}.") from None
    if value < 0:
        raise HardenError(f"at: eps_ramp must be >= 0, got {value}.")
    return value


def split_validation(data: Data, frac: float, seed: int, most: int = 0) -> tuple[Data, Data | None, dict]:
    """A stratified, seeded slice of the training fraction held out for validation: `frac` of it, at most `most`
    images (0: no cap); the rest trains."""
    if frac <= 0:
        return data, None, {}
    if not (0 < frac < 1):
        raise HardenError(f"at: val_frac must be in [0, 1), got {frac}.")
    if most < 0:
        raise HardenError(f"at: val_max must be 0 (no cap) or a number of images, got {most}.")
    n = len(data.y_train)
    # an exact count, each class its share (a per-class draw of at least one image had held out every image of a
    # subset of one image a class: 1,000 classes of ImageNet's at --data-frac 0.001)
    k = max(1, int(round(frac * n)))
    val_idx = stratified_sample(data.y_train, min(k, most) if most else k, seed + 7919)
    keep = np.setdiff1d(np.arange(len(data.y_train)), val_idx)
    if len(keep) < 2:
        raise HardenError(f"at: the training subset ({len(data.y_train)} images) is too small to hold out a "
                          f"validation slice ({frac:g} of it) and still train: raise --data-frac, or --set val_frac=0 "
                          "to train on all of it and keep the last epoch.")
    train, val = data.take_train(keep), data.take_train(val_idx, subset={})
    return train, val, {"fraction_of_subset": frac, "n": int(len(val_idx)), "index_sha256": index_hash(val_idx)}


SUSTAINED_EPOCHS = 2  # either sign must hold this many epochs in a row: on digits at 16x16 and eps 0.2 validation
# PGD accuracy fell 0.19 -> 0.08 for one epoch and the run then rose to 0.31, and on MNIST at 0.3 FGSM-RS was far
# ahead of PGD for a ramp epoch before both rose (BENCHMARKS.md); a real collapse persists
DEFEATED_RATIO, DEFEATED_GAP, DEFEATED_CLIMB = 0.25, 0.15, 0.10  # validation PGD accuracy below a quarter of the
# training attack's, 15 points apart, the training attack's accuracy 10 points above its first full-budget epoch:
# after the ramp, healthy single-step runs kept PGD at 0.51-0.96 of it (digits, MNIST; CIFAR-10 0.67-0.77); the runs
# that never became robust fell to 0.00-0.11 while it climbed. A standard (non-robust) model already shows a low
# ratio (CIFAR-10 ResNet-20 after one ramp epoch: FGSM-RS 0.17, PGD 0.004), which is why the climb is required and
# the eps ramp's epochs are left out (BENCHMARKS.md)


def catastrophic_overfitting(history: list[dict], full_budget_epoch: int = 1) -> str | None:
    """Catastrophic overfitting (Wong et al. 2020, section 5; de Jorge et al. 2022): the model has learned to defeat
    a single-step training attack rather than to be robust. Either sign stops training (the best epoch's weights
    are kept by the loop):
    - defeated: from `full_budget_epoch` on (the first epoch trained at the full eps, after the ramp), the training
      attack's accuracy on the validation slice (`val_train_attack`, measured for single-step attacks) has climbed
      DEFEATED_CLIMB above that epoch's and leaves four times as many images correctly classified as PGD does, 15
      points or more apart, for SUSTAINED_EPOCHS epochs in a row. N-FGSM's examples leave the eps ball, so this
      sign seldom fires for it;
    - collapsed: validation PGD accuracy below half its best (and at least 10 points and three standard errors
      lower) for SUSTAINED_EPOCHS epochs in a row, while the accuracy on the training examples is at least what it
      was at that best epoch."""
    if not history or "val_robust" not in history[-1]:
        return None
    now = history[-1]
    full = [h for h in history if h["epoch"] >= full_budget_epoch and "val_train_attack" in h]

    def defeated(h: dict) -> bool:
        single = h["val_train_attack"]
        return (h["val_robust"] < DEFEATED_RATIO * single and single - h["val_robust"] >= DEFEATED_GAP
                and single - full[0]["val_train_attack"] >= DEFEATED_CLIMB)

    if len(full) > SUSTAINED_EPOCHS and all(defeated(h) for h in full[-SUSTAINED_EPOCHS:]):
        return (f"catastrophic overfitting: the training attack leaves {now['val_train_attack']:.3f} of the validation "
                f"images correctly classified (epoch {full[0]['epoch']}: {full[0]['val_train_attack']:.3f}), PGD "
                f"{now['val_robust']:.3f}, for {SUSTAINED_EPOCHS} epochs; the model defeats the single-step attack "
                f"without being robust (use attack=pgd or attack=nfgsm); the weights of the best epoch are kept")
    if len(history) <= SUSTAINED_EPOCHS:
        return None
    best = max(history[:-SUSTAINED_EPOCHS], key=lambda h: h["val_robust"])

    def collapsed(h: dict) -> bool:
        # On a small validation slice a low robust accuracy dips by chance (digits at eps 0.2, 135 images: 0.18 ->
        # 0.07 and back to 0.23 in a run that was not stopped, BENCHMARKS.md); the drop must also exceed three
        # standard errors of the difference of the two proportions.
        n = h.get("val_n")
        noise = 0.0 if not n else 3 * math.sqrt(sum(p * (1 - p) for p in (best["val_robust"], h["val_robust"])) / n)
        drop = best["val_robust"] - h["val_robust"]
        return h["val_robust"] < 0.5 * best["val_robust"] and drop >= max(0.1, noise)

    climbing = now.get("adv_acc", 0.0) >= best.get("adv_acc", 0.0)
    if all(collapsed(h) for h in history[-SUSTAINED_EPOCHS:]) and climbing:
        return (f"catastrophic overfitting: validation PGD accuracy fell from {best['val_robust']:.3f} (epoch "
                f"{best['epoch']}) to {now['val_robust']:.3f} while accuracy on the training attack's examples rose "
                f"to {now.get('adv_acc', 0.0):.3f}; the weights of the best epoch are kept")
    return None


DEFAULT_VAL_ATTACK = "pgd:steps=10"


def validation_attack(spec: str, eps: float, norm: str = "inf"):
    """The validation attack at the training budget, with a step of eps/4 unless the spec gives one. A recipe that
    trains against an L2 attack is validated with L2 PGD unless another attack is asked for."""
    if norm == "2" and spec.replace(" ", "") == DEFAULT_VAL_ATTACK:
        spec = "pgd-l2:steps=10"
    attack = build_attack(spec, eps=eps)
    if "eps" in attack.params and "eps" not in attack.explicit:
        attack.params["eps"] = eps
    if "step" in attack.params and "step" not in attack.explicit:
        attack.params["step"] = eps / 4
    return attack


def beaten_within_noise(best: dict, last: dict) -> bool:
    """Whether the best epoch's validation PGD accuracy beats the last epoch's by no more than one standard error of
    the difference of two accuracies on the slice's images (unpaired: the larger, so the last epoch is kept unless
    beaten clearly). On 40 images one image is 2.5 points and the standard error about 11."""
    n = int(last.get("val_n") or 0)
    if n <= 0:
        return False
    p, q = best["val_robust"], last["val_robust"]
    return p - q <= math.sqrt((p * (1 - p) + q * (1 - q)) / n)


def validate(model, x: torch.Tensor, y: torch.Tensor, pgd_attack, batch_size: int, seed: int,
             train_attack=None) -> dict:
    """The per-epoch validation figures: clean and PGD accuracy, and with `train_attack` (a single-step training
    attack) the accuracy under it too, over this rank's batches summed across ranks (torchrun); seeded per batch, so
    the same weights give the same figures."""
    from .. import distributed as dd
    counts = torch.zeros(3, dtype=torch.float64, device=x.device)  # clean, PGD, the training attack; read once
    with frozen(model):
        for s, e in dd.my_batches(len(x), batch_size):
            x_b, y_b = x[s:e], y[s:e]
            x_pgd = pgd_attack.run(model, x_b, y_b, generator=torch.Generator().manual_seed(seed + s)).x_adv
            x_single = None if train_attack is None else \
                train_attack.run(model, x_b, y_b, generator=torch.Generator().manual_seed(seed + s)).x_adv
            with torch.no_grad():
                counts[0] += (model(x_b).argmax(1) == y_b).sum()
                counts[1] += (model(x_pgd).argmax(1) == y_b).sum()
                if x_single is not None:
                    counts[2] += (model(x_single).argmax(1) == y_b).sum()
    clean, robust, single = (dd.all_sum(torch.tensor(read(counts), dtype=torch.float64)) / len(x)).tolist()
    row = {"val_clean": clean, "val_robust": robust, "val_n": len(x)}
    if train_attack is not None:
        row["val_train_attack"] = single
    return row


@register_recipe
class AdversarialTraining(FineTuneRecipe):
    name = "at"

    def auto_epochs(self, data_frac: float) -> int:
        """Smaller fractions give fewer steps per epoch: 10 epochs from 10% up, 10 sqrt(0.1 / f) below, at most 30
        (MNIST at 1%: 30 epochs at lr 0.01 was the best row tried; 20 and 50 were tried at 0.003 only; BENCHMARKS.md)."""
        return int(min(30, max(10, round(10 * math.sqrt(0.1 / data_frac)))))

    def auto_batch_size(self, n_images: int) -> int:
        """The largest of 128, 64, 32 that gives an epoch at least MIN_STEPS_PER_EPOCH optimizer steps (so 32 for
        fractions under about 16,000 images): robust accuracy followed the number of steps, not of images seen
        (MNIST at 1%, 30 epochs, PGD-40: batch 128 34.8%, 64 63.4%, 32 72.8%, 16 68.8%; MNIST at 10%, AutoAttack:
        128 84.5%, 32 86.0% in less time; BENCHMARKS.md)."""
        return next((b for b in (128, 64) if n_images / b >= MIN_STEPS_PER_EPOCH), 32)

    def auto_augment(self, data) -> str:
        """Fine-tuning every weight (BatchNorm statistics included) must not move the input distribution: seed
        000's vertical flips and solarization collapsed a CIFAR-10 ResNet-20 in its first epoch (BENCHMARKS.md),
        so colour data gets the adversarial-training standard, pad + crop + horizontal flip."""
        return "crop" if data.kind == "mnist-like" else "flip-crop"

    takes_unlabeled = True

    def train(self, model, data, params: dict[str, Any], cfg: TrainConfig, device: torch.device, unlabeled=None):
        loss_kind = str(params.get("loss", "pgd-at"))
        if loss_kind not in LOSSES:
            raise HardenError(f"at: loss must be one of {', '.join(LOSSES)}, got {loss_kind!r}.")
        for p in model.net.parameters():
            p.requires_grad_(True)
        attack = training_attack(params)
        eps = float(attack.params["eps"])
        if attack.norm not in ("inf", "2"):
            raise HardenError(f"at: the training attack {attack.name} is an L{attack.norm} attack; at trains against "
                              "L-inf attacks (pgd, fgsm-rs, nfgsm) or L2 PGD (pgd-l2).")
        beta, mix = float(params.get("beta", 6.0)), float(params.get("mix", 0.0))
        gamma = float(params.get("focal_gamma", 0.0))
        ramp_epochs = ramp_length(params.get("eps_ramp", 0), cfg.epochs)
        craft_stats = str(params.get("craft_statistics", "running"))
        if craft_stats not in ("running", "batch"):
            raise HardenError(f"at: craft_statistics must be running or batch, got {craft_stats!r}.")
        craft_batch = craft_stats == "batch"
        awp_gamma, awp_warmup = float(params.get("awp_gamma", 0.0)), float(params.get("awp_warmup", 0.0))
        if awp_gamma < 0 or awp_warmup < 0:
            raise HardenError(f"at: awp_gamma and awp_warmup must be >= 0, got {awp_gamma} and {awp_warmup}.")
        temperature = float(params.get("teacher_temperature", 0.0))
        if temperature < 0 or (temperature > 0 and (loss_kind == "mart" or gamma != 0)):
            raise HardenError("at: teacher_temperature takes 0 (off: hard labels) or a temperature > 0, with loss "
                              f"pgd-at or trades and focal_gamma 0; got {temperature} with loss {loss_kind}, focal_gamma "
                              f"{gamma}.")
        # the validation slice is carved from the labelled images alone, before the pseudo-labelled ones join
        train_data, val, val_meta = split_validation(data, float(params.get("val_frac", 0.0)), cfg.seed,
                                                     int(params.get("val_max", 0)))
        if val_meta:
            model.spec.extra["validation"] = val_meta
            from ..runtime import info
            info(f"validation: {val_meta['n']} of the {len(data.y_train)} images held out, attacked after every epoch "
                 f"(val_frac {params.get('val_frac')}, at most val_max {params.get('val_max', 0) or 'no cap'})")
        if unlabeled is not None:
            train_data = MixedData.for_recipe(train_data, unlabeled, params, cfg)
        steps_per_epoch = max(1, train_data.steps_per_epoch(cfg.batch_size))
        # the base as teacher: its soft labels at a temperature replace the hard labels in the loss's cross-entropy
        teacher = None
        if temperature > 0:
            teacher = copy_module(model).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        gen = torch.Generator().manual_seed(cfg.seed)
        calls = [0]

        def current_eps() -> float:  # linear ramp over the first eps_ramp epochs (0 = off)
            if ramp_epochs <= 0:
                return eps
            return eps * min(1.0, (calls[0] + 1) / (ramp_epochs * steps_per_epoch))

        adversarial_only = loss_kind == "pgd-at" and mix == 0  # the loss sees no clean logits

        def label_loss(z, y, soft):
            """Cross-entropy with the hard labels, or with the teacher's soft labels when it teaches."""
            return focal_loss(z, y, gamma) if soft is None else -(soft * _logp(z)).sum(1).mean()

        def adversarial_loss(m, x, x_adv, y, soft=None):
            """(loss, clean logits or None, adversarial logits) of the chosen loss on a crafted batch."""
            if adversarial_only:
                z_adv = m(x_adv)
                return label_loss(z_adv, y, soft), None, z_adv
            z = m(torch.cat([x, x_adv]))  # one pass: BatchNorm sees clean and adversarial images together
            z_clean, z_adv = z[: len(x)], z[len(x):]
            if loss_kind == "trades":
                loss = label_loss(z_clean, y, soft) + beta * F.kl_div(
                    _logp(z_adv), _logp(z_clean).exp(), reduction="batchmean")
            elif loss_kind == "mart":
                loss = mart_loss(z_adv, z_clean, y, beta)
            else:
                loss = (1 - mix) * label_loss(z_adv, y, soft) + mix * label_loss(z_clean, y, soft)
            return loss, z_clean, z_adv

        awp = WeightPerturbation(model, awp_gamma) if awp_gamma > 0 else None

        def step(m, x, y):
            e = current_eps()
            calls[0] += 1
            atk = attack
            if e != eps:
                from ..report.curves import at_budget
                atk = at_budget(attack, e)
            # crafted on the current weights without weight gradients; BatchNorm with its running statistics (eval
            # mode) or, with craft_statistics = batch, with the batch's as the training loss sees them
            with frozen(m, batch_statistics=craft_batch):
                if loss_kind == "trades":
                    x_adv = trades_example(m, x, e, atk.params.get("step", e / 4), int(atk.params.get("steps", 10)),
                                           gen, attack.norm)
                else:
                    x_adv = atk.run(m, x, y, generator=gen).x_adv.detach()
                z_eval = None
                if adversarial_only:
                    # clean logits for the progress line only, inside frozen(): BatchNorm's running statistics stay
                    # those of the adversarial batches the weights are trained on
                    with torch.no_grad():
                        z_eval = m(x)
            soft = None
            if teacher is not None:
                with torch.no_grad():
                    soft = torch.softmax(_logp(teacher(x)) / temperature, 1)
            if awp is not None and calls[0] > awp_warmup * steps_per_epoch:
                awp.perturb(lambda: adversarial_loss(m, x, x_adv, y, soft)[0])
            loss, z_clean, z_adv = adversarial_loss(m, x, x_adv, y, soft)
            z_clean = z_eval if z_clean is None else z_clean
            adv_acc = (z_adv.detach().argmax(1) == y).float().mean()
            return loss, z_clean.detach(), {"adv_acc": adv_acc}

        monitor = None
        if val is not None:
            # a single-step training attack is also run on the validation slice: a model that defeats it while PGD
            # still succeeds is the signature of catastrophic overfitting
            single_step = loss_kind != "trades" and int(attack.params.get("steps", 1)) == 1
            val_attack = validation_attack(str(params.get("val_attack", DEFAULT_VAL_ATTACK)), eps, attack.norm)
            xv, yv = held_images(val, "train", np.arange(val.n_train), device, tuple(model.spec.input_size))

            def measure(m) -> dict:
                return validate(m, xv, yv, val_attack, cfg.batch_size, cfg.seed, attack if single_step else None)

            # the single-step sign is read from the first epoch trained at the full budget, after the ramp
            stop = functools.partial(catastrophic_overfitting, full_budget_epoch=math.ceil(ramp_epochs) + 1)
            keep = str(params.get("val_keep", "beyond-noise"))  # recipes/at.toml gives it
            if keep not in ("best", "beyond-noise"):
                raise HardenError(f"at: val_keep is best or beyond-noise, got {keep!r}.")
            monitor = Monitor(measure=measure, best_key="val_robust", stop=stop,
                              within_noise=beaten_within_noise if keep == "beyond-noise" else None)
        crafted_by = "pgd on the KL" if loss_kind == "trades" else attack.name  # the progress line names both
        result = fit(model, train_data, cfg, device, step=step, desc=f"at ({loss_kind} loss, {crafted_by})", monitor=monitor,
                     after_step=awp.restore if awp is not None else None,
                     carries={"attack": gen, "steps": calls})
        model.spec.extra["best_epoch"] = result.best_epoch
        if result.extended:
            model.spec.extra["epochs_added"] = result.extended  # cycles added while validation was still rising
        if result.stopped:
            model.spec.extra["stopped"] = result.stopped
        return result
