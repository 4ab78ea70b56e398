"""Decoding listed images in batches: a torch DataLoader with worker processes, pinned memory on CUDA. Random
training transforms draw from a generator seeded by (seed, epoch, image), so the same seed gives the same batches
whatever the number of workers. A file that cannot be decoded comes back as an error, never as a crash inside a
worker: the caller stops with a message naming it, or skips it (--skip-unreadable) and counts it."""
from __future__ import annotations

import random
import signal
from typing import Callable, Iterator

import numpy as np
import torch

from .array_images import open_image
from .sources import Listing
from .transforms import exif_orientation
from ..cores import usable_cores


MAX_WORKERS = 16


def default_workers() -> int:
    """One decoding process per core, at most 16: while a batch of the report is decoded the main process only waits
    (measured on 2 cores at 224 px: 1 worker 0.8x, 2 workers 1.09x the one-process decode + transform rate). On this
    project's 2-core machine a worker's steady rate at 224 px is about 350 training images a second; the H200
    machine's 829 images/s with 8 workers (BENCHMARKS.md "On the card") timed 512 images in 8 tasks of 64, one per
    worker, with the workers' start: not their steady rate."""
    return max(1, min(MAX_WORKERS, usable_cores()))


class DecodeDataset(torch.utils.data.Dataset):
    """Item i of a listing -> (uint8 C x H x W tensor or None, label, i, error or None, whether the file carries an
    EXIF orientation other than as-stored)."""

    def __init__(self, listing: Listing, transform: Callable, seed: int | None = None, epoch: int = 0):
        self.listing, self.transform, self.seed, self.epoch = listing, transform, seed, epoch

    def __len__(self) -> int:
        return len(self.listing)

    def __getitem__(self, i: int):
        label = int(self.listing.labels[i])
        data = None
        try:
            data = self.listing.read_bytes(i)
            img = open_image(data, self.listing)
            draft = getattr(self.transform, "draft", None)
            if draft is not None:
                draft(img)
            img.load()  # decode now: a truncated file fails here, with its name
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError ...
            return None, label, i, f"{self.listing.location(i)}: {why_unreadable(data, e)}", False
        oriented = exif_orientation(img) != 1
        if self.seed is None:
            return self.transform(img), label, i, None, oriented
        # per-image randomness from (seed, epoch, index): independent of which worker decodes it
        s = int(np.random.SeedSequence([self.seed, self.epoch, int(i)]).generate_state(1)[0])
        state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            random.seed(s)  # timm's RandomResizedCropAndInterpolation draws from Python's random
            try:
                out = self.transform(img)
            finally:
                random.setstate(state)
        return out, label, i, None, oriented


def why_unreadable(data: bytes | None, e: Exception) -> str:
    """Why a file's bytes gave no image, in words: an empty file, a Git LFS pointer, a web page saved under an
    image's name; else Pillow's error (a truncated file, a format it does not read)."""
    if data is not None and len(data) == 0:
        return "the file is empty (0 bytes: an interrupted copy or download)"
    if data is not None and type(e).__name__ == "UnidentifiedImageError":
        from ..file_kinds import what_file_is
        return what_file_is(data) or f"not an image format Pillow reads ({len(data):,} bytes, starting {data[:8]!r})"
    return f"{type(e).__name__}: {e}"


def collate(items):
    ok = [t for t in items if t[0] is not None]
    x = torch.stack([t[0] for t in ok]) if ok else None
    y = torch.tensor([t[1] for t in ok], dtype=torch.int64)
    return x, y, [t[2] for t in ok], [t[3] for t in items if t[3] is not None], sum(t[4] for t in ok)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_MASKABLE = hasattr(signal, "pthread_sigmask")  # POSIX


def leave_stop_signals(worker_id: int) -> None:
    """Ctrl-C and SIGTERM reach every process of the job (a terminal's process group, SLURM's job step): a worker that
    died of one would end the run with an error before the main process saves its state at the end of its step
    (resume.py). Workers leave them to the main process and end with it (torch stops them when it goes). They are
    started with these signals blocked (start_workers), so one that arrives before this runs waits, and is ignored."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if _MASKABLE:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_workers(loader: torch.utils.data.DataLoader):
    """iter(loader), its worker processes forked with the stop signals blocked: torch sets a worker's SIGTERM to
    end it before the worker's init function runs, and a signal in that window killed the worker (measured: a
    SIGTERM sent as an epoch's workers started). The main process gets a signal that arrived meanwhile once they
    are started."""
    if not _MASKABLE or not loader.num_workers:
        return iter(loader)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def decode_batches(listing: Listing, index_batches: list[np.ndarray], transform: Callable, workers: int,
                   pin: bool, seed: int | None = None, epoch: int = 0) -> Iterator[tuple]:
    """(uint8 N x C x H x W or None, labels, indices decoded, errors, how many of them carry an EXIF orientation)
    per batch of listing indices, in order."""
    if index_batches:
        listing.prepare(np.concatenate(index_batches))  # a parquet table's rows copied to its spill file, here
    ds = DecodeDataset(listing, transform, seed, epoch)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=[list(map(int, b)) for b in index_batches],
                                         num_workers=workers, collate_fn=collate, pin_memory=pin,
                                         prefetch_factor=4 if workers else None,
                                         worker_init_fn=leave_stop_signals if workers else None)
    yield from start_workers(loader)
