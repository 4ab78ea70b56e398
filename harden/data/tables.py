"""Hugging Face datasets as they lie on disk, read in place through pyarrow: parquet files (a hub repository's
`data/train-00000-of-00004.parquet`, a config's folder, the hub's parquet export `default/train/0000.parquet`, one
file) and `save_to_disk` / cache folders of Arrow files (`data-00000-of-00001.arrow`, `cifar10-train.arrow`).

Images are the encoded files the dataset holds (the `Image` feature: a struct of bytes and path; or a binary
column), decoded by the data-loader workers like any other file. Labels come from the `ClassLabel` column (its names
kept in the dataset's own order) or a column named like a label; a split comes from the file's name or its folder.

Access: an Arrow file is memory-mapped, so an image is a slice of the map. Parquet allows no random access into a
row group (Hugging Face writes 100 images to one), so the rows a run uses are first copied, in one streaming pass
over only the row groups that hold them, into a spill file in the temporary folder (TMPDIR): memory holds one row
group's images at a time (pyarrow decodes a row group whole: 100 images as Hugging Face writes them, as many as a
writer put in one otherwise), disk the chosen images' bytes, and every later read (each training epoch) is a seek
into that file."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HardenError
from .sources import LABEL_COLUMNS as LABEL_NAMES  # the same names as a list's
from .sources import SPLIT_TOKENS, Columns, Listing, OnDisk, PathTable, pick_splits, split_word, walk_files

TABLE_EXT = {".parquet": "parquet", ".arrow": "arrow"}
IMAGE_NAMES = ("image", "img", "images", "picture", "photo", "jpg", "png", "webp", "file")
READ_BATCH = 64  # rows per record batch of the spill pass (pyarrow still decodes the row group whole)


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # a dependency (pyproject); absent only from a bare environment
        raise HardenError("Reading parquet or Arrow datasets needs pyarrow (pip install pyarrow).") from None
    return pa, pq


# ---------------------------------------------------------------- finding the files and their splits

def table_files(top: Path) -> list[Path]:
    """Parquet and Arrow files under `top` (any depth; hidden and tool folders skipped, each real folder once)."""
    return [top / p for p in sorted(walk_files(top, lambda f: Path(f).suffix.lower() in TABLE_EXT))]


def _split_and_config(path: Path, top: Path) -> tuple[str | None, tuple[str, ...]]:
    """The split a file belongs to (its name's last split word, else its nearest folder's) and its config: the
    folders between `top` and the file that are not split names."""
    rel = path.relative_to(top).parts if path != top else (path.name,)
    folders = [p for p in rel[:-1]]
    split = split_word(rel[-1]) or next((f.lower() for f in reversed(folders) if f.lower() in SPLIT_TOKENS), None)
    return split, tuple(f for f in folders if f.lower() not in SPLIT_TOKENS)


def table_source(path: Path, columns: Columns | None = None) -> OnDisk | None:
    """A parquet/Arrow dataset at `path` (a file or a folder holding them); None when there are none."""
    if path.is_file():
        if path.suffix.lower() not in TABLE_EXT:
            return None
        files, top = [path], path.parent
    elif path.is_dir():
        files, top = table_files(path), path
        if not files:
            return None
    else:
        return None
    kinds = {TABLE_EXT[f.suffix.lower()] for f in files}
    if len(kinds) > 1:
        raise HardenError(f"{str(path)!r} holds both parquet and Arrow files; pass the folder of one dataset.")
    kind = kinds.pop()
    configs: dict[tuple[str, ...], dict[str, list[Path]]] = {}
    for f in files:
        split, config = _split_and_config(f, top)
        configs.setdefault(config, {}).setdefault(split or "", []).append(f)
    if len(configs) > 1:
        names = ", ".join("/".join(c) or "(top)" for c in sorted(configs))
        raise HardenError(f"{str(path)!r} holds the {kind} files of several configurations ({names}); pass the "
                          "folder of the one to use.")
    splits = next(iter(configs.values()))
    src = str(path)
    chosen = pick_splits(splits)
    stores: dict[str, TableStore] = {}

    def store(split: str) -> TableStore:  # a split's files are opened when it is used (eval never opens train's)
        if split not in stores:
            stores[split] = TableStore(src, kind, sorted(chosen[split]), columns=columns)
        return stores[split]
    order = store("test" if "test" in chosen else next(iter(chosen))).class_order

    def names() -> list[str] | None:
        if order is not None:
            return list(order)
        found: set[str] = set()
        for split in chosen:
            if store(split).label_kind != "text":
                return None
            found |= set(store(split).text_labels())
        return sorted(found)
    return OnDisk(src, {k: (lambda k=k: store(k).listing()) for k in chosen}, kind, names, order)


# ---------------------------------------------------------------- one split's files

def _features(schema, files: list[Path]) -> dict:
    """The `datasets` feature types: the schema's `huggingface` metadata, else a dataset_info.json beside."""
    meta = (schema.metadata or {}).get(b"huggingface")
    try:
        if meta:
            info = json.loads(meta)
            return (info.get("info") or info).get("features") or {}
        info_file = files[0].parent / "dataset_info.json"
        if info_file.is_file():
            return json.loads(info_file.read_text()).get("features") or {}
    except (ValueError, AttributeError, OSError) as e:  # the columns still read by their types; it is said
        from ..runtime import warn
        warn(f"{files[0]}: its feature types (the `huggingface` metadata or dataset_info.json) are unreadable "
             f"({type(e).__name__}: {e}); image and label columns are found by their types and names, class names "
             "are not known.")
    return {}


