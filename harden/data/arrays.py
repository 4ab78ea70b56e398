"""In-memory sources (`--data`): sklearn digits, .npz archives, CIFAR-10 python batches. Images stay uint8 NHWC on
the host; batches become float [0,1] NCHW tensors on the device (the fast path for small images)."""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import HardenError
from .base import Data, host_tensor, index_hash, read_per_item, stratified_subset, to_pixels, to_tensor
from .batch_augment import small_image_augment
from .dataset_objects import item_batches
from .npz import READ_ERRORS, DeferredArray
from .pixels import CHANNEL_NOTES, ChannelView, PixelView, RowsOf, as_pixels, unflattened
from ..random_streams import random_state, set_random_state
from .transforms import augment


DIGEST_WHOLE_BYTES = 1 << 30  # a test split up to 1 GiB of pixels is hashed whole (about a second)
DIGEST_ROWS = 4096  # else this many rows, evenly spread
DIGEST_CHUNK = 1024  # rows read at a time
MEAN_STD_ITEMS = 4096  # a dataset's items read for its mean and std (each one runs its transform)


class _InflatedOnRead:
    """ImageData.x_train: holds an array or a DeferredArray (a compressed .npz member), and inflates the latter on
    the first read, so that `eval`, which reads only the test split, never inflates the training images."""

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError("x_train")  # the dataclass field has no default
        value = obj.__dict__["_x_train"]
        if isinstance(value, DeferredArray):
            try:
                value = obj.__dict__["_x_train"] = value.load()
            except READ_ERRORS as e:
                # a corrupt, truncated or changed archive (what zipfile and its decompressors raise)
                raise HardenError(f"{obj.source!r}: its x_train could not be read ({e}).") from None
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__["_x_train"] = value


