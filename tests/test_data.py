import pickle

import numpy as np
import pytest
import torch

from harden import HardenError, load_data, subsample
from harden.data import augment, build_augment, stratified_subset


def test_digits_is_embedded(digits):
    assert digits.x_train.dtype == np.uint8 and digits.x_train.shape[1:] == (8, 8, 1)
    assert digits.num_classes == 10 and len(digits.x_test) == 450


@pytest.mark.parametrize("layout", ["NHW", "NHWC"])
def test_npz(tmp_path, layout):
    rng = np.random.default_rng(0)
    shape = (20, 6, 6) if layout == "NHW" else (20, 6, 6, 3)
    p = tmp_path / "d.npz"
    np.savez(p, x_train=rng.integers(0, 255, shape, dtype=np.uint8), y_train=np.arange(20) % 4,
             x_test=rng.integers(0, 255, shape, dtype=np.uint8), y_test=np.arange(20) % 4)
    d = load_data(p)
    assert d.in_chans == (1 if layout == "NHW" else 3) and d.num_classes == 4


def test_a_folder_of_npy_files_reads_as_the_npz_of_them(tmp_path):
    """np.save per array (x_train.npy, y_train.npy, ...; or one split's images.npy, labels.npy, channels first in
    [0, 1]): the same data as np.savez of the same arrays."""
    rng = np.random.default_rng(1)
    arrays = {"X_train": rng.integers(0, 255, (12, 5, 5, 3), dtype=np.uint8), "y_train": np.arange(12) % 3,
              "x_val": rng.integers(0, 255, (6, 5, 5, 3), dtype=np.uint8), "y_val": np.arange(6) % 3}
    (tmp_path / "four").mkdir()
    for k, v in arrays.items():
        np.save(tmp_path / "four" / f"{k}.npy", v)
    np.savez(tmp_path / "four.npz", **arrays)
    a, b = load_data(tmp_path / "four"), load_data(tmp_path / "four.npz")
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(np.asarray(getattr(a, k)[:]), np.asarray(getattr(b, k)[:])), k
    (tmp_path / "one").mkdir()
    np.save(tmp_path / "one" / "images.npy", arrays["x_val"].transpose(0, 3, 1, 2).astype(np.float32) / 255)
    np.save(tmp_path / "one" / "labels.npy", arrays["y_val"])
    one = load_data(tmp_path / "one")
    assert one.n_train == 0 and np.array_equal(one.x_test[:], arrays["x_val"])


