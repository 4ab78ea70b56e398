"""MXNet RecordIO .rec files as data, read without MXNet: written here by an independent writer that follows dmlc's
RecordIOWriter (records split where their data holds the magic at an aligned place) and mxnet.recordio.pack."""
import io
import struct

import numpy as np
import pytest
from PIL import Image

import harden
from harden.data import DataTarget, load_data
from harden.errors import HardenError

from test_files import small_cnn

MAGIC = 0xCED7230A


def _write_record(f, data: bytes) -> None:
    """dmlc::RecordIOWriter::WriteRecord: the data cut at each 4-aligned copy of the magic (dropped, and restored by
    the reader), the pieces flagged 1 (first), 2 (middle), 3 (last); 0 for a record in one piece; zero padding."""
    magic = struct.pack("<I", MAGIC)
    start = 0
    for i in range(0, len(data) // 4 * 4, 4):
        if data[i:i + 4] == magic:
            f.write(magic + struct.pack("<I", ((1 if start == 0 else 2) << 29) | (i - start)) + data[start:i])
            start = i + 4
    f.write(magic + struct.pack("<I", ((3 if start else 0) << 29) | (len(data) - start)) + data[start:])
    f.write(b"\0" * (-len(data) % 4))


def _pack(label, image: bytes, ident: int = 0) -> bytes:
    """mxnet.recordio.pack: IRHeader (flag, label, id, id2), a list of labels written after it with flag = count."""
    if isinstance(label, (list, tuple)):
        return struct.pack("<IfQQ", len(label), 0.0, ident, 0) + struct.pack(f"<{len(label)}f", *label) + image
    return struct.pack("<IfQQ", 0, float(label), ident, 0) + image


def _png(a):
    b = io.BytesIO()
    Image.fromarray(a).save(b, "PNG")
    return b.getvalue()


def test_train_and_val_rec_files_read_in_place(tmp_path, cli):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8, 20, 24, 3), dtype=np.uint8)
    with open(tmp_path / "train.rec", "wb") as f:
        _write_record(f, _pack([2.0, 5.0], b""))  # InsightFace's first record: the ranges of ids, no image
        for i, a in enumerate(x):
            # record 3's id is the magic number itself: dmlc splits that record in two around it
            _write_record(f, _pack([float(i % 3)] if i == 5 else i % 3, _png(a), ident=MAGIC if i == 3 else i))
    with open(tmp_path / "val.rec", "wb") as f:
        for i, a in enumerate(x[:3]):
            _write_record(f, _pack(i, _png(a), ident=i))
    raw = (tmp_path / "train.rec").read_bytes()
    assert struct.pack("<I", (1 << 29) | 8) in raw  # the split record is there, as dmlc writes it
    data = load_data(tmp_path, DataTarget.for_model(small_cnn(num_classes=3), workers=0))
    assert data.layout == "recordio" and data.y_train.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert data.y_test.tolist() == [0, 1, 2]
    lst = data.listing("train")
    for i in range(8):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(lst.read_bytes(i)))), x[i]), i
    assert lst.location(3).endswith("train.rec:record 4")  # the record count includes InsightFace's index record
    code, _, err = cli("data", tmp_path / "val.rec")  # one file: one split, evaluated whole
    assert code == 0, err


def test_multi_label_damaged_and_foreign_records_are_refused(tmp_path):
    png = _png(np.zeros((4, 4, 3), np.uint8))
    target = DataTarget.for_model(small_cnn(num_classes=3), workers=0)
    with open(tmp_path / "multi.rec", "wb") as f:
        _write_record(f, _pack([1.0, 2.0, 0.0], png))
    with pytest.raises(HardenError, match="3 labels; harden evaluates classification"):
        load_data(tmp_path / "multi.rec", target).listing("test")  # listed when its split is used
    with open(tmp_path / "cut.rec", "wb") as f:
        for i in range(3):
            _write_record(f, _pack(i, png))
    (tmp_path / "cut.rec").write_bytes((tmp_path / "cut.rec").read_bytes()[:-30])
    with pytest.raises(HardenError, match="runs past the end of the file"):
        load_data(tmp_path / "cut.rec", target).listing("test")
    with open(tmp_path / "other.rec", "wb") as f:  # SageMaker's RecordIO-protobuf: not image records
        _write_record(f, b"\x0a\x10" + bytes(40))
    with pytest.raises(HardenError, match="not an image record as im2rec packs them"):
        load_data(tmp_path / "other.rec", target).listing("test")
    with open(tmp_path / "text.rec", "wb") as f:  # records of something else with a plausible header
        _write_record(f, _pack(1, b"plain text, not an image"))
    with pytest.raises(HardenError, match="no encoded image after its header"):
        load_data(tmp_path / "text.rec", target).listing("test")
    assert harden.data.recordio.is_recordio(tmp_path / "cut.rec")
