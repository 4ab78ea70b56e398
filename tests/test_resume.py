"""A run stopped part-way (a signal, a crash) and resumed with --resume ends with the weights of an uninterrupted run,
bit for bit, whatever the recipe, the data source and the place it was stopped at (the command line:
test_resume_cli.py; reports: test_resume_report.py)."""
import signal
import types

import pytest
import torch

import harden
from harden import RunState, load_data
from harden.errors import Interrupted
from harden.fix import state_digest
from test_files import make_tree


REAL_DUE = RunState.due


def signal_at(k: int, signum: int = signal.SIGTERM, real=REAL_DUE):
    """A `due` (RunState's or ReportStates') that delivers `signum` just before the k-th chance to save inside an
    epoch or an attack (what a scheduler's signal does at a time nobody chooses)."""
    chances = [0]

    def due(self) -> bool:
        chances[0] += 1
        if chances[0] == k:
            self.signal = signum
        return real(self)
    return due


def stop_at(path, k: int) -> RunState:
    state = RunState(path)
    state.due = types.MethodType(signal_at(k), state)
    return state


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread here whatever the runner's: float reduction order follows torch's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def still_rising():
    """The planned schedule's last epoch counts as validation's best, so `extend` adds its cycle in every run here.
    Whether it really was the best is decided by a few images' float rounding, which differs between processors (an
    AVX2 machine's epoch 1 won where an AVX-512 one's epoch 2 did); what these tests prove is that the added cycle's
    state resumes exactly, whichever run adds it."""
    from harden import training
    real = training.extension

    def at_the_schedule_end(cfg, history, best_epoch):
        last = history[-1]["epoch"] if history and len(history) == cfg.epochs else best_epoch
        return real(cfg, history, last)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "extension", at_the_schedule_end)
        yield


@pytest.fixture(scope="module")
def base(digits_model):
    return digits_model


def stopped_then_resumed(base, data, path, k, **kw):
    """(the message it stopped with, the resumed run's result)."""
    with pytest.raises(Interrupted) as stop:
        harden.fix(base, data, state=stop_at(path, k), **kw)
    assert stop.value.exit_code == 128 + signal.SIGTERM
    assert path.is_file()
    return str(stop.value), harden.fix(base, data, state=RunState(path, resume=True), **kw)


def same_run(a, b):
    assert state_digest(a.model) == state_digest(b.model)
    assert a.history == b.history
    assert {k: v for k, v in a.model.spec.extra.items() if k != "train_seconds"} == \
        {k: v for k, v in b.model.spec.extra.items() if k != "train_seconds"}


AT = dict(recipe="at", sets=["eps=0.1", "ema=0.9", "extend=1"], epochs=2, data_frac=0.3, report=False, device="cpu")


@pytest.fixture(scope="module")
def uninterrupted(base, digits):
    return harden.fix(base, digits, **AT)


@pytest.mark.parametrize("k, where", [(25, "epoch 3")])
def test_at_resumed_anywhere_ends_as_if_never_stopped(base, digits, uninterrupted, tmp_path, monkeypatch, k, where):
    """Validation picks the best epoch, the weights are averaged (ema), and a cycle is added while validation still
    rises (extend): each keeps state across epochs; epoch 3 is in the added cycle. The state left after training
    (as by a run killed during its report) resumes at the report, training nothing again."""
    assert len(uninterrupted.history) == 4  # the added cycle ran
    path = tmp_path / "run.resume"
    message, resumed = stopped_then_resumed(base, digits, path, k, **AT)
    assert f"of {where};" in message and "--resume" in message
    same_run(uninterrupted, resumed)
    from harden import training
    monkeypatch.setattr(training, "make_optimizer", lambda *a: pytest.fail("trained again"))
    same_run(uninterrupted, harden.fix(base, digits, state=RunState(path, resume=True), **AT))


class CrashAfterEpoch(RunState):
    """A run that crashes right after saving at the end of epoch `epoch` (a power cut between two epochs)."""

    def __init__(self, path, epoch: int):
        super().__init__(path)
        self.epoch = epoch

    def save(self, call, state):
        super().save(call, state)
        where = state.get("where", {})
        if where.get("step") == 0 and where.get("epoch") == self.epoch:
            raise RuntimeError("power cut")