@dataclass
class ImageData(Data):
    x_train: np.ndarray = _InflatedOnRead()  # uint8 NHWC; a compressed .npz member is inflated when first read
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    num_classes: int
    subset: dict = field(default_factory=dict)  # fraction, seed, n, index hash when subsampled
    class_names: list[str] | None = None  # when the data says them (image folders, CIFAR-10 meta, an npz key)
    image_chans: int | None = None  # the arrays' own channels where they are fed as another count (with_channels)
    held_out: dict = field(default_factory=dict)  # the test split fix held out of arrays of one split
    labels_from: str = ""  # Data.labels_from
    # read from a torch Dataset: its class, and the mean and std of the Normalize undone (dataset_objects.py)
    from_dataset: dict = field(default_factory=dict)
    layout: str = ""  # `harden data`'s layout row, where the arrays were read from files of a layout of their own

    @property
    def in_chans(self) -> int:
        return int(self.__dict__["_x_train"].shape[-1])  # from a deferred member's header: nothing inflated

    @property
    def input_size(self) -> tuple[int, int]:
        shape = self.__dict__["_x_train"].shape
        return int(shape[1]), int(shape[2])

    def mean_std(self) -> tuple[list[float], list[float]]:
        undone = self.from_dataset.get("normalize_undone")
        if undone and len(undone["mean"]) in (1, self.in_chans):  # the dataset's own Normalize: its pipeline's word
            mean, std = ([float(v) for v in undone[k]] * (self.in_chans if len(undone[k]) == 1 else 1)
                         for k in ("mean", "std"))
            return mean, std
        # in slices: a memory-mapped x_train is never turned into one float64 copy of the whole set; a dataset's items
        # (each read through its code) from an even spread of MEAN_STD_ITEMS of them
        c, n = self.in_chans, 0
        s1, s2 = np.zeros(c), np.zeros(c)
        parts = [slice(i, i + 4096) for i in range(0, len(self.x_train), 4096)]
        if read_per_item(self.x_train) and len(self.x_train) > MEAN_STD_ITEMS:
            parts = [np.unique(np.linspace(0, len(self.x_train) - 1, MEAN_STD_ITEMS).astype(np.int64))]
        for part in parts:
            x = self.x_train[part].reshape(-1, c).astype(np.float64) / 255.0
            s1, s2, n = s1 + x.sum(0), s2 + (x * x).sum(0), n + len(x)
        mean = s1 / max(n, 1)
        std = np.sqrt(np.maximum(s2 / max(n, 1) - mean * mean, 0.0))
        return mean.round(4).tolist(), np.maximum(std, 1e-3).round(4).tolist()

    def take_train(self, idx: np.ndarray, subset: dict | None = None) -> "ImageData":
        # a dataset's items stay where they are (a tenth of ImageNet would not fit in memory), arrays are copied
        x = RowsOf(self.x_train, idx, f"{self.source}: training rows") if read_per_item(self.x_train) else \
            self.x_train[idx]
        return ImageData(x, self.y_train[idx], self.x_test, self.y_test, self.source,
                         self.num_classes, subset=self.subset if subset is None else subset,
                         class_names=self.class_names, image_chans=self.image_chans, held_out=self.held_out,
                         from_dataset=self.from_dataset, layout=self.layout)

    def with_held_out_test(self) -> "ImageData":
        """Arrays of one split (all of them the test split): a stratified, seeded HELD_OUT_TEST of them becomes the
        test split and the rest the training split, as for a list without a split column (rows read in place)."""
        from .files import HELD_OUT_SEED, HELD_OUT_TEST
        x, y = self.x_test, self.y_test
        test_idx = stratified_subset(y, HELD_OUT_TEST, HELD_OUT_SEED)
        train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
        return ImageData(RowsOf(x, train_idx, f"{self.source}: training rows"), y[train_idx],
                         RowsOf(x, test_idx, f"{self.source}: held-out rows"), y[test_idx], self.source,
                         self.num_classes, class_names=self.class_names, image_chans=self.image_chans,
                         held_out={"fraction": HELD_OUT_TEST, "seed": HELD_OUT_SEED, "n": int(len(test_idx)),
                                   "index_sha256": index_hash(test_idx)}, from_dataset=self.from_dataset,
                         layout=self.layout)

    def test_digest(self) -> str:
        """The test split's shape, labels and pixels: every row where they fit in DIGEST_WHOLE_BYTES (CIFAR-10's
        30 MB hash in a tenth of a second), else DIGEST_ROWS rows spread evenly over it (read in chunks either way:
        memory stays a chunk's)."""
        x = self.x_test
        h = self._shape_and_labels()
        n = len(x)
        if n * int(np.prod(x.shape[1:])) <= DIGEST_WHOLE_BYTES:
            chunks = [slice(a, a + DIGEST_CHUNK) for a in range(0, n, DIGEST_CHUNK)]
        else:
            rows = np.unique(np.linspace(0, n - 1, DIGEST_ROWS).astype(np.int64))
            chunks = [rows[a:a + DIGEST_CHUNK] for a in range(0, len(rows), DIGEST_CHUNK)]
        for rows in chunks:
            h.update(np.ascontiguousarray(x[rows]).tobytes())
        return h.hexdigest()[:16]

    def holds_test_split(self, digest: str) -> bool:
        if digest == self.test_digest():
            return True
        # files hardened before the digest read every row kept one of three rows: read those alike
        x = self.x_test
        h = self._shape_and_labels()
        for i in sorted({0, len(x) // 2, len(x) - 1} if len(x) else set()):
            h.update(np.ascontiguousarray(x[i]).tobytes())
        return digest == h.hexdigest()[:16]

    def _shape_and_labels(self):
        return hashlib.sha256(repr(tuple(self.x_test.shape)).encode() + self.y_test.astype(np.int64).tobytes())

    def with_channels(self, channels: int) -> "ImageData":
        """The same arrays fed to a model of `channels` input channels, converted as PIL converts an image file for
        it (pixels.convert_channels), row by row as a run reads them; itself where the counts agree or no conversion
        applies (check_fits then says so)."""
        own = self.in_chans
        if channels == own or (own, channels) not in CHANNEL_NOTES:
            return self
        raw = self.__dict__["_x_train"]
        return ImageData(ChannelView(raw, channels, f"{self.source}: x_train"), self.y_train,
                         ChannelView(self.x_test, channels, f"{self.source}: x_test"), self.y_test, self.source,
                         self.num_classes, subset=self.subset, class_names=self.class_names, image_chans=own,
                         held_out=self.held_out, from_dataset=self.from_dataset, layout=self.layout)

    def identity(self) -> dict:
        out = super().identity()
        if self.image_chans is not None:
            out["channels"] = CHANNEL_NOTES[(self.image_chans, self.in_chans)] + ", as image files are read"
        if self.held_out:
            out["held_out_test"] = self.held_out
        if self.from_dataset:
            out["from_dataset"] = {k: v for k, v in self.from_dataset.items() if k != "workers"}
        return out

    def images_digest(self, split: str, idx: np.ndarray) -> str | None:
        """The chosen images' pixels (their uint8 bytes: only those rows are read)."""
        import hashlib
        x = self.x_train if split == "train" else self.x_test
        return hashlib.sha256(np.ascontiguousarray(x[idx]).tobytes()).hexdigest()[:16]

    def images_bytes_digest(self, split: str, idx: np.ndarray, held: torch.Tensor | None = None) -> str | None:
        """The chosen images' pixels and labels, wherever the arrays were read from: the report's `held` pixels
        where given (a torch Dataset's items are not read again)."""
        import hashlib
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        if held is not None and held.dtype == torch.uint8 and held.ndim == 4:  # NCHW as held: the arrays' NHWC bytes
            pixels = held.cpu().permute(0, 2, 3, 1).contiguous().numpy().tobytes()
        else:
            pixels = np.ascontiguousarray(x[idx]).tobytes()
        labels = b"" if self.labels_from else np.asarray(y[idx], np.int64).tobytes()  # predictions: each model's own
        return hashlib.sha256(pixels + labels).hexdigest()[:16]

    def pixels(self, split: str, idx: np.ndarray, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        return to_pixels(x[idx], device), torch.from_numpy(y[idx]).to(device)

    def feeder(self, augment: str, seed: int, device: torch.device) -> "ArrayFeeder":
        return ArrayFeeder(self, augment, seed, device)


class ArrayFeeder:
    """Training batches from arrays: pad + crop (+ flip) for the whole batch on the device (batch_augment.py), the
    other pipelines through albumentations on the host, one image per call (images are small)."""

    def __init__(self, data: ImageData, kind: str, seed: int, device: torch.device):
        self.data, self.device = data, device
        self.batched, self.aug, self.stream = small_image_augment(kind, data.input_size, seed)

    def epoch(self, index_batches: list[np.ndarray], epoch_no: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rows = self.data.x_train
        read = item_batches(rows, index_batches, epoch_no, self.data.from_dataset.get("workers")) \
            if read_per_item(rows) else (rows[bi] for bi in index_batches)
        for bi, x in zip(index_batches, read, strict=True):
            if self.batched is not None:
                x = self.batched(host_tensor(x).to(self.device, non_blocking=True))
            yield (to_tensor(augment(x, self.aug), self.device),
                   # non_blocking: a blocking copy to the card waits for every step queued before it
                   torch.from_numpy(self.data.y_train[bi]).to(self.device, non_blocking=True))

    def random_state(self):
        return random_state(self.stream)

    def set_random_state(self, state) -> None:
        set_random_state(self.stream, state)


def _finish(x_train, y_train, x_test, y_test, source: str, class_names=None) -> ImageData:
    xte = _images(x_test, f"{source}: x_test")
    # a deferred (compressed) x_train of another dtype than uint8 takes x_test's value range rather than inflating
    xtr = _images(x_train, f"{source}: x_train", xte if isinstance(xte, PixelView) else None)
    ytr, yte = _labels(y_train, len(xtr), source, "y_train"), _labels(y_test, len(xte), source, "y_test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise HardenError(f"{source}: train images {xtr.shape[1:]} and test images {xte.shape[1:]} differ.")
    if (ytr.size and ytr.min() < 0) or (yte.size and yte.min() < 0):
        raise HardenError(f"{source}: labels must be non-negative integers.")
    num_classes = int(max(ytr.max(initial=0), yte.max(initial=0)) + 1)
    names = [str(c) for c in class_names] if class_names is not None and len(class_names) >= num_classes else None
    return ImageData(xtr, ytr, xte, yte, source, num_classes, class_names=names)


ARRAYS_SOURCE = "arrays"


def _as_numpy(a, what: str):
    """A torch tensor (on any device, with or without a graph) or anything numpy reads, as a numpy array."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as e:
        raise HardenError(f"{what} is {type(a).__name__}, not an array or a tensor ({e}).") from None


def from_arrays(*arrays, class_names=None, source: str = ARRAYS_SOURCE, fit=None) -> ImageData:
    """Images and labels in memory, as the library takes them: (x, y), the images of one split (evaluated whole;
    `fix` holds a stratified share out as its test split, as for an .npz of one split), or (x_train, y_train, x_test,
    y_test). Images as torch tensors or numpy arrays, N x C x H x W or N x H x W (x C), floats in [0, 1] or uint8
    0-255; labels as class indices or one-hot rows. Torch datasets instead: read item by item (dataset_objects.py),
    `fit` the model's transform for their images where they vary in size."""
    if len(arrays) == 1 and isinstance(arrays[0], (tuple, list)):
        arrays = tuple(arrays[0])
    from .dataset_objects import from_datasets, is_dataset
    if arrays and any(map(is_dataset, arrays)):
        if not all(map(is_dataset, arrays)):
            raise HardenError("Give datasets alone (one, or train and test), not mixed with arrays.")
        return from_datasets(arrays, None if source == ARRAYS_SOURCE else source, fit)
    if len(arrays) not in (2, 4):
        raise HardenError(f"Images and labels in memory come as (x, y) or (x_train, y_train, x_test, y_test); got "
                          f"{len(arrays)} items.")
    names = ("x", "y") if len(arrays) == 2 else ("x_train", "y_train", "x_test", "y_test")
    arrays = tuple(_as_numpy(a, f"{source}: {n}") for a, n in zip(arrays, names, strict=True))
    if len(arrays) == 4:
        return _finish(*arrays, source, class_names)
    xs = _images(arrays[0], f"{source}: x")
    return _finish(np.zeros((0, *xs.shape[1:]), np.uint8), np.zeros(0, np.int64), xs, arrays[1], source,
                   class_names)


def is_arrays(data) -> bool:
    """Whether `data` is images and labels in memory (from_arrays' tuple) or a torch Dataset or DataLoader (or two:
    train, test), not a path or a Data."""
    from .dataset_objects import is_dataset
    if is_dataset(data) or isinstance(data, (tuple, list)) and len(data) == 2 and all(map(is_dataset, data)):
        return True
    return isinstance(data, (tuple, list)) and len(data) in (2, 4) and not isinstance(data[0], (str, Path))


def _images(x, what: str, like: PixelView | None = None):
    """uint8 N x H x W x C rows (pixels.as_pixels); a deferred member is checked by its header."""
    x = x if isinstance(x, DeferredArray) or getattr(x, "lazy_rows", False) else np.asarray(x)
    if x.ndim == 2:  # flattened rows: MNIST's 784 values, CIFAR's and Downsampled ImageNet's planar 3,072
        x = unflattened(x, what)
    if x.ndim == 3:
        x = x.reshape((*x.shape, 1))
    if x.ndim == 4:
        x = as_pixels(x, what, like)
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise HardenError(f"{what} has shape {x.shape}; expected N x H x W, N x H x W x C or N x C x H x W with C "
                          "in 1, 3, 4 (or N rows of flattened square images: s*s grey or 3*s*s RGB values).")
    return x


def _labels(y, n: int, source: str, name: str) -> np.ndarray:
    """Class indices from indices (N or N x 1) or one-hot / per-class scores (N x K: the largest entry)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1 and y.shape[0] == n:
        y = y.argmax(1)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == np.bool_):
        raise HardenError(f"{source}: {name} is {y.dtype}; labels are class indices (or one-hot rows).")
    y = y.ravel()
    if len(y) != n:
        one = (" (one image given as H x W x C? A batch of one is x[None], N x H x W x C)" if len(y) == 1 else "")
        raise HardenError(f"{source}: {name} holds {len(y)} labels for {n} images{one}.")
    if np.issubdtype(y.dtype, np.floating) and not np.array_equal(y, np.round(y)):
        raise HardenError(f"{source}: {name} holds fractional values; labels are class indices.")
    return y.astype(np.int64)


def _digits() -> ImageData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # 8x8, values 0-16
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    return _finish(xtr, ytr, xte, yte, "digits")


# the image and label keys of an .npz of one split, as published code saves them (lower-cased)
ONE_SPLIT_KEYS = (("x", "y"), ("images", "labels"), ("imgs", "labels"), ("data", "labels"), ("data", "targets"),
                  ("inputs", "targets"), ("images", "targets"), ("x", "labels"), ("image", "label"))


_SPLIT = {"train": "train", "training": "train", "test": "test", "val": "val", "valid": "valid",
          "validation": "val"}
_IMAGE_WORDS = ("x", "images", "imgs", "image", "data", "inputs")
_LABEL_WORDS = ("y", "labels", "label", "targets", "target")


def array_names(keys: list[str]) -> dict[str, str]:
    """{name as harden reads it, lower case: the stored name}: the stored names, and for the other ways published sets
    name their arrays the x_train / y_test / one-split pair they stand for: MNIST-C's `train_images`, `test_labels`,
    `images_train`, and a pair `<name>_data` / `<name>_labels` (CIFAR-10.1's `cifar10.1_v6_data.npy`) as one split."""
    stored = {k.lower(): k for k in keys}
    out = dict(stored)
    pairs: dict[str, dict[str, str]] = {}
    for low, k in stored.items():
        first, _, last = low.rpartition("_")
        for split_word, kind_word in ((first, last), (last, first)):
            split = _SPLIT.get(split_word)
            kind = "x" if kind_word in _IMAGE_WORDS else "y" if kind_word in _LABEL_WORDS else None
            if split and kind:
                out.setdefault(f"{kind}_{split}", k)
                break
        else:
            if first and (last in _IMAGE_WORDS or last in _LABEL_WORDS):
                pairs.setdefault(first, {})["x" if last in _IMAGE_WORDS else "y"] = k
    whole = [p for p in pairs.values() if len(p) == 2]
    if len(whole) == 1 and not any(x in out and y in out for x, y in ONE_SPLIT_KEYS):
        out.setdefault("x", whole[0]["x"])
        out.setdefault("y", whole[0]["y"])
    return out


def _npz(path: Path) -> ImageData:
    """Memory-mapped where the archive allows (harden.data.npz): a run reads the rows it uses, not the archive."""
    from .npz import npz_keys, read_npz
    try:  # what zipfile, its decompressors and numpy's .npy reader raise on a damaged or foreign file
        keys = npz_keys(path)
    except READ_ERRORS as e:
        raise HardenError(f"{str(path)!r} is not a readable .npz archive ({e}).") from None

    def read(names: list[str], defer: tuple[str, ...] = ()) -> dict:
        try:
            return read_npz(path, names, defer=defer)
        except READ_ERRORS as e:
            raise HardenError(f"{str(path)!r} is not a readable .npz archive ({e}).") from None
    return _named_arrays(path, keys, read, "an .npz")


def _npy_files(path: Path) -> dict[str, Path]:
    """{array name: file} of a folder's .npy files (x_train.npy, ...)."""
    try:
        return {e.name[:-4]: Path(e.path) for e in os.scandir(path) if e.is_file() and e.name.lower().endswith(".npy")}
    except OSError:
        return {}


def is_npy_dataset(path: Path) -> bool:
    """A folder whose .npy files name images and labels as an .npz's members would (x_train and y_train, x_test and
    y_test, or one split's pair)."""
    names = array_names(list(_npy_files(path)))
    pairs = [("x_train", "y_train"), ("x_test", "y_test"), ("x_val", "y_val"), ("x_valid", "y_valid"), *ONE_SPLIT_KEYS]
    return any(x in names and y in names for x, y in pairs)


def _npy_folder(path: Path) -> ImageData:
    """A folder of .npy files named as an .npz's members (x_train.npy, y_train.npy, x_test.npy, y_test.npy; or one
    split's x.npy, y.npy), each memory-mapped: what `np.save` per array leaves."""
    files = _npy_files(path)

    def read(names: list[str], defer: tuple[str, ...] = ()) -> dict:
        out = {}
        for k in names:
            try:
                out[k] = np.load(files[k], mmap_mode="r", allow_pickle=False)
            except READ_ERRORS as e:
                raise HardenError(f"{str(files[k])!r} is not a readable .npy array ({e}).") from None
        return out
    return _named_arrays(path, list(files), read, "a folder of .npy files")


def _torch_file(path: Path) -> ImageData:
    """Tensors saved with torch.save: a dict named as an .npz's members ({'x_test': ..., 'y_test': ...}, {'data':
    ..., 'targets': ...}) or a tuple (x, y) / (x_train, y_train, x_test, y_test), as torchvision's old MNIST
    `processed/training.pt` is. Read with weights_only=True: tensors and containers only, nothing runs."""
    import pickle as _pickle
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # a file in torch's legacy (pre-zip) format cannot be mapped: read whole
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, _pickle.UnpicklingError, EOFError, ValueError, OSError, AttributeError) as e:
        raise HardenError(f"{str(path)!r} is not a file of tensors torch.load reads safely (weights_only=True: "
                          f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}).") from None
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 4) and all(isinstance(t, torch.Tensor) for t in obj):
        return from_arrays(*obj, source=str(path))
    if isinstance(obj, dict) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, (torch.Tensor, list, tuple))}
        if any(k.rsplit(".", 1)[-1] in ("weight", "bias", "running_mean") for k in tensors) or \
                not any(v.ndim >= 3 for v in tensors.values() if isinstance(v, torch.Tensor)):
            raise HardenError(f"{str(path)!r} holds tensors but no images ({', '.join(list(tensors)[:6])}): a model's "
                              "weights? --data takes images and labels.")

        def read(names: list[str], defer: tuple[str, ...] = ()) -> dict:
            return {k: (tensors[k].numpy() if isinstance(tensors[k], torch.Tensor) else np.asarray(tensors[k]))
                    for k in names}
        return _named_arrays(path, list(tensors), read, "a file of tensors")
    raise HardenError(f"{str(path)!r} holds {type(obj).__name__}, not images and labels: a torch file for --data holds "
                      "(x, y), (x_train, y_train, x_test, y_test) or a dict named so (or data/targets).")


def _named_arrays(path: Path, keys: list[str], read, what: str) -> ImageData:
    """Images and labels from named arrays (an .npz's members, a folder's .npy files): x_train, y_train, x_test (or
    x_val), y_test (or y_val), in any case; or one split's pair. `read(names, defer)`: those arrays."""
    stored = array_names(keys)  # X_train as x_train, train_images too; x_val / x_valid as the test split
    test = next((s for s in ("test", "val", "valid") if f"x_{s}" in stored and f"y_{s}" in stored), "test")
    want = {"x_train": "x_train", "y_train": "y_train", "x_test": f"x_{test}", "y_test": f"y_{test}",
            "class_names": "class_names"}
    missing = [k for k, v in want.items() if v not in stored and k != "class_names"]
    if missing and keys and all(POSITIONAL.fullmatch(k) for k in keys) and len(keys) in (2, 4):
        return _positional(path, sorted(keys, key=lambda k: int(k[4:])), read)
    one = next(((x, y) for x, y in ONE_SPLIT_KEYS if x in stored and y in stored), None) if missing else None
    if missing and one is None and not {f"x_{test}", f"y_{test}"} - set(stored):
        one = (f"x_{test}", f"y_{test}")  # a test set saved alone
    if missing and one is None:
        raise HardenError(f"{str(path)!r} lacks {', '.join(missing)} (it holds {', '.join(keys)}); "
                          f"{what} for harden holds x_train, y_train, x_test (or x_val), y_test (or y_val), or the "
                          "images and labels of one split (x, y; images, labels; data, targets): images "
                          "N x H x W (x C), or N x C x H x W, as uint8 0-255 or floats in [0, 1]; labels as "
                          "indices or one-hot rows.")
    if one is not None:  # one split: evaluated whole; `fix` holds a share of it out as its test split (held_out.py)
        z = read([stored[k] for k in (*one, "class_names") if k in stored])  # the pair (and names): nothing else
        x, y = z[stored[one[0]]], z[stored[one[1]]]
        names = np.asarray(z[stored["class_names"]]).tolist() if "class_names" in stored else None
        return _one_split(x, y, path, f"{path}: {stored[one[0]]}", names)
    z = read([stored[v] for v in want.values() if v in stored], defer=(stored["x_train"],))  # `eval` never inflates
    z = {k: z[stored[v]] for k, v in want.items() if v in stored}  # compressed training images
    names = np.asarray(z["class_names"]).tolist() if "class_names" in z else None
    return _finish(z["x_train"], z["y_train"], z["x_test"], z["y_test"], str(path), names)


POSITIONAL = re.compile(r"arr_\d+")  # np.savez(path, x, y): arrays passed without names


def _positional(path: Path, keys: list[str], read) -> ImageData:
    """`np.savez(path, x, y)` or four arrays: (x_train, y_train, x_test, y_test), as the library takes them, or
    scikit-learn's train_test_split order (x_train, x_test, y_train, y_test), told apart by the arrays' shapes (images
    have more values a row than labels; a split's images and labels are as many); the first images are training's."""
    z = read(keys, defer=(keys[0],))
    arrays = [z[k] for k in keys]

    def row(a) -> int:
        return int(np.prod(a.shape[1:])) if len(a.shape) > 1 else 1

    def fits(x, y) -> bool:
        return len(x.shape) >= 2 and len(x) == len(y) and row(x) > row(y)
    if len(arrays) == 2:
        x, y = arrays if row(arrays[0]) >= row(arrays[1]) else arrays[::-1]
        if fits(x, y):
            return _one_split(x, y, path, f"{path}: {keys[0] if x is arrays[0] else keys[1]}", None)
    else:
        for order, name in (((0, 1, 2, 3), "x_train, y_train, x_test, y_test"),
                            ((0, 2, 1, 3), "x_train, x_test, y_train, y_test (train_test_split's order)")):
            xtr, ytr, xte, yte = (arrays[i] for i in order)
            if fits(xtr, ytr) and fits(xte, yte):
                from ..runtime import info
                info(f"{path}: arrays saved without names ({', '.join(keys)}) read as {name}, by their shapes")
                return _finish(xtr, ytr, xte, yte, str(path))
    shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in zip(keys, arrays, strict=True))
    raise HardenError(f"{str(path)!r} holds arrays saved without names ({shapes}), which harden cannot tell apart "
                      "as images and labels: save them named (np.savez(path, x_train=..., y_train=..., x_test=..., "
                      "y_test=...)), or in the order (x, y) or (x_train, y_train, x_test, y_test).")


