"""The one training loop. `harden train` uses it for base models; recipes plug in a batch transform
(what the loss sees) and the parameters to optimise, so there is never a second loop."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Data, fit_size
from .errors import HardenError
from .host_sync import due, read
from .runtime import flushing_denormals, info, progress, warn


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal cross-entropy (Lin et al. 2017), as seed 000 trains with; gamma=0 is plain cross-entropy."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    if gamma == 0:
        return -logp.mean()
    return -(((1 - logp.exp()) ** gamma) * logp).mean()


# A batch step: (model, x, y) -> (loss, logits for accuracy on x, extra display fields)
StepFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict]]


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd (with OneCycle on lr and momentum, seed 000 section 4.3) | adam | rmsprop
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | constant
    augment: str = "seed000"
    # the unlabeled pool's augmentation where it differs from the labelled images' ("same": augment): a training
    # dataset whose own transform augments gets none from harden, while a pool of image files still needs it
    unlabeled_augment: str = "same"
    focal_gamma: float = 0.0
    seed: int = 0
    amp: str = "off"  # off (fp32) | bf16 | fp16 (CUDA only, with a GradScaler): autocast over the whole step
    sync_bn: bool = False  # under torchrun on CUDA: BatchNorm statistics over every rank's share
    grad_clip: float = 0.0  # max global gradient norm (0 = off)
    # decay of an exponential moving average of the weights and BatchNorm statistics, updated every step (0 = off);
    # the average is what is validated, kept and returned (weight averaging: Izmailov et al. 2018; for adversarial
    # training, Gowal et al. 2020)
    ema: float = 0.0
    # epochs that follow the validation slice (with a Monitor that picks a best epoch): when the schedule's last epoch
    # was the best, another cycle of `extend` x the planned epochs follows (from a tenth of the peak learning rate down
    # a cosine), and again while the last epoch stays the best, up to twice the planned epochs (0 = the planned count)
    extend: float = 0.0
    # a time.perf_counter() by which training ends (fix --time-budget's share): at an epoch's end, an epoch that would
    # run past it is not started, the schedule cut short (said); None = the planned epochs
    deadline: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    seconds: float
    history: list[dict]
    best_epoch: int | None = None  # the epoch whose weights were kept (with a Monitor), 1-based
    stopped: str | None = None  # why training stopped early, when it did
    extended: list[int] = field(default_factory=list)  # epochs added by cfg.extend, one entry per added cycle
    out_of_time: str | None = None  # why training ended before its planned epochs at cfg.deadline, when it did
    # of `seconds`, those the loop waited for its next batch: decoding (the workers falling behind), augmentation on
    # the host and the copy to the device
    input_seconds: float = 0.0


@dataclass
class Monitor:
    """Per-epoch validation for the shared loop: `measure(model)` returns metrics (added to the epoch's history
    row); the weights of the epoch with the highest `best_key` are restored at the end (robust overfitting,
    Rice et al. 2020); `stop(history)` may end training early with a reason (catastrophic overfitting)."""
    measure: Callable[[nn.Module], dict]
    best_key: str | None = None
    stop: Callable[[list[dict]], str | None] | None = None
    # (best row, last row) -> whether the best beats the last epoch only within the validation's noise: the last
    # epoch's weights are then kept (None: the best epoch's always)
    within_noise: Callable[[dict, dict], bool] | None = None


AMP_MODES = ("off", "bf16", "fp16")
INPUT_BOUND_SHARE = 0.3  # training that waited this share of its time for its batches is told so
INPUT_BOUND_MIN_S = 20.0  # ... when it trained at least this long (a short run's waits are the workers' start)
EXTEND_LR = 0.1  # learning rate an added cycle starts at (then a cosine to zero), relative to cfg.lr
EXTEND_MAX = 2.0  # at most this many times the planned epochs in all


def extension(cfg: "TrainConfig", history: list[dict], best_epoch: int | None) -> int:
    """Epochs of the next cycle when cfg.extend is on and the last epoch trained was the best one on validation
    (the robust accuracy still rising at the end of the schedule); 0 = stop here."""
    if cfg.extend <= 0 or best_epoch is None or not history or best_epoch != history[-1]["epoch"]:
        return 0
    room = int(EXTEND_MAX * cfg.epochs) - len(history)
    return max(0, min(room, math.ceil(cfg.extend * cfg.epochs)))


def autocast_setup(amp: str, device: torch.device,
                   option: str = "--amp") -> tuple[torch.dtype | None, "torch.amp.GradScaler"]:
    """(autocast dtype or None, GradScaler): bf16 on CUDA or CPU; fp16 on CUDA only, with loss scaling (fp16's
    range is too narrow for small gradients, bf16's is fp32's)."""
    amp = str(amp).lower()
    if amp not in AMP_MODES:
        raise HardenError(f"{option} takes {', '.join(AMP_MODES)}; got {amp!r}.")
    if amp == "fp16" and device.type != "cuda":
        raise HardenError(f"{option} fp16 needs CUDA; on the CPU use {option} bf16 or leave mixed precision off.")
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    if amp == "bf16" and device.type == "cpu" and not _cpu_has_bf16() and option not in _SLOW_BF16_SAID:
        _SLOW_BF16_SAID.add(option)
        warn(f"{option} bf16 on a CPU without bfloat16 instructions (AVX512-BF16 or AMX; this one has "
             f"{torch.backends.cpu.get_cpu_capability()}): torch emulates it, several times slower than fp32 (a "
             "digits fix took 15x as long on a 2-core AVX2 machine). Leave it off here; it pays on recent CPUs and GPUs.")
    return dtype, torch.amp.GradScaler(device.type, enabled=amp == "fp16")


_SLOW_BF16_SAID: set[str] = set()  # each option's notice once a process


def _cpu_has_bf16() -> bool:
    """Whether oneDNN finds native bfloat16 arithmetic on this CPU (True where torch cannot say: no notice)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise HardenError("Nothing to train: no parameter requires a gradient.")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise HardenError(f"The learning rate must be a positive number (--lr, --set lr=...), got {cfg.lr}.")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise HardenError(f"weight_decay must be zero or positive, got {cfg.weight_decay}.")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise HardenError(f"Unknown optimizer {cfg.optimizer!r}; use sgd, adam or rmsprop.")


