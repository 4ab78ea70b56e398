"""Hugging Face datasets on disk (harden/data/tables.py): parquet repositories and save_to_disk Arrow folders, read in
place. The files are written here as the `datasets` library writes them (checked against datasets 5.2's own output:
an Image feature is a struct of bytes and path, features in the schema's `huggingface` metadata)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import harden
from harden.data import DataTarget, load_data
from harden.data.classes import map_classes
from harden.errors import HardenError

from test_files import make_tree, small_cnn

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def hf_table(files: list[str], labels: list[int] | None, names: list[str] | None = None, image="image",
             label="label", paths: list[str | None] | None = None):
    """A table with the `datasets` library's column types and metadata."""
    cells = [{"bytes": Path(f).read_bytes() if f else None, "path": (paths or [None] * len(files))[i]}
             for i, f in enumerate(files)]
    cols = {image: pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))}
    features = {image: {"_type": "Image"}}
    if labels is not None:
        cols[label] = pa.array(labels, pa.int64())
        features[label] = {"names": names, "_type": "ClassLabel"} if names else {"dtype": "int64", "_type": "Value"}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.table(cols).replace_schema_metadata(meta)


def folder_split(root: Path, split: str, order: list[str]) -> tuple[list[str], list[int]]:
    """The split's files in the folder listing's order (class folders sorted, files sorted) and their labels in the
    dataset's own class order."""
    files, labels = [], []
    for c in sorted(order):
        for f in sorted((root / split / c).iterdir()):
            files.append(str(f))
            labels.append(order.index(c))
    return files, labels


def test_a_parquet_repository_reads_like_the_folder_in_its_own_class_order(tmp_path, monkeypatch):
    """A hub repository (data/train-0000x-of-00002.parquet, validation-...; README beside): splits from the file
    names, classes in the ClassLabel's order (not sorted), the folder's pixels; only the row groups holding the
    chosen rows are read, once, and worker processes read the copies."""
    order = ["dog", "cat", "bird"]  # the dataset's order: sorted would make cat 0
    make_tree(tmp_path / "tree", order, 4, sizes=(20, 40))
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "README.md").write_text("---\ndataset_info: ...\n---\n")
    files, labels = folder_split(tmp_path / "tree", "train", order)
    pq.write_table(hf_table(files[:5], labels[:5], order), repo / "data" / "train-00000-of-00002.parquet",
                   row_group_size=2)
    pq.write_table(hf_table(files[5:], labels[5:], order), repo / "data" / "train-00001-of-00002.parquet",
                   row_group_size=2)
    vfiles, vlabels = folder_split(tmp_path / "tree", "val", order)
    pq.write_table(hf_table(vfiles, vlabels, order), repo / "data" / "validation-00000-of-00001.parquet",
                   row_group_size=2)
    model = small_cnn(num_classes=3)
    folder = load_data(tmp_path / "tree", DataTarget.for_model(model, workers=0))
    table = load_data(repo, DataTarget.for_model(model, workers=0))
    assert table.class_names == order and "ClassLabel" in table.class_note and table.layout == "parquet"
    assert table.y_train.tolist() == labels and table.y_test.tolist() == vlabels

    groups = []
    original = pq.ParquetFile.iter_batches

    def counted(self, *a, row_groups=None, **kw):
        groups.append(tuple(row_groups))
        return original(self, *a, row_groups=row_groups, **kw)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counted)
    idx = np.array([0, 1, 6, 11])  # rows 0-1 (group 0 of file 0), 6 (file 1 group 0), 11 (file 1 group 3)
    xt, yt = table.images("train", idx)
    assert len(groups) == 3  # three row groups, each read once
    xf, yf = folder.images("train", idx)
    assert torch.equal(xt, xf) and yt.tolist() == [labels[i] for i in idx]
    xt2, _ = table.images("train", idx)  # again: from the spill file, no parquet read
    assert len(groups) == 3 and torch.equal(xt2, xt)
    pooled = load_data(repo, DataTarget.for_model(model, workers=2))
    xw, _ = pooled.images("test", np.arange(len(vfiles)))  # worker processes
    assert torch.equal(xw, folder.images("test", np.arange(len(vfiles)))[0])
    assert table.listing("train").location(6).endswith("train-00001-of-00002.parquet[row 1]")


