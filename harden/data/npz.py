"""Arrays of an .npz archive without reading the archive whole: a member stored uncompressed (`np.savez`) is
memory-mapped where it lies in the zip, so a run reads only the rows it indexes (a 10% subset, 500 test images, a
pool's batches); a compressed member (`np.savez_compressed`) cannot be mapped in place, so one larger than
SPILL_BYTES is inflated once into an unlinked temporary file and mapped from there, and a smaller one is read. A
compressed member named in `defer` comes back as a DeferredArray (shape and dtype from its header), inflated only when
a run first touches its pixels: `harden eval` never inflates the training images it does not use (CIFAR-10 as LZMA:
seconds instead of half a minute). Pickled (object) arrays are refused, as `np.load(allow_pickle=False)` refuses them."""
from __future__ import annotations

import lzma
import shutil
import struct
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .base import Shaped

# what zipfile, its decompressors and numpy's .npy reader raise on a damaged, truncated or foreign archive
# (numpy parses a .npy header as a Python literal: a damaged one raises SyntaxError or tokenize's TokenError)
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, struct.error,
               SyntaxError, tokenize.TokenError, NotImplementedError, RuntimeError)  # zipfile: a damaged method, "encrypted"
SPILL_BYTES = 256 << 20  # compressed members above this are inflated to disk, not into memory
MAP_BYTES = 1 << 20  # stored members up to this are simply read (labels, class names)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip local file header (APPNOTE 4.3.7): 30 bytes


class DeferredArray(Shaped):
    """A compressed member not inflated yet: its shape and dtype (read from its .npy header) say what it holds;
    load() inflates it (mapped or read, as read_npz would). Not LazyRows: it is inflated whole, not read by rows."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.name, self.shape, self.dtype = path, name, shape, dtype

    def reshape(self, shape: tuple[int, ...]) -> "DeferredArray":
        if int(np.prod(shape)) != int(np.prod(self.shape)):
            raise ValueError(f"cannot reshape {self.shape} to {shape}")
        return DeferredArray(self.path, self.name, tuple(shape), self.dtype)

    def load(self) -> np.ndarray:
        with zipfile.ZipFile(self.path) as zf:
            return _member(self.path, zf, zf.getinfo(self.name)).reshape(self.shape)


def read_npz(path: str | Path, keys: list[str] | None = None, defer: tuple[str, ...] = ()
             ) -> dict[str, np.ndarray | DeferredArray]:
    """`keys` (all when None) of the archive at `path`, each memory-mapped read-only where it can be; a compressed
    member over MAP_BYTES named in `defer` is a DeferredArray. Raises zipfile.BadZipFile, OSError or ValueError for a
    file that is not a readable archive of plain arrays."""
    path = Path(path)
    out = {}
    with zipfile.ZipFile(path) as zf:
        members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        for key in members if keys is None else [k for k in keys if k in members]:
            info = members[key]
            if key in defer and info.compress_type != zipfile.ZIP_STORED and info.file_size > MAP_BYTES:
                with zf.open(info) as f:
                    shape, _, dtype = _header(f)  # the header is at the start: nothing else is inflated
                out[key] = DeferredArray(path, info.filename, shape, dtype)
            else:
                out[key] = _member(path, zf, info)
    return out


def npz_keys(path: str | Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [i.filename[:-4] for i in zf.infolist() if i.filename.endswith(".npy")]


def _member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as f:
        shape, fortran, dtype = _header(f)
        header_len = f.tell()
        small = info.file_size <= (SPILL_BYTES if info.compress_type != zipfile.ZIP_STORED else MAP_BYTES)
        if small or not shape or 0 in shape:  # np.memmap cannot map zero bytes; a 0-d array is one value
            return np.lib.format.read_array(zf.open(info), allow_pickle=False)
        if info.compress_type != zipfile.ZIP_STORED:
            spill = tempfile.TemporaryFile(prefix="harden-npz-")  # unlinked at once: gone when the map is
            shutil.copyfileobj(f, spill, 16 << 20)
            spill.flush()
            return np.memmap(spill, dtype, "r", 0, shape, "F" if fortran else "C")
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    data_start = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11] + header_len
    return np.memmap(path, dtype, "r", data_start, shape, "F" if fortran else "C")


def _header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:  # 3.0 adds utf-8 field names only; numpy reads it through its private reader (moved in numpy 2)
        impl = getattr(np.lib, "_format_impl", np.lib.format)
        reader = getattr(impl, "_read_array_header", None)
        if reader is None:
            raise ValueError(f".npy format version {version} is not one harden reads")
        shape, fortran, dtype = reader(f, version)
    if dtype.hasobject:
        raise ValueError("it holds pickled (object) arrays, which harden does not load")
    return tuple(shape), bool(fortran), dtype
