"""--label-column / --image-column: a list's, a table's or TFRecords' columns under names harden does not know, given
once to `fix` and kept in the hardened checkpoint; refused on data whose labels come from its structure."""
from __future__ import annotations

import json

import numpy as np
import pytest

import harden
from harden.data import DataTarget, load_data
from harden.errors import HardenError

from test_files import make_tree, small_cnn
from test_tfrecord import example, tree_records, write_records


def _rows(root, split, order):
    return [(str(f.relative_to(root)), c) for c in sorted(order) for f in sorted((root / split / c).iterdir())]


def test_a_list_with_unknown_column_names_reads_with_the_flags_and_the_checkpoint_keeps_them(tmp_path, cli):
    order = ["benign", "malignant"]
    make_tree(tmp_path, order, 4, sizes=(20, 30))
    lines = ["picture,disease,split"] + [f"{p},{c},{'train' if s == 'train' else 'test'}"
                                          for s in ("train", "val") for p, c in _rows(tmp_path, s, order)]
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n")
    model = small_cnn(num_classes=2)
    with pytest.raises(HardenError, match="--label-column NAME|--image-column NAME"):
        load_data(tmp_path / "meta.csv", DataTarget.for_model(model, workers=0))
    with pytest.raises(HardenError, match="--label-column diagnosis: .* no column of that name .*picture, disease"):
        load_data(tmp_path / "meta.csv", DataTarget.for_model(model, workers=0, label_column="diagnosis",
                                                              image_column="picture"))
    data = load_data(tmp_path / "meta.csv", DataTarget.for_model(model, workers=0, label_column="Disease",
                                                                 image_column="picture"))
    assert data.y_train.tolist() == [0] * 4 + [1] * 4 and data.class_names == order
    with pytest.raises(HardenError, match="--label-column names the columns of a CSV/TSV list.*folder"):
        load_data(tmp_path, DataTarget.for_model(model, workers=0, label_column="disease"))

    harden.save(model, tmp_path / "m.safetensors")
    code, _, err = cli("fix", tmp_path / "m.safetensors", "--data", tmp_path / "meta.csv", "--label-column",
                       "disease", "--image-column", "picture", "--data-frac", "1", "--epochs", "1", "--set",
                       "val_frac=0", "--no-report", "--workers", "0", "-o", tmp_path / "f.safetensors", "-q")
    assert code == 0, err
    assert harden.load(tmp_path / "f.safetensors").spec.extra["data_columns"] == {"label": "disease",
                                                                                  "image": "picture"}
    code, _, err = cli("eval", tmp_path / "f.safetensors", "--attack", "fgsm", "--n", "4", "--workers", "0",
                       "--json", tmp_path / "r.json")  # its own data, read with the columns it was hardened on
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 4


def test_a_table_and_tfrecords_take_the_label_column_asked_for(tmp_path):
    """A parquet table of paths and two label columns; TFRecords with a fine and a coarse label."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    order = ["cat", "dog", "fox"]
    make_tree(tmp_path / "tree", order, 2, sizes=(20, 30))
    rows = _rows(tmp_path / "tree", "val", order)
    coarse = {"cat": "pet", "dog": "pet", "fox": "wild"}
    table = pa.table({"where": [f"tree/{p}" for p, _ in rows], "animal": [c for _, c in rows],
                      "kind": [coarse[c] for _, c in rows]})
    pq.write_table(table, tmp_path / "val.parquet")
    target = DataTarget.for_model(small_cnn(num_classes=3), workers=0, label_column="animal", image_column="where")
    data = load_data(tmp_path / "val.parquet", target)
    assert data.y_test.tolist() == [0, 0, 1, 1, 2, 2] and data.images("test", np.arange(6))[0].shape[0] == 6
    two = DataTarget.for_model(small_cnn(num_classes=2), workers=0, label_column="kind", image_column="where")
    assert load_data(tmp_path / "val.parquet", two).y_test.tolist() == [0, 0, 0, 0, 1, 1]

    records = tree_records(tmp_path / "tree", "val", order, image="image/encoded")
    for r in records:
        r["coarse_label"] = int(r["label"] == 2)
    write_records(tmp_path / "rec" / "val.tfrecord", [example(r) for r in records])
    fine = load_data(tmp_path / "rec" / "val.tfrecord", DataTarget.for_model(small_cnn(3), workers=0))
    assert fine.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    got = load_data(tmp_path / "rec" / "val.tfrecord", DataTarget.for_model(small_cnn(2), workers=0,
                                                                            label_column="coarse_label"))
    assert got.y_test.tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(HardenError, match="no encoded image"):  # the feature asked for, not another image feature
        load_data(tmp_path / "rec" / "val.tfrecord", DataTarget.for_model(small_cnn(3), workers=0,
                                                                          image_column="label")).listing("test")
