"""ImageNet-class checkpoints and data on disk: timm hub folders load with no flags; folders of real-world images
(mixed sizes and modes) reach the model exactly as timm's own pipeline feeds it; listings are lazy (eval never lists
the training split, a fix decodes only its subset); synset folders map to the model's 1000 indices; lists, tar
shards, class maps and bad files."""
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import harden
from harden.data import DataTarget, Preprocess, load_data
from harden.data import sources as sources_mod
from harden.data.transforms import to_channels
from harden.errors import HardenError
from harden.runtime import held_warnings

SYNSETS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668",
           "n01514859", "n01518878", "n01530575", "n01531178"]  # ImageNet-1k indices 0..11 (timm's synset order)
MODES = ["RGB", "L", "CMYK", "RGBA", "P", "I;16"]


def photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour field with noise: compresses like a photograph, unlike uniform noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + rng.uniform(0, 6)), np.cos(5 * yy + rng.uniform(0, 6)), xx * yy], -1)
    img = (base * 0.5 + 0.5) * 200 + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def save_image(path, arr: np.ndarray, mode: str) -> str:
    """Save in the given mode: JPEGs for RGB / L / CMYK, PNGs for RGBA / palette / 16-bit grey."""
    im = Image.fromarray(arr)
    if mode == "I;16":
        grey = np.asarray(im.convert("L")).astype(np.uint16) * 257
        im, ext = Image.fromarray(grey), ".png"
    elif mode in ("RGBA", "P"):
        im, ext = (im.convert("RGBA") if mode == "RGBA" else im.convert("P", palette=Image.ADAPTIVE)), ".png"
    else:
        im, ext = im.convert(mode), ".jpg"
    out = f"{path}{ext}"
    im.save(out, quality=90) if ext == ".jpg" else im.save(out)
    return out


def make_tree(root, classes, per_class, seed=0, splits=("train", "val"), sizes=(40, 190)):
    rng = np.random.default_rng(seed)
    files = []
    for split in splits:
        for ci, c in enumerate(classes):
            d = root / split / c if split else root / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = rng.integers(sizes[0], sizes[1], 2)
                files.append(save_image(d / f"img{i}", photo(rng, int(h), int(w)), MODES[(ci + i) % len(MODES)]))
    return files


def hub_folder(tmp_path, arch, safetensors=True):
    import timm
    from timm.models import save_for_hf
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False)
    folder = tmp_path / arch.split(".")[0]
    save_for_hf(net, str(folder), safe_serialization=safetensors)
    return folder, net


@pytest.fixture(scope="module")
def synset_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    make_tree(root, SYNSETS[:3], 4)
    return root


# ------------------------------------------------------------------ hub folders and timm's preprocessing

@pytest.mark.parametrize("arch,safetensors", [("test_resnet.r160_in1k", True), ("test_vit.r160_in1k", False),
                                              ("test_efficientnet.r160_in1k", True)])
def test_hub_folder_runs_every_command_with_no_model_flags(arch, safetensors, synset_tree, cli, tmp_path):
    folder, net = hub_folder(tmp_path, arch, safetensors)
    code, out, err = cli("inspect", folder)
    assert code == 0, err
    assert "160x160" in out and "hub config.json" in out and str(net.pretrained_cfg["crop_pct"]) in out
    code, out, err = cli("eval", folder, "--data", synset_tree, "--num-images", "4", "--attack", "fgsm",
                         "--no-metrics", "--no-masking-checks", "--workers", "0", "-q", "--json", tmp_path / "r.json")
    assert code == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["n"] == 4 and "centre crop 160x160" in rep["data_details"]["pixels"]
    code, out, err = cli("fix", folder, "--data", synset_tree, "--data-frac", "0.5", "--epochs", "1",
                         "--batch-size", "2", "--no-report", "--workers", "0", "--set", "val_frac=0",
                         "--set", "attack=fgsm-rs", "-o", tmp_path / "fixed.safetensors", "-q")
    assert code == 0, err
    fixed = harden.load(tmp_path / "fixed.safetensors")  # the metadata now carries the whole configuration
    assert fixed.spec.input_size == (160, 160) and fixed.spec.crop_pct == net.pretrained_cfg["crop_pct"]
    assert fixed.spec.interpolation == net.pretrained_cfg["interpolation"]
    code, out, err = cli("export", folder, "-o", tmp_path / "m.onnx", "--data", synset_tree, "--num-images", "4",
                         "--workers", "0")
    assert code == 0, err + out
    code, out, err = cli("import", folder, "-o", tmp_path / "imported.safetensors")
    assert code == 0, err
    imported = harden.load(tmp_path / "imported.safetensors")  # every value kept, now from the checkpoint
    assert imported.spec.to_dict() | {"extra": None} == harden.load(folder).spec.to_dict() | {"extra": None}
    assert set(imported.config_sources.values()) == {"checkpoint"}


def test_default_report_leaves_jsma_out_above_64_px_and_says_so():
    data = harden.data.ImageData(np.zeros((4, 72, 72, 3), np.uint8), np.arange(4) % 2,
                                 np.full((2, 72, 72, 3), 90, np.uint8), np.arange(2), "grey squares", 2)
    model = harden.create_model("cnn-small", 2, 3, (72, 72), (0.5,), (0.25,))
    rep = harden.evaluate(model, data, n=2, metrics=False, masking_checks=False, device="cpu")
    assert [a.name for a in rep.attacks] == ["fgsm", "pgd", "autopgd", "cw", "deepfool"]
    assert any("jsma left out" in n for n in rep.notes)
    small = harden.evaluate(harden.create_model("cnn-small", 2, 3, (16, 16)), data, n=2, metrics=False,
                            masking_checks=False, device="cpu")
    assert "jsma" in [a.name for a in small.attacks] and not small.notes


def test_timm_name_takes_timm_config_and_default_warns(tmp_path, capsys):
    import timm
    net = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    m = harden.load(tmp_path / "sd.pt", arch="test_resnet.r160_in1k", num_classes=1000)
    assert m.spec.input_size == (160, 160) and m.config_sources["input_size"].startswith("timm config")
    assert m.spec.crop_pct == 0.95 and tuple(m.spec.mean) == tuple(net.pretrained_cfg["mean"])
    from harden.runtime import console
    small = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    torch.save(small.state_dict(), tmp_path / "small.pt")
    (tmp_path / "nets.py").write_text("import torch\n\ndef net(num_classes=10, in_chans=3):\n"
                                      "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, "
                                      "num_classes))\n")
    with console.capture() as cap:
        m = harden.load(tmp_path / "small.pt", arch=f"{tmp_path / 'nets.py'}:net", num_classes=10)
    text = cap.get()
    assert "assuming mean 0, std 1" in " ".join(text.split())  # the size: the MLP reads 3 x 32 x 32 values
    assert m.config_sources["mean"] == "default" and m.config_sources["input_size"].startswith("checkpoint weights")


@pytest.mark.parametrize("arch", ["test_resnet.r160_in1k", "test_vit.r160_in1k", "test_convnext.r160_in1k"])
def test_a_fine_tuned_timm_file_says_its_class_and_channel_counts(tmp_path, capsys, arch):
    """A timm name's config says 1000 classes and 3 channels (timm's own weights); a file fine-tuned to 6 grayscale
    classes says otherwise in the layers timm names as classifier and first convolution, whatever wraps the keys."""
    import timm
    from harden.runtime import console
    net = timm.create_model(arch, pretrained=False, num_classes=6, in_chans=1).eval()
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "ft.pth")
    with console.capture() as cap:
        m = harden.load(tmp_path / "ft.pth", arch=arch)
    assert (m.spec.num_classes, m.spec.in_chans) == (6, 1)
    assert m.config_sources["num_classes"].startswith("checkpoint weights (module.")
    assert "says 1000" in " ".join(cap.get().split())
    x = torch.rand(2, 1, 160, 160)
    with torch.no_grad():
        assert torch.allclose(m.net(x), net(x), atol=1e-5)
    # a flag still wins, and then the shapes must fit it
    with pytest.raises(HardenError, match="6 outputs where the model has 5"):
        harden.load(tmp_path / "ft.pth", arch=arch, num_classes=5)
    # the full timm head (1000 rows) is taken as the config says, with no note
    full = timm.create_model(arch, pretrained=False)
    torch.save(full.state_dict(), tmp_path / "full.pt")
    with console.capture() as cap:
        assert harden.load(tmp_path / "full.pt", arch=arch).spec.num_classes == 1000
    assert "shape of the file" not in cap.get()


def test_a_timm_file_read_at_a_given_size_names_timms_counts(tmp_path, capsys):
    """--input-size keeps timm's preprocessing out (said, with timm's statistics named), not its class and channel
    counts: the warning names the 1000 classes timm's own weights have (it said "none"), and a channel count equal to
    timm's is read with no warning."""
    import timm
    from harden.runtime import console
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict(), tmp_path / "r18.pth")
    with console.capture() as cap:
        m = harden.load(tmp_path / "r18.pth", arch="resnet18", input_size=(64, 64))
    text = " ".join(cap.get().split())
    assert (m.spec.num_classes, m.spec.in_chans, tuple(m.spec.input_size)) == (3, 3, (64, 64))
    assert "--num-classes 3" in text and "says 1000" in text
    assert "--in-chans" not in text
    # timm's preprocessing is left out with a size given, and its statistics named for a file fine-tuned by timm
    assert m.config_sources["mean"] == "default"
    assert "not taken with a size given by --input-size" in text and "--mean 0.485,0.456,0.406" in text


def test_weights_in_their_original_repositorys_layout_go_through_timms_converter(tmp_path):
    """FB's ConvNeXt checkpoints (`downsample_layers.0`, `stages.0.0.dwconv`, `pwconv1` as Linear, `norm`, `head`):
    timm's checkpoint_filter_fn for the architecture maps them to timm's keys, said in the load notes; the class
    count is read from the converted head. The converted weights give timm's model's outputs exactly."""
    import re

    import timm
    net = timm.create_model("convnext_atto", num_classes=5).eval()
    original = {}
    for k, v in net.state_dict().items():  # timm's own renames, undone
        k = k.replace("stem.", "downsample_layers.0.")
        k = re.sub(r"stages\.([0-9]+)\.downsample\.([0-9]+)", r"downsample_layers.\1.\2", k)
        k = re.sub(r"stages\.([0-9]+)\.blocks\.([0-9]+)", r"stages.\1.\2", k)
        k = k.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv").replace("head.fc.", "head.")
        k = k.replace("head.norm.", "norm.")
        original[k] = v.reshape(v.shape[0], -1) if k.endswith(("pwconv1.weight", "pwconv2.weight")) else v
    torch.save({"model": original, "epoch": 299}, tmp_path / "convnext_atto_fb.pth")
    m = harden.load(tmp_path / "convnext_atto_fb.pth", arch="convnext_atto")
    assert m.spec.num_classes == 5 and "checkpoint_filter_fn" in " ".join(m.load_notes)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m.net(x), net(x))
    # FB's released files hold the weights alone (`convnext_tiny_1k_224_ema.pth`: {'model': ...}); without --arch the
    # load asked for it, though the file's name spells the model: a timm model the path names whose converter turns
    # the weights into exactly its own is taken, and said; one whose converter does not fit them is not
    (tmp_path / "convnext_atto_fb.pth").rename(tmp_path / "convnext_atto_1k_224_ema.pth")
    found = harden.load(tmp_path / "convnext_atto_1k_224_ema.pth")
    assert found.spec.arch == "convnext_atto" and "path names timm's convnext_atto, whose converter" in \
        " ".join(found.config_sources["arch"].split())
    with torch.no_grad():
        assert torch.equal(found.net(x), net(x))
    torch.save({"model": original}, tmp_path / "resnet18_in1k.pth")
    with pytest.raises(HardenError, match="does not say its architecture"):
        harden.load(tmp_path / "resnet18_in1k.pth")
    # keys that no converter maps stay the usual error
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(HardenError, match="do not fit"):
        harden.load(tmp_path / "other.pth", arch="convnext_atto", num_classes=5)


def test_a_vit_trained_at_another_size_is_named_and_loads_with_its_img_size(tmp_path):
    """A ViT's size is a constructor argument: the file's position embedding says it, and the ViT is built with it
    where timm's config gave the size (said); --model-arg img_size gives the model its input size too (timm's config
    keeps its own) and no AssertionError escapes; where a size was given, the error names the file's."""
    import timm
    arch = "test_vit.r160_in1k"
    patch = timm.create_model(arch).patch_embed.patch_size[0]
    size = 6 * patch
    net = timm.create_model(arch, pretrained=False, num_classes=3, img_size=size).eval()
    torch.save(net.state_dict(), tmp_path / "vit.pt")
    from harden.runtime import console
    with console.capture() as cap:  # the position embedding says the size: built with it, said
        found = harden.load(tmp_path / "vit.pt", arch=arch)
    assert f"trained at {size}x{size}" in " ".join(cap.get().split()) and found.spec.input_size == (size, size)
    assert found.config_sources["input_size"] == "checkpoint weights (pos_embed's positions)"
    probe = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(found.net(probe), net(probe), atol=1e-5)
    with pytest.raises(HardenError, match=f"trained at {size}x{size} \\(timm: --model-arg img_size={size}\\)"):
        harden.load(tmp_path / "vit.pt", arch=arch, input_size=(160, 160))  # a size given: the hint, not a guess
    m = harden.load(tmp_path / "vit.pt", arch=arch, model_args={"img_size": size})
    assert m.spec.input_size == (size, size) and m.config_sources["input_size"] == "--model-arg img_size"
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(m.net(x), net(x), atol=1e-5)
    # a backbone whose config names no class count (DINOv2), fine-tuned with a head: the head says it
    dino = "vit_small_patch14_dinov2.lvd142m"
    assert not timm.models.get_pretrained_cfg(dino).num_classes
    torch.save(timm.create_model(dino, num_classes=4, img_size=28).state_dict(), tmp_path / "dino.pt")
    d = harden.load(tmp_path / "dino.pt", arch=dino, model_args={"img_size": 28})
    assert d.spec.num_classes == 4 and d.spec.input_size == (28, 28)
    with pytest.raises(HardenError, match="cannot run on a batch of 2 x 3 x 160 x 160"):  # timm's strict assert
        harden.load(tmp_path / "vit.pt", arch=arch, num_classes=3, input_size=(160, 160),
                    model_args={"img_size": size, "dynamic_img_size": False})


