"""FFCV's dataset files (`.beton`, or `.ffcv` as ffcv-imagenet names them: `train_500_0.50_90.ffcv`), read without
FFCV, whose loader needs a compiled extension, libjpeg-turbo and OpenCV. The format (ffcv 1.x, file version 2): a
header (version, field count, page size, sample count, where the allocation table starts), one descriptor a field (its
type, name and arguments), every sample's fixed-size metadata in one table, pages of variable-size data, and the
allocation table (sample, offset, size) of that data.

An image is an RGBImageField (its metadata: JPEG or raw pixels, width, height, offset; `write_mode='proportion'`
mixes the two in one file) or an NDArrayField of image shape; the label is an IntField (`label` where several). A
sample's image is handed on as its file would be: the JPEG's bytes, or raw pixels as an .npy in memory (array_images.py
reads it), so decoding, transforms and workers are those of every other source. Listing reads the metadata and the
allocation table, nothing of the images."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HardenError
from .array_images import npy_bytes
from .sources import Listing, OnDisk, PathTable, _handle, files_ending, label_among, listed_once, split_files

EXT = (".beton", ".ffcv")
VERSION = 2  # ffcv.types.CURRENT_VERSION of ffcv 1.0
HEADER = np.dtype([("version", "<u2"), ("num_fields", "<u2"), ("page_size", "<u4"), ("num_samples", "<u8"),
                   ("alloc_table_ptr", "<u8")], align=True)
FIELD = np.dtype([("type_id", "<u1"), ("name", ("<u1", 16)), ("arguments", ("<u1", (1024,)))], align=True)
ALLOC = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])
IMAGE_META = np.dtype([("mode", "<u1"), ("width", "<u2"), ("height", "<u2"), ("data_ptr", "<u8")])
PTR_AND_SIZE = np.dtype([("ptr", "<u8"), ("size", "<u8")])
NDARRAY_ARGS = np.dtype([("shape", "<u8", 32), ("type_length", "<u8")])
# each field type's metadata, as FFCV lays out a sample's row (types.TYPE_ID_HANDLER, each Field.metadata_type)
METADATA = {0: ("FloatField", np.dtype("<f8")), 1: ("IntField", np.dtype("<i8")), 2: ("RGBImageField", IMAGE_META),
            3: ("BytesField", PTR_AND_SIZE), 4: ("NDArrayField", np.dtype("<u8")), 5: ("JSONField", PTR_AND_SIZE),
            6: ("TorchTensorField", np.dtype("<u8"))}
RGB, INT, BYTES, NDARRAYS = 2, 1, 3, (4, 6)
JPEG_MODE = 0  # rgb_image.IMAGE_MODES: 0 jpg, 1 raw
LOOK = 1000  # entries of a folder looked at for FFCV files


@dataclass
class BetonFile:
    """What a file's header, field descriptors and metadata layout say."""
    path: str
    samples: int
    names: list[str]
    types: list[int]
    row: np.dtype  # one sample's metadata, the fields side by side as FFCV aligns them
    rows_at: int  # where the metadata table starts
    alloc_at: int
    arrays: dict[int, tuple[tuple[int, ...], np.dtype]] = field(default_factory=dict)  # NDArrayFields' shape, dtype

    def metadata(self) -> np.ndarray:
        return np.memmap(self.path, self.row, "r", offset=self.rows_at, shape=(self.samples,)) if self.samples else \
            np.zeros(0, self.row)


def _ndarray_args(args: np.ndarray, where: str) -> tuple[tuple[int, ...], np.dtype]:
    head = args[:NDARRAY_ARGS.itemsize].view(NDARRAY_ARGS)[0]
    try:
        descr = json.loads(args[NDARRAY_ARGS.itemsize:][:int(head["type_length"])].tobytes().decode("ascii"))
        dtype = np.dtype([tuple(x) for x in descr])["f0"]
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise HardenError(f"{where}: an NDArrayField whose type does not read ({e}).") from None
    shape = [int(s) for s in head["shape"]]
    while shape and shape[-1] == 0:
        shape.pop()
    return tuple(shape), dtype


