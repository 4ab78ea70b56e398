"""--label-from-name: images without class folders labelled by their file names (Dogs vs. Cats, Oxford-IIIT Pet's
images/), asked for with a pattern, kept in a hardened checkpoint, and refused where a name does not say its class."""
import json

import numpy as np
import pytest
from PIL import Image

import harden
from harden.data import DataTarget, load_data
from harden.errors import HardenError

from test_files import small_cnn


def _write(folder, names, size=(20, 24)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(names))
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)


def _target(**kw):
    return DataTarget.for_model(small_cnn(num_classes=2), workers=0, **kw)


def test_names_give_the_classes_in_one_folder_and_in_a_split_tree(tmp_path):
    # Dogs vs. Cats: the class before the first dot; a subfolder (a second download) read too
    _write(tmp_path / "dvc", [f"cat.{i}.jpg" for i in range(5)] + [f"dog.{i}.png" for i in range(3)]
           + ["more/dog.10.jpg"])
    data = load_data(tmp_path / "dvc", _target(label_from_name="^[a-z]+"))
    assert data.layout == "names" and data.class_names == ["cat", "dog"] and not data.has_split("train")
    listing = data.listing("test")
    by_file = {listing.location(i).rsplit("/", 1)[1]: int(data.y_test[i]) for i in range(data.n_test)}
    assert by_file == {**{f"cat.{i}.jpg": 0 for i in range(5)}, **{f"dog.{i}.png": 1 for i in range(3)},
                       "dog.10.jpg": 1}
    # Oxford-IIIT Pet's names: the breed (with underscores) before the number; the group named label is the class
    # where the pattern has others; train/ and val/ of loose images are the two splits
    pets = ["Abyssinian_1.jpg", "Abyssinian_2.jpg", "american_pit_bull_terrier_12.jpg"]
    _write(tmp_path / "pets" / "train", pets)
    _write(tmp_path / "pets" / "val", ["Abyssinian_7.jpg", "american_pit_bull_terrier_3.jpg"])
    for pattern in (r"^(.+)_\d+\.", r"^(?P<label>.+?)_(\d+)"):
        data = load_data(tmp_path / "pets", _target(label_from_name=pattern))
        assert data.class_names == ["Abyssinian", "american_pit_bull_terrier"], pattern
        assert data.y_train.tolist() == [0, 0, 1] and data.y_test.tolist() == [0, 1]


def test_a_zip_archive_of_named_images_as_kaggle_ships_dogs_vs_cats(tmp_path):
    import zipfile
    _write(tmp_path / "train", [f"{c}.{i}.jpg" for c in ("cat", "dog") for i in range(3)])
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as z:
        for f in sorted((tmp_path / "train").iterdir()):
            z.write(f, f"train/{f.name}")
    data = load_data(tmp_path / "train.zip", _target(label_from_name="^[a-z]+"))
    assert data.class_names == ["cat", "dog"] and data.y_test.tolist() == [0, 0, 0, 1, 1, 1]
    lst = data.listing("test")
    assert lst.location(0).endswith("train.zip:train/cat.0.jpg")
    assert lst.read_bytes(5) == (tmp_path / "train" / "dog.2.jpg").read_bytes()


def test_a_name_without_its_class_and_a_bad_pattern_are_refused(tmp_path):
    # Dogs vs. Cats' root: train/ labelled by names beside test1/, numbered and unlabelled
    _write(tmp_path / "dvc" / "train", ["cat.0.jpg", "dog.0.jpg"])
    _write(tmp_path / "dvc" / "test1", ["1.jpg", "2.jpg"])
    with pytest.raises(HardenError, match=r"2 of the 4 image files .*\(test1/1\.jpg, test1/2\.jpg\).*labelled images alone"):
        load_data(tmp_path / "dvc", _target(label_from_name="^[a-z]+"))
    with pytest.raises(HardenError, match="not a regular expression"):
        load_data(tmp_path / "dvc" / "train", _target(label_from_name="^[a-z"))
    with pytest.raises(HardenError, match="matches an empty name"):
        load_data(tmp_path / "dvc" / "train", _target(label_from_name="[a-z]*"))
    with pytest.raises(HardenError, match="one or the other"):
        load_data(tmp_path / "dvc" / "train", _target(label_from_name="^[a-z]+", label_column="label"))
    # data read another way (arrays here) is refused rather than read as if the flag were not there
    np.savez(tmp_path / "arrays.npz", x_test=np.zeros((4, 8, 8, 3), np.uint8), y_test=np.arange(4) % 2)
    with pytest.raises(HardenError, match="--label-from-name reads .* read as arrays"):
        load_data(tmp_path / "arrays.npz", _target(label_from_name="^[a-z]+"))
    # without the flag, a folder of loose images names it
    with pytest.raises(HardenError, match="--label-from-name PATTERN"):
        load_data(tmp_path / "dvc" / "train", _target())


def test_the_pattern_is_kept_by_train_and_used_again_only_on_loose_images(tmp_path, cli):
    code, out, _ = cli("data", "--help")
    assert code == 0 and "'^[a-z]+'" in out  # the example survives rich's markup ([a-z] reads as a style tag)
    _write(tmp_path / "dvc", [f"{c}.{i}.jpg" for c in ("cat", "dog") for i in range(10)])
    code, _, err = cli("train", "--data", tmp_path / "dvc", "--label-from-name", "^[a-z]+", "--arch", "cnn-small",
                       "--input-size", "16", "--epochs", "1", "--workers", "0", "-o", tmp_path / "m.safetensors", "-q")
    assert code == 0, err
    model = harden.load(tmp_path / "m.safetensors")
    assert model.spec.extra["data_columns"] == {"from_name": "^[a-z]+"} and model.spec.extra["label_names"] == \
        ["cat", "dog"]
    code, _, err = cli("eval", tmp_path / "m.safetensors", "--attack", "fgsm", "--n", "4", "--workers", "0",
                       "--json", tmp_path / "r.json")  # the 20% train held out, read by the names again
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 4
    # the same model on a class-folder tree: the folders label it, the recorded pattern is not used
    _write(tmp_path / "tree" / "cat", ["dog.1.jpg", "dog.2.jpg"])
    _write(tmp_path / "tree" / "dog", ["cat.1.jpg"])
    data = load_data(tmp_path / "tree", DataTarget.for_model(model, workers=0))
    assert data.layout == "folder" and data.y_test.tolist() == [0, 0, 1]
