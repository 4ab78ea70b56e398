"""A test split held out of data that has none (a list without a split column, class folders without train/ and val/,
shards, a table or an .npz of one split): `fix` trains on the rest, records which images it held out, and a later `eval` of
the hardened model on the same data tests on those images again rather than on the ones it was trained on."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runtime import info, warn
from .base import Data

KEY = "held_out_test"  # the hardened checkpoint's record (spec.extra)


def without_train_split(data: Data) -> bool:
    return not data.has_split("train") and data.has_split("test")


def hold_out_for_training(data: Data) -> Data:
    """`fix`'s data: where it has no training split, a stratified, seeded share of it becomes the test split and the
    rest the training split (said); otherwise the data itself."""
    if not without_train_split(data):
        return data
    held = data.with_held_out_test()
    what = "no split column" if getattr(data, "layout", "") == "list" else "one split"
    info(f"{data.source} has {what}: a stratified {held.held_out['fraction']:g} of it ({held.held_out['n']} of "
         f"{data.n_test:,} images) is held out as the test split; training never sees it")
    held.held_out["listing_sha256"] = data.test_digest()
    held.held_out["source"] = _where(data.source)
    return held


def record(held: Data) -> dict[str, Any] | None:
    """What the hardened checkpoint keeps of a held-out split (None where the data had its own test split)."""
    return dict(held.held_out) if getattr(held, "held_out", None) else None


def test_split_for(data: Data, extra: dict[str, Any], model_name: str = "the model") -> Data:
    """The data a model is evaluated on: where it was hardened on part of this same data (its KEY record names it),
    the images held out then, so that its report is never on images it was trained on."""
    rec = extra.get(KEY)
    if not rec or not without_train_split(data):
        return data
    same_data = data.holds_test_split(rec.get("listing_sha256", ""))  # the same files or arrays, wherever they now lie
    from .arrays import ARRAYS_SOURCE
    from .dataset_objects import DATASET_SOURCE
    in_memory = data.source == ARRAYS_SOURCE or data.source.startswith(DATASET_SOURCE + " ")
    if not same_data and (rec.get("source") != _where(data.source) or in_memory):
        return data  # arrays in memory and datasets have no place to name them: only their content says they are the same
    held = data.with_held_out_test()
    if same_data and held.held_out["index_sha256"] == rec.get("index_sha256"):
        info(f"{model_name} was hardened on {data.source} less a held-out {held.held_out['fraction']:g} of it: "
             f"evaluating on those {held.held_out['n']} images, never trained on")
        return held
    warn(f"{model_name} was hardened on {data.source} less a held-out share of it, but the data has changed since "
         f"({data.n_test:,} images now): the same share is drawn again ({held.held_out['n']} images), which may "
         "hold images it was trained on. Evaluate on data it never saw (a list with a split column, or "
         "train/ and val/ folders) for a report that counts.")
    return held


def _where(source: str) -> str:
    p = Path(source)
    return str(p.resolve()) if p.exists() else source


def warn_if_its_training_split(given: str, model, model_name: str = "the model") -> None:
    """`eval --data TREE/train` of a model harden trained or hardened on TREE (a train/ and val/ tree, whose val/ it
    is tested on by default): the report would count images it was trained on. Said, not refused (a user may want the
    training accuracy)."""
    extra = model.spec.extra
    trained_on = model.spec.data
    if not given or not trained_on or not (extra.get("recipe") or extra.get("train")):
        return
    try:
        here, root = Path(given).resolve(), Path(trained_on).resolve()
    except (OSError, ValueError, RuntimeError):
        return
    from .sources import TRAIN_FOLDERS
    if here.parent == root and here.name.lower() in TRAIN_FOLDERS and root.is_dir():
        how = "hardened" if extra.get("recipe") else "trained"
        warn(f"{model_name} was {how} on {trained_on}, and {given} is its training split: this report counts images "
             f"it was {how} on. Its test split is what `harden eval` reads with no --data (or --data {trained_on}).")
