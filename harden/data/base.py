"""What every data source offers, in memory or on disk: labels of both splits without decoding, subsets by index
(nothing decoded), the images of chosen indices as float [0, 1] NCHW tensors on the device (the model's evaluation
transform), and a feeder of training batches (the training transform). Sources differ only in how they decode."""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Iterator, Protocol

import numpy as np
import torch

from ..errors import HardenError

# An image of at most this side is 'small': it keeps the padded-crop pipelines of the CIFAR/MNIST recipes; a larger
# one is trained with random resized crops at the model's size (the ImageNet pipeline).
SMALL_IMAGE_SIDE = 64


class Feeder(Protocol):
    def epoch(self, index_batches: list[np.ndarray], epoch_no: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) per batch of training indices, in order: x float [0, 1] NCHW on the device. `epoch_no` (from 1)
        seeds what is drawn per image and epoch (random resized crops of files)."""

    def random_state(self) -> Any:
        """The state of the random streams it draws from as batches go (saved with a run: resume.py)."""

    def set_random_state(self, state: Any) -> None: ...


class Data:
    """The interface that training, recipes and the report use. Subclasses: ImageData (arrays in memory) and
    FileData (files listed once, decoded when a batch needs them)."""
    source: str
    num_classes: int
    subset: dict
    class_names: list[str] | None
    y_train: np.ndarray
    y_test: np.ndarray

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def in_chans(self) -> int:
        raise NotImplementedError

    @property
    def input_size(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """'mnist-like' (grey, <= 28 px), 'cifar-like' (small colour) or 'imagenet-like' (larger than
        SMALL_IMAGE_SIDE): picks data-dependent recipe defaults."""
        chans = getattr(self, "image_chans", None) or self.in_chans  # the images' own: MNIST given 3 channels
        if chans == 1 and max(self.input_size) <= 28:
            return "mnist-like"
        return "cifar-like" if max(self.input_size) <= SMALL_IMAGE_SIDE else "imagenet-like"

    def has_split(self, split: str) -> bool:
        return (self.n_train if split == "train" else self.n_test) > 0

    def with_held_out_test(self) -> "Data":
        """Data of one split: a stratified, seeded share of it as the test split, the rest as the training split
        (held_out.py); `held_out` says which."""
        raise HardenError(f"{self.source} has no training split.")

    def test_digest(self) -> str:
        """A hash of what the test split holds (which files, or the arrays' shape, labels and pixels)."""
        raise NotImplementedError

    def holds_test_split(self, digest: str) -> bool:
        """Whether `digest`, a test_digest recorded earlier, is this data's test split."""
        return digest == self.test_digest()

    def with_channels(self, channels: int) -> "Data":
        """The same images read for a model of `channels` input channels (grey replicated, colour as luminance);
        itself where that needs no conversion or this data cannot convert."""
        return self

    def take_train(self, idx: np.ndarray, subset: dict | None = None) -> "Data":
        """The same source restricted to these training indices (nothing is decoded)."""
        raise NotImplementedError

    def images(self, split: str, idx: np.ndarray, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of these indices of 'train' or 'test' with the evaluation transform; x float [0, 1] NCHW."""
        x, y = self.pixels(split, idx, device)
        return x.float().div_(255.0), y

    def pixels(self, split: str, idx: np.ndarray, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """As images(), x as the uint8 NCHW it is made from (a quarter of the memory): images() is x / 255."""
        raise NotImplementedError

    def feeder(self, augment: str, seed: int, device: torch.device) -> Feeder:
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int:
        return (self.n_train + batch_size - 1) // batch_size

    def epoch_batches(self, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch's batches of training indices, shuffled by rng (MixedData adds pseudo-labelled images)."""
        return list(batches(self.n_train, batch_size, shuffle=True, rng=rng))

    def random_state(self) -> Any:
        """The state of what `epoch_batches` draws from besides its rng (saved with a run: resume.py)."""
        return None

    def set_random_state(self, state: Any) -> None:
        pass

    def mean_std(self) -> tuple[list[float], list[float]]:
        raise NotImplementedError

    def images_digest(self, split: str, idx: np.ndarray) -> str | None:
        """What the images at idx are, beyond their positions (None: nothing more to say): two reports whose sample
        indices agree but whose images differ (a folder that gained files, an .npz rebuilt) are not paired."""
        return None

    def images_bytes_digest(self, split: str, idx: np.ndarray, held: torch.Tensor | None = None) -> str | None:
        """The images at idx as what they are wherever they are read from (a file's bytes, an array's pixels) with
        their labels: two reports of the same images read through other paths (another checkout, a relative path)
        are still paired. `held`: their pixels as the report holds them (data/held.py), where those are the images
        themselves. None: nothing to say."""
        return None

    def identity(self) -> dict[str, Any]:
        """What names this data in a report: its source (and, for listings, a hash of what was listed)."""
        return {"source": self.source, **self.labels_identity()}

    labels_from = ""  # where the labels are someone's predictions (data/predicted.py), what they are

    def labels_identity(self) -> dict[str, Any]:
        return {"labels": self.labels_from} if self.labels_from else {}

    def eval_indices(self, n: int | None, seed: int) -> np.ndarray:
        """The test images a report evaluates (eval_sample's indices)."""
        return self.eval_sample(n, seed)[0]

    def eval_sample(self, n: int | None, seed: int) -> tuple[np.ndarray, str]:
        """The test images a report evaluates and how they were chosen (said in the report's data details): the
        first n of in-memory data (as published evaluations take a test set's: CIFAR-10's first 1,000), but a seeded
        stratified sample of data in class order (an ImageFolder, arrays sorted by label), whose first n are a class
        or a few."""
        total = self.n_test
        if total == 0:
            raise HardenError(f"The test split of {self.source} is empty.")
        k = total if n is None or n <= 0 else min(n, total)
        if k >= total:
            return np.arange(k), "the whole test split"
        if in_class_order(self.y_test):
            return stratified_sample(self.y_test, k, seed), "seeded stratified sample: the images come in class order"
        return np.arange(k), "the first images"


SAMPLE_DRAW = 2  # kept in a report's data details: how its sample was drawn. Reports without it (before 2026-12-06)
# gave the classes' fractional shares to the first classes and took the first n of in-memory data in class order


def in_class_order(y: np.ndarray) -> bool:
    """Whether labels come in runs of a class (sorted, or grouped in any order): far fewer changes of label from one
    image to the next than a shuffled order of the same labels makes (a quarter of its expected number)."""
    y = np.asarray(y)
    if len(y) < 2:
        return False
    counts = np.unique(y[y >= 0], return_counts=True)[1]  # -1: no label (images to be labelled by predictions)
    if len(counts) < 2:
        return False
    expected = (len(y) - 1) * (1.0 - float((counts * (counts - 1.0)).sum()) / (len(y) * (len(y) - 1.0)))
    return int(np.count_nonzero(y[1:] != y[:-1])) < expected / 4


def class_members(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(classes, counts, each class's indices ascending): one stable sort, not a pass over the labels per class (10,000
    classes of 2.7 million labels, iNaturalist's size, took 12 s that way)."""
    order = np.argsort(y, kind="stable")
    classes, counts = np.unique(y, return_counts=True)
    return classes, counts, np.split(order, np.cumsum(counts)[:-1])


def check_fraction(frac: float) -> None:
    """--data-frac is a share of the training split in (0, 1]; a percentage written as one (10 for 10%) is answered
    with the share it means."""
    if not (0.0 < frac <= 1.0):
        meant = f": {frac:g}% is --data-frac {frac / 100:g}" if 1 < frac <= 100 else ""
        raise HardenError(f"--data-frac is a share of the training split, in (0, 1], got {frac:g}{meant}.")


def stratified_subset(y: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Deterministic per-class draw of round(frac * n_c) (at least 1) indices, sorted."""
    check_fraction(frac)
    if frac == 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picks = []
    for idx in class_members(y)[2]:
        k = max(1, int(round(frac * len(idx))))
        picks.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picks))


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Exactly n indices (sorted), drawn with seed, each class in proportion to its share: its quota's whole part, and
    one more with the probability of the quota's fraction (systematic sampling over the classes in a seeded random
    order), so every image is equally likely to be drawn ('the first n' of a folder sorted by class would be one
    class; fractions given out in class order, ImageNet's 500 of 1,000 classes its first 500, all animals)."""
    total = len(y)
    if n >= total:
        return np.arange(total)
    classes, counts, members = class_members(y)
    take = counts * n // total
    remainder = counts * n - take * total  # each class's quota fraction, times total: exact in integers
    rest = n - int(take.sum())  # = remainder.sum() / total
    if rest > 0:  # `rest` points a stride of `total` apart on the classes' remainders laid end to end: a class's
        # chance of one is its fraction (< 1, so never two); a separate stream keeps the draws within classes as before
        alloc = np.random.default_rng((seed, 1))
        order = alloc.permutation(len(classes))
        points = int(alloc.integers(total)) + total * np.arange(rest, dtype=np.int64)
        take[order[np.searchsorted(np.cumsum(remainder[order]), points, side="right")]] += 1
    rng = np.random.default_rng(seed)
    picks = [rng.choice(idx, size=int(k), replace=False) for idx, k in zip(members, take, strict=True) if k > 0]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def index_hash(idx: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


def subsample(data: Data, frac: float, seed: int) -> Data:
    idx = stratified_subset(data.y_train, frac, seed)
    subset = dict(fraction=frac, seed=seed, n=int(len(idx)), index_sha256=index_hash(idx))
    y = data.y_train
    counts = np.unique(y, return_counts=True)[1]
    small = int((np.round(frac * counts) == 0).sum()) if frac < 1.0 else 0
    # said where those rounded up make the subset a fifth or more larger than asked (a few among many large classes
    # go unsaid): a run that much longer than the fraction asked for, recorded with the subset
    if small and len(idx) > 1.2 * frac * len(y) + 1:
        from ..runtime import warn
        subset["classes_rounded_up_to_one"] = small
        warn(f"--data-frac {frac:g} of {len(y):,} training images is {len(idx):,} images ({len(idx) / len(y):.0%}): "
             f"every class keeps at least one image, and {small:,} of the {len(counts):,} classes have too few "
             f"for a {frac:g} share of them to make one.")
    return data.take_train(idx, subset=subset)


def untrained_classes(train: Data, test: Data) -> list[str]:
    """The test split's classes of which the training images hold none (a class folder under val/ alone, or every one
    of its training images a copy of a test image), by name where the data names them: hardening never shows the model
    those classes, and its accuracy on them tends to fall."""
    absent = np.setdiff1d(np.unique(test.y_test), np.unique(train.y_train))
    names = test.class_names if test.class_names and len(test.class_names) > int(absent.max(initial=-1)) else None
    return [names[int(c)] if names else str(int(c)) for c in absent]


def check_fits(data: Data, in_chans: int, num_classes: int) -> None:
    if data.in_chans != in_chans:
        convert = (f" (in Python: data.with_channels({in_chans}) converts arrays as image files are converted, "
                   "which harden's commands do)" if hasattr(data, "with_channels") else "")
        raise HardenError(f"The data ({data.source}) has {data.in_chans}-channel images but the model takes "
                          f"{in_chans} channel(s). Use data of the kind the model was trained on{convert}.")
    if data.num_classes > num_classes:  # files' labels are checked when they are listed (files.py)
        raise HardenError(f"The data ({data.source}) has labels up to {data.num_classes - 1} but the model has only "
                          f"{num_classes} classes.")


def nchw(t: torch.Tensor) -> torch.Tensor:
    """t with the plain row-major strides of NCHW. A permuted NHWC batch can pass `is_contiguous()` (one channel:
    the size-1 dimension's stride is ignored) yet make convolutions answer in channels-last, whose activations a
    model's `x.view(x.size(0), -1)` cannot flatten; this copy removes that."""
    expected, acc = [], 1
    for size in reversed(t.shape):
        expected.append(acc)
        acc *= size
    return t if tuple(reversed(expected)) == t.stride() else t.clone(memory_format=torch.contiguous_format)


def host_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An array as a tensor sharing its memory where it can (a slice of a read-only memory map is copied: torch wants
    writable memory)."""
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x) if x.flags.writeable else np.array(x, order="C")
        return torch.from_numpy(x)
    return x


def to_pixels(x: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> uint8 NCHW with plain strides (nchw), on the device."""
    return nchw(host_tensor(x).to(device, non_blocking=True).permute(0, 3, 1, 2))


def to_tensor(x: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1] with plain strides; converts on the device to keep host work small, and
    reorders in uint8 (a float copy would double the peak)."""
    return to_pixels(x, device).float().div_(255.0)


def fit_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False).clamp_(0, 1)


def batches(n: int, batch_size: int, shuffle: bool, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if shuffle else np.arange(n)
    for s in range(0, n, batch_size):
        yield order[s:s + batch_size]


def chunks(idx: Iterable[int] | np.ndarray, size: int) -> list[np.ndarray]:
    idx = np.asarray(idx, dtype=np.int64)
    return [idx[s:s + size] for s in range(0, len(idx), size)]


class Shaped:
    """An array's shape without its values (read later): ndim and len as numpy gives them."""
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]


class LazyRows(Shaped):
    """An N x ... array read when indexed (an HDF5 dataset, several files' rows as one): arrays.py keeps it as it is
    rather than reading it whole. Subclasses set `shape` and `dtype`, rebuild themselves at another row shape
    (`_reshaped`) and read rows (`_read`, given non-negative int64 row numbers)."""
    lazy_rows = True

    def reshape(self, shape: tuple[int, ...]) -> "LazyRows":
        if int(np.prod(shape)) != int(np.prod(self.shape)) or shape[0] != self.shape[0]:
            raise ValueError(f"cannot reshape {self.shape} to {shape}")
        return self._reshaped(tuple(shape))

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self._read(np.asarray([int(idx) % len(self)], np.int64))[0]
        if isinstance(idx, slice):
            return self._read(np.arange(*idx.indices(len(self)), dtype=np.int64))
        rows = np.asarray(idx)
        rows = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows.astype(np.int64).ravel()
        return self._read(np.where(rows < 0, rows + len(self), rows))

    def _reshaped(self, shape: tuple[int, ...]) -> "LazyRows":
        raise NotImplementedError

    def _read(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class StackedRows(LazyRows):
    """The rows of several arrays as one N x ... array, read when indexed: Downsampled ImageNet's ten files, a folder's
    one array per class. A part with a `load()` (a compressed .npz member) is loaded when first read; any other part
    is indexed as it is (a memory map, or a file opened for each read)."""

    def __init__(self, parts: list[Any], shape: tuple[int, ...] | None = None):
        self.parts = parts
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.dtype = np.dtype(parts[0].dtype)
        self.shape = tuple(shape or (int(self.starts[-1]), *parts[0].shape[1:]))

    def _reshaped(self, shape: tuple[int, ...]) -> "StackedRows":
        return StackedRows(self.parts, shape)

    def _part(self, i: int) -> Any:
        load = getattr(self.parts[i], "load", None)
        if callable(load) and not isinstance(self.parts[i], np.ndarray):
            self.parts[i] = load()
        return self.parts[i]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), int(np.prod(self.shape[1:]))), self.dtype)
        which = np.searchsorted(self.starts, rows, "right") - 1
        for part in np.unique(which).tolist():
            here = which == part
            local = rows[here] - self.starts[part]
            out[here] = np.asarray(self._part(part)[local]).reshape(int(here.sum()), -1)
        return out.reshape((len(rows), *self.shape[1:]))


def read_per_item(x: Any) -> bool:
    """Whether rows (or a view of them) are read item by item through a dataset's own code (dataset_objects.py): too
    costly to hold a subset of at once, and read in worker processes while training."""
    for _ in range(16):  # views of views, a few deep
        if x is None:
            return False
        if getattr(x, "read_per_item", False):
            return True
        x = getattr(x, "_base", None)
    return False
