"""Camera photographs' EXIF orientation (`--exif-orientation`): a phone stores a portrait photo's pixels sideways with
a tag that says how to turn them. torchvision's ImageFolder and timm read the pixels as stored; Hugging Face's
`datasets` (since 2.19) and transformers' `load_image` turn them upright. harden reads them as the model's own
pipeline would have (auto: upright for a Hugging Face dataset or a transformers model, else stored), either way on
request, and says so when a run meets such a file."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from harden.data import DataTarget, Preprocess, load_data
from harden.data.transforms import exif_orientation
from harden.errors import HardenError

H, W = 24, 40  # the photographs' upright size, the model's input size: the evaluation transform keeps every pixel
TURN_FOR_TAG = {6: Image.Transpose.ROTATE_90, 3: Image.Transpose.ROTATE_180, 8: Image.Transpose.ROTATE_270}


def upright_photo(k: int) -> np.ndarray:
    """An image whose every turn and mirror differs: a horizontal ramp, a bar along the top, a mark per image."""
    a = np.zeros((H, W, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, W, dtype=np.float64)[None].astype(np.uint8)
    a[:4, :, 1] = 255
    a[H - 6:, :6, 2] = 30 * (k + 1)
    return a


def save_as_a_camera(path, upright: np.ndarray, tag: int, fmt: str = "PNG") -> None:
    """The pixels stored turned so that applying the EXIF orientation `tag` (as a viewer does) gives `upright`."""
    stored = Image.fromarray(upright)
    if tag in TURN_FOR_TAG:
        stored = stored.transpose(TURN_FOR_TAG[tag])
    exif = Image.Exif()
    exif[0x0112] = tag
    stored.save(path, fmt, exif=exif)


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory):
    """Class folders of lossless PNGs stored as cameras store them (tags 6, 3, 8, and one upright file without a tag),
    and the upright pixels each should give."""
    root = tmp_path_factory.mktemp("phone")
    expected = {}
    for ci, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir()
        for j, tag in enumerate((6, 3, 8, 1)):
            k = 4 * ci + j
            a = upright_photo(k)
            if tag == 1:
                Image.fromarray(a).save(root / cls / f"p{j}.png")
            else:
                save_as_a_camera(root / cls / f"p{j}.png", a, tag)
            expected[(ci, k % 4)] = a
    return root, expected


def target(orientation="auto", num_classes=2):
    return DataTarget(Preprocess(3, (H, W)), num_classes, workers=0, exif_orientation=orientation)


def photo_no(listing, i: int) -> int:
    return int(Path(str(listing.location(i))).name[1])  # p<j>.png


def read_all(data):
    x, y = data.images("test", np.arange(data.n_test))
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), y.numpy()


def test_upright_turns_each_photo_as_its_tag_says_and_stored_keeps_the_pixels(phone_photos):
    root, expected = phone_photos
    data = load_data(root, target("upright"))
    x, y = read_all(data)
    assert data.preprocess.orientation == "upright" and "EXIF orientation applied" in data.preprocess.describe()
    listing = data.listing("test")
    for i in range(len(y)):
        j = photo_no(listing, i)
        assert np.array_equal(x[i], expected[(int(y[i]), j)]), listing.location(i)
    assert data.identity()["exif_oriented"].startswith("6 image(s)")  # the untagged files are not counted
    assert data.identity()["preprocess"]["orientation"] == "upright"

    stored = load_data(root, target("stored"))
    xs, _ = read_all(stored)
    turned = [i for i in range(len(y)) if not str(listing.location(i)).endswith("p3.png")]
    assert all(not np.array_equal(xs[i], x[i]) for i in turned)  # read as stored: sideways and upside down
    assert all(np.array_equal(xs[i], x[i]) for i in set(range(len(y))) - set(turned))
    assert "orientation" not in stored.identity()["preprocess"]  # the default: records as before it existed
    assert "turned" not in stored.identity()["exif_oriented"]


def test_the_first_image_with_a_tag_says_how_it_was_read_once(phone_photos, monkeypatch):
    import harden.runtime
    said = []
    monkeypatch.setattr(harden.runtime, "info", said.append)
    data = load_data(phone_photos[0], target())
    read_all(data)
    read_all(data)
    assert len(said) == 1 and "read as stored" in said[0] and "--exif-orientation upright" in said[0]
    assert data.identity()["exif_oriented"].startswith("12 image(s)")  # both reads counted, said once


def test_training_batches_are_turned_as_evaluation_images_are(phone_photos):
    """A one-split folder held out for fix: its training batches (the feeder) read the same upright pixels."""
    root, expected = phone_photos
    data = load_data(root, target("upright")).with_held_out_test()
    feeder = data.feeder("none", 0, torch.device("cpu"))
    idx = np.arange(data.n_train)
    (x, y), = [b for b in feeder.epoch([idx], 0)]
    got = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    listing = data.listing("train")
    for i in range(len(y)):
        j = photo_no(listing, i)
        assert np.array_equal(got[i], expected[(int(y[i]), j)])
    assert data.oriented["n"] == sum(not str(listing.location(i)).endswith("p3.png") for i in range(len(y)))


def test_auto_reads_as_the_models_own_library_did(phone_photos, tmp_path):
    root, _ = phone_photos
    assert load_data(root, target()).preprocess.orientation == "stored"  # a folder: torchvision's and timm's way
    spec = SimpleNamespace(arch="transformers:ViTForImageClassification", num_classes=2, in_chans=3, input_size=(H, W),
                           interpolation="bilinear", crop_pct=1.0, crop_mode="center", extra={})
    assert DataTarget.for_model(SimpleNamespace(spec=spec), workers=0).exif_orientation == "upright"
    assert DataTarget.for_model(SimpleNamespace(spec=spec), exif_orientation="stored").exif_orientation == "stored"
    timm_spec = SimpleNamespace(**{**vars(spec), "arch": "resnet18"})
    assert DataTarget.for_model(SimpleNamespace(spec=timm_spec)).exif_orientation == "auto"

    pq = pytest.importorskip("pyarrow.parquet")
    from test_tables import hf_table
    files = sorted(str(p) for p in root.rglob("*.png"))
    labels = [0 if "/cat/" in f else 1 for f in files]
    (tmp_path / "data").mkdir()
    pq.write_table(hf_table(files, labels, ["cat", "dog"]), tmp_path / "data" / "test-00000-of-00001.parquet")
    table = load_data(tmp_path, target())
    assert table.preprocess.orientation == "upright"  # as `datasets` decodes its Image feature
    assert load_data(tmp_path, target("stored")).preprocess.orientation == "stored"
    x, _ = read_all(table)
    xf, _ = read_all(load_data(root, target("upright")))
    assert sorted(map(bytes, x)) == sorted(map(bytes, xf))


def test_a_damaged_or_odd_tag_reads_as_stored(tmp_path):
    img = Image.fromarray(upright_photo(0))
    exif = Image.Exif()
    exif[0x0112] = 77  # no such orientation
    img.save(tmp_path / "odd.png", exif=exif)
    with Image.open(tmp_path / "odd.png") as im:
        assert exif_orientation(im) == 1
    save_as_a_camera(tmp_path / "cam.jpg", upright_photo(1), 6, "JPEG")  # JPEG: draft decoding keeps the tag
    with Image.open(tmp_path / "cam.jpg") as im:
        im.draft("RGB", (8, 8))
        im.load()
        assert exif_orientation(im) == 6


def test_the_flag_on_the_command_line(phone_photos, cli):
    code, out, _ = cli("data", str(phone_photos[0]))
    assert code == 0 and "with an EXIF orientation tag (read as stored" in " ".join(out.split())
    code, out, _ = cli("data", str(phone_photos[0]), "--exif-orientation", "upright")
    assert code == 0 and "EXIF orientation applied (upright)" in " ".join(out.split())
    code, _, err = cli("data", str(phone_photos[0]), "--exif-orientation", "sideways")
    assert code == 2 and "--exif-orientation takes auto, stored or upright" in " ".join(err.split())
    with pytest.raises(HardenError, match="exif-orientation"):
        DataTarget(exif_orientation="rotated")


def test_a_hardened_model_remembers_the_orientation_it_was_hardened_with(phone_photos, tmp_path):
    """`fix --exif-orientation upright` on a folder: the hardened file's later eval reads the files upright with no
    flag, and the flag still wins."""
    import harden
    base = harden.create_model("cnn-small", 2, 3, (H, W), (0.5,), (0.25,))
    path = tmp_path / "base.safetensors"
    harden.save(base, path)
    res = harden.fix(path, str(phone_photos[0]), epochs=1, report=False, device="cpu",
                     sets=["val_frac=0", "attack=fgsm-rs"], data_target={"exif_orientation": "upright", "workers": 0})
    hardened = res.model
    assert hardened.spec.extra["exif_orientation"] == "upright"
    assert DataTarget.for_model(hardened).exif_orientation == "upright"
    assert DataTarget.for_model(hardened, exif_orientation="stored").exif_orientation == "stored"
    assert "exif_orientation" not in base.spec.extra and DataTarget.for_model(base).exif_orientation == "auto"


def test_the_report_counts_its_own_tagged_images(phone_photos):
    import harden
    model = harden.create_model("cnn-small", 2, 3, (H, W), (0.5,), (0.25,))
    data = load_data(phone_photos[0], DataTarget.for_model(model, workers=0, exif_orientation="upright"))
    read_all(data)  # an earlier read of the run (a check): not the report's
    rep = harden.evaluate(model, data, attacks=["fgsm"], n=4, metrics=False, masking_checks=False, device="cpu")
    tagged = sum(Path(str(data.listing("test").location(int(i)))).name != "p3.png" for i in data.eval_indices(4, 0))
    assert rep.data_details["exif_oriented"].startswith(f"{tagged} image(s)") and "turned upright" in \
        rep.data_details["exif_oriented"]


def test_train_remembers_an_explicit_orientation(phone_photos, cli, tmp_path):
    import shutil
    for split in ("train", "val"):
        shutil.copytree(phone_photos[0], tmp_path / "tree" / split)
    out = tmp_path / "t.safetensors"
    code, _, _ = cli("train", "--data", tmp_path / "tree", "--arch", "cnn-small", "--epochs", "1", "--input-size",
                     f"{H}x{W}", "--exif-orientation", "upright", "--workers", "0", "-o", out)
    import harden
    assert code == 0 and harden.load(out).spec.extra["exif_orientation"] == "upright"
