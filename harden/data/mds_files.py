"""MosaicML Streaming's MDS datasets (`streaming.MDSWriter`: `index.json` beside `shard.00000.mds`, ...; Mosaic's
ImageNet recipe writes columns `x: jpeg`, `y: int`), read without streaming: a folder holding an index.json is one
split; a folder of split folders (train/ and val/, each with its index.json) gives both.

A shard is a sample count, the samples' offsets, the writer's config and the samples, each the sizes of its
variable-size columns then the columns in order. Listing reads each sample's sizes and its label, nothing of its
image. An image is a `jpeg` or `png` column's bytes, or a `pil` column's raw pixels (handed on as an in-memory .npy:
array_images.py reads it); the label an integer column (`y`, `label`, ... among several). Shards written compressed
(`compression='zstd'`, gzip, bz2) and not yet decompressed by streaming are decompressed once into a temporary folder
for the run, said with their size (reading a label needs its shard whole); the user's folder is never written to."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HardenError
from .array_images import npy_bytes
from .sources import EVAL_FOLDERS, TRAIN_FOLDERS, Listing, OnDisk, PathTable, label_among, listed_once, pick_splits

INDEX = "index.json"
IMAGE_ENCODINGS = ("jpeg", "png", "pil")
INT_ENCODINGS = {"int": "<i8", "int8": "i1", "int16": "<i2", "int32": "<i4", "int64": "<i8", "uint8": "u1",
                 "uint16": "<u2", "uint32": "<u4", "uint64": "<u8"}
IMAGE_NAMES = ("x", "image", "img", "jpg", "jpeg", "png")
_SPILL: list[str] = []  # this process's folder of decompressed shards


def _index(folder: Path) -> dict | None:
    try:
        found = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return None
    shards = found.get("shards") if isinstance(found, dict) else None
    return found if isinstance(shards, list) and shards and all(isinstance(s, dict) for s in shards) else None


def is_mds_folder(path: Path) -> bool:
    index = _index(path) if path.is_dir() else None
    return index is not None and any(s.get("format") == "mds" for s in index["shards"])


def _decompress(path: Path, compression: str) -> bytes:
    algorithm = compression.split(":", 1)[0]
    data = path.read_bytes()
    if algorithm == "zstd":
        import zstandard
        stream = zstandard.ZstdDecompressor().decompressobj()
        out = stream.decompress(data)
        if not stream.eof:  # a frame cut short decompresses as far as it goes, silently
            raise EOFError("the zstd frame ends early")
        return out
    if algorithm == "gz":
        import gzip
        return gzip.decompress(data)
    if algorithm == "bz2":
        import bz2
        return bz2.decompress(data)
    raise HardenError(f"{str(path)!r} is compressed with {algorithm!r}, which harden does not read (zstd, gz, bz2): "
                      "decompress the dataset with streaming (a pass over StreamingDataset(local=...) leaves raw "
                      "shards), or write it with another compression.")


def _raw_shard(folder: Path, shard: dict) -> Path:
    """The shard's uncompressed file: the folder's own (written raw, or decompressed there by streaming), else one
    decompressed into this run's temporary folder."""
    raw = (shard.get("raw_data") or {}).get("basename")
    if raw and (folder / raw).is_file():
        return folder / raw
    zipped = (shard.get("zip_data") or {}).get("basename")
    if not zipped or not (folder / zipped).is_file():
        raise HardenError(f"{str(folder)!r}: its index names the shard {raw or zipped!r}, which is not there.")
    if not _SPILL:
        _SPILL.append(tempfile.mkdtemp(prefix="harden-mds-"))
        atexit.register(shutil.rmtree, _SPILL[0], ignore_errors=True)
    out = Path(_SPILL[0]) / f"{abs(hash(str(folder))):x}-{raw or zipped}"
    if not out.is_file():
        tmp = out.with_name(out.name + ".part")
        try:
            raw_bytes = _decompress(folder / zipped, str(shard.get("compression") or ""))
        except HardenError:
            raise
        except Exception as e:  # each library's own error for a damaged stream (zstandard.ZstdError, OSError, EOFError)
            raise HardenError(f"{str(folder / zipped)!r} does not decompress as its index says "
                              f"({shard.get('compression')}: {type(e).__name__}: {e}): a damaged or truncated shard.") \
                from None
        expected = (shard.get("raw_data") or {}).get("bytes")
        if isinstance(expected, int) and len(raw_bytes) != expected:
            raise HardenError(f"{str(folder / zipped)!r} decompresses to {len(raw_bytes)} bytes where its index says "
                              f"{expected}: a damaged or truncated shard.")
        tmp.write_bytes(raw_bytes)
        os.replace(tmp, out)
    return out


def _columns(folder: Path, shard: dict) -> tuple[list[str], list[str], list[int | None]]:
    names, encodings, sizes = shard.get("column_names"), shard.get("column_encodings"), shard.get("column_sizes")
    if not (isinstance(names, list) and isinstance(encodings, list) and isinstance(sizes, list)
            and len(names) == len(encodings) == len(sizes)):
        raise HardenError(f"{str(folder / INDEX)!r}: a shard without the columns an MDS index gives.")
    return names, encodings, sizes


