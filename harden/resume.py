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

Under torchrun each process keeps its own file (`.resume`, `.resume.rank1`, ...). The processes agree at every step
on whether to save and stop there (one all-reduce of two integers): a signal that reached any of them, or any one's
clock, saves all of them at the same step, so the files always belong together."""
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

# 2: the feeders of small images draw their crops and flips from one torch generator (data/batch_augment.py), not
# albumentations' streams: a state of format 1 cannot continue the same batches, and is refused with a message
FORMAT = 2
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


class _StateFile:
    """What every saved state shares: one file written atomically (a disk that refuses it is warned about once, and
    the work goes on), a clock for saves inside long loops, and the signal that asked the run to stop."""

    def __init__(self, every_minutes: float):
        if not every_minutes >= 0:
            raise HardenError(f"--state-every is in minutes, 0 or more (0: at epoch ends only); got {every_minutes}.")
        self.every_s = 60.0 * float(every_minutes)
        self.signal: int | None = None  # the signal that asked the run to stop, once one has
        self.failed: str | None = None  # why the last save failed, where it did
        self._warned = False
        self._last = time.monotonic()

    def due(self) -> bool:
        """Whether a save is due inside a loop: a signal arrived, or the clock ran out."""
        return self.signal is not None or (self.every_s > 0 and time.monotonic() - self._last >= self.every_s)

    def _write(self, path: Path, payload: dict[str, Any], what: str) -> None:
        from .checkpoint import atomic_write
        self._last = time.monotonic()  # a failed save is tried again at the next chance, not at every step
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # the reports' folder, on first use
            atomic_write(path, lambda f: torch.save(payload, f))
        except OSError as e:  # a full or vanished disk: the work itself goes on (the previous save stays)
            self.failed = f"{type(e).__name__}: {e}"
            from .runtime import warn
            if not self._warned:
                warn(f"could not save the {what} to {str(path)!r} ({self.failed}); the run goes on, and saving is "
                     "tried again later")
                self._warned = True
            return
        self.failed = None
        self._last = time.monotonic()

    def _stopped(self, where: str, path: Path, what: str, together: bool = True) -> Interrupted:
        """The exception that ends a run a signal stopped, its state saved `where`; `together`: every process stops
        at this point (under torchrun: the step training's processes agreed on; a report's stop at its own batch)."""
        name = signal.Signals(self.signal).name if self.signal else "a signal"
        if self.failed is not None:
            saved = (f"the {what} could not be saved there ({self.failed}); " + (
                f"{str(path)!r} holds an earlier one: run the same command with --resume to continue from that"
                if path.is_file() else "nothing is saved to resume from"))
            return Interrupted(f"stopped by {name} in {where}; {saved}.", self.signal or signal.SIGINT, together)
        return Interrupted(f"stopped by {name} in {where}; the {what} is saved in {str(path)!r}. Run the same "
                           "command with --resume to continue from there.", self.signal or signal.SIGINT, together)

    @contextlib.contextmanager
    def stoppable(self) -> Iterator[None]:
        """SIGINT and SIGTERM ask the run to save and stop at the end of the current step or batch (a second one acts
        as usual: it stops at once, and the last save stays). Main thread only (where Python delivers signals).
        Under torchrun every signal only asks: the agent repeats the one a terminal or a scheduler sent to every
        process, and ends the processes itself when they take too long (training's processes stop at a step they
        agree on, RunState.due; a report's each after its own batch, ReportStates)."""
        from . import distributed
        handled: dict[int, Any] = {}
        under_torchrun = distributed.active()
        if threading.current_thread() is threading.main_thread():
            def ask_to_stop(signum, frame):
                self.signal = signum
                if not under_torchrun:
                    for s, h in handled.items():
                        signal.signal(s, h)
            for s in (signal.SIGINT, signal.SIGTERM):
                handled[s] = signal.signal(s, ask_to_stop)
        try:
            yield
        finally:
            for s, h in handled.items():
                signal.signal(s, h)


class RunState(_StateFile):
    """One run's training state file. The caller checks the path before any work (`check_start`), gives the run's
    settings once they are known (`begin`), runs training inside `active()`, and calls `finish()` once the output is
    written."""

    def __init__(self, path: str | Path, resume: bool = False, every_minutes: float = EVERY_MINUTES):
        super().__init__(every_minutes)
        self.path, self.resume = Path(path), bool(resume)
        self.fingerprint: dict[str, Any] | None = None
        self._finished: dict[int, dict] = {}  # the state of each training call that ended, written with every save
        self._saved: dict[int, dict] = {}  # what the file held, when resuming
        self._calls = 0
        self._agreed_signal = 0  # under torchrun: the signal any process received, as of the last due()
        self.reports = ReportStates(resume, parent=self)  # the reports of the run (fix's before/after)

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

    def saved_fingerprint(self) -> dict[str, Any] | None:
        """When resuming, the settings the interrupted run saved (before `begin`: what it planned, such as a time
        budget's epochs, is taken again rather than planned anew); else None."""
        if not self.resume or not self.path.is_file():
            return None
        return read(self.path).get("fingerprint")

    def next_call(self) -> tuple[int, dict | None]:
        """(this training call's number in the run, its saved state when resuming): recipes that train twice (idfr:
        ID, then FR) resume the second call with the first one's result."""
        call = self._calls
        self._calls += 1
        return call, self._saved.get(call)

    def due(self) -> bool:
        """Under torchrun every process must save at the same step (each resumes from its own file): the processes
        agree, and a signal that reached any of them, or any one's clock, makes it due for all (a report's batches
        need no agreement: ReportStates keeps the plain clock)."""
        from . import distributed
        if not distributed.active():
            return super().due()
        clock = self.every_s > 0 and time.monotonic() - self._last >= self.every_s
        clock, self._agreed_signal = distributed.all_max([int(clock), self.signal or 0])
        if clock not in (0, 1) or not 0 <= self._agreed_signal < signal.NSIG:
            raise HardenError("the processes of this torchrun run fell out of step (one of them made a collective "
                              "operation the others did not); nothing was written. Run it again with --debug and "
                              "report it, with the command.")
        return bool(clock or self._agreed_signal)

    def stopping(self, agree: bool = False) -> bool:
        """Whether the run stops here, its state saved: a signal asked. Under torchrun, a signal to any process, as
        the last due() agreed (with `agree`, as the processes agree now: at an epoch's end, where no due() ran)."""
        from . import distributed
        if not distributed.active():
            return self.signal is not None
        signum = distributed.all_max([self.signal or 0])[0] if agree else self._agreed_signal
        if signum and self.signal is None:  # another process was signalled: this one stops with it
            self.signal = signum
        return bool(signum)

    def save(self, call: int, state: dict[str, Any]) -> None:
        """Writes the run's state with `state` as training call `call`'s (atomically: an interruption during the
        write leaves the previous save)."""
        if state.get("done"):
            self._finished[call] = state
        self._write(self.path, {"format": FORMAT, "fingerprint": self.fingerprint, "saved_at": time.time(),
                                "calls": {**self._finished, call: state}}, "training state")

    def finish(self) -> None:
        """The output is written: the state is no longer needed (nor its reports' progress)."""
        self.path.unlink(missing_ok=True)
        self.reports.finish()

    def stop_here(self, where: str) -> Interrupted:
        return self._stopped(where, self.path, "training state")

    @contextlib.contextmanager
    def active(self) -> Iterator["RunState"]:
        """Training inside saves into this state, and stops at a signal (stoppable)."""
        token = _current.set(self)
        try:
            with self.stoppable():
                yield self
        finally:
            _current.reset(token)


REPORT_EVERY_MINUTES = 1.0  # a report's progress is a few bytes an image: saved often


def reports_folder() -> Path:
    """Where reports keep their progress: $HARDEN_STATE_DIR, else harden's folder in the user's cache."""
    import os
    env = os.environ.get("HARDEN_STATE_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "harden" / "reports"


STALE_DAYS = 14  # a report's progress that no --resume took up in this long is removed: the folder stays bounded


def prune(folder: Path) -> None:
    """Removes the progress files of reports left unfinished more than STALE_DAYS ago."""
    cutoff = time.time() - STALE_DAYS * 86400
    for path in folder.glob(f"report-*{SUFFIX}*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:  # another process removed it, or the folder is not ours to clean
            pass


class ReportStates(_StateFile):
    """The progress of a command's reports (`eval`, and `fix`'s before/after reports): each attack's verdicts, batch
    by batch, kept in one small file per report in reports_folder(), named by the digest of everything the verdicts
    depend on (the model's and the crafting model's weights, the images, the attacks and their budgets, the seed, the
    batch size, the precision, the process count). Each batch's attack is seeded by its position, so a batch taken
    from the file is the batch an uninterrupted run computes: a resumed report equals an uninterrupted one (timings
    aside). With `resume` a report takes what its file holds; without, a file left by an interrupted run of the same
    report is replaced. Files are removed when the command has written its outputs.

    Under torchrun each process keeps its own batches' verdicts (`.rankN`) and stops after its own batch at a signal
    (the agent passes one on to every process); each saves before it waits for the others (ReportState.save), so a
    process that is waiting when the others stop loses nothing."""

    def __init__(self, resume: bool = False, every_minutes: float = REPORT_EVERY_MINUTES,
                 parent: _StateFile | None = None):
        super().__init__(every_minutes)
        self.resume, self.parent = bool(resume), parent
        self.opened: list[ReportState] = []
        self.taken_seconds = 0.0  # what the batches taken from saved progress took when they ran

    def open(self, fingerprint: dict[str, Any]) -> "ReportState":
        import hashlib
        from . import distributed
        prune(reports_folder())
        fingerprint = plain(fingerprint)
        digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:20]
        rank = distributed.rank()
        path = reports_folder() / f"report-{digest}{f'.rank{rank}' if rank else ''}{SUFFIX}"
        state = ReportState(self, path, fingerprint)
        if self.resume and not self.opened and not state.pieces:
            self._say_near_misses(fingerprint, path)
        self.opened.append(state)
        return state

    def _say_near_misses(self, fingerprint: dict[str, Any], path: Path) -> None:
        """--resume found no progress of this report: progress of the same model's report under other settings (a
        changed --batch-size or --num-images is another report) is named with what differs, so that a resume that
        starts over is not silent."""
        from .runtime import warn
        ours = _flat(fingerprint)
        near = []
        try:  # the newest files first; another process may remove one meanwhile (an advisory scan: skipped then)
            others = sorted(path.parent.glob(f"report-*{SUFFIX}"), key=lambda q: -q.stat().st_mtime)[:20]
        except OSError:
            others = []
        for other in others:
            if other == path or ".rank" in other.name:
                continue
            try:
                theirs = _flat(read(other, "pieces").get("fingerprint") or {})
            except HardenError:
                continue
            if theirs.get("model") != ours.get("model"):
                continue
            differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            near.append("; ".join(f"{k}: saved {_short(theirs.get(k))}, now {_short(ours.get(k))}"
                                  for k in differ[:3]) + (f" (+{len(differ) - 3} more)" if len(differ) > 3 else ""))
        if near:
            warn(f"--resume: no saved progress of this evaluation; {len(near)} of the same model under other settings "
                 f"({near[0]}{'; ...' if len(near) > 1 else ''}) cannot be taken up, so this one starts over. Give "
                 "the settings it was started with to continue it.")
        else:
            from .runtime import info
            info(f"--resume: no saved progress of this evaluation in {path.parent}: it starts from the beginning")

    @property
    def stop_signal(self) -> int | None:
        return self.signal if self.signal is not None else getattr(self.parent, "signal", None)

    def finish(self) -> None:
        for state in self.opened:
            state.path.unlink(missing_ok=True)

    def memory(self) -> "PlanMemory":
        """Where `--time-budget` keeps its plan, so a resumed run evaluates the images the interrupted one chose."""
        return PlanMemory(self)


class PlanMemory:
    """A time budget's plan, kept in the progress of the first report opened after it was made (the first
    calibration run, whose images never change), and the seconds that saved progress stood in for (a resumed
    calibration is timed as the run it resumes)."""

    def __init__(self, states: ReportStates):
        self.states, self.since = states, len(states.opened)

    def credited(self) -> float:
        return self.states.taken_seconds

    def _first(self) -> "ReportState | None":
        opened = self.states.opened
        return opened[self.since] if len(opened) > self.since else None

    def recall(self, key: str) -> dict | None:
        first = self._first()
        return first.piece(key) if first is not None else None

    def remember(self, key: str, value: dict) -> None:
        first = self._first()
        if first is not None:
            first.keep(key, value, "the time budget's plan", save_now=True)


class ReportState:
    """One report's progress (ReportStates)."""

    def __init__(self, owner: ReportStates, path: Path, fingerprint: dict[str, Any]):
        self.owner, self.path, self.fingerprint = owner, path, fingerprint
        self.pieces: dict[str, dict] = {}
        from .runtime import info
        if path.is_file() and owner.resume:
            try:
                saved = read(path, "pieces")
                if saved.get("fingerprint") == fingerprint:
                    self.pieces = dict(saved["pieces"])
                    info(f"report: continuing from {len(self.pieces)} batches of attacks saved in {path}")
            except HardenError as e:
                info(f"report: its saved progress cannot be read ({e}); starting over")
        elif path.is_file():
            info(f"report: {path} holds the progress of an interrupted run of this report, replaced (--resume would "
                 "have continued it)")
            path.unlink(missing_ok=True)

    def piece(self, key: str) -> dict | None:
        found = self.pieces.get(key)
        if found is not None:
            self.owner.taken_seconds += float(found.get("seconds", 0.0))
        return found

    def save(self) -> None:
        """Writes what is kept now: under torchrun, before this process waits for the others' batches (a process
        that waits cannot stop at a signal, and fails once the others have stopped)."""
        self.owner._write(self.path, {"format": FORMAT, "fingerprint": self.fingerprint, "saved_at": time.time(),
                                      "pieces": self.pieces}, "report's progress")

    def keep(self, key: str, piece: dict[str, Any], where: str, save_now: bool = False) -> None:
        """Keeps a batch's verdicts; saves when due (or `save_now`), and stops the run (its progress saved) when a
        signal asked."""
        self.pieces[key] = piece
        owner = self.owner
        stop = owner.stop_signal
        if stop is not None or save_now or owner.due():
            self.save()
            if stop is not None:
                owner.signal = stop
                raise owner._stopped(where, self.path, "report's progress", together=False)


def state_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's weights and buffers, by name (their bytes as stored: bfloat16, which numpy lacks,
    included)."""
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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


def read(path: Path, holds: str = "calls") -> dict[str, Any]:
    """A state file's content (`holds`: calls for training, pieces for a report)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: what torch.load and its unpickler raise varies
        raise HardenError(f"{str(path)!r} is not a readable training state ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}). Start over with --force.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get(holds), dict):
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
