"""Datasets as torchvision's classes download them (harden/data/torchvision_sets.py), written here in their formats
and read back as torchvision itself reads them (torchvision is the reference: the same pixels and labels)."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torchvision

from harden.data import load_data
from harden.data.unlabeled import load_unlabeled
from harden.errors import HardenError


def _idx(path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("name,gz", [("MNIST", True), ("FashionMNIST", False), ("KMNIST", True)])
def test_the_mnist_family_reads_as_torchvision_reads_it(tmp_path, name, gz):
    rng = np.random.default_rng(0)
    raw = tmp_path / name / "raw"
    raw.mkdir(parents=True)
    x, y, xt, yt = (rng.integers(0, 255, (12, 28, 28)), rng.integers(0, 10, 12), rng.integers(0, 255, (5, 28, 28)),
                    rng.integers(0, 10, 5))
    for stem, arr in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y), ("t10k-images-idx3-ubyte", xt),
                      ("t10k-labels-idx1-ubyte", yt)):
        _idx(raw / stem, arr, gz)
    for where in (tmp_path, tmp_path / name, raw):  # torchvision's root, the set's folder, its raw/
        d = load_data(where)
        assert d.x_train.shape[:3] == (12, 28, 28) and d.y_train.tolist() == y.tolist() and d.y_test.tolist() == yt.tolist()
    if not gz:  # torchvision reads raw files itself (it decompresses .gz only when it downloads)
        ref = getattr(torchvision.datasets, name)(str(tmp_path), train=True, download=False)
        assert np.array_equal(ref.data.numpy(), d.x_train.reshape(12, 28, 28)) and d.class_names == ref.classes
    (raw / "t10k-labels-idx1-ubyte").unlink(missing_ok=True)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink(missing_ok=True)
    with pytest.raises(HardenError, match="lacks t10k-labels-idx1-ubyte"):
        load_data(tmp_path)


def test_cifar100_svhn_and_stl10_as_torchvision_reads_them(tmp_path, monkeypatch):
    for cls in (torchvision.datasets.CIFAR100, torchvision.datasets.SVHN, torchvision.datasets.STL10):
        monkeypatch.setattr(cls, "_check_integrity", lambda self: True)  # the files here are not the published ones
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    rng = np.random.default_rng(1)
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for split, n in (("train", 8), ("test", 4)):
        with open(c100 / split, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (n, 3072)).astype(np.uint8),
                         "fine_labels": rng.integers(0, 100, n).tolist(),
                         "coarse_labels": rng.integers(0, 20, n).tolist()}, f)
    with open(c100 / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    d = load_data(tmp_path)
    ref = torchvision.datasets.CIFAR100(str(tmp_path), train=True, download=False)
    assert np.array_equal(d.x_train, ref.data) and d.y_train.tolist() == ref.targets and d.class_names == ref.classes

    from scipy.io import savemat
    svhn = tmp_path / "svhn"
    svhn.mkdir()
    for split, n in (("train", 6), ("test", 3)):
        savemat(svhn / f"{split}_32x32.mat", {"X": rng.integers(0, 255, (32, 32, 3, n)).astype(np.uint8),
                                              "y": rng.integers(1, 11, (n, 1))})
    d = load_data(svhn)
    ref = torchvision.datasets.SVHN(str(svhn), split="train", download=False)
    assert np.array_equal(d.x_train, ref.data.transpose(0, 2, 3, 1)) and d.y_train.tolist() == ref.labels.tolist()
    assert 10 not in d.y_train.tolist()

    stl = tmp_path / "stl" / "stl10_binary"
    stl.mkdir(parents=True)
    for split, n in (("train", 4), ("test", 2)):
        rng.integers(0, 255, n * 3 * 96 * 96).astype(np.uint8).tofile(stl / f"{split}_X.bin")
        rng.integers(1, 11, n).astype(np.uint8).tofile(stl / f"{split}_y.bin")
    (stl / "class_names.txt").write_text("\n".join(f"k{i}" for i in range(10)))
    d = load_data(tmp_path / "stl")
    ref = torchvision.datasets.STL10(str(tmp_path / "stl"), split="train", download=False)
    assert np.array_equal(d.x_train, ref.data.transpose(0, 2, 3, 1)) and d.y_train.tolist() == ref.labels.tolist()
    assert len(load_unlabeled(tmp_path / "stl", None).x_train) == 4  # as an unlabeled pool: its training images
    rng.integers(0, 255, 5 * 3 * 96 * 96).astype(np.uint8).tofile(stl / "unlabeled_X.bin")
    pool = load_unlabeled(tmp_path / "stl", None)  # ... or its unlabeled split where it is there, read in place
    ref = torchvision.datasets.STL10(str(tmp_path / "stl"), split="unlabeled", download=False)
    assert np.array_equal(np.asarray(pool.x_train), ref.data.transpose(0, 2, 3, 1)) and (pool.y_train == -1).all()
    base = pool.x_train  # a view of the memory-mapped file, not a copy in memory
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(HardenError, match="several torchvision downloads .MNIST/raw, cifar-100-python"):
        load_data(tmp_path)


def _jpg(path, rng) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (24, 30, 3), np.uint8)).save(path)


def _reads_as_torchvision(where, ref_train, ref_test, num_classes: int) -> None:
    """harden's listing of `where`: torchvision's files, labels and class names, split by split."""
    from harden.data import DataTarget
    from harden.models import create_model
    target = DataTarget.for_model(create_model("cnn-small", num_classes, 3, (16, 16), (0.5,), (0.25,)), workers=0)
    data = load_data(where, target)
    for split, ref in (("train", ref_train), ("test", ref_test)):
        files = getattr(ref, "_image_files", None) or ref._images
        lst = data.listing(split)
        assert [lst.location(i) for i in range(len(lst))] == [str(f) for f in files]
        assert lst.labels.tolist() == list(ref._labels)
    assert data.class_names == list(ref_train.classes)
    assert len(load_unlabeled(where, target).listing("train")) == len(ref_train)  # a pool: its training split


def test_food101_and_oxford_pets_follow_their_split_lists_as_torchvision_does(tmp_path, monkeypatch):
    import json
    rng = np.random.default_rng(2)
    food = tmp_path / "food-101"
    meta = {"train": {"baby_back_ribs": ["baby_back_ribs/7", "baby_back_ribs/2"], "apple_pie": ["apple_pie/3"]},
            "test": {"apple_pie": ["apple_pie/9"], "baby_back_ribs": ["baby_back_ribs/4"]}}
    for split, classes in meta.items():
        for files in classes.values():
            for f in files:
                _jpg(food / "images" / f"{f}.jpg", rng)
        (food / "meta").mkdir(exist_ok=True)
        (food / "meta" / f"{split}.json").write_text(json.dumps(classes))
    pets = tmp_path / "pets" / "oxford-iiit-pet"
    (pets / "annotations").mkdir(parents=True)
    lines = {"trainval": ["Abyssinian_1 1 1 1", "american_bulldog_5 2 2 1", "Abyssinian_3 1 1 1"],
             "test": ["american_bulldog_9 2 2 1"]}
    for split, rows in lines.items():
        (pets / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
        for r in rows:
            _jpg(pets / "images" / f"{r.split()[0]}.jpg", rng)
    for cls in (torchvision.datasets.Food101, torchvision.datasets.OxfordIIITPet):
        monkeypatch.setattr(cls, "_check_exists", lambda self: True)
    _reads_as_torchvision(tmp_path, torchvision.datasets.Food101(str(tmp_path), split="train"),
                          torchvision.datasets.Food101(str(tmp_path), split="test"), 2)
    _reads_as_torchvision(tmp_path / "pets", torchvision.datasets.OxfordIIITPet(str(tmp_path / "pets"), split="trainval"),
                          torchvision.datasets.OxfordIIITPet(str(tmp_path / "pets"), split="test"), 2)


def test_flowers102_and_dtd_follow_their_split_files_as_torchvision_does(tmp_path, monkeypatch):
    from scipy.io import savemat
    rng = np.random.default_rng(3)
    flowers = tmp_path / "flowers-102"
    labels = np.array([77, 3, 102, 3, 77, 1])  # 1-based, as imagelabels.mat holds them
    for i in range(1, len(labels) + 1):
        _jpg(flowers / "jpg" / f"image_{i:05d}.jpg", rng)
    savemat(str(flowers / "imagelabels.mat"), {"labels": labels[None, :]})
    savemat(str(flowers / "setid.mat"), {"trnid": np.array([[5, 2, 3]]), "valid": np.array([[6]]),
                                         "tstid": np.array([[4, 1]])})
    dtd = tmp_path / "textures" / "dtd" / "dtd"
    # every split names every class, as DTD's do (torchvision indexes each split's own classes)
    split_rows = {"train1": ["zigzagged/zigzagged_0003.jpg", "banded/banded_0001.jpg", "dotted/dotted_0102.jpg"],
                  "val1": ["banded/banded_0007.jpg"],
                  "test1": ["dotted/dotted_0009.jpg", "zigzagged/zigzagged_0011.jpg", "banded/banded_0004.jpg"]}
    (dtd / "labels").mkdir(parents=True)
    for split, rows in split_rows.items():
        (dtd / "labels" / f"{split}.txt").write_text("\n".join(rows) + "\n")
        for r in rows:
            _jpg(dtd / "images" / r, rng)
    monkeypatch.setattr(torchvision.datasets.Flowers102, "_check_integrity", lambda self: True)  # not the real files
    _reads_as_torchvision(tmp_path, torchvision.datasets.Flowers102(str(tmp_path), split="train"),
                          torchvision.datasets.Flowers102(str(tmp_path), split="test"), 102)
    _reads_as_torchvision(tmp_path / "textures", torchvision.datasets.DTD(str(tmp_path / "textures"), split="train"),
                          torchvision.datasets.DTD(str(tmp_path / "textures"), split="test"), 3)


def test_gtsrb_reads_as_torchvision_reads_it(tmp_path):
    """torchvision's GTSRB: Training/<00000..>/ class folders of .ppm, Final_Test/Images/ with GT-final_test.csv (`;`,
    Filename, ClassId): the same files and labels, train and test; the test split alone where only it is there."""
    from harden.data import DataTarget
    from harden.models import create_model
    from PIL import Image
    rng = np.random.default_rng(4)
    base = tmp_path / "gtsrb"
    for c in range(12):  # every class a folder, as GTSRB has (torchvision numbers the folders by sorted position)
        d = base / "GTSRB" / "Training" / f"{c:05d}"
        d.mkdir(parents=True)
        for i in range(1 + (c == 11)):
            Image.fromarray(rng.integers(0, 255, (20, 22, 3), np.uint8)).save(d / f"00000_{i:05d}.ppm")
        (d / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
    test = base / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, c in enumerate([11, 0, 1, 11]):
        Image.fromarray(rng.integers(0, 255, (20, 22, 3), np.uint8)).save(test / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;22;20;1;1;20;18;{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    target = DataTarget.for_model(create_model("cnn-small", 12, 3, (16, 16), (0.5,), (0.25,)), workers=0)
    data = load_data(tmp_path, target)
    for split in ("train", "test"):
        ref = torchvision.datasets.GTSRB(str(tmp_path), split=split)
        lst = data.listing(split)
        assert [lst.location(i) for i in range(len(lst))] == [p for p, _ in ref._samples]
        assert lst.labels.tolist() == [c for _, c in ref._samples], split
    import shutil
    shutil.rmtree(base / "GTSRB" / "Training")  # the test download alone: an evaluation set
    alone = load_data(tmp_path, target)
    assert not alone.has_split("train") and alone.y_test.tolist() == [11, 0, 1, 11]


def test_the_old_processed_mnist_layout(tmp_path):
    """torchvision before 0.8 kept MNIST as `MNIST/processed/training.pt` and `test.pt`, each (data, targets)."""
    import torch
    rng = np.random.default_rng(5)
    (tmp_path / "MNIST" / "processed").mkdir(parents=True)
    parts = {}
    for name, n in (("training", 8), ("test", 5)):
        x, y = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
        torch.save((torch.from_numpy(x), torch.from_numpy(y)), tmp_path / "MNIST" / "processed" / f"{name}.pt")
        parts[name] = (x, y)
    data = load_data(tmp_path)
    assert np.array_equal(data.x_train[:][..., 0], parts["training"][0]) and data.y_test.tolist() == \
        parts["test"][1].tolist()
    (tmp_path / "MNIST" / "raw").mkdir()  # both layouts of one set (a download kept across torchvision versions)
    for name, (x, y) in (("train", parts["training"]), ("t10k", parts["test"])):
        _idx(tmp_path / "MNIST" / "raw" / f"{name}-images-idx3-ubyte", x, False)
        _idx(tmp_path / "MNIST" / "raw" / f"{name}-labels-idx1-ubyte", y, False)
    assert load_data(tmp_path).y_test.tolist() == parts["test"][1].tolist()


def test_fgvc_aircraft_and_caltech101_read_as_torchvision_reads_them(tmp_path, monkeypatch):
    """FGVC-Aircraft: variants.txt's order is torchvision's class index (not sorted: `F/A-18` and `Yak-42` put
    last-written first here), images_variant_trainval.txt / _test.txt the splits. Caltech-101: class folders without
    BACKGROUND_Google, as torchvision's Caltech101 leaves it out (102 folders, 101 classes)."""
    from harden.data import DataTarget
    from harden.models import create_model
    rng = np.random.default_rng(5)
    data_dir = tmp_path / "fgvc-aircraft-2013b" / "data"
    variants = ["Yak-42", "707-320", "F/A-18"]
    (data_dir / "images").mkdir(parents=True)
    (data_dir / "variants.txt").write_text("\n".join(variants) + "\n")
    splits = {"trainval": [("1025794", "F/A-18"), ("0034309", "Yak-42"), ("1340192", "707-320")],
              "test": [("0056978", "707-320"), ("1234567", "F/A-18")]}
    for split, rows in splits.items():
        (data_dir / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v in rows))
        for i, _ in rows:
            _jpg(data_dir / "images" / f"{i}.jpg", rng)
    monkeypatch.setattr(torchvision.datasets.FGVCAircraft, "_check_exists", lambda self: True)
    _reads_as_torchvision(tmp_path, torchvision.datasets.FGVCAircraft(str(tmp_path), split="trainval"),
                          torchvision.datasets.FGVCAircraft(str(tmp_path), split="test"), 3)

    caltech = tmp_path / "cal" / "caltech101" / "101_ObjectCategories"
    for c, n in (("accordion", 2), ("BACKGROUND_Google", 2), ("Faces_easy", 1), ("yin_yang", 2)):
        for i in range(1, n + 1):
            _jpg(caltech / c / f"image_{i:04d}.jpg", rng)
    monkeypatch.setattr(torchvision.datasets.Caltech101, "_check_integrity", lambda self: True)
    ref = torchvision.datasets.Caltech101(str(tmp_path / "cal"))
    target = DataTarget.for_model(create_model("cnn-small", 3, 3, (16, 16), (0.5,), (0.25,)), workers=0)
    data = load_data(tmp_path / "cal", target)
    lst = data.listing("test")
    assert data.class_names == ref.categories and not data.has_split("train")
    assert lst.labels.tolist() == ref.y
    assert [lst.location(i) for i in range(len(lst))] == [
        str(caltech / ref.categories[c] / f"image_{i:04d}.jpg") for c, i in zip(ref.y, ref.index, strict=True)]