def test_save_to_disk_arrow_folders_train_and_evaluate_through_the_cli(tmp_path, cli):
    """`DatasetDict.save_to_disk` (train/ and test/ of memory-mapped Arrow stream files) and a parquet export
    (`default/train/0000.parquet`): `fix` trains, `eval` evaluates, with no flag naming the format."""
    order = ["b", "a"]
    make_tree(tmp_path / "tree", order, 3, splits=("train", "test"), sizes=(20, 30))
    saved, export = tmp_path / "saved", tmp_path / "export" / "default"
    for split in ("train", "test"):
        files, labels = folder_split(tmp_path / "tree", split, order)
        t = hf_table(files, labels, order, image="img")
        (saved / split).mkdir(parents=True)
        with pa.OSFile(str(saved / split / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, t.schema) as w:
                w.write_table(t, max_chunksize=2)
        (saved / split / "state.json").write_text("{}")
        (export / split).mkdir(parents=True)
        pq.write_table(t, export / split / "0000.parquet")
    (saved / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    model = small_cnn(num_classes=2)
    folder = load_data(tmp_path / "tree", DataTarget.for_model(model, workers=0))
    for where in (saved, export.parent):
        data = load_data(where, DataTarget.for_model(model, workers=0))
        x, y = data.images("train", np.arange(6))
        assert torch.equal(x, folder.images("train", np.arange(6))[0]), where
        assert y.tolist() == [1, 1, 1, 0, 0, 0] and data.class_names == order  # a's images first; b is class 0
    harden.save(model, tmp_path / "m.safetensors")
    code, _, err = cli("fix", tmp_path / "m.safetensors", "--data", saved, "--data-frac", "1", "--epochs", "1",
                       "--set", "val_frac=0", "--no-report", "--workers", "0", "-o", tmp_path / "f.safetensors", "-q")
    assert code == 0, err
    code, out, err = cli("eval", tmp_path / "f.safetensors", "--data", export.parent, "--attack", "fgsm", "--n", "6",
                         "--workers", "0", "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 6 and report["data_details"]["layout"] == "parquet"


def test_labels_splits_and_columns_as_datasets_write_them(tmp_path):
    """ImageNet's unlabelled test split (-1) beside validation; a text label column; a path-only row; what is not
    readable is one paragraph."""
    make_tree(tmp_path / "tree", ["x", "y"], 3, splits=("",), sizes=(20, 30))
    files, labels = folder_split(tmp_path, "tree", ["x", "y"])
    model = small_cnn(num_classes=2)
    target = DataTarget.for_model(model, workers=0)
    inet = tmp_path / "imagenet" / "data"
    inet.mkdir(parents=True)
    for split, lab in (("train", labels), ("validation", labels), ("test", [-1] * len(files))):
        pq.write_table(hf_table(files, lab, ["x", "y"]), inet / f"{split}-00000-of-00001.parquet")
    data = load_data(inet.parent, target)
    assert data.y_test.tolist() == labels  # validation, not the unlabelled test split
    with pytest.raises(HardenError, match=r"6 image\(s\) have no label"):
        load_data(inet / "test-00000-of-00001.parquet", target).listing("test")

    text = tmp_path / "text.parquet"  # labels as strings: sorted, as folder names
    t = hf_table(files, None)
    pq.write_table(t.append_column("label", pa.array(["y" if v else "x" for v in labels])), text)
    assert load_data(text, target).y_test.tolist() == labels

    beside = tmp_path / "beside"  # a row naming a file beside the data instead of holding its bytes
    beside.mkdir()
    Path(beside / "pic.jpg").write_bytes(Path(files[0]).read_bytes())
    pq.write_table(hf_table([None, files[1]], [0, 0], ["x", "y"], paths=["pic.jpg", None]), beside / "t.parquet")
    x, _ = load_data(beside / "t.parquet", target).images("test", np.arange(2))
    assert torch.equal(x[0], load_data(text, target).images("test", np.arange(1))[0][0])
    pq.write_table(hf_table([None, files[1]], [0, 0], ["x", "y"]), beside / "t.parquet")
    with pytest.raises(HardenError, match=r"t\.parquet\[row 0\].*no image bytes"):
        load_data(beside / "t.parquet", target).images("test", np.arange(2))
    skipping = load_data(beside / "t.parquet", DataTarget.for_model(model, workers=0, skip_unreadable=True))
    assert len(skipping.images("test", np.arange(2))[1]) == 1 and skipping.identity()["skipped_unreadable"] == 1

    unlabelled = tmp_path / "pool.parquet"
    pq.write_table(hf_table(files, None), unlabelled)
    with pytest.raises(HardenError, match="no label column.*--unlabeled"):
        load_data(unlabelled, target).listing("test")
    from harden.data.unlabeled import NO_LABEL, load_unlabeled
    pool = load_unlabeled(unlabelled, target)
    assert (pool.y_train == NO_LABEL).all() and len(pool.images("train", np.arange(6))[1]) == 6

    pixels = tmp_path / "pixels.parquet"  # pixel arrays, not encoded files
    pq.write_table(pa.table({"pixel_values": pa.array([[0, 1], [2, 3]]), "label": pa.array([0, 1])}), pixels)
    with pytest.raises(HardenError, match="no column of encoded images.*pixel_values"):
        load_data(pixels, target)
    configs = tmp_path / "configs"
    for c in ("plain_text", "other"):
        (configs / c).mkdir(parents=True)
        pq.write_table(hf_table(files, labels, ["x", "y"]), configs / c / "train-00000-of-00001.parquet")
    with pytest.raises(HardenError, match="several configurations.*other, plain_text"):
        load_data(configs, target)
    load_data(configs / "plain_text", target)  # one of them: fine
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(HardenError, match="not a readable parquet file"):
        load_data(tmp_path / "broken.parquet", target)


def test_a_classlabel_order_wins_over_digit_names():
    """ClassLabel names "1".."3" are the dataset's indices 0..2 (as every model trained on it saw them)."""
    assert map_classes(["3", "1", "2"], 3, order=("1", "2", "3"))[0] == {"1": 0, "2": 1, "3": 2}
    assert map_classes(["3", "1", "2"], 4)[0] == {"1": 1, "2": 2, "3": 3}  # folders: names are indices


def test_a_model_trained_on_a_classlabel_order_keeps_it_for_folders_sorted_otherwise(tmp_path):
    """`harden train` keeps the data's class names: the same images as class folders (sorted: bird, cat, dog) are
    then labelled as the model learnt them (dog 0), not by sorted order."""
    order = ["dog", "cat", "bird"]
    make_tree(tmp_path / "tree", order, 2, splits=("train", "val"), sizes=(20, 30))
    files, labels = folder_split(tmp_path / "tree", "train", order)
    (tmp_path / "hf").mkdir()
    pq.write_table(hf_table(files, labels, order), tmp_path / "hf" / "train.parquet")
    vfiles, vlabels = folder_split(tmp_path / "tree", "val", order)
    pq.write_table(hf_table(vfiles, vlabels, order), tmp_path / "hf" / "test.parquet")
    data = load_data(tmp_path / "hf", DataTarget(workers=0))
    model = harden.train("cnn-small", data, harden.TrainConfig(epochs=1, batch_size=4), device="cpu")
    harden.save(model, tmp_path / "m.safetensors")
    loaded = harden.load(tmp_path / "m.safetensors")
    assert loaded.spec.extra["label_names"] == order
    folder = load_data(tmp_path / "tree", DataTarget.for_model(loaded, workers=0))
    assert folder.y_test.tolist() == vlabels and folder.class_note == "the model's label names"


def test_a_spill_the_temporary_folder_cannot_hold_is_refused_before_reading(tmp_path, monkeypatch):
    import collections

    from harden.data import tables
    make_tree(tmp_path / "tree", ["x", "y"], 3, splits=("",), sizes=(20, 30))
    files, labels = folder_split(tmp_path, "tree", ["x", "y"])
    pq.write_table(hf_table(files, labels, ["x", "y"]), tmp_path / "t.parquet", row_group_size=2)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(tables.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    data = load_data(tmp_path / "t.parquet", DataTarget.for_model(small_cnn(2), workers=0))
    with pytest.raises(HardenError, match="6 rows this run uses.*0.0 GiB free.*TMPDIR"):
        data.images("test", np.arange(6))
    monkeypatch.undo()
    assert len(data.images("test", np.arange(6))[1]) == 6


def test_columns_as_pandas_and_webdataset_conversions_write_them(tmp_path):
    """A pandas export (binary image column, category or float labels, NaN for a missing one) and a WebDataset
    conversion (`jpg` bytes, `cls` index) read as their values say."""
    make_tree(tmp_path / "tree", ["x", "y"], 3, splits=("",), sizes=(20, 30))
    files, labels = folder_split(tmp_path, "tree", ["x", "y"])
    target = DataTarget.for_model(small_cnn(2), workers=0)
    blobs = pa.array([Path(f).read_bytes() for f in files], pa.large_binary())

    def write(name, **cols):
        pq.write_table(pa.table(cols), tmp_path / name)
        return load_data(tmp_path / name, target)
    category = pa.array(["y" if v else "x" for v in labels]).dictionary_encode()
    assert write("cat.parquet", image=blobs, label=category).y_test.tolist() == labels
    floats = pa.array([float(v) for v in labels])
    assert write("float.parquet", image=blobs, label=floats).y_test.tolist() == labels
    wds = write("wds.parquet", __key__=pa.array([f"{i:04d}" for i in range(6)]), jpg=blobs,
                cls=pa.array(labels, pa.int32()))
    assert wds.y_test.tolist() == labels and torch.equal(
        wds.images("test", np.arange(6))[0], write("cat.parquet", image=blobs, label=category).images(
            "test", np.arange(6))[0])
    with pytest.raises(HardenError, match=r"2 image\(s\) have no label"):
        write("gap.parquet", image=blobs, label=pa.array([0.0, None, 1.0, float("nan"), 1.0, 0.0])).listing("test")
    with pytest.raises(HardenError, match="holds 0.5, not a class index"):
        write("half.parquet", image=blobs, label=pa.array([0.5] * 6)).listing("test")


def test_evaluation_never_opens_the_training_files(tmp_path, monkeypatch):
    make_tree(tmp_path / "tree", ["x", "y"], 2, splits=("train", "val"), sizes=(20, 30))
    (tmp_path / "repo" / "data").mkdir(parents=True)
    for split, name in (("train", "train"), ("val", "validation")):
        files, labels = folder_split(tmp_path / "tree", split, ["x", "y"])
        pq.write_table(hf_table(files, labels, ["x", "y"]), tmp_path / "repo" / "data" / f"{name}-00000-of-00001.parquet")
    opened = []
    original = pq.ParquetFile.__init__

    def recording(self, source, *a, **kw):
        opened.append(str(source))
        original(self, source, *a, **kw)
    monkeypatch.setattr(pq.ParquetFile, "__init__", recording)
    data = load_data(tmp_path / "repo", DataTarget.for_model(small_cnn(2), workers=0))
    data.images("test", data.eval_indices(4, 0))
    assert opened and not any("train-" in p for p in opened)


def test_two_classes_of_one_name_keep_their_own_labels(tmp_path):
    """Hugging Face's ImageNet names two classes "crane" (the bird, 134, and the machine, 517)."""
    make_tree(tmp_path / "tree", ["x", "y"], 2, splits=("",), sizes=(20, 30))
    files, _ = folder_split(tmp_path, "tree", ["x", "y"])
    pq.write_table(hf_table(files, [0, 1, 2, 1], ["crane", "crane", "tench"]), tmp_path / "t.parquet")
    data = load_data(tmp_path / "t.parquet", DataTarget.for_model(small_cnn(3), workers=0))
    assert data.y_test.tolist() == [0, 1, 2, 1] and data.class_names == ["crane (0)", "crane (1)", "tench"]


def test_unreadable_feature_metadata_is_said_and_the_columns_still_read(tmp_path):
    make_tree(tmp_path / "tree", ["x", "y"], 1, splits=("",), sizes=(20, 30))
    files, labels = folder_split(tmp_path, "tree", ["x", "y"])
    table = hf_table(files, labels, ["x", "y"]).replace_schema_metadata({b"huggingface": b"{not json"})
    pq.write_table(table, tmp_path / "t.parquet")
    from harden.runtime import console
    with console.capture() as cap:
        data = load_data(tmp_path / "t.parquet", DataTarget.for_model(small_cnn(2), workers=0))
        assert data.y_test.tolist() == labels  # the label column by its name, as indices
    assert "feature types" in " ".join(cap.get().split())


def test_an_unlabeled_split_beside_the_labelled_ones_is_the_pool(tmp_path):
    """A hub repository with train, test and unlabeled parquet files (STL-10's splits): --data reads train and test,
    --unlabeled the unlabeled rows alone."""
    from harden.data.unlabeled import load_unlabeled
    order = ["a", "b"]
    make_tree(tmp_path / "tree", order, 2, splits=("train", "test"), sizes=(20, 30))
    (tmp_path / "repo" / "data").mkdir(parents=True)
    for split in ("train", "test"):
        files, labels = folder_split(tmp_path / "tree", split, order)
        pq.write_table(hf_table(files, labels, order), tmp_path / "repo" / "data" / f"{split}-00000-of-00001.parquet")
    files, _ = folder_split(tmp_path / "tree", "train", order)
    pq.write_table(hf_table(files * 3, None), tmp_path / "repo" / "data" / "unlabeled-00000-of-00001.parquet")
    target = DataTarget.for_model(small_cnn(num_classes=2), workers=0)
    data = load_data(tmp_path / "repo", target)
    assert len(data.y_train) == 4 and len(data.y_test) == 4
    pool = load_unlabeled(tmp_path / "repo", target)
    assert len(pool.y_train) == 12 and (pool.y_train == -1).all()