def read_header(path: Path) -> BetonFile:
    """The layout of an FFCV file; a HardenError naming what is wrong where it is none FFCV 1.x reads."""
    where = str(path)
    size = path.stat().st_size
    if size < HEADER.itemsize:
        raise HardenError(f"{where!r} is named as an FFCV file but holds {size} bytes, less than its header.")
    head = np.fromfile(path, HEADER, count=1)[0]
    if int(head["version"]) != VERSION:
        raise HardenError(f"{where!r}: FFCV file format version {int(head['version'])}; harden reads version {VERSION} "
                          "(ffcv 1.0's): write the dataset again with ffcv 1.0, or pass its images as files.")
    n, k, alloc_at = int(head["num_samples"]), int(head["num_fields"]), int(head["alloc_table_ptr"])
    rows_at = HEADER.itemsize + k * FIELD.itemsize
    page = int(head["page_size"])
    if not 0 < k <= 255 or page <= 0 or page & (page - 1) or not rows_at <= alloc_at <= size \
            or (size - alloc_at) % ALLOC.itemsize:
        raise HardenError(f"{where!r} is named as an FFCV file but its header does not read as one ({k} fields, page "
                          f"size {page}, allocation table at byte {alloc_at} of {size}): damaged or not FFCV's.")
    fields = np.fromfile(path, FIELD, count=k, offset=HEADER.itemsize)
    names = [bytes(f["name"]).split(b"\0", 1)[0].decode("utf-8", "replace") for f in fields]
    types = [int(t) for t in fields["type_id"]]
    unknown = [f"{n} (type {t})" for n, t in zip(names, types, strict=True) if t not in METADATA]
    if unknown:
        raise HardenError(f"{where!r}: FFCV fields of a custom type harden cannot lay out: {', '.join(unknown)}; their "
                          "metadata size is known only to the code that wrote them.")
    row = np.dtype([("", METADATA[t][1]) for t in types], align=True)
    if rows_at + n * row.itemsize > alloc_at:
        raise HardenError(f"{where!r}: {n} samples of {row.itemsize}-byte metadata do not fit before the allocation "
                          f"table (byte {alloc_at}): a damaged FFCV file.")
    arrays = {i: _ndarray_args(fields[i]["arguments"], f"{where}: field {names[i]!r}")
              for i, t in enumerate(types) if t in NDARRAYS}
    return BetonFile(where, n, names, types, row, rows_at, alloc_at, arrays)