# streaming's NDArray encoding: a value's dtype code (where the column's encoding names none) and shape dtype code
_NDARRAY_DTYPES = {8: "uint8", 9: "int8", 16: "uint16", 17: "int16", 18: "float16", 32: "uint32", 33: "int32",
                   34: "float32", 64: "uint64", 65: "int64", 66: "float64"}
_SHAPE_DTYPES = {0: "uint8", 1: "uint16", 2: "uint32", 3: "uint64"}


def ndarray_value(encoding: str, value: bytes) -> np.ndarray:
    """An `ndarray[:dtype[:shape]]` column's array: what the encoding leaves out (dtype, shape) leads the value."""
    args = encoding.split(":")[1:]
    at = 0
    if args:
        dtype = args[0]
    else:
        dtype, at = _NDARRAY_DTYPES.get(value[0], ""), 1
        if not dtype:
            raise ValueError(f"an ndarray value of dtype code {value[0]}, which streaming does not write")
    if len(args) == 2:
        shape = tuple(int(v) for v in args[1].split(","))
    else:
        ndim, code = value[at] >> 2, value[at] & 3
        width = 2 ** code
        shape = tuple(int(v) for v in np.frombuffer(value[at + 1:at + 1 + ndim * width], _SHAPE_DTYPES[code]))
        at += 1 + ndim * width
    return np.frombuffer(value[at:], np.dtype(dtype)).reshape(shape)


def _first_is_image(store: MdsStore, column: int) -> bool:
    """Whether a bytes column's first value is an image file, or an ndarray column's first array one image."""
    from .array_images import is_one_image
    from .tfrecord import is_encoded_image
    try:
        value = store.field(0, 0, column)
        if store.encodings[column].startswith("ndarray"):
            a = ndarray_value(store.encodings[column], value)
            return is_one_image(a.shape) and a.dtype.kind in "uif"
        return is_encoded_image(value[:16])
    except (OSError, ValueError, IndexError, HardenError):  # an empty first shard: no image said
        return False


def _pick(names: list[str], encodings: list[str], folder: Path, first: MdsStore) -> tuple[int, int | None]:
    """(image column, label column): a jpeg, png or pil column, else a `bytes` column whose first value is an image
    file's bytes (what a script that stores each file as it was read leaves)."""
    have = ", ".join(f"{n} ({e})" for n, e in zip(names, encodings, strict=True))
    images = [i for i, e in enumerate(encodings) if e in IMAGE_ENCODINGS] or \
        [i for i, e in enumerate(encodings) if (e == "bytes" or e.split(":")[0] == "ndarray")
         and _first_is_image(first, i)]
    images = [i for i in images if names[i].lower() in IMAGE_NAMES] or images
    if not images:
        raise HardenError(f"{str(folder)!r}: no image column among {have}; harden reads jpeg, png and pil columns, "
                          "bytes columns holding image files and ndarray columns of one image a sample.")
    return images[0], label_among(names, [i for i, e in enumerate(encodings) if e in INT_ENCODINGS or e == "str_int"],
                                  str(folder), "column", f"its columns: {have}")


@dataclass
class MdsStore:
    """A split's shards (uncompressed files) and where in a sample its image lies; refs are `shard:sample`."""
    folder: str
    shards: list[str]
    names: list[str]
    encodings: list[str]
    sizes: list[int | None]
    image: int
    labelled: bool = True  # False: no integer column (images alone)
    _fds: dict = field(default_factory=dict, repr=False)  # one open file a shard and process

    def field(self, shard: int, k: int, column: int) -> bytes:
        """One column's value of sample k of a shard: its offset, its variable sizes, then that column's bytes alone
        (three small reads; nothing of the other columns)."""
        key = (os.getpid(), shard)
        fd = self._fds.get(key)
        if fd is None:
            fd = self._fds[key] = os.open(self.shards[shard], os.O_RDONLY)
        variable = sum(1 for s in self.sizes if not s)
        where = os.pread(fd, 4, 4 * (1 + k))
        begin = int(np.frombuffer(where, np.uint32)[0]) if len(where) == 4 else -1
        head = os.pread(fd, 4 * variable, begin) if begin >= 0 else b""
        if begin < 0 or len(head) < 4 * variable:
            raise HardenError(f"{self.shards[shard]}: sample {k} lies past the end of the shard (truncated).")
        head = np.frombuffer(head, np.uint32)
        sizes, v = [], 0
        for s in self.sizes:
            if s:
                sizes.append(int(s))
            else:
                sizes.append(int(head[v]))
                v += 1
        at = begin + 4 * variable + sum(sizes[:column])
        value = os.pread(fd, sizes[column], at)
        if len(value) < sizes[column]:
            raise HardenError(f"{self.shards[shard]}: sample {k} runs past the end of the shard (truncated).")
        return value

    def read(self, ref: str) -> bytes:
        shard, k = (int(v) for v in ref.split(":"))
        value = self.field(shard, k, self.image)
        encoding = self.encodings[self.image]
        if encoding.startswith("ndarray"):  # the array as an .npy (array_images.py reads it as any array image)
            a = ndarray_value(encoding, value)
            return npy_bytes(a.tobytes(), a.shape, a.dtype)
        return value if encoding != "pil" else _pil_as_file(value)  # jpeg, png, bytes: the file as it was

    def location(self, ref: str) -> str:
        shard, k = ref.split(":")
        return f"{self.folder}: shard {shard}, sample {k}"

    def missing_labels_note(self) -> str:
        return f"{self.folder} has no integer column to read as labels (its columns: {', '.join(self.names)})"

    def describe(self) -> str:
        return (f"MosaicML Streaming shards, images from their {self.encodings[self.image]} column "
                f"{self.names[self.image]!r}")


