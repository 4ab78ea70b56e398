"""MosaicML Streaming's MDS datasets, read without streaming. The fixtures were written by streaming 0.13.0's own
MDSWriter (`fixtures/make_mds.py`): `mds/jpeg/` train/ and val/ as Mosaic's ImageNet recipe writes them (x: jpeg,
y: int; train in three shards), `mds/pil_zstd/` one split of raw `pil` images (RGB and L) beside label: int and
path: str, its one shard zstd-compressed; `mds/bytes/` PNG files' bytes in a `bytes` column; `mds/ndarray_static/`
and `mds/ndarray_dynamic/` arrays in `ndarray:uint8:20,24,3` and bare `ndarray` columns (dtype and shape in each
value: float32 C x H x W in [0, 1] of several sizes)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harden.data import DataTarget, load_data
from harden.data.array_images import open_image
from harden.errors import HardenError

from test_files import small_cnn

FIXTURES = Path(__file__).parent / "fixtures" / "mds"


def written(i: int) -> np.ndarray:
    """make_mds.py's image i."""
    rng = np.random.default_rng(i)
    h, w = int(rng.integers(17, 41)), int(rng.integers(17, 41))
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 20 * i % 256)], -1).astype(np.uint8)


def test_train_and_val_mds_splits_read_in_place_and_train_and_evaluate(cli, tmp_path):
    data = load_data(str(FIXTURES / "jpeg"))
    assert data.layout == "mds" and data.y_train.tolist() == [i % 3 for i in range(12)]
    assert data.y_test.tolist() == [i % 3 for i in range(6)]
    lst = data.listing("train")
    for i in range(12):  # across the three shards
        got = np.asarray(open_image(lst.read_bytes(i), lst))
        assert got.shape == written(i).shape and np.abs(got.astype(int) - written(i)).mean() < 3, i
    assert lst.location(5) == f"{FIXTURES / 'jpeg' / 'train'}: shard 1, sample 1"
    code, _, err = cli("train", "--data", FIXTURES / "jpeg", "--arch", "cnn-small", "--epochs", 1, "--input-size", 24,
                       "--workers", 2, "-o", tmp_path / "base.safetensors", "-q")
    assert code == 0, err
    code, out, err = cli("eval", tmp_path / "base.safetensors", "--data", FIXTURES / "jpeg" / "val", "--attack",
                         "fgsm", "--no-metrics", "--no-masking-checks")
    assert code == 0, err
    assert "6 images" in " ".join(out.split())


def test_compressed_raw_pil_shards_are_decompressed_elsewhere_and_read_exactly(tmp_path):
    before = sorted(p.name for p in (FIXTURES / "pil_zstd").iterdir())
    data = load_data(str(FIXTURES / "pil_zstd"))
    assert data.y_test.tolist() == [2 - i % 3 for i in range(8)]
    lst = data.listing("test")
    for i in range(8):
        img = open_image(lst.read_bytes(i), lst)
        want = written(i) if i % 4 != 3 else np.asarray(Image.fromarray(written(i)).convert("L"))
        assert img.mode == ("L" if i % 4 == 3 else "RGB") and np.array_equal(np.asarray(img), want), i
    assert sorted(p.name for p in (FIXTURES / "pil_zstd").iterdir()) == before  # nothing written beside the shards


def copy_of(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def test_a_missing_shard_no_image_column_and_other_compressions_are_refused(tmp_path):
    folder = copy_of("jpeg", tmp_path) / "train"
    (folder / "shard.00002.mds").unlink()
    with pytest.raises(HardenError, match=r"its index names the shard 'shard.00002.mds', which is not there"):
        load_data(str(folder))
    folder = copy_of("pil_zstd", tmp_path)
    index = json.loads((folder / "index.json").read_text())
    index["shards"][0]["compression"] = "br"
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(HardenError, match=r"compressed with 'br', which harden does not read"):
        load_data(str(folder))
    index["shards"][0]["compression"] = "zstd"
    (folder / "index.json").write_text(json.dumps(index))
    shard = folder / "shard.00000.mds.zstd"
    good = shard.read_bytes()
    shard.write_bytes(good[:len(good) // 2])  # cut short
    with pytest.raises(HardenError, match=r"does not decompress as its index says \(zstd: .*a damaged or truncated"):
        load_data(str(folder))
    shard.write_bytes(good)
    index["shards"][0]["column_encodings"] = ["pil", "float64", "str"]  # no integer column: images alone
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(HardenError, match=r"has no integer column to read as labels \(its columns: image, label, "
                                          r"path\): it can serve as --unlabeled, not as --data"):
        load_data(str(folder))
    from harden.data.unlabeled import load_unlabeled
    pool = load_unlabeled(str(folder), DataTarget.for_model(small_cnn(num_classes=3), workers=0))
    assert pool.n_train == 8 and pool.pixels("train", np.arange(8))[0].shape[0] == 8
    index["shards"][0]["column_encodings"] = ["bytes", "int", "str"]
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(HardenError, match=r"no image column among image \(bytes\), label \(int\), path \(str\)"):
        load_data(str(folder))


def test_image_files_stored_in_a_bytes_column_are_the_images():
    data = load_data(str(FIXTURES / "bytes"))
    assert data.y_test.tolist() == [0, 1, 0, 1]
    lst = data.listing("test")
    for i in range(4):
        assert lst.read_bytes(i)[:4] == b"\x89PNG" and np.array_equal(np.asarray(open_image(lst.read_bytes(i))),
                                                                       written(i)), i


def test_arrays_in_ndarray_columns_static_or_carrying_their_dtype_and_shape():
    lst = load_data(str(FIXTURES / "ndarray_static")).listing("test")
    for i in range(4):
        want = np.broadcast_to((np.arange(24, dtype=np.uint8) * 10 + i)[None, :, None], (20, 24, 3))
        assert np.array_equal(np.asarray(open_image(lst.read_bytes(i), lst)), want), i
    data = load_data(str(FIXTURES / "ndarray_dynamic"))
    assert data.y_test.tolist() == [0, 1, 0, 1]
    lst = data.listing("test")
    for i in range(4):  # floats in [0, 1], channels first, each its own size: the uint8 pixels they came from
        assert np.array_equal(np.asarray(open_image(lst.read_bytes(i), lst)), written(i)), i
