"""How many decoding workers a run starts: the cores the process may use, not the host's count."""
import os

from harden.cores import usable_cores
from harden.data.loader import default_workers


def test_affinity_and_cgroup_quota_bound_the_cores(tmp_path, monkeypatch):
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/\n")  # cgroup v2, its own namespace: the quota at the mount's root
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert usable_cores(str(tmp_path), str(proc)) == 64  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(str(tmp_path), str(proc)) == 64  # unlimited
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # docker --cpus 1.5
    assert usable_cores(str(tmp_path), str(proc)) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)  # taskset -c 0
    assert usable_cores(str(tmp_path), str(proc)) == 1


def test_the_process_own_cgroup_folder_is_read_first(tmp_path, monkeypatch):
    """Without a cgroup namespace of its own a container sees the host's tree: its quota is in its own folder."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/docker/abc\n")
    (tmp_path / "docker" / "abc").mkdir(parents=True)
    (tmp_path / "docker" / "abc" / "cpu.max").write_text("400000 100000\n")
    assert usable_cores(str(tmp_path), str(proc)) == 4
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct" / "kubepods" / "pod1").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "kubepods" / "pod1" / "cpu.cfs_quota_us").write_text("250000\n")
    (v1 / "cpu,cpuacct" / "kubepods" / "pod1" / "cpu.cfs_period_us").write_text("100000\n")
    proc.write_text("5:cpu,cpuacct:/kubepods/pod1\n4:memory:/kubepods/pod1\n")
    assert usable_cores(str(v1), str(proc)) == 3


def test_cgroup_v1_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    proc = tmp_path / "proc_cgroup"
    proc.write_text("2:cpuacct:/\n1:cpu:/\n")
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(str(tmp_path), str(proc)) == 32
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert usable_cores(str(tmp_path), str(proc)) == 4
    assert usable_cores(str(tmp_path), str(tmp_path / "no_such_file")) == 4  # the mount's root still


def test_workers_follow_the_usable_cores(monkeypatch):
    from harden.data import loader
    monkeypatch.setattr(loader, "usable_cores", lambda: 3)
    assert default_workers() == 3
    monkeypatch.setattr(loader, "usable_cores", lambda: 64)
    assert default_workers() == loader.MAX_WORKERS
    from harden.model_flags import _DATA_OPTIONS  # the help says the cap (it said 8 after the cap became 16)
    assert f"one per core, at most {loader.MAX_WORKERS};" in _DATA_OPTIONS["workers"][1].help


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
