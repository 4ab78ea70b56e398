"""LMDB databases of images, read in place with the lmdb library: each entry's value is read when a batch needs it
(every process opens its own read-only environment), never copied out.

Three kinds of value are read, told apart by the first entry's bytes:
- an encoded image file (LSUN as torchvision's `LSUN` reads it: one database per class, `bedroom_train_lmdb/`);
  the class is the database's name less its split word and `lmdb` (several databases), or the folder in the entry's
  key (`n01440764/n01440764_10026.JPEG`), else there is none (fine as `--unlabeled`);
- Caffe's `Datum` message (`convert_imageset`, with `--encoded` or raw pixels, CHW in BGR order), its label inside;
- a pickle of an (image, label) pair or a dict of them (the ImageFolderLMDB scripts' `pickle.dumps((raw_bytes,
  label))`), the image as a file's bytes or a uint8 array; read with only numpy's reconstructors allowed, so nothing
  in it runs. Their `__keys__` / `__len__` entries are skipped.
Values serialised by pyarrow's removed `serialize` (the first folder2lmdb scripts) or by a script's own classes are
refused with what they are. Labels inside values need every value read once to list the database (a progress bar),
as TFRecord files do; a database labelled by its name or its keys is listed from its keys alone."""
from __future__ import annotations

import functools
import io
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HardenError
from .sources import Listing, OnDisk, PathTable, is_skipped_dir, pick_splits, split_word
from .tfrecord import IMAGE_KEYS, LABEL_KEYS, _fields, _signed, is_encoded_image

LMDB_MAGIC = b"\xde\xc0\xef\xbe"  # MDB_MAGIC (0xBEEFC0DE) in the first meta page, at byte 16
DATA_FILE = "data.mdb"
LOOK = 1000  # entries of a folder looked at for databases (a flat folder of a million images is not listed)
# entries scripts keep beside the images: their count, their keys, the class names
META_KEYS = re.compile(rb"^__.*__$|^(num[-_]?samples|length|len|keys|size|num|classes|class_names|names|meta(data)?|"
                       rb"info)$", re.I)


def is_lmdb_file(path: Path) -> bool:
    """An LMDB data file: `data.mdb`, or one written with subdir=False (`train.lmdb`), found by its magic."""
    from ..foreign_formats import _head
    return path.is_file() and _head(path, 20)[16:20] == LMDB_MAGIC


def _database(path: Path) -> Path | None:
    """The database a path is: a folder holding data.mdb, or a single-file database."""
    if path.is_dir():
        return path if (path / DATA_FILE).is_file() and is_lmdb_file(path / DATA_FILE) else None
    if path.is_file() and path.name != "lock.mdb" and not path.name.endswith("-lock"):
        return (path.parent if path.name == DATA_FILE else path) if is_lmdb_file(path) else None
    return None


def lmdb_databases(path: Path) -> list[Path] | None:
    """The databases `path` gives: itself, or the databases among the first entries of its folder (LSUN's
    `bedroom_train_lmdb/`, `train.lmdb` beside `val.lmdb`); None where there are none."""
    own = _database(path)
    if own is not None:
        return [own]
    if not path.is_dir():
        return None
    import itertools
    with os.scandir(path) as entries:
        found = [Path(e.path) for e in itertools.islice(entries, LOOK) if not is_skipped_dir(e.name)]
    dbs = sorted(d for d in map(_database, found) if d is not None)
    return dbs or None


def _open(db: str):
    import lmdb
    try:
        return lmdb.open(db, subdir=os.path.isdir(db), readonly=True, lock=False, readahead=False, meminit=False,
                         max_readers=512)
    except lmdb.Error as e:
        raise HardenError(f"{db!r} is not a readable LMDB database ({e}).") from None


_ENVIRONMENTS: dict[str, object] = {}  # this process's open environments, by database


def _environment(db: str):
    """One read-only environment per database and process, opened when first read."""
    env = _ENVIRONMENTS.get(db)
    if env is None:
        env = _ENVIRONMENTS[db] = _open(db)
    return env


