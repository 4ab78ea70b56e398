"""How many cores this process may use, and torch's threads kept within them.

`os.cpu_count()` and OpenMP's default count the host's cores. A CPU affinity (taskset, a scheduler's cpuset) or a
cgroup CPU quota (`docker --cpus 2`, a Kubernetes CPU limit, most CI runners) gives a process fewer: on a 64-core host
limited to 2 CPUs, 16 decoding workers and 64 torch threads would share two cores' time, each thread waiting for its
turn at every parallel region."""
from __future__ import annotations

import math
import os

import torch


def usable_cores(cgroup: str = "/sys/fs/cgroup") -> int:
    """The cores this process may run on: its CPU affinity (taskset, a scheduler's cpuset), capped by a cgroup CPU
    quota (`docker --cpus 2`, a Kubernetes CPU limit, most CI runners), which `os.cpu_count()` ignores: on a
    64-core host limited to 2 CPUs it says 64, and 16 decoding workers would share two cores' time."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota(root: str) -> int | None:
    """ceil(quota / period) from cgroup v2's cpu.max or v1's cpu.cfs_quota_us; None when unlimited or unreadable."""
    for path, read in ((f"{root}/cpu.max", lambda t: t.split()[:2]),
                       (f"{root}/cpu/cpu.cfs_quota_us", lambda t: [t.strip(), _read(f"{root}/cpu/cpu.cfs_period_us")])):
        try:
            quota, period = read(_read(path))
            if quota in ("max", "-1") or not period:
                return None
            return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError, TypeError):
            continue
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