def test_published_sets_names_for_their_arrays(tmp_path):
    """MNIST-C's `train_images.npy` / `test_labels.npy` (a folder per corruption); CIFAR-10.1's
    `cifar10.1_v6_data.npy` and `_labels.npy` (one split); CIFAR-10-C's corruption files sharing `labels.npy`: one
    given as --data, the folder refused with the choice named (a folder of one is read)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (8, 5, 5, 3), dtype=np.uint8)
    y = np.arange(8) % 4
    mnist_c = tmp_path / "mnist_c" / "fog"
    mnist_c.mkdir(parents=True)
    for split, n in (("train", 8), ("test", 4)):
        np.save(mnist_c / f"{split}_images.npy", x[:n])
        np.save(mnist_c / f"{split}_labels.npy", y[:n])
    fog = load_data(mnist_c)
    assert fog.n_train == 8 and np.array_equal(fog.x_test[:], x[:4]) and fog.y_test.tolist() == y[:4].tolist()
    alone = load_data(mnist_c / "test_images.npy")  # one file: its labels named as it is
    assert alone.n_train == 0 and alone.y_test.tolist() == y[:4].tolist()
    v1 = tmp_path / "cifar10.1"
    v1.mkdir()
    np.save(v1 / "cifar10.1_v6_data.npy", x)
    np.save(v1 / "cifar10.1_v6_labels.npy", y)
    assert load_data(v1).y_test.tolist() == y.tolist() == load_data(v1 / "cifar10.1_v6_data.npy").y_test.tolist()
    c = tmp_path / "CIFAR-10-C"
    c.mkdir()
    np.save(c / "labels.npy", np.concatenate([y, y]))
    np.save(c / "fog.npy", np.concatenate([x, x[::-1]]))
    assert np.array_equal(load_data(c).x_test[:][8:], x[::-1])  # the one corruption there
    np.save(c / "snow.npy", np.concatenate([x, x]))
    with pytest.raises(HardenError, match="2 image arrays \\(fog, snow\\) that share labels.npy.*give one as --data"):
        load_data(c)
    snow = load_data(c / "snow.npy")
    assert snow.n_train == 0 and len(snow.y_test) == 16
    with pytest.raises(HardenError, match="its labels are read from a file beside it"):
        load_data(v1.parent / "mnist_c" / "fog" / "train_labels.npy").y_test  # noqa: B018
    np.save(c / "short.npy", x)
    with pytest.raises(HardenError, match="holds 8 images and labels.npy 16 labels"):
        load_data(c / "short.npy")


def test_kaggle_pixel_csvs_read_as_arrays(tmp_path):
    """Kaggle's MNIST family as CSV: `label,pixel1..pixel784` (Fashion-MNIST's train file takes its test file beside
    it), no header with the label first (`mnist_test.csv`), floats in [0, 1]; a file of pixels with no label column
    (the digit recognizer's test.csv) is refused; the error of an ordinary list keeps a long header short."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    y = np.arange(12) % 3
    rows = np.column_stack([y, x.reshape(12, -1)])
    header = "label," + ",".join(f"pixel{i + 1}" for i in range(64))
    np.savetxt(tmp_path / "fashion-mnist_train.csv", rows, fmt="%d", delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "fashion-mnist_test.csv", rows[:6], fmt="%d", delimiter=",", header=header, comments="")
    pair = load_data(tmp_path / "fashion-mnist_train.csv")
    assert pair.n_train == 12 and np.array_equal(pair.x_train[:][..., 0], x)
    assert np.array_equal(pair.x_test[:][..., 0], x[:6]) and pair.y_test.tolist() == y[:6].tolist()
    np.savetxt(tmp_path / "mnist_test.csv", rows, fmt="%d", delimiter=",")
    bare = load_data(tmp_path / "mnist_test.csv")
    assert bare.n_train == 0 and np.array_equal(bare.x_test[:][..., 0], x) and bare.y_test.tolist() == y.tolist()
    floats = np.column_stack([y, x.reshape(12, -1) / 255.0])
    np.savetxt(tmp_path / "scaled.csv", floats, fmt="%.6f", delimiter=",", header=header, comments="")
    assert np.array_equal(load_data(tmp_path / "scaled.csv").x_test[:][..., 0], x)
    np.savetxt(tmp_path / "test.csv", x.reshape(12, -1), fmt="%d", delimiter=",",
               header=",".join(f"pixel{i}" for i in range(64)), comments="")
    with pytest.raises(HardenError, match="no label column"):
        load_data(tmp_path / "test.csv")
    (tmp_path / "wide.csv").write_text("label," + ",".join(f"c{i}" for i in range(40)) + "\n1," + "x," * 39 + "x\n")
    with pytest.raises(HardenError, match=r"c10, \.\.\. \(41 columns\)\) names no path column"):
        load_data(tmp_path / "wide.csv")


def test_fer2013_csv_reads_as_torchvision_reads_it(tmp_path, monkeypatch):
    """FER2013's `fer2013.csv` (emotion, pixels as one space-separated string, Usage) and `icml_face_data.csv` (its
    columns with a leading space): torchvision's FER2013 images and labels, Training the training split and
    PublicTest + PrivateTest the test split, its seven emotions named."""
    import warnings

    import torchvision
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (9, 48, 48), dtype=np.uint8)
    usage = ["Training"] * 5 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
    folder = tmp_path / "fer2013"
    folder.mkdir()
    lines = ["emotion,pixels,Usage"] + [f"{i % 7},{' '.join(map(str, img.ravel()))},{u}"
                                        for i, (img, u) in enumerate(zip(x, usage, strict=True))]
    (folder / "fer2013.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "icml_face_data.csv").write_text("emotion, Usage, pixels\n" + "".join(
        f"{i % 7},{u},{' '.join(map(str, img.ravel()))}\n" for i, (img, u) in enumerate(zip(x, usage, strict=True))))
    import torchvision.datasets.fer2013 as fer_module
    monkeypatch.setattr(fer_module, "check_integrity", lambda *a, **k: True)  # not the real file's md5
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        data = load_data(folder / "fer2013.csv")
    icml = load_data(tmp_path / "icml_face_data.csv")
    for split, ref in (("train", torchvision.datasets.FER2013(str(tmp_path), split="train")),
                       ("test", torchvision.datasets.FER2013(str(tmp_path), split="test"))):
        xs = data.x_train if split == "train" else data.x_test
        ys = data.y_train if split == "train" else data.y_test
        assert len(xs) == len(ref) and [int(ref[i][1]) for i in range(len(ref))] == ys.tolist()
        assert all(np.array_equal(np.asarray(ref[i][0]), np.asarray(xs[i])[..., 0]) for i in range(len(ref)))
        assert np.array_equal(np.asarray((icml.x_train if split == "train" else icml.x_test)[:]), np.asarray(xs[:]))
    assert data.class_names == ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