def _is_image_array(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    from .array_images import is_one_image
    return dtype.kind in "uif" and is_one_image(shape)


def _holds_image_files(beton: BetonFile, field: int) -> bool:
    """Whether a BytesField's first value is an image file's bytes (a JPEG stored as it was read)."""
    from .tfrecord import is_encoded_image
    if not beton.samples:
        return False
    ptr, size = (int(v) for v in beton.metadata()[0][field])
    with open(beton.path, "rb") as f:
        f.seek(ptr)
        return is_encoded_image(f.read(min(size, 16)))


def _fields(beton: BetonFile) -> tuple[int, int | None]:
    """(image field, label field) indices: an RGBImageField, else an NDArrayField of image shape, else a BytesField
    holding image files."""
    where, kinds = beton.path, [METADATA[t][0] for t in beton.types]
    have = ", ".join(f"{n} ({k})" for n, k in zip(beton.names, kinds, strict=True))
    images = [i for i, t in enumerate(beton.types) if t == RGB] or \
        [i for i, t in enumerate(beton.types) if t in NDARRAYS and _is_image_array(*beton.arrays[i])] or \
        [i for i, t in enumerate(beton.types) if t == BYTES and _holds_image_files(beton, i)]
    if not images:
        raise HardenError(f"{where!r} holds no image field (its fields: {have}); harden reads an RGBImageField, an "
                          "NDArrayField of image shape, or a BytesField of image files.")
    return images[0], label_among(beton.names, [i for i, t in enumerate(beton.types) if t == INT], where, "field",
                                  f"its fields: {have}")


@dataclass
class BetonStore:
    """A listing's FFCV file: where each sample's image lies, read by its metadata row (refs are sample numbers)."""
    beton: BetonFile
    image: int
    ptrs: np.ndarray  # the allocation table's offsets, sorted, and each allocation's size
    sizes: np.ndarray
    labelled: bool = True  # False: no integer field (images alone)
    _rows: dict = field(default_factory=dict, repr=False)  # one memory map of the metadata a process

    def _row(self, i: int):
        rows = self._rows.get(os.getpid())
        if rows is None:
            rows = self._rows[os.getpid()] = self.beton.metadata()
        return rows[i][self.image]

    def _bytes(self, ptr: int, size: int | None = None) -> bytes:
        if size is None:
            at = int(np.searchsorted(self.ptrs, ptr))
            if at == len(self.ptrs) or int(self.ptrs[at]) != ptr:
                raise HardenError(f"{self.beton.path}: no allocation at byte {ptr} (a damaged FFCV file).")
            size = int(self.sizes[at])
        f = _handle(self.beton.path)
        f.seek(ptr)
        data = f.read(size)
        if len(data) < size:
            raise HardenError(f"{self.beton.path}: the data at byte {ptr} runs past the end of the file (truncated).")
        return data

    def read(self, ref: str) -> bytes:
        meta = self._row(int(ref))
        if self.beton.types[self.image] == RGB:
            data = self._bytes(int(meta["data_ptr"]))
            if int(meta["mode"]) == JPEG_MODE:
                return data
            return npy_bytes(data, (int(meta["height"]), int(meta["width"]), 3), np.dtype(np.uint8))
        if self.beton.types[self.image] == BYTES:  # an image file's bytes, as stored
            return self._bytes(int(meta["ptr"]), int(meta["size"]))
        shape, dtype = self.beton.arrays[self.image]
        return npy_bytes(self._bytes(int(meta), int(np.prod(shape)) * dtype.itemsize), shape, dtype)

    def location(self, ref: str) -> str:
        return f"{self.beton.path}:sample {ref}"

    def missing_labels_note(self) -> str:
        return f"{self.beton.path} has no integer field to read as labels (its fields: {', '.join(self.beton.names)})"

    def describe(self) -> str:
        kind = METADATA[self.beton.types[self.image]][0]
        raw = " (JPEG or raw pixels; raw ones read as arrays)" if self.beton.types[self.image] == RGB else ""
        return f"FFCV file, images from its {kind} {self.beton.names[self.image]!r}{raw}"


def list_beton(path: Path) -> Listing:
    """Every sample of an FFCV file (one split) and its label: its metadata and allocation table, no image read."""
    beton = read_header(path)
    image, label = _fields(beton)
    table = np.fromfile(path, ALLOC, offset=beton.alloc_at)
    order = np.argsort(table["ptr"], kind="stable")
    store = BetonStore(beton, image, np.ascontiguousarray(table["ptr"][order]),
                       np.ascontiguousarray(table["size"][order]), labelled=label is not None)
    refs = PathTable([str(i) for i in range(beton.samples)])
    if label is None:  # every image without a label: a pool for --unlabeled (data/__init__ refuses it as --data)
        return Listing("", refs, np.full(beton.samples, -1, np.int64), [""] * beton.samples, [beton.path], "ffcv",
                       store)
    labels = np.asarray(beton.metadata()[f"f{label}"], np.int64)
    if len(labels) and labels.min() < 0:
        raise HardenError(f"{str(path)!r}: field {beton.names[label]!r} holds {int(labels.min())}, not a class index.")
    return Listing("", refs, labels, None, [beton.path], "ffcv", store)


def beton_files(path: Path) -> list[Path] | None:
    if path.is_file():
        return [path] if path.suffix.lower() in EXT else None
    return (files_ending(path, EXT, LOOK) or None) if path.is_dir() else None


def ffcv_source(path: Path) -> OnDisk | None:
    """OnDisk of the FFCV files `path` gives (one, or a folder's: `train_500_0.50_90.ffcv` beside `val_...`), split by
    the split word in their names; None where there are none. One file a split."""
    files = beton_files(path)
    if files is None:
        return None
    chosen = split_files(files)
    several = next((v for v in chosen.values() if len(v) > 1), None)
    if several:
        few = ", ".join(f.name for f in several[:3])
        raise HardenError(f"{str(path)!r} holds {len(several)} FFCV files for one split ({few}): give one of them as "
                          "--data, or name them by split (train_..., val_...).")
    return listed_once(path, chosen, lambda files: list_beton(files[0]), "ffcv")
