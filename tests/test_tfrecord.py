"""TFRecord files of tf.train.Example records (harden/data/tfrecord.py), read without TensorFlow. The records are
serialised here by protobuf itself (the Example messages declared as tensorflow/core/example/example.proto and
feature.proto declare them) and framed with a CRC-32C written independently of harden's, so that the parser and the
framing are checked against other code."""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import harden
from harden.data import DataTarget, load_data
from harden.data.tfrecord import crc32c, parse_example
from harden.data.unlabeled import load_unlabeled
from harden.errors import HardenError

from test_files import make_tree, small_cnn

pytest.importorskip("google.protobuf")


def _example_classes(syntax: str):
    """tensorflow.Example as a protobuf class, built from its .proto's declarations (proto3: packed lists, as
    TensorFlow writes them; proto2: one field per value, which parsers must read too)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name=f"example_{syntax}.proto", package=f"tf_{syntax}", syntax=syntax)
    rep = F.LABEL_REPEATED

    def message(name, *fields, entry=False):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name, oneof in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".tf_{syntax}.{type_name}"
            if oneof is not None:
                f.oneof_index = oneof
        if entry:
            m.options.map_entry = True
        return m
    opt = F.LABEL_OPTIONAL
    message("BytesList", ("value", 1, F.TYPE_BYTES, rep, None, None))
    message("FloatList", ("value", 1, F.TYPE_FLOAT, rep, None, None))
    message("Int64List", ("value", 1, F.TYPE_INT64, rep, None, None))
    feature = message("Feature", ("bytes_list", 1, F.TYPE_MESSAGE, opt, "BytesList", 0),
                      ("float_list", 2, F.TYPE_MESSAGE, opt, "FloatList", 0),
                      ("int64_list", 3, F.TYPE_MESSAGE, opt, "Int64List", 0))
    feature.oneof_decl.add(name="kind")
    features = message("Features", ("feature", 1, F.TYPE_MESSAGE, rep, "Features.FeatureEntry", None))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=f".tf_{syntax}.Feature")
    entry.options.map_entry = True
    message("Example", ("features", 1, F.TYPE_MESSAGE, opt, "Features", None))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tf_{syntax}.Example"))


def example(values: dict, syntax: str = "proto3") -> bytes:
    ex = _example_classes(syntax)()
    for k, v in values.items():
        f = ex.features.feature[k]
        vs = v if isinstance(v, list) else [v]
        if isinstance(vs[0], bytes):
            f.bytes_list.value.extend(vs)
        elif isinstance(vs[0], float):
            f.float_list.value.extend(vs)
        else:
            f.int64_list.value.extend(vs)
    return ex.SerializeToString()


def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    c = _crc32c_bitwise(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_records(path: Path, payloads: list[bytes]) -> Path:
    """tf.io.TFRecordWriter's framing: length, its masked CRC, the data, the data's masked CRC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for p in payloads:
            n = struct.pack("<Q", len(p))
            f.write(n + struct.pack("<I", _masked(n)) + p + struct.pack("<I", _masked(p)))
    return path


def tree_records(root: Path, split: str, order: list[str], image="image", label="label", synsets=None):
    """The split's image files (sorted class folders, sorted files) as records, labels in `order`."""
    rows = []
    for c in sorted(order):
        for f in sorted((root / split / c).iterdir()):
            row = {image: f.read_bytes()}
            if label is not None:
                row[label] = order.index(c) + (1 if synsets else 0)
            if synsets:
                row["image/class/synset"] = synsets[c].encode()
                row["image/height"], row["image/format"] = 7, b"JPEG"  # what TF-slim writes beside them
            rows.append(row)
    return rows


def test_crc32c_and_the_parser_agree_with_protobuf_and_the_standard():
    assert crc32c(b"123456789") == 0xE3069283 == _crc32c_bitwise(b"123456789")  # the CRC-32C check value
    values = {"image": [b"\x89PNGabc"], "label": 3, "neg": [-2, 300], "f": [0.5, -1.25], "empty": [b""]}
    for syntax in ("proto3", "proto2"):  # packed and unpacked lists
        b = example(values, syntax)
        got = parse_example(b)
        assert [b[slice(*s)] for s in got["image"][1]] == [b"\x89PNGabc"]
        assert got["label"] == ("int64", [3]) and got["neg"] == ("int64", [-2, 300])
        assert got["f"] == ("float", [0.5, -1.25]) and got["empty"][0] == "bytes"
        assert set(parse_example(b, {"label"})) == {"label"}