def _close_all() -> None:
    """Before a fork (data-loader workers): an environment must not cross one (LMDB's rule), and the lmdb library
    refuses to open again in the child one its parent holds open, so the parent closes them and each side reopens."""
    envs = list(_ENVIRONMENTS.values())
    _ENVIRONMENTS.clear()
    for env in envs:
        env.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_all)


# ---------------------------------------------------------------- values

def _datum(v: bytes) -> dict | None:
    """Caffe's Datum (channels 1, height 2, width 3, data 4, label 5, float_data 6, encoded 7), or None."""
    out: dict = {}
    try:
        for number, wire, value in _fields(v, 0, len(v)):
            if number in (1, 2, 3, 5, 7) and wire == 0:
                out[{1: "channels", 2: "height", 3: "width", 5: "label", 7: "encoded"}[number]] = value
            elif number == 4 and wire == 2:
                out["data"] = value
            elif number == 6:
                out["float_data"] = True
            else:
                return None
    except (ValueError, IndexError):
        return None
    return out if "data" in out or "float_data" in out else None


class _PlainUnpickler(pickle.Unpickler):
    """Tuples, lists, dicts, bytes, numbers, strings and numpy arrays; nothing else is built (no code runs)."""

    def find_class(self, module, name):
        from .arrays import _ArrayOnlyUnpickler
        if (module, name) in _ArrayOnlyUnpickler.ALLOWED:
            return super().find_class(module, name)
        raise HardenError(f"an entry is a pickle of {module}.{name}, a script's own object: harden reads pickled "
                          "(image, label) pairs and dicts of plain values, and never runs a pickle's code.")


def _unpickled(v: bytes):
    return _PlainUnpickler(io.BytesIO(v), encoding="bytes").load()


def _pair(obj) -> tuple[object, object]:
    """(image, label or None) of an unpickled entry: a pair in either order, or a dict keyed as TFRecords are."""
    if isinstance(obj, dict):
        keys = {(k.decode() if isinstance(k, bytes) else str(k)).lower(): k for k in obj}
        image = next((obj[keys[k]] for k in IMAGE_KEYS + ("data", "x") if k in keys), None)
        label = next((obj[keys[k]] for k in LABEL_KEYS if k in keys), None)
        if image is None:
            raise HardenError(f"an entry is a dict of {', '.join(map(str, list(keys)[:8]))}: no image under a name "
                              "harden knows (image, img, data, ...).")
        return image, label
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        a, b = obj
        return (b, a) if _is_pixels(b) and not _is_pixels(a) else (a, b)
    if _is_pixels(obj):
        return obj, None
    raise HardenError(f"an entry is a pickled {type(obj).__name__}, not an (image, label) pair.")


def _is_pixels(x) -> bool:
    return isinstance(x, (bytes, bytearray)) and len(x) > 16 or isinstance(x, np.ndarray) and x.ndim in (2, 3)


def _label(x) -> int | str | None:
    if x is None:
        return None
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace").strip()
    if isinstance(x, str):
        return x.strip()
    a = np.asarray(x)
    if a.size == 1 and np.issubdtype(a.dtype, np.integer):
        return int(a.reshape(()))
    raise HardenError(f"an entry's label is {type(x).__name__} {str(x)[:40]}: harden reads one class index or name "
                      "an image (classification).")


def _netpbm(pixels: np.ndarray) -> bytes:
    """Raw uint8 pixels (HW or HWC, C 1 or 3) as a PGM/PPM file, which the loader decodes as any image file."""
    a = np.ascontiguousarray(pixels)
    if a.dtype != np.uint8:
        raise HardenError(f"an entry's pixels are {a.dtype}; harden reads uint8 arrays (0-255).")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = np.ascontiguousarray(a[:, :, :3])
    if a.ndim == 2:
        return b"P5\n%d %d\n255\n" % (a.shape[1], a.shape[0]) + a.tobytes()
    if a.ndim == 3 and a.shape[2] == 3:
        return b"P6\n%d %d\n255\n" % (a.shape[1], a.shape[0]) + a.tobytes()
    raise HardenError(f"an entry's pixels have the shape {a.shape}; harden reads HxW or HxWxC (C 1, 3 or 4).")


