"""torchrun on CPU: gloo, 2 processes (this machine has 2 cores). Sharded eval equals one process image by
image; fix under 2 processes writes once and lands within noise of one process; a failing rank stops the run
with no output."""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

from harden.runtime import set_quiet

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or TORCHRUN is None,
                                reason="torch.distributed / torchrun not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCH_TMP = tempfile.mkdtemp(prefix="harden-test-torchrun-")
atexit.register(shutil.rmtree, LAUNCH_TMP, ignore_errors=True)


def env_for(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update({"OMP_NUM_THREADS": "1", "HARDEN_QUIET": "1", "PET_MASTER_PORT": str(free_port()),
                "TMPDIR": LAUNCH_TMP})  # torchrun leaves a torchelastic_* folder there per launch
    env.update(extra or {})
    return env


def torchrun(args, cwd, timeout=300):
    """`torchrun <args>` as a user types it (its master port from the environment, PET_MASTER_PORT)."""
    return subprocess.run([TORCHRUN, *map(str, args)], cwd=cwd, env=env_for(), capture_output=True, text=True,
                          timeout=timeout)


def same_report(a: dict, b: dict) -> None:
    """Equal but for timings (when made included) and the process count."""
    def strip(d):
        d = {k: v for k, v in d.items() if k not in ("processes", "check_seconds")}
        d["attacks"] = [{k: v for k, v in x.items() if k not in ("seconds", "images_per_s")} for x in d["attacks"]]
        d["provenance"] = {k: v for k, v in d["provenance"].items() if k != "created"}
        return d
    assert strip(a) == strip(b)


@pytest.fixture
def one_thread():
    """The one-process references run on one thread, as each rank does: identical arithmetic, identical bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


WORKER = textwrap.dedent("""
    import sys, torch
    import harden
    from harden import distributed
    torch.set_num_threads(1)
    model = harden.load(sys.argv[1])
    rep = harden.evaluate(model, harden.load_data("digits"), attacks=["fgsm", "pgd"], n=150, seed=3, metrics=False,
                          batch_size=32, masking_checks=False)
    # the per-step agreement of training's saves; under NCCL it takes a gloo group of its own on the host
    agreed = [distributed.all_max([distributed.rank(), 7 - distributed.rank()])]
    from unittest import mock
    with mock.patch.object(distributed.dist, "get_backend", return_value="nccl"):
        agreed.append(distributed.all_max([distributed.rank(), 7 - distributed.rank()]))
    if distributed.is_main():
        torch.save({"robust": rep.robust_images, "report": rep.to_dict(), "agreed": agreed}, sys.argv[2])
""")


def test_sharded_eval_gives_one_process_per_image_results(digits_ckpt, digits, tmp_path, one_thread):
    """Five batches of 32 over 2 ranks (3 + 2): the gathered per-image verdicts equal one process's."""
    import harden
    (tmp_path / "worker.py").write_text(WORKER)
    r = torchrun(["--nproc-per-node", "2", "worker.py", digits_ckpt, "out.pt"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=False)
    ref = harden.evaluate(harden.load(digits_ckpt), digits, attacks=["fgsm", "pgd"], n=150, seed=3, metrics=False,
                          batch_size=32, masking_checks=False)
    assert set(got["robust"]) == set(ref.robust_images) == {"fgsm", "pgd"}
    for k in ref.robust_images:
        assert torch.equal(got["robust"][k], ref.robust_images[k]), k
    assert 0 < float(ref.robust_images["pgd"].float().mean()) < 1  # not a trivially all-equal case
    assert got["report"]["processes"] == 2
    same_report(got["report"], ref.to_dict())
    assert got["agreed"] == [[1, 7], [1, 7]]


def test_torchrun_eval_as_written_matches_one_process(digits_ckpt, tmp_path, cli, one_thread, monkeypatch,
                                                     report_black_box_queries):  # as the torchrun processes
    """`torchrun --nproc-per-node N -m harden eval model --num-images ... --junit r.xml`: the same report, gate and
    exit code as one process, the outputs written once (by rank 0). The run is first stopped by a SIGTERM to rank 0
    alone in its second PGD batch: rank 0 saves and stops; rank 1, which saved its batches before waiting for rank
    0's, fails. `--resume` takes both processes' batches."""
    monkeypatch.setenv("HARDEN_STATE_DIR", str(tmp_path / "states"))
    (tmp_path / "signalled.py").write_text(SIGNALLED_ARCH)
    args = [digits_ckpt, "--arch", f"{tmp_path / 'signalled.py'}:net", "--num-images", 120, "--attack", "fgsm",
            "--attack", "pgd", "--no-metrics", "--seed", 1, "--batch-size", 16, "--require", "fgsm>=0.2",
            "--require", "pgd>=0.99"]
    launch = ["--nproc-per-node", "2", "-m", "harden", "eval", *args, "--junit", "r.xml", "--json", "r.json"]
    r = subprocess.run([TORCHRUN, "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *map(str, launch)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, env=env_for({"SIGNAL_AT_ATTACK": "10"}))
    assert "stopped by SIGTERM in the report's pgd at images" in " ".join(r.stderr.split()), r.stderr[-3000:]
    assert not (tmp_path / "r.json").exists()
    assert sorted(p.name.split(".", 1)[1] for p in (tmp_path / "states").iterdir()) == ["rank1.resume", "resume"]
    r = torchrun(launch + ["--resume"], tmp_path)
    assert not list((tmp_path / "states").iterdir())
    code, out, _ = cli("eval", *args, "--junit", tmp_path / "r1.xml", "--json", tmp_path / "r1.json", "-q")
    assert code == 1  # pgd>=0.99 fails on a plain model
    assert r.returncode != 0 and "exitcode  : 1" in r.stderr  # torchrun reports the ranks' exit code 1
    assert r.stdout.count("gate failed") == 1 and r.stdout.count("FAIL pgd>=0.99") == 1  # rank 0 alone prints
    two, one = json.loads((tmp_path / "r.json").read_text()), json.loads((tmp_path / "r1.json").read_text())
    assert two["processes"] == 2 and "x 2 processes" in r.stdout
    same_report(two, one)
    def without_times(path):
        return [line for line in path.read_text().splitlines() if "time=" not in line]
    assert without_times(tmp_path / "r.xml") == without_times(tmp_path / "r1.xml")


def test_every_option_has_a_spelling_torchrun_leaves_alone():
    """torchrun's parser takes prefixes of its own options (`--n` could be --nnodes): every harden option must have
    a spelling that reaches harden through `torchrun ... -m harden <command>`."""
    import typer.main
    from torch.distributed.run import get_args_parser

    from harden.cli import app
    parser = get_args_parser()
    unreachable = []
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            spellings = [o for o in list(param.opts) + list(param.secondary_opts) if o.startswith("-")]
            ok = []
            for opt in spellings:
                try:
                    args = parser.parse_args(["--nproc-per-node", "2", "-m", "harden", name, opt, "1"])
                    ok.append(opt in args.training_script_args)
                except SystemExit:
                    ok.append(False)
            if spellings and not any(ok):
                unreachable.append(f"{name} {spellings}")
    assert not unreachable, unreachable


SIGNALLED_ARCH = textwrap.dedent("""
    import os
    import signal
    import torch
    from harden.models.builtin import cnn_small

    def net(num_classes=10, in_chans=1, input_size=(8, 8)):
        model = cnn_small(num_classes, in_chans, input_size)
        # SIGTERM to rank 0 alone at its n-th training step (SIGNAL_AT_STEP) or attack pass (SIGNAL_AT_ATTACK)
        training = "SIGNAL_AT_STEP" in os.environ
        signal_at = int(os.environ.get("SIGNAL_AT_STEP", os.environ.get("SIGNAL_AT_ATTACK", "0")))
        if signal_at and os.environ.get("RANK") == "0":
            steps = [0]

            def signal_me(module, *_):  # the module called (fix trains a copy of the loaded network)
                if torch.is_grad_enabled() and module.training == training:
                    steps[0] += 1
                    if steps[0] == signal_at:
                        os.kill(os.getpid(), signal.SIGTERM)
            model.head.register_forward_hook(signal_me)
        return model
""")


def test_fix_under_two_processes_writes_once_and_matches_one(digits_ckpt, tmp_path, cli, one_thread):
    """The multi-node form on one machine (c10d rendezvous): training shares every batch across the ranks and
    averages the gradients, so the model lands within noise of the one-process run. The run is first stopped inside
    its second epoch by a SIGTERM that reaches rank 0 alone: the processes agree at every step, so both save at the
    same step and stop; each resumes from its own state (the resumed weights equal an uninterrupted two-process
    run's bit for bit: checked by hand, BENCHMARKS.md "Resumable runs")."""
    # batch 128 as measured below (at's batch auto would give 32 here: 16 images a rank, BatchNorm statistics
    # of half-batches, so the runs drift further apart than this tolerance was measured for)
    (tmp_path / "signalled.py").write_text(SIGNALLED_ARCH)
    common = ["--data-frac", 0.5, "--epochs", 3, "--batch-size", 128, "--set", "eps=0.1", "--num-images", 150,
              "--attack", "pgd", "--no-metrics", "--no-masking-checks", "--seed", 0]
    launch = ["--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d", "-m", "harden", "fix", digits_ckpt,
              "--arch", "signalled.py:net", "-o", "two.safetensors", "--json", "two.json", *common]
    r = subprocess.run([TORCHRUN, "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *map(str, launch)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, env=env_for({"SIGNAL_AT_STEP": "7"}))
    assert r.returncode != 0  # 5 steps an epoch: the second step of the second, on both processes
    said = " ".join(r.stderr.split())
    assert "stopped by SIGTERM in at (pgd-at loss, pgd) at step 2 of 5 of epoch 2" in said, r.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signalled.py", "two.safetensors.resume",
                                                          "two.safetensors.resume.rank1"]
    from harden.resume import describe
    saved = [describe(tmp_path / name).split(", ", 1)[1] for name in ("two.safetensors.resume",
                                                                       "two.safetensors.resume.rank1")]
    assert saved == ["epoch 2 of 3, step 2 of 5"] * 2  # rank 1, never signalled, saved at the same step
    r = torchrun(["--rdzv-endpoint", f"127.0.0.1:{free_port()}", *launch, "--resume"], tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("wrote two.safetensors") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signalled.py", "two.json", "two.safetensors"]
    code, _, err = cli("fix", digits_ckpt, "-o", tmp_path / "one.safetensors", "--json", tmp_path / "one.json",
                       *common)
    assert code == 0, err
    two = {x["threat_model"] + x["model"]: x["values"] for x in json.loads((tmp_path / "two.json").read_text())["reports"]}
    one = {x["threat_model"] + x["model"]: x["values"] for x in json.loads((tmp_path / "one.json").read_text())["reports"]}
    assert two.keys() == one.keys()
    for k in one:
        # the random crops and the per-rank BatchNorm halves differ from one process's, so the runs are not
        # bit-identical. Measured 2026-12-02 (plain NCHW inputs; convolutions no longer run channels-last on grey
        # digits): white-box clean 6.0 / 20.7 / 8.7 points apart at seeds 0 / 1 / 2, PGD 1.3 / 3.3 / 2.7 (the
        # 2026-11-25 code: 1.3 clean at seed 0, 6.7 at seed 1). The kept epoch is chosen by validation PGD, and clean
        # accuracy moves with that choice (and transfer PGD with clean accuracy: 6.0 points apart at seed 0), so
        # white-box PGD is held tighter than the rest. The same code on the next machine of the kind (fourth session
        # of 2026-12-02, another torch build's kernels): white-box PGD 7.3 points apart at seed 0; with val_frac=0 the
        # two-process run was 10.0 / 7.3 points below and 2.0 above the one-process run at seeds 0 / 1 / 2, whose own
        # spread over those seeds was 3.3 points of PGD and 10.7 of clean accuracy (150 images: one standard error
        # of a difference is ~5.6 points), so the bound is about two standard errors. Whether the two-process run is
        # a few points weaker on average (half-batch BatchNorm statistics) is not settled by three seeds.
        assert abs(two[k]["clean"] - one[k]["clean"]) <= 0.08, (k, two[k], one[k])
        assert abs(two[k]["pgd"] - one[k]["pgd"]) <= 0.12, (k, two[k], one[k])
    import harden
    meta = harden.load(tmp_path / "two.safetensors").spec.extra
    assert meta["processes"] == 2 and meta["best_epoch"] >= 1


FAILING_ARCH = textwrap.dedent("""
    import os
    import torch
    from harden.models.builtin import cnn_small

    def net(num_classes=10, in_chans=1, input_size=(8, 8)):
        model = cnn_small(num_classes, in_chans, input_size)
        if os.environ.get("RANK") == "1":  # the injected failure: rank 1's forward passes with gradients raise
            def fail(*_):  # (not the load's probe, which runs without: the failure comes in the middle of the run)
                if torch.is_grad_enabled():
                    raise RuntimeError("injected failure in rank 1")
            model.head.register_forward_hook(fail)
        return model
""")


@pytest.mark.parametrize("command", ["fix"])  # eval fails the same way (checked by hand); one launch saves time
def test_a_failing_rank_stops_every_rank_and_nothing_is_written(command, digits_ckpt, tmp_path):
    (tmp_path / "failing.py").write_text(FAILING_ARCH)
    outs = {"eval": ["--json", "r.json", "--attack", "fgsm", "--num-images", 64, "--no-metrics"],
            "fix": ["-o", "fixed.safetensors", "--json", "r.json", "--epochs", 1, "--num-images", 64, "--no-metrics",
                    "--attack", "fgsm"]}[command]
    before = digits_ckpt.read_bytes()
    r = torchrun(["--nproc-per-node", "2", "-m", "harden", command, digits_ckpt, "--arch", "failing.py:net", *outs],
                 tmp_path)
    assert r.returncode != 0
    assert "rank 1 of 2: RuntimeError: injected failure in rank 1" in r.stderr
    assert r.stderr.count("Traceback (most recent call last)") <= 1  # torchrun's own; each rank says one paragraph
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failing.py"]
    assert digits_ckpt.read_bytes() == before


def test_amp_choices_are_checked_and_bf16_trains_on_cpu(digits_ckpt, digits, cli, tmp_path, monkeypatch):
    import harden
    code, _, err = cli("fix", digits_ckpt, "--amp", "fp16", "-o", tmp_path / "x.safetensors", "--no-report")
    assert code == 2 and "--amp fp16 needs CUDA" in err and not (tmp_path / "x.safetensors").exists()
    code, _, err = cli("eval", digits_ckpt, "--attack-amp", "fp8", "--num-images", 8)
    assert code == 2 and "--attack-amp takes off, bf16, fp16" in err
    from harden import training
    from harden.runtime import console
    monkeypatch.setattr(training, "_cpu_has_bf16", lambda: False)  # an AVX2 CPU: torch emulates bfloat16
    monkeypatch.setattr(training, "_SLOW_BF16_SAID", set())
    with console.capture() as said:
        res = harden.fix(digits_ckpt, digits, data_frac=0.05, epochs=1, amp="bf16", report=False)
    said = " ".join(said.get().split())
    assert said.count("--amp bf16 on a CPU without bfloat16 instructions") == 1 and "Leave it off here" in said
    assert res.model.spec.extra["precision"] == "bf16" and all(torch.isfinite(p).all() for p in res.model.parameters())
    monkeypatch.setattr(training, "_cpu_has_bf16", lambda: True)  # AVX512-BF16 or AMX: nothing to say
    monkeypatch.setattr(training, "_SLOW_BF16_SAID", set())
    with console.capture() as said:
        harden.fix(digits_ckpt, digits, data_frac=0.02, epochs=1, amp="bf16", report=False)
    assert "bfloat16 instructions" not in said.get()
    rep = harden.evaluate(res.model, digits, attacks=["fgsm"], n=16, attack_amp="bf16", metrics=False,
                          masking_checks=False)
    assert rep.attack_precision == "bf16 autocast"
    set_quiet(True)


def test_sync_bn_round_trip_restores_each_batchnorm_kind(monkeypatch):
    """--sync-bn swaps BatchNorm1d/2d for SyncBatchNorm during training and back afterwards, weights and
    statistics intact (the swap itself needs no GPU; only SyncBatchNorm's training forward does)."""
    from harden import distributed
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 5), torch.nn.BatchNorm1d(5))
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
        net[4].weight.fill_(2.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    monkeypatch.setattr(distributed, "active", lambda: True)
    distributed.sync_batchnorm(net, torch.device("cuda"), on=True)
    assert isinstance(net[1], torch.nn.SyncBatchNorm) and isinstance(net[4], torch.nn.SyncBatchNorm)
    distributed.sync_batchnorm(net, torch.device("cpu"), on=False)
    assert type(net[1]) is torch.nn.BatchNorm2d and type(net[4]) is torch.nn.BatchNorm1d
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    from harden import HardenError
    with pytest.raises(HardenError, match="--sync-bn needs CUDA"):
        distributed.sync_batchnorm(net, torch.device("cpu"), on=True)



def test_an_empty_share_adds_a_zero_gradient_and_stops_clearly_under_sync_bn():
    """The step of a process whose share is all unreadable: a zero gradient on the parameters the last step reached
    (the collectives still run); with --sync-bn, whose forward pass the processes make together, a clear error.
    sync-bn needs CUDA, so the whole path cannot run here: the step is tested on its own."""
    from torch import nn

    from harden import HardenError
    from harden.training import _take_part_empty
    net = nn.Linear(3, 2)
    net(torch.ones(1, 3)).sum().backward()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    _take_part_empty(list(net.parameters()), scaler, torch.device("cpu"), False, "step 3 of epoch 1")
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())
    with pytest.raises(HardenError, match="step 3 of epoch 1: .* --sync-bn"):
        _take_part_empty(list(net.parameters()), scaler, torch.device("cpu"), True, "step 3 of epoch 1")


def test_a_process_whose_share_is_unreadable_still_takes_its_part(tmp_path, cli):
    """--skip-unreadable under torchrun: where one process's share of a batch is only unreadable files, it still
    makes the step's collectives (a zero gradient, the agreement on saves). Skipping the step put the processes a
    collective apart: rank 1 read the gradient's all-reduce as the agreement and failed (with this seed, shares of
    2 images, half the files unreadable: empty shares at 3 steps of each epoch, on both ranks)."""
    import numpy as np

    from test_files import make_tree
    make_tree(tmp_path / "data", ["a", "b"], 12, sizes=(20, 40))
    train = sorted(p for p in (tmp_path / "data" / "train").rglob("*") if p.is_file())
    for p in np.random.default_rng(1).permutation(train)[: len(train) // 2]:
        p.write_bytes(b"not an image")
    code, _, err = cli("train", "--data", tmp_path / "data", "--arch", "cnn-small", "--epochs", 1, "--skip-unreadable",
                       "-o", tmp_path / "base.safetensors", "-q")
    assert code == 0, err
    r = torchrun(["--nproc-per-node", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "harden", "fix",
                  "base.safetensors", "--data", "data", "--skip-unreadable", "--data-frac", 1, "--set", "val_frac=0",
                  "--epochs", 2, "--batch-size", 4, "--set", "eps=0.03", "--num-images", 8, "--attack", "fgsm",
                  "--no-metrics", "--no-masking-checks", "-o", "two.safetensors"], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "two.safetensors").is_file()