def test_tensors_saved_with_torch_save_read_as_arrays(tmp_path):
    """torch.save of (x, y) (torchvision's old MNIST `processed/training.pt`), of a dict named as an .npz's members,
    or of data/targets: read safely (weights_only) as the arrays they hold; a model's weights are named as such."""
    import torch
    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, (10, 6, 6), dtype=np.uint8)
    y = np.arange(10) % 5
    torch.save((torch.from_numpy(x), torch.from_numpy(y)), tmp_path / "training.pt")
    pair = load_data(tmp_path / "training.pt")
    assert np.array_equal(pair.x_test[:][..., 0], x) and pair.y_test.tolist() == y.tolist() and pair.n_train == 0
    xf = torch.from_numpy(x).float()[:, None] / 255
    torch.save({"x_train": xf, "y_train": torch.from_numpy(y), "x_test": xf[:4], "y_test": torch.from_numpy(y[:4])},
               tmp_path / "four.pth")
    four = load_data(tmp_path / "four.pth")
    assert (four.n_train, four.n_test) == (10, 4) and np.array_equal(four.x_train[:][..., 0], x)
    torch.save({"data": xf, "targets": torch.from_numpy(y)}, tmp_path / "set.pt")
    assert load_data(tmp_path / "set.pt").n_test == 10
    torch.save((torch.from_numpy(x), torch.from_numpy(y)), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert load_data(tmp_path / "old.pt").n_test == 10  # torch's legacy format: not mapped, read whole
    torch.save(torch.nn.Conv2d(1, 2, 3).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(HardenError, match="a model's weights"):
        load_data(tmp_path / "weights.pt")


def test_npz_missing_keys(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(HardenError, match="lacks"):
        load_data(p)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_members_are_mapped_not_read(tmp_path, monkeypatch, save):
    """A stored member is mapped where it lies in the zip and a big compressed one is inflated to a temporary file
    (thresholds lowered so small arrays take those paths); either way the values equal np.load's, a subset copies
    only its rows, and the set's statistics match numpy's on the whole array."""
    from harden.data import npz
    monkeypatch.setattr(npz, "MAP_BYTES", 64)
    monkeypatch.setattr(npz, "SPILL_BYTES", 64)
    rng = np.random.default_rng(1)
    p = tmp_path / "d.npz"
    x = rng.integers(0, 255, (300, 5, 7, 3), dtype=np.uint8)
    save(p, x_train=x, y_train=np.arange(300) % 3, x_test=x[:40], y_test=np.arange(40) % 3,
         class_names=np.array(["cat", "dog", "emu"]), fortran=np.asfortranarray(rng.random((9, 11))),
         scalar=np.float32(2.5), empty=np.zeros((0, 4), np.uint8))
    got, ref = npz.read_npz(p), np.load(p)
    assert sorted(got) == sorted(ref.files)
    for k in ref.files:
        assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape and np.array_equal(got[k], ref[k]), k
    assert isinstance(got["x_train"], np.memmap) and isinstance(got["fortran"], np.memmap)
    d = load_data(p)
    assert isinstance(d.x_train.base, np.memmap) and d.class_names == ["cat", "dog", "emu"]
    sub = subsample(d, 0.1, seed=0)
    assert not isinstance(sub.x_train.base, np.memmap) and len(sub.x_train) == 30
    xs, ys = d.images("train", np.arange(5))  # read-only pages reach torch as a copy, without a warning
    assert torch.equal(xs, torch.from_numpy(x[:5]).permute(0, 3, 1, 2).float() / 255) and ys.tolist() == [0, 1, 2, 0, 1]
    flat = x.reshape(-1, 3) / 255.0
    mean, std = d.mean_std()
    assert np.allclose(mean, flat.mean(0), atol=1e-4) and np.allclose(std, flat.std(0), atol=1e-4)


def test_compressed_training_images_are_inflated_only_when_used(tmp_path, monkeypatch, digits_ckpt):
    """`np.savez_compressed` x_train stays deferred (shape and dtype from its header) through an evaluation, which
    reads the test split only; touching x_train inflates it to np.load's values; a corrupt member is a HardenError."""
    import harden
    from harden.data import npz
    monkeypatch.setattr(npz, "MAP_BYTES", 64)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, (300, 8, 8), dtype=np.uint8)  # NHW: the channel axis is added to the deferred shape
    p = tmp_path / "d.npz"
    np.savez_compressed(p, x_train=x, y_train=np.arange(300) % 10, x_test=x[:40], y_test=np.arange(40) % 10)
    d = load_data(p)
    assert isinstance(d.__dict__["_x_train"], npz.DeferredArray) and d.in_chans == 1 and d.input_size == (8, 8)
    loads = []
    real_load = npz.DeferredArray.load
    monkeypatch.setattr(npz.DeferredArray, "load", lambda self: loads.append(self) or real_load(self))
    rep = harden.evaluate(harden.load(digits_ckpt), d, attacks=["fgsm"], n=40, metrics=False, masking_checks=False)
    assert rep.n == 40 and loads == [] and isinstance(d.__dict__["_x_train"], npz.DeferredArray)
    assert d.x_train.shape == (300, 8, 8, 1) and np.array_equal(d.x_train[..., 0], x) and len(loads) == 1
    sub = subsample(load_data(p), 0.1, seed=0)
    assert len(sub.x_train) == 30 and len(loads) == 2

    raw = bytearray(p.read_bytes())  # damage x_train's compressed bytes, past its .npy header
    with __import__("zipfile").ZipFile(p) as zf:
        info = zf.getinfo("x_train.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    raw[start:start + 400] = bytes(400)
    p.write_bytes(bytes(raw))
    d = load_data(p)
    with pytest.raises(HardenError, match="x_train could not be read"):
        d.images("train", np.arange(3))


def test_npz_as_research_code_saves_it_reads_the_same_pixels(tmp_path, monkeypatch):
    """Float NCHW in [0, 1] (a torch tensor's .numpy()), wider integers, one-hot labels, X_/x_val names, compressed
    and deferred: the same uint8 pixels and labels as the plain archive; normalised images are refused."""
    from harden.data import npz
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (60, 3, 8, 8), dtype=np.uint8)
    y = np.arange(60) % 5
    ref = tmp_path / "ref.npz"
    np.savez(ref, x_train=x[:40].transpose(0, 2, 3, 1), y_train=y[:40], x_test=x[40:].transpose(0, 2, 3, 1),
             y_test=y[40:])
    f = (x / 255.0).astype(np.float32)
    layouts = {
        "torch": dict(x_train=f[:40], y_train=np.eye(5)[y[:40]], X_val=f[40:], Y_val=np.eye(5)[y[40:]]),
        "nchw": dict(x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:]),
        "wide": dict(X_train=x[:40].astype(np.int64), Y_train=y[:40, None], x_test=x[40:].astype(np.int64),
                     y_test=y[40:].astype(np.float64)),
    }
    want = load_data(ref)
    for name, arrays in layouts.items():
        for save in (np.savez, np.savez_compressed):
            p = tmp_path / f"{name}-{save.__name__}.npz"
            save(p, **arrays)
            monkeypatch.setattr(npz, "MAP_BYTES", 64)  # compressed members are deferred
            d = load_data(p)
            assert d.in_chans == 3 and d.input_size == (8, 8) and d.n_test == 20, (name, save)
            for split in ("train", "test"):
                idx = np.arange(5) * 3
                got, want_xy = d.images(split, idx), want.images(split, idx)
                assert torch.equal(got[0], want_xy[0]) and torch.equal(got[1], want_xy[1]), (name, save, split)
            assert np.array_equal(subsample(d, 0.5, seed=0).x_train, subsample(want, 0.5, seed=0).x_train)

    normed = tmp_path / "normed.npz"
    np.savez(normed, x_train=f[:40] - 0.5, y_train=y[:40], x_test=f[40:] - 0.5, y_test=y[40:])
    with pytest.raises(HardenError, match="normalised images"):
        load_data(normed)
    late = f.copy()
    late[-1] *= 255.0  # rows past the sampled ones leave [0, 1]: refused when read, never clipped
    monkeypatch.setattr("harden.data.pixels._SAMPLE_ROWS", 8)
    np.savez(tmp_path / "late.npz", x_train=late[:40], y_train=y[:40], x_test=late[40:], y_test=y[40:])
    with pytest.raises(HardenError, match="first rows did not show"):
        load_data(tmp_path / "late.npz").images("test", np.arange(20))
    for where in (0, -1):  # a NaN among the sampled rows, or past them: refused (cast to uint8 it was a silent 0)
        holed = f.copy()
        holed[where, 0, 0, 0] = np.nan
        np.savez(tmp_path / "nan.npz", x_train=holed[:40], y_train=y[:40], x_test=holed[40:], y_test=y[40:])
        with pytest.raises(HardenError, match="1 NaN or infinite value"):
            load_data(tmp_path / "nan.npz").images("test", np.arange(20))
    np.savez(tmp_path / "few.npz", x_train=x[:40], y_train=y[:30], x_test=x[40:], y_test=y[40:])
    with pytest.raises(HardenError, match="30 labels for 40 images"):
        load_data(tmp_path / "few.npz")


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "compressed"])
def test_a_damaged_npz_is_a_harden_error_whatever_the_damage(tmp_path, compressed):
    """Seeded damage (truncation, overwritten bytes) anywhere in the archive: the data read is whole, or the error
    is one HardenError paragraph, never another exception (numpy parses a damaged .npy header into a SyntaxError or
    a TokenError, zipfile reads a damaged method as NotImplementedError, ...)."""
    import io
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, x_train=x, y_train=np.arange(40) % 4, x_test=x[:10],
                                                      y_test=np.arange(10) % 4)
    good, p = buf.getvalue(), tmp_path / "d.npz"
    errors = 0
    for trial in range(300):
        b = bytearray(good)
        if trial % 3 == 0:
            b = b[:int(rng.integers(0, len(b)))]
        else:
            at, n = int(rng.integers(0, len(b))), int(rng.integers(1, 60))
            b[at:at + n] = rng.integers(0, 256, len(b[at:at + n]), dtype=np.uint8).tobytes()
        p.write_bytes(bytes(b))
        try:
            d = load_data(p)
            d.images("test", np.arange(10))
            if d.has_split("train"):  # a damaged name can leave only the test pair, read as a test set alone
                d.images("train", np.arange(40))
        except HardenError:
            errors += 1
    assert errors > 250  # nearly every damage is caught; the rest left the arrays readable