def _image_bytes(kind: str, v: bytes) -> bytes:
    """The image file a value holds (raw pixels written as one)."""
    if kind == "image":
        return v
    if kind == "datum":
        d = _datum(v)
        if d is None or "data" not in d:
            raise HardenError("an entry is not a Datum of uint8 pixels (float_data Datums are features, not images).")
        data = v[slice(*d["data"])]
        if d.get("encoded"):
            return data
        c, h, w = d.get("channels", 0), d.get("height", 0), d.get("width", 0)
        if c * h * w != len(data) or c not in (1, 3):
            raise HardenError(f"a raw Datum's {len(data)} bytes are not its {c}x{h}x{w} pixels.")
        chw = np.frombuffer(data, np.uint8).reshape(c, h, w)
        return _netpbm(chw[::-1].transpose(1, 2, 0) if c == 3 else chw[0])  # Caffe's BGR (OpenCV's order) -> RGB
    image, _ = _pair(_unpickled(v))
    return bytes(image) if isinstance(image, (bytes, bytearray)) else _netpbm(np.asarray(image))


def _kind(db: str, key: bytes, v: bytes) -> str:
    if is_encoded_image(v):
        return "image"
    if v[:1] == b"\x80":  # a pickle's protocol opcode (protocols 2-5)
        return "pickle"
    if _datum(v) is not None:
        return "datum"
    raise HardenError(f"{db!r}: the entry {key[:60]!r} holds neither an encoded image, a Caffe Datum nor a pickle "
                      f"(first bytes {v[:8].hex()}). Values serialised by pyarrow (the first folder2lmdb scripts' "
                      "dumps_pyarrow) are read by no current pyarrow: write the database again with "
                      "pickle.dumps((image_bytes, label)).")


# ---------------------------------------------------------------- listing

@dataclass
class LmdbStore:
    """The databases of one split and the kind of value each holds; a listing's refs are `database:key` (the key
    decoded with surrogateescape, so any bytes survive)."""
    databases: list[str]
    kinds: list[str] = field(default_factory=list)

    def read(self, ref: str) -> bytes:
        db, key = ref.split(":", 1)
        i = int(db)
        env = _environment(self.databases[i])
        with env.begin(buffers=False) as txn:
            v = txn.get(key.encode("utf-8", "surrogateescape"))
        if v is None:
            raise HardenError(f"{self.databases[i]}: no entry {key!r} (the database changed since it was listed).")
        return _image_bytes(self.kinds[i], v)

    def location(self, ref: str) -> str:
        db, key = ref.split(":", 1)
        return f"{self.databases[int(db)]}:{key}"

    def describe(self) -> str:
        """What its values are, for `harden data`."""
        return ", ".join(dict.fromkeys(KIND_TEXT[k] for k in self.kinds))


KIND_TEXT = {"image": "values are encoded image files", "datum": "values are Caffe Datum messages",
             "pickle": "values are pickled (image, label) pairs"}


def _name_class(db: Path) -> str:
    """LSUN's `bedroom_train_lmdb` -> bedroom: the database's name less its split word and `lmdb`."""
    words = [w for w in re.split(r"[-_.]", db.name) if w and w.lower() not in ("lmdb", "mdb", "db")
             and split_word(w) is None and not w.isdigit()]  # shard numbers (train_0.lmdb) name no class
    return "_".join(words)


def _key_class(key: bytes) -> str | None:
    """The folder of a key that is a path (`n01440764/n01440764_10026.JPEG`), or None."""
    text = key.decode("utf-8", "replace").replace("\\", "/")
    parts = [p for p in text.split("/") if p]
    return parts[-2] if len(parts) >= 2 else None


