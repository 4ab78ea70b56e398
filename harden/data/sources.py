"""On-disk sources, listed once (paths and labels, nothing decoded): a folder of class folders, a CSV/TSV list of
`path,label[,split]`, and tar shards in the WebDataset layout (`key.jpg` + `key.cls` members; or class folders
inside the tar). A listing keeps its paths in one byte buffer (no Python string per file), so data-loader workers
share it instead of copying it, whatever the dataset's size."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import HardenError

from .array_images import ARRAY_EXT

# what cameras, phones, scanners and dataset exports write and Pillow's wheels decode (JPEG 2000 and AVIF included;
# HEIC/HEIF, phones' default, through pillow-heif's plugin)
IMAGE_EXT = {".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif",
             ".jp2", ".j2k", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".heic", ".heif", ".hif"}

try:  # a dependency (pyproject); tolerated absent so that a bare environment (a lent GPU's image) still runs the rest
    from pillow_heif import register_heif_opener
    register_heif_opener()
except ImportError:
    pass


def _allow_large_photos() -> None:
    """Pillow refuses an image over 2 x MAX_IMAGE_PIXELS (179M pixels by default) as a possible decompression bomb,
    and warns above MAX_IMAGE_PIXELS with a bare Python warning: phones' 108- and 200-megapixel modes (12,000 x 9,000;
    16,320 x 12,240) write real photographs above both. harden allows up to LARGEST_IMAGE_PIXELS (1.6 GB decoded in
    RGB, once per decoding process) without a word; a larger file is refused, with its name, as unreadable."""
    import warnings

    from PIL import Image
    if Image.MAX_IMAGE_PIXELS != PILLOW_DEFAULT_PIXELS:
        return  # a program that imports harden and chose its own limit keeps it
    Image.MAX_IMAGE_PIXELS = LARGEST_IMAGE_PIXELS // 2  # Pillow errors above twice this
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


LARGEST_IMAGE_PIXELS = 2 ** 29  # 537M pixels: 23,170 x 23,170
PILLOW_DEFAULT_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)  # Image.MAX_IMAGE_PIXELS as Pillow sets it
_allow_large_photos()
LIST_EXT = {".csv", ".tsv"}
# folders that tools leave in photo trees, never classes nor images of one: macOS zip archives' resource forks,
# Synology NAS thumbnails (@eaDir holds a JPEG per photo), Python's caches; hidden folders too (is_skipped_dir)
SKIPPED_DIRS = {"__MACOSX", "@eaDir", "__pycache__", "$RECYCLE.BIN", "System Volume Information"}
LABEL_EXT = (".cls", ".label")  # a WebDataset sample's class index
SYNSET_TAR = re.compile(r"n\d{8}$")  # a tar named after its WordNet synset holds that class's images (ImageNet's)
EVAL_FOLDERS = ("val", "test", "validation", "valid", "testing")  # beside train/: the evaluation split, first found
TRAIN_FOLDERS = ("train", "training")  # Kaggle's mnist_png: training/ and testing/
_SPLIT_NAMES = {"train": "train", "training": "train", "trainval": "train", "val": "test", "valid": "test",
                "validation": "test", "test": "test", "testing": "test", "eval": "test"}  # a list's split column


class PathTable:
    """Strings in one uint8 buffer with offsets: indexable, sliceable by index arrays, cheap to fork."""

    def __init__(self, strings: list[str] | None = None, *, buf: np.ndarray | None = None,
                 offsets: np.ndarray | None = None):
        if buf is None:
            encoded = [s.encode("utf-8", "surrogateescape") for s in strings or []]
            offsets = np.zeros(len(encoded) + 1, np.int64)
            np.cumsum([len(e) for e in encoded], out=offsets[1:])
            buf = np.frombuffer(b"".join(encoded), np.uint8) if encoded else np.zeros(0, np.uint8)
        self.buf, self.offsets = buf, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        i = int(i)
        return self.buf[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8", "surrogateescape")

    def take(self, idx: np.ndarray) -> "PathTable":
        return PathTable([self[i] for i in np.asarray(idx, np.int64)])

    def digest(self) -> str:
        return hashlib.sha256(self.buf.tobytes() + self.offsets.tobytes()).hexdigest()[:16]


@dataclass
class Listing:
    """One split: where each image is (relative to root, `shard:offset:size:name` inside tar shards, `0:member` in a
    zip archive) and its label: class names as found (folders, a list's text labels) until classes.py maps them to
    model indices."""
    root: str
    refs: PathTable
    labels: np.ndarray  # int64 model indices once mapped
    names: list[str] | None = None  # per-image class name (before mapping); None when labels are indices already
    shards: list[str] = field(default_factory=list)  # tar shards, or the zip archive
    what: str = "folder"  # folder | list | tar | zip | table | tfrecord | lmdb | recordio | ffcv | mds
    store: Any = None  # table: the parquet/Arrow files (tables.TableStore); refs are its row numbers
    array_scale: float | None = None  # its .npy images' float range, once judged (array_images.float_scale)

    def __len__(self) -> int:
        return len(self.refs)

    def take(self, idx: np.ndarray) -> "Listing":
        idx = np.asarray(idx, np.int64)
        return Listing(self.root, self.refs.take(idx), self.labels[idx], None, self.shards, self.what, self.store,
                       self.array_scale)

    def relabelled(self, labels: np.ndarray) -> "Listing":
        return Listing(self.root, self.refs, labels, None, self.shards, self.what, self.store, self.array_scale)

    def prepare(self, idx: np.ndarray) -> None:
        """Before items are read by worker processes (in the parent): a parquet table copies them to its spill file."""
        if self.what == "table":
            self.store.prepare(np.fromiter((int(self.refs[i]) for i in np.asarray(idx, np.int64)), np.int64, len(idx)))

    def location(self, i: int) -> str:
        ref = self.refs[i]
        if self.what == "table":
            return self.store.location(int(ref))
        if self.what in ("lmdb", "ffcv", "mds"):  # `database:key` (lmdb_files.py), a sample (ffcv_files.py, mds_files.py)
            return self.store.location(ref)
        if self.what == "zip":
            shard, name = ref.split(":", 1)
            return f"{self.shards[int(shard)]}:{name}"
        if self.shards:
            shard, _, _, name = ref.split(":", 3)
            return f"{self.shards[int(shard)]}:{name}"
        return os.path.join(self.root, ref)

    def read_bytes(self, i: int) -> bytes:
        ref = self.refs[i]
        if self.what == "table":
            return self.store.read(int(ref))
        if self.what in ("lmdb", "ffcv", "mds"):
            return self.store.read(ref)
        if self.what == "recordio":  # `file:offset:0:record k`: the record framed at that offset (recordio.py)
            from .recordio import read_record
            shard, offset, _, _ = ref.split(":", 3)
            return read_record(self.shards[int(shard)], int(offset))
        if self.what == "zip":  # `archive:member` (zipped.py)
            shard, name = ref.split(":", 1)
            return _handle(self.shards[int(shard)], "zip").read(name)
        if not self.shards:
            with open(os.path.join(self.root, ref), "rb") as f:
                return f.read()
        shard, offset, size, _ = ref.split(":", 3)
        f = _handle(self.shards[int(shard)])
        f.seek(int(offset))
        return f.read(int(size))

    def digest(self) -> str:
        return hashlib.sha256((self.refs.digest() + self.labels.astype(np.int64).tobytes().hex()).encode()
                              ).hexdigest()[:16]


_HANDLES: dict[tuple[int, str, str], Any] = {}


def _handle(path: str, kind: str = "file"):
    """One open tar shard (a plain file) or zip archive per path and process: data-loader workers each open their
    own, and a batch's images reuse it."""
    key = (os.getpid(), kind, path)
    h = _HANDLES.get(key)
    if h is None:
        h = _HANDLES[key] = zipfile.ZipFile(path) if kind == "zip" else open(path, "rb")
    return h


COMPRESSED_TAR = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tzst")


def refuse_compressed_tar(path: Path) -> None:
    if path.is_file() and path.name.lower().endswith(COMPRESSED_TAR):
        raise HardenError(f"{str(path)!r} is a compressed tar archive: harden reads images in place, which a "
                          "compressed stream does not allow (each image would mean decompressing everything before "
                          f"it). Extract it once (tar xf {path.name}) and pass the folder, or repack it as a .zip or "
                          "an uncompressed .tar.")


def image_kinds() -> str:
    """The file kinds read as images, as an error lists them."""
    return ", ".join(sorted(IMAGE_EXT)) + ", " + ", ".join(f"{e} (one image's array)" for e in ARRAY_EXT)


def _is_image(name: str) -> bool:
    """An image file by its name: a format Pillow reads, or one image's NumPy array (array_images.py)."""
    ext = os.path.splitext(name)[1].lower()
    return ext in IMAGE_EXT or ext in ARRAY_EXT


def is_skipped_dir(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS


def image_files(top: Path, within: Path | None = None) -> list[str]:
    """Every image under `top`, at any depth, as paths relative to it (unsorted). `within`: the split folder of the
    class folder `top`, whose other classes a link must not lead into."""
    return images_over_arrays(walk_files(top, _is_image, within))


def _is_array(name: str) -> bool:
    return name.lower().endswith(ARRAY_EXT)


def images_over_arrays(names: list[str]) -> list[str]:
    """Where image files and .npy files lie together, the image files alone: arrays kept beside photographs are
    something computed from them (features, masks, embeddings), not the images."""
    if any(_is_array(n) for n in names) and not all(_is_array(n) for n in names):
        return [n for n in names if not _is_array(n)]
    return names


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(os.path.join(folder, ""))


def walk_files(top: Path, keep: Callable[[str], bool], within: Path | None = None) -> list[str]:
    """The files under `top` whose names `keep` accepts, at any depth, as paths relative to it (unsorted). Links are
    followed, each real folder walked once, never into a folder that holds `top` (os.walk would loop forever on a link
    to a folder above it, and a class would take every other class's images) nor, where `within` is given, into
    another folder under `within` (a link from one class folder to another's); tool and hidden folders and hidden
    files skipped."""
    seen: set[str] = set()
    out: list[str] = []
    real_top = os.path.realpath(top)
    real_within = os.path.realpath(within) if within is not None else None
    for root, dirs, files in os.walk(top, followlinks=True):
        real = os.path.realpath(root)
        above = root != str(top) and _inside(real_top, real)
        elsewhere = real_within is not None and _inside(real, real_within) and not _inside(real, real_top)
        if real in seen or above or elsewhere:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not is_skipped_dir(d))
        rel = os.path.relpath(root, top)
        out += [os.path.normpath(os.path.join(rel, f)) for f in files if keep(f) and not f.startswith(".")]
    return out


def class_folders(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not is_skipped_dir(e.name))


# Hugging Face's `imagefolder` convention: a split's images loose in its folder, their labels in a metadata file
# beside them (`file_name` and a label column)
METADATA_FILES = ("metadata.csv", "metadata.jsonl")


def metadata_file(split_dir: Path) -> Path | None:
    return next((split_dir / n for n in METADATA_FILES if (split_dir / n).is_file()), None)


def _split_folder(root: Path, name: str) -> Path:
    """root/name, or the one folder of root named so in another case (Train/, Test/); root/name where none is; where
    it holds nothing but one folder of its own name (train/train/, as archives extract), that one."""
    if (root / name).is_dir():
        return unwrapped(root / name)
    try:
        found = [e.name for e in os.scandir(root) if e.is_dir() and e.name.lower() == name]
    except OSError:
        found = []
    return unwrapped(root / found[0]) if len(found) == 1 else root / name


# Office-31's amazon/images/<class>/; a number too, as EuroSAT's 2750/<class>/
WRAPPER_NAMES = ("images", "imgs", "img", "jpg", "photos", "pictures")


def unwrapped(folder: Path) -> Path:
    """The folder, or the one folder it holds with nothing else but files that are not images, where that folder has
    the same name (`train/train/cat/...`, `dogs-vs-cats/dogs-vs-cats/...`: an archive extracted into a folder of its
    own name) or a name for images and two or more folders in it (Office-31's `amazon/images/back_pack/`): read as
    the folder itself rather than as one class named after it."""
    for _ in range(4):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return folder
        dirs = [e for e in entries if e.is_dir() and not is_skipped_dir(e.name)]
        if len(dirs) != 1 or any(e.is_file() and _is_image(e.name) for e in entries):
            return folder
        inner = Path(dirs[0].path)
        if inner.name.lower() != folder.name.lower() and not (
                (inner.name.lower() in WRAPPER_NAMES or inner.name.isdigit()) and len(class_folders(inner)) >= 2):
            return folder
        folder = inner
    return folder


def _split_list(split_dir: Path) -> Path | None:
    """A list beside a split folder named after it (Kaggle's GTSRB: Test/ of loose images, Test.csv beside it with
    their paths `Test/00000.png` and ClassId; Kaggle's CIFAR-10: train/ and trainLabels.csv of id,label), None where
    there is none."""
    for suffix in ("", "Labels", "_labels", "-labels"):  # Kaggle's CIFAR-10: train/ beside trainLabels.csv
        for ext in (".csv", ".CSV", ".tsv"):
            if (split_dir.parent / f"{split_dir.name}{suffix}{ext}").is_file():
                return split_dir.parent / f"{split_dir.name}{suffix}{ext}"
    return None


# Tiny ImageNet's val/: its images loose in val/images/, their classes in val/val_annotations.txt (tab-separated:
# file name, WordNet id, box); read along that file, never as one class named "images"
ANNOTATIONS_SUFFIX = "_annotations.txt"


def _annotations_file(split_dir: Path) -> Path | None:
    found = sorted(e.path for e in os.scandir(split_dir) if e.is_file() and e.name.endswith(ANNOTATIONS_SUFFIX))
    return Path(found[0]) if len(found) == 1 and (split_dir / "images").is_dir() else None


def _annotations_listing(split_dir: Path) -> Listing | None:
    """The split's images along its `*_annotations.txt` (Tiny ImageNet's val/), None where it has none."""
    source = _annotations_file(split_dir)
    if source is None:
        return None
    refs, names = [], []
    for n, line in enumerate(source.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        cols = line.split("\t")
        if not line.strip():
            continue
        if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
            raise HardenError(f"{str(source)!r}, line {n}: {line!r} is not `file name<TAB>class[<TAB>...]`.")
        refs.append(os.path.join("images", cols[0].strip()))
        names.append(cols[1].strip())
    missing = [r for r in refs[:1000] if not os.path.isfile(split_dir / r)][:3]
    if missing:
        raise HardenError(f"{str(source)!r} names images that {str(split_dir / 'images')!r} does not hold: "
                          f"{', '.join(os.path.basename(m) for m in missing)}.")
    if not refs:
        raise HardenError(f"{str(source)!r} lists no images.")
    return Listing(str(split_dir), PathTable(refs), np.zeros(len(refs), np.int64), names, what="folder")


def split_class_names(split_dir: Path) -> list[str]:
    """The class names of a split folder, found cheaply: its class folders, else its metadata file's label names."""
    annotated = _annotations_listing(split_dir)
    if annotated is not None:
        return sorted(set(annotated.names))
    classes = class_folders(split_dir)
    if classes:
        return classes
    if metadata_file(split_dir) is None and metadata_file(split_dir.parent) is None and _split_list(split_dir) is None:
        from .imagenet_truth import class_names
        return class_names(split_dir)  # ImageNet's loose validation images and their ground truth, or none
    return sorted(set(list_class_folders(split_dir).names or []))


def _metadata_listing(split_dir: Path) -> Listing | None:
    """The split's rows of a metadata file: its own, or the dataset root's (whose file_name paths begin with the
    split's folder, `train/0001.png`); None where neither lists any."""
    own = metadata_file(split_dir)
    source = own or metadata_file(split_dir.parent)
    beside = _split_list(split_dir) if source is None else None  # a list named after the split folder
    source = source or beside
    if source is None:
        return None
    lists = list_file_list(source, split_dir.name if beside is not None else None)
    if set(lists) != {"all"}:
        raise HardenError(f"{str(source)!r} has a split column beside the split folders; give the list itself as "
                          "--data.")
    listing = lists["all"]
    if own is not None:
        return listing
    prefix = os.path.join(str(split_dir), "")
    keep = np.asarray([i for i in range(len(listing)) if listing.refs[i].startswith(prefix)], np.int64)
    if not len(keep):
        return None
    names = [listing.names[i] for i in keep] if listing.names is not None else None
    if names is None and beside is not None:
        # class indices beside class folders named by numbers (GTSRB's Train/0 ... Train/42 and Test.csv's ClassId):
        # read as those names, so that both splits go through one reading of the numbers (class_order.py)
        names = [str(int(v)) for v in listing.labels[keep]]
    return Listing(listing.root, listing.refs.take(keep), listing.labels[keep], names, what=listing.what)


def _labelled_sibling_hint(split_dir: Path) -> str:
    """For an evaluation folder without labels beside a labelled training list (a Kaggle competition: test/ whose
    labels are withheld, sample_submission.csv beside it, train.csv labelling train/): the list to give instead."""
    if split_dir.name.lower() in TRAIN_FOLDERS:
        return ""
    lists = [split_dir.parent / f"{t}{suffix}{ext}" for t in TRAIN_FOLDERS for suffix in ("", "Labels", "_labels")
             for ext in (".csv", ".CSV")]
    found = next((f for f in lists if f.is_file()), None)
    if found is None:
        return ""
    return (f" It may be a competition's test set, its labels withheld; {found.name} beside it labels the training "
            f"images: give --data {found}, from which `eval` reads every image and `fix` holds a share out.")


def list_class_folders(split_dir: Path) -> Listing:
    """Every image under each class folder (recursively), sorted; the class is the top folder's name. A split folder
    without class folders but with a metadata file (Hugging Face's imagefolder) is read along that file, and one with
    an `images/` folder and a `*_annotations.txt` (Tiny ImageNet's val/) along that."""
    annotated = _annotations_listing(split_dir)
    if annotated is not None:
        return annotated
    classes = class_folders(split_dir)
    listed = None if classes else _metadata_listing(split_dir)
    if listed is None and not classes:
        from .imagenet_truth import listing
        listed = listing(split_dir)  # ImageNet's validation images loose beside their ground truth
    if listed is not None:
        return listed
    if not classes:
        loose = [e.name for e in os.scandir(split_dir) if e.is_file() and _is_image(e.name)]
        from .imagenet_truth import VAL_NUMBER
        imagenet = any(VAL_NUMBER.match(os.path.splitext(n)[0]) for n in loose[:1000])
        raise HardenError(f"{str(split_dir)!r} holds no class folders" + (
            " (ImageNet's validation images, loose: put the ILSVRC2012 development kit, ILSVRC2012_devkit_t12.tar.gz "
            "or its extracted folder, or Kaggle's LOC_val_solution.csv beside the folder or above it, and their "
            "classes are read from it)" if imagenet else
            " (its images lie loose in it: put each class's images in a folder named after the class, or list "
            "their labels in a metadata.csv beside them, file_name,label, as Hugging Face's imagefolder does, or "
            "read each class in its file's name with --label-from-name PATTERN)"
            if loose else "") + "." + _labelled_sibling_hint(split_dir))
    refs, names = [], []
    for c in classes:
        found = [os.path.join(c, f) for f in image_files(split_dir / c, split_dir)]
        if not found:
            lists = sorted(e.name for e in os.scandir(split_dir / c) if e.is_file()
                           and os.path.splitext(e.name)[1].lower() in LIST_EXT)
            raise HardenError(f"The class folder {str(split_dir / c)!r} holds no images ({image_kinds()}"
                              "); remove it or add its images." + (
                                  f" It holds the list {lists[0]}: if that labels the images (ISIC's ground truth "
                                  f"beside its ..._Input folder), give it as --data ({split_dir / c / lists[0]})."
                                  if lists else _other_files_note(split_dir / c)))
        found.sort()
        refs += found
        names += [c] * len(found)
    _refuse_levels_above_classes(split_dir, classes, refs)
    return Listing(str(split_dir), PathTable(refs), np.zeros(len(refs), np.int64), names, what="folder")


# files of formats Pillow does not decode that image trees hold: what they are, and what to do with them
_DICOM = ("DICOM", "convert them to PNG as the training pipeline did (its window, MONOCHROME1 inverted, its bit "
                   "depth), since harden's budgets are in the pixels the model was trained on")
_RAW = ("camera raw", "develop them to JPEG or PNG as the training images were")
FOREIGN_IMAGES = {
    ".dcm": _DICOM, ".dicom": _DICOM, ".cr2": _RAW, ".nef": _RAW, ".arw": _RAW, ".dng": _RAW,
    ".nii": ("NIfTI volumes", "save the slices the model classifies as PNG files, as its training did"),
    ".svs": ("whole-slide images", "save the tiles the model classifies as PNG files, as its training did"),
}


def _other_files_note(folder: Path, look: int = 1000) -> str:
    """What a class folder without images holds instead (among its first entries), and the way to read it."""
    import collections
    import itertools
    try:
        with os.scandir(folder) as entries:
            exts = collections.Counter(os.path.splitext(e.name)[1].lower() for e in itertools.islice(entries, look)
                                       if e.is_file() and not e.name.startswith("."))
    except OSError:
        return ""
    if not exts:
        return ""
    ext, n = exts.most_common(1)[0]
    what, how = FOREIGN_IMAGES.get(ext, (None, None))
    return f" It holds {n:,} {ext or 'extensionless'} file{'s' * (n != 1)}" + (f" ({what}): {how}." if what else ".")


def _refuse_levels_above_classes(split_dir: Path, classes: list[str], refs: list[str]) -> None:
    """The top folders are not the classes where the images lie in WordNet synset folders below them (ImageNet-C's
    `fog/3/n01440764/`, Tiny-ImageNet-C's), or where numbered top folders (severities 1-5) each hold the same two or
    more folders and no image of their own: reading them as classes would label every image with its level."""
    from .classes import SYNSET_NAMED
    if not any(r.count(os.sep) > 1 for r in refs):  # every image directly in its class folder: nothing above
        return
    below: dict[str, set[str]] = {c: set() for c in classes}
    loose, tops_of = set(), {}
    for ref in refs:
        parts = ref.replace("\\", "/").split("/")
        if len(parts) == 2:
            loose.add(parts[0])
        else:
            below[parts[0]].add(parts[1])
        level = next((p for p in parts[1:-1] if SYNSET_NAMED.match(p)), None)
        if level is None:
            continue
        tops = tops_of.setdefault(level, set())
        tops.add(parts[0])
        # a synset under two top folders (or under the one there is): the tops are levels; a synset under one of
        # several is a coarse class's member (dog/n02085620/), which is read as the coarse class
        if len(tops) > 1 or len(classes) == 1:
            above = os.path.join(split_dir, *parts[:parts.index(level)])
            raise HardenError(f"{str(split_dir)!r}: its images lie in WordNet synset folders below its top folders "
                              f"({os.path.join(above, level)}): the top folders ({', '.join(classes[:5])}"
                              f"{', ...' if len(classes) > 5 else ''}) are a level above the classes (ImageNet-C's "
                              "corruptions and severities), not classes. Give the folder that holds the synset folders "
                              f"as --data ({above}).")
    shared = set.intersection(*below.values()) if below else set()
    if len(classes) > 1 and not loose and all(c.isdigit() for c in classes) and len(shared) >= 2 and \
            all(b == shared for b in below.values()):
        raise HardenError(f"{str(split_dir)!r}: its numbered folders ({', '.join(classes[:5])}) each hold the same "
                          f"folders ({', '.join(sorted(shared)[:5])}{', ...' if len(shared) > 5 else ''}) and no image "
                          "of their own: they are levels above the classes (a corruption's severities), not classes. "
                          f"Give one of them as --data ({split_dir / classes[0]}).")


def _is_int(text: str) -> bool:
    """A class index, also as a float export writes it (`3.0`: pandas turns an integer column with a gap into floats)."""
    return bool(re.fullmatch(r"\s*-?\d+(\.0*)?\s*", text))


def _as_int(text: str) -> int:
    return int(float(text))


# A list's or a table's columns, by the names datasets give them, in order of preference (a header that names two
# label columns takes the first here). Past the generic names, the label columns of well-known public sets: HAM10000's
# dx, APTOS' diagnosis, the diabetic retinopathy level, Google Landmarks' landmark_id.
PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "file_path", "filenames", "image", "image_path",
                "imagepath", "image_file", "image_filename", "img", "img_path", "img_file", "img_filename", "fname",
                "image_id", "img_id", "image_name", "img_name", "imageid", "isic_id", "id", "url", "image_url",
                "img_url")
LABEL_COLUMNS = ("label", "labels", "fine_label", "class", "class_id", "class_label", "class_name", "classname",
                 "label_id", "label_name", "classid", "class_index", "target", "category", "category_id",
                 "category_name", "cls", "y", "dx", "diagnosis", "level", "grade", "species", "breed", "landmark_id")


_FLAG_SPLITS = ("is_valid", "is_val", "is_test")  # a column of True/False (fastai's ColSplitter, Imagenette's CSV)


@dataclass(frozen=True)
class Columns:
    """--label-column / --image-column: the column of a list or a table (the feature of a TFRecord) that holds the
    labels / the images (or their paths), where harden's own choice by name would not find it. `recorded`: taken from
    a hardened checkpoint's metadata rather than a flag, so used only where the source has them."""
    label: str | None = None
    image: str | None = None
    recorded: bool = False
    from_name: str | None = None  # --label-from-name: the pattern that reads a class in a file's name (name_labels)
    # --skip-unreadable: a list's rows naming files that are gone stay listed and are skipped (counted) where they
    # are decoded, as unreadable files are, rather than refused before the run
    missing_ok: bool = False

    def __bool__(self) -> bool:  # the two that name columns (from_name names none)
        return bool(self.label or self.image)

    def pick(self, what: str, names: list[str], where: str) -> str | None:
        """The stored name `what` ('label' or 'image') asks for among `names` (case, spaces and '_' aside); None when
        not asked (or recorded and absent); an error when a flag names a column the source lacks."""
        wanted = self.label if what == "label" else self.image
        if not wanted:
            return None
        key = _column_key(wanted)
        found = next((n for n in names if _column_key(n) == key), None)
        if found is None and not self.recorded:
            flag = "--label-column" if what == "label" else "--image-column"
            shown = ", ".join(names[:12]) + (f", ... ({len(names)})" if len(names) > 12 else "")
            raise HardenError(f"{flag} {wanted}: {where} has no column of that name (its columns: {shown or 'none'}).")
        return found


def _column_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def list_file_list(path: Path, prefer: str | None = None, columns: Columns | None = None) -> dict[str, Listing]:
    """A CSV (comma) or TSV (tab) list: path,label[,split], header optional. Paths are relative to the list's folder
    (or absolute); labels are class indices or class names; split is train / val / test. Returns {split: listing}
    ('all' when there is no split column)."""
    return read_file_list(path, prefer, columns)[0]


def _bit(v: str) -> float | None:
    """A one-hot cell's value: 0 or 1 as written (`1`, `1.0`, `True`); None for anything else."""
    v = v.strip().lower()
    if v in ("true", "false"):
        return float(v == "true")
    try:
        f = float(v)
    except ValueError:
        return None
    return f if f in (0.0, 1.0) else None


def _one_hot_columns(head: list[str], rows: list[list[str]], taken: set[int]) -> list[int]:
    """The columns of a one-hot label, in header order (ISIC's ground truth `image,MEL,NV,BCC,...`, Kaggle's Plant
    Pathology `image_id,healthy,multiple_diseases,rust,scab`): at least two columns besides the path's and the
    split's whose every value is 0 or 1 (`1.0`, `True` too); empty where there are none."""
    cols = [i for i in range(len(head)) if i not in taken
            and all(i < len(r) and _bit(r[i]) is not None for r in rows)]
    return cols if len(cols) >= 2 and rows else []


def read_file_list(path: Path, prefer: str | None = None, columns: Columns | None = None
                   ) -> tuple[dict[str, Listing], tuple[str, ...] | None]:
    """list_file_list's listings, and the list's own class order where its labels are one-hot columns (else None)."""
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise HardenError(f"The image list {str(path)!r} cannot be read as text ({e}).") from None
    if path.suffix.lower() == ".jsonl":
        rows = _json_lines_as_rows(path, text)
    elif path.suffix.lower() == ".txt":  # `path label` a line, as Caffe's train.txt and its heirs write them
        rows = [line.strip().rsplit(None, 1) for line in text.splitlines() if line.strip()]
    else:
        first = next((line for line in text.splitlines() if line.strip()), "")
        if delim == "," and "," not in first:  # Excel's CSV in locales with a decimal comma, GTSRB's GT files: ';'
            delim = next((d for d in (";", "\t", "|") if d in first), delim)
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delim) if r and any(c.strip() for c in r)]
    if not rows:
        raise HardenError(f"The image list {str(path)!r} is empty.")
    cols = {"path": 0, "label": 1, "split": 2 if len(rows[0]) > 2 else None}
    order = None
    head = [_column_key(c) for c in rows[0]]
    name_of = {"path": PATH_COLUMNS, "label": LABEL_COLUMNS, "split": ("split", "subset", "set", *_FLAG_SPLITS)}
    columns = columns if columns is not None else Columns()
    chosen = {"label": columns.pick("label", head, f"the header of {str(path)!r}") if columns else None,
              "path": columns.pick("image", head, f"the header of {str(path)!r}") if columns else None}
    if any(c in names for c in head for names in name_of.values()) or any(chosen.values()):
        cols = {k: next((head.index(n) for n in names if n in head), None) for k, names in name_of.items()}
        cols.update({k: head.index(v) for k, v in chosen.items() if v is not None})
        if cols["path"] is None:  # a dataset's own id column (APTOS' id_code): the one whose values name image files
            cols["path"] = _column_naming_files(path, rows, {c for c in cols.values() if c is not None})
        if cols["path"] is not None and cols["label"] is None and len(head) == 2:
            cols["label"] = 1 - cols["path"]  # Kaggle's `id,breed`: the other column of two is the label
        if cols["path"] is not None and cols["label"] is None:
            one_hot = _one_hot_columns(head, rows[1:], {c for c in cols.values() if c is not None})
            if one_hot:
                rows = [rows[0]] + [_one_hot_row(path, n, r, one_hot, rows[0]) for n, r in enumerate(rows[1:], 1)]
                order = tuple(rows[0][c].strip() for c in one_hot)
                cols["label"] = len(rows[0])
                rows[0] = rows[0] + ["label"]
        if cols["path"] is None or cols["label"] is None:
            shown = ", ".join(rows[0][:12]) + (f", ... ({len(rows[0])} columns)" if len(rows[0]) > 12 else "")
            raise HardenError(f"The header of {str(path)!r} ({shown}) names no "
                              f"{'label' if cols['path'] is not None else 'path'} column: harden reads a path column "
                              f"(path, file, image, image_id, ...), a label column ({', '.join(LABEL_COLUMNS[:8])}, "
                              "...) or one 0/1 column per class (one-hot), and an optional split column (split, "
                              "subset, set). Name the column that holds "
                              f"the {'labels' if cols['path'] is not None else 'image paths'} with "
                              f"{'--label-column' if cols['path'] is not None else '--image-column'} NAME.")
        rows = rows[1:]
    listed: list[tuple[str, str, str]] = []  # (split, path as written, label)
    for n, r in enumerate(rows, start=1):
        if len(r) <= max(c for c in cols.values() if c is not None):
            raise HardenError(f"{str(path)!r}, row {n}: {delim.join(r)!r} has too few columns (path, label[, split]).")
        split = "all"
        if cols["split"] is not None:
            value = r[cols["split"]].strip().lower()
            if head and head[cols["split"]] in _FLAG_SPLITS:  # fastai's is_valid: True for the evaluation rows
                split = {"true": "test", "1": "test", "false": "train", "0": "train"}.get(value)
            else:
                split = _SPLIT_NAMES.get(value)
            if split is None:
                raise HardenError(f"{str(path)!r}, row {n}: split {r[cols['split']]!r} is not train, val or test.")
        label = r[cols["label"]].strip()
        listed.append((split, r[cols["path"]].strip(), "" if label.lower() == "nan" else label))  # pandas' nan
    if prefer is None:  # trainLabels.csv beside train/: that folder first, where ids would be found in two
        stem = re.sub(r"[-_]?labels?$", "", path.stem, flags=re.IGNORECASE)
        prefer = stem if stem != path.stem and (path.parent / stem).is_dir() else None
    where = _path_resolver(path.parent, [p for _, p, _ in listed], prefer)
    fulls = [where(p) for _, p, _ in listed]
    missing = [p for (_, p, _), full in zip(listed, fulls, strict=True) if not os.path.isfile(full)][:4]
    if missing and any(re.match(r"^(https?|s3|gs)://", m) for m in missing):
        raise HardenError(f"The image list {str(path)!r} names URLs ({missing[0]}); harden reads images on disk and "
                          "downloads nothing while it runs: download them, and list their local paths.")
    if missing and not columns.missing_ok:
        raise HardenError(f"The image list {str(path)!r} names files that do not exist: {', '.join(missing)} (paths "
                          "are relative to the list's folder, or to one folder beside it, with or without their "
                          "extension). Pass --skip-unreadable to leave them out (each is counted where it would be "
                          "read, as an unreadable file is).")
    per: dict[str, tuple[list[str], list[str]]] = {}
    for (split, _, label), full in zip(listed, fulls, strict=True):
        refs, labels = per.setdefault(split, ([], []))
        refs.append(full)
        labels.append(label)
    _warn_repeats(path, per)
    out = {}
    for split, (refs, labels) in per.items():
        if all(_is_int(v) for v in labels):
            ints = np.asarray([_as_int(v) for v in labels], np.int64)
            if ints.min() < 0:
                raise HardenError(f"{str(path)!r}: labels must be non-negative class indices or class names.")
            out[split] = Listing("", PathTable(refs), ints, None, what="list")
        else:
            out[split] = Listing("", PathTable(refs), np.zeros(len(refs), np.int64), labels, what="list")
    return out, order


