"""Downsampled ImageNet (Chrabaszcz, Loshchilov and Hutter 2017: Imagenet8x8, 16x16, 32x32 and 64x64) as image-net.org
ships it: `train_data_batch_1` ... `train_data_batch_10` and `val_data`, each an .npz (the npz release) or a pickle
(the original release), holding `data` (N rows of 3*s*s uint8 values, planar: all red, then green, then blue),
`labels` (1 to 1000) and `mean`. The two downloads unpack to folders of their own (Imagenet32_train_npz/,
Imagenet32_val_npz/): given the folder above them, or one folder holding both, the training batches are the train
split and val_data the test split; one file alone is one split.

Labels are read minus 1, as the dataset's own loaders read them: class indices in the dataset's order (the ILSVRC2012
development kit's IDs, map_clsloc.txt), which models trained on it use. ImageNet's class folders sort by synset
instead, so a model trained on those numbers the classes otherwise: said once. npz rows stored uncompressed are
memory-mapped across the ten files (a run reads the rows it uses); pickles are read whole, as they must be."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HardenError
from .base import StackedRows
from .npz import READ_ERRORS, DeferredArray, read_npz

TRAIN_BATCH = re.compile(r"train_data_batch_(\d+)(\.npz)?$")
VAL_DATA = re.compile(r"val_data(\.npz)?$")


def _named(folder: Path, look: int = 1000) -> list[Path]:
    """The folder's Downsampled ImageNet files; none where its first `look` entries hold none (a flat folder of a
    million images is not listed)."""
    found: list[Path] = []
    try:
        with os.scandir(folder) as it:
            for n, e in enumerate(it):
                if n == look and not found:
                    return []
                if e.is_file() and (TRAIN_BATCH.match(e.name) or VAL_DATA.match(e.name)):
                    found.append(Path(e.path))
    except OSError:
        return []
    return found


def downsampled_files(path: Path) -> tuple[list[Path], list[Path]] | None:
    """(training batches in their order, val_data files) at `path`: a file, a folder of them, or the folder above
    the two downloads' folders; None where there are none."""
    if path.is_file():
        found = [path] if TRAIN_BATCH.match(path.name) or VAL_DATA.match(path.name) else []
    elif path.is_dir():
        found = _named(path)
        if not found:
            try:
                subs = [Path(e.path) for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]
            except OSError:
                subs = []
            if len(subs) <= 4:  # the train and val folders side by side, never a class tree walked
                found = [f for s in subs for f in _named(s)]
    else:
        return None
    if not found:
        return None
    train = sorted((f for f in found if TRAIN_BATCH.match(f.name)), key=lambda f: int(TRAIN_BATCH.match(f.name)[1]))
    return train, sorted(f for f in found if VAL_DATA.match(f.name))


def _read(path: Path) -> tuple[Any, np.ndarray]:
    """One file's rows (memory-mapped or deferred where an .npz allows) and labels."""
    try:
        if path.suffix.lower() == ".npz":
            found = read_npz(path, ["data", "labels"], defer=("data",))
        else:
            from .arrays import _ArrayOnlyUnpickler
            with open(path, "rb") as f:
                obj = _ArrayOnlyUnpickler(f, encoding="latin1").load()
            found = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in dict(obj).items()}
    except HardenError as e:
        raise HardenError(f"{str(path)!r}: {e} harden reads a pickle only of numpy arrays and lists.") from None
    except (*READ_ERRORS, pickle.UnpicklingError, EOFError, TypeError, AttributeError) as e:
        raise HardenError(f"{str(path)!r} is not a readable Downsampled ImageNet file ({type(e).__name__}: {e}).") \
            from None
    if "data" not in found or "labels" not in found:
        raise HardenError(f"{str(path)!r} is named as a Downsampled ImageNet file but holds "
                          f"{', '.join(sorted(found)) or 'nothing'}, not `data` and `labels`.")
    x, y = found["data"], np.asarray(found["labels"]).ravel()
    if not isinstance(x, (DeferredArray, np.ndarray)):  # a memory map stays one
        x = np.asarray(x)
    if x.ndim != 2 or len(x) != len(y):
        raise HardenError(f"{str(path)!r}: `data` is {tuple(x.shape)} for {len(y)} labels; Downsampled ImageNet holds "
                          "one row of 3*s*s pixels per label.")
    return x, y


def _stacked(parts: list[tuple[Any, np.ndarray]]) -> tuple[Any, np.ndarray]:
    widths = {p[0].shape[1] for p in parts}
    if len(widths) > 1:
        raise HardenError(f"Downsampled ImageNet files of different sizes are mixed (rows of {sorted(widths)} values); "
                          "pass the folder of one resolution.")
    x = parts[0][0] if len(parts) == 1 else StackedRows([p[0] for p in parts])
    return x, np.concatenate([p[1] for p in parts]).astype(np.int64)


def _from_one(y: np.ndarray, where: str) -> np.ndarray:
    if len(y) and y.min() >= 1 and y.max() <= 1000:
        return y - 1
    if len(y) and (y.min() < 0 or y.max() > 1000):
        raise HardenError(f"{where}: labels run from {int(y.min())} to {int(y.max())}; Downsampled ImageNet labels "
                          "its images 1 to 1000.")
    return y  # 0 to 999 already (a copy re-saved from indices): kept


def downsampled_imagenet(path: Path):
    """ImageData of Downsampled ImageNet files at `path`; None where there are none."""
    found = downsampled_files(path)
    if found is None:
        return None
    train, val = found
    from ..runtime import info
    from .arrays import _finish
    if train and val:
        (x, y), (xt, yt) = _stacked([_read(f) for f in train]), _stacked([_read(f) for f in val])
        if x.shape[1] != xt.shape[1]:
            raise HardenError(f"{path}: the training batches hold rows of {x.shape[1]} values and val_data rows of "
                              f"{xt.shape[1]}: two resolutions of Downsampled ImageNet; pass the folders of one.")
        y, yt = _from_one(y, str(train[0])), _from_one(yt, str(val[0]))
    else:
        xt, yt = _stacked([_read(f) for f in train or val])
        yt = _from_one(yt, str((train or val)[0]))
        x, y = xt[:0] if isinstance(xt, np.ndarray) else np.zeros((0, xt.shape[1]), np.uint8), yt[:0]
    info(f"{path}: Downsampled ImageNet ({len(train)} training batch file(s), {len(val)} val_data), labels 1-1000 "
         "read as the class indices 0-999 in the dataset's own order (the ILSVRC2012 development kit's IDs), as models "
         "trained on it number them; a model trained on ImageNet's class folders (sorted synsets) numbers them "
         "otherwise")
    return _finish(x, y, xt, yt, str(path))
