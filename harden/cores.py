"""How many cores this process may use, and torch's threads kept within them.

`os.cpu_count()` and OpenMP's default count the host's cores. A CPU affinity (taskset, a scheduler's cpuset) or a
cgroup CPU quota (`docker --cpus 2`, a Kubernetes CPU limit, most CI runners) gives a process fewer: on a 64-core host
limited to 2 CPUs, 16 decoding workers and 64 torch threads would share two cores' time, each thread waiting for its
turn at every parallel region."""
from __future__ import annotations

import math
import os

import torch


def usable_cores(cgroup: str = "/sys/fs/cgroup", proc: str = "/proc/self/cgroup") -> int:
    """The cores this process may run on: its CPU affinity (taskset, a scheduler's cpuset), capped by a cgroup CPU
    quota (`docker --cpus 2`, a Kubernetes CPU limit, most CI runners), which `os.cpu_count()` ignores: on a
    64-core host limited to 2 CPUs it says 64, and 16 decoding workers would share two cores' time."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup, proc)
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota(root: str, proc: str) -> int | None:
    """ceil(quota / period) of this process's cgroup: v2's cpu.max or v1's cpu.cfs_quota_us, in the process's own
    cgroup folder (from /proc/self/cgroup; a container without its own cgroup namespace sees the host's tree) or at
    the mount's root (one with it); None when unlimited or unreadable."""
    own_v2, own_v1 = "", []
    try:
        for line in _read(proc).splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                own_v2 = path.rstrip("/")
            elif "cpu" in controllers.split(","):
                own_v1 = [f"{root}/{controllers}{path.rstrip('/')}", f"{root}/cpu{path.rstrip('/')}"]
    except (OSError, ValueError):
        pass
    for folder in dict.fromkeys([f"{root}{own_v2}", root]):
        try:
            quota, period = _read(f"{folder}/cpu.max").split()[:2]
        except (OSError, ValueError):
            continue
        return _ratio(quota, period)
    for folder in dict.fromkeys(own_v1 + [f"{root}/cpu"]):
        try:
            quota, period = _read(f"{folder}/cpu.cfs_quota_us").strip(), _read(f"{folder}/cpu.cfs_period_us").strip()
        except OSError:
            continue
        return _ratio(quota, period)
    return None


def _ratio(quota: str, period: str) -> int | None:
    try:
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except ValueError:
        return None


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def threads_within_quota() -> int | None:
    """Lowers torch's intra-op threads to the usable cores when a quota or affinity leaves fewer than it would run
    (the CLI's process; a library user's torch settings are theirs). Not where the user set OMP_NUM_THREADS or
    MKL_NUM_THREADS (torchrun sets the first to 1). Returns the count set, or None."""
    if any(k in os.environ for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return None
    cores = usable_cores()
    if torch.get_num_threads() <= cores:
        return None
    torch.set_num_threads(cores)
    return cores