FILE_COLUMN_PROBE = 8  # rows whose values must all name image files for an unnamed column to hold the images


def _column_naming_files(path: Path, rows: list[list[str]], taken: set[int]) -> int | None:
    """Where no column's name says it holds the images: the one column (of those not taken) whose first rows' values
    all name image files as the list's paths are found (beside the list, in a folder beside it, an image extension
    added: APTOS' `id_code` for train_images/<id>.png), said; None where none or several do."""
    body = rows[1:1 + FILE_COLUMN_PROBE]
    if not body:
        return None
    found = []
    for c in range(len(rows[0])):
        values = [r[c].strip() for r in body if len(r) > c]
        if c in taken or len(values) < len(body) or not all(values) or any(_is_int(v) and len(v) < 3 for v in values):
            continue
        where = _path_resolver(path.parent, values)
        if all(os.path.isfile(where(v)) and _is_image(where(v)) for v in values):
            found.append(c)
    if len(found) != 1:
        return None
    from ..runtime import info
    info(f"{str(path)!r}: column {rows[0][found[0]].strip()!r} holds the images' names (its values name image files; "
         "--image-column sets another)")
    return found[0]


def _one_hot_row(path: Path, n: int, row: list[str], columns: list[int], head: list[str]) -> list[str]:
    """The row with its class's name appended: the column holding its 1 ('' where none does: an unlabelled row)."""
    marked = [head[c].strip() for c in columns if _bit(row[c]) == 1.0]
    if len(marked) > 1:
        raise HardenError(f"{str(path)!r}, row {n}: the one-hot columns mark {len(marked)} classes ({', '.join(marked)})"
                          ": a multi-label list. harden evaluates single-label classifiers (one class an image).")
    return row + [marked[0] if marked else ""]


