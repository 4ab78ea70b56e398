"""TensorFlow's TFRecord files of tf.train.Example records, read in place without TensorFlow: a prepared TensorFlow
Datasets folder (`mnist/3.0.1/mnist-train.tfrecord-00000-of-00001` with dataset_info.json and label.labels.txt),
TF-slim's and the TPU models' ImageNet shards (`train-00000-of-01024`: image/encoded, image/class/synset, and a label
counted from 1 with 0 for background), and the files tutorials write (`image` or `image_raw` beside `label`).

Listing reads every record of a split once and keeps where its encoded image lies in the file (`shard:offset:size:
name`, as tar members are kept), so a run later reads only the bytes of the images it uses. Records of raw pixels
(the MNIST tutorial's `image_raw` with height, width and depth) are read whole into arrays, as small sets are. The
framing's length checksums (CRC-32C) are checked; GZIP/ZLIB-compressed files cannot be read in place and are refused
with the command that decompresses them."""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import HardenError
from ..foreign_formats import _head
from .sources import Columns, Listing, OnDisk, PathTable, is_skipped_dir, pick_splits, split_word

# `mnist-train.tfrecord-00000-of-00001` (TensorFlow Datasets), `data.tfrecords`, `x.tfrec`, `train.record` (the
# object-detection API's name), and TF-slim's unsuffixed `train-00000-of-01024`
SHARD_NAME = re.compile(r"(\.tfrecords?|\.tfrec|\.records?)(-\d+-of-\d+)?$|^[\w.-]*-\d{5}-of-\d{5}$", re.I)
ARRAY_RECORD = re.compile(r"\.array_record(-\d+-of-\d+)?$")  # TensorFlow Datasets' other file format
VERSION = re.compile(r"\d+\.\d+\.\d+$")  # TensorFlow Datasets' version folders
IMAGE_KEYS = ("image", "image/encoded", "image_raw", "img", "img_raw", "encoded", "image_bytes", "jpeg", "jpg", "png",
              "image/raw", "raw_image")
LABEL_KEYS = ("label", "image/class/label", "labels", "class", "class_id", "target", "category", "category_id", "y",
              "image/label", "label_id")
NAME_KEYS = ("image/class/synset",)  # TF-slim's ImageNet: the synset names the class whatever the label's counting
SIZE_KEYS = {"height": ("height", "image/height", "rows", "h"), "width": ("width", "image/width", "cols", "w"),
             "depth": ("depth", "channels", "image/channels", "image/depth", "c")}
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP")
GZIP_MAGIC = b"\x1f\x8b"
ZLIB_MAGIC = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


# ---------------------------------------------------------------- the record framing

def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord frames use it; only 8-byte lengths go through it here (Python is slow)."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _header_ok(head: bytes) -> bool:
    return len(head) >= 12 and struct.unpack("<I", head[8:12])[0] == masked_crc(head[:8])


def is_tfrecord(path: Path) -> bool:
    """A TFRecord file: its first record's length checksum holds (any name), or a TFRecord name and no bytes."""
    if not path.is_file():
        return False
    head = _head(path, 12)
    return _header_ok(head) or (not head and bool(SHARD_NAME.search(path.name)))


def refuse_compressed(path: Path) -> None:
    """A TFRecord name over GZIP or ZLIB bytes (TFRecordOptions' compression): refused with the way to plain records."""
    if not path.is_file() or not SHARD_NAME.search(path.name.removesuffix(".gz").removesuffix(".zz")):
        return
    head = _head(path, 2)
    if head == GZIP_MAGIC:
        raise HardenError(f"{str(path)!r} is a GZIP-compressed TFRecord file: harden reads records in place, which "
                          f"compression rules out. Decompress it once (gunzip -c {path.name} > "
                          f"{path.name.removesuffix('.gz')}.tfrecord) and pass the plain file.")
    if head in ZLIB_MAGIC:
        raise HardenError(f"{str(path)!r} is a ZLIB-compressed TFRecord file: harden reads records in place, which "
                          "compression rules out. Decompress it once (python -c \"import sys, zlib; sys.stdout.buffer."
                          f"write(zlib.decompress(open('{path.name}', 'rb').read()))\" > plain.tfrecord) and pass the "
                          "plain file.")