def test_a_vit_is_trained_at_the_size_its_images_are_read_at(tmp_path, cli):
    """`harden train --arch <timm ViT> --input-size 32`: timm's ViTs run at the size they are built for only, so the
    new network is built with img_size (kept in its metadata: eval and fix rebuild it with no flag); a network that
    cannot run on the images at all (a 16-pixel patch on 8x8 digits) is said as that, with the ways out."""
    import timm
    arch = "test_vit.r160_in1k"
    size = 2 * timm.create_model(arch).patch_embed.patch_size[0]
    make_tree(tmp_path / "tree", ["a", "b"], 4, sizes=(40, 60))
    out = tmp_path / "vit.safetensors"
    code, _, err = cli("train", "--data", tmp_path / "tree", "--arch", arch, "--input-size", size, "--epochs", 1,
                       "-o", out, "-q")
    assert code == 0, err
    model = harden.load(out)
    assert model.spec.input_size == (size, size) and model.spec.model_args == {"img_size": [size, size]}
    code, _, err = cli("eval", out, "--data", tmp_path / "tree", "--attack", "fgsm", "--no-metrics",
                       "--no-masking-checks", "-q")
    assert code == 0, err
    code, _, err = cli("train", "--data", "digits", "--arch", arch, "--epochs", 1, "-o", tmp_path / "d.safetensors")
    said = " ".join(err.split())
    assert code == 2 and f"{arch}, built for the 1 x 8 x 8 images of digits, cannot run on them" in said, said
    assert "give it image files, read at --input-size" in said and "plain state dict" not in said


def test_training_decodes_camera_jpegs_at_a_reduced_scale_that_still_spans_the_smallest_crop(tmp_path):
    """A 12 MP photo decoded for a 32 px model's random crops: the JPEG decoder's own scaling keeps both sides at
    least as long as the smallest crop needs (8% of the area at aspect 3/4 must still span 32 px), and the batch
    comes out at the model's size; evaluation decodes every pixel, as timm does."""
    from harden.data.loader import decode_batches
    from harden.data.sources import list_class_folders
    rng = np.random.default_rng(0)
    (tmp_path / "d" / "c").mkdir(parents=True)
    Image.fromarray(photo(rng, 300, 400)).resize((4000, 3000)).save(tmp_path / "d" / "c" / "big.jpg", quality=90)
    Image.fromarray(photo(rng, 30, 40)).save(tmp_path / "d" / "c" / "small.png")
    pre = Preprocess(3, (32, 32))
    train, evaluate = pre.train_transform(), pre.eval_transform()
    assert train.draft_side == 131 and evaluate.draft_side is None
    for tf, size in ((train, (500, 375)), (evaluate, (4000, 3000))):  # 1/8, the decoder's largest reduction
        with Image.open(tmp_path / "d" / "c" / "big.jpg") as img:
            tf.draft(img)
            img.load()
            assert img.size == size
    with Image.open(tmp_path / "d" / "c" / "big.jpg") as img:  # a larger model: a smaller reduction
        Preprocess(3, (224, 224)).train_transform().draft(img)
        img.load()
        assert img.size == (2000, 1500) and min(img.size) >= 915
    listing = list_class_folders(tmp_path / "d")
    (x, y, got, errors, oriented), = decode_batches(listing, [np.arange(2)], train, 0, False, seed=1)
    assert x.shape == (2, 3, 32, 32) and not errors and oriented == 0