def default_step(cfg: TrainConfig) -> StepFn:
    def step(model, x, y):
        logits = model(x)
        return focal_loss(logits, y, cfg.focal_gamma), logits, {}
    return step


def zero_gradients(params: list[torch.nn.Parameter]) -> None:
    """Zero gradients where the last step left gradients (the parameters every process's step reaches), else on every
    trainable parameter: what a process whose share of a batch was all unreadable adds to the step's gradient (with
    --sync-bn the other processes' forward waits for this one's: fit stops with an error there instead)."""
    with_grad = [p for p in params if p.grad is not None] or [p for p in params if p.requires_grad]
    for p in with_grad:
        p.grad = torch.zeros_like(p)


def _take_part_empty(params: list[torch.nn.Parameter], scaler, device: torch.device, sync_bn: bool, where: str) -> None:
    """Under torchrun, a process whose share of a batch holds only unreadable files still takes its part in the step's
    collectives, adding a zero gradient. With --sync-bn the others' forward pass waits for this one's BatchNorm
    statistics: a clear stop instead."""
    if sync_bn:
        raise HardenError(f"{where}: this process's share of the batch holds only unreadable files, and with --sync-bn "
                          "every process's forward pass waits for the others'. Remove the unreadable files, or run "
                          "without --sync-bn.")
    zero_gradients(params)
    scaler.scale(torch.zeros((), device=device))  # fp16: the scaler's scale exists before its step


