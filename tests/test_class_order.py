"""Numbered class folders ('0' to '11') read as the model learned them: as class indices, in sorted order as
torchvision's ImageFolder numbers them ('0', '1', '10', '11', '2', ...), or from 1; decided by the model's clean
accuracy on a small sample; a model that cannot tell them apart keeps the indices reading, and says so."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import harden
from harden.data import DataTarget, load_data
from harden.data.class_order import INDICES, ONE_BASED, SORTED, numbered_readings

GREY = '''
import torch
from torch import nn


class Grey(nn.Module):
    """Class i is the grey level levels[i]: scores are minus the distance of the image's mean from each level."""
    def __init__(self, num_classes=12):
        super().__init__()
        self.levels = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        return -40 * (x.mean((1, 2, 3))[:, None] - self.levels[None]).abs()
'''
NAMES = [str(i) for i in range(12)]


def level(name: str) -> float:
    return (int(name) * 20 + 10) / 255


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 class folders '0' to '11', each of six 8x8 grey images of its own level (names as numbers, no padding)."""
    root = tmp_path_factory.mktemp("numbered")
    for name in NAMES:
        (root / name).mkdir()
        for k in range(6):
            v = round(level(name) * 255) + k - 3
            Image.fromarray(np.full((8, 8), v, np.uint8)).save(root / name / f"{k}.png")
    (root / "grey.py").write_text(GREY)
    return root


def model_file(folder, tmp_path, order: list[str], name: str):
    """A checkpoint whose output i is the level of folder order[i] (what a training script's numbering made it)."""
    levels = torch.tensor([level(n) for n in order])
    path = tmp_path / f"{name}.pth"
    torch.save({"levels": levels}, path)
    return path


def test_readings_of_numbered_names():
    assert numbered_readings(NAMES[:10], 10) == {}  # 0-9: every reading agrees
    r = numbered_readings(NAMES, 12)
    assert list(r) == [INDICES, SORTED] and r[SORTED]["10"] == 2 and r[INDICES]["10"] == 10
    one = numbered_readings([str(i) for i in range(1, 13)], 12)
    assert list(one) == [SORTED, ONE_BASED] and one[ONE_BASED]["12"] == 11 and one[SORTED]["12"] == 3
    assert numbered_readings(["0", "1", "x"], 3) == {} and numbered_readings(NAMES, None) == {}


@pytest.mark.parametrize("trained", ["sorted", "indices"])
def test_the_model_says_how_it_numbered_the_folders(folder, tmp_path, trained, cli):
    order = sorted(NAMES) if trained == "sorted" else NAMES
    ckpt = model_file(folder, tmp_path, order, trained)
    model = harden.load(ckpt, arch=f"{folder / 'grey.py'}:Grey", input_size=8, in_chans=1)
    data = load_data(folder, DataTarget.for_model(model))
    assert data.class_note.startswith(SORTED if trained == "sorted" else INDICES), data.class_note
    assert "100% " + ("in sorted order" if trained == "sorted" else "as indices") in data.class_note
    x, y = data.images("test", np.arange(len(data.y_test)))
    assert (model(x).argmax(1) == y).all()
    assert data.class_names == order
    code, out, err = cli("eval", ckpt, "--arch", f"{folder / 'grey.py'}:Grey", "--input-size", 8, "--in-chans", 1,
                         "--data", folder, "--attack", "fgsm", "--no-metrics", "--no-masking-checks", "--json",
                         tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["values"]["clean"] == 1.0
    assert "classes read as" in " ".join(err.split())
    assert "classes: " + (SORTED if trained == "sorted" else INDICES) in " ".join(out.split())  # the report says it


def test_a_model_that_tells_nothing_keeps_the_indices(folder, tmp_path):
    ckpt = tmp_path / "flat.pth"
    torch.save({"levels": torch.full((12,), 0.5)}, ckpt)  # the same score for every class
    model = harden.load(ckpt, arch=f"{folder / 'grey.py'}:Grey", input_size=8, in_chans=1)
    data = load_data(folder, DataTarget.for_model(model))
    assert data.class_note.startswith(INDICES) and "not told apart" in data.class_note
    assert data.class_names == NAMES


def test_no_model_no_question(folder):
    """harden train (no model yet) and a class map keep their readings, and ask nothing."""
    data = load_data(folder, DataTarget(num_classes=12))
    assert data.class_note == INDICES
    from harden.data.describe import describe
    note = dict(describe(load_data(folder)))["class indices"]  # `harden data`: the other reading is named
    assert note.startswith(INDICES) and "in sorted order by other training code" in note


@pytest.mark.parametrize("trained", ["sorted", "wnids"])
def test_tiny_imagenet_val_annotations_and_the_wnids_order(tmp_path, trained):
    """Tiny ImageNet: train/<wnid>/images/, val/images/ loose with their classes in val/val_annotations.txt, and
    wnids.txt at the root in another order than sorted. The annotations label val (not one class named "images"),
    and the model says whether it numbered its classes along wnids.txt or in sorted order."""
    from harden.data.class_order import SORTED_NAMES
    wnids = ["n04", "n01", "n03", "n00", "n02", "n05"]  # the file's order; sorted differs
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    grey = {w: (int(w[1:]) * 40 + 10) for w in wnids}
    rows = []
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for k in range(3):
            Image.fromarray(np.full((8, 8), grey[w] + k, np.uint8)).save(root / "train" / w / "images" / f"{k}.JPEG")
            Image.fromarray(np.full((8, 8), grey[w] - k, np.uint8)).save(root / "val" / "images" / f"val_{w}_{k}.png")
            rows.append(f"val_{w}_{k}.png\t{w}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    (root / "grey.py").write_text(GREY)
    order = sorted(wnids) if trained == "sorted" else wnids
    ckpt = tmp_path / "grey.pth"
    torch.save({"levels": torch.tensor([grey[w] / 255 for w in order])}, ckpt)
    model = harden.load(ckpt, arch=f"{root / 'grey.py'}:Grey", input_size=8, in_chans=1, num_classes=6)
    data = load_data(root, DataTarget.for_model(model, workers=0))
    assert data.n_test == 18 and sorted(set(data.y_test.tolist())) == list(range(6))
    want = SORTED_NAMES if trained == "sorted" else "the order of the dataset's wnids.txt"
    assert data.class_note.startswith(want), data.class_note
    x, y = data.images("test", np.arange(18))
    assert (model(x).argmax(1) == y).all() and data.class_names == order
    from harden.data.describe import describe
    note = dict(describe(load_data(root)))["class indices"]  # `harden data`, no model: the other reading is named
    assert note.startswith(SORTED_NAMES) and "in wnids.txt's order by other training code" in note


@pytest.mark.parametrize("trained", ["sorted", "indices"])
def test_kaggle_gtsrb_train_folders_and_test_csv_share_one_reading(tmp_path, trained):
    """Kaggle's GTSRB: Train/<0..42>/ class folders, Test/ of loose images with Test.csv beside them (Path, ClassId),
    capitalised. Both splits are read, and Test.csv's ClassId goes through the same reading of the numbers as the
    folders (ImageFolder's sorted one, or the indices themselves), the one the model answers to."""
    root = tmp_path / "gtsrb"
    (root / "Test").mkdir(parents=True)
    rows = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
    for name in NAMES:
        (root / "Train" / name).mkdir(parents=True)
        for k in range(3):
            v = round(level(name) * 255) + k - 1
            Image.fromarray(np.full((8, 8), v, np.uint8)).save(root / "Train" / name / f"{k}.png")
            Image.fromarray(np.full((8, 8), v, np.uint8)).save(root / "Test" / f"{name}_{k}.png")
            rows.append(f"8,8,0,0,8,8,{name},Test/{name}_{k}.png")
    (root / "Test.csv").write_text("\n".join(rows) + "\n")
    (root / "grey.py").write_text(GREY)
    order = sorted(NAMES) if trained == "sorted" else NAMES
    model = harden.load(model_file(root, tmp_path, order, trained), arch=f"{root / 'grey.py'}:Grey", input_size=8,
                        in_chans=1)
    data = load_data(root, DataTarget.for_model(model, workers=0))
    assert (data.n_train, data.n_test) == (36, 36)
    assert data.class_note.startswith(SORTED if trained == "sorted" else INDICES), data.class_note
    for split in ("train", "test"):
        x, y = data.images(split, np.arange(36))
        assert (model(x).argmax(1) == y).all(), split
