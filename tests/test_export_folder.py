"""`harden export -o DIR` (harden/export_folder.py): a transformers or timm model back in its library's own layout,
read back by that library with harden's outputs and preprocessing."""
from __future__ import annotations

import json

import pytest
import torch

import harden
from harden.errors import HardenError

transformers = pytest.importorskip("transformers")


# what `fix` records of data without a test split (data/held_out.py) and of how it took EXIF orientation
HARDENED_ON = {"held_out_test": {"fraction": 0.2, "seed": 0, "n": 80, "index_sha256": "385b58f027186019",
                                 "listing_sha256": "37e42eb403335593", "source": "/data/pets"},
               "exif_orientation": "upright"}


def _tiny_vit(tmp_path, processor=True):
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, num_labels=3)
    net = transformers.ViTForImageClassification(cfg)
    net.save_pretrained(tmp_path / "vit")
    if processor:
        transformers.DeiTImageProcessor(size={"height": 36, "width": 36}, crop_size={"height": 32, "width": 32},
                                        image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.25]).save_pretrained(
            tmp_path / "vit")
    return tmp_path / "vit"


def test_a_transformers_model_goes_back_to_a_folder_the_library_loads(tmp_path, cli):
    transformers.logging.set_verbosity_error()
    src = _tiny_vit(tmp_path)
    model = harden.load(src)
    model.spec.extra["label_names"] = ["cat", "dog", "bird"]
    model.spec.data = "/data/pets"  # as `fix` on one folder records it
    model.spec.extra.update(HARDENED_ON)
    harden.save(model, tmp_path / "m.safetensors")  # as `fix` writes it: no folder beside
    code, out, err = cli("export", tmp_path / "m.safetensors", "-o", tmp_path / "out")
    assert code == 0, err
    assert "OK transformers vs harden" in " ".join(out.split())
    back = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    assert back.config.id2label == {0: "cat", 1: "dog", 2: "bird"}
    processor = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert processor == json.loads((src / "preprocessor_config.json").read_text())  # as it was read
    again = harden.load(tmp_path / "out")  # its data and held-out split kept: eval tests where it never trained
    assert again.spec.data == "/data/pets" and {k: again.spec.extra.get(k) for k in HARDENED_ON} == HARDENED_ON
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back(pixel_values=model.normalize(x)).logits, model(x), rtol=0, atol=1e-6)
    code, _, err = cli("export", tmp_path / "m.safetensors", "-o", tmp_path / "out")
    assert code == 2 and "--force" in err  # an existing folder is kept
    code, _, err = cli("export", tmp_path / "m.safetensors", "-o", tmp_path / "out", "--force")
    assert code == 0, err

    bare = _tiny_vit(tmp_path / "bare", processor=False)  # read with no processor: one is written that does the same
    model = harden.load(bare, input_size=(32, 32), crop_pct=0.875, crop_mode="center", interpolation="bicubic",
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    harden.save(model, tmp_path / "bare.safetensors")
    code, _, err = cli("export", tmp_path / "bare.safetensors", "-o", tmp_path / "bare_out")
    assert code == 0, err
    written = json.loads((tmp_path / "bare_out" / "preprocessor_config.json").read_text())
    assert written["image_processor_type"] == "BitImageProcessor" and written["size"] == {"shortest_edge": 36}
    again = harden.load(tmp_path / "bare_out").spec  # 32/36 where 0.875 was given: both resize to 36, crop 32
    assert (int(32 / again.crop_pct), again.crop_mode, again.interpolation) == (36, "center", "bicubic")


def test_a_timm_model_goes_back_to_a_folder_timm_loads(tmp_path, cli):
    import timm
    net = timm.create_model("test_resnet.r160_in1k", pretrained=False, num_classes=4)
    torch.save(net.state_dict(), tmp_path / "ft.pth")
    model = harden.load(tmp_path / "ft.pth", arch="test_resnet.r160_in1k", crop_pct=0.9)
    model.spec.extra["label_names"] = ["w", "x", "y", "z"]
    model.spec.data = "/data/pets"
    model.spec.extra.update(HARDENED_ON)
    harden.save(model, tmp_path / "m.safetensors")
    code, out, err = cli("export", tmp_path / "m.safetensors", "-o", tmp_path / "out")
    assert code == 0, err
    back = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True).eval()
    assert back.pretrained_cfg["crop_pct"] == 0.9 and back.pretrained_cfg["input_size"] == (3, 160, 160)
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(back(model.normalize(x)), model(x), rtol=0, atol=1e-6)
    again = harden.load(tmp_path / "out")
    assert again.spec.extra["label_names"] == ["w", "x", "y", "z"]
    assert again.spec.data == "/data/pets" and {k: again.spec.extra.get(k) for k in HARDENED_ON} == HARDENED_ON
    assert json.loads((tmp_path / "out" / "config.json").read_text())["harden"]["data"] == "/data/pets"


def test_what_no_library_folder_can_hold_is_refused(tmp_path, cli):
    model = harden.create_model("cnn-small", 3, 1, (28, 28), (0.5,), (0.25,))
    harden.save(model, tmp_path / "small.safetensors")
    code, _, err = cli("export", tmp_path / "small.safetensors", "-o", tmp_path / "out")
    assert code == 2 and "neither" in err and not (tmp_path / "out").exists()
    from harden.export_folder import export_folder
    patched = harden.create_model("resnet18", 3, 3, (32, 32), (0.5,), (0.25,))
    patched.patch = torch.nn.Identity()  # a recipe's modules (fixer's, idfr's)
    with pytest.raises(HardenError, match="not part of resnet18"):
        export_folder(patched, tmp_path / "patched", torch.rand(2, 3, 32, 32), "random pixels")
    swapped = harden.create_model("resnet18", 3, 3, (32, 32), (0.5,), (0.25,))
    swapped.spec.extra["brelu_swapped"] = 3  # gda-brelu's bounded ReLUs: an edit timm's resnet18 does not have
    with pytest.raises(HardenError, match="bounded ReLU"):
        export_folder(swapped, tmp_path / "swapped", torch.rand(2, 3, 32, 32), "random pixels")
    assert not (tmp_path / "patched").exists() and not (tmp_path / "swapped").exists()
