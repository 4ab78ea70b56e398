"""The classic datasets as torchvision's dataset classes download them (`MNIST(root, download=True)` and its kin),
so `--data ./data` reads what published training code left there: the MNIST family's IDX files
(`MNIST/raw/train-images-idx3-ubyte[.gz]`: MNIST, FashionMNIST, KMNIST), CIFAR-100's python pickles
(`cifar-100-python/train`, `test`, `meta`), SVHN's MATLAB files (`train_32x32.mat`, `test_32x32.mat`) and STL-10's
binaries (`stl10_binary/train_X.bin`). CIFAR-10's batches are read by arrays.py. Labels and class names as
torchvision gives them (SVHN's 10 for the digit 0 is 0; STL-10's 1-10 are 0-9). Arrays in memory, as for .npz: these
sets are small."""
from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np

from ..errors import HardenError

# torchvision's `classes` of each IDX set (the folder torchvision names it by)
IDX_SETS = {
    "MNIST": [str(i) for i in range(10)],
    "FashionMNIST": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"],
    "KMNIST": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
KNOWN = ("MNIST/raw", "FashionMNIST/raw", "KMNIST/raw", "cifar-100-python", "stl10_binary", "MNIST/processed",
         "FashionMNIST/processed", "KMNIST/processed")


def torchvision_source(path: Path):
    """ImageData for a torchvision download at `path` (the root it was given, or the dataset's own folder); None when
    `path` is none."""
    if path.is_file() and EMNIST_FILE.match(path.name):  # one of EMNIST's files: its split
        return _emnist(path.parent, EMNIST_FILE.match(path.name).group(1))
    if not path.is_dir():
        return None
    for folder in (path / "EMNIST" / "raw", path / "raw", path):
        splits = _emnist_splits(folder)
        if splits:
            return _emnist(folder, splits[0]) if len(splits) == 1 else _emnist_choice(folder, splits)
    found = [path / k for k in KNOWN if (path / k).is_dir()] + ([path] if _svhn_files(path) else [])
    found = [f for f in found if not (f.name == "processed" and f.parent / "raw" in found)]  # one set, two layouts
    if not found:  # the dataset's own folder (MNIST/ or its raw/), or one of the layouts itself
        for folder in (path / "raw", path):
            if _idx_file(folder, IDX_FILES[0]) is not None:
                return _idx(folder)
        for folder in (path / "processed", path):  # torchvision before 0.8: (data, targets) tensors per split
            if (folder / "training.pt").is_file() and (folder / "test.pt").is_file():
                return _processed(folder)
        if (path / "train").is_file() and (path / "meta").is_file():
            return _cifar100(path)
        if (path / "train_X.bin").is_file():
            return _stl10(path)
        return None
    if len(found) > 1:
        names = ", ".join(str(f.relative_to(path)) for f in found)
        raise HardenError(f"{str(path)!r} holds several torchvision downloads ({names}); pass the folder of the one "
                          "to use.")
    return torchvision_source(found[0]) if found[0] != path else _svhn(path)


# torchvision's EMNIST: `EMNIST/raw/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte` for six splits
EMNIST_FILE = re.compile(r"^emnist-(\w+)-(?:train|test)-(?:images-idx3|labels-idx1)-ubyte(?:\.gz)?$")


def _emnist_splits(folder: Path) -> list[str]:
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file()]
    except OSError:
        return []
    return sorted({m.group(1) for n in names if (m := EMNIST_FILE.match(n))})


def _emnist_choice(folder: Path, splits: list[str]):
    raise HardenError(f"{str(folder)!r} holds EMNIST's splits {', '.join(splits)}, each its own dataset with its own "
                      f"classes: give one split's file as --data ({folder / f'emnist-{splits[0]}-test-images-idx3-ubyte'}"
                      ", or any of its four files).")