def list_databases(dbs: list[Path], by_name: bool) -> Listing:
    """Every image entry of `dbs` (one split) and its label: from the values, the database names (`by_name`) or the
    keys' folders."""
    from ..runtime import progress_if
    store = LmdbStore([str(d) for d in dbs])
    refs: list[str] = []
    names: list[str] = []
    ints: list[int] = []
    total = sum(_environment(str(d)).stat()["entries"] for d in dbs)
    with progress_if(total > 20_000, "listing LMDB entries", total) as advance:
        for i, db in enumerate(dbs):
            env = _environment(str(db))
            kind, read_values = None, False
            db_class = _name_class(db) if by_name else None
            with env.begin(buffers=True) as txn:
                cursor = txn.cursor()
                for key, value in cursor:
                    key = bytes(key)
                    if META_KEYS.match(key):
                        continue
                    if kind is None:
                        kind = _kind(str(db), key, bytes(value))
                        read_values = kind != "image"
                    label = None
                    if read_values:
                        v = bytes(value)
                        if kind == "datum":
                            d = _datum(v)
                            if d is None:
                                raise HardenError(f"{str(db)!r}: the entry {key[:60]!r} is not a Datum, where the first is.")
                            label = _signed(d["label"]) if "label" in d else None
                        else:
                            try:
                                label = _label(_pair(_unpickled(v))[1])
                            except HardenError as e:
                                raise HardenError(f"{str(db)!r}: {e}") from None
                            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
                                raise HardenError(f"{str(db)!r}: the entry {key[:60]!r} is not a readable pickle "
                                                  f"({e}).") from None
                    elif by_name:
                        label = db_class
                    else:
                        label = _key_class(key)
                    refs.append(f"{i}:{key.decode('utf-8', 'surrogateescape')}")
                    if isinstance(label, int) and label >= 0:
                        ints.append(label)
                        names.append(str(label))
                    else:  # a name, or no label (a negative index too: Caffe's lists mark unlabelled images -1)
                        ints.append(-1)
                        names.append(label if isinstance(label, str) else "")
                    advance(1)
            store.kinds.append(kind or "image")
    if not refs:
        raise HardenError(f"The LMDB database(s) {', '.join(str(d) for d in dbs[:3])} hold no images.")
    labels = np.asarray(ints, np.int64)
    if (labels >= 0).all():  # class indices
        return Listing("", PathTable(refs), labels, None, [str(d) for d in dbs], "lmdb", store)
    if (labels >= 0).any() and any(n and not n.lstrip("-").isdigit() for n in names):
        raise HardenError(f"{dbs[0]}: some entries are labelled with class indices and some with class names.")
    return Listing("", PathTable(refs), np.zeros(len(refs), np.int64), names, [str(d) for d in dbs], "lmdb", store)


def lmdb_source(path: Path) -> OnDisk | None:
    """OnDisk of the LMDB databases `path` gives, split by the split word in their names (`bedroom_train_lmdb`,
    `val.lmdb`); None where it gives none."""
    dbs = lmdb_databases(path)
    if dbs is None:
        return None
    by_word: dict[str, list[Path]] = {}
    for d in dbs:
        by_word.setdefault(split_word(d.name.replace(".", "_")) or "", []).append(d)
    chosen = pick_splits(by_word)
    # several databases of one split, each named for a class beyond its split word: LSUN's one database per class
    by_name = any(len(v) > 1 and all(_name_class(d) for d in v) and len({_name_class(d) for d in v}) == len(v)
                  for v in chosen.values())

    @functools.cache
    def listing(split: str) -> Listing:
        return list_databases(chosen[split], by_name)

    def names() -> list[str] | None:
        found: set[str] = set()
        for k in sorted(chosen, key=lambda k: k == "train"):  # the evaluation split first: eval never lists train
            lst = listing(k)
            if lst.names is None:
                return None
            found |= set(lst.names)
        return sorted(found)
    return OnDisk(str(path), {k: functools.partial(listing, k) for k in chosen}, "lmdb", names)
