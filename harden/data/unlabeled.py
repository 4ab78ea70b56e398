"""Unlabeled images for `fix --unlabeled` (robust self-training: Carmon et al. 2019, "Unlabeled data improves
adversarial robustness"; Alayrac et al. 2019). Any source `--data` reads can be the pool, plus folders of loose
images and an `.npz` holding `x_train` alone. Labels the source happens to hold are never used for training: the base
model labels the pool once, before training, in batches (hard pseudo-labels, an optional confidence threshold, a cap
per class so one class cannot flood the set); the source's own labels only measure the pseudo-labels' agreement,
which is reported. `MixedData` then gives the shared training loop batches of labelled and pseudo-labelled images in
a set ratio; an epoch stays one pass over the labelled images."""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import HardenError
from .arrays import ImageData, _cifar_batches
from .pixels import CHANNEL_NOTES
from .base import Data, batches, chunks, index_hash, nchw, to_tensor
from .files import FileData, decode_batch
from .loader import decode_batches, default_workers
from .sources import Listing, PathTable, find_on_disk, image_files, image_kinds, refuse_compressed_tar
from ..random_streams import random_state, set_random_state

NO_LABEL = -1  # an image of the pool whose source gives no label the model's classes can name
MAX_UPSCALE = 4.0  # a pool whose images are this much smaller than the model's input is refused, not blown up


# ---------------------------------------------------------------- reading a pool

def load_unlabeled(spec: str | Path, target, prefer: str = "train") -> Data:
    """The pool as a Data whose training split holds every image (`y_train` = the source's labels mapped to the
    model's classes where it has them, else NO_LABEL; used only to report agreement). A source with a train split
    gives that split alone: its val/test split is somebody's test set and must not leak into training. Arrays of
    another channel count than the model's are converted as image files are (ImageData.with_channels). `prefer`
    "test": a tree of splits gives its test split instead (images to evaluate, data/predicted.py)."""
    pool = _load_unlabeled(spec, target, prefer)
    if isinstance(pool, ImageData) and getattr(target, "preprocess", None) is not None and \
            (pool.in_chans, target.preprocess.in_chans) in CHANNEL_NOTES:
        pool = pool.with_channels(target.preprocess.in_chans)
    return pool


