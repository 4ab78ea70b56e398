"""A run stopped part-way (a signal, a crash) and resumed with --resume ends with the weights of an uninterrupted run,
bit for bit, whatever the recipe, the data source and the place it was stopped at; its saved state belongs to one
output and one set of settings."""
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("k, where", [(3, "epoch 1"), (25, "epoch 3")])
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
    ("fixer", [], 2),
    ("idfr", ["fr_epochs=1"], 6),  # in the second training call (FR), the first one's result taken as saved
    ("gda-brelu", [], 3),  # ART's Gaussian augmentation, seeded from the recipe's own stream
])
def test_every_recipe_resumes_exactly(base, digits, tmp_path, recipe, sets, k):
    kw = dict(recipe=recipe, sets=sets, epochs=1 if recipe == "idfr" else 2, data_frac=0.2, report=False, device="cpu")
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


# ------------------------------------------------------------------------------------------------ the command line

def test_state_belongs_to_one_output_and_one_set_of_settings(digits_ckpt, tmp_path, cli, monkeypatch):
    out = tmp_path / "fixed.safetensors"
    state = Path(str(out) + ".resume")
    args = ["fix", digits_ckpt, "--data", "digits", "--epochs", 2, "--set", "eps=0.2", "--data-frac", 0.3,
            "--no-report", "-o", out]
    code, _, err = cli(*args, "--resume")
    assert code == 2 and "no saved training state" in err and not out.exists()
    with monkeypatch.context() as m:
        m.setattr(RunState, "due", signal_at(3, signal.SIGINT))
        code, _, err = cli(*args)
    assert code == 130 and "stopped by SIGINT" in " ".join(err.split()) and state.is_file() and not out.exists()
    code, _, err = cli(*args)  # neither --resume nor --force: the saved state is not lost by a rerun
    err = " ".join(err.split())
    assert code == 2 and "--resume to continue it" in err and "epoch 1 of 2, step 3 of" in err
    code, _, err = cli(*args[:-2], "--epochs", 3, "-o", out, "--resume")
    assert code == 2 and "train.epochs: saved 2, now 3" in " ".join(err.split())
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    assert out.is_file() and not state.exists()
    code, _, err = cli(*args[:-1], tmp_path / "whole.safetensors")
    assert code == 0, err
    assert state_digest(harden.load(out)) == state_digest(harden.load(tmp_path / "whole.safetensors"))


def test_force_starts_over_and_a_damaged_state_is_refused(digits_ckpt, tmp_path, cli):
    out = tmp_path / "fixed.safetensors"
    state = Path(str(out) + ".resume")
    state.write_bytes(b"not a state")
    args = ["fix", digits_ckpt, "--data", "digits", "--epochs", 1, "--data-frac", 0.2, "--no-report", "-o", out]
    code, _, err = cli(*args, "--resume")
    assert code == 2 and "not a readable training state" in err
    code, _, err = cli(*args, "--force")
    assert code == 0, err
    assert out.is_file() and not state.exists()


def test_train_resumes_too(tmp_path, cli, monkeypatch):
    args = ["train", "--data", "digits", "--epochs", 2, "--batch-size", 64]
    with monkeypatch.context() as m:
        m.setattr(RunState, "due", signal_at(25))
        code, _, err = cli(*args, "-o", tmp_path / "a.safetensors")
    assert code == 143 and "epoch 2" in " ".join(err.split())
    assert cli(*args, "-o", tmp_path / "a.safetensors", "--resume")[0] == 0
    assert cli(*args, "-o", tmp_path / "b.safetensors")[0] == 0
    assert state_digest(harden.load(tmp_path / "a.safetensors")) == state_digest(harden.load(tmp_path / "b.safetensors"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_to_the_whole_job_saves_and_exits_143(tmp_path, digits_ckpt):
    """As SLURM and a terminal's Ctrl-C deliver it: to every process, the decode workers included (they leave it to
    the main process, which saves at the end of its step)."""
    make_tree(tmp_path / "tree", ["a", "b"], 12, sizes=(70, 100))
    base = tmp_path / "base.safetensors"
    harden.save(harden.create_model("cnn-small", 2, 3, (72, 72), [0.5] * 3, [0.25] * 3), base)
    out = tmp_path / "fixed.safetensors"
    cmd = [sys.executable, "-m", "harden", "fix", base, "--data", tmp_path / "tree", "--epochs", 50, "--batch-size",
           4, "--set", "val_frac=0", "--data-frac", 1, "--no-report", "--workers", 2, "-q", "-o", out]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    deadline = time.monotonic() + 120
    while not Path(str(out) + ".resume").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # the state of the first epoch's end: training is under way, the workers decoding
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert Path(str(out) + ".resume").is_file() and not out.exists()
    assert "epoch" in harden.resume.describe(Path(str(out) + ".resume"))
