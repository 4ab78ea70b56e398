"""Image arrays in HDF5 files, read in place through h5py: PatchCamelyon as torchvision's PCAM downloads it
(`pcam/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5`, datasets `x` and `y`), and any `.h5`/`.hdf5` whose
datasets are named as an .npz's members would be (x_train, y_train, ...; `train_set_x` as Keras-era course files
name them; or one split's pair). An image dataset is never read whole: a run's rows are read as it indexes them
(H5Rows), so memory grows with the batch; labels are read whole (they are small)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HardenError
from .base import LazyRows

H5_EXT = (".h5", ".hdf5", ".he5")
PCAM_FILE = re.compile(r"^camelyonpatch_level_2_split_(train|valid|test)_(x|y)\.h5$")


def _h5py():
    try:
        import h5py
    except ImportError:  # a dependency (pyproject); absent only from a bare environment
        raise HardenError("Reading HDF5 files needs h5py (pip install h5py).") from None
    return h5py


_FILES: dict[tuple[int, str], Any] = {}


def _open(path: str):
    """One read-only handle per file and process (an h5py handle does not survive a fork)."""
    key = (os.getpid(), path)
    if key not in _FILES:
        try:
            _FILES[key] = _h5py().File(path, "r")
        except OSError as e:
            raise HardenError(f"{path!r} is not a readable HDF5 file ({e}).") from None
    return _FILES[key]


class H5Rows(LazyRows):
    """The rows of an HDF5 dataset, read when indexed, in any order (h5py reads increasing, distinct rows: they are
    read so and put back in the order asked)."""

    def __init__(self, path: str | Path, name: str, shape: tuple[int, ...] | None = None):
        self.path, self.name = str(path), name
        ds = _open(self.path)[name]
        self.dtype = ds.dtype
        self.shape = tuple(shape or ds.shape)

    def _reshaped(self, shape: tuple[int, ...]) -> "H5Rows":
        return H5Rows(self.path, self.name, shape)

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, slice):  # one contiguous read
            a = np.asarray(_open(self.path)[self.name][idx])
            return a.reshape((len(a), *self.shape[1:]))
        return super().__getitem__(idx)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        ds = _open(self.path)[self.name]
        distinct, back = np.unique(rows, return_inverse=True)
        a = np.asarray(ds[distinct])[back] if len(distinct) else np.empty((0, *ds.shape[1:]), ds.dtype)
        return a.reshape((len(a), *self.shape[1:]))


def is_hdf5(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in H5_EXT


def _datasets(path: Path) -> list[str]:
    """The file's datasets, by their paths (a group's `train/images` as `train_images`, as flat names read)."""
    h5py = _h5py()
    found: list[str] = []
    _open(str(path)).visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _pcam_pair(path: Path, split: str) -> tuple[Path, Path]:
    return (path / f"camelyonpatch_level_2_split_{split}_x.h5", path / f"camelyonpatch_level_2_split_{split}_y.h5")


def _pcam_split(x_file: Path, y_file: Path) -> tuple[H5Rows, np.ndarray]:
    if not y_file.is_file():
        raise HardenError(f"{str(x_file)!r} holds PatchCamelyon's images; their labels, {y_file.name}, are not beside "
                          "it.")
    return H5Rows(x_file, "x"), np.asarray(_open(str(y_file))["y"]).reshape(-1)


def pcam_folder(path: Path) -> Path | None:
    """The folder of PatchCamelyon's files (torchvision's root, its `pcam/`, or the files' own folder)."""
    for folder in (path / "pcam", path):
        if folder.is_dir() and (_pcam_pair(folder, "test")[0].is_file() or _pcam_pair(folder, "train")[0].is_file()):
            return folder
    return None


def hdf5_source(path: Path):
    """ImageData of an HDF5 file or of PatchCamelyon's folder; None where `path` is neither."""
    from .arrays import _finish, _named_arrays, _one_split
    if path.is_dir():
        folder = pcam_folder(path)
        if folder is None:
            return None
        (trx, try_), (tex, tey) = _pcam_pair(folder, "train"), _pcam_pair(folder, "test")
        if trx.is_file() and tex.is_file():  # torchvision's train and test splits (valid is for model selection)
            return _finish(*_pcam_split(trx, try_), *_pcam_split(tex, tey), str(folder))
        x, y = _pcam_split(*(_pcam_pair(folder, "test") if tex.is_file() else _pcam_pair(folder, "train")))
        return _one_split(x, y, folder, str(folder), None)
    if not is_hdf5(path):
        return None
    match = PCAM_FILE.match(path.name)
    if match:  # one of PatchCamelyon's files: its split, evaluated whole
        x, y = _pcam_split(*_pcam_pair(path.parent, match.group(1)))
        return _one_split(x, y, path, str(path), None)
    names = _datasets(path)
    flat = {n.replace("/", "_").replace("_set_", "_"): n for n in names}  # Keras-era `train_set_x`, groups

    def read(keys: list[str], defer: tuple[str, ...] = ()) -> dict:
        out = {}
        for k in keys:
            ds = _open(str(path))[flat[k]]
            if len(ds.shape) >= 3:
                out[k] = H5Rows(path, flat[k])
            else:  # labels, class names: small, read whole
                values = np.asarray(ds)
                out[k] = np.asarray([v.decode() if isinstance(v, bytes) else v for v in values.ravel()]) \
                    if values.dtype.kind in "SO" else values
        return out
    names_key = next((k for k in ("list_classes", "classes", "label_names") if k in flat), None)
    if names_key is not None and "class_names" not in flat:
        flat["class_names"] = flat[names_key]
    return _named_arrays(path, list(flat), read, "an HDF5 file")


def hdf5_images(path: Path) -> H5Rows | None:
    """An .h5 pool's images, labels or not: the training images where the file names them (x_train, train_set_x),
    else its one image dataset (3 or more dimensions); None where it has none or several unnamed."""
    if not is_hdf5(path) or PCAM_FILE.match(path.name):
        return None
    from .arrays import ONE_SPLIT_KEYS, array_names
    names = _datasets(path)
    flat = {n.replace("/", "_").replace("_set_", "_"): n for n in names}
    known = array_names(list(flat))
    key = next((known[k] for k in ("x_train", *dict.fromkeys(x for x, _ in ONE_SPLIT_KEYS)) if k in known), None)
    if key is None:
        images = [k for k, n in flat.items() if len(_open(str(path))[n].shape) >= 3]
        key = images[0] if len(images) == 1 else None
    return H5Rows(path, flat[key]) if key is not None else None
