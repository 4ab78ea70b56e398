"""The command line of resumable runs: a stop says how to go on, the saved state belongs to one output and one set of
settings, `train` resumes too, and a real SIGTERM to the whole process group saves and exits 143."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harden
from harden import RunState
from harden.fix import state_digest
from test_files import make_tree
from test_resume import signal_at


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
    make_tree(tmp_path / "tree", ["a", "b"], 8, sizes=(66, 90))
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