def records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset of the record's data in the file, the data) of every record, its length's checksum checked."""
    at = 0
    with path.open("rb", buffering=1 << 20) as f:
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12 or not _header_ok(head):
                raise HardenError(f"{str(path)!r} is not a readable TFRecord file: the record header at byte {at:,} "
                                  f"{'is cut short' if len(head) < 12 else 'fails its checksum'} (a damaged or "
                                  "truncated file, or not a TFRecord file).")
            length = struct.unpack("<Q", head[:8])[0]
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise HardenError(f"{str(path)!r} is truncated: its record at byte {at:,} holds {length:,} bytes "
                                  "and the file ends before them.")
            yield at + 12, data
            at += 16 + length


# ---------------------------------------------------------------- tf.train.Example, from its wire format

def _varint(b: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        x = b[i]
        i += 1
        result |= (x & 0x7F) << shift
        if x < 0x80:
            return result, i
        shift += 7


def _fields(b: bytes, i: int, end: int) -> Iterator[tuple[int, int, object]]:
    """A message's (field number, wire type, value) in b[i:end]: a varint's value, a length-delimited field's
    (start, end), a fixed field's bytes."""
    while i < end:
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            n, i = _varint(b, i)
            yield number, wire, (i, i + n)
            i += n
        elif wire == 0:
            v, i = _varint(b, i)
            yield number, wire, v
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, b[i:i + size]
            i += size
        else:
            raise ValueError(f"wire type {wire} at byte {i}")
    if i != end:
        raise ValueError("a field runs past its message")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(b: bytes, span: tuple[int, int]) -> tuple[str, list]:
    """One Feature: ("bytes", [(start, end), ...]) | ("int64", [ints]) | ("float", [floats]) | ("none", [])."""
    for number, wire, lst in _fields(b, *span):
        if wire != 2:
            continue
        if number == 1:  # BytesList
            return "bytes", [x for n, w, x in _fields(b, *lst) if n == 1 and w == 2]
        if number == 2:  # FloatList: packed, or one fixed32 per value
            out: list = []
            for n, w, x in _fields(b, *lst):
                if n == 1 and w == 2:
                    out += struct.unpack(f"<{(x[1] - x[0]) // 4}f", b[x[0]:x[1]])
                elif n == 1 and w == 5:
                    out.append(struct.unpack("<f", x)[0])
            return "float", out
        if number == 3:  # Int64List: packed varints, or one varint per value
            out = []
            for n, w, x in _fields(b, *lst):
                if n == 1 and w == 2:
                    i, end = x
                    while i < end:
                        v, i = _varint(b, i)
                        out.append(_signed(v))
                elif n == 1 and w == 0:
                    out.append(_signed(x))
            return "int64", out
    return "none", []


def parse_example(b: bytes, keys: set[str] | None = None) -> dict[str, tuple[str, list]]:
    """A serialized tf.train.Example's features (only `keys`, when given): bytes values as spans of `b`."""
    out: dict[str, tuple[str, list]] = {}
    for number, wire, span in _fields(b, 0, len(b)):
        if number != 1 or wire != 2:  # Example.features
            continue
        for n2, w2, entry in _fields(b, *span):
            if n2 != 1 or w2 != 2:  # Features.feature: map entries of key (1) and Feature (2)
                continue
            key, value = None, None
            for n3, w3, x in _fields(b, *entry):
                if n3 == 1 and w3 == 2:
                    key = b[x[0]:x[1]].decode("utf-8", "replace")
                elif n3 == 2 and w3 == 2:
                    value = x
            if key is not None and (keys is None or key in keys):
                out[key] = _feature(b, value) if value is not None else ("none", [])
    return out


def _parsed(path: Path, k: int, data: bytes, keys: set[str] | None = None) -> dict[str, tuple[str, list]]:
    try:
        return parse_example(data, keys)
    except (ValueError, IndexError, struct.error) as e:
        raise HardenError(f"{str(path)!r}: record {k} is not a tf.train.Example ({e}); harden reads TFRecord files "
                          "of Example records (TensorFlow Datasets', TF-slim's, tf.io.TFRecordWriter's).") from None


