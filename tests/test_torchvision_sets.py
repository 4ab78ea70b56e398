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
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(HardenError, match="several torchvision downloads .MNIST/raw, cifar-100-python"):
        load_data(tmp_path)
