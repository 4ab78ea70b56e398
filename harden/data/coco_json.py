"""Classification labels in a COCO-style JSON, as iNaturalist (2017-2019), iWildCam and the Herbarium and FGVC
competitions ship them: `images` (id, file_name), `annotations` (image_id, category_id) and `categories` (id,
name). One file is one split. A class's index is its place among the categories sorted by id: the category id
itself where the ids run 0..N-1 (iNaturalist's, as its training code reads them), said where they do not."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import HardenError

KEYS = ("images", "annotations", "categories")


def _read(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) and all(k in obj for k in KEYS) else None


def coco_source(path: Path):
    """OnDisk of a COCO-style classification JSON; None where `path` is not one."""
    if not path.is_file() or path.suffix.lower() != ".json":
        return None
    obj = _read(path)
    if obj is None:
        return None
    from .sources import Listing, OnDisk, PathTable, _path_resolver
    from .tables import _unique
    try:
        files = {im["id"]: str(im["file_name"]) for im in obj["images"]}
        categories = sorted(obj["categories"], key=lambda c: c["id"])
        order = _unique([str(c.get("name", c["id"])) for c in categories])
        index = {c["id"]: i for i, c in enumerate(categories)}
        labelled: dict = {}
        for a in obj["annotations"]:
            if "category_id" not in a:
                continue
            seen = labelled.setdefault(a["image_id"], a["category_id"])
            if seen != a["category_id"]:
                raise HardenError(f"{str(path)!r}: image {a['image_id']} is annotated with categories {seen} and "
                                  f"{a['category_id']}: a multi-label or detection file. harden evaluates single-label "
                                  "classifiers (one class an image).")
    except (KeyError, TypeError) as e:
        raise HardenError(f"{str(path)!r} has images, annotations and categories, but not in COCO's form ({e!r} "
                          "missing or misplaced).") from None
    unknown = sorted({c for c in labelled.values() if c not in index}, key=str)
    if unknown:
        raise HardenError(f"{str(path)!r}: annotations name categories {unknown[:3]} that `categories` does not list.")
    ids = [i for i in files if i in labelled]
    if not ids:
        raise HardenError(f"{str(path)!r} lists {len(files)} images and none is annotated (a competition's test file): "
                          "harden measures accuracy on labelled images; give the validation file.")
    written = [files[i] for i in ids]
    where = _path_resolver(path.parent, written)
    fulls = [where(p) for p in written]
    missing = [p for p, full in zip(written, fulls, strict=True) if not os.path.isfile(full)][:3]
    if missing:
        raise HardenError(f"{str(path)!r} names images that are not there: {', '.join(missing)} (file_name is read "
                          "relative to the JSON's folder, or to one folder beside it).")
    names = [order[index[labelled[i]]] for i in ids]
    contiguous = [c["id"] for c in categories] == list(range(len(categories)))
    if not contiguous:
        from ..runtime import info
        info(f"{path.name}: its category ids are not 0..{len(categories) - 1}; a class's index is its place among the "
             "categories sorted by id")
    listing = Listing("", PathTable(fulls), np.zeros(len(fulls), np.int64), names, what="list")
    return OnDisk(str(path), {"all": lambda: listing}, "list", lambda: sorted(set(names)), tuple(order),
                  "its categories sorted by id" + (", the ids themselves" if contiguous else ""))