TEXT_LIST_PROBE = 50  # lines of a .txt looked at to tell a `path label` list from other text


def is_labelled_text_list(path: Path) -> bool:
    """A .txt of `path label` lines (Caffe's train.txt/val.txt, Places365's, DomainNet's, ImageNet-LT's: a path with an
    image extension, whitespace, a class index)."""
    if path.suffix.lower() != ".txt" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = [ln.strip() for _, ln in zip(range(TEXT_LIST_PROBE), f, strict=False) if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return False
    pairs = [ln.rsplit(None, 1) for ln in lines]
    return bool(pairs) and all(len(p) == 2 and _is_int(p[1]) and _is_image(p[0]) for p in pairs)


def _warn_repeats(path: Path, per: dict[str, tuple[list[str], list[str]]]) -> None:
    """Said, not refused: files a list names twice within a split (each counts as an image: a report's numbers lean
    on them) and, worse, files in both its training and its evaluation split (a report on images trained on)."""
    from collections import Counter

    from ..runtime import warn
    for split, (refs, _) in per.items():
        twice = [f for f, n in Counter(refs).items() if n > 1]
        if twice:
            warn(f"{path}: its {split} rows name {len(twice)} file(s) more than once ({twice[0]}, ...); each row "
                 "counts as an image.")
    if "train" in per and "test" in per:
        both = set(per["train"][0]) & set(per["test"][0])
        if both:
            warn(f"{path}: {len(both)} file(s) are in both its training and its evaluation rows ({next(iter(both))}, "
                 "...): a report on them measures images the model was trained on.")


def _json_lines_as_rows(path: Path, text: str) -> list[list[str]]:
    """A metadata.jsonl (one object per line) as a list's rows: a header of the first object's keys, then values."""
    objects = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise HardenError(f"{str(path)!r}, line {n}: not JSON ({e}).") from None
            if not isinstance(obj, dict):
                raise HardenError(f"{str(path)!r}, line {n}: not a JSON object.")
            objects.append(obj)
    if not objects:
        return []
    keys = list(objects[0])
    return [keys] + [["" if o.get(k) is None else str(o.get(k)) for k in keys] for o in objects]


_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]|^\\\\")  # C:\data\x.jpg, \\server\share\x.jpg


