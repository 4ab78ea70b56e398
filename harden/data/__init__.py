"""Data (`--data`): one interface (data/base.py), two kinds of source.

- In memory (arrays.py): `digits`, an `.npz`, CIFAR-10 python batches: today's fast path for small images.
- On disk (sources.py, files.py): a folder with train/ and val/ (or test/, validation/, valid/) of class folders; a
  single folder of class folders (evaluation only); a CSV/TSV list of path,label[,split]; tar shards (WebDataset
  layout); a zip of a folder layout (zipped.py); Hugging Face parquet and Arrow files (tables.py); TFRecord files
  (tfrecord.py). Listed once,
  decoded by DataLoader workers (loader.py) through the model's transforms (transforms.py) only when a batch needs
  them; folder names become the model's indices by classes.py."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import HardenError
from .arrays import (ImageData, _cifar_batches, _digits, _npy_folder, _npz, _torch_file, from_arrays, is_arrays,
                     is_npy_dataset)
from .base import (SMALL_IMAGE_SIDE, Data, batches, check_fits, fit_size, index_hash, stratified_sample,
                   stratified_subset, subsample, to_tensor, untrained_classes)
from .files import FileData
from .loader import default_workers
from .sources import (EVAL_FOLDERS, IMAGE_EXT, TRAIN_FOLDERS, Columns, Listing, OnDisk, class_folders,
                      find_on_disk, refuse_compressed_tar)
from .transforms import Preprocess, augment, build_augment, exif_orientation, resolve_orientation

LAYOUTS = ("'digits', an .npz with x_train/y_train/x_test/y_test (or a folder of those .npy files, one .npy of "
           "images with labels.npy beside it, a folder of one .npy of images per class, an .h5 of them, or a .pt of those "
           "tensors), a CSV of label and pixel "
           "columns, a CIFAR-10 python-batches folder, Downsampled ImageNet's train_data_batch_N and val_data files, a "
           "torchvision download (MNIST, FashionMNIST, KMNIST, EMNIST, "
           "CIFAR-100, SVHN, STL-10, PCAM, as its root or the set's folder), a folder with train/ and val/ (or test/, "
           "validation/, valid/) of class folders, a single folder of class folders (evaluation), a .zip of either "
           "folder layout, a CSV/TSV list of path,label[,split] (or a .txt of `path label` lines, or a COCO-style "
           "JSON), tar shards (a .tar, or a folder of them, WebDataset layout), TFRecord files of tf.train.Example "
           "records (a TensorFlow Datasets folder, or shards), LMDB databases of images (LSUN's, Caffe's Datum, "
           "pickled (image, label) pairs), MXNet RecordIO .rec files (im2rec's), FFCV .beton/.ffcv files, MosaicML "
           "Streaming's MDS folders (index.json and shards), a Hugging Face dataset (its parquet files or a "
           "save_to_disk folder), or what your own code makes: file.py:name (a torch Dataset, a DataLoader, a "
           "DataModule, arrays, or a function returning one)")


@dataclass(frozen=True)
class DataTarget:
    """What the model asks of on-disk data: its transform, its outputs (and their names), how to read the rest."""
    preprocess: Preprocess | None = None
    num_classes: int | None = None
    label_names: tuple[str, ...] | None = None
    class_map: str | None = None
    workers: int | None = None
    skip_unreadable: bool = False
    size_note: str = ""  # which of the model's sizes the transform uses (train or timm's test size)
    train_size: tuple[int, int] | None = None  # no model yet (harden train --input-size): image files at this size
    exif_orientation: str = "auto"  # --exif-orientation: auto, stored or upright (transforms.resolve_orientation)
    label_column: str | None = None  # --label-column: a list's or table's label column, a TFRecord's label feature
    image_column: str | None = None  # --image-column: its image (or path) column or feature
    label_from_name: str | None = None  # --label-from-name: a class read in each file's name (name_labels.py)
    columns_recorded: bool = False  # the two come from the checkpoint's metadata: used where the source has them
    # the model's predicted classes for [0, 1] pixels: which reading of numbered class folders it learned
    predict: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        resolve_orientation(self.exif_orientation, "")  # a bad value is refused whatever the data

    def dataset_fit(self) -> Preprocess | None:
        """The transform that brings a dataset's images of many sizes to one (dataset_objects.DatasetRows): the
        model's, else that of `harden train --input-size`."""
        if self.preprocess is not None:
            return self.preprocess
        return Preprocess(3, self.train_size) if self.train_size else None

    def columns(self) -> Columns:
        return Columns(self.label_column, self.image_column, self.columns_recorded, self.label_from_name,
                       self.skip_unreadable)

    @classmethod
    def for_model(cls, model, test_size: bool = False, **kw) -> "DataTarget":
        """The model's transform at its training size, or at timm's test size (test_input_size, test_crop_pct)
        with test_size; the report states which."""
        spec = model.spec
        names = spec.extra.get("label_names") or spec.extra.get("class_names")
        pre = Preprocess.of(spec)
        test = spec.extra.get("test_input_size")
        note = "the model's train size" + (f"; timm's test size {'x'.join(map(str, test))} with --test-size"
                                           if test else "")
        if test_size:
            if not test:
                from ..errors import HardenError
                raise HardenError(f"--test-size: the configuration of {spec.arch} gives no test size (timm's "
                                  "test_input_size); evaluate at its size, or give --input-size.")
            pre = Preprocess(pre.in_chans, (int(test[0]), int(test[1])), pre.interpolation,
                             float(spec.extra.get("test_crop_pct") or pre.crop_pct), pre.crop_mode)
            note = "timm's test size"
        recorded = spec.extra.get(COLUMNS_KEY) or {}
        if not kw.get("label_column") and not kw.get("image_column") and not kw.get("label_from_name") and recorded:
            kw.update(label_column=recorded.get("label"), image_column=recorded.get("image"),
                      label_from_name=recorded.get("from_name"), columns_recorded=True)
        from ..models.hf_transformers import PREFIX
        if kw.get("exif_orientation", "auto") == "auto":  # as the model was hardened, else as its library reads
            recorded = spec.extra.get("exif_orientation")
            if recorded or str(spec.arch).startswith(PREFIX):
                kw["exif_orientation"] = recorded or "upright"  # transformers' load_image turns images upright
        from .class_order import predictor
        return cls(pre, int(spec.num_classes), tuple(names) if names else None, size_note=note,
                   predict=predictor(model), **kw)