def test_npy_format_3_members_are_read(tmp_path):
    import zipfile
    x = np.random.default_rng(0).integers(0, 256, (6, 4, 4), dtype=np.uint8)
    with zipfile.ZipFile(tmp_path / "v3.npz", "w") as z:
        for name, a in (("x_train", x), ("y_train", np.arange(6)), ("x_test", x), ("y_test", np.arange(6))):
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, a, version=(3, 0))
    d = load_data(tmp_path / "v3.npz")
    assert np.array_equal(d.x_test[..., 0], x) and list(d.y_train) == list(range(6))


def test_npz_with_pickled_arrays_is_refused(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.array([{"a": 1}, None], dtype=object),
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.zeros(2, np.int64))
    with pytest.raises(HardenError, match="pickled"):
        load_data(p)


def test_arrays_made_to_fit_the_model_are_said_in_the_report(digits, digits_model):
    """Arrays of another kind than the model's (colour 16 x 16 images for the 8 x 8 grey digits network: the wrong
    .npz given) are converted and resized as they are read; the report's data line says both, where it said
    nothing (its clean accuracy was the only sign)."""
    import harden
    from harden.report.html_page import data_note
    x8, y = digits.x_test[:20], digits.y_test[:20]
    kw = dict(attacks=["fgsm"], eps=0.1, metrics=False, masking_checks=False, device="cpu")
    assert data_note(harden.evaluate(digits_model, (x8, y), **kw)) == ""
    colour = np.repeat(np.repeat(np.repeat(x8, 3, axis=3), 2, axis=1), 2, axis=2)  # N x 16 x 16 x 3 uint8
    said = data_note(harden.evaluate(digits_model, (colour, y), **kw))
    assert "colour images as grey" in said and "arrays of 16x16 pixels resized to the model's 8x8" in said