def _foreign_absolute(p: str) -> bool:
    return os.path.isabs(p) or bool(_WINDOWS_ABSOLUTE.match(p))


def _parts(p: str) -> list[str]:
    return [c for c in re.split(r"[\\/]+", p) if c and not re.fullmatch(r"[A-Za-z]:", c)]


def _folders_beside(base: Path) -> list[str]:
    """Where a list's images may lie, relative to its folder: that folder, a folder in it, or a folder beside it
    (ISIC's ground truth in a folder of its own beside `..._Input/`; torchvision's Places365 lists in
    `filelist_places365-standard/` beside `data_256_standard/`)."""
    folders = [""] + sorted(e.name for e in os.scandir(base) if e.is_dir() and not is_skipped_dir(e.name))
    if base.parent != base:
        folders += sorted(os.path.join("..", e.name) for e in os.scandir(base.parent)
                          if e.is_dir() and not is_skipped_dir(e.name) and e.name != base.name)
    return folders


def _moved(base: Path, first: str, plain: Callable[[str], str]) -> Callable[[str], str]:
    """Absolute paths written on another machine (/home/alice/data/train/cat/1.jpg, C:\\data\\...) that are not here:
    read below the list's folder from the point where the first of them is found there (train/cat/1.jpg); every path
    loses the same leading folders; or below one folder beside the list, whole (Places365's `/a/airfield/1.jpg` in
    `data_256/`). Where none is found, the paths stay as written (the error names them)."""
    parts = _parts(first)
    beside = _folders_beside(base)
    found = next(((k, d) for k in range(len(parts)) for d in (beside if k == 0 else [""])
                  if os.path.isfile(os.path.join(base, d, *parts[k:]))), None)
    if found is None:
        return plain
    strip, folder = found
    from ..runtime import info
    info(f"the image list's paths name another machine's folders ({first}): read below {base / folder} without their "
         f"first {strip} folder(s)" if strip else f"the image list's paths ({first}) read below {base / folder}")

    def moved(p: str) -> str:
        if not _foreign_absolute(p) or os.path.isfile(p):
            return plain(p)
        return os.path.normpath(os.path.join(base, folder, *_parts(p)[strip:]))  # `..` of a folder beside
    return moved