def load_data(spec, target: DataTarget | None = None) -> Data:
    """What --data takes (a path, `digits`, hf:org/name), or images and labels in memory: (x, y) or (x_train,
    y_train, x_test, y_test) as tensors or arrays (arrays.from_arrays)."""
    fit = target.dataset_fit() if target is not None else None
    data = from_arrays(spec, fit=fit) if is_arrays(spec) else _load_data(spec, target)
    if target is not None:
        check_columns_apply(target.columns(), data)
    if target is not None and target.class_map is not None and not isinstance(data, FileData):
        raise HardenError(f"--class-map: {data.source} holds arrays labelled with class indices already; a class map "
                          "names folders (or a list's text labels) for a model's indices.")
    if isinstance(data, ImageData) and target is not None and target.preprocess is not None:
        # arrays for a model of another channel count: converted as image files are for it (grey replicated, ...)
        data = data.with_channels(target.preprocess.in_chans)
    return data


def recorded_data_here(spec: str) -> bool:
    """Whether the data a checkpoint names can be read here: digits, files on disk, a Hugging Face name in this
    machine's cache, data made by code whose file is here."""
    from ..hub_cache import is_hub_spec, local
    from .from_code import is_code_spec
    from .shard_patterns import on_disk
    if is_code_spec(spec):
        module = spec.rpartition(":")[0]
        return not module.endswith(".py") or Path(module).expanduser().is_file()
    if is_hub_spec(spec):
        try:
            return Path(local(spec, "dataset")).exists()
        except HardenError:
            return False
    return spec == "digits" or on_disk(spec)


def check_recorded_data(spec: str) -> None:
    """The data a checkpoint names, where no --data is given: refused when it is not here (a Hugging Face name is
    left to its reader, which says what the cache lacks)."""
    from ..hub_cache import is_hub_spec
    if not is_hub_spec(spec) and not recorded_data_here(spec):
        raise HardenError(f"The checkpoint names its data as {spec!r}, which does not exist here; pass --data.")