def test_images_and_labels_in_memory_for_evaluate_and_fix(digits, digits_model):
    """The library takes (x, y) as tensors or arrays, N x C x H x W floats in [0, 1] or N x H x W x C uint8 0-255,
    for a harden model and a plain nn.Module: the same report as the same images read from an .npz; `fix` holds a
    share of a lone pair out as its test split, as for an .npz of one split."""
    import harden
    x8, y = digits.x_test[:40], digits.y_test[:40]
    as_floats = torch.from_numpy(x8).permute(0, 3, 1, 2).float() / 255  # what a torch data pipeline holds
    kw = dict(attacks=["fgsm"], eps=0.1, metrics=False, masking_checks=False, device="cpu")
    reports = [harden.evaluate(digits_model, pair, **kw) for pair in ((as_floats, torch.from_numpy(y)), (x8, y))]
    plain = harden.evaluate(digits_model.net, (as_floats, y), **kw)  # no spec: the network as it is
    for r in reports:
        assert (r.n, r.data) == (40, "arrays")
        assert r.clean_accuracy == reports[0].clean_accuracy
        assert r.attacks[0].robust_accuracy == reports[0].attacks[0].robust_accuracy
    with torch.no_grad():
        want = (digits_model(as_floats).argmax(1) == torch.from_numpy(y)).float().mean().item()
    assert reports[0].clean_accuracy == pytest.approx(want)
    assert plain.n == 40
    four = load_data((digits.x_train[:30], digits.y_train[:30], x8, y))
    assert (four.n_train, four.n_test) == (30, 40)
    with pytest.raises(HardenError, match=r"\(x, y\) or \(x_train, y_train, x_test, y_test\)"):
        harden.data.from_arrays(x8, y, x8)
    res = harden.fix(digits_model, (digits.x_train[:200], digits.y_train[:200]), sets=["eps=0.1", "val_frac=0"],
                     epochs=1, data_frac=1.0, report=False, device="cpu")
    from harden.data import held_out
    kept = res.model.spec.extra[held_out.KEY]
    assert kept["n"] > 0 and kept["source"] == "arrays"
    # evaluated on the same arrays: on the share held out, never on what it trained on; on other arrays: all of them
    pair = (digits.x_train[:200], digits.y_train[:200])
    assert harden.evaluate(res.model, pair, n=None, **kw).n == kept["n"]
    assert harden.evaluate(res.model, (digits.x_train[200:260], digits.y_train[200:260]), n=None, **kw).n == 60
    # a plain nn.Module of the caller's, taking [0, 1] pixels: wrapped at the arrays' size, hardened as a copy
    net = _pixels_net(digits_model)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = harden.fix(net, (digits.x_train[:200], digits.y_train[:200]), sets=["eps=0.1", "val_frac=0"], epochs=1,
                     data_frac=1.0, report=False, device="cpu")
    assert (res.model.spec.num_classes, res.model.spec.in_chans, res.model.spec.input_size) == (10, 1, (8, 8))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the caller's module untouched
    assert not all(torch.equal(before[k], v) for k, v in res.model.net.state_dict().items())  # the copy trained


def _pixels_net(model):
    """The digits model as a caller would hold it: one nn.Module taking [0, 1] pixels, normalising inside."""
    class Pixels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model.net
            self.register_buffer("mean", model.mean.clone())
            self.register_buffer("std", model.std.clone())

        def forward(self, x):
            return self.net((x - self.mean) / self.std)
    import copy
    return copy.deepcopy(Pixels())