def _path_resolver(base: Path, written: list[str], prefer: str | None = None) -> Callable[[str], str]:
    """How a list's paths become files: relative to the list's folder (absolute ones as they are; a list written on
    Windows has backslashes). Where the first path that is not there is found in one folder beside the list and/or
    with an image extension added (a Kaggle list of `id,label` with the images in train/ as `<id>.jpg`), every path
    is read that way; so is one folder beside the list's own folder (`labels/train.csv` and `images/`)."""
    def plain(p: str) -> str:
        full = p if os.path.isabs(p) else os.path.join(base, p)
        if "\\" in p and os.sep == "/" and not os.path.isfile(full):
            p = p.replace("\\", "/")
            full = p if os.path.isabs(p) else os.path.join(base, p)
        return full
    first = next((p for p in written if not os.path.isfile(plain(p))), None)
    if first is not None and _foreign_absolute(first):
        return _moved(base, first, plain)
    if first is None or os.path.isabs(first):
        return plain
    folders = _folders_beside(base)
    kinds = IMAGE_EXT | set(ARRAY_EXT)
    exts = [""] + sorted(kinds | {e.upper() for e in kinds})
    found = [(d, e) for d in folders for e in exts if os.path.isfile(os.path.join(base, d, first.replace("\\", "/") + e))]
    if prefer is not None and any(d == prefer for d, _ in found):  # a split's own list: its folder first
        found = [f for f in found if f[0] == prefer][:1]
    if len(found) != 1:  # not there, or there in two ways: the error names the paths as written
        return plain
    folder, ext = found[0]
    order = [ext] + [e for e in exts if e != ext]  # the first path's extension first; a list may mix .jpg and .png

    def beside(p: str) -> str:
        if os.path.isabs(p):
            return p
        for e in order:
            full = os.path.normpath(plain(os.path.join(folder, p) + e))  # `..` of a folder beside the list's
            if os.path.isfile(full):
                return full
        return os.path.normpath(plain(os.path.join(folder, p) + ext))
    return beside


