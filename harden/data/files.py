"""FileData: images on disk, listed once and decoded only when a batch needs them, through the model's own
transforms. Memory grows with the batch and the workers, never with the dataset; the listing of a split is made
only when that split is used (`eval` never lists the training split)."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import HardenError
from .base import SMALL_IMAGE_SIDE, Data, chunks, index_hash, nchw, stratified_sample, stratified_subset
from .loader import decode_batches, default_workers
from .sources import Listing
from ..random_streams import random_state, set_random_state
from .batch_augment import small_image_augment
from .transforms import Preprocess, augment, orientation_note

DECODE_BATCH = 64  # images per worker task when decoding for an eval; fewer when the workers would otherwise idle
HELD_OUT_TEST = 0.2  # a list with no split column: this stratified share is the test split of `fix`
HELD_OUT_SEED = 0  # fixed, so every fix of the same list tests on the same images


@dataclass
class FileData(Data):
    source: str
    num_classes: int
    preprocess: Preprocess
    listers: dict[str, Callable[[], Listing]]  # 'train' / 'test'; called once, on first use
    layout: str = "folder"
    subset: dict = field(default_factory=dict)
    class_names: list[str] | None = None
    class_note: str = ""  # how folder names became model indices
    workers: int = field(default_factory=default_workers)
    skip_unreadable: bool = False
    held_out: dict = field(default_factory=dict)
    size_note: str = ""
    skipped: list[str] = field(default_factory=list)  # files left out (--skip-unreadable), shared by subsets
    oriented: dict = field(default_factory=lambda: {"n": 0})  # images read that carry an EXIF orientation, shared
    labels_from: str = ""  # Data.labels_from
    _cache: dict = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- listings
    def listing(self, split: str) -> Listing:
        if split not in self._cache:
            if split not in self.listers:
                raise HardenError(self._no_split(split))
            self._cache[split] = self.listers[split]()
        return self._cache[split]

    def _no_split(self, split: str) -> str:
        if split == "train" and self.layout == "names":
            return (f"{self.source} has one split (a folder of images labelled by their names): it can be evaluated "
                    "(`harden eval`); `fix` and `train` hold a share of it out, and training on another folder needs "
                    "train/ beside val/ (or test/), each holding images named so.")
        if split == "train":
            return (f"{self.source} has one split (a {self.layout} of class folders or shards): it can be evaluated "
                    "(`harden eval`), but training needs train/ beside val/ (or test/), each holding the classes.")
        return f"{self.source} has no {split} split."

    def has_split(self, split: str) -> bool:
        return split in self.listers

    @property
    def y_train(self) -> np.ndarray:
        return self.listing("train").labels

    @property
    def y_test(self) -> np.ndarray:
        return self.listing("test").labels

    @property
    def in_chans(self) -> int:
        return self.preprocess.in_chans

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.input_size

    def _with(self, **changes) -> "FileData":
        d = dict(self.__dict__)
        d.update(changes)
        d["_cache"] = {**self._cache, **changes.pop("_cache", {})}
        return FileData(**d)

    def take_train(self, idx: np.ndarray, subset: dict | None = None) -> "FileData":
        part = self.listing("train").take(idx)
        return self._with(listers={**self.listers, "train": lambda: part}, _cache={"train": part},
                          subset=self.subset if subset is None else subset)

    def with_held_out_test(self) -> "FileData":
        """A list without a split column: a stratified, seeded HELD_OUT_TEST of it becomes the test split and
        the rest the training split, so `fix` never reports on images it trained on."""
        whole = self.listing("test")
        test_idx = stratified_subset(whole.labels, HELD_OUT_TEST, HELD_OUT_SEED)
        train_idx = np.setdiff1d(np.arange(len(whole)), test_idx)
        train, test = whole.take(train_idx), whole.take(test_idx)
        return self._with(listers={"train": lambda: train, "test": lambda: test}, _cache={"train": train, "test": test},
                          held_out={"fraction": HELD_OUT_TEST, "seed": HELD_OUT_SEED, "n": int(len(test_idx)),
                                    "index_sha256": index_hash(test_idx)})

    def images_digest(self, split: str, idx: np.ndarray) -> str | None:
        """The chosen files' locations (not their bytes: a file rewritten in place keeps its digest; nor their labels,
        which the report's "labels" says where they are predictions)."""
        return self.listing(split).refs.take(np.asarray(idx, np.int64)).digest()

    def images_bytes_digest(self, split: str, idx: np.ndarray, held: torch.Tensor | None = None) -> str | None:
        """The chosen files' bytes and labels (each file read once more: from the page cache, after its decoding; its
        labels unless they are a model's predictions); a file that cannot be read counts as its location. Not the
        decoded pixels (`held`), which another build of the decoder may round otherwise."""
        import hashlib
        listing, h = self.listing(split), hashlib.sha256()
        for i in np.asarray(idx, np.int64):
            try:
                h.update(hashlib.sha256(listing.read_bytes(int(i))).digest())
            except (OSError, KeyError, ValueError):  # a file gone, a member or record missing: the report's
                h.update(b"unreadable:" + listing.refs[int(i)].encode())  # decoding says so (--skip-unreadable)
            if not self.labels_from:  # predictions are each model's own (the report's "labels" says so)
                h.update(int(listing.labels[i]).to_bytes(8, "little", signed=True))
        return h.hexdigest()[:16]

    def test_digest(self) -> str:
        return self.listing("test").digest()

    def with_channels(self, channels: int) -> "FileData":
        """The same files decoded for a model of `channels` channels, as PIL converts them for it."""
        pre = self.preprocess
        if channels == pre.in_chans or channels not in (1, 3, 4):
            return self
        return self._with(preprocess=replace(pre, in_chans=channels))

    def at_size(self, size: tuple[int, int]) -> "FileData":
        """The same files through the same transform at another input size (the input-size check reads a sample
        again); files it cannot read are counted apart from the report's."""
        return self._with(preprocess=replace(self.preprocess, input_size=(int(size[0]), int(size[1]))), skipped=[])

    # ---------------------------------------------------------------- decoding
    def _check(self, errors: list[str]) -> None:
        if not errors:
            return
        if not self.skip_unreadable:
            raise HardenError(f"Cannot read the image {errors[0]}. Nothing was written. Replace or remove the file, or "
                              "pass --skip-unreadable to leave such files out (the report counts them).")
        self.skipped.extend(errors)

    def oriented_note(self, n: int) -> str:
        return f"{n} image(s) read with an EXIF orientation tag, read {self.preprocess.how_oriented()} (--exif-orientation)"

    def took(self, errors: list[str], oriented: int) -> None:
        """What a decoded batch reported: its unreadable files (_check) and how many carried an EXIF orientation (the
        first of a run says how they are read)."""
        self._check(errors)
        if oriented and not self.oriented["n"]:
            from ..runtime import info
            info(orientation_note(self.source, self.preprocess.orientation))
        self.oriented["n"] += int(oriented)

    def pixels(self, split: str, idx: np.ndarray, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        from ..runtime import progress
        listing = self.listing(split)
        device = torch.device(device)
        xs, ys = [], []
        parts = chunks(idx, decode_batch(len(idx), self.workers))
        quiet = nullcontext(lambda n=1, **kw: None)
        with progress(f"decoding {split}", len(idx)) if len(idx) > 4 * DECODE_BATCH else quiet as advance:
            for x, y, _, errors, oriented in decode_batches(listing, parts, self.preprocess.eval_transform(),
                                                            self.workers, device.type == "cuda"):
                self.took(errors, oriented)
                if x is not None:
                    xs.append(x.to(device, non_blocking=True))
                    ys.append(y.to(device))
                advance(len(y) + len(errors))
        if not xs:
            raise HardenError(f"No readable image among the {len(idx)} chosen from {self.source}.")
        return nchw(torch.cat(xs)), torch.cat(ys)

    def feeder(self, augment_kind: str, seed: int, device: torch.device) -> "FileFeeder":
        return FileFeeder(self, augment_kind, seed, device)

    def mean_std(self, n: int = 256) -> tuple[list[float], list[float]]:
        """From a seeded sample of the training split (nothing else is decoded)."""
        split = "train" if self.has_split("train") else "test"
        y = self.listing(split).labels
        x, _ = self.images(split, stratified_sample(y, min(n, len(y)), 0))
        flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
        return flat.mean(1).round(decimals=4).tolist(), flat.std(1).clamp_min(1e-3).round(decimals=4).tolist()

    def eval_sample(self, n: int | None, seed: int) -> tuple[np.ndarray, str]:
        """A seeded stratified sample of n test images (a folder sorted by class has one class first)."""
        y = self.y_test
        if len(y) == 0:
            raise HardenError(f"The test split of {self.source} is empty.")
        k = len(y) if n is None or n <= 0 else min(n, len(y))
        return stratified_sample(y, k, seed), "the whole test split" if k >= len(y) else "seeded stratified sample"

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "layout": self.layout, "preprocess": self.preprocess.to_dict(),
                               "classes": self.class_note, **self.labels_identity()}
        if "test" in self._cache:
            out["test_listing_sha256"] = self._cache["test"].digest()
        if self.held_out:
            out["held_out_test"] = self.held_out
        if self.skipped:
            out["skipped_unreadable"] = len(self.skipped)
        if self.oriented["n"]:
            out["exif_oriented"] = self.oriented_note(self.oriented["n"])
        return out