def test_resumed_at_the_end_of_a_cycle_that_extend_lengthens(base, digits, uninterrupted, tmp_path):
    """Saved after epoch 2, the schedule's last: the added cycle builds its own schedule from there."""
    path = tmp_path / "run.resume"
    with pytest.raises(RuntimeError, match="power cut"):
        harden.fix(base, digits, state=CrashAfterEpoch(path, 2), **AT)
    same_run(uninterrupted, harden.fix(base, digits, state=RunState(path, resume=True), **AT))


def test_a_disk_that_refuses_the_state_does_not_stop_training(base, digits, uninterrupted, tmp_path, monkeypatch):
    from harden import checkpoint
    from harden.runtime import console

    def disk_full(path, write):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint, "atomic_write", disk_full)
    with console.capture() as said:
        result = harden.fix(base, digits, state=RunState(tmp_path / "run.resume"), **AT)
    same_run(uninterrupted, result)
    said = " ".join(said.get().split())
    assert said.count("could not save the training state") == 1 and "No space left on device" in said
    with pytest.raises(Interrupted) as stop:
        harden.fix(base, digits, state=stop_at(tmp_path / "run.resume", 3), **AT)
    assert "could not be saved" in str(stop.value) and "nothing is saved to resume from" in str(stop.value)


@pytest.mark.parametrize("recipe, sets, k", [
    ("idfr", ["fr_epochs=1"], 4),  # in the second training call (FR), the first one's result taken as saved
    ("gda-brelu", [], 3),  # ART's Gaussian augmentation, seeded from the recipe's own stream
])
def test_every_recipe_resumes_exactly(base, digits, tmp_path, recipe, sets, k):
    kw = dict(recipe=recipe, sets=sets, epochs=1 if recipe == "idfr" else 2, data_frac=0.1 if recipe == "idfr" else 0.2,
              report=False, device="cpu")
    message, resumed = stopped_then_resumed(base, digits, tmp_path / "run.resume", k, **kw)
    if recipe == "idfr":
        assert "idfr: FR" in message
    same_run(harden.fix(base, digits, **kw), resumed)


def test_pseudo_labelled_batches_resume_exactly(base, digits, tmp_path):
    """--unlabeled: the pool's draws (a queue refilled by permutations) are part of the state."""
    import numpy as np
    pool = tmp_path / "pool.npz"
    np.savez(pool, x_train=digits.x_train, y_train=digits.y_train, x_test=digits.x_test, y_test=digits.y_test)
    kw = dict(recipe="at", sets=["eps=0.2"], epochs=2, data_frac=0.15, report=False, device="cpu", unlabeled=pool)
    _, resumed = stopped_then_resumed(base, digits, tmp_path / "run.resume", 7, **kw)
    same_run(harden.fix(base, digits, **kw), resumed)


def test_image_files_with_random_crops_and_workers_resume_exactly(tmp_path):
    """Photos larger than 64 px train with random resized crops drawn per image and epoch in the decode workers."""
    from harden.data import DataTarget
    make_tree(tmp_path / "tree", ["a", "b"], 8, sizes=(70, 110))
    data = load_data(tmp_path / "tree", DataTarget(workers=2))
    base = harden.create_model("cnn-small", 2, 3, (72, 72), [0.5] * 3, [0.25] * 3)
    kw = dict(recipe="at", sets=["eps=0.03", "val_frac=0"], epochs=2, batch_size=8, data_frac=1.0, report=False,
              device="cpu", data_target={"workers": 2})
    assert data.kind == "imagenet-like"
    message, resumed = stopped_then_resumed(base, tmp_path / "tree", tmp_path / "run.resume", 2, **kw)
    assert "of epoch 2;" in message  # its crops are drawn for the epoch it continues
    same_run(harden.fix(base, tmp_path / "tree", **kw), resumed)


def test_a_state_an_earlier_format_wrote_is_refused_with_a_message(tmp_path):
    """A state whose random streams this version cannot continue (format 1: albumentations' streams for the crops of
    small images) is refused by name, with the way out, not resumed into other batches."""
    import torch

    from harden import resume
    from harden.errors import HardenError
    path = tmp_path / "old.resume"
    torch.save({"format": resume.FORMAT - 1, "calls": {}}, path)
    with pytest.raises(HardenError, match="not a training state this version of harden wrote.*--force"):
        resume.read(path)
    torch.save({"format": resume.FORMAT, "calls": {}}, path)
    assert resume.read(path)["calls"] == {}
