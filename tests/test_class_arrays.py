"""A folder of one .npy array per class (`np.save(f"{name}.npy", images)`; QuickDraw's `full_numpy_bitmap_cat.npy`,
N rows of 784 values): each file's name is its class, its rows that class's images, read where a run uses them; the
folder is one split, or holds train/ and test/ folders of such files. Told from one image a file by the shapes."""
import json
import os

import numpy as np
import pytest

from harden import HardenError
from harden.data import load_data
from harden.data.describe import describe


def by_class(digits) -> list[np.ndarray]:
    """The digits test split's images of each class, N x 8 x 8 uint8, in their order."""
    x, y = np.asarray(digits.x_test)[..., 0], np.asarray(digits.y_test)
    return [x[y == k] for k in range(10)]


def test_numbered_class_files_evaluate_as_the_same_images_in_one_npz(digits, digits_ckpt, cli, tmp_path):
    """`class_0.npy` ... `class_9.npy`, N x 8 x 8 each: the report equals the one on an .npz of the same images and
    labels in the same order, image for image."""
    folder = tmp_path / "per_class"
    folder.mkdir()
    classes = by_class(digits)
    for k, imgs in enumerate(classes):
        np.save(folder / f"class_{k}.npy", imgs)
    np.savez(tmp_path / "same.npz", x=np.concatenate(classes), y=np.repeat(np.arange(10), [len(c) for c in classes]))
    n = sum(map(len, classes))
    reports = []
    for data in (folder, tmp_path / "same.npz"):
        out = tmp_path / f"{data.stem}.json"
        code, _, err = cli("eval", digits_ckpt, "--data", data, "--n", n, "--attack", "fgsm", "--no-metrics",
                           "--no-masking-checks", "--json", out, "-q")
        assert code == 0, err
        reports.append(json.loads(out.read_text()))
    ours, npz = reports
    assert ours["n"] == npz["n"] == n and ours["clean_accuracy"] == npz["clean_accuracy"] > 0.8
    assert ours["attacks"][0]["robust_accuracy"] == npz["attacks"][0]["robust_accuracy"]
    assert [r["n"] for r in ours["per_class"]] == [len(c) for c in classes]


def test_quickdraw_s_flattened_rows_are_one_class_a_file(tmp_path, monkeypatch):
    """QuickDraw's numpy_bitmap files: N x 784 uint8 rows, a different N for each class, names sharing
    `full_numpy_bitmap_`; the classes sorted as ImageFolder sorts folder names; each image is its row, 28 x 28."""
    rng = np.random.default_rng(0)
    rows = {"cat": 7, "The Eiffel Tower": 5, "aircraft carrier": 9}
    saved = {c: rng.integers(0, 256, (n, 784), dtype=np.uint8) for c, n in rows.items()}
    for c, a in saved.items():
        np.save(tmp_path / f"full_numpy_bitmap_{c}.npy", a)
    from harden import runtime
    said = []
    monkeypatch.setattr(runtime, "info", said.append)
    data = load_data(str(tmp_path))
    assert data.class_names == ["The Eiffel Tower", "aircraft carrier", "cat"] and data.n_train == 0
    assert data.x_test.shape == (21, 28, 28, 1)
    y = np.asarray(data.y_test)
    for k, c in enumerate(data.class_names):
        assert np.array_equal(np.asarray(data.x_test[np.flatnonzero(y == k)])[..., 0], saved[c].reshape(-1, 28, 28))
    said = " ".join(said)
    assert "one .npy array of images per class, 3 classes" in said and "`full_numpy_bitmap_` dropped" in said
    layout = dict(describe(data))["layout"]
    assert layout.startswith("one .npy array per class (3 classes, class indices sorted by name")
    held = data.with_held_out_test()  # what `fix` trains and tests on: each class in both
    assert set(np.asarray(held.y_train).tolist()) == set(np.asarray(held.y_test).tolist()) == {0, 1, 2}