def _one_split(x, y, path: Path, what: str, names: list[str] | None) -> ImageData:
    """One split's images and labels: evaluated whole; `fix` holds a share of it out as its test split."""
    xs = _images(x, what)
    return _finish(xs[:0] if isinstance(xs, np.ndarray) else np.zeros((0, *xs.shape[1:]), np.uint8),
                   np.zeros(0, np.int64), xs, y, str(path), names)


def _labels_beside(path: Path) -> Path | None:
    """The labels of a lone .npy of images: `<name>_labels.npy` for `<name>_data.npy` / `_images` / `_x` (CIFAR-10.1,
    MNIST-C's `test_images.npy`), `labels_<split>.npy` for `images_<split>.npy`, else a `labels.npy` (or y.npy,
    targets.npy) the folder's image arrays share (CIFAR-10-C's, CIFAR-100-C's corruption files)."""
    lower = {k.lower(): f for k, f in _npy_files(path.parent).items()}
    first, _, last = path.name[:-4].lower().rpartition("_")
    wanted = []
    if last in _IMAGE_WORDS:
        wanted += [f"{first}_{w}" for w in _LABEL_WORDS]
    if first in _IMAGE_WORDS:
        wanted += [f"{w}_{last}" for w in _LABEL_WORDS]
    wanted += ["labels", "y", "targets"]
    return next((lower[w] for w in wanted if w in lower and lower[w] != path), None)


