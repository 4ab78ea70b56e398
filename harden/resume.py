"""Training that survives being stopped. A run of `fix` or `train` keeps its training state in one file beside its
output (`<output>.resume`): at the end of every epoch, every few minutes inside one, when a signal stops it (Ctrl-C;
SIGTERM, as SLURM sends at a time limit, a cloud provider before it takes a preemptible machine back, and a CI runner
at a job's timeout) and when training is over (so a run killed during the report resumes at the report). The same
command with `--resume` continues from there. The state is everything the next step depends on: the weights, the
optimizer's and the schedule's state, the weight average, the best epoch so far and its weights, the history, the
epoch's place, and every random stream (the epoch's shuffle, the augmentation's, the training attack's, torch's,
numpy's and Python's), so a resumed run ends with the weights of an uninterrupted one, bit for bit on the same device
(tests/test_resume.py). The file is written atomically, read with torch.load(weights_only=True), and names the run it
belongs to (the base's sha256, the recipe and its resolved settings, the data subset, seed, precision, process
count): a command with other settings refuses it. It is removed once the output is written.

Under torchrun each process keeps its own file (`.resume`, `.resume.rank1`, ...), saved at the end of every epoch
only: a save inside an epoch, on a clock or a signal, would need every process to agree on the step."""
from __future__ import annotations

import contextlib
import contextvars
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import HardenError, Interrupted

FORMAT = 1
SUFFIX = ".resume"
EVERY_MINUTES = 10.0  # saves inside an epoch: an ImageNet-size epoch can run for hours; a save of a ResNet-50's
# state (weights, momentum, best weights: ~300 MB) takes a few seconds

_current: contextvars.ContextVar["RunState | None"] = contextvars.ContextVar("harden_run_state", default=None)


def state_path(output: str | Path) -> Path:
    """Where the run writing `output` keeps its training state (this process's, under torchrun)."""
    from . import distributed
    output = Path(output)
    rank = distributed.rank()
    return output.with_name(output.name + SUFFIX + (f".rank{rank}" if rank else ""))


def current() -> "RunState | None":
    """The state of the run in progress, where it keeps one (fit saves into it)."""
    return _current.get()


def plain(value: Any) -> Any:
    """JSON-like data (settings, history rows) with numpy scalars and tuples made Python's, as weights_only loading
    and comparisons need."""
    return json.loads(json.dumps(value, sort_keys=True, default=lambda v: v.item() if isinstance(v, np.generic)
                                 else str(v)))


