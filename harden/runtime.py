"""Device choice, seeding and progress bars (batching with out-of-memory halving: batching.py)."""
from __future__ import annotations

import functools
import os
import random
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

from .batching import run_batched  # noqa: F401  (re-exported: the report and benchmarks import it from here)

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .errors import HardenError

console = Console(stderr=True)
_quiet = False


_FLUSH_DEPTH = [0]


def flushing_denormals(fn: Callable) -> Callable:
    """Runs `fn` with subnormal floats flushed to zero on the CPU (FTZ/DAZ, torch.set_flush_denormal), restored
    when the outermost such call returns. Measured (BENCHMARKS.md "Subnormal floats"): fp32 `at` on CIFAR-10
    ResNet-20 slowed from about 220 to 94 images/s by its 12th epoch and went back to 250 the moment they were
    flushed (and to 102 when unflushed again); values under 1.2e-38 change nothing a classifier computes. The flag
    is per thread: it covers the calling thread and intra-op threads started after it."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        outermost = _FLUSH_DEPTH[0] == 0
        if outermost:
            torch.set_flush_denormal(True)
        _FLUSH_DEPTH[0] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _FLUSH_DEPTH[0] -= 1
            if outermost:
                torch.set_flush_denormal(False)
    return wrapper


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


@contextmanager
def quieted() -> Iterator[None]:
    """No progress bars or info lines inside: work done to plan a run (a timing), not the run's own."""
    global _quiet
    outer, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = outer


def is_quiet() -> bool:
    """-q, HARDEN_QUIET=1, or a torchrun rank other than 0 (those neither show progress nor repeat warnings)."""
    from . import distributed
    return _quiet or os.environ.get("HARDEN_QUIET") == "1" or not distributed.is_main()


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The device to run on; under torchrun, this rank's (and the process group is started: distributed.py)."""
    if isinstance(spec, torch.device):
        return spec
    from . import distributed
    if distributed.launched():
        return distributed.setup(spec or "auto")
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HardenError(f"--device {spec} was asked for, but no CUDA device is available on this machine; "
                              "use --device cpu or --device auto.")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise HardenError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) exist.")
        return dev
    if spec in ("mps", "xpu", "tpu", "xla", "npu", "hpu") or spec.startswith(("mps:", "xpu:")):
        # accelerators torch has backends for that harden is neither built nor tested on: said, not a bare "unknown"
        raise HardenError(f"--device {spec}: harden runs on the CPU and on CUDA GPUs only (its attacks and their checks "
                          "are tested there, not on other backends); use --device cpu.")
    if spec.startswith("gpu"):  # a common way to say it
        raise HardenError(f"--device {spec!r} is not understood; for a GPU write --device cuda (or cuda:N).")
    raise HardenError(f"--device {spec!r} is not understood; use auto, cpu, cuda or cuda:N.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def progress_if(show: bool, description: str, total: int):
    """progress() where the work is long enough to show a bar (`show`), else a context yielding a no-op advance."""
    return progress(description, total) if show else nullcontext(lambda n=1, **kw: None)


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[..., None]]:
    """A rich progress bar with ETA; yields advance(n=1, **fields). Silent with -q."""
    if is_quiet():
        yield lambda n=1, **kw: None
        return
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=console, transient=False)
    with prog:
        task = prog.add_task(escape(description), total=total, info="")  # a dataset's name is text, not markup

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is not None:
                prog.update(task, advance=n, info=info)
            else:
                prog.update(task, advance=n)

        yield advance


_held: list[str] | None = None  # warnings held back by held_warnings()


def warn(msg: str) -> None:
    from . import distributed
    if _held is not None:
        _held.append(msg)
    elif distributed.is_main():
        console.print(f"[yellow]warning:[/] {escape(msg)}")  # plain text: a path's `[v2]` is not markup


def python_warnings_once() -> None:
    """Python warnings (a user's network's `F.log_softmax(x)` without a dim, a library's deprecation) said once each,
    where they arose, on harden's own channel: Python's filter says one again from every place that triggers it, and
    harden runs a network from many (a probe, each attack, the checks), so the same line came out several times,
    pointing into harden's code."""
    import warnings
    seen: set[tuple[type, str]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        key = (category, str(message))
        if key in seen:
            return
        seen.add(key)
        warn(f"{category.__name__} from {filename}:{lineno}: {message}")
    warnings.showwarning = show


@contextmanager
def held_warnings() -> Iterator[list[str]]:
    """Warnings collected instead of printed, for a step that may be redone with what it learns (the caller warns
    the ones that still hold); said at once if the step raises."""
    global _held
    outer, _held = _held, []
    held = _held
    try:
        yield held
    except BaseException:
        _held = outer
        for msg in held:
            warn(msg)
        raise
    _held = outer


def info(msg: str) -> None:
    if not is_quiet():
        console.print(msg, markup=False)  # plain text, as warn's


@contextmanager
def batchnorm_statistics_kept(model: torch.nn.Module) -> Iterator[None]:
    """BatchNorm layers in train mode normalise with the batch's statistics but leave their running ones (and
    batch count) as they are: extra forward passes (an attack, AWP's ascent step) must not count in the
    statistics the model is evaluated with. A graph's BatchNorm operators (a torch.export program's) say which
    buffers they update (`running_statistics()`): those are put back after."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    graphs = [t for m in model.modules() if m.training and hasattr(m, "running_statistics")
              for t in m.running_statistics()]
    kept = [t.clone() for t in graphs]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for t, k in zip(graphs, kept, strict=True):
                t.copy_(k)
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@contextmanager
def frozen(model: torch.nn.Module, batch_statistics: bool = False) -> Iterator[torch.nn.Module]:
    """Eval mode and no parameter gradients while attacking: backprop into weights costs ~40% per pass.
    `batch_statistics`: keep each module's mode instead, so a model in training normalises with the batch's
    statistics (as the loss it is trained on does), its running statistics untouched."""
    # Restore each submodule's own mode: a wrapper in train mode must not flip a frozen base's BatchNorm.
    modes = [(m, m.training) for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    if not batch_statistics:
        model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with batchnorm_statistics_kept(model) if batch_statistics else nullcontext():
            yield model
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
        for m, mode in modes:
            m.training = mode
