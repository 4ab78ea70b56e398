"""ImageNet's validation images as they are usually kept: loose in one folder (`ILSVRC2012_val_00000001.JPEG`, ...),
their classes in a ground-truth file beside the tree rather than in class folders. Two forms are read:

- Kaggle's ImageNet (`imagenet-object-localization-challenge`): `LOC_val_solution.csv` (`ImageId,PredictionString`,
  the first word of the prediction string the synset) at the dataset's root, the images in `ILSVRC/Data/CLS-LOC/val/`.
- The official ILSVRC2012 development kit: `ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt` (the
  ILSVRC2012_ID of image i on line i) and `meta.mat` (ILSVRC2012_ID -> WordNet id), extracted or as the
  `ILSVRC2012_devkit_t12.tar.gz` torchvision's ImageNet reads, beside the folder or a few levels above it.

Labels are synsets, which classes.py maps onto an ImageNet model's indices (timm's order), as for synset folders."""
from __future__ import annotations

import csv
import functools
import io
import os
import re
import tarfile
from pathlib import Path

import numpy as np

from ..errors import HardenError

KAGGLE_SOLUTION = "LOC_val_solution.csv"
DEVKIT = "ILSVRC2012_devkit_t12"
DEVKIT_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "data/meta.mat"
VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})$")
ANCESTORS = 4  # Kaggle's val/ sits 4 levels below the file: <root>/ILSVRC/Data/CLS-LOC/val


def kaggle_tree(path: Path) -> Path | None:
    """The image tree (`ILSVRC/Data/CLS-LOC`: train/ of synset folders, val/ loose) under Kaggle's dataset root."""
    tree = path / "ILSVRC" / "Data" / "CLS-LOC"
    return tree if (path / KAGGLE_SOLUTION).is_file() and (tree / "train").is_dir() else None


def truth_source(split_dir: Path) -> tuple[str, Path] | None:
    """('kaggle' | 'devkit' | 'devkit-tar', the file) for the first ground truth found in the folder or above it."""
    for folder in [split_dir, *list(split_dir.resolve().parents)[:ANCESTORS]]:
        if (folder / KAGGLE_SOLUTION).is_file():
            return "kaggle", folder / KAGGLE_SOLUTION
        if (folder / DEVKIT / DEVKIT_TRUTH).is_file() and (folder / DEVKIT / DEVKIT_META).is_file():
            return "devkit", folder / DEVKIT
        if (folder / f"{DEVKIT}.tar.gz").is_file():
            return "devkit-tar", folder / f"{DEVKIT}.tar.gz"
    return None


def _kaggle(path: Path) -> dict[str, str]:
    out = {}
    try:
        with open(path, newline="") as f:
            rows = csv.reader(f)
            header = [h.strip() for h in next(rows, [])]
            if header[:2] != ["ImageId", "PredictionString"]:
                raise HardenError(f"{str(path)!r} is not Kaggle's ImageNet solution file (ImageId,PredictionString).")
            for n, row in enumerate(rows, start=2):
                words = row[1].split() if len(row) >= 2 else []
                if not words:
                    raise HardenError(f"{str(path)!r}, line {n}: no synset in {row!r}.")
                out[row[0].strip()] = words[0]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise HardenError(f"{str(path)!r} is not readable ({e}).") from None
    return out


def _devkit_files(source: str, path: Path) -> tuple[bytes, bytes]:
    """(ground truth text, meta.mat bytes) from the extracted kit or its tar.gz."""
    try:
        if source == "devkit":
            return (path / DEVKIT_TRUTH).read_bytes(), (path / DEVKIT_META).read_bytes()
        with tarfile.open(path, "r:gz") as tar:
            def member(name: str) -> bytes:
                f = tar.extractfile(f"{DEVKIT}/{name}")
                if f is None:
                    raise KeyError(name)
                return f.read()
            return member(DEVKIT_TRUTH), member(DEVKIT_META)
    except (OSError, KeyError, tarfile.TarError) as e:
        raise HardenError(f"{str(path)!r} is not a readable ILSVRC2012 development kit ({type(e).__name__}: {e}).") \
            from None


def _devkit(source: str, path: Path) -> dict[str, str]:
    """{ILSVRC2012_val_NNNNNNNN: synset}, as torchvision's parse_devkit_archive reads the kit: meta.mat's leaf
    synsets (no children) give ILSVRC2012_ID -> WNID; line i of the ground truth is image i's ILSVRC2012_ID."""
    from scipy.io import loadmat
    truth, meta = _devkit_files(source, path)
    try:
        synsets = loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
        leaves = [s for s in synsets if int(s["num_children"]) == 0]
        wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
        ids = [int(line) for line in truth.decode().split()]
        return {f"ILSVRC2012_val_{i:08d}": wnid[k] for i, k in enumerate(ids, start=1)}
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, NotImplementedError) as e:
        raise HardenError(f"{str(path)!r}: its ground truth and meta.mat do not read as the ILSVRC2012 development "
                          f"kit's ({type(e).__name__}: {e}).") from None


def ground_truth(split_dir: Path) -> tuple[dict[str, str], str] | None:
    """({image name without extension: synset}, the file it came from) for a folder of loose ImageNet validation
    images; None where no ground truth is found or the folder's images are not named as ImageNet's."""
    found = truth_source(split_dir)
    if found is None:
        return None
    if not any(VAL_NUMBER.match(os.path.splitext(e.name)[0]) for e in os.scandir(split_dir) if e.is_file()):
        return None  # a ground truth nearby, but these are not ImageNet's validation images
    return read_truth(*found), str(found[1])


@functools.lru_cache(maxsize=4)
def read_truth(source: str, path: Path) -> dict[str, str]:
    """{ILSVRC2012_val_NNNNNNNN: synset} from what truth_source found (read once a process: the class names and the
    listing both need it; callers only read it)."""
    return _kaggle(path) if source == "kaggle" else _devkit(source, path)


def loose_images(split_dir: Path) -> list[str]:
    from .sources import _is_image
    return sorted(e.name for e in os.scandir(split_dir) if e.is_file() and _is_image(e.name))


def listing(split_dir: Path):
    """The folder's loose images with their synsets (sources.Listing); None where no ground truth applies."""
    from .sources import Listing, PathTable
    found = ground_truth(split_dir)
    if found is None:
        return None
    truth, where = found
    files = loose_images(split_dir)
    names = [truth.get(os.path.splitext(f)[0]) for f in files]
    unknown = [f for f, n in zip(files, names, strict=True) if n is None]
    if unknown:
        raise HardenError(f"{len(unknown)} image(s) in {str(split_dir)!r} have no entry in the ImageNet ground truth "
                          f"{where!r} (first: {unknown[0]}); keep only ImageNet's validation images there.")
    if not files:
        return None
    return Listing(str(split_dir), PathTable(files), np.zeros(len(files), np.int64), names, what="folder")


def class_names(split_dir: Path) -> list[str]:
    """The synsets of the folder's images (cheap: the ground truth and a directory listing, nothing decoded)."""
    lst = listing(split_dir)
    return sorted(set(lst.names)) if lst is not None else []