def test_classes_saved_under_their_numbers_keep_them(tmp_path):
    """`0.npy` ... `11.npy`: class 10 is index 10 (numeric order), not 2 as sorted names would make it."""
    for k in range(12):
        np.save(tmp_path / f"{k}.npy", np.full((2 + k % 3, 6, 6), 20 * k, np.uint8))
    data = load_data(str(tmp_path))
    assert data.class_names == [str(k) for k in range(12)]
    x, y = np.asarray(data.x_test), np.asarray(data.y_test)
    assert all((x[y == k] == 20 * k).all() for k in range(12))


def test_train_and_test_folders_of_class_arrays_channels_first_floats(tmp_path):
    """train/ and test/ each holding one array per class, floats in [0, 1] saved N x 3 x H x W (a tensor's
    `.numpy()`): read as uint8 pixels; the test split's classes take the training split's indices by name, one
    missing there included."""
    rng = np.random.default_rng(1)
    made = {}
    for split, counts in (("train", {"ant": 4, "bee": 3, "wasp": 5}), ("test", {"bee": 2, "wasp": 3})):
        (tmp_path / split).mkdir()
        for c, n in counts.items():
            u8 = rng.integers(0, 256, (n, 3, 5, 7), dtype=np.uint8)
            made[split, c] = u8
            np.save(tmp_path / split / f"{c}_images.npy", u8.astype(np.float32) / 255)
    data = load_data(str(tmp_path))
    assert data.class_names == ["ant", "bee", "wasp"] and (data.n_train, data.n_test) == (12, 5)
    assert np.asarray(data.y_test).tolist() == [1, 1, 2, 2, 2]
    assert np.array_equal(np.asarray(data.x_test[[0, 1]]), np.moveaxis(made["test", "bee"], 1, -1))
    assert np.array_equal(np.asarray(data.x_train[[4, 5, 6]]), np.moveaxis(made["train", "bee"], 1, -1))
    (tmp_path / "test" / "moth_images.npy").write_bytes((tmp_path / "test" / "bee_images.npy").read_bytes())
    with pytest.raises(HardenError, match="holds classes train/ has no array of: moth"):
        load_data(str(tmp_path))


def test_a_class_of_another_size_is_named_and_rows_of_equal_counts_say_how_to_save_them(tmp_path):
    for c in ("a", "b"):
        np.save(tmp_path / f"{c}.npy", np.zeros((6, 8, 8), np.uint8))
    np.save(tmp_path / "c.npy", np.zeros((6, 9, 8), np.uint8))
    with pytest.raises(HardenError, match=r"but c\.npy holds uint8 images of 9 x 8 and a\.npy uint8 images of 8 x 8"):
        load_data(str(tmp_path))
    rows = tmp_path / "rows"
    rows.mkdir()
    for c in ("a", "b"):  # 30 x 784: a grey image each, or 30 rows of 28 x 28 images: read as the former
        np.save(rows / f"{c}.npy", np.zeros((30, 784), np.uint8))
    with pytest.raises(HardenError, match=r"without class folders.* Its \.npy files hold 30 x 784 arrays, read as "
                                          r"one grey image each; .*rows\.reshape\(-1, 28, 28\)"):
        load_data(str(rows))


def test_rows_of_many_classes_are_read_without_holding_a_file_open(tmp_path):
    """Thousands of classes would outrun the descriptors a process may hold if each kept a memory map open."""
    for k in range(300):
        np.save(tmp_path / f"c{k:03d}.npy", np.full((5, 6, 6), k % 256, np.uint8))
    data = load_data(str(tmp_path))
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    x, y = np.asarray(data.x_test[np.arange(0, 1500, 2)]), np.asarray(data.y_test)[np.arange(0, 1500, 2)]
    assert (x[..., 0][:, 0, 0] == y % 256).all()
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("names", [("x_train", "x_test"), ("train", "test"), ("images", "masks"),
                                   ("train_images", "test_images")])
def test_arrays_named_as_a_dataset_s_parts_are_no_classes(tmp_path, names):
    """Images without their labels (x_train.npy and x_test.npy), or a segmentation set's images.npy and masks.npy:
    the same shapes as one array per class, named as no classes are."""
    for name in names:
        np.save(tmp_path / f"{name}.npy", np.zeros((6, 8, 8), np.uint8))
    with pytest.raises(HardenError) as refused:
        load_data(str(tmp_path))
    assert "none of the data layouts" in str(refused.value)
