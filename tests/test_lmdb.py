"""LMDB databases as data: LSUN's one database per class, Caffe's Datum (raw BGR pixels or encoded files), pickled
(image, label) pairs; read in place by key, every process its own environment; a pickle's code never runs."""
import io
import pickle

import numpy as np
import pytest
from PIL import Image

import harden
from harden.data import DataTarget, load_data
from harden.errors import HardenError

from test_files import small_cnn

lmdb = pytest.importorskip("lmdb")


def _pixels(n, seed=0, size=(20, 24)):
    return np.random.default_rng(seed).integers(0, 255, (n, *size, 3), dtype=np.uint8)


def _encoded(a, fmt="PNG"):
    b = io.BytesIO()
    Image.fromarray(a).save(b, fmt)
    return b.getvalue()


def _write(path, items, subdir=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), subdir=subdir, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for k, v in items:
            txn.put(k if isinstance(k, bytes) else k.encode(), v)
    env.close()


def _datum_class():
    """Caffe's Datum, built from caffe.proto's declaration (proto2: a label of 0 is written, as Caffe writes it)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_datum.proto", package="caffe", syntax="proto2")
    m = fdp.message_type.add(name="Datum")
    for name, number, ftype, label in (("channels", 1, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                       ("height", 2, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                       ("width", 3, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                       ("data", 4, F.TYPE_BYTES, F.LABEL_OPTIONAL),
                                       ("label", 5, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                       ("float_data", 6, F.TYPE_FLOAT, F.LABEL_REPEATED),
                                       ("encoded", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL)):
        m.field.add(name=name, number=number, type=ftype, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.Datum"))


def _read_all(data, split):
    lst = data.listing(split)
    return [np.asarray(Image.open(io.BytesIO(lst.read_bytes(i))).convert("RGB")) for i in range(len(lst))]


def test_lsun_databases_one_per_class_and_split_read_in_place(tmp_path, cli):
    pics = {}
    for c, seed in (("bedroom", 0), ("bridge", 1)):
        for split, n in (("train", 6), ("val", 3)):
            x = _pixels(n, seed + 10 * (split == "val"))
            # LSUN's keys are hex ids, its values WebP files (one PNG among them: any image file is read)
            items = [(f"{seed:02x}{i:014x}", _encoded(a, "WEBP" if i else "PNG")) for i, a in enumerate(x)]
            _write(tmp_path / "lsun" / f"{c}_{split}_lmdb", items)
            pics[c, split] = x
    data = load_data(tmp_path / "lsun", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert data.layout == "lmdb" and data.class_names == ["bedroom", "bridge"]
    assert data.y_train.tolist() == [0] * 6 + [1] * 6 and data.y_test.tolist() == [0] * 3 + [1] * 3
    got = _read_all(data, "test")
    assert np.array_equal(got[0], pics["bedroom", "val"][0])  # the PNG entry, bit for bit
    assert data.listing("test").location(0).endswith("bedroom_val_lmdb:00" + "0" * 14)
    # end to end, images decoded by worker processes (each opens its own environment)
    code, _, err = cli("train", "--data", tmp_path / "lsun", "--arch", "cnn-small", "--input-size", "16",
                       "--epochs", "1", "--workers", "2", "-o", tmp_path / "m.safetensors", "-q")
    assert code == 0, err
    code, _, err = cli("eval", tmp_path / "m.safetensors", "--attack", "fgsm", "--n", "6", "--workers", "2", "-q")
    assert code == 0, err
    code, out, err = cli("data", tmp_path / "lsun")
    assert code == 0 and "lmdb (values are encoded image files)" in out, err


def test_caffe_datums_raw_bgr_and_encoded_with_their_labels(tmp_path):
    Datum = _datum_class()
    x = _pixels(6, 3)
    for split, encoded in (("train", False), ("val", True)):
        items = []
        for i, a in enumerate(x):
            d = Datum(label=i % 3)
            if encoded:
                d.data, d.encoded = _encoded(a), True
            else:  # Caffe's convert_imageset: OpenCV's BGR, channels first
                d.channels, d.height, d.width = 3, a.shape[0], a.shape[1]
                d.data = np.ascontiguousarray(a[:, :, ::-1].transpose(2, 0, 1)).tobytes()
            items.append((f"{i:08d}_img{i}.jpg", d.SerializeToString()))
        _write(tmp_path / "caffe" / f"{split}_lmdb", items)
    data = load_data(tmp_path / "caffe", DataTarget.for_model(small_cnn(num_classes=3), workers=0))
    assert data.y_train.tolist() == [0, 1, 2, 0, 1, 2] == data.y_test.tolist()  # label 0 read as written
    for split in ("train", "test"):
        assert all(np.array_equal(g, a) for g, a in zip(_read_all(data, split), x, strict=True)), split


def test_pickled_pairs_in_a_single_file_database_and_code_never_runs(tmp_path):
    x = _pixels(4, 5)
    # ImageFolderLMDB's layout: (file bytes, label) under "0", "1", ...; __keys__ and __len__ beside them
    items = [(str(i), pickle.dumps((_encoded(a), i % 2))) for i, a in enumerate(x)]
    items += [("__keys__", pickle.dumps([str(i).encode() for i in range(4)])), ("__len__", pickle.dumps(4)),
              ("classes", pickle.dumps(["cat", "dog"]))]
    _write(tmp_path / "pairs.lmdb", items, subdir=False)
    data = load_data(tmp_path / "pairs.lmdb", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert data.n_test == 4 and data.y_test.tolist() == [0, 1, 0, 1]
    assert all(np.array_equal(g, a) for g, a in zip(_read_all(data, "test"), x, strict=True))
    # uint8 arrays and class names, in dicts
    items = [(f"k{i}", pickle.dumps({"image": a, "label": ["cat", "dog"][i % 2]})) for i, a in enumerate(x)]
    _write(tmp_path / "dicts", items)
    data = load_data(tmp_path / "dicts", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert data.class_names == ["cat", "dog"] and data.y_test.tolist() == [0, 1, 0, 1]
    assert all(np.array_equal(g, a) for g, a in zip(_read_all(data, "test"), x, strict=True))

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    _write(tmp_path / "evil", [("0", pickle.dumps((Evil(), 1)))])
    with pytest.raises(HardenError, match=r"a pickle of io\.open.*never runs"):
        load_data(tmp_path / "evil", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert not marker.exists()


def test_labels_from_keys_unlabelled_entries_and_unknown_values(tmp_path):
    x = _pixels(4, 7)
    _write(tmp_path / "keyed", [(f"val/{c}/{i}.JPEG", _encoded(a)) for i, (c, a) in
                                enumerate(zip(["n01", "n02"] * 2, x, strict=True))])
    data = load_data(tmp_path / "keyed", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert data.class_names == ["n01", "n02"] and sorted(data.y_test.tolist()) == [0, 0, 1, 1]
    _write(tmp_path / "bare", [(f"{i:08d}", _encoded(a)) for i, a in enumerate(x)])
    with pytest.raises(HardenError, match="no label.*--unlabeled"):
        load_data(tmp_path / "bare", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    from harden.data.unlabeled import load_unlabeled
    pool = load_unlabeled(tmp_path / "bare", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert pool.n_train == 4
    _write(tmp_path / "odd", [("0", b"\x00\x01not an image, a Datum or a pickle")])
    with pytest.raises(HardenError, match="neither an encoded image, a Caffe Datum nor a pickle .*pickle.dumps"):
        load_data(tmp_path / "odd", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert harden.data.lmdb_files.lmdb_databases(tmp_path / "keyed" / "data.mdb") == [tmp_path / "keyed"]
