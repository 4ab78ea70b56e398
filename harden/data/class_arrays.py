"""A folder of one NumPy array per class: `np.save(f"{name}.npy", images_of_that_class)`, and The Quick, Draw!
Dataset's `numpy_bitmap` files (`full_numpy_bitmap_cat.npy`: N rows of 784 uint8 values, 28 x 28). Each file's name is
its class; its rows are that class's images (N x H x W, N x H x W x C, N x C x H x W, or N flattened square images), read
as pixels.py reads any array. The folder itself is one split (evaluated whole; `fix` holds a stratified 20% out), or it
holds train/ and val/ (or test/) folders of such files, named alike.

Every file is read through its header first and its rows only where a run indexes them, each file opened for the read
(a memory map per class would hold a descriptor each: thousands of classes outrun the process's limit), so memory grows
with the batch, never with the folder.

Told from a folder of one image per file (array_images.py) by the arrays' shapes: stacks of images with one image size,
or, for two-dimensional arrays (an H x W grey image, or N flattened rows), row counts that differ from file to file with
a width that is a flattened square (s*s grey, 3*s*s RGB). Equal counts stay one image a file; the error then says how to
save such rows unambiguously."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import HardenError
from .array_images import is_one_image, npy_header
from .base import Shaped, StackedRows
from .npz import READ_ERRORS

LABEL_FILES = ("labels", "y", "targets")  # a labels file beside image arrays: CIFAR-10-C's layout, read elsewhere
_SEPARATORS = "_- ."


class NpyRows(Shaped):
    """One .npy file's rows, read where indexed: the file is memory-mapped for each read and let go after it."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype = path, shape, dtype

    def __getitem__(self, rows) -> np.ndarray:
        try:
            whole = np.load(self.path, mmap_mode="r", allow_pickle=False) if self.shape[0] else \
                np.load(self.path, allow_pickle=False)  # an empty array cannot be mapped
            rows = np.asarray(rows)
            order = np.argsort(rows, kind="stable")  # a memory map reads sorted rows in one pass
            out = np.empty((len(rows), *self.shape[1:]), self.dtype)
            out[order] = whole[rows[order]]
        except READ_ERRORS as e:
            raise HardenError(f"{str(self.path)!r} could not be read ({e}).") from None
        return out


def flat_square(width: int) -> bool:
    """Whether rows of `width` values are flattened square images (pixels.unflattened's reading)."""
    side, rgb = math.isqrt(width), math.isqrt(width // 3)  # 8 x 8 at least: scikit-learn's digits, flattened
    return (side * side == width and side >= 8) or (width % 3 == 0 and 3 * rgb * rgb == width and rgb >= 8)


def _header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        return npy_header(path)
    except (OSError, ValueError):
        return (), np.dtype(object)  # no array: fails every test below


def _stacked(shapes: list[tuple[int, ...]]) -> bool:
    """Whether arrays of these shapes are stacks of images, one per class, rather than one image each."""
    ndim = {len(s) for s in shapes}
    if len(ndim) != 1 or ndim.pop() not in (2, 3, 4):
        return False
    if len(shapes[0]) == 2:  # H x W, or N rows of flattened images: the counts and the width tell
        return flat_square(shapes[0][1]) and len({s[0] for s in shapes}) > 1
    return not all(map(is_one_image, shapes))


def _stacks(folder: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]] | None:
    """{file name: (shape, dtype)} of a folder whose files are one .npy array of images per class, in name order;
    None where it is no such folder: images of another format in it, a labels file (CIFAR-10-C's layout, read
    elsewhere), fewer than two arrays, or arrays of one image each. The first two arrays listed decide a folder of
    one image a file, whose other files are then neither listed further nor read."""
    from .sources import IMAGE_EXT
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with os.scandir(folder) as it:
            for e in it:
                if not e.is_file() or e.name.startswith("."):
                    continue
                if Path(e.name).suffix.lower() in IMAGE_EXT or e.name[:-4].lower() in LABEL_FILES:
                    return None
                if e.name.lower().endswith(".npy"):
                    headers[e.name] = _header(e.path)
                    if len(headers) == 2 and not _stacked([h[0] for h in headers.values()]):
                        return None
    except OSError:
        return None
    if len(headers) < 2 or not _stacked([h[0] for h in headers.values()]) or _named_as_splits(list(headers)):
        return None
    return dict(sorted(headers.items()))


def _named_as_splits(files: list[str]) -> bool:
    """Whether arrays are named as a dataset's splits or parts, not as classes: x_train.npy and x_test.npy without
    their labels, train.npy and test.npy, images.npy beside masks.npy."""
    from .arrays import _IMAGE_WORDS, _LABEL_WORDS, _SPLIT, array_names
    stems = [f[:-4] for f in files]
    parts = {f"{kind}_{split}" for kind in "xy" for split in _SPLIT.values()}
    return bool(parts & set(array_names(stems))) or any(s.lower() in (*_IMAGE_WORDS, *_LABEL_WORDS, *_SPLIT)
                                                        for s in stems)


