"""Caltech-UCSD Birds-200-2011 as its archive extracts: `CUB_200_2011/images/<class>/<file>.jpg` with `images.txt`
(image id, path under images/), `image_class_labels.txt` (image id, class id from 1) and `train_test_split.txt`
(image id, 1 for training); the published split read as train and test, the classes named by their folders, which
sort as their ids do (`001.Black_footed_Albatross`, ...). Given as the set's folder or the folder above it. Without
this, the set's folder reads as three classes (attributes, images, parts)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import HardenError

FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")


def cub_folder(path: Path) -> Path | None:
    for folder in (path / "CUB_200_2011", path):
        if all((folder / f).is_file() for f in FILES) and (folder / "images").is_dir():
            return folder
    return None


def _table(path: Path) -> dict[str, str]:
    """{image id: value} of one of the set's `id value` files."""
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2:
            raise HardenError(f"{str(path)!r}, line {n}: {line!r} is not `id value`.")
        out[parts[0]] = parts[1].strip()
    return out


def cub_source(folder: Path):
    from .sources import Listing, OnDisk, PathTable
    paths, is_train = _table(folder / "images.txt"), _table(folder / "train_test_split.txt")
    missing = [i for i in paths if i not in is_train][:3]
    if missing:
        raise HardenError(f"{str(folder / 'train_test_split.txt')!r} does not place images {', '.join(missing)} of "
                          "images.txt in a split.")

    def split(train: bool) -> Listing:
        ids = [i for i in paths if (is_train[i] == "1") == train]
        refs = [paths[i] for i in ids]
        names = [r.replace("\\", "/").split("/")[0] for r in refs]  # the class folder: 001.Black_footed_Albatross
        return Listing(str(folder / "images"), PathTable(refs), np.zeros(len(refs), np.int64), names, what="folder")

    def classes() -> list[str]:
        return sorted({p.replace("\\", "/").split("/")[0] for p in paths.values()})
    return OnDisk(str(folder), {"train": lambda: split(True), "test": lambda: split(False)}, "folder", classes)
