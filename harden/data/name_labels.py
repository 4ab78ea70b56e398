"""`--label-from-name PATTERN`: image files labelled by their own names, where no folder or list says their class
(Kaggle's Dogs vs. Cats `train/cat.0.jpg`, Oxford-IIIT Pet's `images/Abyssinian_1.jpg`, a camera's
`defect_0042.png`). Asked for, never guessed: a name's words are as often ids or dates as classes.

The pattern is a Python regular expression searched in each file's name (not its folders); its group named `label`,
else its first group, else the whole match is the class name. A file it does not match stops the run with the first
such names: dropped silently, they would leave a class out of the report."""
import functools
import os
import re
from pathlib import Path

import numpy as np

from ..errors import HardenError
from .sources import EVAL_FOLDERS, TRAIN_FOLDERS, Listing, OnDisk, PathTable, _split_folder, image_files

NAMES_LAYOUT = "names"  # FileData.layout: a folder of images labelled by their names


def compiled(pattern: str) -> re.Pattern:
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise HardenError(f"--label-from-name {pattern!r} is not a regular expression ({e}).") from None
    if rx.match("") is not None and not rx.groups:
        raise HardenError(f"--label-from-name {pattern!r} matches an empty name: it would give every file the same "
                          "label. Write the part of the name that is the class, e.g. '^[a-z]+' for cat.0.jpg, or "
                          r"'^(.+)_\d+\.' for Abyssinian_1.jpg.")
    return rx


def label_of(rx: re.Pattern, name: str) -> str | None:
    """The class `rx` reads in a file name (its extension included: `^(.+)_\\d+\\.jpg$` may name it); None where it
    does not match or its group is empty."""
    m = rx.search(name)
    if m is None:
        return None
    value = m.group("label") if "label" in rx.groupindex else m.group(1) if rx.groups else m.group(0)
    return value or None


def _splits(path: Path) -> dict[str, Path]:
    """train/ and val/ (test/, validation/, ...) holding images loose, or the folder itself as one split."""
    train = next((f for f in (_split_folder(path, d) for d in TRAIN_FOLDERS) if f.is_dir()), None)
    test = next((f for f in (_split_folder(path, d) for d in EVAL_FOLDERS) if f.is_dir()), None)
    return {"train": train, "test": test} if train is not None and test is not None else {"all": path}


def _names(paths: list[str], rx: re.Pattern, pattern: str, where: str) -> list[str]:
    """The class each path's file name holds; an error naming the first that holds none."""
    if not paths:
        raise HardenError(f"--label-from-name: {where} holds no image files.")
    names = [label_of(rx, os.path.basename(p)) for p in paths]
    unmatched = [p for p, n in zip(paths, names, strict=True) if n is None]
    if unmatched:
        raise HardenError(f"--label-from-name {pattern!r}: {len(unmatched):,} of the {len(paths):,} image files in "
                          f"{where} have names it does not read a class from ({', '.join(unmatched[:3])}"
                          f"{', ...' if len(unmatched) > 3 else ''}). Give the folder of labelled images alone "
                          "(Dogs vs. Cats' train/, not its unlabelled test1/), or a pattern every name matches.")
    return names


def _listing(folder: Path, rx: re.Pattern, pattern: str) -> Listing:
    refs = sorted(image_files(folder, folder))
    names = _names(refs, rx, pattern, str(folder))
    return Listing(str(folder), PathTable(refs), np.zeros(len(refs), np.int64), names, what="folder")


def _zip_listing(archive: Path, rx: re.Pattern, pattern: str) -> Listing:
    """Every image of a zip archive (Kaggle's Dogs vs. Cats `train.zip`: train/cat.0.jpg, ...), read in place."""
    from .zipped import zip_images
    every = zip_images(archive)
    members = [every.refs[i].split(":", 1)[1] for i in range(len(every))]
    every.names = _names(members, rx, pattern, str(archive))
    return every


def name_label_source(path: Path, pattern: str) -> OnDisk:
    """The folder's images (at any depth), each labelled by the class `pattern` reads in its name; train/ and val/
    (or test/, ...) as its two splits where both are there, else one split (fix holds a share out of it). A zip
    archive: all its images, one split."""
    rx = compiled(pattern)
    if path.is_file() and path.suffix.lower() == ".zip":
        listers = {"all": functools.cache(lambda: _zip_listing(path, rx, pattern))}
    elif path.is_dir():
        listers = {split: functools.cache(lambda f=folder: _listing(f, rx, pattern))
                   for split, folder in _splits(path).items()}
    else:
        raise HardenError(f"--label-from-name labels the image files of a folder (or a zip archive) by their names; "
                          f"{path} is neither.")

    def class_names() -> list[str]:
        names = sorted({n for lister in listers.values() for n in lister().names})
        if len(names) == 1:
            from ..runtime import warn
            warn(f"--label-from-name {pattern!r} reads one class, {names[0]!r}, in every file name of {path}: check "
                 "that the pattern picks the part of the name that differs by class.")
        return names
    return OnDisk(str(path), listers, NAMES_LAYOUT, class_names, None, "")