def _load_unlabeled(spec: str | Path, target, prefer: str = "train") -> Data:
    from .dataset_objects import dataset_pool, is_dataset
    from .from_code import import_data, is_code_spec
    workers = getattr(target, "workers", None)
    fit = target.dataset_fit() if target is not None else None  # images of many sizes: brought to the model's
    if is_dataset(spec):  # a torch or Hugging Face dataset of the caller's
        return dataset_pool(spec, workers=workers, fit=fit)
    if is_code_spec(str(spec)) and not Path(str(spec)).exists():  # `pool.py:images`: made by the user's own code
        made = import_data(str(spec), "--unlabeled")
        if isinstance(made, Data) or is_dataset(made):
            return made if isinstance(made, Data) else dataset_pool(made, str(spec), workers, fit)
        if isinstance(made, (tuple, list)) and len(made) == 2:  # (images, labels): the labels for agreement only
            return _array_pool(_numpy(made[0]), _numpy(made[1]), str(spec))
        if isinstance(made, (np.ndarray, torch.Tensor)):
            return _array_pool(_numpy(made), None, str(spec))
        raise HardenError(f"--unlabeled {str(spec)!r} gave {type(made).__name__}; it names a dataset (items: images, "
                          "or (image, label) pairs), a DataLoader, a Hugging Face Dataset, or images as an array "
                          "(or a function that returns one).")
    from ..hub_cache import local
    path = Path(local(spec, "dataset"))
    from .shard_patterns import pattern_files, pattern_source
    files = pattern_files(str(spec)) if not path.exists() else None
    if files is not None:  # `pool-{0000..0099}.tar`: the shards it names
        columns = target.columns() if hasattr(target, "columns") else None
        return _pool_of(pattern_source(str(spec), files, columns), path, target, prefer)
    if not path.exists():
        raise HardenError(f"--unlabeled {str(spec)!r} does not exist. It takes a folder or .zip of images (with or "
                          "without class folders), a CSV/TSV list, tar shards, TFRecord files, a Hugging Face "
                          "dataset's parquet or Arrow files, CIFAR-10 batches, an .npz with x_train, an .npy of images "
                          "or a pickle of arrays.")
    from .downsampled_imagenet import downsampled_imagenet
    downsampled = downsampled_imagenet(path)
    if downsampled is not None:  # its training batches (labels only for the agreement figure), else its one split
        return _array_pool(downsampled.x_train, downsampled.y_train, str(path)) if len(downsampled.y_train) else \
            _array_pool(downsampled.x_test, downsampled.y_test, str(path))
    if path.is_file() and path.suffix.lower() == ".npz":
        return _npz_pool(path)
    if path.is_file() and path.suffix.lower() == ".npy":  # one array of images (np.save), memory-mapped
        try:
            return _array_pool(np.load(path, mmap_mode="r", allow_pickle=False), None, str(path))
        except (OSError, ValueError) as e:
            raise HardenError(f"--unlabeled {str(path)!r} is not a readable .npy array ({e}).") from None
    if path.is_file() and path.suffix.lower() in (".pickle", ".pkl"):
        return _pickled_pool(path)
    from .hdf5 import hdf5_images, hdf5_source
    from .pixel_csv import is_pixel_csv, pixel_csv
    images = hdf5_images(path)
    if images is not None:  # an .h5 of images, labelled or not
        return _array_pool(images, None, str(path))
    arrays = hdf5_source(path) or (pixel_csv(path) if is_pixel_csv(path) else None)
    if arrays is not None:  # its training split (labels only for the agreement figure), else its one split
        return _array_pool(arrays.x_train, arrays.y_train, str(path)) if arrays.n_train else \
            _array_pool(arrays.x_test, arrays.y_test, str(path))
    from .sources import Columns
    from .tfrecord import raw_tfrecords
    columns = target.columns() if hasattr(target, "columns") else Columns()
    raw = raw_tfrecords(path, columns)
    if raw is not None:  # TFRecords of raw pixels; encoded images are listed on disk below
        return _array_pool(raw.x_train, raw.y_train, str(path)) if len(raw.y_train) else \
            _array_pool(raw.x_test, raw.y_test, str(path))
    if path.is_dir() and (path / "data_batch_1").exists():
        d = _cifar_batches(path)
        return _array_pool(d.x_train, d.y_train, str(path))
    from .torchvision_sets import stl10_unlabeled, torchvision_source
    stl = stl10_unlabeled(path) if path.is_dir() else None
    if stl is not None:  # STL-10's unlabeled split: the pool the set was made for (its training images have labels)
        return _array_pool(stl, None, str(path))
    downloaded = torchvision_source(path) if path.is_dir() else None
    if downloaded is not None:  # its training split; labels only for the agreement figure
        return _array_pool(downloaded.x_train, downloaded.y_train, str(path))
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".txt") and _one_column(path):
        return _file_pool(str(path), _list_paths(path, bool(getattr(target, "skip_unreadable", False))), target)
    if path.is_file() and path.suffix.lower() == ".zip":
        from .zipped import zip_images, zip_source
        try:  # class folders: labelled as a folder is (for the agreement figure); else every image in it
            found = zip_source(path)
            found.listers["train" if "train" in found.listers else "all"]()
        except HardenError:
            every = zip_images(path)
            return _file_pool(str(path), every.relabelled(np.full(len(every), NO_LABEL, np.int64)), target)
    refuse_compressed_tar(path)
    from .sources import unlabeled_split_source
    # a dataset's unlabelled split (STL-10's, in TFDS or on the hub): the pool it was made for; else its training split
    found = unlabeled_split_source(path, columns) or find_on_disk(path, columns)
    if found is None and path.is_dir():
        return _file_pool(str(path), _list_any_images(path), target)
    if found is None:
        raise HardenError(f"--unlabeled {str(spec)!r} is not a source harden reads: a folder of images, a CSV/TSV "
                          "list, a .tar shard (or a folder of them), TFRecord files, parquet or Arrow files, "
                          "CIFAR-10 batches or an .npz with x_train.")
    return _pool_of(found, path, target, prefer)