def _emnist(folder: Path, split: str):
    """One EMNIST split as torchvision's EMNIST(split=...) reads it: the IDX files as stored (images transposed, as
    torchvision leaves them), labels as stored (`letters` from 1, its class 0 'N/A'), its classes_split_dict names."""
    from torchvision.datasets import EMNIST

    from .arrays import _finish
    names = [f"emnist-{split}-{part}" for part in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                   "test-images-idx3-ubyte", "test-labels-idx1-ubyte")]
    files = [_idx_file(folder, n) for n in names]
    if any(f is None for f in files):
        missing = [n for n, f in zip(names, files, strict=True) if f is None]
        raise HardenError(f"{str(folder)!r} lacks {', '.join(missing)} (an EMNIST split has all four files).")
    xtr, ytr, xte, yte = (_read_idx(f) for f in files)
    # the source names a file of the split, so that a checkpoint's record of its data reads the same split again
    return _finish(xtr, ytr, xte, yte, str(files[2]), EMNIST.classes_split_dict.get(split))


def _processed(folder: Path):
    """torchvision's old MNIST-family layout: `processed/training.pt` and `test.pt`, each (data, targets)."""
    from .arrays import _finish, _torch_file
    train, test = _torch_file(folder / "training.pt"), _torch_file(folder / "test.pt")
    return _finish(train.x_test, train.y_test, test.x_test, test.y_test, str(folder))


def _idx_file(folder: Path, name: str) -> Path | None:
    return next((folder / f for f in (name, name + ".gz") if (folder / f).is_file()), None)


def _read_idx(file: Path) -> np.ndarray:
    """An IDX file (big-endian header: two zero bytes, a type code, the number of dimensions, their sizes)."""
    data = gzip.open(file).read() if file.suffix == ".gz" else file.read_bytes()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise HardenError(f"{str(file)!r} is not an IDX file of unsigned bytes (MNIST's format).")
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", ndim, 4).astype(np.int64)
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise HardenError(f"{str(file)!r} holds {body.size} values where its header says {' x '.join(map(str, dims))}.")
    return body.reshape(dims)


def _idx(folder: Path):
    from .arrays import _finish
    files = [_idx_file(folder, n) for n in IDX_FILES]
    if any(f is None for f in files):
        missing = [n for n, f in zip(IDX_FILES, files, strict=True) if f is None]
        raise HardenError(f"{str(folder)!r} lacks {', '.join(missing)} (torchvision's MNIST layout has all four).")
    xtr, ytr, xte, yte = (_read_idx(f) for f in files)
    name = folder.parent.name if folder.name == "raw" else folder.name
    return _finish(xtr, ytr, xte, yte, str(folder), IDX_SETS.get(name))


def _cifar100(folder: Path):
    from .arrays import _ArrayOnlyUnpickler, _finish

    def read(name: str) -> dict:
        with open(folder / name, "rb") as f:
            return _ArrayOnlyUnpickler(f, encoding="bytes").load()
    train, test, meta = read("train"), read("test"), read("meta")

    def key(d: dict, name: str):  # Python 2's pickles (the published files) give bytes keys, Python 3's str
        if not isinstance(d, dict) or (name.encode() not in d and name not in d):
            raise HardenError(f"{str(folder)!r}: a CIFAR-100 file without {name!r} (its files: train, test, meta).")
        return d.get(name.encode(), d.get(name))

    def split(d: dict):
        return (np.asarray(key(d, "data"), np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1),
                np.asarray(key(d, "fine_labels")))
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in key(meta, "fine_label_names")] or None
    return _finish(*split(train), *split(test), str(folder), names)


def _svhn_files(folder: Path) -> bool:
    return (folder / "train_32x32.mat").is_file() and (folder / "test_32x32.mat").is_file()


def _svhn(folder: Path):
    from scipy.io import loadmat

    from .arrays import _finish

    def read(name: str):
        try:
            m = loadmat(str(folder / name), variable_names=["X", "y"])
        except (ValueError, OSError, NotImplementedError) as e:
            raise HardenError(f"{str(folder / name)!r} is not a readable MATLAB file ({e}).") from None
        y = np.asarray(m["y"], np.int64).ravel()
        return np.ascontiguousarray(np.asarray(m["X"], np.uint8).transpose(3, 0, 1, 2)), np.where(y == 10, 0, y)
    return _finish(*read("train_32x32.mat"), *read("test_32x32.mat"), str(folder), [str(i) for i in range(10)])


