"""ImageNet's validation images loose in one folder, their classes in Kaggle's solution file or the ILSVRC2012
development kit (harden/data/imagenet_truth.py); the kit read as torchvision's ImageNet reads it."""
import tarfile

import numpy as np
import pytest
import torchvision
from PIL import Image

from harden.data import DataTarget, load_data
from harden.errors import HardenError
from harden.models import create_model

# the kit's leaves in its own ILSVRC2012_ID order (not WordNet-id order), and one inner node, as meta.mat holds them
SYNSETS = [(1, "n02119789", "kit fox, Vulpes macrotis", 0), (2, "n01440764", "tench, Tinca tinca", 0),
           (3, "n01443537", "goldfish, Carassius auratus", 0), (4, "n01530575", "brambling, Fringilla montifringilla", 0),
           (1001, "n00001740", "entity", 3)]
VAL_IDS = [3, 1, 2, 1, 3]  # line i: the ILSVRC2012_ID of ILSVRC2012_val_0000000i


def _jpg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 24, 3), np.uint8)).save(path, "JPEG")


def _val_images(folder):
    for i in range(1, len(VAL_IDS) + 1):
        _jpg(folder / f"ILSVRC2012_val_{i:08d}.JPEG", i)


def _train_tree(folder):
    for j, wnid in enumerate(["n01440764", "n01443537", "n02119789"]):
        _jpg(folder / wnid / f"{wnid}_{j}.JPEG", 10 + j)