# ---------------------------------------------------------------- which features are the image and the label

def is_encoded_image(data: bytes) -> bool:
    """Whether bytes begin as an image file does (JPEG, PNG, GIF, BMP, TIFF, JPEG 2000, WebP): what an archive's
    value holds when it holds one."""
    return data.startswith(IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


@dataclass(frozen=True)
class Plan:
    """Which features of a split's records hold what, decided on its first record."""
    image: str
    label: str | None = None  # int64 class indices, or bytes holding a class's name
    label_kind: str = "none"  # index | text | none
    names: tuple[str, ...] | None = None  # TensorFlow Datasets' ClassLabel names: index -> name
    raw_shape: tuple[str, str, str | None] | None = None  # raw pixels: the features giving height, width, depth


def _describe(feats: dict[str, tuple[str, list]]) -> str:
    return ", ".join(f"{k} ({kind}, {len(v)} value{'s' * (len(v) != 1)})" for k, (kind, v) in sorted(feats.items()))


def _size_keys(feats: dict) -> tuple[str, str, str | None] | None:
    found = {what: next((k for k in keys if feats.get(k, ("",))[0] == "int64" and len(feats[k][1]) == 1), None)
             for what, keys in SIZE_KEYS.items()}
    return (found["height"], found["width"], found["depth"]) if found["height"] and found["width"] else None


def plan_for(path: Path, first: bytes, info: "DatasetInfo | None", columns: Columns | None = None) -> Plan:
    feats = _parsed(path, 0, first)
    spans = {k: v for k, (kind, v) in feats.items() if kind == "bytes" and v}
    where = f"the records of {str(path)!r}"
    asked_image = columns.pick("image", sorted(feats), where) if columns else None
    asked_label = columns.pick("label", sorted(feats), where) if columns else None
    if asked_label:
        info = DatasetInfo(info.name if info else "", info.image if info else None, asked_label,
                           info.names if info is not None and info.label == asked_label else None)
    # --image-column: that feature or none; else the supervised key, the usual names, any feature of image bytes
    wanted = [asked_image] if asked_image else [info.image, *IMAGE_KEYS] if info is not None and info.image \
        else list(IMAGE_KEYS)
    image = next((k for k in wanted if k in spans and is_encoded_image(first[slice(*spans[k][0])])), None)
    if image is None and not asked_image:
        image = next((k for k in sorted(spans) if is_encoded_image(first[slice(*spans[k][0])])), None)
    raw = None
    if image is None:
        shape = _size_keys(feats)
        raw_key = next((k for k in wanted if k in spans), None)
        if shape is not None and raw_key is not None:
            h, w = feats[shape[0]][1][0], feats[shape[1]][1][0]
            c = feats[shape[2]][1][0] if shape[2] else 1
            start, end = spans[raw_key][0]
            if h * w * c == end - start:
                image, raw = raw_key, shape
        if image is None:
            raise HardenError(f"{str(path)!r}: its records hold no encoded image harden recognises (their features: "
                              f"{_describe(feats)}). harden reads an Example's image as a PNG/JPEG/... file's bytes "
                              f"(TensorFlow Datasets' Image feature, image/encoded), or as raw uint8 pixels with "
                              "height, width and depth features beside them.")
    if len(spans[image]) > 1:
        raise HardenError(f"{str(path)!r}: the feature {image!r} holds {len(spans[image])} images per record; harden "
                          "reads one image per record.")
    if info is not None and info.label and info.label in feats:
        kind = feats[info.label][0]
        return Plan(image, info.label, "index" if kind == "int64" else "text", info.names, raw)
    label = next((k for k in NAME_KEYS if feats.get(k, ("",))[0] == "bytes"), None) or \
        next((k for k in LABEL_KEYS if feats.get(k, ("",))[0] in ("int64", "bytes")), None)
    if label is None:
        return Plan(image, None, "none", None, raw)
    return Plan(image, label, "index" if feats[label][0] == "int64" else "text", None, raw)


@dataclass(frozen=True)
class DatasetInfo:
    """What a TensorFlow Datasets folder says of itself: its name, supervised keys and class names."""
    name: str
    image: str | None
    label: str | None
    names: tuple[str, ...] | None


def dataset_info(folder: Path, asked_label: str | None = None) -> DatasetInfo | None:
    """dataset_info.json (the supervised keys: older files `{"input", "output"}`, newer a tuple of feature keys) and
    the ClassLabel's `<feature>.labels.txt` beside it; None where there is none."""
    f = folder / "dataset_info.json"
    if not f.is_file():
        return None
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        from ..runtime import warn
        warn(f"{f}: unreadable ({type(e).__name__}); its records' image and label are found by their features' names.")
        return None
    keys = meta.get("supervisedKeys") or {}
    image, label = keys.get("input"), keys.get("output")
    items = (keys.get("tuple") or {}).get("items") or []
    if items and len(items) == 2:
        image, label = items[0].get("featureKey") or image, items[1].get("featureKey") or label
    label = asked_label or label  # --label-column: another ClassLabel (CIFAR-100's coarse_label), its names file
    names = None
    for candidate in ([label] if label else []) + ["label"]:
        txt = folder / f"{candidate}.labels.txt"
        if txt.is_file():
            names = tuple(n.strip() for n in txt.read_text(encoding="utf-8").splitlines() if n.strip())
            label = label or candidate
            break
    return DatasetInfo(str(meta.get("name") or folder.parent.name), image, label, names)


# ---------------------------------------------------------------- a split's listing

def list_records(files: list[Path], info: DatasetInfo | None, columns: Columns | None = None) -> Listing:
    """Every record of `files` (one split): where its image's bytes lie, and its label."""
    from ..runtime import progress_if
    from .tables import _unique
    first = next((data for f in files for _, data in records(f)), None)
    if first is None:
        raise HardenError(f"The TFRecord file(s) {', '.join(str(f) for f in files[:3])} hold no records.")
    plan = plan_for(files[0], first, info, columns)
    if plan.raw_shape is not None:
        raise HardenError(f"{str(files[0])!r} holds raw pixels (the feature {plan.image!r} with its height and width "
                          "beside it), which are read into memory as --data, not listed.")
    order = _unique(list(plan.names)) if plan.names else None
    keys = {plan.image} | ({plan.label} if plan.label else set())
    refs, ints, texts = [], [], []
    with progress_if(len(files) > 4, "listing TFRecord shards", len(files)) as advance:
        for si, path in enumerate(files):
            for k, (at, data) in enumerate(records(path)):
                feats = _parsed(path, k, data, keys)
                kind, spans = feats.get(plan.image, ("none", []))
                if kind != "bytes" or len(spans) != 1:
                    raise HardenError(f"{str(path)!r}: record {k} has {len(spans) if kind == 'bytes' else 'no'} "
                                      f"image(s) in {plan.image!r}, where the first record has one.")
                start, end = spans[0]
                refs.append(f"{si}:{at + start}:{end - start}:record {k}")
                kind, values = feats.get(plan.label, ("none", [])) if plan.label else ("none", [])
                if len(values) > 1:
                    raise HardenError(f"{str(path)!r}: record {k} has {len(values)} labels in {plan.label!r}; harden "
                                      "evaluates classification, one label per image.")
                if not values:
                    ints.append(-1)
                    texts.append("")
                elif kind == "int64":
                    ints.append(int(values[0]))
                else:
                    texts.append(data[slice(*values[0])].decode("utf-8", "replace").strip())
            advance(1)
    if plan.label_kind == "text" or plan.label is None:
        names = texts if plan.label is not None else [""] * len(refs)
        return Listing("", PathTable(refs), np.zeros(len(refs), np.int64), names, shards=[str(f) for f in files],
                       what="tfrecord")
    labels = np.asarray(ints, np.int64)
    if order is not None:
        bad = labels[labels >= len(order)]
        if len(bad):
            raise HardenError(f"{files[0].parent}: a record's {plan.label} is {int(bad[0])}, beyond the "
                              f"{len(order)} class names of {plan.label}.labels.txt.")
        names = [order[v] if v >= 0 else "" for v in labels]
        return Listing("", PathTable(refs), np.zeros(len(refs), np.int64), names, shards=[str(f) for f in files],
                       what="tfrecord")
    if (labels < 0).any():
        return Listing("", PathTable(refs), np.zeros(len(refs), np.int64), [str(v) if v >= 0 else "" for v in labels],
                       shards=[str(f) for f in files], what="tfrecord")
    return Listing("", PathTable(refs), labels, None, shards=[str(f) for f in files], what="tfrecord")


# ---------------------------------------------------------------- finding the files

LOOK = 1000  # entries of a folder looked at before deciding it holds no shards (a flat folder of a million images)


def _shards_at(folder: Path) -> list[Path]:
    entries = []
    try:
        with os.scandir(folder) as it:
            for n, e in enumerate(it):
                entries.append(e)
                if n == LOOK and not any(SHARD_NAME.search(x.name) or ARRAY_RECORD.search(x.name) for x in entries):
                    return []
    except OSError:
        return []
    entries.sort(key=lambda e: e.name)
    named = [Path(e.path) for e in entries if e.is_file() and SHARD_NAME.search(e.name)
             and not ARRAY_RECORD.search(e.name)]
    for p in named:
        refuse_compressed(p)
    if not named and any(ARRAY_RECORD.search(e.name) for e in entries if e.is_file()):
        raise HardenError(f"{str(folder)!r} holds TensorFlow Datasets' ArrayRecord files (a riegeli format harden does "
                          "not read). Prepare the dataset as TFRecords (tfds.builder(name, file_format='tfrecord')"
                          ".download_and_prepare()) and pass that folder.")
    return [p for p in named if is_tfrecord(p)]


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir() and not is_skipped_dir(e.name)
                      and not e.name.startswith("incomplete."))  # TensorFlow Datasets' unfinished preparations
    except OSError:
        return []