def _pool_of(found, path: Path, target, prefer: str) -> Data:
    """The pool of an on-disk source: its training split (or its one split, or with prefer="test" its test split)."""
    split = "train" if "train" in found.listers else "all"
    if prefer == "test":
        split = next(s for s in ("test", "all", "train") if s in found.listers)
    try:  # the source's labels, for the agreement figure only; a source whose classes the model cannot name has none
        from . import _file_data
        listing = _file_data(found, target).listing("train" if split == "train" else "test")
        labels = listing.labels.copy()
    except HardenError:
        listing = found.listers[split]()
        labels = np.full(len(listing), NO_LABEL, np.int64)
    pool = listing.relabelled(labels)
    return _file_pool(str(path), pool, target)


def _npz_pool(path: Path) -> ImageData:
    from .arrays import ONE_SPLIT_KEYS
    from .npz import READ_ERRORS, npz_keys, read_npz
    try:
        stored = {k.lower(): k for k in npz_keys(path)}
        # x_train, else the images of an archive of one split (images, x, data, ...: as --data reads one)
        x_key = next((k for k in ("x_train", *dict.fromkeys(x for x, _ in ONE_SPLIT_KEYS)) if k in stored), None)
        if x_key is None:
            raise HardenError(f"--unlabeled {str(path)!r} has no x_train array (keys: {', '.join(stored.values())}); "
                              "an .npz pool holds x_train (or the images of one split: images, x, data), uint8 "
                              "images NHW or NHWC; labels optional and unused.")
        y_key = "y_train" if x_key == "x_train" else next((y for x, y in ONE_SPLIT_KEYS if x == x_key and y in stored),
                                                          None)
        # memory-mapped where stored: only the pool's batches are read
        z = read_npz(path, [stored[x_key]] + ([stored[y_key]] if y_key in stored else []))
    except HardenError:
        raise
    except READ_ERRORS as e:  # not a zip, truncated, damaged, a pickled array
        raise HardenError(f"--unlabeled {str(path)!r} is not a readable .npz archive ({e}).") from None
    return _array_pool(z[stored[x_key]], z.get(stored[y_key]) if y_key in stored else None, str(path))


def _pickled_pool(path: Path) -> ImageData:
    """A pickle of numpy arrays, as Carmon et al.'s 500K Tiny Images pool ships (`ti_500K_pseudo_labeled.pickle`: a
    dict with `data`, N x 32 x 32 x 3 uint8, and `extrapolated_targets`), read with only numpy's own reconstructors
    allowed: nothing in the file runs."""
    from .arrays import ONE_SPLIT_KEYS, _ArrayOnlyUnpickler
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except HardenError as e:
        raise HardenError(f"--unlabeled {str(path)!r}: {e} harden reads a pickle only of numpy arrays.") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        raise HardenError(f"--unlabeled {str(path)!r} is not a readable pickle of arrays ({e}).") from None
    if isinstance(obj, np.ndarray):
        return _array_pool(obj, None, str(path))
    if isinstance(obj, dict):
        arrays = {(k.decode() if isinstance(k, bytes) else str(k)).lower(): v for k, v in obj.items()
                  if isinstance(v, np.ndarray)}
        x = next((arrays[k] for k in ("x_train", *dict.fromkeys(x for x, _ in ONE_SPLIT_KEYS)) if k in arrays), None)
        if x is not None:
            return _array_pool(x, None, str(path))
    raise HardenError(f"--unlabeled {str(path)!r} holds no image array under a name harden reads (data, images, x, "
                      "x_train); a pickle pool is an array of images, or a dict of arrays with one such key.")


