"""MXNet RecordIO image files (`.rec`, as `im2rec.py` packs them: GluonCV's ImageNet, SageMaker's image
classification), read without MXNet: the dmlc framing (magic 0xced7230a, a length word whose top three bits mark a
record split where its data held the magic, padding to four bytes) around an image record (flag, float label, two
ids, then the encoded image; with flag > 0, that many float labels come first).

A split is listed by walking the framing once, reading each record's 24-byte header for its label and seeking past
its image (the `.idx` file beside it is not needed); a batch then reads its records at their offsets."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..errors import HardenError
from .sources import Listing, OnDisk, PathTable, _handle, files_ending, listed_once, split_files
from .tfrecord import is_encoded_image

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2 (mxnet.recordio.IRHeader)
LOOK = 1000  # entries of a folder looked at for .rec files


def is_recordio(path: Path) -> bool:
    from ..foreign_formats import _head
    return path.is_file() and _head(path, 8)[:4] == MAGIC_BYTES


def _frame_head(head: bytes, where: str, at: int) -> tuple[int, int]:
    """(continuation flag, length) of the frame whose 8-byte head is `head`, at byte `at`: dmlc's magic, then a word
    of 3 flag bits and 29 length bits."""
    if len(head) < 8 or head[:4] != MAGIC_BYTES:
        raise HardenError(f"{where}: no RecordIO record at byte {at} (a damaged or truncated file).")
    word = struct.unpack("<I", head[4:])[0]
    return word >> 29, word & ((1 << 29) - 1)


def _frames(f, where: str, start: int = 0):
    """(offset of its first frame, data) of each record from `start`, split records joined as dmlc joins them."""
    f.seek(start)
    at = start
    while True:
        head = f.read(8)
        if not head:
            return
        first = at
        parts = []
        while True:
            cflag, length = _frame_head(head, where, at)
            data = f.read(length)
            if len(data) < length:
                raise HardenError(f"{where}: the record at byte {at} runs past the end of the file (truncated).")
            f.read(-length % 4)
            at += 8 + length + (-length % 4)
            parts.append(data)
            if cflag in (0, 3):
                break
            head = f.read(8)
        yield first, MAGIC_BYTES.join(parts)


def _split_image(data: bytes, where: str) -> tuple[list[float], bytes]:
    """(labels, image bytes) of an image record."""
    if len(data) < HEADER.size:
        raise HardenError(f"{where}: a record of {len(data)} bytes is shorter than an image record's header.")
    flag, label, _, _ = HEADER.unpack_from(data)
    if flag == 0:
        return [label], data[HEADER.size:]
    end = HEADER.size + 4 * flag
    return list(struct.unpack_from(f"<{flag}f", data, HEADER.size)), data[end:]


def read_record(shard: str, offset: int) -> bytes:
    """The image bytes of the record at `offset` (one open handle per file and process)."""
    f = _handle(shard)
    _, data = next(_frames(f, shard, offset))
    return _split_image(data, f"{shard} at byte {offset}")[1]


def list_records(files: list[Path]) -> Listing:
    """Every image record of `files` (one split) and its label: read header by header, images skipped."""
    from ..runtime import progress_if
    refs: list[str] = []
    labels: list[int] = []
    total = sum(f.stat().st_size for f in files)
    with progress_if(total > 2 ** 30, "listing RecordIO files", len(files)) as advance:
        for si, path in enumerate(files):
            with open(path, "rb") as f:
                for k, (at, values, image_size, image_head) in enumerate(_headers(f, str(path))):
                    if image_size < 0:
                        raise HardenError(f"{str(path)!r}: record {k} is not an image record as im2rec packs them "
                                          f"(first bytes {image_head[:8].hex()}: a header naming more labels than the "
                                          "record holds); harden reads im2rec's image records.")
                    if image_size == 0:  # InsightFace's index record (id 0: the ranges of ids), no image
                        continue
                    if len(values) != 1:
                        raise HardenError(f"{str(path)!r}: record {k} has {len(values)} labels; harden evaluates "
                                          "classification, one label per image.")
                    if k < 8 and not is_encoded_image(image_head):
                        raise HardenError(f"{str(path)!r}: record {k} holds no encoded image after its header (first "
                                          f"bytes {image_head[:8].hex()}); harden reads im2rec's image records.")
                    v = values[0]
                    if v != int(v) or v < 0:
                        raise HardenError(f"{str(path)!r}: record {k}'s label is {v:g}, not a class index.")
                    refs.append(f"{si}:{at}:0:record {k}")
                    labels.append(int(v))
            advance(1)
    if not refs:
        raise HardenError(f"The RecordIO file(s) {', '.join(str(f) for f in files[:3])} hold no image records.")
    return Listing("", PathTable(refs), np.asarray(labels, np.int64), None, [str(f) for f in files], "recordio")


def _headers(f, where: str):
    """Each record's (offset, labels, image size, the image's first 16 bytes), reading only its header and those
    bytes (the rest is seeked over); labels are [] beyond one (their count is what matters: more is refused)."""
    at = 0
    size = os.fstat(f.fileno()).st_size
    while at < size:
        f.seek(at)
        cflag, length = _frame_head(f.read(8), where, at)
        if cflag != 0:  # a record split where its data held the magic: read whole (rare)
            _, data = next(_frames(f, where, at))
            labels, image = _split_image(data, f"{where} at byte {at}")
            yield at, labels, len(image), image[:16]
            at = f.tell()
            continue
        if at + 8 + length > size:
            raise HardenError(f"{where}: the record at byte {at} runs past the end of the file (truncated).")
        data = f.read(min(length, HEADER.size + 4 + 16))
        if length < HEADER.size:
            raise HardenError(f"{where}: the record at byte {at} ({length} bytes) is shorter than an image record's "
                              "header.")
        flag, label, _, _ = HEADER.unpack_from(data)
        start = HEADER.size + 4 * flag
        labels = [label] if flag == 0 else list(struct.unpack_from("<f", data, HEADER.size)) if flag == 1 \
            else [float("nan")] * flag
        head16 = data[start:start + 16] if flag <= 1 else b""
        yield at, labels, length - start, head16 if start <= length else data[:16]  # < 0: not an image record
        at += 8 + length + (-length % 4)


def recordio_files(path: Path) -> list[Path] | None:
    if path.is_file():
        return [path] if is_recordio(path) else None
    if not path.is_dir():
        return None
    return [f for f in files_ending(path, (".rec",), LOOK) if is_recordio(f)] or None


def recordio_source(path: Path) -> OnDisk | None:
    """OnDisk of the .rec files `path` gives (one, or a folder's), split by the split word in their names
    (`train.rec`, `val.rec`; `imagenet1k-train-0000.rec`); None where there are none."""
    files = recordio_files(path)
    if files is None:
        return None
    return listed_once(path, split_files(files), lambda shards: list_records(sorted(shards)), "recordio")