def _newest_version(folder: Path) -> Path | None:
    """A TensorFlow Datasets dataset (or config) folder's newest version folder holding records."""
    versions = [d for d in _subfolders(folder) if VERSION.match(d.name) and _shards_at(d)]
    return max(versions, key=lambda d: tuple(int(p) for p in d.name.split("."))) if versions else None


def _records_folder(path: Path) -> Path | None:
    """The folder of records `path` stands for: itself, its newest version (a TensorFlow Datasets dataset folder), or
    its one configuration's newest version; several configurations are refused by name."""
    if _shards_at(path):
        return path
    version = _newest_version(path)
    if version is not None:
        return version
    subs = _subfolders(path)
    if not subs or _newest_version(subs[0]) is None:  # only the first is looked into: a class tree is never walked
        return None
    configs = [d for d in subs if _newest_version(d) is not None]
    if len(configs) > 1:
        raise HardenError(f"{str(path)!r} holds the TFRecords of several TensorFlow Datasets datasets or "
                          f"configurations ({', '.join(d.name for d in configs[:8])}{', ...' if len(configs) > 8 else ''}"
                          "); pass the folder of the one to use.")
    return _newest_version(configs[0])


def tfrecord_files(path: Path) -> tuple[Path, list[Path]] | None:
    """(the folder, its TFRecord files) at `path` (a file or a folder), or None."""
    if path.is_file():
        refuse_compressed(path)
        return (path.parent, [path]) if is_tfrecord(path) else None
    if not path.is_dir():
        return None
    folder = _records_folder(path)
    return (folder, _shards_at(folder)) if folder is not None else None


