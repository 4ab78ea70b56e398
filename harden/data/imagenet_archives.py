"""ImageNet as image-net.org hands it out, read in place (nothing extracted; torchvision's ImageNet(root) extracts
the same three files first): `ILSVRC2012_img_val.tar` (50,000 loose JPEGs), `ILSVRC2012_img_train.tar` (a tar of
1,000 per-class tars, `n01440764.tar`, ..., each of loose JPEGs) and the development kit
`ILSVRC2012_devkit_t12.tar.gz` for the validation labels (or Kaggle's `LOC_val_solution.csv`, imagenet_truth.py).

Tar members are stored uncompressed at fixed offsets, so an image inside an inner tar is a byte range of the outer
file: its listing ref is `0:<offset in the outer tar>:<size>:<name>`, read as any tar shard's member is. Only the
headers are read to list a split (`eval` lists the validation tar only)."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

from ..errors import HardenError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"


class _Window:
    """A read-only file view of `size` bytes at `offset` of `f`: an inner tar inside the outer one."""

    def __init__(self, f, offset: int, size: int):
        self.f, self.offset, self.size, self.pos = f, offset, size, 0

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        self.pos = pos if whence == os.SEEK_SET else self.pos + pos if whence == os.SEEK_CUR else self.size + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        self.f.seek(self.offset + self.pos)
        data = self.f.read(max(n, 0))
        self.pos += len(data)
        return data


def archives(path: Path):
    """OnDisk for a folder holding ImageNet's validation tar (and its training tar); None where it holds none."""
    from .imagenet_truth import read_truth, truth_source
    from .sources import OnDisk
    val, train = path / VAL_TAR, path / TRAIN_TAR
    if not val.is_file():
        return None
    found = truth_source(path)
    if found is None:
        raise HardenError(f"{str(val)!r} holds ImageNet's validation images without their classes: put the ILSVRC2012 "
                          "development kit (ILSVRC2012_devkit_t12.tar.gz) or Kaggle's LOC_val_solution.csv beside it.")
    listers = {"test" if train.is_file() else "all": lambda: _val_listing(val, read_truth(*found), str(found[1]))}
    if train.is_file():
        listers["train"] = lambda: _train_listing(train)
    return OnDisk(str(path), listers, "tar", lambda: sorted(set(read_truth(*found).values())
                                                             | (_train_classes(train) if train.is_file() else set())))


def _train_classes(train: Path) -> set[str]:
    """The per-class tars' names: the outer tar's headers only (1,000 of them), no inner tar opened."""
    with _open(train, repr(str(train))) as outer:
        return {os.path.splitext(os.path.basename(m.name))[0] for m in outer
                if m.isfile() and m.name.lower().endswith(".tar")}


def _open(path: Path, what: str, fileobj=None) -> tarfile.TarFile:
    try:
        return tarfile.open(str(path) if fileobj is None else None, mode="r:", fileobj=fileobj)
    except (tarfile.TarError, OSError) as e:
        raise HardenError(f"{what} is not a readable uncompressed tar ({e}).") from None


def _val_listing(val: Path, truth: dict[str, str], where: str):
    from .sources import Listing, PathTable, _is_image
    refs, names, unknown = [], [], []
    with _open(val, repr(str(val))) as tar:
        for m in tar:
            if m.isfile() and _is_image(m.name):
                synset = truth.get(os.path.splitext(os.path.basename(m.name))[0])
                if synset is None:
                    unknown.append(m.name)
                refs.append(f"0:{m.offset_data}:{m.size}:{m.name}")
                names.append(synset)
    if unknown:
        raise HardenError(f"{len(unknown)} image(s) in {str(val)!r} have no entry in the ImageNet ground truth "
                          f"{where!r} (first: {unknown[0]}).")
    if not refs:
        raise HardenError(f"{str(val)!r} holds no images.")
    return Listing("", PathTable(refs), np.zeros(len(refs), np.int64), names, shards=[str(val)], what="tar")


def _train_listing(train: Path):
    """Every image of every per-class tar inside the training tar, the class the inner tar's name."""
    from ..runtime import progress
    from .sources import Listing, PathTable, _is_image
    refs, names = [], []
    with _open(train, repr(str(train))) as outer, open(train, "rb") as f:
        inner = [m for m in outer if m.isfile() and m.name.lower().endswith(".tar")]
        if not inner:
            raise HardenError(f"{str(train)!r} holds no per-class tars (n01440764.tar, ...).")
        with progress("listing ImageNet's training tar", len(inner)) as advance:
            for m in inner:
                synset = os.path.splitext(os.path.basename(m.name))[0]
                with _open(train, f"{m.name} inside {str(train)!r}", _Window(f, m.offset_data, m.size)) as tar:
                    for im in tar:
                        if im.isfile() and _is_image(im.name):
                            refs.append(f"0:{m.offset_data + im.offset_data}:{im.size}:{m.name}/{im.name}")
                            names.append(synset)
                advance()
    return Listing("", PathTable(refs), np.zeros(len(refs), np.int64), names, shards=[str(train)], what="tar")