def npy_file(path: Path) -> ImageData:
    """One .npy file of images (memory-mapped) with its labels beside it (_labels_beside): one split."""
    labels = _labels_beside(path)
    if labels is None:
        raise HardenError(f"{str(path)!r} is one array; its labels are read from a file beside it: labels.npy (as "
                          "CIFAR-10-C's corruption files share one), or <name>_labels.npy for <name>_data.npy / "
                          "_images.npy. Neither is there; save the labels so, or both arrays in one .npz.")
    try:
        x, y = np.load(path, mmap_mode="r", allow_pickle=False), np.load(labels, mmap_mode="r", allow_pickle=False)
    except READ_ERRORS as e:
        raise HardenError(f"{str(path)!r} or {labels.name} is not a readable .npy array ({e}).") from None
    if len(x) != len(y):
        raise HardenError(f"{str(path)!r} holds {len(x)} images and {labels.name} {len(y)} labels.")
    from ..runtime import info
    info(f"{path.name}: its labels from {labels.name}")
    return _one_split(x, y, path, str(path), None)


def shared_labels_folder(path: Path) -> ImageData | None:
    """A folder of image arrays sharing one labels.npy (CIFAR-10-C's layout): its one image array read with it; None
    where the folder is not such; an error naming them where there are several (one is chosen by giving it)."""
    files = _npy_files(path)
    shared = next((files[k] for k in files if k.lower() in ("labels", "y", "targets")), None)
    others = sorted(k for k in files if files[k] != shared)
    if shared is None or not others:
        return None
    if len(others) == 1:
        return npy_file(files[others[0]])
    few = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
    raise HardenError(f"{str(path)!r} holds {len(others)} image arrays ({few}) that share {shared.name}, as a "
                      f"corruption benchmark's (CIFAR-10-C) do: give one as --data ({path / (others[0] + '.npy')}); "
                      "each of CIFAR-10-C's holds the 10,000 test images at severities 1 to 5 in turn.")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches and pools of arrays are pickles: allow only what numpy arrays need, never arbitrary code."""
    # numpy's `scalar` rebuilds one number from its dtype and bytes (lists of np.int64 labels pickle so)
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise HardenError(f"Refused to unpickle {module}.{name}: it is not plain data (numpy arrays), and loading "
                          "it would run code.")


def _cifar_batches(path: Path) -> ImageData:
    def read(name):
        with open(path / name, "rb") as f:
            d = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"])
    parts = [read(f"data_batch_{i}") for i in range(1, 6) if (path / f"data_batch_{i}").exists()]
    xte, yte = read("test_batch")
    names = None
    if (path / "batches.meta").exists():
        with open(path / "batches.meta", "rb") as f:
            meta = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])] or None
    return _finish(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xte, yte, str(path),
                   names)