def list_tar_shards(shards: list[Path]) -> Listing:
    """WebDataset shards: members grouped by key (the path up to the first dot of the file name); the image member
    and a `.cls` / `.label` member with the class index; without one, the folder inside the tar is the class."""
    refs, labels, names = [], [], []
    for si, shard in enumerate(shards):
        try:
            with tarfile.open(shard, mode="r:") as tf:  # uncompressed: members are read in place
                images: dict[str, tarfile.TarInfo] = {}
                cls: dict[str, int] = {}
                json_cls: dict[str, int] = {}
                for m in tf:
                    if not m.isfile():
                        continue
                    d, base = os.path.split(m.name)
                    key = os.path.join(d, base.split(".", 1)[0])
                    if _is_image(base) and not (_is_array(base) and key in images):  # a sample's image, not its array
                        images[key] = m
                    elif base.endswith(LABEL_EXT):
                        text = tf.extractfile(m).read().decode("utf-8", "replace").strip()
                        if not _is_int(text):
                            raise HardenError(f"{str(shard)!r}: {m.name} holds {text[:40]!r}, not a class index.")
                        cls[key] = _as_int(text)
                    elif base.endswith(".json") and m.size < 1 << 20:
                        found = _json_label(tf.extractfile(m).read())  # WebDataset sets with a .json per sample
                        if found is not None:
                            json_cls[key] = found
        except tarfile.TarError as e:
            raise HardenError(f"{str(shard)!r} is not a readable uncompressed tar shard ({e}).") from None
        cls = {**json_cls, **cls}  # a .cls member says it first
        for key, m in images.items():
            refs.append(f"{si}:{m.offset_data}:{m.size}:{m.name}")
            if key in cls:
                labels.append(cls[key])
                names.append(None)
            else:
                folder = os.path.dirname(m.name).split("/")[-1] if "/" in m.name else ""
                if not folder and SYNSET_TAR.match(shard.stem):
                    folder = shard.stem  # ImageNet's per-class tars (n01440764.tar), as the training tar unpacks
                if not folder:
                    raise HardenError(f"{str(shard)!r}: image {m.name} has no {'/'.join(LABEL_EXT)} member beside it "
                                      "and no class folder inside the tar, so its class is unknown.")
                labels.append(0)
                names.append(folder)
    if not refs:
        raise HardenError(f"The tar shard(s) {', '.join(str(s) for s in shards[:3])} hold no images.")
    has_names = [n is not None for n in names]
    if any(has_names) and not all(has_names):
        raise HardenError("The tar shards mix class-index members and class folders; use one way of labelling.")
    return Listing("", PathTable(refs), np.asarray(labels, np.int64), names if all(has_names) else None,
                   shards=[str(s) for s in shards], what="tar")


# split words in file names (`train-00000-of-00004.parquet`, `imagenet1k-validation-00.tar`) and folder names
SPLIT_TOKENS = {"train": "train", "training": "train", "validation": "test", "valid": "test", "val": "test",
                "test": "test", "testing": "test", "eval": "test"}
# the evaluation split, first found (Hugging Face's ImageNet has an unlabelled `test` beside `validation`)
EVAL_ORDER = ("validation", "valid", "val", "test", "testing", "eval")


def split_word(name: str) -> str | None:
    """The last split word of a file name's stem, split at - _ . ('' and None alike: no word)."""
    words = [w for w in re.split(r"[-_.]", Path(name).stem.lower()) if w in SPLIT_TOKENS]
    return words[-1] if words else None


def pick_splits(by_word: dict[str, list]) -> dict[str, list]:
    """Files grouped by split word ('' for none) -> harden's splits: train and the first evaluation split; one
    split alone is 'all'. Splits harden has no use for (SVHN's extra) and unnamed files beside named ones are left
    out."""
    by_word = {k: v for k, v in by_word.items() if k or len(by_word) == 1}
    evaluation = next((w for w in EVAL_ORDER if w in by_word), None)
    train = by_word.get("train") or by_word.get("training")
    if train and evaluation:
        return {"train": train, "test": by_word[evaluation]}
    if train or evaluation:
        return {"all": train or by_word[evaluation]}
    return {"all": next(iter(by_word.values()))}


def label_among(names: list[str], integers: list[int], where: str, what: str, have: str) -> int | None:
    """Which of a record's integer fields (`integers`, indices into `names`) is its label: the one named as a list's
    label column is (LABEL_COLUMNS, in that order), else the only one; None where there is none (images alone: a pool
    for --unlabeled). `what`: "field" or "column"; `have`: the record's fields, said in the error."""
    if not integers:
        return None
    lower = {names[i].lower(): i for i in integers}
    named = next((lower[n] for n in LABEL_COLUMNS if n in lower), None)
    if named is None and len(integers) > 1:
        raise HardenError(f"{where!r} holds several integer {what}s to read as the label ({have}); harden reads the "
                          f"one named as a label ({', '.join(LABEL_COLUMNS[:3])}, y, ...) or the only one.")
    return integers[0] if named is None else named