def _stl10(folder: Path):
    from .arrays import _finish

    def read(split: str):
        x = np.fromfile(folder / f"{split}_X.bin", np.uint8)
        if x.size % (3 * 96 * 96):
            raise HardenError(f"{str(folder / f'{split}_X.bin')!r} is not a whole number of 96x96 colour images.")
        x = x.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)  # stored column by column, as MATLAB writes
        y = np.fromfile(folder / f"{split}_y.bin", np.uint8).astype(np.int64) - 1
        return np.ascontiguousarray(x), y
    names_file = folder / "class_names.txt"
    names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()] if names_file.is_file() else None
    return _finish(*read("train"), *read("test"), str(folder), names)


def stl10_unlabeled(path: Path):
    """STL-10's 100,000 unlabeled images (`stl10_binary/unlabeled_X.bin`, as torchvision's STL10(split="unlabeled")
    reads them) as an N x 96 x 96 x 3 view of the memory-mapped file (a run reads the images it uses); None where
    `path` (the root given to torchvision, or the set's folder) has none."""
    found = next((f for f in (path / "stl10_binary" / "unlabeled_X.bin", path / "unlabeled_X.bin") if f.is_file()),
                 None)
    if found is None:
        return None
    size = found.stat().st_size
    if size == 0 or size % (3 * 96 * 96):
        raise HardenError(f"{str(found)!r} is not a whole number of 96x96 colour images.")
    rows = np.memmap(found, np.uint8, "r", shape=(size // (3 * 96 * 96), 3, 96, 96))
    return rows.transpose(0, 3, 2, 1)  # stored column by column, as MATLAB writes: a strided view, nothing read


# ---------------------------------------------------------------- sets of image files with split lists

def torchvision_files(path: Path):
    """OnDisk for torchvision's image-file sets with split lists: Food-101 (`food-101/images/<class>/<id>.jpg`,
    `meta/train.json`, `meta/test.json`), Oxford-IIIT Pet (`oxford-iiit-pet/images/<id>.jpg`,
    `annotations/trainval.txt`, `test.txt`), Flowers-102 (`flowers-102/jpg/image_<id>.jpg`, `imagelabels.mat`,
    `setid.mat`), DTD (`dtd/dtd/images/<class>/<name>.jpg`, `labels/train1.txt`, `test1.txt`: partition 1, as
    torchvision's default), GTSRB, FGVC-Aircraft (`fgvc-aircraft-2013b/data/`) and Caltech-101
    (`caltech101/101_ObjectCategories/`), as the root given to torchvision or the set's own folder; None else."""
    for folder in (path / "food-101", path):
        if (folder / "meta" / "train.json").is_file() and (folder / "images").is_dir():
            return _food101(folder)
    for folder in (path / "oxford-iiit-pet", path):
        if (folder / "annotations" / "trainval.txt").is_file() and (folder / "images").is_dir():
            return _pets(folder)
    for folder in (path / "flowers-102", path):
        if (folder / "setid.mat").is_file() and (folder / "imagelabels.mat").is_file() and (folder / "jpg").is_dir():
            return _flowers102(folder)
    for folder in (path / "dtd" / "dtd", path / "dtd", path):
        if (folder / "labels" / "train1.txt").is_file() and (folder / "images").is_dir():
            return _dtd(folder)
    for folder in (path / "gtsrb", path):
        if (folder / "GTSRB" / "Training").is_dir() or (folder / "GT-final_test.csv").is_file():
            return _gtsrb(folder)
    for folder in (path / "fgvc-aircraft-2013b", path, path / "fgvc-aircraft-2013b" / "data", path / "data"):
        if (folder / "variants.txt").is_file() and (folder / "images").is_dir():
            return _aircraft(folder)
    for folder in (path / "stanford_cars", path):
        if (folder / "devkit" / "cars_meta.mat").is_file() and (folder / "cars_train").is_dir() or \
                (folder / "devkit" / "cars_meta.mat").is_file() and (folder / "cars_test").is_dir():
            return _stanford_cars(folder)
    for folder in (path / "SUN397", path):
        if (folder / "ClassName.txt").is_file() and (folder / "a").is_dir():
            return _sun397(folder)
    for folder in (path / "caltech101" / "101_ObjectCategories", path / "101_ObjectCategories", path):
        if (folder / CALTECH_BACKGROUND).is_dir():
            return _caltech101(folder)
    return None


CALTECH_BACKGROUND = "BACKGROUND_Google"  # Caltech-101's clutter folder: torchvision's Caltech101 drops it


def _caltech101(folder: Path):
    """torchvision's Caltech101: `caltech101/101_ObjectCategories/<class>/image_0001.jpg`, its 101 classes sorted with
    the BACKGROUND_Google folder left out (it is not a class), one split (evaluation; `fix` holds a share out)."""
    from .sources import OnDisk, class_folders, list_class_folders
    names = [c for c in class_folders(folder) if c != CALTECH_BACKGROUND]

    def listing():
        found = list_class_folders(folder)
        keep = np.asarray([i for i, n in enumerate(found.names) if n != CALTECH_BACKGROUND], np.int64)
        out = found.take(keep)
        out.names = [found.names[i] for i in keep]
        return out
    return OnDisk(str(folder), {"all": listing}, "folder", lambda: list(names))


def _stanford_cars(folder: Path):
    """torchvision's StanfordCars: `cars_train/` along devkit/cars_train_annos.mat, `cars_test/` along
    cars_test_annos_withlabels.mat (classes numbered from 1 there, from 0 here), named by devkit/cars_meta.mat."""
    from scipy.io import loadmat

    from .sources import Listing, OnDisk, PathTable

    def mat(file: Path, key: str):
        try:
            return loadmat(str(file), squeeze_me=True)[key]
        except (ValueError, OSError, NotImplementedError, KeyError, TypeError) as e:
            raise HardenError(f"{str(file)!r} is not Stanford Cars' MATLAB file with {key!r} "
                              f"({type(e).__name__}: {e}).") from None
    names = tuple(str(n) for n in mat(folder / "devkit" / "cars_meta.mat", "class_names").tolist())

    def split(annotations: Path, images: Path) -> Listing:
        if not annotations.is_file():
            raise HardenError(f"{str(folder)!r} is Stanford Cars' folder, but {annotations.name} is not there.")
        rows = [(str(a["fname"]), int(a["class"]) - 1) for a in mat(annotations, "annotations")]
        bad = [c for _, c in rows if not 0 <= c < len(names)]
        if bad:
            raise HardenError(f"{str(annotations)!r} holds class {bad[0] + 1}, beyond cars_meta.mat's {len(names)}.")
        return Listing(str(images), PathTable([f for f, _ in rows]), np.zeros(len(rows), np.int64),
                       [names[c] for _, c in rows], what="folder")
    listers = {}
    if (folder / "cars_train").is_dir():
        listers["train"] = lambda: split(folder / "devkit" / "cars_train_annos.mat", folder / "cars_train")
    if (folder / "cars_test").is_dir():
        listers["test" if listers else "all"] = lambda: split(folder / "cars_test_annos_withlabels.mat",
                                                               folder / "cars_test")
    return OnDisk(str(folder), listers, "folder", lambda: list(names), names,
                  "cars_meta.mat's order, as torchvision's StanfordCars")


def _sun397(folder: Path):
    """torchvision's SUN397: `SUN397/<letter>/<class>[/<sub>]/sun_*.jpg`, the classes in ClassName.txt's order
    (`/a/abbey`, `/a/apartment_building/outdoor`: a class is the path below its letter), one split."""
    from .sources import Listing, OnDisk, PathTable, walk_files
    names = tuple(line.strip()[3:] for line in (folder / "ClassName.txt").read_text().splitlines() if line.strip())
    known = set(names)

    def listing() -> Listing:
        refs = sorted(walk_files(folder, lambda f: os.path.basename(f).startswith("sun_") and f.endswith(".jpg")))
        labels = ["/".join(Path(r).parts[1:-1]) for r in refs]
        unknown = sorted({c for c in labels if c not in known})
        if unknown:
            raise HardenError(f"{str(folder)!r}: images in {', '.join(unknown[:3])}, which ClassName.txt does not "
                              "name.")
        return Listing(str(folder), PathTable(refs), np.zeros(len(refs), np.int64), labels, what="folder")
    return OnDisk(str(folder), {"all": listing}, "folder", lambda: list(names), names,
                  "ClassName.txt's order, as torchvision's SUN397")


def _aircraft(folder: Path):
    """torchvision's FGVCAircraft at its default annotation level, the variant: `data/images/<id>.jpg`, the classes in
    variants.txt's order (torchvision's indices), `images_variant_trainval.txt` (torchvision's default training
    split) and `images_variant_test.txt` of `<id> <variant>` lines."""
    from .sources import Listing, OnDisk, PathTable
    names = tuple(line.strip() for line in (folder / "variants.txt").read_text().splitlines() if line.strip())

    def split(part: str) -> Listing:
        file = folder / f"images_variant_{part}.txt"
        if not file.is_file():
            raise HardenError(f"{str(folder)!r} is FGVC-Aircraft's data folder, but {file.name} is not in it.")
        refs, labels = [], []
        for n, line in enumerate(file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            image, _, variant = line.strip().partition(" ")
            if variant not in names:
                raise HardenError(f"{str(file)!r}, line {n}: {variant!r} is not among variants.txt's classes.")
            refs.append(f"{image}.jpg")
            labels.append(variant)
        return Listing(str(folder / "images"), PathTable(refs), np.zeros(len(refs), np.int64), labels, what="folder")
    return OnDisk(str(folder), {"train": lambda: split("trainval"), "test": lambda: split("test")}, "folder",
                  lambda: list(names), names, "variants.txt's order, as torchvision's FGVCAircraft")


def _gtsrb(folder: Path):
    """torchvision's GTSRB: `GTSRB/Training/00000 ... 00042/*.ppm` (class folders) and `GTSRB/Final_Test/Images/*.ppm`
    with their classes in `GT-final_test.csv` (`;`-separated Filename and ClassId), as torchvision reads them; either
    split alone where only it was downloaded (test only: evaluation)."""
    import csv

    from .sources import Listing, OnDisk, PathTable, list_class_folders
    train, truth = folder / "GTSRB" / "Training", folder / "GT-final_test.csv"
    images = folder / "GTSRB" / "Final_Test" / "Images"

    def test() -> Listing:
        try:
            rows = list(csv.DictReader(truth.read_text().splitlines(), delimiter=";", skipinitialspace=True))
            part = [(r["Filename"].strip(), int(r["ClassId"])) for r in rows]
        except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:
            raise HardenError(f"{str(truth)!r} is not GTSRB's `;`-separated Filename;...;ClassId list "
                              f"({type(e).__name__}: {e}).") from None
        if not images.is_dir():
            raise HardenError(f"{str(truth)!r} lists GTSRB's test images, but {str(images)!r} is not there: extract "
                              "GTSRB_Final_Test_Images.zip beside it.")
        # named as the training folders are (00012), so both splits read the numbers one way
        return Listing(str(images), PathTable([f for f, _ in part]), np.zeros(len(part), np.int64),
                       [f"{c:05d}" for _, c in part], what="folder")

    listers = {}
    if train.is_dir():
        listers["train"] = lambda: list_class_folders(train)
    if truth.is_file():
        listers["test" if train.is_dir() else "all"] = test
    classes = (lambda: sorted(e.name for e in train.iterdir() if e.is_dir())) if train.is_dir() else \
        (lambda: sorted(set(test().names)))
    return OnDisk(str(folder), listers, "folder", classes)


def _flowers102(folder: Path):
    """torchvision's Flowers102: its `train` split (setid's trnid, 10 images a class) and `test` (tstid); labels
    1-102 in imagelabels.mat, named by torchvision's `Flowers102.classes`."""
    from scipy.io import loadmat
    from torchvision.datasets import Flowers102

    from .sources import Listing, OnDisk, PathTable

    def read(name: str, key: str) -> np.ndarray:
        try:
            return np.asarray(loadmat(str(folder / name), squeeze_me=True)[key], np.int64).reshape(-1)
        except (ValueError, OSError, NotImplementedError, KeyError, TypeError) as e:
            raise HardenError(f"{str(folder / name)!r} is not Flowers-102's MATLAB file with {key!r} "
                              f"({type(e).__name__}: {e}).") from None
    names = list(Flowers102.classes)
    labels = read("imagelabels.mat", "labels") - 1
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise HardenError(f"{str(folder / 'imagelabels.mat')!r} holds labels outside 1-{len(names)}.")

    def split(key: str) -> Listing:
        ids = read("setid.mat", key)
        if len(ids) and (ids.min() < 1 or ids.max() > len(labels)):
            raise HardenError(f"{str(folder / 'setid.mat')!r}: {key} names images beyond the {len(labels)} that "
                              "imagelabels.mat labels.")
        return Listing(str(folder / "jpg"), PathTable([f"image_{i:05d}.jpg" for i in ids.tolist()]),
                       np.zeros(len(ids), np.int64), [names[labels[i - 1]] for i in ids.tolist()], what="folder")
    return OnDisk(str(folder), {"train": lambda: split("trnid"), "test": lambda: split("tstid")}, "folder",
                  lambda: list(names), tuple(names))


def _dtd(folder: Path):
    """torchvision's DTD, partition 1: `labels/train1.txt` and `test1.txt` list `class/name.jpg` under `images/`;
    classes sorted, as torchvision sorts them."""
    from .sources import Listing, OnDisk, PathTable

    def rows(name: str) -> list[tuple[str, str]]:
        out = []
        for n, line in enumerate((folder / "labels" / name).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.strip().split("/")
            if len(parts) != 2:
                raise HardenError(f"{str(folder / 'labels' / name)!r}, line {n}: {line!r} is not `class/image.jpg`.")
            out.append((parts[0], parts[1]))
        return out

    def split(name: str) -> Listing:
        part = rows(name)
        return Listing(str(folder / "images"), PathTable([f"{c}/{f}" for c, f in part]), np.zeros(len(part), np.int64),
                       [c for c, _ in part], what="folder")

    def classes() -> list[str]:
        return sorted({c for c, _ in rows("train1.txt")})
    return OnDisk(str(folder), {"train": lambda: split("train1.txt"), "test": lambda: split("test1.txt")}, "folder",
                  classes)


def _food101(folder: Path):
    import json

    from .sources import Listing, OnDisk, PathTable

    def split(name: str) -> Listing:
        try:
            meta = json.loads((folder / "meta" / f"{name}.json").read_text())
        except (OSError, ValueError) as e:
            raise HardenError(f"{str(folder / 'meta' / (name + '.json'))!r} is not readable JSON ({e}).") from None
        refs, names = [], []
        for cls, files in meta.items():  # {class: ["class/id", ...]}: torchvision's reading
            refs += [f"{f}.jpg" for f in files]
            names += [cls] * len(files)
        return Listing(str(folder / "images"), PathTable(refs), np.zeros(len(refs), np.int64), names, what="folder")

    def classes() -> list[str]:
        return sorted(json.loads((folder / "meta" / "train.json").read_text()))
    return OnDisk(str(folder), {"train": lambda: split("train"), "test": lambda: split("test")}, "folder", classes)


def _pets(folder: Path):
    from .sources import Listing, OnDisk, PathTable

    def rows(name: str) -> list[tuple[str, int]]:
        out = []
        for n, line in enumerate((folder / "annotations" / f"{name}.txt").read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not parts[1].isdigit():
                raise HardenError(f"{str(folder / 'annotations' / (name + '.txt'))!r}, line {n}: {line!r} is not "
                                  "`image_id class species breed`.")
            out.append((parts[0], int(parts[1]) - 1))
        return out
    train, test = rows("trainval"), rows("test")
    # torchvision's class names: the image ids' breed part, title-cased, in label order
    names = {label: " ".join(p.title() for p in image.rsplit("_", 1)[0].split("_")) for image, label in train + test}
    order = tuple(names[i] for i in sorted(names))

    def split(part: list[tuple[str, int]]) -> Listing:
        return Listing(str(folder / "images"), PathTable([f"{i}.jpg" for i, _ in part]), np.zeros(len(part), np.int64),
                       [names[label] for _, label in part], what="folder")
    return OnDisk(str(folder), {"train": lambda: split(train), "test": lambda: split(test)}, "folder",
                  lambda: list(order), order)