class RunState:
    """One run's training state file. The caller checks the path before any work (`check_start`), gives the run's
    settings once they are known (`begin`), runs training inside `active()`, and calls `finish()` once the output is
    written."""

    def __init__(self, path: str | Path, resume: bool = False, every_minutes: float = EVERY_MINUTES):
        if not every_minutes >= 0:
            raise HardenError(f"--state-every is in minutes, 0 or more (0: at epoch ends only); got {every_minutes}.")
        self.path, self.resume, self.every_s = Path(path), bool(resume), 60.0 * float(every_minutes)
        self.fingerprint: dict[str, Any] | None = None
        self.signal: int | None = None  # the signal that asked the run to stop, once one has
        self._finished: dict[int, dict] = {}  # the state of each training call that ended, written with every save
        self._saved: dict[int, dict] = {}  # what the file held, when resuming
        self._calls = 0
        self._last = time.monotonic()
        self.failed: str | None = None  # why the last save failed, where it did
        self._warned = False

    @staticmethod
    def for_output(output: str | Path, resume: bool, force: bool, every_minutes: float = EVERY_MINUTES
                   ) -> "RunState":
        """The state of the run writing `output`, checked before any work: --resume needs a saved state; a saved
        state without --resume (another run of this output was interrupted) needs --force to be replaced."""
        path = state_path(output)
        state = RunState(path, resume, every_minutes)
        if resume and not path.is_file():
            raise HardenError(f"--resume: there is no saved training state at {str(path)!r}: a run keeps one there "
                              f"while it trains {str(Path(output))!r} and removes it once that is written. Run the "
                              "command without --resume to start.")
        if path.is_file() and not resume and not force:
            raise HardenError(f"{str(path)!r} holds the training state of an interrupted run that writes "
                              f"{str(Path(output))!r} ({describe(path)}). Run the same command with --resume to "
                              "continue it, or with --force to start over (the state is then replaced).")
        return state

    def begin(self, fingerprint: dict[str, Any]) -> None:
        """The run's settings, known; when resuming, the saved state is read and must have been saved by a run
        with the same settings."""
        self.fingerprint = plain(fingerprint)
        if not self.resume:
            self.path.unlink(missing_ok=True)  # --force: a stale state must not be resumed later by mistake
            return
        saved = read(self.path)
        theirs, ours = _flat(saved.get("fingerprint") or {}), _flat(self.fingerprint)
        differ = sorted(k for k in set(theirs) | set(ours) if k != "device" and theirs.get(k) != ours.get(k))
        if differ:
            shown = "; ".join(f"{k}: saved {_short(theirs.get(k))}, now {_short(ours.get(k))}" for k in differ[:4])
            raise HardenError(f"--resume: {str(self.path)!r} was saved by a run with other settings ({shown}). Run "
                              "the command it was started with, or start over with --force instead of --resume.")
        if theirs.get("device") != ours.get("device"):
            from .runtime import warn
            warn(f"resuming on {self.fingerprint.get('device')} a run saved on {theirs.get('device')}: it continues "
                 "from the same state, but only a run resumed on the kind of device it started on ends with the "
                 "weights of an uninterrupted run bit for bit")
        self._saved = {int(k): v for k, v in saved["calls"].items()}
        self._finished = {k: v for k, v in self._saved.items() if v.get("done")}
        from .runtime import info
        info(f"resuming the run saved in {self.path} ({describe(self.path, saved)})")

    def next_call(self) -> tuple[int, dict | None]:
        """(this training call's number in the run, its saved state when resuming): recipes that train twice (idfr:
        ID, then FR) resume the second call with the first one's result."""
        call = self._calls
        self._calls += 1
        return call, self._saved.get(call)

    def due(self) -> bool:
        """Whether a save inside an epoch is due (a signal arrived, or the clock ran out); never under torchrun."""
        from . import distributed
        if distributed.active():
            return False
        return self.signal is not None or (self.every_s > 0 and time.monotonic() - self._last >= self.every_s)

    def save(self, call: int, state: dict[str, Any]) -> None:
        """Writes the run's state with `state` as training call `call`'s (atomically: an interruption during the
        write leaves the previous save)."""
        from .checkpoint import atomic_write
        if state.get("done"):
            self._finished[call] = state
        payload = {"format": FORMAT, "fingerprint": self.fingerprint, "saved_at": time.time(),
                   "calls": {**self._finished, call: state}}
        self._last = time.monotonic()  # a failed save is tried again at the next chance, not at every step
        try:
            atomic_write(self.path, lambda f: torch.save(payload, f))
        except OSError as e:  # a full or vanished disk: the training itself goes on (the previous save stays)
            self.failed = f"{type(e).__name__}: {e}"
            from .runtime import warn
            if not self._warned:
                warn(f"could not save the training state to {str(self.path)!r} ({self.failed}); training goes on, "
                     "and saving is tried again at the next epoch's end or after --state-every minutes")
                self._warned = True
            return
        self.failed = None
        self._last = time.monotonic()

    def finish(self) -> None:
        """The output is written: the state is no longer needed."""
        self.path.unlink(missing_ok=True)

    def stop_here(self, where: str) -> Interrupted:
        """The exception that ends a run a signal stopped, its state saved `where`."""
        name = signal.Signals(self.signal).name if self.signal else "a signal"
        if self.failed is not None:
            saved = (f"the training state could not be saved there ({self.failed}); " + (
                f"{str(self.path)!r} holds an earlier one ({describe(self.path)}): run the same command with "
                "--resume to continue from that" if self.path.is_file() else "nothing is saved to resume from"))
            return Interrupted(f"stopped by {name} in {where}; {saved}.", self.signal or signal.SIGINT)
        return Interrupted(f"stopped by {name} in {where}; the training state is saved in {str(self.path)!r}. Run the "
                           "same command with --resume to continue from there.", self.signal or signal.SIGINT)

    @contextlib.contextmanager
    def active(self) -> Iterator["RunState"]:
        """Training inside saves into this state; SIGINT and SIGTERM ask it to save and stop at the end of the
        current step (a second one acts as usual: it stops at once, and the last save stays)."""
        token = _current.set(self)
        from . import distributed
        handled: dict[int, Any] = {}
        if not distributed.active() and threading.current_thread() is threading.main_thread():
            def ask_to_stop(signum, frame):
                self.signal = signum
                for s, h in handled.items():
                    signal.signal(s, h)
            for s in (signal.SIGINT, signal.SIGTERM):
                handled[s] = signal.signal(s, ask_to_stop)
        try:
            yield self
        finally:
            for s, h in handled.items():
                signal.signal(s, h)
            _current.reset(token)


def spec_settings(spec) -> dict[str, Any]:
    """What of a model's description changes its training: the network and its preprocessing (flags for a plain
    state dict); constructor arguments by digest (an ONNX graph's encoding is long)."""
    import hashlib
    from .models.config import SPEC_KEYS
    d = spec.to_dict()
    out = {k: d[k] for k in SPEC_KEYS if k != "model_args"}
    out["model_args_sha256"] = hashlib.sha256(json.dumps(plain(d["model_args"]), sort_keys=True).encode()).hexdigest()
    return out


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train.epochs": 3, ...}: a difference is named by the setting that differs."""
    out: dict[str, Any] = {}
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: what torch.load and its unpickler raise varies
        raise HardenError(f"{str(path)!r} is not a readable training state ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}). Start over with --force.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("calls"), dict):
        raise HardenError(f"{str(path)!r} is not a training state this version of harden wrote. Start over with "
                          "--force.")
    return state


def describe(path: Path, state: dict | None = None) -> str:
    """'saved 2026-12-04 10:31, epoch 3 of 10, step 120 of 400' for messages."""
    try:
        state = state or read(path)
    except HardenError:
        return "unreadable"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.get("saved_at", 0)))
    calls = state["calls"]
    last = calls[max(calls, key=int)] if calls else {}
    if not last:
        return f"saved {when}"
    if last.get("done"):
        return f"saved {when}, training done, the report not yet written"
    w = last["where"]
    return f"saved {when}, epoch {w['epoch'] + 1} of {w['planned']}, step {w['step']} of {w['steps']}"
