"""Host memory that stays with the process between training steps.

glibc's malloc hands the free memory at the top of its heap back to the kernel (brk) as soon as more than its trim
threshold is free, so on the CPU every training step's activations were freed, returned, and faulted back in zeroed
on the next step: over 2 million minor page faults in a 2-epoch `fix` of the CIFAR-10 ResNet-20, and 5-7% of its
time on a core of its own, about 10% on a shared one (BENCHMARKS.md "The allocator"). Raising the trim threshold
keeps that memory for the next step. glibc turns its dynamic mmap threshold off once either threshold is set, so the
mmap threshold is pinned at the dynamic one's ceiling (32 MiB on 64-bit), where it would have ended up anyway.

Process-wide and not undone (glibc has no getter to restore from), so the CLI calls it for its own process and a
library user may call it for theirs. Skipped where the user already tuned malloc through the environment, and a no-op
off glibc (macOS, musl, Windows)."""
from __future__ import annotations

import ctypes
import os
import platform

TRIM_THRESHOLD = 256 << 20  # free memory above the heap's top kept for reuse, at most this much
MMAP_THRESHOLD = 32 << 20  # larger blocks are mapped on their own (glibc's dynamic ceiling on 64-bit)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Sets glibc's trim and mmap thresholds (above); True when they were set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(k in os.environ for k in _USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False  # the user chose their allocator settings
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
