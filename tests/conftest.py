import atexit
import os
import shutil
import sys
import tempfile

import pytest
import torch

from harden import TrainConfig, load_data, save, train
from harden.allocator import keep_freed_memory
from harden.report import checks
from harden.runtime import set_quiet

set_quiet(True)
# reports keep their progress (resume.ReportStates) in a folder of the session's, never the user's cache
# (removed when the process ends: each xdist worker makes its own, and a run used to leave them all in /tmp)
if "HARDEN_STATE_DIR" not in os.environ:
    os.environ["HARDEN_STATE_DIR"] = tempfile.mkdtemp(prefix="harden-test-state-")
    atexit.register(shutil.rmtree, os.environ["HARDEN_STATE_DIR"], ignore_errors=True)
keep_freed_memory()  # as the CLI does for its process (the in-process CLI tests would set it midway otherwise)
# `make test` runs two pytest workers (pytest-xdist, a file each at a time) on the machine's two cores: one torch
# thread each, since small models scale poorly over threads; a plain `pytest` keeps two threads
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(int(os.environ.get("HARDEN_TEST_THREADS", str(max(1, 2 // WORKERS)))))


# The longest test files first (per-file times from `pytest --durations=0`, 2026-12-06): xdist hands whole files
# (--dist loadfile) to its two workers in collection order, so a long file left for last keeps one core busy while
# the other has nothing left; longest-first leaves the short files to even out the end. Other files keep their order.
LONGEST_FIRST = ("test_distributed.py", "test_autoattack.py", "test_whitebox_hardening.py", "test_byoc.py",
                 "test_resume.py", "test_cli.py", "test_resume_report.py", "test_idfr.py", "test_attacks.py",
                 "test_fixer.py", "test_speed_bench.py", "test_files.py", "test_patch_ft_masking.py",
                 "test_resume_cli.py", "test_dataset_objects.py", "test_finetune_recipes.py", "test_html_report.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


# The masking checks' black-box check (Square on the images the gradient attacks left) takes a fifth of a report's
# queries in tests: most tests read that the check ran and what it says, and its queries were the largest part of
# every report with the checks on (measured 2026-12-06: about 60 s of the suite's worker time). The tests of its
# power, quiet on a plain model and tripped on a masked one, take the report's own count (report_black_box_queries).
REPORT_BLACK_BOX_QUERIES = checks.BLACK_BOX_QUERIES


@pytest.fixture(scope="session", autouse=True)
def light_black_box_check():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checks, "BLACK_BOX_QUERIES", REPORT_BLACK_BOX_QUERIES // 5)
        yield


@pytest.fixture
def report_black_box_queries(monkeypatch):
    """The masking checks' black-box check at a report's own query count."""
    monkeypatch.setattr(checks, "BLACK_BOX_QUERIES", REPORT_BLACK_BOX_QUERIES)


@pytest.fixture(scope="session")
def digits():
    return load_data("digits")


@pytest.fixture(scope="session")
def digits_model(digits):
    """cnn-small trained on sklearn digits (~3 s on 2 cores): the model every robustness test attacks."""
    return train("cnn-small", digits, TrainConfig(epochs=10, batch_size=64, lr=0.05, augment="crop", seed=0), "cpu")


@pytest.fixture(scope="session")
def digits_ckpt(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "base.safetensors"
    save(digits_model, path)
    return path


@pytest.fixture(scope="session")
def other_ckpt(digits, tmp_path_factory):
    """A second, independently trained model: the crafting model for transfer tests."""
    m = train("cnn-small", digits, TrainConfig(epochs=6, batch_size=64, lr=0.05, augment="crop", seed=1), "cpu")
    path = tmp_path_factory.mktemp("ckpt2") / "other.safetensors"
    save(m, path)
    return path


def tiny_data(size, chans, n=24, classes=4):
    """Random uint8 images for architecture-coverage tests (what is checked there is plumbing)."""
    import numpy as np

    from harden.data import ImageData
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, *size, chans), dtype=np.uint8)
    y = np.arange(n) % classes
    return ImageData(x, y, x[:8], y[:8], "synthetic", classes)


def assert_reloads(model, path, recipe):
    """Saved and loaded back with no flags, the hardened model gives the same logits."""
    import harden
    harden.save(model, path)
    again = harden.load(path)
    t = torch.rand(2, model.spec.in_chans, *model.spec.input_size)
    with torch.no_grad():
        assert torch.allclose(again(t), model(t), atol=1e-6)
    assert again.spec.extra["recipe"] == recipe
    return again


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the real `harden` entry point in-process; returns (exit code, stdout, stderr)."""
    from harden.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["harden", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        set_quiet(True)  # a CLI call without -q turned progress bars on for the rest of the session
        o, e = capsys.readouterr()
        return code, o, e
    return run