@dataclass
class TableStore:
    """The files of one split, their columns, and (parquet) the spill file of the rows read so far. Rows are
    numbered across the files in order; a listing's refs are those numbers."""
    source: str
    kind: str  # parquet | arrow
    files: list[Path]
    image_column: str = ""
    label_column: str | None = None
    label_kind: str = "none"  # classes (ClassLabel) | index | text | none
    class_order: tuple[str, ...] | None = None
    starts: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # first row of each file (+ total)
    offsets: np.ndarray | None = None  # parquet: each row's place in the spill file (-1: not there yet)
    sizes: np.ndarray | None = None  # -1 not spilled, -2 the row holds no image
    spill_path: str | None = None
    _writer: Any = field(default=None, repr=False)
    _text: list[str] | None = field(default=None, repr=False)
    columns: Columns | None = None  # --label-column / --image-column

    def __post_init__(self):
        pa, pq = _pa()
        schema, counts = None, []
        for f in self.files:
            try:
                if self.kind == "parquet":
                    meta = pq.ParquetFile(f).metadata
                    counts.append(meta.num_rows)
                    s = meta.schema.to_arrow_schema()
                else:
                    t = _arrow_table(str(f))
                    counts.append(t.num_rows)
                    s = t.schema
            except (OSError, ValueError, pa.ArrowException) as e:
                raise HardenError(f"{str(f)!r} is not a readable {self.kind} file ({e}).") from None
            if schema is None:
                schema = s
            elif s.names != schema.names:
                raise HardenError(f"{str(f)!r} has the columns {', '.join(s.names)}, unlike {self.files[0].name} "
                                  f"({', '.join(schema.names)}); a split's files share one schema.")
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        features = _features(schema, self.files)
        asked = self.columns.pick("image", list(schema.names), self.where) if self.columns else None
        self.image_column = asked or _image_column(schema, features, self.where)
        self._pick_label(schema, features)
        if self.kind == "parquet":
            n = int(self.starts[-1])
            self.offsets, self.sizes = np.full(n, -1, np.int64), np.full(n, -1, np.int64)

    @property
    def where(self) -> str:
        return self.source if len(self.files) > 1 or str(self.files[0]) != self.source else str(self.files[0])

    def _pick_label(self, schema, features: dict) -> None:
        pa, _ = _pa()
        asked = self.columns.pick("label", list(schema.names), self.where) if self.columns else None
        classes = [n for n in schema.names if (features.get(n) or {}).get("_type") == "ClassLabel"]
        if classes and (asked is None or asked in classes):
            self.label_column = asked or next((n for n in LABEL_NAMES if n in classes), classes[0])
            names = features[self.label_column].get("names")
            self.label_kind = "classes" if names else "index"
            self.class_order = _unique([str(n) for n in names]) if names else None
            return
        by_name = {n.lower(): n for n in schema.names}
        for want in ([asked.lower()] if asked else LABEL_NAMES):  # in order of preference
            n = by_name.get(want)
            if n is None:
                continue
            t = schema.field(n).type
            t = t.value_type if pa.types.is_dictionary(t) else t  # pandas' category dtype
            if pa.types.is_integer(t) or pa.types.is_floating(t):  # floats: pandas' integers with a gap
                self.label_column, self.label_kind = n, "index"
                return
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                self.label_column, self.label_kind = n, "text"
                return
        if asked:
            raise HardenError(f"--label-column {asked}: {self.where} holds {schema.field(asked).type} there, not class "
                              "indices or class names.")

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _column(self, name: str) -> list:
        """The column's values, one chunked array per file (dictionary-encoded columns decoded)."""
        pa, pq = _pa()
        parts = []
        for f in self.files:
            if self.kind == "parquet":
                col = pq.ParquetFile(f).read(columns=[name]).column(0)
            else:
                col = _arrow_table(str(f)).column(name)
            parts.append(col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col)
        return parts

    def labels(self) -> np.ndarray:
        """Class indices; -1 where a row has none (a null, NaN, or `datasets`' -1)."""
        values = np.concatenate([np.asarray(c.to_numpy(), np.float64) for c in self._column(self.label_column)]
                                or [np.zeros(0)])
        bad = values[~np.isnan(values) & (values != np.round(values))]
        if len(bad):
            raise HardenError(f"{self.where}: the label column {self.label_column} holds {bad[0]:g}, not a class index.")
        return np.where(np.isnan(values), -1, values).astype(np.int64)

    def text_labels(self) -> list[str]:
        """A text label column, read once (the class names and the listing both want it)."""
        if self._text is None:
            self._text = [v if v is not None else "" for c in self._column(self.label_column) for v in c.to_pylist()]
        return list(self._text)

    def listing(self) -> Listing:
        n = len(self)
        refs = PathTable([str(i) for i in range(n)])
        if self.label_kind == "none":  # an unlabelled pool; a labelled use is refused by the caller
            return Listing(self.source, refs, np.full(n, -1, np.int64), [""] * n, what="table", store=self)
        if self.label_kind == "text":
            return Listing(self.source, refs, np.zeros(n, np.int64), self.text_labels(), what="table", store=self)
        labels = self.labels()
        if self.label_kind == "classes":  # names in the dataset's order; -1 is `datasets`' "no label"
            order = self.class_order
            bad = labels[(labels >= len(order))]
            if len(bad):
                raise HardenError(f"{self.where}: the column {self.label_column} holds {int(bad[0])}, beyond its "
                                  f"{len(order)} class names.")
            return Listing(self.source, refs, np.zeros(n, np.int64), [order[v] if v >= 0 else "" for v in labels],
                           what="table", store=self)
        if (labels < 0).any():
            return Listing(self.source, refs, np.zeros(n, np.int64), [str(v) if v >= 0 else "" for v in labels],
                           what="table", store=self)
        return Listing(self.source, refs, labels, None, what="table", store=self)

    def missing_labels_note(self) -> str:
        if self.label_column is None:
            return (f"{self.where} has no label column (its columns: a ClassLabel, or one named "
                    f"{', '.join(LABEL_NAMES[:4])}, ...)")
        return f"{self.where}: column {self.label_column}"

    # ------------------------------------------------------------ reading rows
    def _file_of(self, row: int) -> tuple[int, int]:
        fi = int(np.searchsorted(self.starts, row, "right") - 1)
        return fi, row - int(self.starts[fi])

    def location(self, row: int) -> str:
        fi, local = self._file_of(row)
        return f"{self.files[fi]}[row {local}]"

    def read(self, row: int) -> bytes:
        if self.kind == "arrow":
            fi, local = self._file_of(row)
            value = _arrow_table(str(self.files[fi])).column(self.image_column)[local].as_py()
            return self._image_bytes(value, fi)
        if self.sizes[row] == -1:  # not spilled (a sample read before a run's pass): one streaming read
            return self._read_direct(row)
        if self.sizes[row] < 0:
            raise OSError("the row holds no image bytes")
        from .sources import _handle
        f = _handle(self.spill_path)
        f.seek(int(self.offsets[row]))
        return f.read(int(self.sizes[row]))

    def _image_bytes(self, value, fi: int) -> bytes:
        """A cell of the image column: bytes, or `datasets`' {bytes, path} (a path alone: a file beside the data)."""
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):  # a column of paths (--image-column), beside the table or absolute
            value = {"path": value}
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"]
            p = value.get("path")
            if p:
                full = p if os.path.isabs(p) else os.path.join(self.files[fi].parent, p)
                if os.path.isfile(full):
                    with open(full, "rb") as f:
                        return f.read()
                raise OSError(f"the row names the file {p!r}, which is not there")
        raise OSError("the row holds no image bytes")

    def _rows_of_groups(self, fi: int):
        _, pq = _pa()
        pf = pq.ParquetFile(self.files[fi])
        counts = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
        return pf, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def _read_direct(self, row: int) -> bytes:
        fi, local = self._file_of(row)
        pf, group_starts = self._rows_of_groups(fi)
        g = int(np.searchsorted(group_starts, local, "right") - 1)
        at = int(group_starts[g])
        for batch in pf.iter_batches(batch_size=READ_BATCH, row_groups=[g], columns=[self.image_column]):
            if local < at + batch.num_rows:
                return self._image_bytes(batch.column(0)[local - at].as_py(), fi)
            at += batch.num_rows
        raise OSError("the row is beyond its row group")

    def prepare(self, rows: np.ndarray) -> None:
        """Parquet: copy the rows not yet in the spill file into it, one pass over the row groups that hold them,
        after checking that the temporary folder can hold them."""
        if self.kind != "parquet" or not len(rows):
            return
        need = np.unique(np.asarray(rows, np.int64))
        need = need[self.sizes[need] == -1]
        if not len(need):
            return
        pa, _ = _pa()
        plan, estimate = [], 0  # (file, its reader, row group, first row of the group, rows wanted)
        file_of = np.searchsorted(self.starts, need, "right") - 1
        for fi in np.unique(file_of).tolist():
            local = need[file_of == fi] - self.starts[fi]
            pf, group_starts = self._rows_of_groups(fi)
            group_of = np.searchsorted(group_starts, local, "right") - 1
            for g in np.unique(group_of).tolist():
                wanted = local[group_of == g]
                plan.append((fi, pf, g, int(group_starts[g]), set(wanted.tolist())))
                meta = pf.metadata.row_group(g)
                size = sum(meta.column(j).total_uncompressed_size for j in range(meta.num_columns)
                           if meta.column(j).path_in_schema.split(".")[0] == self.image_column)
                estimate += size * len(wanted) // max(1, meta.num_rows)
        if self._writer is None:
            fd, self.spill_path = tempfile.mkstemp(prefix="harden-rows-", suffix=".bin")
            self._writer = os.fdopen(fd, "wb")
            weakref.finalize(self, _remove, self.spill_path)
        free = shutil.disk_usage(os.path.dirname(self.spill_path)).free
        if estimate > free:
            raise HardenError(f"{self.where}: the {len(need):,} rows this run uses ({estimate / 2**30:.1f} GiB of "
                              f"images) are copied out of the parquet row groups before reading, and the temporary "
                              f"folder {os.path.dirname(self.spill_path)} has {free / 2**30:.1f} GiB free. Point "
                              "TMPDIR at a larger disk, or use fewer images (--data-frac, --num-images).")
        from ..runtime import progress_if
        w = self._writer
        try:
            with progress_if(len(need) > 4 * READ_BATCH, f"reading {self.kind} rows", len(need)) as advance:
                for fi, pf, g, at, wanted in plan:
                    for batch in pf.iter_batches(batch_size=READ_BATCH, row_groups=[g], columns=[self.image_column]):
                        col = batch.column(0)
                        here = [r for r in range(at, at + batch.num_rows) if r in wanted]
                        for r in here:
                            row = int(self.starts[fi]) + r
                            try:
                                data = self._image_bytes(col[r - at].as_py(), fi)
                            except OSError:  # told when the row is decoded (named, or skipped and counted)
                                self.sizes[row] = -2
                                continue
                            self.offsets[row] = w.tell()
                            w.write(data)
                            self.sizes[row] = len(data)
                        advance(len(here))
                        at += batch.num_rows
            w.flush()
        except (pa.ArrowException, OSError) as e:  # a damaged file, the disk filling up after all
            raise HardenError(f"Reading the rows of {self.where} into {self.spill_path} failed: {e}") from None

    def __getstate__(self):  # to spawned workers: no writer, the spill file stays the parent's
        d = dict(self.__dict__)
        d["_writer"] = None
        return d