def decode_batch(n: int, workers: int) -> int:
    """Images per decoding task: DECODE_BATCH, or fewer so that each worker gets at least two tasks. A task is one
    worker's unit, so 512 images in tasks of 64 kept only 8 of a 16-core machine's workers busy."""
    if workers <= 1:
        return DECODE_BATCH
    return int(min(DECODE_BATCH, max(8, -(-n // (2 * workers)))))


class FileFeeder:
    """Training batches decoded by the workers. Large images: the model's random resized crop + flip. Small images
    (<= SMALL_IMAGE_SIDE): the evaluation transform, then the small-image albumentations pipeline on the host, as for
    arrays."""

    def __init__(self, data: FileData, kind: str, seed: int, device: torch.device):
        self.data, self.seed, self.device = data, seed, device
        small = max(data.input_size) <= SMALL_IMAGE_SIDE
        self.batched, self.aug, self.stream = small_image_augment(kind, data.input_size, seed) if small else \
            (None, None, None)
        random_crop = not small and kind != "none"
        self.transform = data.preprocess.train_transform() if random_crop else data.preprocess.eval_transform()
        self.random = random_crop

    def random_state(self):  # the random resized crops of large images are drawn per image and epoch, in the workers
        return random_state(self.stream)

    def set_random_state(self, state) -> None:
        set_random_state(self.stream, state)

    def epoch(self, index_batches: list[np.ndarray], epoch_no: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        listing = self.data.listing("train")
        for x, y, _, errors, oriented in decode_batches(listing, index_batches, self.transform, self.data.workers,
                                                        self.device.type == "cuda", self.seed if self.random else None,
                                                        epoch_no):
            self.data.took(errors, oriented)
            if x is None:  # every image of the batch was unreadable and skipped
                yield None
                continue
            if self.aug is not None:
                x = torch.from_numpy(augment(x.permute(0, 2, 3, 1).numpy(), self.aug)).permute(0, 3, 1, 2)
            x = x.to(self.device, non_blocking=True)
            if self.batched is not None:
                x = self.batched(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            yield nchw(x.float().div_(255.0)), y.to(self.device, non_blocking=True)  # as arrays.ArrayFeeder's
