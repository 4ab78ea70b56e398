"""Image classifiers of Hugging Face's transformers library, as save_pretrained leaves them (harden/models/
hf_transformers.py): the folder loads with no flag, its outputs are the library's, its image processor becomes
harden's transform, and every command runs on it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import harden
from harden.data.transforms import Preprocess
from harden.errors import HardenError

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def _quiet_library():
    transformers.logging.set_verbosity_error()


def _vit(labels=None):
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, num_labels=3, **({"id2label": dict(enumerate(labels)),
                                                                        "label2id": {n: i for i, n in enumerate(labels)}}
                                                                       if labels else {}))
    return transformers.ViTForImageClassification(cfg), transformers.ViTImageProcessor(size={"height": 32, "width": 32})


def _convnext():
    cfg = transformers.ConvNextConfig(hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], num_labels=4)
    return (transformers.ConvNextForImageClassification(cfg),
            transformers.ConvNextImageProcessor(size={"shortest_edge": 48}, crop_pct=0.875))


def _deit():
    cfg = transformers.DeiTConfig(image_size=40, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=3)
    return (transformers.DeiTForImageClassification(cfg),
            transformers.DeiTImageProcessor(size={"height": 48, "width": 48}, crop_size={"height": 40, "width": 40}))


def _efficientnet():  # its processor: an offset and a second division by std, both measured as one mean and std
    cfg = transformers.EfficientNetConfig(image_size=40, width_coefficient=0.25, depth_coefficient=0.2, hidden_dim=320,
                                          num_labels=3)
    return (transformers.EfficientNetForImageClassification(cfg),
            transformers.EfficientNetImageProcessor(size={"height": 48, "width": 48}, crop_size={"height": 40, "width": 40},
                                                    do_center_crop=True, rescale_offset=True))


def _mobilevit():  # its processor feeds BGR and does not normalise
    cfg = transformers.MobileViTConfig(image_size=32, patch_size=2, hidden_sizes=[16, 16, 16], num_attention_heads=2,
                                       neck_hidden_sizes=[8, 8, 16, 16, 16, 16, 32], num_labels=3)
    return (transformers.MobileViTForImageClassification(cfg),
            transformers.MobileViTImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}))


def _levit():  # its processor scales the shortest edge by 256/224 before its crop: found by comparing pixels
    cfg = transformers.LevitConfig(image_size=224, hidden_sizes=[16, 24, 32], num_attention_heads=[1, 1, 1],
                                   depths=[1, 1, 1], key_dim=[8, 8, 8], num_labels=3)
    return (transformers.LevitForImageClassification(cfg),
            transformers.LevitImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}))


@pytest.mark.parametrize("make,expect", [
    (_vit, dict(input_size=(32, 32), crop_mode="squash", crop_pct=1.0, interpolation="bilinear")),
    (_convnext, dict(input_size=(48, 48), crop_mode="center", crop_pct=0.875, interpolation="bicubic")),
    (_deit, dict(input_size=(40, 40), crop_mode="squash", crop_pct=40 / 48, interpolation="bicubic")),
    (_efficientnet, dict(input_size=(40, 40), crop_mode="squash", crop_pct=40 / 48, mean=(1.5,) * 3, std=(0.25,) * 3)),
    (_mobilevit, dict(input_size=(32, 32), crop_mode="center", crop_pct=32 / 36, mean=(0.0,) * 3, std=(1.0,) * 3)),
    (_levit, dict(input_size=(224, 224), crop_mode="center", crop_pct=0.875)),
], ids=["vit-fixed-size", "convnext-crop-pct", "deit-size-then-crop", "efficientnet-offset", "mobilevit-bgr", "levit"])
def test_a_saved_folder_gives_the_librarys_outputs_and_its_processors_pixels(tmp_path, make, expect):
    net, processor = make()
    torch.manual_seed(0)
    with torch.no_grad():  # not the initialisation's near-zero head: outputs that tell weights apart
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model = harden.load(tmp_path).eval()
    pre = Preprocess.of(model.spec)
    for key, value in expect.items():
        got = getattr(model.spec if key in ("mean", "std") else pre, key)
        assert (got == pytest.approx(value)) if isinstance(value, (float, tuple)) and key != "input_size" \
            else got == value, key
    assert model.spec.arch == "transformers:" + type(net).__name__
    # margins around the crop even: an odd one puts timm's crop (offset rounded half to even) a pixel from the
    # library's (floored), as the module's docstring says
    side = (120, 90) if make is not _levit else (100, 100)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)).resize(side)
    x = pre.eval_transform()(photo).float().div(255)[None]
    reference = processor(images=photo, return_tensors="pt")["pixel_values"]
    ours = model.normalize(x)
    ours = ours.flip(1) if model.net.flip_channels else ours  # what the network itself receives
    assert model.net.flip_channels == (make is _mobilevit)
    # the library resizes in floating point, timm's transform in 8 bits: a grey level apart at most, rarely
    assert (ours - reference).abs().max() * min(model.spec.std) <= 1.01 / 255
    assert (ours - reference).abs().mean() < 1e-3
    library = type(net).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        # the same weights in other memory: a kernel may round differently (1.9e-9 seen), nothing more
        assert torch.allclose(model(x), library(pixel_values=ours).logits, rtol=0, atol=1e-6)


def test_labels_round_trip_and_every_command_runs(tmp_path, cli):
    """id2label become the label names (class folders map by them); a checkpoint harden writes rebuilds the model
    with no folder beside it; eval, fix, inspect and export run on the folder."""
    net, processor = _vit(["cat", "dog", "bird"])
    net.save_pretrained(tmp_path / "vit", max_shard_size="40KB")  # sharded, as large models are
    processor.save_pretrained(tmp_path / "vit")
    assert (tmp_path / "vit" / "model.safetensors.index.json").is_file()
    model = harden.load(tmp_path / "vit")
    assert model.spec.extra["label_names"] == ["cat", "dog", "bird"] and model.spec.num_classes == 3
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("bird", "cat", "dog"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (36, 40, 3), np.uint8)).save(tmp_path / "data" / split / c / f"{i}.png")
    code, _, err = cli("eval", tmp_path / "vit", "--data", tmp_path / "data", "--attack", "fgsm", "--n", "12",
                       "--workers", "0", "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["data_details"]["classes"] == "the model's label names"
    code, _, err = cli("fix", tmp_path / "vit", "--data", tmp_path / "data", "--data-frac", "1", "--epochs", "1",
                       "--set", "val_frac=0", "--no-report", "--workers", "0", "-o", tmp_path / "f.safetensors", "-q")
    assert code == 0, err
    fixed = harden.load(tmp_path / "f.safetensors").eval()  # no folder needed: the configuration travels with it
    assert fixed.spec.extra["label_names"] == ["cat", "dog", "bird"]
    x = torch.rand(2, 3, 32, 32)
    library = transformers.ViTForImageClassification.from_pretrained(tmp_path / "vit").eval()
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), library(pixel_values=model.normalize(x)).logits, rtol=0, atol=1e-6)
        assert not torch.equal(fixed(x), model(x))  # trained
    code, out, err = cli("export", tmp_path / "f.safetensors", "-o", tmp_path / "f.onnx")
    assert code == 0, err
    code, out, err = cli("inspect", tmp_path / "vit")
    assert code == 0 and "transformers:ViTForImageClassification" in out


def test_folders_the_library_would_fill_at_random_or_that_hold_no_classifier_are_refused(tmp_path):
    net, processor = _vit()
    net.save_pretrained(tmp_path / "vit")
    from safetensors.torch import load_file, save_file
    state = load_file(tmp_path / "vit" / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")}, tmp_path / "vit" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(HardenError, match="do not cover the model.*classifier.*at random"):
        harden.load(tmp_path / "vit")
    transformers.ViTModel(net.config).save_pretrained(tmp_path / "backbone")
    with pytest.raises(HardenError, match="ViTModel, not an image classifier"):
        harden.load(tmp_path / "backbone")


def test_transformers_timm_wrapper_is_read_as_the_timm_model_inside(tmp_path):
    """TimmWrapperForImageClassification (transformers' way of holding a timm model): timm's architecture and
    config, the wrapper's key prefix removed; its outputs."""
    cfg = transformers.TimmWrapperConfig(architecture="test_resnet.r160_in1k", num_labels=4, do_pooling=True)
    net = transformers.TimmWrapperForImageClassification(cfg).eval()
    net.save_pretrained(tmp_path)
    model = harden.load(tmp_path).eval()
    assert model.spec.arch == "test_resnet.r160_in1k" and model.spec.num_classes == 4
    assert model.spec.input_size == (160, 160) and "removed the key prefix 'timm_model.'" in model.load_notes
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(model(x), net(pixel_values=model.normalize(x)).logits, rtol=0, atol=1e-6)


def test_a_model_whose_code_ships_in_the_folder_is_not_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["FancyNetForImageClassification"], "model_type": "fancynet",
        "auto_map": {"AutoModelForImageClassification": "modeling_fancy.FancyNetForImageClassification"}}))
    (tmp_path / "modeling_fancy.py").write_text("raise SystemExit('ran')\n")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(HardenError, match="never runs code that comes with a model"):
        harden.load(tmp_path)