def _load_data(spec: str | Path, target: DataTarget | None = None) -> Data:
    from ..hub_cache import local
    spec = str(local(spec, "dataset"))  # hf:org/name: the copy the Hugging Face cache holds
    if spec == "digits":
        return _laid(_digits(), "scikit-learn's digits (8 x 8), in memory")
    path = Path(spec)
    from .from_code import data_from_code, is_code_spec
    if not path.exists() and is_code_spec(spec):  # `data.py:test_set`: made by the user's own code
        return data_from_code(spec, target.workers if target is not None else None,
                              target.dataset_fit() if target is not None else None)
    if not path.exists():
        from .shard_patterns import pattern_files, pattern_source
        files = pattern_files(spec)  # `train-{000000..000146}.tar`, `val-*.tfrecord`: the shards it names
        if files is not None:
            target = target or DataTarget()
            return _file_data(pattern_source(spec, files, target.columns()), target)
        from ..hub_cache import hint
        raise HardenError(f"Data path {spec!r} does not exist.{hint(spec, 'dataset')} --data takes {LAYOUTS}.")
    if path.is_file():  # a Git LFS pointer (a dataset repository cloned without LFS), a web page saved as the file
        from ..file_kinds import NOT_DATA, what_path_is
        what = what_path_is(path)
        if what and what.startswith(NOT_DATA):
            raise HardenError(f"Data file {spec!r} is {what}; it holds no images.")
    from .downsampled_imagenet import downsampled_imagenet
    downsampled = downsampled_imagenet(path)  # Imagenet32's train_data_batch_N / val_data (.npz or pickles)
    if downsampled is not None:
        return _laid(downsampled, "Downsampled ImageNet's batch files")
    if path.is_file() and path.suffix.lower() == ".npz":
        return _laid(_npz(path), "an .npz of named arrays (a compressed member inflated when a command first reads it)")
    if path.is_file() and path.suffix.lower() in (".pt", ".pth"):  # tensors saved with torch.save
        return _laid(_torch_file(path), "a file of tensors saved with torch.save")
    from .pixel_csv import is_pixel_csv, pixel_csv
    if is_pixel_csv(path):  # Kaggle's MNIST family: label,pixel1,...,pixel784
        return _laid(pixel_csv(path), "a CSV of pixel columns, read whole")
    from .hdf5 import hdf5_source
    in_hdf5 = hdf5_source(path)  # an .h5 of named arrays; PatchCamelyon's files
    if in_hdf5 is not None:
        return _laid(in_hdf5, "HDF5 datasets, rows read where used")
    if path.is_file() and path.suffix.lower() == ".npy":  # one array of images, its labels beside it
        from .arrays import npy_file
        return _laid(npy_file(path), "one .npy of images, memory-mapped, its labels from the file beside it")
    if path.is_dir() and (path / "data_batch_1").exists() and (path / "test_batch").exists():
        return _laid(_cifar_batches(path), "CIFAR's python batches, read whole")
    if path.is_dir() and is_npy_dataset(path):  # np.save per array: x_train.npy, y_train.npy, ...
        return _laid(_npy_folder(path), "a folder of .npy arrays named as an .npz's members, memory-mapped")
    from .torchvision_sets import torchvision_source
    downloaded = torchvision_source(path)  # MNIST/raw, cifar-100-python, SVHN's .mat, stl10_binary
    if downloaded is not None:
        return _laid(downloaded, "a torchvision download's files")
    from .tfrecord import raw_tfrecords
    columns = target.columns() if target is not None else Columns()
    raw = raw_tfrecords(path, columns)  # TFRecords of raw pixels (the MNIST tutorial's): arrays; encoded: on disk
    if raw is not None:
        return _laid(raw, "TFRecords of raw pixels, read whole")
    if columns.from_name and (not columns.recorded or _labels_only_by_name(path)):
        from .name_labels import name_label_source  # asked for: before any reading of the folder's structure
        return _file_data(name_label_source(path, columns.from_name), target)
    from .class_arrays import class_arrays, rows_hint
    per_class = class_arrays(path)  # np.save per class: cat.npy, dog.npy (QuickDraw's numpy_bitmap files)
    if per_class is not None:
        return per_class
    found = find_on_disk(path, columns)
    if found is None:
        if path.is_dir() and (any((path / d).is_dir() for d in TRAIN_FOLDERS) !=
                              any((path / d).is_dir() for d in EVAL_FOLDERS)):
            has = ("train/ but no val/, test/, validation/ or valid/" if any((path / d).is_dir() for d in TRAIN_FOLDERS)
                   else "an evaluation folder but no train/")
            raise HardenError(f"{spec!r} has {has}; a folder for training holds train/ and val/ (or test/, "
                              "validation/, valid/), each with one folder per class, and a folder for evaluation alone "
                              "holds the class folders themselves.")
        refuse_compressed_tar(path)
        if path.is_file() and path.suffix.lower() in IMAGE_EXT:
            raise HardenError(f"{spec!r} is one image; --data takes a dataset, whose labels harden needs: put the "
                              "image in a folder named after its class (or list it in a CSV with its label) and pass "
                              "the folder above it.")
        if path.is_dir() and _holds_images(path):
            raise HardenError(f"{spec!r} is a folder of images without class folders, so it has no labels. `harden eval "
                              "--labels predicted` measures how often an attack changes the model's own answers on "
                              "them, `harden fix --labels predicted` hardens the model to keep the base's answers, and "
                              "`fix --unlabeled` mixes them into training on labelled data; to measure accuracy, sort "
                              "them into one folder per class, or, where each file's name holds its class (cat.0.jpg, "
                              "Abyssinian_1.jpg), read it there with --label-from-name PATTERN ('^[a-z]+', "
                              "'^(.+)_\\d+')." + rows_hint(path))
        from .arrays import shared_labels_folder
        arrays = shared_labels_folder(path) if path.is_dir() else None
        if arrays is not None:
            return _laid(arrays, "one .npy of images, memory-mapped, its labels from the file beside it")
        if path.is_file() and path.suffix == ".py":
            from .from_code import code_hint
            raise HardenError(code_hint(path))
        raise HardenError(f"{spec!r} is none of the data layouts harden reads: {LAYOUTS}.")
    return _file_data(found, target or DataTarget())