def test_cifar_batches_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        d = {b"data": rng.integers(0, 255, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (tmp_path / name).write_bytes(pickle.dumps(d))
    data = load_data(tmp_path)
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (10, 32, 32, 3)


def test_image_folder(tmp_path):
    from PIL import Image
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((5, 5, 3), i * 40, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    d = load_data(tmp_path)
    assert d.n_train == 6 and d.input_size == (5, 5) and d.in_chans == 3 and d.num_classes == 2
    x, y = d.images("train", np.arange(6))
    assert x.shape == (6, 3, 5, 5) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.allclose(x[:, :, 0, 0], (torch.tensor([0, 40, 80, 0, 40, 80]) / 255.0)[:, None].expand(6, 3))


def test_stratified_subset_is_deterministic_and_per_class(digits):
    a = subsample(digits, 0.1, seed=3)
    b = subsample(digits, 0.1, seed=3)
    c = subsample(digits, 0.1, seed=4)
    assert a.subset["index_sha256"] == b.subset["index_sha256"] != c.subset["index_sha256"]
    counts = np.bincount(a.y_train, minlength=10)
    full = np.bincount(digits.y_train, minlength=10)
    assert np.all(np.abs(counts - 0.1 * full) <= 1)


def test_a_sample_of_fewer_images_than_classes_draws_from_every_class_alike():
    """eval's seeded stratified sample where the classes' quotas are fractions (500 of ImageNet's 50,000 validation
    images: half an image a class): each image is equally likely to be drawn. The fractions had gone to the first
    classes in class order, so 200 images of 1,000 classes were classes 0-199 every time."""
    from harden.data import stratified_sample
    y = np.arange(1000)  # one image a class
    drawn = stratified_sample(y, 200, 0)
    assert len(np.unique(drawn)) == 200 and drawn.max() > 900 and stratified_sample(y, 200, 0).tolist() == drawn.tolist()
    assert stratified_sample(y, 200, 1).tolist() != drawn.tolist()
    y = np.repeat(np.arange(4), [1, 2, 3, 4])  # quotas 0.3, 0.6, 0.9, 1.2 of 3 images
    seen = np.zeros(len(y))
    for seed in range(2000):
        idx = stratified_sample(y, 3, seed)
        assert len(np.unique(idx)) == 3 and np.all(np.abs(np.bincount(y[idx], minlength=4) - [0.3, 0.6, 0.9, 1.2]) < 1)
        seen[idx] += 1
    assert np.all(np.abs(seen / 2000 - 0.3) < 0.04), seen / 2000  # 0.3 each (one standard error ~0.01)
    y = np.repeat(np.arange(10), 100)
    assert np.bincount(y[stratified_sample(y, 500, 0)]).tolist() == [50] * 10


def test_a_subset_of_many_small_classes_is_said_and_still_holds_a_validation_slice_out(capsys):
    """--data-frac 0.1 of 1,000 classes of 3 images: every class keeps one image, a third of the data, which is said
    (and recorded); the validation slice is a tenth of those images, where a per-class draw of at least one image
    took every image and `fix` stopped as if the subset were too small."""
    from harden.data import from_arrays
    from harden.recipes.at import split_validation
    y = np.repeat(np.arange(1000), 3)
    data = from_arrays(np.zeros((3000, 4, 4, 1), np.uint8), y, np.zeros((10, 4, 4, 1), np.uint8), np.arange(10))
    sub = subsample(data, 0.1, 0)
    assert sub.n_train == 1000 and sub.subset["classes_rounded_up_to_one"] == 1000
    said = " ".join(capsys.readouterr().err.split())
    assert "--data-frac 0.1 of 3,000 training images is 1,000 images (33%): every class keeps at least one" in said
    train, val, meta = split_validation(sub, 0.1, 0)
    assert meta["n"] == 100 and train.n_train == 900
    large = from_arrays(np.zeros((3000, 4, 4, 1), np.uint8), np.arange(3000) % 10, data.x_test, data.y_test)
    assert "classes_rounded_up_to_one" not in subsample(large, 0.1, 0).subset  # large classes: nothing to say
    assert capsys.readouterr().err == ""


def test_images_in_memory_in_class_order_are_sampled_across_the_classes(digits, digits_model):
    """The first n of arrays sorted by label (or of an ImageFolder dataset, read item by item) were one class: 100 of
    MNIST's test images sorted by label were all zeros. Such data is sampled as a folder is, and the report says so;
    arrays in a shuffled order keep the first n."""
    import harden
    from harden.data import index_hash
    from harden.report.html_page import data_note
    x, y = np.asarray(digits.x_test), np.asarray(digits.y_test)
    order = np.argsort(y, kind="stable")
    kw = dict(n=40, attacks=["fgsm"], metrics=False, masking_checks=False)
    ordered = harden.evaluate(digits_model, (x[order], y[order]), **kw)
    assert len(ordered.to_dict()["per_class"]) == 10 and "class order" in data_note(ordered)
    shuffled = harden.evaluate(digits_model, (x, y), **kw)
    assert shuffled.data_details["images_sha256"] == index_hash(np.arange(40)) and data_note(shuffled) == ""
    assert shuffled.data_details["sample"] == "the first images"


@pytest.mark.parametrize("frac", [0, 1.5, -0.1])
def test_bad_fraction(frac):
    with pytest.raises(HardenError, match="data-frac"):
        stratified_subset(np.arange(10) % 2, frac, 0)


def test_missing_path():
    with pytest.raises(HardenError, match="does not exist"):
        load_data("/nonexistent/data.npz")


@pytest.mark.parametrize("kind", ["seed000", "crop", "none"])
def test_augment_keeps_shape_and_dtype(digits, kind):
    x = digits.x_train[:16]
    y = augment(x, build_augment(kind, digits.input_size, 0))
    assert y.shape == x.shape and y.dtype == np.uint8
    if kind == "none":
        assert np.array_equal(x, y)  # the identity
    else:  # a padded random crop moves some of 16 images (each stays put with probability 1/9 at 8x8)
        assert not np.array_equal(x, y)


def test_arrays_for_a_model_of_another_channel_count_are_converted_as_image_files_are(tmp_path):
    """MNIST arrays for a 3-channel network (a ResNet trained on grey digits replicated), colour arrays for a grey
    one, RGBA for RGB: converted row by row as PIL's convert gives an image file to that model (PIL is the
    reference), said in the report's data details; the data kind stays the images' own (MNIST stays mnist-like)."""
    from PIL import Image

    import harden
    from harden.data import DataTarget
    from harden.data.transforms import Preprocess
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    colour = rng.integers(0, 256, (40, 12, 12, 4), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez_compressed(tmp_path / "grey.npz", x_train=grey, y_train=y, x_test=grey[:20], y_test=y[:20])
    np.savez(tmp_path / "rgba.npz", x_train=colour, y_train=y, x_test=colour[:20], y_test=y[:20])

    def target(chans, size):
        return DataTarget(Preprocess(chans, size), 4)
    data = load_data(tmp_path / "grey.npz", target(3, (28, 28)))
    assert data.in_chans == 3 and data.kind == "mnist-like"
    x, _ = data.images("test", np.arange(3))
    assert torch.equal(x[:, 0], x[:, 2]) and torch.equal((x[:, 1] * 255).round().byte(), torch.from_numpy(grey[:3]))
    model = harden.create_model("cnn-small", 4, 3, (28, 28), (0.5,), (0.25,))
    report = harden.evaluate(model, data, n=10, attacks=["fgsm"], device="cpu", metrics=False, masking_checks=False)
    assert report.data_details["channels"].startswith("grey images replicated to 3 channels")
    assert subsample(data, 0.5, 0).kind == "mnist-like"
    for chans, mode in ((1, "L"), (3, "RGB")):
        data = load_data(tmp_path / "rgba.npz", target(chans, (12, 12)))
        x, _ = data.images("test", np.arange(5))
        want = np.stack([np.asarray(Image.fromarray(colour[i], "RGBA").convert(mode)) for i in range(5)])
        got = (x * 255).round().byte().permute(0, 2, 3, 1).numpy()
        assert np.array_equal(got.reshape(want.shape), want), mode
    assert load_data(tmp_path / "rgba.npz").in_chans == 4  # without a model: the arrays as they are


def test_an_npz_of_one_split_is_evaluated_whole_and_fix_holds_a_share_out(tmp_path):
    """An .npz of one split as published code saves it (`images`, `labels`; float N x C x H x W) or a test set
    saved alone: eval reads all of it; fix trains on 80% and tests on a stratified 20% it never trained on (rows
    read in place, equal to the arrays), records them, and eval of the hardened model on the same file tests on
    those again."""
    import harden
    from harden.api import data_for
    from harden.data.held_out import KEY
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = (rng.random((60, 3, 8, 8)) * 0.3 + y[:, None, None, None] * 0.3).astype(np.float32)
    np.savez(tmp_path / "one.npz", images=x, labels=y)
    np.savez(tmp_path / "test_only.npz", x_test=np.rint(x * 255).astype(np.uint8).transpose(0, 2, 3, 1), y_test=y)
    for name in ("one.npz", "test_only.npz"):
        d = load_data(tmp_path / name)
        assert not d.has_split("train") and d.n_test == 60 and d.num_classes == 3
    d = load_data(tmp_path / "one.npz")
    held = d.with_held_out_test()
    assert held.n_test == 12 and held.n_train == 48 and np.bincount(held.y_test).tolist() == [4, 4, 4]
    every = np.rint(x * 255).astype(np.uint8)
    test_rows = held.x_test[np.arange(12)].transpose(0, 3, 1, 2)
    train_rows = held.x_train[np.arange(48)[::-1]].transpose(0, 3, 1, 2)  # any order of rows
    assert {r.tobytes() for r in test_rows} | {r.tobytes() for r in train_rows} == {r.tobytes() for r in every}
    assert not {r.tobytes() for r in test_rows} & {r.tobytes() for r in train_rows}
    base = harden.create_model("cnn-small", 3, 3, (8, 8), (0.5,), (0.25,))
    result = harden.fix(base, str(tmp_path / "one.npz"), epochs=1, data_frac=1.0, sets=["val_frac=0"], device="cpu",
                        report_n=40, attacks=["fgsm"], metrics=False, masking_checks=False)
    assert result.reports["fixed_white_box"].n == 12
    rec = result.model.spec.extra[KEY]
    assert rec["n"] == 12 and rec["source"] == str((tmp_path / "one.npz").resolve())
    again = data_for(result.model, str(tmp_path / "one.npz"))
    assert again.n_test == 12 and again.held_out["index_sha256"] == rec["index_sha256"]
    assert data_for(base, str(tmp_path / "one.npz")).n_test == 60  # a model never hardened on it: all of it


def test_the_held_out_record_knows_an_npz_changed_in_any_row(tmp_path):
    """An .npz of one split rewritten at the same path with one image changed (not the first, middle or last row,
    the only ones the digest read before): a model hardened on the earlier file is no longer told it is evaluated on
    images it never saw (the draw may hold images it trained on): said. A record of the earlier digest still matches
    the unchanged file."""
    import hashlib

    from harden.data.held_out import KEY, hold_out_for_training, record, test_split_for
    from harden.runtime import held_warnings
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.integers(0, 255, (60, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "one.npz", x_test=x, y_test=y)
    rec = record(hold_out_for_training(load_data(tmp_path / "one.npz")))
    old = hashlib.sha256(repr(x.shape).encode() + y.astype(np.int64).tobytes())
    for i in (0, 30, 59):
        old.update(x[i].tobytes())
    for digest in (rec["listing_sha256"], old.hexdigest()[:16]):  # the unchanged file is the record's, by either
        with held_warnings() as said:
            assert test_split_for(load_data(tmp_path / "one.npz"), {KEY: {**rec, "listing_sha256": digest}}).n_test == 12
        assert said == []
    x[17, 3, 3, 0] ^= 1
    np.savez(tmp_path / "one.npz", x_test=x, y_test=y)
    with held_warnings() as said:
        test_split_for(load_data(tmp_path / "one.npz"), {KEY: rec})
    assert len(said) == 1 and "has changed since" in said[0]


def test_flattened_rows_read_as_images_and_downsampled_imagenet_as_shipped(tmp_path, monkeypatch):
    """Rows of s*s grey or 3*s*s RGB values (planar as CIFAR's batches, or an N x s x s x 3 array flattened: told
    apart by which reading makes neighbours alike); Downsampled ImageNet's two downloads beside each other: training
    batches in their numbers' order (10 after 2), memory-mapped, labels 1-1000 read as 0-999; val_data a pickle."""
    from harden.data import from_arrays
    from harden.data.base import StackedRows
    from test_files import photo
    rng = np.random.default_rng(0)
    x = np.stack([photo(rng, 16, 16) for _ in range(12)])
    y = np.arange(12) % 4
    planar, interleaved = x.transpose(0, 3, 1, 2).reshape(12, -1), x.reshape(12, -1)
    for rows in (planar, interleaved):
        assert np.array_equal(np.asarray(from_arrays(rows, y).x_test), x)
    grey = x[..., 0]
    assert np.array_equal(np.asarray(from_arrays(grey.reshape(12, -1), y).x_test)[..., 0], grey)
    with pytest.raises(HardenError, match="flattened square images"):
        from_arrays(np.zeros((12, 10), np.uint8), y)

    root = tmp_path / "imagenet16"
    (root / "Imagenet16_train_npz").mkdir(parents=True)
    (root / "Imagenet16_val_npz").mkdir()
    for part, batch in ((slice(0, 4), 1), (slice(4, 8), 2), (slice(8, 12), 10)):
        np.savez(root / "Imagenet16_train_npz" / f"train_data_batch_{batch}.npz", data=planar[part],
                 labels=(y[part] + 1).tolist(), mean=planar.mean(0))
    with open(root / "Imagenet16_val_npz" / "val_data", "wb") as f:
        pickle.dump({"data": planar[:4], "labels": list(np.int64(y[:4] + 1))}, f)
    monkeypatch.setattr("harden.data.npz.MAP_BYTES", 0)  # map members of any size, as the real files' are
    data = load_data(root)
    assert isinstance(data.x_train._base, StackedRows) and isinstance(data.x_train._base.parts[0], np.memmap)
    assert data.y_train.tolist() == y.tolist() and data.y_test.tolist() == y[:4].tolist()
    idx = np.array([11, 0, 5, 8])
    assert np.array_equal(np.asarray(data.x_train[idx]), x[idx]) and np.array_equal(np.asarray(data.x_test), x[:4])
    one = load_data(root / "Imagenet16_val_npz" / "val_data")
    assert len(one.y_train) == 0 and one.y_test.tolist() == y[:4].tolist()


def test_arrays_saved_without_names_are_told_apart_by_their_shapes(tmp_path):
    """np.savez(path, x, y), four arrays in the library's order, or train_test_split's (x_train, x_test, y_train,
    y_test); arrays that cannot be told apart are an error that says how to save them."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (50, 8, 8), dtype=np.uint8), np.arange(50) % 10
    np.savez(tmp_path / "pair.npz", y, x)  # labels first: still told apart
    one = load_data(tmp_path / "pair.npz")
    assert np.array_equal(np.asarray(one.x_test)[..., 0], x) and one.y_test.tolist() == y.tolist()
    for name, arrays in (("ours", (x[:40], y[:40], x[40:], y[40:])), ("sklearn", (x[:40], x[40:], y[:40], y[40:]))):
        np.savez(tmp_path / f"{name}.npz", *arrays)
        d = load_data(tmp_path / f"{name}.npz")
        assert np.array_equal(np.asarray(d.x_train)[..., 0], x[:40]) and d.y_test.tolist() == y[40:].tolist(), name
    np.savez(tmp_path / "odd.npz", x, y[:30])
    with pytest.raises(HardenError, match="saved without names .*cannot tell apart"):
        load_data(tmp_path / "odd.npz")