def test_a_tensorflow_datasets_folder_reads_like_the_folder_in_its_classlabel_order(tmp_path):
    """~/tensorflow_datasets/<name>/<version>/ as tfds prepares it: splits from the shard names, the newest version,
    the ClassLabel's order from label.labels.txt (not sorted), the files' own pixels; workers read the bytes."""
    order = ["zebra", "ant", "cat"]
    make_tree(tmp_path / "tree", order, 3, sizes=(20, 40))
    version = tmp_path / "tfds" / "mini" / "1.0.2"
    train = tree_records(tmp_path / "tree", "train", order)
    write_records(version / "mini-train.tfrecord-00000-of-00002", [example(r) for r in train[:4]])
    write_records(version / "mini-train.tfrecord-00001-of-00002", [example(r) for r in train[4:]])
    write_records(version / "mini-test.tfrecord-00000-of-00001",
                  [example(r) for r in tree_records(tmp_path / "tree", "val", order)])
    (version / "label.labels.txt").write_text("\n".join(order) + "\n")
    (version / "dataset_info.json").write_text(json.dumps({"name": "mini", "supervisedKeys": {"tuple": {"items": [
        {"featureKey": "image"}, {"featureKey": "label"}]}}}))
    write_records(tmp_path / "tfds" / "mini" / "0.9.0" / "mini-train.tfrecord-00000-of-00001", [])  # older version
    (tmp_path / "tfds" / "mini" / "incomplete.XYZ").mkdir()
    model = small_cnn(num_classes=3)
    folder = load_data(tmp_path / "tree", DataTarget.for_model(model, workers=0))
    data = load_data(tmp_path / "tfds" / "mini", DataTarget.for_model(model, workers=0))
    assert data.layout == "tfrecord" and data.class_names == order and "labels.txt" in data.class_note
    # the folder's files in the listing's order, labelled in the dataset's order (zebra 0, ant 1, cat 2)
    assert data.y_train.tolist() == [1, 1, 1, 2, 2, 2, 0, 0, 0]
    perm = np.argsort(folder.y_train.numpy() if torch.is_tensor(folder.y_train) else folder.y_train, kind="stable")
    assert [order[i] for i in data.y_train.tolist()] == [folder.class_names[i] for i in np.asarray(folder.y_train)[perm]]
    x, _ = data.images("train", np.arange(9))
    xf, _ = folder.images("train", perm)
    assert torch.equal(x, xf)
    pooled = load_data(tmp_path / "tfds" / "mini" / "1.0.2", DataTarget.for_model(model, workers=2))
    assert torch.equal(pooled.images("test", np.arange(9))[0], data.images("test", np.arange(9))[0])
    assert data.listing("train").location(5).endswith("mini-train.tfrecord-00001-of-00002:record 1")


def test_tf_slim_imagenet_shards_are_labelled_by_their_synsets(tmp_path):
    """TF-slim's build_imagenet_data.py: unsuffixed `train-00000-of-00001` / `validation-...`, image/encoded JPEGs,
    a label counted from 1 (0 is background) and the synset: the synset decides the model's index."""
    synsets = {"tench": "n01440764", "goldfish": "n01443537"}
    make_tree(tmp_path / "tree", list(synsets), 2, sizes=(20, 40))
    for split, name in (("train", "train-00000-of-00001"), ("val", "validation-00000-of-00001")):
        rows = tree_records(tmp_path / "tree", split, list(synsets), "image/encoded", "image/class/label", synsets)
        write_records(tmp_path / "shards" / name, [example(r) for r in rows])
    model = harden.create_model("cnn-small", 1000, 3, (24, 24), (0.5,), (0.25,))
    data = load_data(tmp_path / "shards", DataTarget.for_model(model, workers=0))
    assert data.y_test.tolist() == [1, 1, 0, 0]  # goldfish (n01443537) is ImageNet's 1, tench 0; not the 1-based 2, 1
    assert data.images("test", np.arange(4))[0].shape == (4, 3, 24, 24)


