"""The device benchmark (benchmarks/speed.py, run on a lent GPU by benchmarks/gpu_speed.sh) runs on the CPU at a tiny
size, every section, so that it cannot rot between leases."""
import json
import runpy
import sys
from pathlib import Path

from harden.runtime import set_quiet

ROOT = Path(__file__).resolve().parents[1]


def test_speed_benchmark_runs_tiny_on_cpu(tmp_path, monkeypatch, capsys):
    out = tmp_path / "speed.jsonl"
    # the script as `python benchmarks/speed.py ...` runs it, in this process (its own would import torch, timm and
    # harden again: a third of the test's time), on this test worker's threads
    monkeypatch.setattr(sys, "argv", ["speed.py", "--tiny", "--device", "cpu", "--out", str(out)])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder first
    runpy.run_path(str(ROOT / "benchmarks" / "speed.py"), run_name="__main__")
    set_quiet(True)
    stdout = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [r["row"] for r in rows]
    assert kinds.count("floor") == 2 and kinds.count("attack") == 7 and kinds.count("autoattack") == 2
    assert kinds.count("train") == 1 and kinds.count("loader") == 2 and kinds.count("new_shape") == 2
    # the early-stopping attacks also as one run of several batches, refilled (PGD-50, AutoPGD and C&W; PGD-10's
    # full-batch form takes no refill), with their network calls beside the batch-at-a-time rows'
    runs = [r for r in rows if r["row"] == "attack_run"]
    assert sorted(r["attack"] for r in runs) == ["autopgd", "cw", "pgd"] and all(r["model_calls"] > 0 for r in runs)
    assert all(r["model_calls"] > 0 for r in rows if r["row"] == "attack")
    for r in rows:
        if r["row"] == "new_shape":  # each size timed at its first call and again
            assert len(r["sizes"]) == len(r["first_ms"]) == len(r["again_ms"]) and min(r["again_ms"]) > 0
    for r in rows:
        assert r["device"] == "cpu" and r["tiny"] is True
    attacks = [r for r in rows if r["row"] == "attack"]
    assert all(r["img_s"] > 0 and r["floor_over_time"] > 0 for r in attacks)
    train = next(r for r in rows if r["row"] == "train")
    assert train["passes"]["attack_step"] > 0 and train["passes"]["train_step"] > 0 and train["floor_s"] > 0
    assert 0 < train["input_wait_s"] <= train["train_s"]  # the loop's waits for its batches, within its time
    assert {r["impl"] for r in rows if r["row"] == "autoattack"} == {"harden", "original (pyautoattack)"}
    assert len({r["batch"] for r in rows if r["row"] == "autoattack"}) == 1  # both at the same batch
    ours = next(r for r in rows if r["row"] == "autoattack" and r["impl"] == "harden")
    assert list(ours["stage_seconds"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]  # where the card's time goes
    # each implementation's sequential calls of the network, counted apart (what a launch-bound card pays for)
    assert all(r["model_calls"] > 0 for r in rows if r["row"] == "autoattack")
    feeder = next(r for r in rows if r["row"] == "loader" and "feeder" in r["kind"])
    assert feeder["images"] > 0 and feeder["img_s"] > 0 and feeder["first_batch_s"] > 0  # batches after the first
    assert "| attack |" in stdout  # the Markdown summary