def rows_hint(folder: Path) -> str:
    """For a folder of two-dimensional arrays read as one image a file, where each could as well be one class's rows of
    flattened images (equal row counts leave it open): how to save them so that they are read as classes."""
    import itertools
    try:
        with os.scandir(folder) as it:
            first = list(itertools.islice((e.path for e in it if e.is_file() and e.name.lower().endswith(".npy")), 2))
    except OSError:
        return ""
    shapes = {_header(f)[0] for f in first}
    if len(first) < 2 or len(shapes) != 1 or len(shape := shapes.pop()) != 2 or not flat_square(shape[1]):
        return ""
    side, rgb = math.isqrt(shape[1]), math.isqrt(shape[1] // 3)
    as_images = (f"N x H x W (rows.reshape(-1, {side}, {side}))" if side * side == shape[1] else
                 f"N x H x W x C (rows.reshape(-1, 3, {rgb}, {rgb}) where each row holds all its red values, then green, "
                 f"then blue; rows.reshape(-1, {rgb}, {rgb}, 3) where each pixel's three values lie together)")
    return (f" Its .npy files hold {shape[0]} x {shape[1]} arrays, read as one grey image each; if each holds one "
            f"class's images as flattened rows, save them as {as_images} and harden reads one class per file.")


def _odd_one(headers: dict[str, tuple[tuple[int, ...], np.dtype]], folder: Path) -> None:
    """Refuses files whose images differ from the first file's in size or type, naming them."""
    first_name, (first_shape, first_type) = next(iter(headers.items()))
    for name, (shape, dtype) in headers.items():
        if dtype.kind not in "uif":
            raise HardenError(f"{str(folder / name)!r} holds an array of {dtype}, not pixels, beside arrays of images "
                              f"of one class each ({first_name}: {first_type} {first_shape}).")
        if shape[1:] != first_shape[1:] or dtype != first_type:
            raise HardenError(f"{str(folder)!r} holds one array of images per class, but {name} holds {dtype} images "
                              f"of {' x '.join(map(str, shape[1:]))} and {first_name} {first_type} images of "
                              f"{' x '.join(map(str, first_shape[1:]))}: save every class's images at one size and "
                              "type.")


def class_names(stems: list[str]) -> tuple[list[str], str]:
    """Each file's class name: its name less what every name shares at its start and end, cut at a separator
    (`full_numpy_bitmap_cat` -> `cat`, `cat_images` -> `cat`); and what was dropped, said."""
    def shared(words: list[str]) -> str:
        common = os.path.commonprefix(words)
        cut = max(common.rfind(c) for c in _SEPARATORS) + 1
        return common[:cut]
    head = shared(stems)
    tail = shared([s[::-1] for s in stems])[::-1]
    names = [s[len(head):len(s) - len(tail)] for s in stems]
    if not all(names) or len(set(names)) != len(names):
        return stems, ""
    dropped = " and ".join(f"`{w}`" for w in (head, tail) if w)
    return names, (f", {dropped} dropped from each file's name" if dropped else "")


def _ordered(names: list[str]) -> tuple[list[int], str]:
    """The files' order as class indices: numbers in their numeric order (`0.npy` ... `10.npy`: a class saved under
    its index keeps it), any other names sorted as torchvision's ImageFolder sorts class folders."""
    if all(n.isdigit() for n in names):
        return sorted(range(len(names)), key=lambda i: int(names[i])), "numbered, in numeric order"
    return sorted(range(len(names)), key=lambda i: names[i]), "sorted by name"


def _split(folder: Path, headers: dict, order: list[str]) -> tuple[StackedRows, np.ndarray]:
    parts = [NpyRows(folder / f, *headers[f]) for f in order]
    y = np.repeat(np.arange(len(parts), dtype=np.int64), [len(p) for p in parts])
    return StackedRows(parts), y


def _split_folders(path: Path) -> tuple[Path, Path] | None:
    """train/ and val/ (or test/, ...) by their names alone: asked of every folder given as --data, so no listing of
    a folder of a million images."""
    from .sources import EVAL_FOLDERS, TRAIN_FOLDERS
    train = next((path / d for d in TRAIN_FOLDERS if (path / d).is_dir()), None)
    test = next((path / d for d in EVAL_FOLDERS if (path / d).is_dir()), None)
    return (train, test) if train is not None and test is not None else None


def class_arrays(path: Path):
    """ImageData of a folder of one .npy array per class (or of its train/ and val/ folders of them); None where
    `path` is no such folder."""
    if not path.is_dir():
        return None
    folders = _split_folders(path)
    found = []
    for folder in folders or (path,):
        headers = _stacks(folder)
        if headers is None:
            return None
        _odd_one(headers, folder)
        found.append((folder, headers))
    if len(found) == 2:
        _odd_one({f"{folder.name}/{k}": v for folder, h in found for k, v in h.items()}, path)
    (first, headers) = found[0]
    stems = sorted({f[:-4] for _, h in found for f in h})  # both splits' names lose the same words
    named, dropped = class_names(stems)
    name_of = dict(zip(stems, named, strict=True))
    names = [name_of[f[:-4]] for f in headers]
    idx, how = _ordered(names)
    files, names = [list(headers)[i] for i in idx], [names[i] for i in idx]
    from ..runtime import info
    from .arrays import _finish, _one_split
    x, y = _split(first, headers, files)
    few = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    info(f"{path}: one .npy array of images per class, {len(names)} classes ({few}): class indices {how}{dropped}")
    if len(found) == 1:
        data = _one_split(x, y, path, f"{path}: one array per class", names)
    else:
        test_folder, test_headers = found[1]
        by_name = {name_of[f[:-4]]: f for f in test_headers}
        unknown = sorted(set(by_name) - set(names))
        if unknown:
            raise HardenError(f"{test_folder} holds classes {first.name}/ has no array of: {', '.join(unknown[:5])}; "
                              f"its files are named as {first.name}/'s ({', '.join(files[:3])}, ...).")
        parts = [NpyRows(test_folder / by_name[n], *test_headers[by_name[n]]) for n in names if n in by_name]
        yt = np.repeat(np.array([i for i, n in enumerate(names) if n in by_name], np.int64), [len(p) for p in parts])
        data = _finish(x, y, StackedRows(parts), yt, str(path), names)
    data.layout = (f"one .npy array per class ({len(names)} classes, class indices {how}{dropped}), rows read where "
                   "used")
    return data