def test_raw_pixel_records_are_arrays_and_compressed_damaged_or_unlabelled_files_are_refused(tmp_path):
    """The MNIST tutorial's convert_to_records.py: image_raw of uint8 pixels with height, width, depth, label."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (10, 6, 5, 1), dtype=np.uint8)
    for split, part in (("train", slice(0, 6)), ("test", slice(6, 10))):
        write_records(tmp_path / "raw" / f"{split}.tfrecords", [example(
            {"height": 6, "width": 5, "depth": 1, "label": int(i % 3), "image_raw": img.tobytes()})
            for i, img in zip(range(10)[part], imgs[part], strict=True)])
    data = load_data(tmp_path / "raw")
    assert np.array_equal(np.asarray(data.x_train), imgs[:6]) and np.asarray(data.y_test).tolist() == [0, 1, 2, 0]
    assert len(load_unlabeled(tmp_path / "raw", DataTarget()).y_train) == 6

    shard = write_records(tmp_path / "gz" / "d.tfrecord", [example({"image": b"\x89PNG", "label": 0})])
    (tmp_path / "gz" / "d.tfrecord.gz").write_bytes(gzip.compress(shard.read_bytes()))
    shard.unlink()
    with pytest.raises(HardenError, match="GZIP-compressed TFRecord.*gunzip"):
        load_data(tmp_path / "gz" / "d.tfrecord.gz")
    good = write_records(tmp_path / "bad" / "d.tfrecord", [example({"image": b"\x89PNG", "label": 0})] * 2)
    raw = bytearray(good.read_bytes())
    raw[len(raw) // 2 + 3] ^= 0xFF  # the second record's length
    good.write_bytes(bytes(raw))
    with pytest.raises(HardenError, match="fails its checksum"):
        load_data(good).listing("test")

    make_tree(tmp_path / "tree", ["a", "b"], 2, splits=("",), sizes=(20, 30))
    pool = write_records(tmp_path / "pool" / "images.tfrecord",
                         [example({"image": f.read_bytes()}) for f in sorted((tmp_path / "tree").rglob("*.*"))])
    with pytest.raises(HardenError, match="have no label.*--unlabeled"):
        load_data(pool).listing("test")
    assert len(load_unlabeled(pool, DataTarget.for_model(small_cnn(2), workers=0)).y_train) == 4
    (tmp_path / "ar" / "1.0.0").mkdir(parents=True)
    (tmp_path / "ar" / "1.0.0" / "mini-train.array_record-00000-of-00001").write_bytes(b"riegeli")
    with pytest.raises(HardenError, match="ArrayRecord.*file_format='tfrecord'"):
        load_data(tmp_path / "ar" / "1.0.0")
    multi = write_records(tmp_path / "multi" / "m.tfrecord", [example({"image": b"\x89PNG", "label": [0, 1]})])
    with pytest.raises(HardenError, match="2 labels"):
        load_data(multi).listing("test")


def test_a_tfds_folder_as_unlabeled_gives_its_unlabelled_split(tmp_path):
    """TensorFlow Datasets' STL-10 keeps train, test and `unlabelled` shards side by side: as --data the first two, as
    --unlabeled the unlabelled ones (their label -1), the pool the set was made for."""
    make_tree(tmp_path / "tree", ["a", "b"], 2, splits=("",), sizes=(20, 30))
    files = sorted((tmp_path / "tree").rglob("*.*"))
    version = tmp_path / "stl10" / "1.0.0"
    for split, part, label in (("train", files[:2], 0), ("test", files[2:], 1), ("unlabelled", files * 2, -1)):
        write_records(version / f"stl10-{split}.tfrecord-00000-of-00001",
                      [example({"image": f.read_bytes(), "label": label}) for f in part])
    target = DataTarget.for_model(small_cnn(num_classes=2), workers=0)
    data = load_data(tmp_path / "stl10", target)
    assert data.y_train.tolist() == [0, 0] and data.y_test.tolist() == [1, 1]
    pool = load_unlabeled(tmp_path / "stl10", target)
    assert len(pool.y_train) == 8 and (pool.y_train == -1).all()