def _splits(files: list[Path]) -> dict[str, list[Path]]:
    """By the split word in each file's name (`mnist-train.tfrecord-...`, `validation-00000-of-00128`)."""
    by_word: dict[str, list[Path]] = {}
    for f in files:
        name = re.sub(r"-\d+-of-\d+$", "", f.name)
        by_word.setdefault(split_word(name.split(".tfrecord")[0]) or split_word(name) or "", []).append(f)
    return pick_splits(by_word)


def tfrecord_source(path: Path, columns: Columns | None = None, files: list[Path] | None = None) -> OnDisk | None:
    """OnDisk of TFRecord files of encoded images; None where `path` holds no TFRecord files. `files`: the ones a
    pattern named (shard_patterns.py), `path` being the pattern."""
    found = tfrecord_files(path) if files is None else (files[0].parent, files)
    if found is None:
        return None
    folder, files = found
    info = dataset_info(folder, columns.label if columns else None)
    chosen = _splits(files)
    cache: dict[str, Listing] = {}

    def lister(split: str):
        def get() -> Listing:
            if split not in cache:
                cache[split] = list_records(sorted(chosen[split]), info, columns)
            return cache[split]
        return get
    listers = {k: lister(k) for k in chosen}
    order = tuple(info.names) if info is not None and info.names else None

    def names() -> list[str] | None:
        if order is not None:
            return list(order)
        found_names: set[str] = set()
        for k in sorted(chosen, key=lambda k: k == "train"):  # the evaluation split first: eval never lists train
            lst = listers[k]()
            if lst.names is None:
                return None
            found_names |= set(lst.names)
        return sorted(found_names)
    from ..runtime import info as say
    if info is not None:
        say(f"{path}: TensorFlow Datasets' {info.name} ({folder.name}), {' and '.join(sorted(chosen))} read from "
            f"{len(files)} TFRecord file{'s' * (len(files) != 1)}")
    return OnDisk(str(path), listers, "tfrecord", names, order,
                  "TensorFlow Datasets' label.labels.txt" if order else "its ClassLabel names")