def input_bound_note(desc: str, result: TrainResult, workers: int | None) -> None:
    """Say so when training spent INPUT_BOUND_SHARE or more of its time waiting for its batches: the model's device
    idled meanwhile, and the remedy is on the input side, not in the recipe."""
    if result.seconds < INPUT_BOUND_MIN_S or result.input_seconds < INPUT_BOUND_SHARE * result.seconds:
        return
    how = (f"more decode workers (--workers; {workers} now, one per core by default) or images stored nearer the "
           "model's input size" if workers is not None else "data that needs less work per batch on the host")
    info(f"{desc}: {result.input_seconds / result.seconds:.0%} of the training time ({result.input_seconds:.0f} of "
         f"{result.seconds:.0f} s) waited for the next batch (decoding, augmentation, the copy to the device): "
         f"the model waited on its input; {how} would shorten it")


@flushing_denormals
def fit(model: nn.Module, data: Data, cfg: TrainConfig, device: torch.device,
        step: StepFn | None = None, params: Iterable[torch.nn.Parameter] | None = None,
        train_mode: Callable[[nn.Module], None] | None = None, desc: str = "train",
        monitor: Monitor | None = None, after_step: Callable[[], None] | None = None,
        carries: dict[str, Any] | None = None) -> TrainResult:
    """Train `params` (default: all of model's) on data's training split with cfg. `step` decides the loss;
    `train_mode` sets train/eval per submodule (recipes keep a frozen base in eval mode); `after_step` runs right
    after each optimizer step (AWP takes its weight perturbation off there); `carries`: the random streams and
    counters `step` keeps between calls (a training attack's generator), saved with the run's state (resume.py)."""
    from . import distributed as dd
    from . import random_streams, resume
    run = resume.current()  # the run's saved state, where it keeps one
    call, saved = run.next_call() if run is not None else (0, None)
    carries = carries or {}
    if saved is not None and saved.get("done"):  # trained to the end before the run was stopped
        model.load_state_dict(saved["model"])
        model.eval()
        info(f"{desc}: trained before the run was stopped; its weights are taken from the saved state")
        return TrainResult(**saved["result"])
    step = step or default_step(cfg)
    params = list(params) if params is not None else list(model.parameters())
    opt = make_optimizer(params, cfg)
    n = data.n_train
    if n == 0:
        raise HardenError("The training split is empty.")
    amp_dtype, scaler = autocast_setup(cfg.amp, device)
    dd.broadcast_module(model)  # every rank starts from rank 0's weights
    if cfg.sync_bn:
        dd.sync_batchnorm(model, device, on=True)
    steps_per_epoch = data.steps_per_epoch(cfg.batch_size)
    if cfg.extend < 0:
        raise HardenError(f"extend is the share of the planned epochs added per cycle (0 = off), got {cfg.extend}.")

    def schedule(epochs: int, added: bool):
        if cfg.schedule != "onecycle" or steps_per_epoch * epochs <= 0:
            return None
        lr = cfg.lr * (EXTEND_LR if added else 1.0)
        if added:  # no second warm-up (measured: a OneCycle restart at half the peak cost 9 points of validation
            # PGD before it recovered, BENCHMARKS.md): from `lr` down to zero along a cosine
            for group in opt.param_groups:
                group["lr"] = lr
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * epochs)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps_per_epoch * epochs,
                                                   cycle_momentum=cfg.optimizer == "sgd")
    if not 0.0 <= cfg.ema < 1.0:
        raise HardenError(f"ema is the averaging decay per step, in [0, 1) (0 = off), got {cfg.ema}.")
    ema = None
    if cfg.ema > 0:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(model, decay=cfg.ema)
    kept = ema.module if ema is not None else model  # the weights validated, kept and returned
    rng = np.random.default_rng(cfg.seed)
    feeder = data.feeder(cfg.augment, cfg.seed, device)  # decodes and augments; built once: its random stream runs on
    size = tuple(getattr(getattr(model, "spec", None), "input_size", data.input_size))
    history = []
    best = None
    stopped = None

    def read_sums(sums: torch.Tensor, keys: list[str], seen: int, epoch: int, step_no: int):
        """(loss sum, correct count, extras) read from the device; a non-finite loss ends training here."""
        values = read(sums)
        if not math.isfinite(values[0]) and epoch == 0 and step_no == 1:
            raise HardenError(
                f"Training stopped at its first step: the loss was {values[0] / seen} before any update, so the "
                "learning rate is not the cause. The model's scores, or their gradient that the training attack "
                "follows, are NaN or infinite on some of the first batch's images: its forward divides by zero or "
                "takes a log or square root out of its domain (a flat image's standard deviation, the log of a "
                "zero). Make the forward safe there (a small epsilon). Nothing was written.")
        if not math.isfinite(values[0]):
            raise HardenError(
                f"Training diverged: the loss became {values[0] / seen} by epoch {epoch + 1}, step {step_no} (lr "
                f"{cfg.lr:g}, optimizer {cfg.optimizer}). Nothing was written. Try a lower --lr, or clip gradients "
                "with --set grad_clip=1.")
        return values[0], values[1], dict(zip(keys, values[2:], strict=True))

    def snapshot(epoch: int, step_no: int, steps: int, planned: int, sched, epoch_start: dict, sums, seen: int,
                 extra_keys: list[str], where: dict) -> dict:
        """Everything the steps after `step_no` of `epoch` depend on (resume.py)."""
        return {"where": {"epoch": epoch, "step": step_no, "steps": steps, "planned": planned, **where},
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None, "scaler": scaler.state_dict(),
                "ema": ema.module.state_dict() if ema is not None else None, "history": resume.plain(history),
                "best": best, "epoch_start": epoch_start, "sums": sums, "seen": seen, "extra_keys": extra_keys,
                "randoms": {"global": random_streams.global_random_state(), "feeder": feeder.random_state(),
                            "carries": {k: random_streams.random_state(v) for k, v in carries.items()}},
                "seconds": elapsed(), "input_seconds": waited[0]}

    waited = [0.0]  # seconds spent waiting for batches (TrainResult.input_seconds)

    def timed(batches: Iterator) -> Iterator:
        """The feeder's batches, the time spent waiting for each added to `waited`."""
        while True:
            t = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                waited[0] += time.perf_counter() - t
            yield batch

    def epoch_start_state() -> dict:
        """The random streams an epoch's shuffle draws from, as they are before it."""
        return {"shuffle": random_streams.random_state(rng), "data": data.random_state()}

    def train_epoch(epoch: int, sched, advance, planned: int, where: dict, at: dict | None = None) -> str | None:
        """One pass over the training split; returns why training must stop, if it must. `at`: a saved state to
        continue this epoch from (its step and random streams)."""
        nonlocal best
        (train_mode or (lambda m: m.train()))(model)
        # running sums stay on the device and are read (one host synchronisation) only at the steps
        # host_sync.due allows: every step on the CPU, a few an epoch on CUDA
        sums = None
        extra_keys: list[str] = []
        seen = done = 0
        tot_loss = tot_acc = 0.0
        extras: dict[str, float] = {}
        epoch_start = epoch_start_state()
        # the same permutation on every rank (same seed); each takes its share of each global batch
        plan = [(g, dd.my_share(g)) for g in data.epoch_batches(cfg.batch_size, rng)
                if len(g) >= 2 * dd.world() or n < 2 * dd.world()]  # BatchNorm cannot train on one image per rank
        if at is not None:  # the steps done before the run was stopped are skipped, their sums kept
            done, seen, extra_keys = at["where"]["step"], at["seen"], at["extra_keys"]
            sums = at["sums"].to(device) if at["sums"] is not None else None
        for step_no, ((global_bi, bi), batch) in enumerate(
                zip(plan[done:], timed(iter(feeder.epoch([b for _, b in plan[done:]], epoch + 1))), strict=True),
                start=done + 1):
            show = False
            if batch is not None:
                x, y = fit_size(batch[0], size), batch[1]
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    loss, logits, extra = step(model, x, y)
                b = len(y)
                row = torch.stack([loss.detach().float() * b, (logits.detach().argmax(1) == y).float().sum(),
                                   *(torch.as_tensor(v, dtype=torch.float32, device=loss.device).detach() * b
                                     for v in extra.values())])
                extra_keys = list(extra)
                sums = row if sums is None else sums + row
                seen += b
                show = due(step_no, device)
                if show:
                    tot_loss, tot_acc, extras = read_sums(sums, extra_keys, seen, epoch, step_no)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            elif not dd.active():  # only unreadable files, skipped (--skip-unreadable)
                continue
            else:
                _take_part_empty(params, scaler, device, cfg.sync_bn, f"step {step_no} of epoch {epoch + 1}")
            dd.average_gradients(params, len(bi) / len(global_bi))
            scaler.unscale_(opt)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if after_step is not None:
                after_step()
            if sched is not None:
                sched.step()
            if ema is not None:
                ema.update(model)
            fields = " ".join(f"{k} {v / seen:.3f}" for k, v in extras.items())
            advance(1, info=f"epoch {epoch + 1}/{planned} loss {tot_loss / seen:.4f} "
                            f"acc {tot_acc / seen:.3f} {fields}" if show else None)
            if run is not None and step_no < len(plan) and run.due():
                run.save(call, snapshot(epoch, step_no, len(plan), planned, sched, epoch_start, sums, seen,
                                        extra_keys, where))
                if run.stopping():
                    raise run.stop_here(f"{desc} at step {step_no} of {len(plan)} of epoch {epoch + 1}")
        if sums is not None:  # the epoch's whole sums (the last steps may not have been read)
            tot_loss, tot_acc, extras = read_sums(sums, extra_keys, seen, epoch, len(plan))
        # the epoch's figures over every rank's share, so that each rank's history (and decisions) agree
        keys = sorted(extras)
        sums = dd.all_sum(torch.tensor([tot_loss, tot_acc, seen] + [extras[k] for k in keys], dtype=torch.float64))
        tot_loss, tot_acc, seen, *rest = sums.tolist()  # host values already (a CPU tensor): no device read
        extras = dict(zip(keys, rest, strict=True))
        dd.average_batchnorm_stats(model)
        history.append({"epoch": epoch + 1, "loss": tot_loss / max(seen, 1), "acc": tot_acc / max(seen, 1),
                        **{k: v / max(seen, 1) for k, v in extras.items()}})
        if monitor is not None:
            kept.eval()
            history[-1].update(monitor.measure(kept))
            history[-1] = dd.from_main(lambda: history[-1])  # rank 0's figures decide best epoch and stop
            info(f"epoch {epoch + 1}: " + " ".join(f"{k} {v:.3f}" for k, v in history[-1].items()
                                                  if k != "epoch" and isinstance(v, float)))
            key = monitor.best_key
            if key is not None and (best is None or history[-1][key] > best[1]):
                best = (epoch + 1, history[-1][key], {k: v.detach().clone() for k, v in kept.state_dict().items()})
            stop = monitor.stop(history) if monitor.stop is not None else None
            if stop:
                warn(f"training stopped at epoch {epoch + 1}: {stop}")
            return stop
        return None

    t0 = time.perf_counter()
    before = 0.0  # seconds trained before a resume

    def elapsed() -> float:
        return before + time.perf_counter() - t0

    added: list[int] = []
    cycle = cfg.epochs
    out_of_time = None
    at = None  # the saved state this call continues from
    if saved is not None:
        at, w = saved, saved["where"]
        model.load_state_dict(saved["model"])
        scaler.load_state_dict(saved["scaler"])
        if ema is not None:
            ema.module.load_state_dict(saved["ema"])
        history[:] = saved["history"]
        best = saved["best"]
        before, added, cycle = saved["seconds"], list(w["added"]), w["cycle"]
        waited[0] = saved.get("input_seconds", 0.0)
        # every random stream as it was: the shuffle's as the saved epoch began (its plan is drawn again), the rest
        # as at the saved step (a state saved at a cycle's end continues with the next cycle's first epoch)
        random_streams.set_random_state(rng, saved["epoch_start"]["shuffle"])
        data.set_random_state(saved["epoch_start"]["data"])
        random_streams.set_global_random_state(saved["randoms"]["global"])
        feeder.set_random_state(saved["randoms"]["feeder"])
        for k, v in carries.items():
            random_streams.set_random_state(v, saved["randoms"]["carries"][k])
        info(f"{desc}: continuing at epoch {w['epoch'] + 1}, step {w['step'] + 1} of {w['steps']}")
    while cycle > 0 and not stopped:
        sched = schedule(cycle, bool(added))
        first = len(history) if at is None else at["where"]["first"]
        if at is not None:  # after the schedule is built: building one sets the learning rate it starts from
            if sched is not None:
                sched.load_state_dict(at["scheduler"])
            opt.load_state_dict(at["optimizer"])
        label = desc if not added else f"{desc} (+{cycle} epochs: validation still rising)"
        where = {"first": first, "cycle": cycle, "added": list(added)}
        with progress(label, steps_per_epoch * cycle) as advance:
            start = len(history)
            if at is not None:
                advance((start - first) * steps_per_epoch + at["where"]["step"])
            for epoch in range(start, first + cycle):
                planned = cfg.epochs + sum(added)
                began = time.perf_counter()
                stopped = train_epoch(epoch, sched, advance, planned, where, at)
                at = None
                if stopped:
                    break
                if run is not None:  # at every epoch's end (a signal during the epoch's validation stops here)
                    run.save(call, snapshot(epoch + 1, 0, data.steps_per_epoch(cfg.batch_size), planned, sched,
                                            epoch_start_state(), None, 0, [], where))
                    if run.stopping(agree=True):
                        raise run.stop_here(f"{desc} after epoch {epoch + 1}")
                if cfg.deadline is not None and epoch + 1 < first + cycle:
                    ends = time.perf_counter() + (time.perf_counter() - began)  # another epoch like this one
                    if dd.all_max([int(ends > cfg.deadline)])[0]:  # every rank stops at the same epoch
                        out_of_time = (f"ended after epoch {epoch + 1} of {planned}: another epoch "
                                       f"({time.perf_counter() - began:.0f} s) would run past the time budget's "
                                       "share for training")
                        break
            if out_of_time:
                break
        at = None  # also where the state was saved at this cycle's end: the next cycle starts afresh
        cycle = 0 if stopped or out_of_time else extension(cfg, history, best[0] if best is not None else None)
        if cycle:
            added.append(cycle)
            info(f"validation {monitor.best_key} still rising at epoch {len(history)}: {cycle} more epochs, lr from "
                 f"{cfg.lr * EXTEND_LR:g} down a cosine")
    if cfg.sync_bn:
        dd.sync_batchnorm(model, device, on=False)
    opt.zero_grad(set_to_none=True)  # the returned model carries no gradients (memory; attacks read none)
    model.eval()
    best_epoch = None
    if ema is not None and best is None:
        model.load_state_dict(ema.module.state_dict())
    # stopped (catastrophic overfitting): the last epoch is the one the stop condemned, so the best is kept even
    # where the two are within noise (on a 33-image slice, 0.091 and 0.061 are)
    if best is not None and best[0] != len(history) and not stopped and monitor.within_noise is not None \
            and monitor.within_noise(history[best[0] - 1], history[-1]):
        n = history[-1].get("val_n")
        info(f"epoch {best[0]}'s validation {monitor.best_key} {best[1]:.3f} is within the noise of the last epoch's "
             f"{history[-1][monitor.best_key]:.3f}{f' ({n} images)' if n else ''}: kept the last epoch")
        if ema is not None:
            model.load_state_dict(ema.module.state_dict())
        best_epoch = len(history)
    elif best is not None:
        model.load_state_dict(best[2])
        best_epoch = best[0]
        if best_epoch != len(history):
            info(f"kept the weights of epoch {best_epoch} ({monitor.best_key} {best[1]:.3f})")
    if out_of_time:
        warn(f"{desc}: {out_of_time} (its schedule cut short)")
    result = TrainResult(seconds=elapsed(), history=history, best_epoch=best_epoch, stopped=stopped, extended=added,
                         input_seconds=waited[0], out_of_time=out_of_time)
    input_bound_note(desc, result, getattr(data, "workers", None))
    if run is not None:  # a run stopped from here on (in the report) resumes with these weights
        run.save(call, {"done": True, "model": model.state_dict(), "result": resume.plain(result.__dict__)})
    return result