def _unique(names: list[str]) -> tuple[str, ...]:
    """Class names as labels: a name two classes share (ImageNet's two "crane"s) gets its index, so that each
    label keeps its class through the name."""
    from collections import Counter
    seen = Counter(names)
    return tuple(f"{n} ({i})" if seen[n] > 1 else n for i, n in enumerate(names))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_TABLES: dict[tuple[int, str], Any] = {}


def _arrow_table(path: str):
    """An Arrow file memory-mapped once per process (`datasets` writes the stream format; the file format read too)."""
    key = (os.getpid(), path)
    t = _TABLES.get(key)
    if t is None:
        pa, _ = _pa()
        source = pa.memory_map(path, "r")
        try:
            t = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            t = pa.ipc.open_file(pa.memory_map(path, "r")).read_all()
        _TABLES[key] = t
    return t


def _image_column(schema, features: dict, where: str) -> str:
    pa, _ = _pa()
    typed = [n for n in schema.names if (features.get(n) or {}).get("_type") == "Image"]
    if typed:
        return next((n for n in typed if n.lower() in IMAGE_NAMES), typed[0])

    def is_image(t) -> bool:
        if pa.types.is_struct(t):
            return any(t.field(i).name == "bytes" and (pa.types.is_binary(t.field(i).type) or
                                                       pa.types.is_large_binary(t.field(i).type))
                       for i in range(t.num_fields))
        return pa.types.is_binary(t) or pa.types.is_large_binary(t)
    found = [n for n in schema.names if is_image(schema.field(n).type)]
    if found:
        return next((n for n in found if n.lower() in IMAGE_NAMES), found[0])
    cols = ", ".join(f"{n} ({schema.field(n).type})" for n in schema.names)
    raise HardenError(f"{where} has no column of encoded images (columns: {cols}). harden reads images stored as "
                      "files' bytes: the datasets library's Image feature, or a binary column of PNG/JPEG/... files; "
                      "pixel arrays in a table are not read (save them as an .npz with x_train/y_train/x_test/y_test).")


__all__ = ["TABLE_EXT", "TableStore", "table_files", "table_source"]