def _file_data(found: OnDisk, target: DataTarget) -> FileData:
    from .classes import map_classes
    listers = dict(found.listers)
    if "all" in listers:  # one split: the evaluation split (a list's training split is held out by fix)
        listers["test"] = listers.pop("all")
    names = found.class_names()
    mapping, note = (None, "labels are class indices")
    if names is not None and "" in names:  # a list's rows without a label (as --unlabeled, such a list is fine)
        for lister in found.listers.values():
            _refuse_unlabelled(lister(), found.source)
    readings = {}
    if names is not None and target.class_map is None and not target.label_names and found.class_order is None:
        from .class_order import numbered_readings
        readings = numbered_readings(names, target.num_classes) if target.predict is not None else {}
    if readings:  # numbered folders the model may have learned in more than one order: it is asked, below
        note = next(iter(readings))
        mapping = dict(readings[note])
    elif names is not None:
        mapping, note = map_classes(names, target.num_classes, list(target.label_names or []) or None,
                                    target.class_map, found.source, found.class_order, found.class_order_from)
        from .class_order import SORTED_NAMES, listed_readings
        if note == SORTED_NAMES and target.predict is not None and Path(found.source).is_dir():
            readings = listed_readings(names, target.num_classes, found.source)  # a class list in another order
    elif target.class_map is not None:
        raise HardenError(f"--class-map: {found.source} labels its images with class indices already.")

    def labelled(lister):
        def get() -> Listing:
            lst = lister()
            _refuse_unlabelled(lst, found.source)
            if lst.names is not None:
                try:
                    lst.labels = np.fromiter((mapping[n] for n in lst.names), np.int64, len(lst.names))
                except KeyError as e:  # a class the source's cheap list of names left out: a bug, said plainly
                    raise HardenError(f"internal error: {found.source} lists images of class {e} that its class "
                                      "list does not name; please report it.") from None
                lst.names = None
            if target.num_classes is not None and len(lst.labels) and lst.labels.max() >= target.num_classes:
                top, low = int(lst.labels.max()), int(lst.labels.min())
                from_one = (f" The labels run from {low} to {top}: a list that numbers its classes from 1 reads here "
                            f"as indices from 0 (the model's 0 to {target.num_classes - 1}); subtract 1 from its labels, "
                            "or write class names and give --class-map.") if low >= 1 and \
                    top == target.num_classes else ""
                raise HardenError(f"{found.source} has labels up to {top} but the model has only "
                                  f"{target.num_classes} classes.{from_one}")
            return lst
        return get
    listers = {k: labelled(v) for k, v in listers.items()}
    num_classes = target.num_classes
    if num_classes is None:
        if mapping:
            num_classes = max(mapping.values()) + 1
        else:
            num_classes = max(int(listers[k]().labels.max(initial=0)) for k in listers) + 1
    class_names = None
    if mapping and sorted(mapping.values()) == list(range(num_classes)):
        class_names = [c for c, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
    orientation = resolve_orientation(target.exif_orientation, found.layout)
    data = FileData(found.source, max(2, num_classes), replace(target.preprocess or Preprocess(), orientation=orientation),
                    listers, found.layout,
                    class_names=class_names, class_note=note, size_note=target.size_note,
                    workers=default_workers() if target.workers is None else target.workers,
                    skip_unreadable=target.skip_unreadable)
    if target.preprocess is None:  # no model yet (harden train): the images' own size and colour
        data.preprocess = replace(_guess_preprocess(data, target.train_size), orientation=orientation)
    if readings:
        _read_as_the_model_does(data, readings, note, mapping, target.predict)
    return data


def _read_as_the_model_does(data: FileData, readings: dict[str, dict[str, int]], used: str, mapping: dict[str, int],
                            predict) -> None:
    """Numbered class folders relabelled in place to the reading the model's predictions support (class_order)."""
    from ..runtime import info
    from .class_order import choose
    split = "test" if data.has_split("test") else "train"
    try:
        chosen, data.class_note = choose(data, split, readings, used, predict)
    except (RuntimeError, ValueError) as e:  # a forward pass that fails here (out of memory) fails the run later too
        chosen, data.class_note = used, (f"{used}; the model could not be asked how it numbers the folders "
                                         f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}): "
                                         "--class-map FILE sets the order")
    info(f"{data.source}: classes read as {data.class_note}")
    if chosen == used:
        return
    conv = np.zeros(max(readings[used].values()) + 1, np.int64)
    for name, i in readings[used].items():
        conv[i] = readings[chosen][name]
    for listing in data._cache.values():  # listed already (the sample): relabelled; later listings map anew
        listing.labels = conv[listing.labels]
    mapping.clear()
    mapping.update(readings[chosen])
    data.class_names = [c for c, _ in sorted(mapping.items(), key=lambda kv: kv[1])]


