"""Images as rows of pixel values in a CSV, as Kaggle ships the MNIST family (`mnist_train.csv`, Fashion-MNIST's
`fashion-mnist_test.csv`, Sign Language MNIST's `sign_mnist_train.csv`, the digit recognizer's `train.csv`): a label
column and one column per pixel of a square grey image (`label,pixel1,...,pixel784`; or, with no header, the label
first, as `mnist_train.csv` has it); or one column of space-separated pixels, as FER2013's `fer2013.csv`
(emotion, pixels, Usage: its splits as torchvision's FER2013 reads them). Read whole into uint8 arrays (these sets
are small); a file whose name says `train` takes the file named alike with `test` beside it as its test split, where
that one has labels."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from ..errors import HardenError

PIXEL_COLUMN = re.compile(r"^(pixel|px|p)?_?\d+$")
MIN_PIXELS = 64  # an 8x8 image: fewer columns are a table of something else
SPLIT_PAIR = (("train", "test"), ("training", "testing"), ("Train", "Test"), ("TRAIN", "TEST"))


def _layout(path: Path) -> tuple[int, int | None, list[int]] | None:
    """(rows to skip, the label column, the pixel columns) where the file is a pixel CSV; else None."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = next(csv.reader([f.readline()]), [])
    except (OSError, UnicodeDecodeError, StopIteration):
        return None
    from .sources import LABEL_COLUMNS
    head = [c.strip().lower() for c in first]
    if head and all(re.fullmatch(r"-?\d+(\.\d*)?", c) for c in head):  # no header: the label first
        side = len(head) - 1
        return (0, 0, list(range(1, len(head)))) if side >= MIN_PIXELS and _square(side) else None
    pixels = [i for i, c in enumerate(head) if PIXEL_COLUMN.match(c)]
    label = next((head.index(n) for n in LABEL_COLUMNS if n in head), None)
    if len(pixels) < MIN_PIXELS or not _square(len(pixels)) or len(pixels) + (label is not None) != len(head):
        return None
    return 1, label, pixels


def _square(n: int) -> bool:
    return math.isqrt(n) ** 2 == n


# FER2013 (`fer2013.csv`, `icml_face_data.csv`: emotion, " pixels" as one space-separated string, Usage), as
# torchvision's FER2013 reads it: Training the training split, PublicTest and PrivateTest the test split
PIXEL_STRING_COLUMNS = ("pixels", "pixel", "image")
STRING_LABEL_COLUMNS = ("emotion",)
FER_USAGE = {"training": "train", "publictest": "test", "privatetest": "test"}
FER_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


def _string_layout(path: Path) -> tuple[int, int | None, int | None, bool] | None:
    """(the pixel-string column, the label column, the usage column, whether the label is FER's emotion) of a
    FER2013-style CSV; else None."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            head = [c.strip().lower() for c in next(reader, [])]
            first = next(reader, [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    from .sources import LABEL_COLUMNS
    pixels = next((head.index(n) for n in PIXEL_STRING_COLUMNS if n in head), None)
    if pixels is None or len(first) <= pixels:
        return None
    values = first[pixels].split()
    if len(values) < MIN_PIXELS or not _square(len(values)) or not all(v.isdigit() for v in values[:64]):
        return None
    label = next((head.index(n) for n in (*STRING_LABEL_COLUMNS, *LABEL_COLUMNS) if n in head), None)
    usage = head.index("usage") if "usage" in head else None
    return pixels, label, usage, label is not None and head[label] == "emotion"


def is_pixel_csv(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv" and (_layout(path) is not None or
                                                                 _string_layout(path) is not None)


def _string_csv(path: Path):
    """A FER2013-style CSV: its images from the pixel strings, its splits from Usage (torchvision's reading)."""
    from .arrays import _finish
    column, label, usage, emotion = _string_layout(path)
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        for r in reader:
            if r:
                rows.append((r[column], r[label] if label is not None else "", r[usage] if usage is not None else ""))
    if label is None:
        raise HardenError(f"{str(path)!r} holds images as pixel strings but no label column (a competition's test "
                          "file): harden measures accuracy on labelled images; give the labelled file.")
    side = math.isqrt(len(rows[0][0].split()))
    x = np.fromstring(" ".join(p for p, _, _ in rows), dtype=np.int64, sep=" ")
    if x.size != len(rows) * side * side:
        raise HardenError(f"{str(path)!r}: its rows do not all hold {side * side} pixel values.")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise HardenError(f"{str(path)!r}: pixel values run from {x.min()} to {x.max()}; harden reads 0-255.")
    x = x.astype(np.uint8).reshape(-1, side, side)
    try:
        y = np.asarray([int(float(v)) for _, v, _ in rows], np.int64)
    except ValueError as e:
        raise HardenError(f"{str(path)!r}: a label is not a class index ({e}).") from None
    split = np.asarray([FER_USAGE.get(u.strip().lower(), "") for _, _, u in rows])
    names = FER_CLASSES if emotion and y.max(initial=0) < len(FER_CLASSES) else None
    if usage is not None and (split == "train").any() and (split == "test").any():
        return _finish(x[split == "train"], y[split == "train"], x[split == "test"], y[split == "test"], str(path),
                       names)
    return _finish(x[:0], y[:0], x, y, str(path), names)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    skip, label, pixels = _layout(path)
    try:
        try:  # integers parse several times faster than floats
            table = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.int32, ndmin=2, encoding="utf-8-sig")
        except ValueError:
            table = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2, encoding="utf-8-sig")
    except ValueError as e:
        raise HardenError(f"{str(path)!r} reads as images in pixel columns, but a row is not numbers ({e}).") from None
    values = table[:, pixels]
    if values.size and values.max() <= 1.0 and values.min() >= 0 and not np.all(values == np.round(values)):
        values = values * 255.0  # pixels written as floats in [0, 1]
    if values.size and (values.min() < 0 or values.max() > 255):
        raise HardenError(f"{str(path)!r}: pixel values run from {values.min():g} to {values.max():g}; harden reads "
                          "0-255 (or floats in [0, 1]).")
    side = math.isqrt(len(pixels))
    x = np.round(values).astype(np.uint8).reshape(-1, side, side)
    y = None
    if label is not None:
        raw = table[:, label]
        if np.any(raw != np.round(raw)) or (raw.size and raw.min() < 0):
            raise HardenError(f"{str(path)!r}: its label column holds values that are not class indices.")
        y = raw.astype(np.int64)
    return x, y


def _test_beside(path: Path) -> Path | None:
    for train, test in SPLIT_PAIR:
        if train in path.stem:
            other = path.with_name(path.stem.replace(train, test) + path.suffix)
            if other.is_file() and other != path:
                return other
    return None


def pixel_csv(path: Path):
    """ImageData of a pixel CSV (and its test file beside it); the caller checked is_pixel_csv."""
    from .arrays import _finish
    from ..runtime import info
    if _layout(path) is None:
        return _string_csv(path)
    x, y = _read(path)
    if y is None:
        raise HardenError(f"{str(path)!r} holds images as pixel columns but no label column (a competition's test "
                          "file): harden measures accuracy on labelled images; give the labelled file.")
    test = _test_beside(path)
    if test is not None and is_pixel_csv(test):
        xt, yt = _read(test)
        if yt is not None:
            info(f"{path.name}: images in pixel columns, {test.name} beside it as the test split")
            return _finish(x, y, xt, yt, str(path))
    return _finish(x[:0], y[:0], x, y, str(path))