def _devkit(root):
    """ILSVRC2012_devkit_t12/data/{meta.mat, ILSVRC2012_validation_ground_truth.txt}, and its tar.gz."""
    from scipy.io import savemat
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O"),
              ("wordnet_height", "O"), ("num_train_images", "O")]
    rows = np.array([(i, w, words, "", c, 0, 1300) for i, w, words, c in SYNSETS], dtype=fields).reshape(-1, 1)
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    savemat(str(data / "meta.mat"), {"synsets": rows})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in VAL_IDS))
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(root / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")


def _target():
    return DataTarget.for_model(create_model("cnn-small", 1000, 3, (16, 16), (0.5,), (0.25,)), workers=0)


def _synsets_of(data, split):
    from timm.data import ImageNetInfo
    names = ImageNetInfo("imagenet-1k").label_names()
    lst = data.listing(split)
    return [(lst.location(i).rsplit("/", 1)[1], names[lab]) for i, lab in enumerate(lst.labels)]


@pytest.mark.parametrize("extracted", [True, False])
def test_loose_validation_images_take_the_development_kit_s_labels_as_torchvision_reads_them(
        tmp_path, monkeypatch, extracted):
    import shutil
    _devkit(tmp_path)
    monkeypatch.setattr(torchvision.datasets.imagenet, "_verify_archive", lambda *a, **k: None)  # not the real kit
    torchvision.datasets.imagenet.parse_devkit_archive(str(tmp_path))  # the reference: reads the tar.gz
    _, val_wnids = torchvision.datasets.imagenet.load_meta_file(str(tmp_path))
    (tmp_path / "meta.bin").unlink()
    if extracted:
        (tmp_path / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    else:  # the kit as downloaded, beside the images
        shutil.rmtree(tmp_path / "ILSVRC2012_devkit_t12")
    _train_tree(tmp_path / "train")
    _val_images(tmp_path / "val")
    data = load_data(tmp_path, _target())
    got = _synsets_of(data, "test")
    assert got == [(f"ILSVRC2012_val_{i:08d}.JPEG", w) for i, w in enumerate(val_wnids, start=1)]
    assert [w for _, w in got] == ["n01443537", "n02119789", "n01440764", "n02119789", "n01443537"]
    assert len(data.listing("train")) == 3
    alone = load_data(tmp_path / "val", _target())  # the validation folder by itself: one split, evaluated
    assert _synsets_of(alone, "test") == got


def test_kaggle_s_imagenet_reads_from_its_root(tmp_path):
    root = tmp_path / "imagenet-object-localization-challenge"
    tree = root / "ILSVRC" / "Data" / "CLS-LOC"
    _train_tree(tree / "train")
    _val_images(tree / "val")
    _jpg(tree / "test" / "ILSVRC2012_test_00000001.JPEG", 99)  # unlabelled: never the evaluation split
    wnids = {1: "n02119789", 2: "n01440764", 3: "n01443537"}
    rows = [f"ILSVRC2012_val_{i:08d},{wnids[k]} 10 20 110 120 {wnids[k]} 5 5 50 50" for i, k in
            enumerate(VAL_IDS, start=1)]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(reversed(rows)) + "\n")
    data = load_data(root, _target())
    assert [w for _, w in _synsets_of(data, "test")] == ["n01443537", "n02119789", "n01440764", "n02119789",
                                                         "n01443537"]
    assert sorted(_synsets_of(data, "train"))[0] == ("n01440764_0.JPEG", "n01440764")


def test_a_validation_folder_with_other_images_is_refused_by_name(tmp_path):
    _devkit(tmp_path)
    _train_tree(tmp_path / "train")
    _val_images(tmp_path / "val")
    _jpg(tmp_path / "val" / "ILSVRC2012_val_00000009.JPEG", 9)  # beyond the ground truth's lines
    with pytest.raises(HardenError, match=r"1 image\(s\) in .* have no entry in the ImageNet ground truth"):
        load_data(tmp_path, _target()).listing("test")


def test_loose_validation_images_without_a_ground_truth_say_where_to_put_one(tmp_path):
    _train_tree(tmp_path / "train")
    _val_images(tmp_path / "val")
    with pytest.raises(HardenError, match="ILSVRC2012_devkit_t12.tar.gz or its extracted folder, or Kaggle's"):
        load_data(tmp_path, _target()).listing("test")


def _tar(path, files: dict):
    """An uncompressed tar of {member name: file on disk}."""
    with tarfile.open(path, "w") as tar:
        for name, src in files.items():
            tar.add(src, arcname=name)


def test_imagenet_s_tars_as_downloaded_read_in_place_as_torchvision_extracts_them(tmp_path, monkeypatch):
    """ILSVRC2012_img_train.tar (a tar of per-class tars), ILSVRC2012_img_val.tar and the development kit, read
    without extracting: the same images and classes as torchvision's ImageNet finds after extracting them."""
    import shutil
    work = tmp_path / "work"
    _train_tree(work / "train")
    _jpg(work / "train" / "n01440764" / "n01440764_7.JPEG", 17)
    _jpg(work / "train" / "n01530575" / "n01530575_1.JPEG", 18)  # a class no validation image has
    _val_images(work / "val")
    down = tmp_path / "download"
    down.mkdir()
    _devkit(down)
    shutil.rmtree(down / "ILSVRC2012_devkit_t12")
    inner = {}
    for cls in sorted((work / "train").iterdir()):
        _tar(work / f"{cls.name}.tar", {p.name: p for p in sorted(cls.iterdir())})
        inner[f"{cls.name}.tar"] = work / f"{cls.name}.tar"
    _tar(down / "ILSVRC2012_img_train.tar", inner)
    _tar(down / "ILSVRC2012_img_val.tar", {p.name: p for p in sorted((work / "val").iterdir())})
    data = load_data(down, _target())
    got_val = [(loc.rsplit(":", 1)[1], w) for loc, w in _synsets_of(data, "test")]
    got_train = sorted(_synsets_of(data, "train"))
    x, y = data.images("test", np.arange(5))  # decoded from the byte ranges of the tars
    assert x.shape[0] == 5 and float(x.max()) > 0
    x, _ = data.images("train", np.arange(4))
    assert x.shape[0] == 4
    ref = tmp_path / "ref"  # torchvision's reading: it extracts the three files, then reads folders
    shutil.copytree(down, ref)
    monkeypatch.setattr(torchvision.datasets.imagenet, "_verify_archive", lambda *a, **k: None)
    ref_val = torchvision.datasets.ImageNet(str(ref), split="val")
    ref_train = torchvision.datasets.ImageNet(str(ref), split="train")
    assert got_val == sorted((p.rsplit("/", 1)[1], ref_val.wnids[c]) for p, c in ref_val.samples)
    assert got_train == sorted((p.rsplit("/", 1)[1], ref_train.wnids[c]) for p, c in ref_train.samples)
    # the images are the same bytes as the extracted files
    lst = data.listing("test")
    assert lst.read_bytes(0) == (ref / "val" / got_val[0][1] / got_val[0][0]).read_bytes()
    alone = load_data(down / "ILSVRC2012_img_val.tar", _target())  # the validation tar by itself: evaluation only
    assert [(loc.rsplit(":", 1)[1], w) for loc, w in _synsets_of(alone, "test")] == got_val


def test_a_training_folder_of_per_class_tars_reads_in_place(tmp_path):
    """The training tar unpacked one level (train/n01440764.tar, ...), beside val/ and the development kit."""
    work = tmp_path / "work"
    _train_tree(work)
    root = tmp_path / "imagenet"
    (root / "train").mkdir(parents=True)
    for cls in sorted(work.iterdir()):
        _tar(root / "train" / f"{cls.name}.tar", {p.name: p for p in sorted(cls.iterdir())})
    _val_images(root / "val")
    _devkit(root)
    data = load_data(root, _target())
    assert sorted(_synsets_of(data, "train")) == [("n01440764.tar:n01440764_0.JPEG", "n01440764"),
                                                  ("n01443537.tar:n01443537_1.JPEG", "n01443537"),
                                                  ("n02119789.tar:n02119789_2.JPEG", "n02119789")]
    assert [w for _, w in _synsets_of(data, "test")][:2] == ["n01443537", "n02119789"]
    x, _ = data.images("train", np.arange(3))
    assert x.shape[0] == 3