def _laid(data: Data, layout: str) -> Data:
    """Arrays read from a file format: `harden data`'s layout row says which, where the reader did not."""
    if isinstance(data, ImageData) and not data.layout:
        data.layout = layout
    return data


def _labels_only_by_name(path: Path) -> bool:
    """Whether a folder's (a zip archive's) images lie loose, in it or in its train/ and val/, as the data a recorded
    --label-from-name was given for did (a class-folder tree at the same path is read as one, not by names)."""
    from .name_labels import _splits
    if path.is_file() and path.suffix.lower() == ".zip":
        from .zipped import zip_source
        try:  # class folders in the archive label it; loose images are what the pattern was for
            for lister in zip_source(path).listers.values():
                lister()
        except HardenError:
            return True
        return False
    return path.is_dir() and all(_holds_images(f) and not class_folders(f) for f in _splits(path).values())


def _holds_images(folder: Path, look: int = 1000) -> bool:
    """Whether image files lie directly in `folder` (among its first `look` entries: a crawl's folder is not listed):
    files of an image format, or .npy files of one image each (the first one's header says)."""
    import itertools
    import os

    from .array_images import ARRAY_EXT, holds_one_image
    with os.scandir(folder) as entries:
        files = [e for e in itertools.islice(entries, look) if e.is_file()]
    if any(Path(e.name).suffix.lower() in IMAGE_EXT for e in files):
        return True
    first = next((e.path for e in files if e.name.lower().endswith(ARRAY_EXT)), None)
    return first is not None and holds_one_image(first)


def _refuse_unlabelled(lst: Listing, source: str) -> None:
    """Images without a label (a list's empty cells, a table's -1 or its missing label column) cannot be evaluated
    or trained on; the same source can be --unlabeled."""
    if lst.names is None or "" not in lst.names:
        return
    if lst.what == "table" and lst.store.label_column is None or not getattr(lst.store, "labelled", True):
        raise HardenError(f"{lst.store.missing_labels_note()}: it can serve as --unlabeled, not as --data.")
    first = lst.names.index("")
    raise HardenError(f"{source}: {sum(n == '' for n in lst.names)} image(s) have no label (first: "
                      f"{lst.location(first)}). An evaluation or training list labels every image; images without "
                      "labels go to --unlabeled.")


