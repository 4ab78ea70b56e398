"""FFCV's dataset files, read without FFCV. The fixtures were written by FFCV 1.0.2's own DatasetWriter
(`fixtures/make_ffcv.py`; each file's 2-MiB page gzipped): `tiny.beton.gz` holds 12 RGB images of 17-40 px, labels
i % 3, a FloatField beside them, some stored as JPEG (quality 90) and the rest as raw pixels (`write_mode='proportion'`,
as ffcv-imagenet writes ImageNet), the fields image, label, score; `arrays.beton.gz` 6 images as an NDArrayField
between the IntFields index and label; `files.beton.gz` PNG files' bytes in a BytesField."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harden.data import DataTarget, load_data
from harden.data.array_images import open_image
from harden.errors import HardenError

from test_files import small_cnn

FIXTURES = Path(__file__).parent / "fixtures"
JPEG = {4, 6, 9}  # the samples make_ffcv.py's seed stored as JPEG (mode 0 in their metadata)


def written_images() -> list[np.ndarray]:
    """The images make_ffcv.py gave FFCV's writer."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(12):
        h, w = int(rng.integers(17, 41)), int(rng.integers(17, 41))
        yy, xx = np.mgrid[0:h, 0:w]
        out.append(np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 40 * (i % 6))], -1).astype(np.uint8))
    return out


def beton(folder: Path, name: str = "tiny.beton", fixture: str = "tiny.beton.gz") -> Path:
    path = folder / name
    with gzip.open(FIXTURES / fixture) as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def test_an_ffcv_file_s_raw_and_jpeg_images_and_labels_are_read(tmp_path):
    data = load_data(str(beton(tmp_path)))
    assert data.layout == "ffcv" and not data.has_split("train") and data.y_test.tolist() == [i % 3 for i in range(12)]
    lst = data.listing("test")
    for i, want in enumerate(written_images()):
        got = np.asarray(open_image(lst.read_bytes(i), lst).convert("RGB"))
        assert got.shape == want.shape, i
        if i in JPEG:  # decoded by Pillow: JPEG's loss, nothing else
            assert lst.read_bytes(i)[:2] == b"\xff\xd8" and np.abs(got.astype(int) - want).mean() < 3, i
        else:
            assert np.array_equal(got, want), i
    assert lst.location(5).endswith("tiny.beton:sample 5")


def test_images_in_an_array_field_and_the_label_named_among_integer_fields(tmp_path):
    data = load_data(str(beton(tmp_path, "arrays.beton", "arrays.beton.gz")))
    assert data.y_test.tolist() == [2 - i % 3 for i in range(6)]  # `label`, not `index`
    lst = data.listing("test")
    for i in range(6):
        want = np.full((20, 24, 3), 30 * i, np.uint8) + np.arange(24, dtype=np.uint8)[None, :, None]
        assert np.array_equal(np.asarray(open_image(lst.read_bytes(i), lst)), want), i


def test_image_files_stored_in_a_bytes_field_are_the_images(tmp_path):
    data = load_data(str(beton(tmp_path, "files.beton", "files.beton.gz")))
    assert data.y_test.tolist() == [0, 1, 0, 1]
    lst = data.listing("test")
    for i in range(4):
        assert np.array_equal(np.asarray(open_image(lst.read_bytes(i), lst)), np.full((10 + i, 12, 3), 50 * i, np.uint8))


def test_train_and_val_ffcv_files_train_and_evaluate(tmp_path, cli):
    """ffcv-imagenet's names (`train_500_0.50_90.ffcv`, `val_500_0.50_90.ffcv`) make the two splits; `train` reads
    the training file through its loader workers and `eval` the other."""
    beton(tmp_path, "train_500_0.50_90.ffcv")
    beton(tmp_path, "val_500_0.50_90.ffcv")
    data = load_data(tmp_path, DataTarget.for_model(small_cnn(num_classes=3), workers=0))
    assert (data.n_train, data.n_test) == (12, 12)
    code, _, err = cli("train", "--data", tmp_path, "--arch", "cnn-small", "--epochs", 1, "--input-size", 24,
                       "--workers", 2, "-o", tmp_path / "base.safetensors", "-q")
    assert code == 0, err
    code, out, err = cli("eval", tmp_path / "base.safetensors", "--data", tmp_path / "val_500_0.50_90.ffcv",
                         "--attack", "fgsm", "--no-metrics", "--no-masking-checks")
    assert code == 0, err
    assert "12 images" in " ".join(out.split())


def test_other_versions_damaged_files_and_files_without_labels_are_refused(tmp_path):
    path = beton(tmp_path)
    good = path.read_bytes()
    path.write_bytes(b"\x01\x00" + good[2:])  # version 1
    with pytest.raises(HardenError, match="FFCV file format version 1; harden reads version 2"):
        load_data(str(path))
    path.write_bytes(good[:-10])  # the allocation table cut short
    with pytest.raises(HardenError, match="its header does not read as one"):
        load_data(str(path))
    fields = 24  # the header's size; the label field's descriptor follows the image's
    label_type = fields + 1041
    assert good[label_type] == 1  # IntField
    path.write_bytes(good[:label_type] + b"\x00" + good[label_type + 1:])  # the label made a FloatField
    with pytest.raises(HardenError, match=r"has no integer field to read as labels \(its fields: image, label, "
                                          r"score\): it can serve as --unlabeled, not as --data"):
        load_data(str(path))
    from harden.data.unlabeled import load_unlabeled
    pool = load_unlabeled(str(path), DataTarget.for_model(small_cnn(num_classes=3), workers=0))  # images alone
    x, y = pool.pixels("train", np.arange(12))
    assert pool.n_train == 12 and x.shape[0] == 12 and (y == -1).all()
    path.write_bytes(good[:fields] + b"\x07" + good[fields + 1:])  # a custom field type
    with pytest.raises(HardenError, match=r"fields of a custom type harden cannot lay out: image \(type 7\)"):
        load_data(str(path))


def test_a_folder_of_ffcv_files_of_one_split_says_to_choose(tmp_path):
    beton(tmp_path, "val_a.beton")
    beton(tmp_path, "val_b.beton")
    with pytest.raises(HardenError, match="holds 2 FFCV files for one split"):
        load_data(str(tmp_path))


def test_harden_reads_what_the_model_reads_from_an_ffcv_image(tmp_path):
    """A raw sample goes through the same transform as the same pixels saved as a PNG file."""
    model = small_cnn(num_classes=3)
    ffcv = load_data(str(beton(tmp_path)), DataTarget.for_model(model, workers=0))
    folder = tmp_path / "png"
    for i, img in enumerate(written_images()):
        (folder / "all" / str(i % 3)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / "all" / str(i % 3) / f"{i:02d}.png")
    pngs = load_data(str(folder / "all"), DataTarget.for_model(model, workers=0))
    raw = [i for i in range(12) if i not in JPEG]
    x_ffcv, _ = ffcv.pixels("test", np.asarray(raw))
    order = {Path(pngs.listing("test").location(k)).stem: k for k in range(12)}
    x_png, _ = pngs.pixels("test", np.asarray([order[f"{i:02d}"] for i in raw]))
    assert x_ffcv.shape[-2:] == (24, 24) and bool((x_ffcv == x_png).all())
