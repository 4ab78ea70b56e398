"""`harden data`: how harden reads a dataset, before a long run does: its layout, each split and its size, the
classes and how their names became indices (for a model: the model's), how many images each class has, what a
sample of its files holds (sizes, modes, formats) and the transform they go through. Reads the listings and a
seeded sample of a few files; nothing else is decoded."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .base import Data, stratified_sample
from .transforms import exif_orientation

SAMPLE = 16  # files opened to say what the images are


def describe(data: Data, sample: int = SAMPLE) -> list[tuple[str, str]]:
    """(label, value) rows."""
    from . import FileData
    rows: list[tuple[str, str]] = [("source", data.source)]
    on_disk = isinstance(data, FileData)
    from .dataset_objects import layout as dataset_layout
    layout = data.layout if on_disk else getattr(data, "layout", "") or dataset_layout(data) or "arrays in memory"
    store = data.listing("test" if data.has_split("test") else "train").store if on_disk else None
    if hasattr(store, "describe"):  # what an archive's entries hold (LMDB's values)
        layout += f" ({store.describe()})"
    rows.append(("layout", layout))
    if not data.has_split("train"):
        rows.append(("train split", "none: `eval` reads it whole; `fix` holds a stratified, seeded 20% of it out as "
                                    "its test split and trains on the rest"))
    for split in [s for s in ("train", "test") if data.has_split(s)]:
        y = data.y_train if split == "train" else data.y_test
        rows.append((f"{split} split", f"{len(y):,} images" + _per_class(y, data.class_names)))
    names = data.class_names
    rows.append(("classes", f"{data.num_classes}" + (f": {_few(names)}" if names else " (indices; no names)")))
    if on_disk:
        rows.append(("class indices", data.class_note + _other_readings(data)))
        rows.append(("transform", data.preprocess.describe() + (f" ({data.size_note})" if data.size_note else "")))
        rows.append((f"sample of {min(sample, data.n_test)} files", _files(data, sample)))
    else:
        x = data.x_train if data.n_train else data.x_test
        rows.append(("images", f"{x.shape[1]}x{x.shape[2]}, {x.shape[3]} channel(s), uint8 (as read)"))
    return rows


def _other_readings(data) -> str:
    """Numbered class folders read as indices, or classes in sorted order beside a class list in another order
    (Tiny ImageNet's wnids.txt), with no model to ask: what other training code would make of them."""
    from pathlib import Path

    from .class_order import ASKED, INDICES, SHORT, SORTED_NAMES, listed_readings, numbered_readings
    names = data.class_names or []
    if ASKED in data.class_note:
        return ""
    if data.class_note.startswith(SORTED_NAMES) and Path(data.source).is_dir():
        listed = [k for k in listed_readings(names, len(names), data.source) if k != SORTED_NAMES]
        return (f"; read {SHORT[listed[0]]} by other training code: with a model (`harden eval`, `fix`), the model's "
                "answers decide") if listed else ""
    if not data.class_note.startswith(INDICES):
        return ""
    others = [k for k in numbered_readings(names, len(names)) if k != INDICES]
    return (f"; read {' or '.join(SHORT[k] for k in others)} by other training code (torchvision's ImageFolder sorts "
            "them: '10' before '2'): with a model (`harden eval`, `fix`), the model's answers decide") if others else ""


def _per_class(y: np.ndarray, names: list[str] | None) -> str:
    values, counts = np.unique(y, return_counts=True)

    def name(i: int) -> str:
        return names[i] if names and 0 <= i < len(names) else str(i)
    lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
    if counts[lo] == counts[hi]:
        return f" in {len(values)} classes, {int(counts[lo])} each"
    return (f" in {len(values)} classes; per class {int(counts[lo])} ({name(int(values[lo]))}) to "
            f"{int(counts[hi])} ({name(int(values[hi]))})")


def _files(data, sample: int) -> str:
    """What a seeded sample of the evaluation split's files are: formats, modes, sizes; the unreadable named."""
    from .array_images import open_image
    listing = data.listing("test")
    idx = stratified_sample(listing.labels, min(sample, len(listing)), 0)
    listing.prepare(idx)
    formats, modes, sides, bad, oriented, arrays = Counter(), Counter(), [], [], 0, Counter()
    from .loader import why_unreadable
    for i in idx:
        raw = None
        try:
            raw = listing.read_bytes(int(i))
            with open_image(raw, listing) as im:
                formats[im.format or "?"] += 1
                modes[im.mode] += 1
                sides.append((im.width, im.height))
                oriented += exif_orientation(im) != 1
                if "array" in im.info:  # an .npy's type and layout, and how its floats were read (array_images.py)
                    arrays[im.info["array"]] += 1
        except Exception as e:  # noqa: BLE001 - PIL's errors for a bad file: named, as a run would name them
            bad.append(f"{listing.location(int(i))} ({why_unreadable(raw, e)})")
    parts = []
    if sides:
        w = sorted(s[0] for s in sides)
        h = sorted(s[1] for s in sides)
        parts.append(f"{', '.join(f'{k} {v}' for k, v in formats.most_common())}; modes "
                     f"{', '.join(f'{k} {v}' for k, v in modes.most_common())}; width {w[0]}-{w[-1]}, height "
                     f"{h[0]}-{h[-1]} px")
    if arrays:
        parts.append("arrays " + ", ".join(f"{k} {v}" for k, v in arrays.most_common()))
    if oriented:
        parts.append(f"{oriented} with an EXIF orientation tag (read {data.preprocess.how_oriented()}; "
                     "--exif-orientation)")
    if bad:
        parts.append(f"unreadable: {', '.join(bad[:3])}" + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
    return "; ".join(parts) or "-"


def _few(names: list[str], n: int = 8) -> str:
    return ", ".join(map(str, names[:n])) + (f", ... ({len(names)} in all)" if len(names) > n else "")