def files_ending(path: Path, suffixes: tuple[str, ...], look: int = 1000) -> list[Path]:
    """The files of a folder (among its first `look` entries: a folder of a million images is not listed) whose
    names end with one of `suffixes`, in any case, sorted."""
    import itertools
    with os.scandir(path) as entries:
        return sorted(Path(e.path) for e in itertools.islice(entries, look)
                      if e.is_file() and not is_skipped_dir(e.name) and e.name.lower().endswith(suffixes))


def split_files(files: list[Path]) -> dict[str, list[Path]]:
    """Files of one format as harden's splits, by the split word in their names less a trailing number (`train.rec`
    and `val.rec`; `imagenet1k-train-0000.rec`; `train_500_0.50_90.ffcv`)."""
    by_word: dict[str, list[Path]] = {}
    for f in files:
        by_word.setdefault(split_word(re.sub(r"[-_]?\d+$", "", f.stem)) or split_word(f.name) or "", []).append(f)
    return pick_splits(by_word)


def listed_once(path: Path, chosen: dict[str, list[Path]], list_split: Callable[[list[Path]], Listing],
                layout: str) -> OnDisk:
    """OnDisk whose splits are listed by `list_split(files)` when first asked for, once."""
    cache: dict[str, Listing] = {}

    def lister(split: str):
        def get() -> Listing:
            if split not in cache:
                cache[split] = list_split(chosen[split])
            return cache[split]
        return get
    return OnDisk(str(path), {k: lister(k) for k in chosen}, layout)


JSON_LABEL_KEYS = ("label", "cls", "class", "class_id", "target", "category_id")


def _json_label(raw: bytes) -> int | None:
    """A WebDataset sample's .json metadata: its class index under a label key, if it holds one."""
    import json
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    value = next((meta[k] for k in JSON_LABEL_KEYS if k in meta), None)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or not _is_int(str(value)):
        return None
    return _as_int(str(value)) if _as_int(str(value)) >= 0 else None


def _shards_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".tar" and p.is_file())


@dataclass
class OnDisk:
    """What a spec points at: a lister per split (called only when that split is used); 'all' for a source with
    one split (evaluation only, or a list without a split column)."""
    source: str
    listers: dict[str, Callable[[], Listing]]
    layout: str
    # every class name of every split, found cheaply (folder names); None when labels are indices
    class_names: Callable[[], list[str] | None] = lambda: None
    class_order: tuple[str, ...] | None = None  # the data's own index of each name (a ClassLabel); else sorted
    class_order_from: str = "its ClassLabel names"  # what gives that order, as a report says it


def find_on_disk(path: Path, columns: Columns | None = None) -> OnDisk | None:
    """The on-disk layouts; None when `path` is none of them (e.g. CIFAR batches, an .npz). `columns`: --label-column
    and --image-column, for lists, tables and TFRecords."""
    src = str(path)
    if path.is_file():
        ext = path.suffix.lower()
        if ext in LIST_EXT or is_labelled_text_list(path):
            return _list_source(path, *read_file_list(path, None, columns))  # read whole: its splits are in its rows
        if ext == ".tar":
            from .imagenet_archives import VAL_TAR, archives
            if path.name == VAL_TAR:  # ImageNet's validation tar given by itself: the development kit beside it
                return archives(path.parent)
            return _tar_source(src, {"all": [path]})
        if ext == ".zip":
            from .zipped import zip_source
            return zip_source(path)
        if ext in (".parquet", ".arrow"):
            from .tables import table_source
            return table_source(path, columns)
        if ext in (".beton", ".ffcv"):  # FFCV's dataset files (ffcv-imagenet's train_500_0.50_90.ffcv)
            from .ffcv_files import ffcv_source
            return ffcv_source(path)
        if ext == ".json":  # COCO-style classification labels (iNaturalist, iWildCam, Herbarium)
            from .coco_json import coco_source
            return coco_source(path)
        from .lmdb_files import is_lmdb_file, lmdb_source
        if is_lmdb_file(path):  # data.mdb, or a database written as one file (train.lmdb)
            return lmdb_source(path)
        from .recordio import recordio_source
        rec = recordio_source(path)  # MXNet's .rec, found by its first frame's magic
        if rec is not None:
            return rec
        from .tfrecord import tfrecord_source
        return tfrecord_source(path, columns)  # found by its first record's checksum, whatever its name
    if not path.is_dir():
        return None
    if unwrapped(path) != path:  # dataset/dataset/train/...: the inner folder is the dataset (its class list too)
        return find_on_disk(unwrapped(path), columns)
    from .torchvision_sets import torchvision_files
    listed = torchvision_files(path)  # Food-101, Oxford-IIIT Pet, Flowers-102, DTD: files along their split lists
    if listed is not None:
        return listed
    from .cub import cub_folder, cub_source
    if cub_folder(path) is not None:  # CUB-200-2011 along its split file
        return cub_source(cub_folder(path))
    if _holds_tables(path):
        from .tables import table_source
        return table_source(path, columns)
    from .lmdb_files import lmdb_source
    databases = lmdb_source(path)  # LMDB databases: the folder is one, or holds several (LSUN's, a split each)
    if databases is not None:
        return databases
    from .recordio import recordio_source
    rec = recordio_source(path)  # MXNet RecordIO files: train.rec beside val.rec
    if rec is not None:
        return rec
    from .ffcv_files import ffcv_source
    betons = ffcv_source(path)  # FFCV files: train_500_0.50_90.ffcv beside val_500_0.50_90.ffcv
    if betons is not None:
        return betons
    from .mds_files import mds_source
    streaming = mds_source(path)  # MosaicML Streaming's MDS: index.json and its shards, or train/ and val/ of them
    if streaming is not None:
        return streaming
    from .tfrecord import tfrecord_source
    records = tfrecord_source(path, columns)  # TensorFlow Datasets' folders (a dataset's, a version's), TF-slim's shards
    if records is not None:
        return records
    from .imagenet_truth import kaggle_tree
    kaggle = kaggle_tree(path)
    if kaggle is not None:  # Kaggle's ImageNet, given by its root
        return find_on_disk(kaggle, columns)
    # Train/ and Test/ as Windows-made sets name them (Kaggle's GTSRB); training/ and testing/
    test = next((f for f in map(lambda d: _split_folder(path, d), EVAL_FOLDERS) if f.is_dir()), None)
    train_dir = next((f for f in map(lambda d: _split_folder(path, d), TRAIN_FOLDERS) if f.is_dir()), path / "train")
    if not train_dir.is_dir() and test is None:
        train_dir, test = _worded_splits(path) or (train_dir, test)
    if train_dir.is_dir() and test is not None:
        _say_splits_left(path, train_dir, test)
        train_shards = _shards_in(train_dir)
        if train_shards and not _shards_in(test) and all(SYNSET_TAR.match(s.stem) for s in train_shards):
            return _per_class_tars(src, train_shards, test)
        if train_shards:
            return _tar_source(src, {"train": train_shards, "test": _shards_in(test)})
        return OnDisk(src, {"train": lambda: list_class_folders(train_dir),
                            "test": lambda: list_class_folders(test)}, "folder",
                      lambda: sorted(set(split_class_names(train_dir)) | set(split_class_names(test))))
    if test is not None and not train_dir.is_dir() and set(class_folders(path)) <= set(EVAL_FOLDERS) \
            and not _shards_in(test) and (class_folders(test) or split_class_names(test)):
        # only an evaluation split (ImageNet's val/ alone, as often downloaded): evaluated as its class folders
        return OnDisk(str(test), {"all": lambda: list_class_folders(test)}, "folder", lambda: split_class_names(test))
    if train_dir.is_dir() or test is not None:
        return None  # half a tree: the caller says what is missing
    from .imagenet_archives import archives
    downloaded = archives(path)  # ImageNet's tars as downloaded, read in place
    if downloaded is not None:
        return downloaded
    if _shards_in(path):  # one folder of shards, split by name as timm's WebDataset sets are (imagenet1k-train-0000)
        by_word: dict[str, list[Path]] = {}
        for shard in _shards_in(path):
            by_word.setdefault(split_word(shard.name) or "", []).append(shard)
        return _tar_source(src, pick_splits(by_word))
    along_list = _one_folder_and_its_list(path, columns)
    if along_list is not None:
        return along_list
    if class_folders(path) or metadata_file(path) is not None or _imagenet_truth(path):
        return OnDisk(src, {"all": lambda: list_class_folders(path)}, "folder", lambda: split_class_names(path))
    return None