def _numpy(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _array_pool(x: np.ndarray, y: np.ndarray | None, source: str) -> ImageData:
    from .npz import DeferredArray
    from .pixels import RowView, as_pixels
    x = x if isinstance(x, (RowView, DeferredArray)) or getattr(x, "lazy_rows", False) else np.asarray(x)
    if x.ndim == 2:  # flattened rows (MNIST's 784 values, CIFAR's planar 3,072)
        from .pixels import unflattened
        x = unflattened(x, f"--unlabeled {source}: x_train")
    x = x.reshape((*x.shape, 1)) if x.ndim == 3 else x
    if x.ndim == 4:  # N x C x H x W and float pixels are converted as the pool's batches are read
        x = as_pixels(x, f"--unlabeled {source}: x_train")
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise HardenError(f"--unlabeled {source}: x_train is {x.dtype} of shape {x.shape}; expected images "
                          "N x H x W, N x H x W x C or N x C x H x W with C in 1, 3, 4.")
    labels = np.full(len(x), NO_LABEL, np.int64)
    if y is not None and len(np.ravel(y)) == len(x):
        labels = np.asarray(y).astype(np.int64).ravel()
    empty = np.zeros((0, *x.shape[1:]), np.uint8)
    return ImageData(x, labels, empty, np.zeros(0, np.int64), source, int(max(labels.max(initial=0), 0) + 1))


def _list_any_images(root: Path) -> Listing:
    """Every image under `root`, at any depth, sorted (a crawl's folders, production captures)."""
    refs = image_files(root)
    if not refs:
        raise HardenError(f"--unlabeled {str(root)!r} holds no images ({image_kinds()}).")
    refs.sort()
    return Listing(str(root), PathTable(refs), np.full(len(refs), NO_LABEL, np.int64), None, what="folder")


def _one_column(path: Path) -> bool:
    """A list of paths alone (one per line, no label column): the natural list of unlabeled images."""
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    from .sources import is_labelled_text_list
    if path.suffix.lower() == ".txt":
        return not is_labelled_text_list(path)  # `path label` lines read as a labelled list
    return delim not in first


def _list_paths(path: Path, missing_ok: bool = False) -> Listing:
    """One image path per line (relative to the list's folder, or absolute); a header line `path` is skipped.
    `missing_ok` (--skip-unreadable): paths to files that are gone stay listed, skipped and counted where read."""
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if lines and lines[0].lower() in ("path", "file", "filename", "image"):
        lines = lines[1:]
    refs = [p if os.path.isabs(p) else os.path.join(path.parent, p) for p in lines]
    missing = [p for p in refs[:1000] if not os.path.isfile(p)][:3]
    if not refs or (missing and not missing_ok):
        raise HardenError(f"--unlabeled {str(path)!r}: " + ("it lists no images" if not refs else
                          f"it names files that do not exist: {', '.join(missing)} (paths are relative to the list's "
                          "folder; --skip-unreadable leaves them out)") + ".")
    return Listing("", PathTable(refs), np.full(len(refs), NO_LABEL, np.int64), None, what="list")


def _file_pool(source: str, listing: Listing, target) -> FileData:
    from dataclasses import replace

    from .transforms import Preprocess, resolve_orientation
    pre = replace(target.preprocess or Preprocess(),
                  orientation=resolve_orientation(target.exif_orientation, listing.what))
    return FileData(source, int(target.num_classes or 2), pre,
                    {"train": lambda: listing}, listing.what, _cache={"train": listing},
                    workers=default_workers() if target.workers is None else target.workers,
                    skip_unreadable=target.skip_unreadable)


# ---------------------------------------------------------------- adapting images to the model

def adapt(x: torch.Tensor, in_chans: int, size: tuple[int, int]) -> torch.Tensor:
    """A batch of the pool at the labelled data's size (bilinear); its channels are the model's already (files
    decode to them, arrays are converted when loaded: load_unlabeled)."""
    from .base import fit_size
    if x.shape[1] != in_chans:
        raise HardenError(f"--unlabeled: images with {x.shape[1]} channels cannot feed a model that takes {in_chans}.")
    return nchw(fit_size(x, tuple(size)))


def check_adaptable(pool: Data, in_chans: int, size: tuple[int, int]) -> str:
    """'' when the pool's images already match, else what will be changed; an error when they cannot be used."""
    if isinstance(pool, FileData):
        return ""  # decoded through the model's own transform: its channels and size
    c, s = getattr(pool, "image_chans", None) or pool.in_chans, pool.input_size  # the images' own channels
    if c not in (1, 3, 4) or in_chans not in (1, 3):
        raise HardenError(f"--unlabeled {pool.source}: {c}-channel images cannot feed a model that takes {in_chans}.")
    scale = max(size[0] / s[0], size[1] / s[1])
    if scale > MAX_UPSCALE:
        raise HardenError(f"--unlabeled {pool.source}: its images are {s[0]}x{s[1]}, the model takes {size[0]}x"
                          f"{size[1]}; blowing them up {scale:.0f}x would train on blur. Use images at least "
                          f"{math.ceil(size[0] / MAX_UPSCALE)}x{math.ceil(size[1] / MAX_UPSCALE)}.")
    changes = []
    if c != in_chans:
        changes.append(f"{c} -> {in_chans} channel(s)")
    if tuple(s) != tuple(size):
        changes.append(f"{s[0]}x{s[1]} -> {size[0]}x{size[1]} (bilinear)")
    return ", ".join(changes)


def batches_with_indices(pool: Data, idx: np.ndarray, device: torch.device, split: str = "train"
                         ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """(x, the indices it holds) per batch of a split, through the evaluation transform; unreadable files are left out
    (or stop the run, as for --data)."""
    if isinstance(pool, FileData):
        parts = chunks(idx, decode_batch(len(idx), pool.workers))
        for x, _, got, errors, oriented in decode_batches(pool.listing(split), parts, pool.preprocess.eval_transform(),
                                                          pool.workers, device.type == "cuda"):
            pool.took(errors, oriented)
            if x is not None:
                yield nchw(x.to(device).float().div_(255.0)), np.asarray(got, np.int64)
        return
    x = pool.x_train if split == "train" else pool.x_test
    for part in chunks(idx, 256):
        yield to_tensor(x[part], device), part


# ---------------------------------------------------------------- pseudo-labels

@dataclass
class PseudoLabels:
    data: Data  # the kept images of the pool, y_train = the base's labels
    meta: dict[str, Any] = field(default_factory=dict)


def pseudo_label(base, pool: Data, *, threshold: float = 0.0, balance: float = 0.0, limit: int = 0, seed: int = 0,
                 device: torch.device | str = "cpu") -> PseudoLabels:
    """The base's hard labels for the pool, once, in batches. `threshold`: keep images whose top softmax probability
    is at least this; `balance` > 0: no class keeps more than `balance` times an even share of the images that passed
    the threshold (its least confident go first); `limit` > 0: a seeded sample of at most that many images is labelled."""
    from ..runtime import frozen, progress
    if not 0.0 <= threshold < 1.0:
        raise HardenError(f"pseudo_threshold is a probability in [0, 1), got {threshold}.")
    if balance < 0 or 0 < balance < 1:
        raise HardenError(f"pseudo_balance is 0 (off) or at least 1 (times an even share per class), got {balance}.")
    device = torch.device(device)
    spec = base.spec
    size, in_chans, k = tuple(spec.input_size), int(spec.in_chans), int(spec.num_classes)
    note = check_adaptable(pool, in_chans, size)
    n = pool.n_train
    idx = np.arange(n) if not limit or limit >= n else np.sort(np.random.default_rng(seed + 31).choice(n, limit, False))
    preds = np.full(n, -1, np.int64)
    conf = np.zeros(n, np.float64)
    with frozen(base), torch.no_grad(), progress("pseudo-labelling", len(idx)) as advance:
        for x, got in batches_with_indices(pool, idx, device):
            z = base(adapt(x, in_chans, size)).float()
            p = torch.softmax(torch.log_softmax(z, 1), 1)  # probabilities also for heads that end in log_softmax
            c, lab = p.max(1)
            preds[got], conf[got] = lab.cpu().numpy(), c.double().cpu().numpy()
            advance(len(got))
    labelled = idx[preds[idx] >= 0]  # unreadable files (--skip-unreadable) have no prediction
    keep = labelled[conf[labelled] >= threshold]
    dropped_threshold = len(labelled) - len(keep)
    dropped_balance = 0
    if balance > 0 and len(keep):
        cap = max(1, math.ceil(balance * len(keep) / k))
        order = np.lexsort((-conf[keep], preds[keep]))  # by class, most confident first
        ranked = keep[order]
        cls = preds[ranked]
        first = np.searchsorted(cls, cls, side="left")  # rank within its class
        kept = ranked[np.arange(len(ranked)) - first < cap]
        dropped_balance = len(keep) - len(kept)
        keep = np.sort(kept)
    if len(labelled) == 0:  # an empty pool, or every file skipped as unreadable: the threshold is not the cause
        raise HardenError(f"--unlabeled {pool.source}: no image to pseudo-label ({n:,} listed"
                          + (f", none of the {len(idx):,} asked for readable" if n else "") + ").")
    if len(keep) == 0:
        raise HardenError(f"--unlabeled {pool.source}: no image kept (of {len(labelled)} labelled by the base, none "
                          f"reached pseudo_threshold {threshold}); lower the threshold.")
    source_labels = pool.y_train[keep]
    known = (source_labels >= 0) & (source_labels < k)
    meta = {"source": pool.source, "listed": int(n), "labelled_by_base": int(len(labelled)), "used": int(len(keep)),
            "threshold": threshold, "balance": balance, "limit": int(limit),
            "dropped_below_threshold": int(dropped_threshold), "dropped_for_balance": int(dropped_balance),
            "class_histogram": np.bincount(preds[keep], minlength=k).tolist(), "index_sha256": index_hash(keep)}
    if known.any():  # reported, never used for training
        meta["agreement_with_source_labels"] = {"n": int(known.sum()),
                                                "rate": round(float((preds[keep][known] == source_labels[known])
                                                                    .mean()), 4)}
    if note:
        meta["adapted"] = note
    if isinstance(pool, FileData) and pool.skipped:
        meta["skipped_unreadable"] = len(pool.skipped)
    return PseudoLabels(relabel(pool.take_train(keep, subset={}), preds[keep]), meta)


def relabel(data: Data, labels: np.ndarray) -> Data:
    """The same images with these training labels (the pool's own labels never reach training)."""
    labels = np.asarray(labels, np.int64)
    if isinstance(data, ImageData):
        return ImageData(data.x_train, labels, data.x_test, data.y_test, data.source, data.num_classes, subset={},
                         from_dataset=data.from_dataset)
    if isinstance(data, FileData):
        lst = data.listing("train")
        new = lst.relabelled(labels)
        return data._with(listers={"train": lambda: new}, _cache={"train": new})
    raise HardenError(f"internal error: cannot relabel {type(data).__name__}")


# ---------------------------------------------------------------- labelled + pseudo-labelled batches

def extra_per_batch(batch_size: int, ratio: float) -> int:
    """Pseudo-labelled images added to `batch_size` labelled ones so that they are `ratio` of the batch."""
    if not 0.0 < ratio < 1.0:
        raise HardenError(f"unlabeled_ratio is the share of each batch taken from the unlabeled images, in (0, 1); "
                          f"got {ratio}.")
    return max(1, round(batch_size * ratio / (1.0 - ratio)))


class MixedData(Data):
    """Labelled training images plus pseudo-labelled ones. `batch_size` counts the labelled images of a batch (the
    recipes' measured batch rules stay as they are) and `ratio` of each batch is added from the pool, drawn without
    replacement and reshuffled when it runs out; an epoch is one pass over the labelled images. Indices below
    n_labelled are labelled images, the rest the pool's."""

    def __init__(self, labelled: Data, pool: Data, ratio: float, seed: int, pool_augment: str = "same"):
        self.labelled, self.pool, self.ratio, self.pool_augment = labelled, pool, float(ratio), pool_augment
        extra_per_batch(1, ratio)  # checks the ratio
        self.source, self.num_classes = labelled.source, labelled.num_classes
        self.subset, self.class_names = labelled.subset, labelled.class_names
        self.y_train = np.concatenate([labelled.y_train, pool.y_train])
        self.y_test = labelled.y_test
        self._rng = np.random.default_rng([seed, 104729])
        self._queue = np.zeros(0, np.int64)

    @classmethod
    def for_recipe(cls, labelled: Data, pool: Data, params: dict, cfg) -> "MixedData":
        """The mix a recipe trains on: its unlabeled_ratio, the run's seed and the pool's augmentation."""
        return cls(labelled, pool, float(params.get("unlabeled_ratio", 0.5)), cfg.seed, cfg.unlabeled_augment)

    @property
    def in_chans(self) -> int:
        return self.labelled.in_chans

    @property
    def input_size(self) -> tuple[int, int]:
        return self.labelled.input_size

    @property
    def kind(self) -> str:
        return self.labelled.kind

    def mean_std(self):
        return self.labelled.mean_std()

    def identity(self) -> dict[str, Any]:
        return self.labelled.identity()

    def take_train(self, idx, subset=None):
        raise HardenError("internal error: a validation slice is carved from the labelled images before mixing")

    def pixels(self, split, idx, device="cpu"):
        if split != "train":
            return self.labelled.pixels(split, idx, device)
        raise HardenError("internal error: MixedData's training images are read through its feeder")

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.labelled.steps_per_epoch(batch_size)

    def _draw(self, k: int) -> np.ndarray:
        while len(self._queue) < k:
            self._queue = np.concatenate([self._queue, self._rng.permutation(self.pool.n_train)])
        out, self._queue = self._queue[:k], self._queue[k:]
        return out

    def epoch_batches(self, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
        extra, n = extra_per_batch(batch_size, self.ratio), self.labelled.n_train
        out = []
        for b in batches(n, batch_size, shuffle=True, rng=rng):
            both = np.concatenate([b, n + self._draw(extra)])
            out.append(both[self._rng.permutation(len(both))])  # mixed, so each torchrun rank's share is mixed too
        return out

    def random_state(self):
        return {"rng": random_state(self._rng), "queue": torch.from_numpy(self._queue.astype(np.int64))}

    def set_random_state(self, state) -> None:
        set_random_state(self._rng, state["rng"])
        self._queue = state["queue"].numpy().astype(self._queue.dtype)

    def feeder(self, augment: str, seed: int, device: torch.device) -> "MixedFeeder":
        return MixedFeeder(self, augment, seed, device)


class MixedFeeder:
    """Each batch: the labelled part from the labelled data's feeder, the pool's part from the pool's (the same
    augmentation unless the mix names the pool's own), the pool's images adapted to the labelled ones' channels and
    size, labelled ones first."""

    def __init__(self, data: MixedData, augment: str, seed: int, device: torch.device):
        self.data = data
        self.labelled = data.labelled.feeder(augment, seed, device)
        own = data.pool_augment
        self.pool = data.pool.feeder(augment if own == "same" else own, seed + 1, device)

    def random_state(self):
        return {"labelled": self.labelled.random_state(), "pool": self.pool.random_state()}

    def set_random_state(self, state) -> None:
        self.labelled.set_random_state(state["labelled"])
        self.pool.set_random_state(state["pool"])

    def epoch(self, index_batches: list[np.ndarray], epoch_no: int
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor] | None]:
        n = self.data.labelled.n_train
        parts = [(b[b < n], b[b >= n] - n) for b in index_batches]
        # a torchrun rank's share of a batch may hold no image of one kind: each feeder gets its non-empty parts
        streams = [iter(feeder.epoch([p[k] for p in parts if len(p[k])], epoch_no))
                   for k, feeder in enumerate((self.labelled, self.pool))]
        c, size = self.data.in_chans, self.data.input_size
        for p in parts:
            got = [t for k in (0, 1) if len(p[k]) for t in [next(streams[k])] if t is not None]
            if not got:
                yield None
                continue
            yield torch.cat([adapt(t[0], c, size) for t in got]), torch.cat([t[1] for t in got])