def test_what_tools_leave_in_photo_trees_is_neither_a_class_nor_an_image(tmp_path):
    """A tree unzipped on macOS (__MACOSX/ with ._ resource forks beside the classes), a Synology NAS's @eaDir
    thumbnail folders inside each class, hidden folders and files: none is a class or an image, for labelled folders
    and unlabeled pools alike. A link back up the tree is walked once, not forever."""
    from harden.data.unlabeled import load_unlabeled
    rng = np.random.default_rng(1)
    root = tmp_path / "photos"

    def jpeg(path: Path, side: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(rng, side, side)).save(path)

    for c in ("cat", "dog"):
        for i in range(2):
            jpeg(root / c / f"{i}.jpg", 20)
        jpeg(root / c / "@eaDir" / "0.jpg" / "SYNOPHOTO_THUMB_M.jpg", 8)
        jpeg(root / c / ".thumbnails" / "t.jpg", 8)
        (root / c / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    jpeg(root / "__MACOSX" / "cat" / "1.jpg", 8)
    (root / "dog" / "again").symlink_to(root / "dog")  # a link to a folder above: os.walk would never end
    (root / "cat" / "up").symlink_to(root)  # above the class: every other class's images would be cats
    (root / "cat" / "dogs").symlink_to(root / "dog")  # into another class
    outside = tmp_path / "elsewhere" / "more"
    jpeg(outside / "5.jpg", 20)
    (root / "dog" / "nas").symlink_to(outside)  # to images kept elsewhere: followed
    data = load_data(root, DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    listing = data.listing("test")
    assert data.class_names == ["cat", "dog"] and len(listing) == 5
    where = [os.path.relpath(listing.location(i), root) for i in range(5)]
    assert sorted(zip(where, listing.labels.tolist(), strict=True)) == [
        ("cat/0.jpg", 0), ("cat/1.jpg", 0), ("dog/0.jpg", 1), ("dog/1.jpg", 1), ("dog/nas/5.jpg", 1)]
    (root / "dog" / "nas").unlink()
    assert all("@eaDir" not in listing.location(i) and "thumb" not in listing.location(i) for i in range(4))
    pool = load_unlabeled(root, DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert len(pool.listing("train")) == 4


def test_every_format_pillow_decodes_is_listed_and_read(tmp_path):
    """AVIF, JPEG 2000, TGA, .jfif, .pnm, a phone's HEIC ...: listed as images of their class and decoded (at the
    model's own size, so no resize): lossless formats give the saved pixels exactly, lossy ones pixels close to them."""
    rng = np.random.default_rng(5)
    formats = {".avif": "AVIF", ".jp2": "JPEG2000", ".tga": "TGA", ".jfif": "JPEG", ".pnm": "PPM", ".apng": "PNG",
               ".heic": "HEIF"}
    saved = {}
    for k, (ext, fmt) in enumerate(formats.items()):
        d = tmp_path / "eval" / f"c{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        saved[f"img{k}{ext}"] = a = photo(rng, 24, 24)
        Image.fromarray(a).save(d / f"img{k}{ext}", fmt)
    data = load_data(tmp_path / "eval", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    listing = data.listing("test")
    assert len(listing) == len(formats)
    x, _ = data.images("test", np.arange(len(listing)))
    for i in range(len(listing)):
        name = os.path.basename(listing.location(i))
        diff = (x[i] * 255 - torch.from_numpy(saved[name]).permute(2, 0, 1).float()).abs()
        lossless = name.endswith((".tga", ".pnm", ".apng"))
        assert (diff.max() < 0.01) if lossless else (diff.mean() < 12), (name, float(diff.max()), float(diff.mean()))


def test_inputs_equal_timms_pipeline_for_real_world_images(tmp_path):
    """Every image of a folder of mixed sizes and modes: harden's input equals timm's
    create_transform(**resolve_data_config(model=...)) before normalisation within 1e-6, and the logits agree.
    16-bit PNGs are the one deliberate difference: timm's convert('RGB') clips every value above 255 to white,
    harden scales 0-65535 to 0-255 (test_every_mode_becomes_the_models_channels)."""
    from timm.data import create_transform, resolve_data_config
    make_tree(tmp_path / "photos", ["0", "1"], 6, seed=3, splits=("",), sizes=(30, 260))
    for arch in ("test_vit.r160_in1k", "test_resnet.r160_in1k"):
        folder, net = hub_folder(tmp_path, arch)
        model = harden.load(folder).eval()
        data = load_data(tmp_path / "photos", DataTarget.for_model(model, workers=0))
        x, _ = data.images("test", np.arange(data.n_test))
        cfg = resolve_data_config(model=net)
        tf = create_transform(**cfg)
        norm = tf.transforms[-1]
        assert type(norm).__name__ == "Normalize"
        listing = data.listing("test")
        modes = [Image.open(listing.location(i)).mode for i in range(len(listing))]
        assert set(modes) == set(MODES)
        same = [i for i, m in enumerate(modes) if m != "I;16"]
        ref = torch.stack([tf(Image.open(listing.location(i)).convert("RGB")) for i in same])
        mean, std = torch.tensor(cfg["mean"])[:, None, None], torch.tensor(cfg["std"])[:, None, None]
        assert (x[same] - (ref * std + mean)).abs().max() < 1e-6
        with torch.no_grad():
            assert torch.allclose(model(x[same]), net.eval()(ref), atol=1e-4, rtol=1e-4)


def test_every_mode_becomes_the_models_channels():
    rgb = photo(np.random.default_rng(0), 20, 30)
    grey16 = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert np.asarray(to_channels(grey16, 1)).max() == 255  # PIL alone would clip every 16-bit value to 255 ... or 0
    assert to_channels(Image.fromarray(rgb).convert("CMYK"), 3).mode == "RGB"
    assert to_channels(Image.fromarray(rgb).convert("RGBA"), 1).mode == "L"
    half = Image.fromarray(np.full((4, 4), 32896, np.uint16))  # 128 * 257
    assert np.asarray(to_channels(half, 3))[0, 0].tolist() == [128, 128, 128]


# ------------------------------------------------------------------ lazy listings and decoding

@pytest.fixture
def recorder(monkeypatch):
    """Which split folders were listed and which files were decoded (decoding in this process: workers=0)."""
    seen = {"listed": [], "decoded": []}
    original_list, original_read = sources_mod.list_class_folders, sources_mod.Listing.read_bytes

    def listed(split_dir):
        seen["listed"].append(os.path.basename(str(split_dir)))
        return original_list(split_dir)

    def read(self, i):
        seen["decoded"].append(self.location(i))
        return original_read(self, i)
    monkeypatch.setattr(sources_mod, "list_class_folders", listed)
    monkeypatch.setattr(sources_mod.Listing, "read_bytes", read)
    return seen


def small_cnn(num_classes=3):
    return harden.create_model("cnn-small", num_classes, 3, (24, 24), (0.5,), (0.25,))


def test_eval_lists_only_the_test_split_and_decodes_only_its_sample(tmp_path, recorder):
    make_tree(tmp_path, ["c0", "c1", "c2"], 8, sizes=(20, 40))
    model = small_cnn()
    data = load_data(tmp_path, DataTarget.for_model(model, workers=0))
    rep = harden.evaluate(model, data, attacks=["fgsm"], n=6, metrics=False, masking_checks=False, device="cpu")
    assert recorder["listed"] == ["val"]  # the training split is never listed
    # each of the six read twice: decoded, and its bytes digested (images_bytes_sha256: a baseline's pairing)
    assert len(set(recorder["decoded"])) == 6 and len(recorder["decoded"]) == 12
    assert all("/val/" in p for p in recorder["decoded"])
    classes = {p.split("/val/")[1].split("/")[0] for p in recorder["decoded"]}
    assert classes == {"c0", "c1", "c2"}  # stratified: not the first six files (one class)
    again = harden.evaluate(model, data, attacks=["fgsm"], n=6, metrics=False, masking_checks=False, device="cpu")
    assert rep.data_details["images_sha256"] == again.data_details["images_sha256"]
    other = harden.evaluate(model, data, attacks=["fgsm"], n=6, metrics=False, masking_checks=False, device="cpu",
                            seed=1)
    assert other.data_details["images_sha256"] != rep.data_details["images_sha256"]


def test_an_evaluation_folder_left_unread_is_said_with_the_way_to_read_it(tmp_path):
    """train/, valid/ and test/ (as Roboflow and Kaggle export them): test/ is evaluated, and valid/ was passed over
    without a word. It is said once, naming the folder read and the --data that reads the other."""
    from harden.runtime import console
    make_tree(tmp_path / "ds", ["cat", "dog"], 3, splits=("train", "valid", "test"), sizes=(20, 30))
    with console.capture() as said:
        data = load_data(tmp_path / "ds", DataTarget(workers=0))
        load_data(tmp_path / "ds", DataTarget(workers=0))
    said = " ".join(said.get().split())
    assert said.count("valid/ beside train/ and test/ is not read") == 1, said
    # the console wraps a long temporary path anywhere, a space then falling inside it: compared without spaces
    assert f"--data{tmp_path / 'ds' / 'valid'}evaluatesonvalid/instead" in said.replace(" ", "")
    test = data.listing("test")
    assert Path(test.root).name == "test" and len(test) == 6
    make_tree(tmp_path / "two", ["cat", "dog"], 3, splits=("train", "test"), sizes=(20, 30))
    with console.capture() as said:
        load_data(tmp_path / "two", DataTarget(workers=0))
    assert "not read" not in said.get()


def test_fix_decodes_only_the_files_of_its_subset(tmp_path, recorder):
    make_tree(tmp_path, ["c0", "c1", "c2"], 20, sizes=(20, 40))
    model = small_cnn()
    base = tmp_path / "base.safetensors"
    harden.save(model, base)
    result = harden.fix(base, str(tmp_path), sets=["val_frac=0", "attack=fgsm-rs"], data_frac=0.1, epochs=2,
                        batch_size=3, device="cpu", report=False, data_target={"workers": 0})
    assert result.model.spec.extra["subset"]["n"] == 6
    assert "val" not in recorder["listed"]  # nor listed: the report was off
    decoded = set(recorder["decoded"])
    # the six subset files: once for the checks before training (--no-report: on the training images), once per epoch
    assert len(decoded) == 6 and len(recorder["decoded"]) == 18
    assert all("/train/" in p for p in decoded)


def test_a_model_hardened_on_a_folder_keeps_its_class_names(tmp_path):
    """The folder's class names are the hardened model's label names (a base that named none): a later folder of some
    of the classes maps onto their outputs by name, where the base's would be refused (2 classes for 3 outputs), and a
    stray folder is named rather than sorted in among them (shifting the classes after it)."""
    make_tree(tmp_path / "all", ["ant", "bee", "cat"], 6, sizes=(20, 40))
    base = harden.save(small_cnn(), tmp_path / "base.safetensors")
    result = harden.fix(base, str(tmp_path / "all"), sets=["val_frac=0", "attack=fgsm-rs"], data_frac=0.5, epochs=1,
                        device="cpu", report=False, data_target={"workers": 0})
    hardened = harden.load(harden.save(result.model, tmp_path / "hardened.safetensors"))
    assert hardened.spec.extra["label_names"] == ["ant", "bee", "cat"]
    make_tree(tmp_path / "some", ["bee", "cat"], 3, splits=("val",), sizes=(20, 40))
    data = load_data(tmp_path / "some", DataTarget.for_model(hardened, workers=0))
    assert sorted(set(data.y_test.tolist())) == [1, 2] and "label names" in data.class_note
    with pytest.raises(HardenError, match="cannot be matched"):
        load_data(tmp_path / "some", DataTarget.for_model(harden.load(base), workers=0))
    make_tree(tmp_path / "more", ["ant", "bee", "cat", "eel"], 2, splits=("val",), sizes=(20, 40))
    with pytest.raises(HardenError, match="eel is not among the model's label names"):
        load_data(tmp_path / "more", DataTarget.for_model(hardened, workers=0))


def test_same_seed_and_workers_give_the_same_batches(tmp_path):
    make_tree(tmp_path, ["c0", "c1"], 4, sizes=(90, 140))
    pre = Preprocess(3, (80, 80), "bilinear", 0.9, "center")  # large enough for random resized crops
    batches = [np.array([0, 3, 5]), np.array([1, 2, 4, 6, 7])]

    def run(workers, seed):
        data = load_data(tmp_path, DataTarget(pre, 2, workers=workers))
        feeder = data.feeder("flip-crop", seed, torch.device("cpu"))
        return [torch.cat([x for x, _ in feeder.epoch(batches, e)]) for e in (1, 2)]  # two epochs
    a, b, c = run(0, 7), run(2, 7), run(0, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # any worker count: the same crops
    assert not torch.equal(a[0], a[1])  # a new epoch, new crops
    assert not torch.equal(a[0], c[0])  # another seed, other crops


def test_eval_decode_gives_every_worker_tasks(tmp_path, monkeypatch):
    from harden.data import files
    assert files.decode_batch(512, 16) * 32 <= 512  # 16 workers: 32 tasks, where tasks of 64 made 8
    assert files.decode_batch(10_000, 16) == files.DECODE_BATCH and files.decode_batch(512, 0) == files.DECODE_BATCH
    make_tree(tmp_path, ["c0", "c1"], 10, splits=("val",), sizes=(20, 40))
    pre = Preprocess(3, (16, 16), "bilinear", 1.0, "center")
    tasks = []
    real = files.decode_batches
    monkeypatch.setattr(files, "decode_batches", lambda listing, parts, *a, **k: tasks.append(len(parts)) or
                        real(listing, parts, *a, **k))
    x2, y2 = load_data(tmp_path, DataTarget(pre, 2, workers=2)).images("test", np.arange(20))
    x0, y0 = load_data(tmp_path, DataTarget(pre, 2, workers=0)).images("test", np.arange(20))
    assert tasks == [3, 1]  # two workers: tasks of 8; none: one of 64
    assert torch.equal(x2, x0) and torch.equal(y2, y0)  # the same pixels, in the same order


# ------------------------------------------------------------------ classes

def test_synset_folders_map_to_the_models_indices(tmp_path):
    make_tree(tmp_path / "full", SYNSETS, 1, splits=("",), sizes=(40, 60))
    part = tmp_path / "part"
    part.mkdir()
    for s in SYNSETS[2:]:  # ten of the twelve: the indices stay the model's, not 0-9
        os.symlink(tmp_path / "full" / s, part / s)
    model = harden.create_model("cnn-small", 1000, 3, (32, 32), (0.5,), (0.25,))
    full = load_data(tmp_path / "full", DataTarget.for_model(model, workers=0))
    ten = load_data(part, DataTarget.for_model(model, workers=0))
    assert full.y_test.tolist() == list(range(12)) and ten.y_test.tolist() == list(range(2, 12))
    xf, _ = full.images("test", np.arange(2, 12))
    xt, _ = ten.images("test", np.arange(10))
    with torch.no_grad():
        assert torch.equal(model(xf).argmax(1), model(xt).argmax(1)) and torch.equal(xf, xt)
    with pytest.raises(HardenError, match="n99999999"):  # a synset the model's subset lacks
        (tmp_path / "full" / "n99999999").mkdir()
        load_data(tmp_path / "full", DataTarget.for_model(model, workers=0))


def test_imagenet_class_names_as_people_write_them_map_to_the_models_indices():
    """Imagenette's folders and Hugging Face's ImageNet name classes in words ("tench", "English springer", or the
    whole description): ImageNet's own indices for an ImageNet-sized head; a word naming two classes is said."""
    from harden.data.classes import map_classes
    imagenette = ["tench", "English springer", "cassette player", "chain saw", "church", "French horn",
                  "garbage truck", "gas pump", "golf ball", "parachute"]
    mapping, how = map_classes(imagenette, 1000)
    assert [mapping[n] for n in imagenette] == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    assert "ImageNet class names" in how
    assert map_classes(["tench, Tinca tinca", "goldfish, Carassius auratus"], 1000)[0] == {
        "tench, Tinca tinca": 0, "goldfish, Carassius auratus": 1}
    with pytest.raises(HardenError, match="crane: names two ImageNet classes"):
        map_classes(["crane", "tench"], 1000)
    assert map_classes(["tench", "goldfish"], 2)[0] == {"goldfish": 0, "tench": 1}  # not an ImageNet head: sorted


def test_folders_named_by_a_synset_and_a_name_map_by_the_synset():
    """Stanford Dogs' `n02085620-Chihuahua`, `n01440764_tench`: an ImageNet head's indices by the synset before the
    name; any other head, sorted as before."""
    from harden.data.classes import map_classes
    dogs = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n01440764_tench"]
    assert map_classes(dogs, 1000)[0] == {"n02085620-Chihuahua": 151, "n02085782-Japanese_spaniel": 152,
                                          "n01440764_tench": 0}
    assert map_classes(dogs, 3)[0] == {"n01440764_tench": 0, "n02085620-Chihuahua": 1, "n02085782-Japanese_spaniel": 2}


def test_a_head_of_1001_has_tensorflows_background_class_first():
    """TensorFlow's slim models put "background" at index 0 and ImageNet's 1000 classes after it: synset folders and
    class names map one index on, and the mapping says why."""
    from harden.data.classes import map_classes
    mapping, how = map_classes(["n01440764", "n01443537", "n15075141"], 1001)
    assert mapping == {"n01440764": 1, "n01443537": 2, "n15075141": 1000} and "background" in how
    assert map_classes(["tench", "English springer"], 1001)[0] == {"tench": 1, "English springer": 218}
    assert "background" not in map_classes(["n01440764"], 1000)[1]


def test_a_renamed_or_stray_folder_among_the_models_label_names_is_refused():
    """Folders that mostly carry the model's label names, one renamed (kitty for cat) or stray (an empty folder): the
    sorted order would put dog on cat's index and each class after the rename on its neighbour's, so it is refused
    naming the folder; all of them named (in any case and spacing), or none (indices, another naming), map by name or
    as before."""
    from harden.data.classes import map_classes
    names = ["bird", "cat", "dog", "fish", "frog"]
    for found in (["bird", "dog", "fish", "frog", "kitty"], ["bird", "cat", "dog", "empty", "fish", "frog"]):
        with pytest.raises(HardenError, match="not among the model's label names") as e:
            map_classes(found, 5, names, source="photos")
        assert ("kitty" if "kitty" in found else "empty") in str(e.value) and "--class-map" in str(e.value)
    assert map_classes(["dog", "bird"], 5, names)[0] == {"dog": 2, "bird": 0}
    # in another case or spacing (Bird, CAT; golden_retriever for "golden retriever"): still by name
    assert map_classes(["Bird", "CAT", "Dog", "fish", "Frog"], 5, names)[0] == {"Bird": 0, "CAT": 1, "Dog": 2,
                                                                                "fish": 3, "Frog": 4}
    assert map_classes(["Golden_Retriever"], 2, ["tabby", "golden retriever"])[0] == {"Golden_Retriever": 1}
    import unicodedata
    mac = unicodedata.normalize("NFD", "café")  # a folder copied from a Mac: the accent as a combining character
    assert mac != "café" and map_classes([mac, "thé"], 2, ["thé", "café"])[0] == {mac: 1, "thé": 0}
    with pytest.raises(HardenError, match="Kitty is not among"):
        map_classes(["Bird", "Kitty", "dog", "fish", "frog"], 5, names)
    assert map_classes(["a", "b", "c", "d", "e"], 5, names)[0]["c"] == 2  # no label name at all: sorted, as before


def test_unmatched_classes_and_class_map(tmp_path):
    make_tree(tmp_path, ["cat", "dog", "eel"], 2, splits=("",), sizes=(20, 30))
    model = harden.create_model("cnn-small", 10, 3, (16, 16), (0.5,), (0.25,))
    with pytest.raises(HardenError, match="--class-map") as e:
        load_data(tmp_path, DataTarget.for_model(model))
    assert "cat, dog, eel" in str(e.value)
    (tmp_path / "map.json").write_text(json.dumps({"cat": 3, "dog": 5, "eel": 7}))
    d = load_data(tmp_path, DataTarget.for_model(model, class_map=str(tmp_path / "map.json")))
    assert sorted(set(d.y_test.tolist())) == [3, 5, 7]
    (tmp_path / "short.csv").write_text("cat,3\ndog,5\n")
    with pytest.raises(HardenError, match="eel"):
        load_data(tmp_path, DataTarget.for_model(model, class_map=str(tmp_path / "short.csv")))
    (tmp_path / "far.json").write_text(json.dumps({"cat": 3, "dog": 5, "eel": 12}))
    with pytest.raises(HardenError, match="beyond"):
        load_data(tmp_path, DataTarget.for_model(model, class_map=str(tmp_path / "far.json")))
    with pytest.raises(HardenError, match="arrays labelled with class indices"):  # not silently left unused
        load_data("digits", DataTarget.for_model(model, class_map=str(tmp_path / "map.json")))
    # Keras' imagenet_class_index.json ({index: [synset, name]}: a name two classes share names neither) and a JSON
    # list of names in index order
    (tmp_path / "keras.json").write_text(json.dumps({"2": ["n1", "cat"], "4": ["n2", "dog"], "6": ["n3", "eel"],
                                                     "8": ["n4", "dog"]}))
    from harden.data.classes import read_class_map
    assert read_class_map(tmp_path / "keras.json") == {"n1": 2, "cat": 2, "n2": 4, "n3": 6, "eel": 6, "n4": 8}
    (tmp_path / "synset_words.txt").write_text("n00000001 cat, Felis\nn00000002 dog\nn00000003 eel, dog\n")
    assert read_class_map(tmp_path / "synset_words.txt") == {
        "n00000001": 0, "cat": 0, "cat, Felis": 0, "Felis": 0, "n00000002": 1, "n00000003": 2, "eel": 2, "eel, dog": 2}
    (tmp_path / "classes.txt").write_text("x\ncat\ndog\n\neel\n")
    d = load_data(tmp_path, DataTarget.for_model(model, class_map=str(tmp_path / "classes.txt")))
    assert sorted(set(d.y_test.tolist())) == [1, 2, 3]
    (tmp_path / "index_to_name.json").write_text(json.dumps({"1": "cat", "2": "dog", "3": "eel", "0": "x"}))
    assert read_class_map(tmp_path / "index_to_name.json") == {"x": 0, "cat": 1, "dog": 2, "eel": 3}
    (tmp_path / "names.json").write_text(json.dumps(["x", "cat", "dog", "eel"]))
    d = load_data(tmp_path, DataTarget.for_model(model, class_map=str(tmp_path / "names.json")))
    assert sorted(set(d.y_test.tolist())) == [1, 2, 3]


# ------------------------------------------------------------------ lists and tar shards

def test_csv_list_with_and_without_split_column(tmp_path):
    files = make_tree(tmp_path / "img", ["a", "b"], 10, splits=("",), sizes=(20, 30))
    rows = [(os.path.relpath(f, tmp_path), 1 if "/b/" in f else 0) for f in files]
    (tmp_path / "files.csv").write_text("path,label\n" + "".join(f"{p},{y}\n" for p, y in rows))
    model = small_cnn(num_classes=7)
    d = load_data(tmp_path / "files.csv", DataTarget.for_model(model, workers=0))
    assert d.n_test == 20 and not d.has_split("train")
    held = d.with_held_out_test()
    assert held.n_test == 4 and held.n_train == 16 and held.held_out["n"] == 4
    train_files = {held.listing("train").location(i) for i in range(16)}
    assert not train_files & {held.listing("test").location(i) for i in range(4)}
    (tmp_path / "split.tsv").write_text("".join(f"{p}\t{y}\t{'train' if i % 4 else 'val'}\n"
                                                for i, (p, y) in enumerate(rows)))
    s = load_data(tmp_path / "split.tsv", DataTarget.for_model(model, workers=0))
    assert s.n_train == 15 and s.n_test == 5
    (tmp_path / "fastai.csv").write_text("path,label,is_valid\n" + "".join(  # fastai's ColSplitter column
        f"{p},{y},{'True' if i % 4 == 0 else 'False'}\n" for i, (p, y) in enumerate(rows)))
    fa = load_data(tmp_path / "fastai.csv", DataTarget.for_model(model, workers=0))
    assert (fa.n_train, fa.n_test) == (15, 5)
    (tmp_path / "excel.csv").write_text("path;label\n" + "".join(f"{p};{y}\n" for p, y in rows))  # Excel's ';'
    assert load_data(tmp_path / "excel.csv", DataTarget.for_model(model, workers=0)).n_test == 20
    (tmp_path / "words.csv").write_text("path,label,split\n" + "".join(  # the other words lists use
        f"{p},{y},{'trainval' if i % 4 else 'testing'}\n" for i, (p, y) in enumerate(rows)))
    w = load_data(tmp_path / "words.csv", DataTarget.for_model(model, workers=0))
    assert (w.n_train, w.n_test) == (15, 5)
    # a header in the words a Kaggle export uses, columns in another order, one ignored
    (tmp_path / "kaggle.csv").write_text("Class ID,Image Path,Fold\n" + "".join(f"{y},{p},{i % 5}\n"
                                                                             for i, (p, y) in enumerate(rows)))
    k = load_data(tmp_path / "kaggle.csv", DataTarget.for_model(model, workers=0))
    assert k.n_test == 20 and list(k.listing("test").labels) == [y for _, y in rows]
    # labels as a float column (pandas writes 1.0 where an integer column had a gap)
    (tmp_path / "floats.csv").write_text("path,label\n" + "".join(f"{p},{float(y)}\n" for p, y in rows))
    f = load_data(tmp_path / "floats.csv", DataTarget.for_model(model, workers=0))
    assert list(f.listing("test").labels) == [y for _, y in rows]
    for gap in ("", "nan"):  # a row without a label is named, not a class called "" or "nan"
        (tmp_path / "gap.csv").write_text(f"path,label\n{rows[0][0]},0\n{rows[1][0]},{gap}\n")
        with pytest.raises(HardenError, match="1 image.s. have no label .first: .*img"):
            load_data(tmp_path / "gap.csv", DataTarget.for_model(model))
        from harden.data.unlabeled import load_unlabeled  # as a pool, such a list is fine
        assert len(load_unlabeled(tmp_path / "gap.csv", DataTarget.for_model(model, workers=0)).listing("train")) == 2
    # written on Windows: backslashes between folders
    (tmp_path / "windows.csv").write_text("path,label\r\n" + "".join(f"{p.replace('/', chr(92))},{y}\r\n"
                                                                   for p, y in rows))
    w = load_data(tmp_path / "windows.csv", DataTarget.for_model(model, workers=0))
    assert w.n_test == 20 and w.images("test", np.arange(20))[0].shape[0] == 20
    (tmp_path / "missing.csv").write_text("img/a/nope.jpg,0\n")
    with pytest.raises(HardenError, match="nope.jpg"):
        load_data(tmp_path / "missing.csv", DataTarget.for_model(model))
    (tmp_path / "big.csv").write_text(f"{rows[0][0]},9\n")
    with pytest.raises(HardenError, match="only 7 classes") as e:
        load_data(tmp_path / "big.csv", DataTarget.for_model(model)).listing("test")
    assert "from 1" not in str(e.value)
    (tmp_path / "from_one.csv").write_text(f"{rows[0][0]},1\n{rows[1][0]},7\n")  # classes numbered 1 to 7
    with pytest.raises(HardenError, match="run from 1 to 7.*subtract 1"):
        load_data(tmp_path / "from_one.csv", DataTarget.for_model(model)).listing("test")


def test_kaggle_lists_of_ids_find_their_images_beside_them(tmp_path):
    """Kaggle's `labels.csv` of `id,breed` with the images in train/ as `<id>.jpg`, and `train.csv` of
    `image_id,label` with the images in train_images/: read as the lists say, the other column of two the label."""
    files = make_tree(tmp_path / "src", ["husky", "pug"], 3, splits=("",), sizes=(20, 30))
    (tmp_path / "train").mkdir()
    (tmp_path / "train_images").mkdir()
    rows = []
    for i, f in enumerate(sorted(files)):
        ext = os.path.splitext(f)[1]
        os.link(f, tmp_path / "train" / f"dog{i:03d}{ext}")
        os.link(f, tmp_path / "train_images" / f"{i}{ext}")
        rows.append((f"dog{i:03d}", f"{i}{ext}", "pug" if "/pug/" in f else "husky"))
    (tmp_path / "labels.csv").write_text("id,breed\n" + "".join(f"{a},{y}\n" for a, _, y in rows))
    (tmp_path / "train.csv").write_text("image_id,label\n" + "".join(f"{b},{int(y == 'pug')}\n" for _, b, y in rows))
    model = small_cnn(num_classes=2)
    by_id = load_data(tmp_path / "labels.csv", DataTarget.for_model(model, workers=0))
    by_name = load_data(tmp_path / "train.csv", DataTarget.for_model(model, workers=0))
    assert by_id.class_names == ["husky", "pug"] and by_id.y_test.tolist() == by_name.y_test.tolist()
    assert by_id.listing("test").location(0) == str(tmp_path / "train" / f"dog000{os.path.splitext(sorted(files)[0])[1]}")
    x1, _ = by_id.images("test", np.arange(6))
    assert torch.equal(x1, by_name.images("test", np.arange(6))[0])
    (tmp_path / "gone.csv").write_text("id,breed\nnobody,pug\n")
    with pytest.raises(HardenError, match="do not exist: nobody"):
        load_data(tmp_path / "gone.csv", DataTarget.for_model(model))
    (tmp_path / "urls.csv").write_text("url,label\nhttps://example.org/a.jpg,pug\n")
    with pytest.raises(HardenError, match="names URLs .*downloads nothing"):
        load_data(tmp_path / "urls.csv", DataTarget.for_model(model))
    # HAM10000's metadata: more columns than two, the label in `dx`; a label column of no known name is asked for
    meta = "lesion_id,image_id,dx,dx_type,age\n" + "".join(f"L{a},{a},{y},histo,40\n" for a, _, y in rows)
    (tmp_path / "HAM10000_metadata.csv").write_text(meta)
    ham = load_data(tmp_path / "HAM10000_metadata.csv", DataTarget.for_model(model, workers=0))
    assert ham.class_names == ["husky", "pug"] and ham.y_test.tolist() == by_id.y_test.tolist()
    (tmp_path / "odd.csv").write_text(meta.replace(",dx,", ",diag,", 1))
    with pytest.raises(HardenError, match="names no label column.*the labels with --label-column NAME"):
        load_data(tmp_path / "odd.csv", DataTarget.for_model(model))
    # APTOS' `id_code,diagnosis`: no column named as paths are; the one whose values name image files holds them
    (tmp_path / "aptos.csv").write_text("id_code,diagnosis\n" + "".join(f"{a},{int(y == 'pug')}\n" for a, _, y in rows))
    aptos = load_data(tmp_path / "aptos.csv", DataTarget.for_model(model, workers=0))
    assert aptos.listing("test").location(0) == by_id.listing("test").location(0)
    assert aptos.y_test.tolist() == by_id.y_test.tolist()
    (tmp_path / "nowhere.csv").write_text("id_code,diagnosis\n" + "".join(f"x{a},1\n" for a, _, _ in rows))
    with pytest.raises(HardenError, match="names no path column"):  # values that name no file: still asked for
        load_data(tmp_path / "nowhere.csv", DataTarget.for_model(model))


def test_a_folder_of_one_image_folder_and_its_list_is_read_along_the_list(tmp_path):
    """A Kaggle download given by its folder: images/ of loose files beside train.csv (and an unlabelled test.csv, a
    sample_submission.csv): read along train.csv, not as one class named `images` (which then asked for a class map);
    two lists that both label the images are the user's choice, named."""
    files = make_tree(tmp_path / "src", ["husky", "pug"], 3, splits=("",), sizes=(20, 30))
    root = tmp_path / "dogs"
    (root / "images").mkdir(parents=True)
    rows = []
    for i, f in enumerate(sorted(files)):
        os.link(f, root / "images" / f"{i}{os.path.splitext(f)[1]}")
        rows.append((f"{i}{os.path.splitext(f)[1]}", "pug" if "/pug/" in f else "husky"))
    (root / "train.csv").write_text("image_id,label\n" + "".join(f"{a},{y}\n" for a, y in rows))
    (root / "test.csv").write_text("image_id\n0\n")
    (root / "sample_submission.csv").write_text("image_id,label\n0,pug\n")
    model = small_cnn(num_classes=2)
    data = load_data(root, DataTarget.for_model(model, workers=0))
    given = load_data(root / "train.csv", DataTarget.for_model(model, workers=0))
    assert data.class_names == ["husky", "pug"] and data.source == str(root / "train.csv")
    assert data.y_test.tolist() == given.y_test.tolist() and sorted(data.y_test.tolist()) == [0, 0, 0, 1, 1, 1]
    (root / "more.csv").write_text((root / "train.csv").read_text())
    with pytest.raises(HardenError, match="one folder of images \\(images/\\) and 2 lists.*more.csv, train.csv"):
        load_data(root, DataTarget.for_model(model))
    (root / "more.csv").unlink()
    (root / "train.csv").unlink()  # no list labels them: one class folder, which a model's several classes refuse
    assert load_data(root).class_names == ["images"]
    with pytest.raises(HardenError, match=r"holds one class \(images\) and the model has 2 outputs.*--labels predicted"):
        load_data(root, DataTarget.for_model(model))


def test_one_hot_label_columns_are_the_classes_in_their_order(tmp_path):
    """ISIC's ground truth (`image,MEL,NV,BCC,...` of 0.0/1.0, in a folder of its own beside ..._Input/ holding
    `<image>.jpg`): the one-hot columns are the classes, indexed in the header's order (as argmax of the row gave
    them in training), not sorted; a model with an output for a never-marked last column (ISIC 2019's UNK) and one
    without take the same indices; two marked classes in a row are a multi-label list, refused."""
    files = make_tree(tmp_path / "src", ["a", "b", "c"], 2, splits=("",), sizes=(20, 30))
    inputs, truth = tmp_path / "ISIC_Training_Input", tmp_path / "ISIC_Training_GroundTruth"
    inputs.mkdir()
    truth.mkdir()
    columns = ["NV", "MEL", "BCC", "UNK"]  # not sorted: NV is class 0
    rows = []
    for i, f in enumerate(sorted(files)):
        os.link(f, inputs / f"ISIC_{i:07d}{os.path.splitext(f)[1]}")
        rows.append((f"ISIC_{i:07d}", i % 3))
    text = "image," + ",".join(columns) + "\n" + "".join(
        f"{name}," + ",".join("1.0" if j == k else "0.0" for j in range(4)) + "\n" for name, k in rows)
    (truth / "ground_truth.csv").write_text(text)
    data = load_data(truth / "ground_truth.csv", DataTarget.for_model(small_cnn(num_classes=3), workers=0))
    assert data.class_names == ["NV", "MEL", "BCC"]
    assert sorted(data.y_test.tolist()) == sorted(k for _, k in rows)
    assert "one-hot columns" in data.class_note
    listing = data.listing("test")
    by_file = {os.path.basename(listing.location(i)).split(".")[0]: int(listing.labels[i]) for i in range(len(listing))}
    assert by_file == dict(rows)
    wider = load_data(truth / "ground_truth.csv", DataTarget.for_model(small_cnn(num_classes=4), workers=0))
    assert wider.listing("test").labels.tolist() == listing.labels.tolist()
    with pytest.raises(HardenError, match="holds the list ground_truth.csv.*give it as --data"):
        load_data(tmp_path, DataTarget.for_model(small_cnn(num_classes=3))).listing("test")
    (truth / "two.csv").write_text(text.replace("1.0,0.0,0.0,0.0", "1.0,1.0,0.0,0.0", 1))
    with pytest.raises(HardenError, match="row 1: the one-hot columns mark 2 classes \\(NV, MEL\\).*multi-label"):
        load_data(truth / "two.csv", DataTarget.for_model(small_cnn(num_classes=3)))


def test_levels_above_the_class_folders_are_not_read_as_classes(tmp_path):
    """ImageNet-C's `fog/1..5/n01440764/`: severities (or corruptions) above the synset folders are refused with the
    folder to give, where read as classes they would label each image with its level; numbered severities above
    any class folders too. Synsets grouped under coarse classes (dog/n02085620/) stay the coarse classes."""
    for sev in "123":
        for syn in ("n01440764", "n01443537"):
            make_tree(tmp_path / "ImageNet-C" / "fog" / sev, [syn], 1, splits=("",), sizes=(20, 24))
            make_tree(tmp_path / "levels" / sev, [syn.replace("n0", "cls")], 1, splits=("",), sizes=(20, 24))
    with pytest.raises(HardenError, match="synset folders below its top folders.*Give the folder that holds the "
                                          "synset folders as --data"):
        load_data(tmp_path / "ImageNet-C" / "fog").listing("test")
    with pytest.raises(HardenError, match="a level above the classes"):
        load_data(tmp_path / "ImageNet-C").listing("test")
    with pytest.raises(HardenError, match="numbered folders \\(1, 2, 3\\) each hold the same folders"):
        load_data(tmp_path / "levels").listing("test")
    assert len(load_data(tmp_path / "ImageNet-C" / "fog" / "2").listing("test")) == 2
    make_tree(tmp_path / "coarse" / "dog", ["n02085620", "n02085782"], 1, splits=("",), sizes=(20, 24))
    make_tree(tmp_path / "coarse" / "fish", ["n01440764"], 1, splits=("",), sizes=(20, 24))
    coarse = load_data(tmp_path / "coarse")
    assert coarse.class_names == ["dog", "fish"] and sorted(coarse.y_test.tolist()) == [0, 0, 1]


def test_text_lists_of_path_and_label_lines(tmp_path):
    """Caffe's `val.txt` of `name label` lines (images in a folder beside it), Places365's training list of
    `/a/airfield/00000001.jpg 0` (rooted paths, the images in data_256/ beside it): read as lists of class indices,
    the same images either way; as --unlabeled such a list is a labelled pool, not paths with a label in their name."""
    from harden.data.unlabeled import load_unlabeled
    files = sorted(make_tree(tmp_path / "src", ["a", "b"], 3, splits=("",), sizes=(20, 30)))
    (tmp_path / "val_256").mkdir()
    caffe, places = [], []
    for i, f in enumerate(files):
        ext = os.path.splitext(f)[1]
        os.link(f, tmp_path / "val_256" / f"val_{i:08d}{ext}")
        label = int("/b/" in f)
        (tmp_path / "data_256" / "x" / f"c{label}").mkdir(parents=True, exist_ok=True)
        os.link(f, tmp_path / "data_256" / "x" / f"c{label}" / f"{i:08d}{ext}")
        caffe.append(f"val_{i:08d}{ext} {label}")
        places.append(f"/x/c{label}/{i:08d}{ext} {label}")
    (tmp_path / "val.txt").write_text("\n".join(caffe) + "\n")
    (tmp_path / "places_train.txt").write_text("\n".join(places) + "\n")
    model = small_cnn(num_classes=2)
    by_caffe = load_data(tmp_path / "val.txt", DataTarget.for_model(model, workers=0))
    by_places = load_data(tmp_path / "places_train.txt", DataTarget.for_model(model, workers=0))
    assert by_caffe.y_test.tolist() == by_places.y_test.tolist() == [int("/b/" in f) for f in files]
    assert torch.equal(by_caffe.images("test", np.arange(6))[0], by_places.images("test", np.arange(6))[0])
    (tmp_path / "filelist").mkdir()  # torchvision's Places365: the lists in a folder beside data_256/
    (tmp_path / "filelist" / "places_train.txt").write_text("\n".join(places) + "\n")
    beside = load_data(tmp_path / "filelist" / "places_train.txt", DataTarget.for_model(model, workers=0))
    assert beside.listing("test").location(0) == by_places.listing("test").location(0)
    pool = load_unlabeled(tmp_path / "val.txt", DataTarget.for_model(model, workers=0))
    assert len(pool.listing("train" if pool.has_split("train") else "test")) == 6


def test_a_list_naming_a_file_twice_or_in_both_splits_says_so(tmp_path, capsys):
    """A list's repeated rows count as images (said), and a file in both its training and evaluation rows is a
    report on images trained on (said)."""
    files = sorted(make_tree(tmp_path / "img", ["a", "b"], 3, splits=("",), sizes=(20, 30)))
    rows = [(os.path.relpath(f, tmp_path), int("/b/" in f)) for f in files]
    lines = [f"{p},{y},train" for p, y in rows[:4]] + [f"{p},{y},test" for p, y in rows[3:]] + [f"{rows[5][0]},1,test"]
    (tmp_path / "list.csv").write_text("path,label,split\n" + "\n".join(lines) + "\n")
    load_data(tmp_path / "list.csv", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    err = " ".join(capsys.readouterr().err.split())
    assert "its test rows name 1 file(s) more than once" in err
    assert "1 file(s) are in both its training and its evaluation rows" in err


def test_a_competitions_unlabelled_test_folder_names_the_training_list(tmp_path):
    """A Kaggle competition: train/ labelled by train.csv, test/ with its labels withheld. The folder cannot be read
    as two splits; the error names the list to give, which reads."""
    files = sorted(make_tree(tmp_path / "src", ["cat", "dog"], 3, splits=("",), sizes=(20, 30)))
    (tmp_path / "comp" / "train").mkdir(parents=True)
    (tmp_path / "comp" / "test").mkdir()
    rows = []
    for i, f in enumerate(files):
        ext = os.path.splitext(f)[1]
        os.link(f, tmp_path / "comp" / "train" / f"{i}{ext}")
        os.link(f, tmp_path / "comp" / "test" / f"t{i}{ext}")
        rows.append(f"{i},{'dog' if '/dog/' in f else 'cat'}")
    (tmp_path / "comp" / "train.csv").write_text("id,label\n" + "\n".join(rows) + "\n")
    target = DataTarget.for_model(small_cnn(num_classes=2), workers=0)
    with pytest.raises(HardenError, match="competition's test set.*give --data .*train.csv"):
        load_data(tmp_path / "comp", target).listing("test")
    assert load_data(tmp_path / "comp" / "train.csv", target).n_test == 6


def test_training_and_testing_folders_are_the_splits(tmp_path):
    """Kaggle's mnist_png: training/ and testing/ of class folders are the two splits, not two classes."""
    files = make_tree(tmp_path / "src", ["0", "1"], 2, splits=("train", "val"), sizes=(20, 30))
    for f in files:
        rel = Path(f).relative_to(tmp_path / "src")
        dst = tmp_path / "mnist_png" / {"train": "training", "val": "testing"}[rel.parts[0]] / rel.parts[1]
        dst.mkdir(parents=True, exist_ok=True)
        os.link(f, dst / rel.name)
    data = load_data(tmp_path / "mnist_png", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert data.class_names == ["0", "1"] and (data.n_train, data.n_test) == (4, 4)


def test_split_folders_named_with_a_split_word_are_the_splits(tmp_path):
    """Kaggle's Intel image classification: seg_train/seg_train/<class>, seg_test/seg_test/<class> and an unlabeled
    seg_pred/ beside them: the two splits (they were read as three classes), the unlabeled folder left out. Class
    folders whose names hold such a word, holding images, stay classes."""
    files = make_tree(tmp_path / "src", ["forest", "sea"], 2, splits=("train", "val"), sizes=(20, 30))
    for f in files:
        rel = Path(f).relative_to(tmp_path / "src")
        word = {"train": "seg_train", "val": "seg_test"}[rel.parts[0]]
        dst = tmp_path / "intel" / word / word / rel.parts[1]
        dst.mkdir(parents=True, exist_ok=True)
        os.link(f, dst / rel.name)
    (tmp_path / "intel" / "seg_pred" / "seg_pred").mkdir(parents=True)
    os.link(files[0], tmp_path / "intel" / "seg_pred" / "seg_pred" / Path(files[0]).name)
    target = DataTarget.for_model(small_cnn(num_classes=2), workers=0)
    data = load_data(tmp_path / "intel", target)
    assert data.class_names == ["forest", "sea"] and (data.n_train, data.n_test) == (4, 4)
    for f in files[:4]:  # classes named with a split word, holding images: classes as before
        dst = tmp_path / "stations" / ("train_station" if "forest" in f else "test_site")
        dst.mkdir(parents=True, exist_ok=True)
        os.link(f, dst / Path(f).name)
    assert load_data(tmp_path / "stations", target).class_names == ["test_site", "train_station"]


def test_cub_200_2011_reads_its_published_split(tmp_path):
    """CUB-200-2011 as extracted: images/<class>/..., images.txt, image_class_labels.txt, train_test_split.txt (and
    attributes/, parts/ beside images/, which are not classes): train and test as the split file says."""
    root = tmp_path / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    rows = []
    for ci, c in enumerate(classes):
        (root / "images" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * ci + i, np.uint8)).save(root / "images" / c / f"b{i}.jpg")
            rows.append((len(rows) + 1, f"{c}/b{i}.jpg", ci + 1, int(i != 1)))
    (root / "images.txt").write_text("".join(f"{k} {p}\n" for k, p, _, _ in rows))
    (root / "image_class_labels.txt").write_text("".join(f"{k} {c}\n" for k, _, c, _ in rows))
    (root / "train_test_split.txt").write_text("".join(f"{k} {t}\n" for k, _, _, t in rows))
    (root / "attributes").mkdir()
    (root / "parts").mkdir()
    target = DataTarget.for_model(small_cnn(num_classes=3), workers=0)
    for given in (root, tmp_path):
        data = load_data(given, target)
        assert data.class_names == classes and (data.n_train, data.n_test) == (6, 3)
        test = data.listing("test")
        assert [os.path.relpath(test.location(i), root / "images") for i in range(3)] == [
            f"{c}/b1.jpg" for c in classes] and test.labels.tolist() == [0, 1, 2]


def test_kaggle_cifar10_ids_beside_their_split_folders(tmp_path):
    """Kaggle's CIFAR-10: train/1.png ... beside trainLabels.csv (id,label), and a val/ with valLabels.csv whose ids
    are the same numbers: each list finds its ids in its own folder, given as the root or as the list."""
    rng = np.random.default_rng(3)
    names = ["frog", "truck", "cat"]
    for split, n in (("train", 9), ("val", 6)):
        (tmp_path / "kc" / split).mkdir(parents=True)
        for i in range(1, n + 1):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(tmp_path / "kc" / split / f"{i}.png")
        (tmp_path / "kc" / f"{split}Labels.csv").write_text(
            "id,label\n" + "".join(f"{i},{names[i % 3]}\n" for i in range(1, n + 1)))
    target = DataTarget.for_model(small_cnn(num_classes=3), workers=0)
    data = load_data(tmp_path / "kc", target)
    assert (data.n_train, data.n_test) == (9, 6) and data.class_names == ["cat", "frog", "truck"]
    assert data.listing("test").location(0) == str(tmp_path / "kc" / "val" / "1.png")
    alone = load_data(tmp_path / "kc" / "trainLabels.csv", target)
    assert alone.n_test == 9 and alone.listing("test").location(0) == str(tmp_path / "kc" / "train" / "1.png")


def test_folders_extracted_into_a_folder_of_their_own_name_are_looked_through(tmp_path):
    """train/train/cat/..., val/val/..., and the whole tree inside a folder of its name (as archives extract): read as
    the folders they wrap, never as one class named `train` or after the dataset."""
    files = make_tree(tmp_path / "src", ["cat", "dog"], 2, sizes=(20, 30))
    for f in files:
        rel = Path(f).relative_to(tmp_path / "src")
        split = rel.parts[0]
        for top in (tmp_path / "pets" / split / split, tmp_path / "wrapped" / "wrapped" / split):
            (top / rel.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(f, top / rel.parent.name / rel.name)
    target = DataTarget.for_model(small_cnn(num_classes=2), workers=0)
    for root in (tmp_path / "pets", tmp_path / "wrapped"):
        data = load_data(root, target)
        assert data.class_names == ["cat", "dog"] and (data.n_train, data.n_test) == (4, 4), root
    alone = load_data(tmp_path / "pets" / "val", target)  # the evaluation folder alone
    assert alone.class_names == ["cat", "dog"] and alone.n_test == 4
    office = tmp_path / "office31" / "amazon"  # Office-31: a domain's class folders inside images/
    shutil.copytree(tmp_path / "pets" / "val" / "val", office / "images")
    assert load_data(office, target).class_names == ["cat", "dog"]
    (tmp_path / "lone" / "images" / "cat").mkdir(parents=True)  # one folder in images/: not looked through
    shutil.copy(files[0], tmp_path / "lone" / "images" / "cat")
    with pytest.raises(HardenError, match="holds one class \\(images\\)"):
        load_data(tmp_path / "lone", target).listing("test")


@pytest.mark.parametrize("where", ["/home/alice/datasets/pets", "C:\\Users\\alice\\pets"])
def test_a_list_written_on_another_machine_finds_its_images_below_it(tmp_path, where):
    """Absolute paths of the machine that wrote the list (a POSIX home, a Windows drive): read below the list's folder
    from where the first of them is found there, every path losing the same leading folders."""
    files = make_tree(tmp_path / "images", ["husky", "pug"], 3, splits=("",), sizes=(20, 30))
    sep = "\\" if where.startswith("C:") else "/"
    rows = [(sep.join([where, "images", *os.path.relpath(f, tmp_path / "images").split(os.sep)]),
             "pug" if "/pug/" in f else "husky") for f in sorted(files)]
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{p},{y}\n" for p, y in rows))
    data = load_data(tmp_path / "list.csv", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    lst = data.listing("test")
    assert sorted(lst.location(i) for i in range(len(lst))) == sorted(str(f) for f in files)
    assert data.class_names == ["husky", "pug"]


def test_webdataset_tar_shards_read_like_the_folder(tmp_path):
    files = make_tree(tmp_path / "img", ["a", "b"], 3, splits=("",), sizes=(20, 50))
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tf:
        for i, f in enumerate(sorted(files)):
            tf.add(f, arcname=f"sample{i:04d}{os.path.splitext(f)[1]}")
            label = str(1 if "/b/" in f else 0).encode()
            info = tarfile.TarInfo(f"sample{i:04d}.cls")
            info.size = len(label)
            tf.addfile(info, io.BytesIO(label))
    model = small_cnn(num_classes=2)
    tar = load_data(shard, DataTarget.for_model(model, workers=0))
    folder = load_data(tmp_path / "img", DataTarget.for_model(model, workers=0))
    xt, yt = tar.images("test", np.arange(6))
    xf, yf = folder.images("test", np.arange(6))
    assert torch.equal(xt, xf) and torch.equal(yt, yf)


def test_webdataset_shards_labelled_by_a_json_member(tmp_path):
    """Sets on the hub that put each sample's metadata in `key.json` ({"label": 3, ...}) instead of `key.cls`."""
    files = make_tree(tmp_path / "img", ["a", "b"], 2, splits=("",), sizes=(20, 30))
    with tarfile.open(tmp_path / "shard.tar", "w") as tf:
        for i, f in enumerate(sorted(files)):
            tf.add(f, arcname=f"s{i:04d}{os.path.splitext(f)[1]}")
            meta = json.dumps({"label": 1 if "/b/" in f else 0, "width": 30, "caption": "a photo"}).encode()
            info = tarfile.TarInfo(f"s{i:04d}.json")
            info.size = len(meta)
            tf.addfile(info, io.BytesIO(meta))
    data = load_data(tmp_path / "shard.tar", DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert data.y_test.tolist() == [0, 0, 1, 1]


def test_a_zip_archive_of_an_image_tree_is_read_in_place_like_the_folder(tmp_path, cli):
    """A Kaggle-style zip (a wrapping folder, train/ and val/ of class folders, __MACOSX/ beside them) gives the
    folder's splits, classes, pixels and labels, without extracting anything; `fix` trains on it; an evaluation-only
    zip of class folders evaluates; loose images and a damaged archive are one-paragraph errors."""
    import zipfile
    make_tree(tmp_path / "tree", ["cat", "dog"], 3, sizes=(20, 30))
    with zipfile.ZipFile(tmp_path / "kaggle.zip", "w") as z:
        for f in sorted((tmp_path / "tree").rglob("*")):
            if f.is_file():
                rel = f.relative_to(tmp_path / "tree").as_posix()
                z.write(f, f"pets-dataset/{rel}")
                z.writestr(f"__MACOSX/pets-dataset/{rel.rpartition('/')[0]}/._{f.name}", b"\x00\x05\x16\x07")
    with zipfile.ZipFile(tmp_path / "val.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((tmp_path / "tree" / "val").rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(tmp_path / "tree" / "val").as_posix())
    model = small_cnn(num_classes=2)
    folder = load_data(tmp_path / "tree", DataTarget.for_model(model, workers=0))
    zipped = load_data(tmp_path / "kaggle.zip", DataTarget.for_model(model, workers=0))
    assert zipped.class_names == folder.class_names == ["cat", "dog"]
    assert len(zipped.listing("train")) == len(folder.listing("train")) == 6
    for split in ("train", "test"):
        n = len(folder.listing(split))
        xz, yz = zipped.images(split, np.arange(n))
        xf, yf = folder.images(split, np.arange(n))
        assert torch.equal(xz, xf) and torch.equal(yz, yf), split
    assert zipped.listing("test").location(0).startswith(str(tmp_path / "kaggle.zip") + ":pets-dataset/val/cat/")
    with zipfile.ZipFile(tmp_path / "mnist_png.zip", "w") as z:  # Kaggle's words: training/ and Testing/
        for f in sorted((tmp_path / "tree").rglob("*")):
            if f.is_file():
                rel = f.relative_to(tmp_path / "tree").as_posix().replace("train/", "training/", 1)
                z.write(f, f"mnist_png/{rel.replace('val/', 'Testing/', 1)}")
    words = load_data(tmp_path / "mnist_png.zip", DataTarget.for_model(model, workers=0))
    assert (len(words.listing("train")), len(words.listing("test"))) == (6, 6) and words.class_names == ["cat", "dog"]
    evaluation = load_data(tmp_path / "val.zip", DataTarget.for_model(model, workers=2))
    xv, yv = evaluation.images("test", np.arange(6))  # compressed members, read by worker processes
    assert torch.equal(xv, folder.images("test", np.arange(6))[0]) and torch.equal(yv, folder.images("test",
                                                                                                    np.arange(6))[1])
    harden.save(model, tmp_path / "m.safetensors")
    code, _, err = cli("fix", tmp_path / "m.safetensors", "--data", tmp_path / "kaggle.zip", "--data-frac", "1",
                       "--epochs", "1", "--set", "val_frac=0", "--no-report", "--workers", "0", "-o",
                       tmp_path / "fixed.safetensors", "-q")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "loose.zip", "w") as z:
        z.write(next((tmp_path / "tree" / "val" / "cat").iterdir()), "a.jpg")
        z.write(next((tmp_path / "tree" / "val" / "dog").iterdir()), "b.jpg")
    with pytest.raises(HardenError, match="loose"):
        load_data(tmp_path / "loose.zip", DataTarget.for_model(model)).listing("test")
    # as an unlabeled pool: loose images are all taken; a tree gives its training split only
    from harden.data.unlabeled import load_unlabeled
    assert len(load_unlabeled(tmp_path / "loose.zip", DataTarget.for_model(model, workers=0)).listing("train")) == 2
    assert len(load_unlabeled(tmp_path / "kaggle.zip", DataTarget.for_model(model, workers=0)).listing("train")) == 6
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(HardenError, match="not a readable zip"):
        load_data(tmp_path / "bad.zip", DataTarget.for_model(model))
    with tarfile.open(tmp_path / "tree.tgz", "w:gz") as tf:  # Imagenette's form: read in place it cannot be
        tf.add(tmp_path / "tree", "tree")
    for read in (lambda p: load_data(p, DataTarget.for_model(model)), lambda p: load_unlabeled(p, None)):
        with pytest.raises(HardenError, match="compressed tar archive.*tar xf tree.tgz"):
            read(tmp_path / "tree.tgz")


# ------------------------------------------------------------------ bad input

def test_unreadable_file_stops_with_its_name_or_is_skipped_and_counted(tmp_path, cli):
    make_tree(tmp_path / "d", ["c0", "c1"], 3, splits=("",), sizes=(20, 30))
    bad = tmp_path / "d" / "c1" / "broken.jpg"
    good = next((tmp_path / "d" / "c0").glob("*.jpg")).read_bytes()
    bad.write_bytes(good[: len(good) // 3])  # a truncated JPEG
    ckpt = tmp_path / "m.safetensors"
    harden.save(small_cnn(num_classes=2), ckpt)
    args = ("eval", ckpt, "--data", tmp_path / "d", "--attack", "fgsm", "--no-metrics", "--no-masking-checks",
            "--workers", "0", "-q")
    code, out, err = cli(*args, "--json", tmp_path / "r.json")
    assert code == 2 and "broken.jpg" in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()
    code, out, err = cli(*args, "--skip-unreadable", "--json", tmp_path / "r.json")
    assert code == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["data_details"]["skipped_unreadable"] == 1 and rep["n"] == 6


def test_what_an_unreadable_file_is_is_said_and_the_report_names_the_skipped(tmp_path, cli):
    """Real folders hold files with an image's name that are something else: a repository cloned without `git lfs
    pull` (pointers), a download that saved a web page or nothing. The error says what the file is, not Pillow's
    `cannot identify image file <_io.BytesIO object at 0x...>`; a report that skipped files names them with why."""
    make_tree(tmp_path / "d", ["c0", "c1"], 4, splits=("",), sizes=(20, 30))
    (tmp_path / "d" / "c0" / "a_pointer.jpg").write_text("version https://git-lfs.github.com/spec/v1\n"
                                                         "oid sha256:4d7a2146\nsize 18211\n")
    (tmp_path / "d" / "c1" / "b_page.jpg").write_text("<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>")
    (tmp_path / "d" / "c1" / "c_empty.png").write_bytes(b"")
    ckpt = tmp_path / "m.safetensors"
    harden.save(small_cnn(num_classes=2), ckpt)
    args = ("eval", ckpt, "--data", tmp_path / "d", "--attack", "fgsm", "--no-metrics", "--no-masking-checks",
            "--workers", "0", "-q")
    code, out, err = cli(*args)
    assert code == 2 and "Git LFS pointer" in err and "git lfs pull" in err and "BytesIO" not in err, err
    code, out, err = cli(*args, "--skip-unreadable", "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert code == 0, err
    details = json.loads((tmp_path / "r.json").read_text())["data_details"]
    assert details["skipped_unreadable"] == 3
    said = " ".join(details["skipped_files"])
    assert "a_pointer.jpg: a Git LFS pointer" in said and "b_page.jpg: an HTML page" in said, said
    assert "c_empty.png: the file is empty" in said, said
    md = (tmp_path / "r.md").read_text()
    assert "3 unreadable file(s) skipped (" in md and "1 more, named in the JSON" in md, md


def test_a_200_megapixel_phone_photo_opens_and_the_larger_limit_holds(tmp_path):
    """Pillow's own limit (179M pixels; a bare warning above 89M) would refuse phones' 200-megapixel photos as
    decompression bombs; harden's reading takes them silently and still refuses beyond LARGEST_IMAGE_PIXELS."""
    import warnings

    from PIL import Image

    from harden.data.sources import LARGEST_IMAGE_PIXELS
    big = tmp_path / "200mp.png"
    Image.new("1", (16320, 12240)).save(big)  # the 200 MP mode's size; 1-bit, so 25 MB in memory to write
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning: it would print as a bare Python warning
        with Image.open(big) as im:
            assert im.size == (16320, 12240)
    side = int(LARGEST_IMAGE_PIXELS ** 0.5) + 100
    huge = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(huge)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(huge)


def test_empty_and_loose_folders_are_clear_errors(tmp_path):
    make_tree(tmp_path / "d", ["c0", "c1"], 2, splits=("train", "val"), sizes=(20, 30))
    (tmp_path / "d" / "val" / "c2").mkdir()
    model = small_cnn(num_classes=3)
    with pytest.raises(HardenError, match="c2.*holds no images"):
        load_data(tmp_path / "d", DataTarget.for_model(model)).listing("test")
    for i in range(3):  # a chest X-ray set as exported from PACS: what the folder holds is said, with the way on
        (tmp_path / "d" / "val" / "c2" / f"{i}.dcm").write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(HardenError, match=r"c2.*holds no images.*It holds 3 \.dcm files \(DICOM\): convert them to PNG"):
        load_data(tmp_path / "d", DataTarget.for_model(model)).listing("test")
    loose = tmp_path / "loose"
    loose.mkdir()
    save_image(loose / "x", photo(np.random.default_rng(0), 20, 20), "RGB")
    with pytest.raises(HardenError, match="folder of images without class folders, so it has no labels"):
        load_data(loose, DataTarget.for_model(model))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(HardenError, match="none of the data layouts"):
        load_data(tmp_path / "notes", DataTarget.for_model(model))
    with pytest.raises(HardenError, match="is one image; --data takes a dataset"):
        load_data(next(loose.iterdir()), DataTarget.for_model(model))
    only_eval = load_data(tmp_path / "d" / "train", DataTarget.for_model(small_cnn(num_classes=2)))  # classes only
    assert only_eval.n_test == 4
    with pytest.raises(HardenError, match="one split"):
        only_eval.listing("train")


def test_train_lists_the_test_folder_before_it_trains(tmp_path, cli, monkeypatch):
    """`harden train` listed a folder's test split only for its closing accuracy, after the training: a class folder
    of the test split without images stopped the run there, every epoch spent. It is listed first now, as fix does."""
    make_tree(tmp_path / "d", ["c0", "c1"], 2, splits=("train", "val"), sizes=(20, 30))
    for f in (tmp_path / "d" / "val" / "c1").iterdir():
        f.unlink()
    import harden.api

    def trained(*a, **k):
        raise AssertionError("trained before the test split was listed")
    monkeypatch.setattr(harden.api, "fit", trained)
    code, _, err = cli("train", "--data", tmp_path / "d", "--arch", "cnn-small", "--epochs", 1, "-o",
                       tmp_path / "m.safetensors")
    assert code == 2 and "c1' holds no images" in " ".join(err.split()), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("eval_folder", ["valid", "validation", "test"])
def test_every_evaluation_folder_name_beside_train(tmp_path, eval_folder):
    make_tree(tmp_path / "d", ["c0", "c1"], 2, splits=("train", eval_folder), sizes=(20, 30))
    data = load_data(tmp_path / "d", DataTarget.for_model(small_cnn(num_classes=2)))
    assert len(data.listing("train")) == 4 and data.n_test == 4
    (tmp_path / "half" / "train" / "c0").mkdir(parents=True)
    with pytest.raises(HardenError, match="no val/, test/, validation/ or valid/"):
        load_data(tmp_path / "half", DataTarget.for_model(small_cnn(num_classes=2)))
    # an evaluation folder alone (ImageNet's val/ as often downloaded) is evaluated; training asks for train/
    make_tree(tmp_path / "evalonly", ["c0", "c1"], 3, splits=(eval_folder,), sizes=(20, 30))
    alone = load_data(tmp_path / "evalonly", DataTarget.for_model(small_cnn(num_classes=2)))
    assert alone.n_test == 6 and alone.source == str(tmp_path / "evalonly" / eval_folder)
    with pytest.raises(HardenError, match="one split"):
        alone.listing("train")
    (tmp_path / "evalonly" / "extra_class").mkdir()  # beside another folder, the layout is unclear: still an error
    with pytest.raises(HardenError, match="an evaluation folder but no train/"):
        load_data(tmp_path / "evalonly", DataTarget.for_model(small_cnn(num_classes=2)))


def test_train_on_a_folder_and_fix_on_a_list_without_split_column(tmp_path, cli):
    """`harden train` on a folder of mixed-size images (the size and colour taken from a sample), then `harden fix`
    on a path,label list: its held-out test split is never trained on, and the report says so."""
    files = make_tree(tmp_path / "img", ["a", "b"], 8, splits=("train", "val"), sizes=(20, 24))
    code, out, err = cli("train", "--data", tmp_path / "img", "--arch", "cnn-small", "--epochs", "1", "--workers", "0",
                         "-o", tmp_path / "base.safetensors", "-q")
    assert code == 0, err
    base = harden.load(tmp_path / "base.safetensors")
    assert base.spec.in_chans == 3 and max(base.spec.input_size) <= 24 and base.spec.data == str(tmp_path / "img")
    rows = "".join(f"{os.path.relpath(f, tmp_path)},{'b' if '/b/' in f else 'a'}\n" for f in files)
    (tmp_path / "files.csv").write_text(rows)
    code, out, err = cli("fix", tmp_path / "base.safetensors", "--data", tmp_path / "files.csv", "--data-frac", "0.5",
                         "--epochs", "1", "--attack", "fgsm", "--num-images", "8", "--no-metrics",
                         "--no-masking-checks", "--workers", "0", "--set", "val_frac=0", "--json", tmp_path / "r.json",
                         "-o", tmp_path / "fixed.safetensors")
    assert code == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())["reports"][0]
    assert rep["data_details"]["held_out_test"]["n"] == 6 and rep["n"] == 6  # 20% of 16 a class, rounded: 3 + 3
    assert "held out as the test split" in " ".join(err.split())  # the console wraps to its width
    assert harden.load(tmp_path / "fixed.safetensors").spec.extra["subset"]["n"] == 12  # half of the other 26


def test_training_images_that_are_copies_of_test_images_are_left_out(tmp_path, cli):
    """The same photograph under train/ and val/ (datasets scraped twice have them): fix leaves the training copies
    out, says so and records it, so the report counts no image the model was trained on."""
    files = make_tree(tmp_path / "img", ["a", "b"], 5, splits=("train", "val"), sizes=(20, 24))
    val = sorted(f for f in files if "/val/a/" in f)
    for i, f in enumerate(val[:2]):
        shutil.copy(f, tmp_path / "img" / "train" / "a" / f"dup{i}{os.path.splitext(f)[1]}")
    harden.save(small_cnn(num_classes=2), tmp_path / "base.safetensors")
    code, out, err = cli("fix", tmp_path / "base.safetensors", "--data", tmp_path / "img", "--data-frac", "1",
                         "--epochs", "1", "--set", "val_frac=0", "--attack", "fgsm", "--num-images", "4", "--no-metrics",
                         "--no-masking-checks", "--workers", "0", "-o", tmp_path / "fixed.safetensors")
    assert code == 0, err
    said = " ".join(err.split())
    assert "2 of the training images of" in said and "left out of training" in said
    subset = harden.load(tmp_path / "fixed.safetensors").spec.extra["subset"]
    assert subset["test_copies_left_out"] == 2
    # every training image a copy of a test image: said as such, not as a subset too small for validation
    shutil.rmtree(tmp_path / "img" / "train")
    shutil.copytree(tmp_path / "img" / "val", tmp_path / "img" / "train")
    code, out, err = cli("fix", tmp_path / "base.safetensors", "--data", tmp_path / "img", "--data-frac", "1",
                         "--epochs", "1", "--attack", "fgsm", "--num-images", "4", "--no-metrics",
                         "--no-masking-checks", "--workers", "0", "-o", tmp_path / "none.safetensors")
    assert code == 2 and "Every one of the 10 training images drawn from" in " ".join(err.split()), err


def test_a_list_naming_files_that_are_gone_is_refused_or_skipped_and_counted(tmp_path, cli):
    """A path,label list some of whose files were deleted since: refused before any work, naming them and the flag;
    with --skip-unreadable they stay listed and are skipped where read, counted as unreadable files are."""
    files = make_tree(tmp_path / "img", ["a", "b"], 4, splits=("",), sizes=(20, 24))
    rows = [f"{os.path.relpath(f, tmp_path)},{'b' if '/b/' in f else 'a'}" for f in files]
    (tmp_path / "list.csv").write_text("\n".join(["path,label", *rows, "img/a/deleted.png,a"]) + "\n")
    harden.save(small_cnn(num_classes=2), tmp_path / "m.safetensors")
    common = ["--data", tmp_path / "list.csv", "--attack", "fgsm", "--no-metrics", "--no-masking-checks",
              "--workers", "0", "--json", tmp_path / "r.json"]
    code, _, err = cli("eval", tmp_path / "m.safetensors", *common)
    assert code == 2 and "img/a/deleted.png" in err and "--skip-unreadable" in " ".join(err.split())
    code, _, err = cli("eval", tmp_path / "m.safetensors", *common, "--skip-unreadable")
    rep = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and rep["n"] == 8 and rep["data_details"]["skipped_unreadable"] == 1, err


def test_eval_on_the_training_split_of_its_own_data_is_warned(tmp_path, cli):
    """A model harden trained on a train/ and val/ tree, evaluated with --data TREE/train: the report would count
    images it was trained on, and says so; TREE itself (its val/) and another folder are not warned."""
    make_tree(tmp_path / "img", ["a", "b"], 4, splits=("train", "val"), sizes=(20, 24))
    code, _, err = cli("train", "--data", tmp_path / "img", "--arch", "cnn-small", "--epochs", "1", "--workers", "0",
                       "-o", tmp_path / "m.safetensors", "-q")
    assert code == 0, err
    common = ["--attack", "fgsm", "--num-images", "8", "--no-metrics", "--no-masking-checks", "--workers", "0"]
    code, _, err = cli("eval", tmp_path / "m.safetensors", "--data", tmp_path / "img" / "train", *common)
    assert code == 0 and "is its training split: this report counts images it was trained on" in " ".join(err.split())
    for other in (tmp_path / "img", tmp_path / "img" / "val"):
        code, _, err = cli("eval", tmp_path / "m.safetensors", "--data", other, *common)
        assert code == 0 and "training split" not in err, err


def test_a_patch_applied_evaluates_where_the_hardened_model_did(tmp_path, cli):
    """fix --patch-out on a folder of one split, for a base that names other data: `apply` rebuilds a model that names
    the data fix was given and the share it held out, so its eval tests on the same images as the hardened file's."""
    make_tree(tmp_path / "one", ["a", "b"], 10, splits=("",), sizes=(20, 24))
    base = small_cnn(num_classes=2)
    base.spec.data = str(tmp_path / "elsewhere")
    harden.save(base, tmp_path / "base.safetensors")
    common = ["--attack", "fgsm", "--num-images", "40", "--no-metrics", "--no-masking-checks", "--workers", "0"]
    code, _, err = cli("fix", tmp_path / "base.safetensors", "--data", tmp_path / "one", "--recipe", "fixer",
                       "--data-frac", "1", "--epochs", "1", "--no-report", "--patch-out", tmp_path / "p.safetensors",
                       "-o", tmp_path / "fixed.safetensors", "--workers", "0")
    assert code == 0, err
    code, _, err = cli("apply", tmp_path / "base.safetensors", tmp_path / "p.safetensors", "-o",
                       tmp_path / "applied.safetensors")
    assert code == 0, err
    reports = {}
    for name in ("fixed", "applied"):
        code, _, err = cli("eval", tmp_path / f"{name}.safetensors", "--json", tmp_path / f"{name}.json", *common)
        assert code == 0, err
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert reports["applied"]["n"] == reports["fixed"]["n"] == 4  # the held-out 20%, with no --data
    assert reports["applied"]["data_details"]["images_sha256"] == reports["fixed"]["data_details"]["images_sha256"]


def test_eval_of_a_model_hardened_on_one_split_tests_on_what_fix_held_out(tmp_path, cli):
    """Class folders without train/ and val/ (one split): `fix` holds 20% out, records the draw, and a later `eval` of
    the hardened model on the same folder tests on those images again (said), never on the ones it trained on; the
    base, which harden never trained on it, is evaluated on all of it; a changed folder draws again with a warning."""
    make_tree(tmp_path / "one", ["a", "b"], 10, splits=("",), sizes=(20, 24))
    base = small_cnn(num_classes=2)
    base.spec.data = str(tmp_path / "elsewhere")  # the data the base names is not what it is hardened on
    harden.save(base, tmp_path / "base.safetensors")
    common = ["--attack", "fgsm", "--num-images", "40", "--no-metrics", "--no-masking-checks", "--workers", "0"]
    code, out, err = cli("fix", tmp_path / "base.safetensors", "--data", tmp_path / "one", "--data-frac", "1",
                         "--epochs", "1", "--set", "val_frac=0", "--json", tmp_path / "fix.json",
                         "-o", tmp_path / "fixed.safetensors", *common)
    assert code == 0, err
    assert "one split" in " ".join(err.split()) and "held out as the test split" in " ".join(err.split())
    fixed_rep = json.loads((tmp_path / "fix.json").read_text())["reports"][-1]
    assert fixed_rep["n"] == 4  # 20% of 10 a class
    code, out, err = cli("eval", tmp_path / "fixed.safetensors", "--data", tmp_path / "one", "--json",
                         tmp_path / "e.json", *common)
    assert code == 0, err
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["n"] == 4 and rep["data_details"]["held_out_test"]["n"] == 4
    assert rep["data_details"]["images_sha256"] == fixed_rep["data_details"]["images_sha256"]
    assert "never trained on" in " ".join(err.split())
    assert harden.load(tmp_path / "fixed.safetensors").spec.data == str((tmp_path / "one").resolve())
    code, out, err = cli("eval", tmp_path / "fixed.safetensors", "--json", tmp_path / "own.json", *common)
    assert code == 0 and json.loads((tmp_path / "own.json").read_text())["n"] == 4, err  # its own data, held out
    code, out, err = cli("export", tmp_path / "fixed.safetensors", "-o", tmp_path / "fixed.onnx", "--workers", "0")
    assert code == 0, err  # exported, it keeps the record: not a sample of the folder that holds its training images
    code, out, err = cli("eval", tmp_path / "fixed.onnx", "--json", tmp_path / "onnx.json", *common)
    onnx_rep = json.loads((tmp_path / "onnx.json").read_text())
    assert code == 0 and onnx_rep["n"] == 4 and onnx_rep["data_details"]["images_sha256"] == rep["data_details"][
        "images_sha256"], err
    code, out, err = cli("eval", tmp_path / "base.safetensors", "--data", tmp_path / "one", "--json",
                         tmp_path / "b.json", *common)
    assert code == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["n"] == 20 and "never trained on" not in err
    shutil.copytree(tmp_path / "one", tmp_path / "moved")  # the same files elsewhere: still the held-out split
    code, out, err = cli("eval", tmp_path / "fixed.safetensors", "--data", tmp_path / "moved", "--json",
                         tmp_path / "m.json", *common)
    assert code == 0 and json.loads((tmp_path / "m.json").read_text())["n"] == 4, err
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "one" / "a" / "new.png")  # the folder changed since
    code, out, err = cli("eval", tmp_path / "fixed.safetensors", "--data", tmp_path / "one", *common)
    assert code == 0, err
    assert "has changed since" in " ".join(err.split())


GREY_NET = """
import torch.nn as nn
def lenet(num_classes=10):  # published code's MNIST net: one input channel, whatever it is offered
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes))
"""


def test_train_feeds_a_grey_network_colour_images_as_grey(tmp_path, cli):
    """`harden train --arch file.py:lenet` for a network that builds itself for one channel, on colour files: the
    files are read as grey (luminance), as eval reads them for that network, rather than failing on 3 channels."""
    (tmp_path / "greynet.py").write_text(GREY_NET)
    make_tree(tmp_path / "img", ["a", "b"], 4, splits=("train", "val"), sizes=(20, 30))
    assert load_data(str(tmp_path / "img")).in_chans == 3
    code, out, err = cli("train", "--data", tmp_path / "img", "--arch", f"{tmp_path / 'greynet.py'}:lenet",
                         "--input-size", "16", "--epochs", "1", "--workers", "0", "-o", tmp_path / "g.safetensors")
    assert code == 0, err
    assert "reads 1-channel images" in " ".join(err.split())
    model = harden.load(tmp_path / "g.safetensors")
    assert model.spec.in_chans == 1 and len(model.spec.mean) == 1
    assert model.spec.extra["train"]["augment"] == "crop"  # chosen for the grey 16-px images the network reads
    code, out, err = cli("eval", tmp_path / "g.safetensors", "--attack", "fgsm", "--num-images", "4", "--no-metrics",
                         "--no-masking-checks", "--workers", "0")
    assert code == 0, err


def test_train_reads_photographs_of_every_size_at_a_sane_size(tmp_path, cli):
    """With no model yet, image files are read at their own size where most share one, else at a square of the
    median shorter side (the most common of 32 sizes that all differ was any one of them); a camera's size is
    scaled to a shorter side of 224; --input-size chooses; arrays keep their size."""
    from harden.data import GUESSED_SIDE_MAX
    from harden.model_flags import parse_size
    make_tree(tmp_path / "mixed", ["a", "b"], 6, splits=("",), sizes=(30, 90))
    sides = sorted(min(Image.open(f).size) for f in (tmp_path / "mixed").rglob("*.*"))
    h, w = load_data(str(tmp_path / "mixed")).preprocess.input_size
    assert h == w and sides[len(sides) // 2 - 1] <= h <= sides[len(sides) // 2]
    for c in ("a", "b"):  # one size, a camera's, for all
        (tmp_path / "camera" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (1200, 900), (40 * i, 90, 200)).save(tmp_path / "camera" / c / f"{i}.jpg")
    assert load_data(str(tmp_path / "camera")).preprocess.input_size == (GUESSED_SIDE_MAX, 299)  # 900x1200, aspect
    assert load_data(str(tmp_path / "camera"), DataTarget(train_size=(48, 64))).preprocess.input_size == (48, 64)
    code, _, err = cli("train", "--data", "digits", "--input-size", 16, "-o", tmp_path / "d.safetensors")
    assert code == 2 and "own size" in err
    for bad in ("0", "3x4x5", "-2x4", "x"):
        with pytest.raises(HardenError, match="HxW in pixels"):
            parse_size(bad)


def test_a_recipe_that_holds_its_training_set_decodes_it_chunk_by_chunk(tmp_path, monkeypatch):
    """patch-ft trains on its set held in memory (in_memory): decoded to uint8 a chunk at a time (the whole set's
    float pixels are four times its uint8 ones), equal to one decode of them all; unreadable files skipped."""
    import harden.data as data_mod
    make_tree(tmp_path / "img", ["a", "b"], 5, splits=("train", "val"), sizes=(20, 30))
    (tmp_path / "img" / "train" / "a" / "broken.png").write_bytes(b"not an image")
    target = DataTarget(preprocess=Preprocess(3, (16, 16)), workers=0, skip_unreadable=True)
    whole = data_mod.in_memory(load_data(str(tmp_path / "img"), target))
    monkeypatch.setattr(data_mod, "IN_MEMORY_CHUNK", 3)
    chunked = data_mod.in_memory(load_data(str(tmp_path / "img"), target))
    assert chunked.x_train.shape == whole.x_train.shape == (10, 16, 16, 3)  # 11 files, one unreadable
    assert np.array_equal(chunked.x_train, whole.x_train) and np.array_equal(chunked.y_train, whole.y_train)


def test_one_folder_of_shards_named_by_split_is_split_by_name(tmp_path):
    """timm's WebDataset sets on the Hugging Face hub keep every shard in one folder, the split in the name
    (imagenet1k-train-0000.tar, imagenet1k-validation-00.tar): evaluation reads only the validation shards."""
    files = make_tree(tmp_path / "img", ["a", "b"], 2, splits=("",), sizes=(20, 30))
    for split, part in (("train", files[:2] + files[2:3]), ("validation", files[3:])):
        with tarfile.open(tmp_path / f"imagenet1k-{split}-00.tar", "w") as tf:
            for i, f in enumerate(part):
                tf.add(f, arcname=f"{split}{i:04d}{os.path.splitext(f)[1]}")
                label = str(1 if "/b/" in f else 0).encode()
                info = tarfile.TarInfo(f"{split}{i:04d}.cls")
                info.size = len(label)
                tf.addfile(info, io.BytesIO(label))
    (tmp_path / "img").rename(tmp_path.parent / f"{tmp_path.name}-img")  # only the shards stay
    data = load_data(tmp_path, DataTarget.for_model(small_cnn(num_classes=2), workers=0))
    assert len(data.listing("train")) == 3 and len(data.listing("test")) == 1
    assert data.listing("test").location(0).startswith(str(tmp_path / "imagenet1k-validation-00.tar"))


def test_shards_named_by_a_brace_range_or_a_glob(tmp_path, cli):
    """WebDataset's `name-{000..002}.tar` (zero-padded as braceexpand pads) and a quoted glob read the shards they
    name, split by their names; a range naming a missing shard is refused; TFRecord shards read the same way."""
    from harden.data.shard_patterns import expand_braces
    from test_tfrecord import example, write_records
    assert expand_braces("s-{08..10}-{a,b}.tar") == ["s-08-a.tar", "s-08-b.tar", "s-09-a.tar", "s-09-b.tar",
                                                     "s-10-a.tar", "s-10-b.tar"]
    files = make_tree(tmp_path / "img", ["a", "b"], 3, splits=("",), sizes=(20, 30))
    for k in range(3):
        with tarfile.open(tmp_path / f"pets-train-{k:03d}.tar", "w") as tf:
            for i, f in enumerate(files[2 * k:2 * k + 2]):
                tf.add(f, arcname=f"s{k}{i}{os.path.splitext(f)[1]}")
                label = str(1 if "/b/" in f else 0).encode()
                info = tarfile.TarInfo(f"s{k}{i}.cls")
                info.size = len(label)
                tf.addfile(info, io.BytesIO(label))
    target = DataTarget.for_model(small_cnn(num_classes=2), workers=0)
    ranged = load_data(str(tmp_path / "pets-train-{000..001}.tar"), target)
    assert len(ranged.listing("test")) == 4 and ranged.layout == "tar"  # one split: evaluated, fix holds a share out
    globbed = load_data(str(tmp_path / "pets-train-*.tar"), target)
    assert len(globbed.listing("test")) == 6
    assert torch.equal(globbed.images("test", np.arange(4))[0], ranged.images("test", np.arange(4))[0])
    with pytest.raises(HardenError, match="names 4 shards, 1 of which do not exist.*pets-train-003.tar"):
        load_data(str(tmp_path / "pets-train-{000..003}.tar"), target)
    for split, part in (("train", files[:4]), ("test", files[4:])):
        write_records(tmp_path / "rec" / f"{split}-00000-of-00001",
                      [example({"image/encoded": Path(f).read_bytes(), "label": int("/b/" in f)}) for f in part])
    recs = load_data(str(tmp_path / "rec" / "{train,test}-00000-of-00001"), target)
    assert recs.layout == "tfrecord" and recs.y_train.tolist() == [0, 0, 0, 1] and recs.y_test.tolist() == [1, 1]
    harden.save(small_cnn(num_classes=2), tmp_path / "m.safetensors")
    code, _, err = cli("fix", tmp_path / "m.safetensors", "--data", str(tmp_path / "pets-train-{000..002}.tar"),
                       "--data-frac", "1", "--epochs", "1", "--set", "val_frac=0", "--no-report", "--workers", "0",
                       "-o", tmp_path / "f.safetensors", "-q")
    assert code == 0, err
    code, _, err = cli("eval", tmp_path / "f.safetensors", "--attack", "fgsm", "--workers", "0")  # the pattern kept
    assert code == 0 and "pets-train-{000..002}.tar" in harden.load(tmp_path / "f.safetensors").spec.data, err
    code, _, err = cli("data", str(tmp_path / "nothing-*.tar"))
    assert code == 2 and "matches no file" in err


def test_harden_data_says_how_a_dataset_is_read(tmp_path, cli):
    """`harden data`: splits and sizes, classes per the model, images per class, what the files are, the transform;
    a file that will not decode is named before any run."""
    make_tree(tmp_path / "d", SYNSETS[:3], 4, sizes=(40, 60))
    extra = tmp_path / "d" / "val" / SYNSETS[0]
    for i in range(4, 6):
        save_image(extra / f"more{i}", photo(np.random.default_rng(i), 50, 50), "RGB")
    (extra / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    model = harden.create_model("cnn-small", 1000, 3, (32, 32), (0.5,), (0.25,))  # an ImageNet-sized head
    harden.save(model, tmp_path / "m.safetensors")
    code, out, err = cli("data", tmp_path / "d", "--model", tmp_path / "m.safetensors", "--workers", "0")
    assert code == 0, err
    text = " ".join(out.replace("│", " ").split())
    assert "train split 12 images in 3 classes, 4 each" in text
    assert "test split 15 images in 3 classes; per class 4 (1) to 7 (0)" in text  # the model's indices
    assert "WordNet synsets -> the model's 1000 ImageNet indices" in text
    assert "unreadable:" in text and "broken.jpg" in text
    assert "clean accuracy on 64 test images: not measured: Cannot read the image" in text  # the model's sample
    code, out, err = cli("data", "digits")
    assert code == 0 and "scikit-learn's digits (8 x 8), in memory" in out and "8x8" in out
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 6, 6), np.uint8), y=np.arange(4))
    code, out, err = cli("data", tmp_path / "a.npz")  # arrays read from a file say its format
    assert code == 0 and "an .npz of named arrays" in " ".join(out.replace("│", " ").split())


def test_hugging_face_imagefolder_with_labels_in_a_metadata_file(tmp_path):
    """Hugging Face's imagefolder: each split's images loose in its folder, labels in metadata.csv or .jsonl beside
    them (file_name, label, other columns), or in one metadata file at the root."""
    from harden.data.sources import METADATA_FILES
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "bird"]
    for split, kind in (("train", "csv"), ("test", "jsonl")):
        d = tmp_path / "hf" / split
        d.mkdir(parents=True)
        rows = []
        for i in range(9 if split == "train" else 6):
            save_image(d / f"{i:04d}", photo(rng, 20, 24), "RGB")
            rows.append((f"{i:04d}.jpg", names[i % 3], f"caption {i}"))
        if kind == "csv":
            (d / "metadata.csv").write_text("file_name,label,text\n" + "".join(f"{f},{y},{t}\n" for f, y, t in rows))
        else:
            (d / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f, "label": y, "text": t}) + "\n"
                                                      for f, y, t in rows))
    model = small_cnn(num_classes=3)
    data = load_data(tmp_path / "hf", DataTarget.for_model(model, workers=0))
    assert data.n_train == 9 and data.n_test == 6 and data.class_names == ["bird", "cat", "dog"]
    test = data.listing("test")
    assert [os.path.basename(test.location(i)) for i in range(6)] == [f"{i:04d}.jpg" for i in range(6)]
    assert [data.class_names[y] for y in test.labels] == [names[i % 3] for i in range(6)]
    alone = load_data(tmp_path / "hf" / "train", DataTarget.for_model(model, workers=0))  # one folder: one split
    assert alone.n_test == 9 and not alone.has_split("train")
    # one metadata file at the dataset's root, its paths beginning with the split's folder
    lines = []
    for split in ("train", "test"):
        d = tmp_path / "hf" / split
        for m in METADATA_FILES:
            (d / m).unlink(missing_ok=True)
        lines += [f"{split}/{f.name},{names[int(f.stem) % 3]}\n" for f in sorted(d.glob("*.jpg"))]
    (tmp_path / "hf" / "metadata.csv").write_text("file_name,label\n" + "".join(lines))
    root = load_data(tmp_path / "hf", DataTarget.for_model(model, workers=0))
    assert root.n_train == 9 and root.n_test == 6 and root.class_names == ["bird", "cat", "dog"]
    assert all("/test/" in root.listing("test").location(i) for i in range(6))
    (tmp_path / "hf" / "metadata.csv").unlink()
    (tmp_path / "hf" / "test" / "metadata.jsonl").write_text("{not json\n")
    with pytest.raises(HardenError, match="line 1: not JSON"):
        load_data(tmp_path / "hf", DataTarget.for_model(model, workers=0)).listing("test")


def test_a_report_holds_its_images_as_the_uint8_pixels_they_were_decoded_as(tmp_path, monkeypatch, digits):
    """Files and arrays decode to uint8 pixels whose / 255 is exactly images(): the report holds the pixels (a quarter
    of fp32's memory) on the host and reads fp32 batches from them on the device; arrays it must resize it holds at
    their own size and resizes as a batch is read, to what a resize of them all gives."""
    from harden.data import held
    make_tree(tmp_path, ["c0", "c1"], 4, sizes=(20, 40))
    model = small_cnn(num_classes=2)
    files = load_data(tmp_path, DataTarget.for_model(model, workers=0))
    for data in (files, digits):
        idx = data.eval_indices(8, 0)
        pixels, y = data.pixels("test", idx)
        x, y2 = data.images("test", idx)
        assert pixels.dtype == torch.uint8 and torch.equal(pixels.float() / 255, x) and torch.equal(y, y2)
    kinds = []

    class Recorded(held.EvalImages):
        def __init__(self, pixels, device="cpu", size=None):
            kinds.append(pixels.dtype)
            super().__init__(pixels, device, size)
    monkeypatch.setattr(held, "EvalImages", Recorded)
    kw = dict(attacks=["fgsm"], n=8, metrics=False, masking_checks=False, device="cpu")
    harden.evaluate(model, files, **kw)
    harden.evaluate(harden.create_model("cnn-small", 10, 1, (16, 16), (0.5,), (0.25,)), digits, **kw)  # 8 px -> 16
    assert kinds == [torch.uint8, torch.uint8]
    from harden.data import fit_size
    x, _ = held.held_images(digits, "test", np.arange(8), "cpu", (16, 16))
    assert x.shape == (8, 1, 16, 16) and torch.equal(x[2:5], fit_size(digits.images("test", np.arange(8))[0], (16, 16))[2:5])
    on_meta, y = held.held_images(digits, "test", np.arange(8), "meta", (16, 16))  # a device of its own
    assert on_meta.pixels.device.type == "cpu" and y.device.type == on_meta[torch.arange(3)].device.type == "meta"
    assert on_meta.device.type == "meta" and on_meta.head(4)[0:2].shape == (2, 1, 16, 16)

    class FloatOnly(type(digits)):  # a Data of one's own that gives float images only (no pixels)
        def pixels(self, split, idx, device="cpu"):
            raise NotImplementedError

        def images(self, split, idx, device="cpu"):
            return digits.images(split, idx, device)
    floats = FloatOnly(*(getattr(digits, k) for k in ("x_train", "y_train", "x_test", "y_test", "source",
                                                       "num_classes")))
    kinds.clear()
    net = harden.create_model("cnn-small", 10, 1, (8, 8), (0.5,), (0.25,))
    a, b = harden.evaluate(net, floats, **kw), harden.evaluate(net, digits, **kw)
    assert kinds == [torch.float32, torch.uint8] and a.attacks[0].robust_accuracy == b.attacks[0].robust_accuracy


def test_coco_style_classification_json(tmp_path):
    """iNaturalist's val2019.json: images (id, file_name under train_val2019/<supercategory>/<id>/), annotations
    (image_id, category_id) and categories: a class's index is its category id (0..N-1), its name the category's; ids
    that are not 0..N-1 are indexed in sorted order; an image annotated with two categories is refused."""
    import json as _json
    files = sorted(make_tree(tmp_path / "src", ["a", "b", "c"], 2, splits=("",), sizes=(20, 30)))
    images, annotations = [], []
    for i, f in enumerate(files):
        cat = "abc".index(os.path.basename(os.path.dirname(f)))
        rel = f"train_val2019/Plants/{cat}/{i:04d}{os.path.splitext(f)[1]}"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(f, tmp_path / rel)
        images.append({"id": 100 + i, "file_name": rel})
        annotations.append({"id": i, "image_id": 100 + i, "category_id": cat})
    categories = [{"id": 2, "name": "Quercus"}, {"id": 0, "name": "Acer"}, {"id": 1, "name": "Pinus"}]
    (tmp_path / "val2019.json").write_text(_json.dumps({"info": {}, "images": images, "annotations": annotations,
                                                        "categories": categories}))
    data = load_data(tmp_path / "val2019.json", DataTarget.for_model(small_cnn(num_classes=3), workers=0))
    lst = data.listing("test")
    assert data.class_names == ["Acer", "Pinus", "Quercus"]
    assert [int(lst.labels[i]) for i in range(len(lst))] == [a["category_id"] for a in annotations]
    sparse = [{**c, "id": c["id"] * 10} for c in categories]
    (tmp_path / "sparse.json").write_text(_json.dumps({"images": images, "categories": sparse, "annotations": [
        {**a, "category_id": a["category_id"] * 10} for a in annotations]}))
    again = load_data(tmp_path / "sparse.json", DataTarget.for_model(small_cnn(num_classes=3), workers=0))
    assert again.y_test.tolist() == data.y_test.tolist()
    (tmp_path / "two.json").write_text(_json.dumps({"images": images, "categories": categories, "annotations":
                                                    annotations + [{"image_id": 100, "category_id": 2}]}))
    with pytest.raises(HardenError, match="image 100 is annotated with categories 0 and 2"):
        load_data(tmp_path / "two.json", DataTarget.for_model(small_cnn(num_classes=3)))


def test_fix_says_which_test_classes_it_never_trains_on(tmp_path):
    """A class folder under val/ alone: the hardened model never sees it, and the run says so by name."""
    make_tree(tmp_path, ["ant", "bee"], 4, splits=("train",), sizes=(20, 40))
    make_tree(tmp_path, ["ant", "bee", "cat"], 2, seed=1, splits=("val",), sizes=(20, 40))
    base = harden.save(small_cnn(), tmp_path / "base.safetensors")
    with held_warnings() as words:
        harden.fix(base, str(tmp_path), sets=["val_frac=0", "attack=fgsm-rs"], data_frac=1.0, epochs=1, device="cpu",
                   report_n=6, attacks=["fgsm"], metrics=False, masking_checks=False, data_target={"workers": 0})
    said = " ".join(" ".join(words).split())
    assert "1 of the test split's classes has no image among the 8 training images" in said and "(cat)" in said