_LEFT_SAID: set[str] = set()  # folders whose unread splits were said, once a process


def _say_splits_left(path: Path, train_dir: Path, test: Path) -> None:
    """Another evaluation folder beside the one read (train/, valid/ and test/, as Roboflow and Kaggle export them;
    ImageNet's val/ beside an unlabelled test/) is not read: said once, with the way to evaluate on it."""
    left = [f for f in (_split_folder(path, d) for d in EVAL_FOLDERS) if f.is_dir() and f != test]
    if not left or str(path) in _LEFT_SAID:
        return
    _LEFT_SAID.add(str(path))
    from ..runtime import warn
    names = ", ".join(f"{f.name}/" for f in left)
    warn(f"{path}: {names} beside {train_dir.name}/ and {test.name}/ {'is' if len(left) == 1 else 'are'} not read: "
         f"harden trains on {train_dir.name}/ (fix holds its own validation out of it) and evaluates on {test.name}/, "
         f"the first of {', '.join(EVAL_FOLDERS)} found; --data {left[0]} evaluates on {left[0].name}/ instead.")


def _one_folder_and_its_list(path: Path, columns: Columns | None) -> OnDisk | None:
    """A folder of one folder of images and the list that labels them (a Kaggle download: images/ and train.csv),
    read along that list, never as one class named after the folder; where two lists there label images, the
    choice is the user's (an error naming them). None where the folder is not so (no list at its top reads as one
    of its images: a test list without labels, or a submission's)."""
    folders = class_folders(path)
    if metadata_file(path) is not None or len(folders) != 1 or metadata_file(path / folders[0]):
        return None
    lists = sorted(e.path for e in os.scandir(path) if e.is_file() and os.path.splitext(e.name)[1].lower() in LIST_EXT
                   and "submission" not in e.name.lower())
    readable = {}
    for f in lists:
        try:
            readable[Path(f)] = read_file_list(Path(f), None, columns)
        except HardenError:
            continue
    if len(readable) > 1:
        raise HardenError(f"{str(path)!r} holds one folder of images ({folders[0]}/) and {len(readable)} "
                          f"lists that label images: {', '.join(f.name for f in readable)}. Give the one to read as "
                          f"--data (e.g. --data {next(iter(readable))}).")
    return next((_list_source(f, *listed) for f, listed in readable.items()), None)


def _list_source(path: Path, lists: dict[str, Listing], order: tuple[str, ...] | None) -> OnDisk:
    """A list file's images (read_file_list's listings and class order) as a source."""
    names = sorted({n for v in lists.values() for n in (v.names or [])}) or None
    return OnDisk(str(path), {k: (lambda v=v: v) for k, v in lists.items()}, "list", lambda: names, order,
                  "its one-hot columns' order")


UNLABELED_WORD = re.compile(r"(^|[-_./])unlabell?ed([-_./]|$)", re.I)  # STL-10's split, in TFDS, on the hub


def unlabeled_split_source(path: Path, columns: Columns | None = None) -> OnDisk | None:
    """A dataset folder's unlabelled split, where its TFRecord files, tar shards or parquet/Arrow files name one
    (TensorFlow Datasets' `stl10-unlabelled.tfrecord-*`, `unlabeled-0000.tar`, a hub repository's
    `data/unlabeled-00000-of-00010.parquet`): what `--unlabeled` takes from such a folder; None where none does."""
    if not path.is_dir():
        return None
    from .tfrecord import tfrecord_files, tfrecord_source
    records = tfrecord_files(path)
    named = [f for f in records[1] if UNLABELED_WORD.search(re.sub(r"\.tfrecords?|\.tfrec", ".", f.name))] \
        if records else []
    if named:
        return tfrecord_source(path, columns, named)
    shards = [f for f in _shards_in(path) if UNLABELED_WORD.search(f.stem)]
    if shards:
        return _tar_source(str(path), {"all": shards})
    if _holds_tables(path):
        from .tables import TABLE_EXT, TableStore, table_files
        tables = [f for f in table_files(path) if UNLABELED_WORD.search(str(f.relative_to(path).with_suffix("")))]
        if tables:
            kind = TABLE_EXT[tables[0].suffix.lower()]
            store = TableStore(str(path), kind, sorted(tables), columns=columns)
            return OnDisk(str(path), {"all": store.listing}, kind)
    return None


def _worded_splits(path: Path) -> tuple[Path, Path] | None:
    """(train, evaluation) folders named with a split word among others (Kaggle's Intel image classification:
    seg_train/, seg_test/ and an unlabeled seg_pred/), one of each, both holding class folders (inside a folder of
    their own name too); None where the folders are not that (a class named `train_station` beside others)."""
    by_word: dict[str, list[Path]] = {}
    try:
        for e in os.scandir(path):
            if e.is_dir() and not is_skipped_dir(e.name) and split_word(e.name):
                by_word.setdefault(split_word(e.name), []).append(Path(e.path))
    except OSError:
        return None
    train = by_word.get("train") or by_word.get("training") or []
    evaluation = next((by_word[w] for w in EVAL_ORDER if w in by_word), [])
    if len(train) != 1 or len(evaluation) != 1:
        return None
    folders = unwrapped(train[0]), unwrapped(evaluation[0])
    return folders if all(class_folders(f) for f in folders) else None


def _imagenet_truth(path: Path) -> bool:
    from .imagenet_truth import truth_source
    return truth_source(path) is not None


def _holds_tables(path: Path, depth: int = 3) -> bool:
    """Whether a folder is a Hugging Face dataset (a hub repository's `data/*.parquet`, the parquet export's
    `default/train/0000.parquet`, save_to_disk's `train/*.arrow`) rather than an image tree: folders are looked
    through level by level, and the first level that holds parquet/Arrow files or images decides (an ImageNet tree
    is decided at its first class folder, never listed)."""
    level = [path]
    for deep in range(depth + 1):
        below = []
        for d in level:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            names = [e.name for e in entries if not e.name.startswith(".") and e.is_file()]
            if any(os.path.splitext(n)[1].lower() in (".parquet", ".arrow") for n in names):
                return True
            if deep and any(_is_image(n) for n in names):  # loose images on top (a README's pictures) decide nothing
                return False
            below += sorted(Path(e.path) for e in entries if e.is_dir() and not is_skipped_dir(e.name))
        level = below
    return False


def _per_class_tars(src: str, train_shards: list[Path], test: Path) -> OnDisk:
    """ImageNet's training tar unpacked one level (train/n01440764.tar, ...: a tar per class, named by its synset)
    beside an evaluation folder: the tars read in place, their names the classes (known without listing them)."""
    return OnDisk(src, {"train": lambda: list_tar_shards(train_shards), "test": lambda: list_class_folders(test)},
                  "tar + folder",
                  lambda: sorted({s.stem for s in train_shards} | set(split_class_names(test))))


def _tar_source(src: str, shards: dict[str, list[Path]]) -> OnDisk:
    """Tar splits are listed on first use; class folders inside them need every split listed for the names."""
    cache: dict[str, Listing] = {}

    def lister(split: str) -> Callable[[], Listing]:
        def get() -> Listing:
            if split not in cache:
                cache[split] = list_tar_shards(shards[split])
            return cache[split]
        return get

    listers = {k: lister(k) for k in shards}

    def names() -> list[str] | None:
        found = set()
        for k in sorted(shards, key=lambda k: k == "train"):  # the evaluation split first: eval never lists train
            lst = listers[k]()
            if lst.names is None:
                return None  # class-index members: nothing to map
            found |= set(lst.names)
        return sorted(found)
    return OnDisk(src, listers, "tar", names)
