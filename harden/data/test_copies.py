"""Keeping the report's test images out of training: a pool of unlabeled images (`fix --unlabeled`) that lists them
or holds copies of them, and training data with the same photograph under train/ and val/, would train on images the
report then counts as unseen. Images are matched by where they lie (each root, shard or archive resolved once), then
loose files by their bytes (sizes first, bytes read only on a size match; a re-encoded or resized copy is another
image), and arrays in memory by their pixels."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ..runtime import progress_if
from .arrays import ImageData
from .base import Data
from .files import FileData
from .sources import Listing

COPY_CHECK_BAR = 20_000  # files looked through for copies of test images beyond which a progress bar shows (a stat
# each, on a network disk a few seconds a thousand)


def leave_out_test_images(pool: Data, data: Data) -> tuple[Data, int]:
    """The pool less any image of `data`'s test split (the report's images): a pool given as the same folder, or a
    list of all of it, or a folder of copies of some of them (a dump of every photograph a team has) would otherwise
    train on them, pseudo-labelled, and the report would count images the model was trained on. Files are matched by
    where they lie (each root, shard or archive resolved once), then loose files by their bytes (only files of a test
    file's size are read); arrays by their pixels. (pool, the number left out)."""
    if not data.has_split("test"):
        return pool, 0
    if isinstance(pool, ImageData) and isinstance(data, ImageData):  # arrays in memory (a dataset's items are not read)
        if not (isinstance(pool.x_train, np.ndarray) and isinstance(data.x_test, np.ndarray)):
            return pool, 0
        keep = _not_among(pool.x_train, data.x_test)
    elif isinstance(pool, FileData) and isinstance(data, FileData):
        mine, theirs = pool.listing("train"), data.listing("test")
        tested = set(_place_list(theirs))
        if not tested:
            return pool, 0
        places = _place_list(mine)
        keep = np.fromiter((p not in tested for p in places), bool, len(mine))
        if _loose_files(mine) and _loose_files(theirs):
            copies = _copies_of(list(tested), [p for p, k in zip(places, keep, strict=True) if k])
            keep &= np.fromiter((p not in copies for p in places), bool, len(mine))
    else:
        return pool, 0
    if keep.all():
        return pool, 0
    return pool.take_train(np.flatnonzero(keep), pool.subset), int((~keep).sum())


def _loose_files(listing: Listing) -> bool:
    """Whether each image of the listing is a file of its own (a folder, a list of paths), not a shard's member."""
    return not listing.shards and listing.what not in ("table", "lmdb")


def _copies_of(tested: list[str], candidates: list[str]) -> set[str]:
    """The candidate files whose bytes are a tested file's: sizes first (one stat a file), bytes read only where a
    size matches (a re-encoded copy is another image, and is not found)."""

    def size(p: str) -> int:
        try:
            return os.stat(p).st_size
        except OSError:
            return -1
    sizes: dict[int, list[str]] = {}
    for p in tested:
        sizes.setdefault(size(p), []).append(p)
    sizes.pop(-1, None)
    digests: dict[str, str] = {}

    def digest(p: str) -> str:
        if p not in digests:
            try:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                digests[p] = h.hexdigest()
            except OSError:
                digests[p] = ""
        return digests[p]
    found = set()
    with progress_if(len(candidates) > COPY_CHECK_BAR, "looking for copies of test images", len(candidates)) as advance:
        for p in candidates:
            same = sizes.get(size(p))
            if same and digest(p) and digest(p) in {digest(t) for t in same}:
                found.add(p)
            advance(1)
    return found


def _not_among(pool: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """Per pool row: whether its pixels are none of the tested rows' (rows hashed; arrays of another shape share none)."""
    if len(pool) == 0 or len(tested) == 0 or pool.shape[1:] != tested.shape[1:] or pool.dtype != tested.dtype:
        return np.ones(len(pool), bool)

    def row(a: np.ndarray, i: int) -> bytes:
        return hashlib.sha1(np.ascontiguousarray(a[i]).tobytes()).digest()
    seen = {row(tested, i) for i in range(len(tested))}
    return np.fromiter((row(pool, i) not in seen for i in range(len(pool))), bool, len(pool))


def _place_list(listing: Listing) -> list[str]:
    """Where each image of a listing lies, comparable across listings of the same files read another way."""
    if listing.what in ("table", "lmdb"):
        return [listing.location(i) for i in range(len(listing))]
    refs = [listing.refs[i] for i in range(len(listing))]
    if listing.shards:
        real = [os.path.realpath(s) for s in listing.shards]
        if listing.what == "zip":
            return [f"{real[int(r.split(':', 1)[0])]}:{r.split(':', 1)[1]}" for r in refs]
        return [f"{real[int(r.split(':', 3)[0])]}:{r.split(':', 3)[3]}" for r in refs]
    root = os.path.realpath(listing.root)
    return [os.path.normpath(os.path.join(root, r)) for r in refs]