def test_emnist_splits_read_as_torchvision_reads_them(tmp_path):
    """EMNIST's raw folder holds six splits, each its own dataset: one alone is read as torchvision's EMNIST(split)
    (labels as stored: `letters` from 1 with class 0 'N/A'); several are refused with the file to give, and a file of
    one split reads that split."""
    rng = np.random.default_rng(6)
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    for split, top in (("letters", 27), ("balanced", 47)):
        for part, n in (("train", 6), ("test", 4)):
            _idx(raw / f"emnist-{split}-{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz=False)
            _idx(raw / f"emnist-{split}-{part}-labels-idx1-ubyte", rng.integers(1, top, n), gz=False)
    with pytest.raises(HardenError, match="EMNIST's splits balanced, letters.*give one split's file"):
        load_data(tmp_path)
    data = load_data(raw / "emnist-letters-test-images-idx3-ubyte")
    for train in (True, False):
        ref = torchvision.datasets.EMNIST(str(tmp_path), split="letters", train=train)
        xs, ys = (data.x_train, data.y_train) if train else (data.x_test, data.y_test)
        assert np.array_equal(np.asarray(xs[:])[..., 0], ref.data.numpy()) and ys.tolist() == ref.targets.tolist()
    assert data.class_names == ref.classes
    for f in raw.glob("emnist-balanced-*"):
        f.unlink()
    assert load_data(tmp_path).y_test.tolist() == data.y_test.tolist()  # one split left: the folder is it


def test_pcam_and_hdf5_arrays_read_in_place(tmp_path):
    """PatchCamelyon as torchvision's PCAM downloads it (`pcam/camelyonpatch_level_2_split_*_{x,y}.h5`): the same
    images and labels, train and test, read as a run indexes them (rows in any order); one file given reads its
    split; an .h5 of Keras-era `train_set_x`/`test_set_y`/`list_classes` reads as an .npz of those arrays would."""
    import h5py
    from harden.data.hdf5 import H5Rows
    rng = np.random.default_rng(7)
    pcam = tmp_path / "pcam"
    pcam.mkdir()
    for split, n in (("train", 10), ("valid", 3), ("test", 6)):
        with h5py.File(pcam / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f["x"] = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
        with h5py.File(pcam / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f["y"] = rng.integers(0, 2, (n, 1, 1, 1), dtype=np.uint8)
    data = load_data(tmp_path)
    assert isinstance(data.x_test, H5Rows)
    for split in ("train", "test"):
        ref = torchvision.datasets.PCAM(str(tmp_path), split=split)
        xs, ys = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        assert ys.tolist() == [ref[i][1] for i in range(len(ref))]
        assert all(np.array_equal(np.asarray(ref[i][0]), xs[i]) for i in range(len(ref)))
    order = np.array([5, 0, 3, 3, 1])
    assert np.array_equal(data.x_test[order], np.stack([data.x_test[i] for i in order]))
    alone = load_data(pcam / "camelyonpatch_level_2_split_valid_x.h5")
    assert alone.n_train == 0 and len(alone.y_test) == 3
    x = rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "train_signs.h5", "w") as f:
        f["train_set_x"], f["train_set_y"] = x, np.arange(8) % 2
        f["test_set_x"], f["test_set_y"] = x[:4], np.arange(4) % 2
        f["list_classes"] = np.array([b"no", b"yes"])
    signs = load_data(tmp_path / "train_signs.h5")
    assert np.array_equal(np.asarray(signs.x_train[:]), x) and signs.y_test.tolist() == [0, 1, 0, 1]
    assert signs.class_names == ["no", "yes"]


def test_sun397_and_eurosat_read_as_torchvision_reads_them(tmp_path, monkeypatch):
    """SUN397: a class is the path below its letter folder (`a/apartment_building/outdoor`), indexed in
    ClassName.txt's order, not 26 letter classes; EuroSAT: torchvision's `eurosat/2750/<class>/` is read as the class
    folders inside the numbered folder, not as one class named 2750."""
    from harden.data import DataTarget
    from harden.models import create_model
    rng = np.random.default_rng(8)
    sun = tmp_path / "SUN397"
    classes = ["/b/bakery/shop", "/a/abbey", "/a/apartment_building/outdoor"]
    for c in classes:
        for i in range(2):
            _jpg(sun / c.lstrip("/") / f"sun_{c[3:].replace('/', '')}{i}.jpg", rng)
    (sun / "ClassName.txt").write_text("\n".join(classes) + "\n")
    ref = torchvision.datasets.SUN397(str(tmp_path))
    target = DataTarget.for_model(create_model("cnn-small", 3, 3, (16, 16), (0.5,), (0.25,)), workers=0)
    data = load_data(tmp_path, target)
    lst = data.listing("test")
    truth = {str(f): label for f, label in zip(ref._image_files, ref._labels, strict=True)}
    assert {lst.location(i): int(lst.labels[i]) for i in range(len(lst))} == truth
    assert data.class_names == ref.classes
    for c in ("Forest", "River", "Highway"):
        _jpg(tmp_path / "eu" / "eurosat" / "2750" / c / f"{c}_1.jpg", rng)
    monkeypatch.setattr(torchvision.datasets.EuroSAT, "_check_exists", lambda self: True)
    euro = torchvision.datasets.EuroSAT(str(tmp_path / "eu"))
    data = load_data(tmp_path / "eu" / "eurosat", target)
    assert data.class_names == euro.classes and data.y_test.tolist() == [t for _, t in euro.samples]


def test_stanford_cars_reads_as_torchvision_reads_it(tmp_path):
    """StanfordCars: cars_train/ along devkit/cars_train_annos.mat, cars_test/ along cars_test_annos_withlabels.mat
    (classes from 1 there), the classes named and ordered by devkit/cars_meta.mat."""
    from scipy.io import savemat
    rng = np.random.default_rng(9)
    base = tmp_path / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = np.array(["Volvo 240 Sedan 1993", "AM General Hummer SUV 2000", "Acura RL Sedan 2012"], dtype=object)
    savemat(str(base / "devkit" / "cars_meta.mat"), {"class_names": names[None, :]})

    def annos(path, rows):
        arr = np.zeros((1, len(rows)), dtype=[("fname", "O"), ("class", "O")])
        for i, (f, c) in enumerate(rows):
            arr[0, i] = (f, c)
        savemat(str(path), {"annotations": arr})
    train = [("00002.jpg", 3), ("00001.jpg", 1), ("00003.jpg", 2)]
    test = [("00001.jpg", 2), ("00002.jpg", 1)]
    annos(base / "devkit" / "cars_train_annos.mat", train)
    annos(base / "cars_test_annos_withlabels.mat", test)
    for folder, rows in (("cars_train", train), ("cars_test", test)):
        for f, _ in rows:
            _jpg(base / folder / f, rng)
    ref_train = torchvision.datasets.StanfordCars(str(tmp_path), split="train")
    ref_test = torchvision.datasets.StanfordCars(str(tmp_path), split="test")
    for ref in (ref_train, ref_test):
        ref._image_files, ref._labels = [p for p, _ in ref._samples], [c for _, c in ref._samples]
    _reads_as_torchvision(tmp_path, ref_train, ref_test, 3)