# ---------------------------------------------------------------- raw pixels, into memory

def raw_tfrecords(path: Path, columns: Columns | None = None):
    """ImageData of TFRecord files whose images are raw uint8 pixels (with height, width and depth features); None
    where `path` holds no TFRecords or their images are encoded files."""
    found = tfrecord_files(path)
    if found is None:
        return None
    folder, files = found
    info = dataset_info(folder, columns.label if columns else None)
    first = next((data for f in files for _, data in records(f)), None)
    if first is None or plan_for(files[0], first, info, columns).raw_shape is None:
        return None
    from .arrays import _finish
    chosen = _splits(files)
    split_arrays = {}
    for split, paths in chosen.items():
        xs, ys = [], []
        for p in sorted(paths):
            plan = None
            for k, (_, data) in enumerate(records(p)):
                plan = plan or plan_for(p, data, info, columns)
                if plan.raw_shape is None:
                    raise HardenError(f"{str(p)!r}: its records hold encoded images where the other files' hold raw "
                                      "pixels; a dataset's files share one layout.")
                feats = _parsed(p, k, data)
                h_key, w_key, c_key = plan.raw_shape
                h, w = feats[h_key][1][0], feats[w_key][1][0]
                c = feats[c_key][1][0] if c_key else 1
                if xs and (h, w, c) != xs[0].shape:
                    raise HardenError(f"{str(p)!r}: record {k} is {h}x{w}x{c}, the first {'x'.join(map(str, xs[0].shape))}"
                                      "; raw pixels are read as one array, which needs one size.")
                start, end = feats[plan.image][1][0]
                if end - start != h * w * c:
                    raise HardenError(f"{str(p)!r}: record {k} holds {end - start} bytes of pixels for {h}x{w}x{c}.")
                xs.append(np.frombuffer(data, np.uint8, h * w * c, start).reshape(h, w, c))
                label = feats.get(plan.label, ("none", []))[1] if plan.label else []
                if plan.label_kind != "index" or len(label) != 1:
                    raise HardenError(f"{str(p)!r}: record {k} has no class index in "
                                      f"{plan.label or 'a label feature'}; raw pixels are read with integer labels.")
                ys.append(int(label[0]))
        split_arrays[split] = (np.stack(xs), np.asarray(ys, np.int64))
    names = list(info.names) if info is not None and info.names else None
    if "train" in split_arrays:
        (x, y), (xt, yt) = split_arrays["train"], split_arrays["test"]
        return _finish(x, y, xt, yt, str(path), names)
    x, y = split_arrays["all"]
    return _finish(x[:0], y[:0], x, y, str(path), names)