def _pil_as_file(value: bytes) -> bytes:
    """A `pil` column's value ([width, height, mode length: uint32] [mode] [raw pixels]) as an image file's bytes: an
    .npy of the pixels for 8-bit L, RGB and RGBA; a PNG of the image otherwise (PIL's own modes)."""
    import io

    from PIL import Image
    width, height, length = (int(v) for v in np.frombuffer(value[:12], np.uint32))
    mode = value[12:12 + length].decode("utf-8")
    raw = value[12 + length:]
    channels = {"L": 1, "RGB": 3, "RGBA": 4}.get(mode)
    if channels is not None and len(raw) == width * height * channels:
        return npy_bytes(raw, (height, width, channels) if channels > 1 else (height, width), np.dtype(np.uint8))
    out = io.BytesIO()
    Image.frombytes(mode, (width, height), raw).save(out, "PNG")
    return out.getvalue()


def list_mds(folder: Path) -> Listing:
    """Every sample of an MDS split and its label: each sample's column sizes and label read, no image."""
    index = _index(folder)
    if index is None:
        raise HardenError(f"{str(folder)!r} holds no readable MDS {INDEX}.")
    shards = index["shards"]
    formats = sorted({str(s.get("format")) for s in shards})
    if formats != ["mds"]:
        raise HardenError(f"{str(folder)!r}: shards of format {', '.join(formats)}; harden reads MDS shards.")
    names, encodings, sizes = _columns(folder, shards[0])
    if any(_columns(folder, s) != (names, encodings, sizes) for s in shards[1:]):
        raise HardenError(f"{str(folder)!r}: its shards have different columns; harden reads one set of columns a "
                          "split.")
    compressed = [s for s in shards if not ((folder / ((s.get("raw_data") or {}).get("basename") or "")).is_file())]
    if compressed:
        from ..runtime import info
        total = sum(int((s.get("raw_data") or {}).get("bytes") or 0) for s in compressed)
        info(f"{folder}: {len(compressed)} compressed shard(s) decompressed for this run ({total / 2 ** 20:,.1f} MiB "
             "in a temporary folder, removed at exit): listing the labels reads each whole")
    store = MdsStore(str(folder), [str(_raw_shard(folder, s)) for s in shards], names, encodings, sizes, -1)
    store.image, label = _pick(names, encodings, folder, store)
    refs = [f"{si}:{k}" for si, shard in enumerate(shards) for k in range(int(shard.get("samples") or 0))]
    if label is None:  # every image without a label: a pool for --unlabeled (data/__init__ refuses it as --data)
        store.labelled = False
        return Listing("", PathTable(refs), np.full(len(refs), -1, np.int64), [""] * len(refs), [str(folder)], "mds",
                       store)
    labels = []
    for si, shard in enumerate(shards):
        for k in range(int(shard.get("samples") or 0)):
            value = store.field(si, k, label)
            try:
                labels.append(int(value.decode()) if encodings[label] == "str_int" else
                              int(np.frombuffer(value, INT_ENCODINGS[encodings[label]])[0]))
            except (ValueError, UnicodeDecodeError, IndexError):
                raise HardenError(f"{store.location(f'{si}:{k}')}: its {names[label]!r} value {value[:16]!r} is no "
                                  f"{encodings[label]} label.") from None
    y = np.asarray(labels, np.int64)
    if len(y) and y.min() < 0:
        raise HardenError(f"{str(folder)!r}: column {names[label]!r} holds {int(y.min())}, not a class index.")
    return Listing("", PathTable(refs), y, None, [str(folder)], "mds", store)


def mds_source(path: Path) -> OnDisk | None:
    """OnDisk of the MDS split(s) `path` gives: itself (an index.json), or its split folders (train/ and val/, each
    with one); None where it is neither."""
    if not path.is_dir():
        return None
    if is_mds_folder(path):
        chosen = {"all": [path]}
    else:
        splits = {d: [path / d] for d in (*TRAIN_FOLDERS, *EVAL_FOLDERS) if is_mds_folder(path / d)}
        if not splits:
            return None
        chosen = pick_splits(splits)
    return listed_once(path, chosen, lambda folders: list_mds(folders[0]), "mds")
