"""How many decoding workers a run starts: the cores the process may use, not the host's count."""
import os

from harden.cores import usable_cores
from harden.data.loader import default_workers


def test_affinity_and_cgroup_quota_bound_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert usable_cores(str(tmp_path)) == 64  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(str(tmp_path)) == 64  # unlimited
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # docker --cpus 1.5
    assert usable_cores(str(tmp_path)) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)  # taskset -c 0
    assert usable_cores(str(tmp_path)) == 1


def test_cgroup_v1_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(str(tmp_path)) == 32
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert usable_cores(str(tmp_path)) == 4


def test_workers_follow_the_usable_cores(monkeypatch):
    from harden.data import loader
    monkeypatch.setattr(loader, "usable_cores", lambda: 3)
    assert default_workers() == 3
    monkeypatch.setattr(loader, "usable_cores", lambda: 64)
    assert default_workers() == loader.MAX_WORKERS


def test_torch_threads_kept_within_the_quota(monkeypatch):
    import torch

    from harden import cores
    threads = torch.get_num_threads()
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    try:
        torch.set_num_threads(4)
        monkeypatch.setattr(cores, "usable_cores", lambda: 8)
        assert cores.threads_within_quota() is None and torch.get_num_threads() == 4  # room: left as it is
        monkeypatch.setattr(cores, "usable_cores", lambda: 1)
        monkeypatch.setenv("OMP_NUM_THREADS", "4")
        assert cores.threads_within_quota() is None and torch.get_num_threads() == 4  # the user's choice
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert cores.threads_within_quota() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
