"""A zip archive of an image tree (a Kaggle download, a folder zipped to be sent), read in place: members are listed
once from the archive's central directory and each image is read from the archive when a batch needs it, never
extracted. The tree inside is read as a folder would be: `train/` and `val/` (or `test/`, `validation/`, `valid/`)
of class folders, an evaluation folder alone, or class folders; a single folder wrapping all of it (`dataset/...`)
is looked through, and what tools add (`__MACOSX/`, hidden files) is skipped."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import HardenError
from .sources import (EVAL_FOLDERS, TRAIN_FOLDERS, Listing, OnDisk, PathTable, _is_image, image_kinds,
                      images_over_arrays, is_skipped_dir)


def _images(path: Path) -> list[list[str]]:
    """The image members' paths, split into their folders, hidden and tool folders left out."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise HardenError(f"{str(path)!r} is not a readable zip archive ({e}).") from None
    found = []
    for name in names:
        parts = [p for p in name.replace("\\", "/").split("/") if p]
        if not parts or not _is_image(parts[-1]) or parts[-1].startswith("."):
            continue
        if any(is_skipped_dir(p) for p in parts[:-1]):
            continue
        found.append(parts)
    kept = set(images_over_arrays(["/".join(p) for p in found]))
    found = [p for p in found if "/".join(p) in kept]
    if not found:
        raise HardenError(f"The zip archive {str(path)!r} holds no images ({image_kinds()}).")
    return found


def zip_images(path: Path) -> Listing:
    """Every image in the archive, whatever its folders (an unlabeled pool); labels left to the caller."""
    members = sorted(_images(path))
    return Listing("", PathTable(["0:" + "/".join(p) for p in members]), np.zeros(len(members), np.int64), None,
                   shards=[str(path)], what="zip")


def zip_source(path: Path) -> OnDisk:
    members = _images(path)
    depth = 0  # folders that wrap the whole tree (`dataset/train/...`): looked through
    while (all(len(p) > depth + 2 for p in members) and len({p[depth] for p in members}) == 1
           and members[0][depth].lower() not in TRAIN_FOLDERS + EVAL_FOLDERS):
        depth += 1
    tops = {p[depth] for p in members}
    # the split folders in any case and either word (Train/, training/ and testing/ as Kaggle's zips have them)
    train = next((t for d in TRAIN_FOLDERS for t in sorted(tops) if t.lower() == d), None)
    evaluation = next((t for d in EVAL_FOLDERS for t in sorted(tops) if t.lower() == d), None)
    src = str(path)

    def split_of(top: str | None) -> list[list[str]]:
        chosen = [p for p in members if top is None or p[depth] == top]
        start = depth + (top is not None)
        loose = [p for p in chosen if len(p) - start < 2]
        if loose:
            where = "/".join(loose[0][:start]) or "its top"
            raise HardenError(f"The zip archive {src!r} has images that lie loose in {where} ({loose[0][-1]}, ...): "
                              "put each class's images in a folder named after the class.")
        return chosen

    def listing(top: str | None) -> Listing:
        chosen = sorted(split_of(top), key=lambda p: (p[depth + (top is not None)], p))
        refs = ["0:" + "/".join(p) for p in chosen]
        names = [p[depth + (top is not None)] for p in chosen]
        return Listing("", PathTable(refs), np.zeros(len(refs), np.int64), names, shards=[src], what="zip")

    def classes(*tops: str | None) -> list[str]:
        return sorted({p[depth + (t is not None)] for t in tops for p in split_of(t)})

    if train is not None and evaluation is not None:
        return OnDisk(src, {"train": lambda: listing(train), "test": lambda: listing(evaluation)}, "zip",
                      lambda: classes(train, evaluation))
    if evaluation is not None and tops == {evaluation}:
        return OnDisk(src, {"all": lambda: listing(evaluation)}, "zip", lambda: classes(evaluation))
    if train is not None or evaluation is not None:
        has = ("train/ but no val/, test/, validation/ or valid/" if train is not None
               else "an evaluation folder but no train/")
        raise HardenError(f"The zip archive {src!r} has {has} beside other folders; a tree for training holds train/ "
                          "and val/ (or test/, validation/, valid/), each with one folder per class, and one for "
                          "evaluation alone holds the class folders themselves.")
    return OnDisk(src, {"all": lambda: listing(None)}, "zip", lambda: classes(None))