GUESSED_SIDE_MAX = 224  # a size guessed from photographs trains at ImageNet's size at most, not at a camera's


def _sampled_sizes(data: FileData, sample: int) -> tuple[Counter, int]:
    """(how many of a seeded sample of the training (else only) split have each (height, width), how many are grey)."""
    from .array_images import open_image
    split = "train" if data.has_split("train") else "test"
    lst = data.listing(split)
    idx = stratified_sample(lst.labels, min(sample, len(lst)), 0)
    sizes, grey = Counter(), 0
    for i in idx:
        try:
            with open_image(lst.read_bytes(i), lst) as im:
                turned = data.preprocess.orientation == "upright" and exif_orientation(im) in (5, 6, 7, 8)
                sizes[(im.width, im.height) if turned else (im.height, im.width)] += 1  # a quarter turn swaps them
                grey += im.mode in ("L", "1", "I;16", "I", "F", "LA")
        except (OSError, SyntaxError, ValueError):  # PIL's errors for a bad file; training names it (or skips it)
            continue
    if not sizes:
        raise HardenError(f"None of {len(idx)} sampled images of {data.source} could be read.")
    return sizes, grey


def _typical(sizes: Counter) -> tuple[tuple[int, int], str]:
    """The most common size where at least half the sample has it (a dataset of one size), else a square of the
    median shorter side (photographs of every size); and how it was found."""
    read = sum(sizes.values())
    common, count = sizes.most_common(1)[0]
    if 2 * count >= read:
        return common, f"the size of {count} of {read} sampled images"
    sides = sorted(min(hw) for hw, k in sizes.items() for _ in range(k))
    side = sides[len(sides) // 2]
    return (side, side), f"{read} sampled images of {len(sizes)} sizes: a square of their median shorter side"


def files_size(data: FileData, sample: int = 32) -> tuple[int, int]:
    """The size image files are at themselves (_typical of a seeded sample): a size the input-size check tries."""
    return _typical(_sampled_sizes(data, sample)[0])[0]


def _guess_preprocess(data: FileData, size: tuple[int, int] | None = None, sample: int = 32) -> Preprocess:
    """The colour of a seeded sample of the files, and `size`, else their typical size (_typical), its shorter side
    at most GUESSED_SIDE_MAX, the aspect kept."""
    from ..runtime import info
    sizes, grey = _sampled_sizes(data, sample)
    chans = 1 if grey == sum(sizes.values()) else 3
    if size is not None:
        return Preprocess(chans, size)
    (h, w), how = _typical(sizes)
    if min(h, w) > GUESSED_SIDE_MAX:
        scale = GUESSED_SIDE_MAX / min(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        how += f", scaled to a shorter side of {GUESSED_SIDE_MAX}"
    if (h, w) != sizes.most_common(1)[0][0]:
        info(f"images read at {h}x{w} ({how}; train --input-size chooses another)")
    return Preprocess(chans, (h, w))


def is_on_disk(data: Data) -> bool:
    return isinstance(data, FileData)


COLUMNS_KEY = "data_columns"  # metadata: the --label-column / --image-column the model was hardened with
COLUMN_LAYOUTS = ("list", "parquet", "arrow", "tfrecord")


def _layout_of(data: Data) -> str:
    if isinstance(data, FileData):
        return data.layout
    from .tfrecord import tfrecord_files
    path = Path(str(data.source))
    return "tfrecord" if path.exists() and tfrecord_files(path) is not None else "arrays"


def check_columns_apply(columns: Columns, data: Data) -> None:
    """--label-column / --image-column name a list's or a table's columns (a TFRecord's features): on other data
    they would be silently ignored, so a flag is refused there (a recorded choice is simply not used); so is
    --label-from-name beside them (a source has one way of labelling)."""
    if columns.from_name and columns and not columns.recorded:
        raise HardenError("--label-from-name reads the labels in a folder's file names; --label-column and "
                          "--image-column name a list's or a table's columns: give one or the other.")
    from .name_labels import NAMES_LAYOUT
    if columns.from_name and not columns.recorded and _layout_of(data) != NAMES_LAYOUT:
        raise HardenError(f"--label-from-name reads the labels in the names of a folder's image files; "
                          f"{data.source} is read as {_layout_of(data)}, whose labels come from its own structure.")
    if columns and not columns.recorded and _layout_of(data) not in COLUMN_LAYOUTS:
        flags = " and ".join(f for f, v in (("--label-column", columns.label), ("--image-column", columns.image)) if v)
        raise HardenError(f"{flags} name{'s' * (' and ' not in flags)} the columns of a CSV/TSV list or a parquet/Arrow "
                          f"table, or the features of TFRecord files; {data.source} is read as "
                          f"{_layout_of(data)}, whose labels come from its own structure.")


def remember_columns(model, target: dict | None, data: Data) -> None:
    """--label-column / --image-column given for a list, a table or TFRecords: kept in the model's metadata, so that
    later runs on the same data need no flag (DataTarget.for_model)."""
    target = target or {}
    if (target.get("label_column") or target.get("image_column")) and _layout_of(data) in COLUMN_LAYOUTS:
        model.spec.extra[COLUMNS_KEY] = {k: v for k, v in (("label", target.get("label_column")),
                                                           ("image", target.get("image_column"))) if v}
    from .name_labels import NAMES_LAYOUT
    if target.get("label_from_name") and _layout_of(data) == NAMES_LAYOUT:
        model.spec.extra[COLUMNS_KEY] = {"from_name": target["label_from_name"]}


def remember_label_names(model, data: Data) -> None:
    """The names of the data's classes, where they name each of the model's outputs once and the model holds none:
    kept in its metadata as its label names, so that later data (a folder of some of the classes, sorted otherwise,
    or with a stray folder) maps onto the same outputs by name (classes.map_classes), and an export carries them."""
    names = getattr(data, "class_names", None)
    if names and len(names) == model.spec.num_classes and len(set(map(str, names))) == len(names) and \
            not model.spec.extra.get("label_names"):
        model.spec.extra["label_names"] = [str(n) for n in names]


def remember_orientation(model, choice: str, data: Data) -> None:
    """An explicit --exif-orientation for image files: kept in the model's metadata, so that later runs read the files
    the same way with no flag (DataTarget.for_model)."""
    if choice != "auto" and is_on_disk(data):
        model.spec.extra["exif_orientation"] = choice


IN_MEMORY_CHUNK = 1024  # images decoded at a time by in_memory


def in_memory(data: Data) -> ImageData:
    """The training split as arrays (uint8 NHWC at the data's size): for recipes that build their training set once
    (patch-ft). Files are decoded through the evaluation transform; only the (sub)set's files are read."""
    if isinstance(data, ImageData):
        return data
    n, kept = data.n_train, 0
    u8, labels = None, np.zeros(n, np.int64)
    for start in range(0, n, IN_MEMORY_CHUNK):  # to uint8 chunk by chunk: the whole set's float pixels are 4x as large
        x, y = data.images("train", np.arange(start, min(start + IN_MEMORY_CHUNK, n)))  # fewer: unreadable skipped
        chunk = (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        if u8 is None:
            u8 = np.empty((n, *chunk.shape[1:]), np.uint8)
        u8[kept:kept + len(chunk)], labels[kept:kept + len(chunk)] = chunk, y.numpy()
        kept += len(chunk)
    if u8 is None or kept == 0:
        raise HardenError(f"{data.source}: no image of the training split could be read.")
    empty = np.zeros((0, *u8.shape[1:]), np.uint8)
    return ImageData(u8[:kept], labels[:kept], empty, np.zeros(0, np.int64), data.source, data.num_classes,
                     subset=data.subset, class_names=data.class_names)


__all__ = ["Data", "DataTarget", "FileData", "ImageData", "from_arrays", "Listing", "Preprocess", "SMALL_IMAGE_SIDE",
           "IMAGE_EXT",
           "augment", "batches", "build_augment", "check_fits", "default_workers", "fit_size", "index_hash",
           "in_memory", "is_on_disk", "load_data", "remember_orientation", "stratified_sample", "stratified_subset",
           "subsample", "to_tensor", "untrained_classes"]