def test_an_onnx_export_of_a_classifier_reads_with_its_folder_s_configuration(tmp_path):
    """transformers.js's and optimum's layout: config.json and the processor beside `onnx/model.onnx` (no torch
    weights), the graph's input fully dynamic: the graph is the model, the folder gives channels, size, preprocessing
    and label names."""
    import contextlib
    import io
    import warnings
    net, processor = _vit(["cat", "dog", "bird"])
    net.eval()
    folder = tmp_path / "Xenova-vit"
    net.config.architectures = ["ViTForImageClassification"]  # as save_pretrained writes it
    net.config.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "onnx").mkdir()

    class PixelsToLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixel_values):
            return self.net(pixel_values=pixel_values).logits
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(PixelsToLogits().eval(), (torch.rand(2, 3, 32, 32),), str(folder / "onnx" / "model.onnx"),
                          dynamo=False, input_names=["pixel_values"],
                          dynamic_axes={"pixel_values": {0: "batch", 1: "channels", 2: "height", 3: "width"}})
    model = harden.load(folder)
    assert model.spec.arch == "onnx" and model.spec.in_chans == 3 and tuple(model.spec.input_size) == (32, 32)
    assert model.spec.extra["label_names"] == ["cat", "dog", "bird"] and list(model.spec.mean) == [0.5] * 3
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), net(pixel_values=(x - 0.5) / 0.5).logits, atol=1e-5)
    assert len(harden.checkpoint.sha256_file(folder)) == 64
