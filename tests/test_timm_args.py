"""A timm name (and a torchvision ViT) whose file was saved from `create_model(name, **other_arguments)`: a ViT
without a class token (averaged tokens), with register tokens, without a qkv bias, shallower, at another size; a ResNet
with other stage depths; a Swin with another window. Each stopped with "do not fit the architecture"; the arguments are
now searched on the meta device over the class the name builds (models/timm_args.py), starting from the name's own
values, warned with the flags that say them, and the network computes the file's function."""
import pytest
import torch

import harden
from harden.errors import HardenError
from harden.runtime import held_warnings

CASES = [
    ("test_vit", dict(img_size=32, class_token=False, global_pool="avg", reg_tokens=2),
     {"global_pool": "avg", "class_token": False, "reg_tokens": 2, "img_size": 32}),
    ("test_vit", dict(img_size=48, qkv_bias=False), {"qkv_bias": False, "img_size": 48}),
    ("test_vit", dict(depth=3), {"depth": 3}),  # a factory's own value (6) searched from there
    ("test_resnet", dict(layers=(1, 2, 1, 1)), {"layers": [1, 2, 1, 1]}),
    # its name builds mlp_ratio=3, an integer: 2 found; the head count its name sets stands (the MLPs moved, not the
    # attention)
    ("test_vit", dict(mlp_ratio=2.0), {"mlp_ratio": 2}),
    ("test_vit", dict(img_size=32, init_values=1e-5, class_token=False, global_pool="avg"),  # keys say two of them
     {"global_pool": "avg", "init_values": 1e-5, "class_token": False, "img_size": 32}),
]


def _saved(tmp_path, name, kw, num_classes=5):
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, num_classes=num_classes, **kw).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "m.safetensors")
    return net, tmp_path / "m.safetensors"


@pytest.mark.parametrize("name, kw, found", CASES)
def test_arguments_a_timm_name_was_built_with_are_found_from_its_weights(tmp_path, name, kw, found):
    net, path = _saved(tmp_path, name, kw)
    with held_warnings() as said:
        model = harden.load(path, arch=name)
    assert model.spec.model_args == found and model.spec.num_classes == 5
    told = next(" ".join(w.split()) for w in said if "builds tried on the meta device" in w)
    assert all(f"{k}={v!r}" in told for k, v in found.items()), told
    assert model.config_sources["model_args"] == "checkpoint weights (the arguments they fit)"
    if "img_size" in found:  # the size follows: the weights' own, said as theirs
        assert model.spec.input_size == (found["img_size"],) * 2
        assert model.config_sources["input_size"] == model.config_sources["model_args"]
    spec = model.eval().spec
    x = torch.rand(2, 3, *spec.input_size)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (spec.mean, spec.std))
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-5)


# Swin-T's factory and configuration, narrowed to a test's size (Swin-T's 292 builds took 11 s of the suite): the
# search reads the factory's code and builds the class as for any timm name
default_cfgs = {"harden_test_swin": {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406),
                                     "std": (0.229, 0.224, 0.225), "interpolation": "bicubic", "crop_pct": 0.9,
                                     "num_classes": 1000, "first_conv": "patch_embed.proj", "classifier": "head.fc"}}


def harden_test_swin(pretrained=False, **kwargs):
    from timm.models.swin_transformer import _create_swin_transformer
    model_args = dict(patch_size=4, window_size=7, embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2))
    return _create_swin_transformer("harden_test_swin", pretrained=pretrained, **dict(model_args, **kwargs))


def _registered_test_swin() -> None:
    import timm
    from timm.models import register_model
    if not timm.is_model("harden_test_swin"):  # once a process: registering again warns of the overwrite
        register_model(harden_test_swin)


def test_a_swin_with_another_window_is_found_and_its_size_said_unchecked(tmp_path, monkeypatch):
    """The window is searched from the name's 7 (the descent moves the patch size on its way, and back: not said);
    no tensor holds the image size a window tiles, so the name's size is kept and said to be unchecked."""
    import timm
    from safetensors.torch import save_file

    from harden.models import args_from_weights
    monkeypatch.setattr(args_from_weights, "SEARCH_SECONDS", 60.0)  # about 230 builds: 3.5 s alone, more beside others
    _registered_test_swin()
    with torch.device("meta"):
        net = timm.create_model("harden_test_swin", window_size=5, img_size=160, num_classes=3)
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in net.state_dict().items()}
    save_file(state, tmp_path / "swin.safetensors")
    with held_warnings() as said:
        model = harden.load(tmp_path / "swin.safetensors", arch="harden_test_swin")
    assert model.spec.model_args == {"window_size": 5} and model.spec.num_classes == 3
    told = " ".join(next(w for w in said if "window_size=5" in w).split())
    assert "patch_size" not in told and "its input size stays the name's 224x224, which the weights cannot" in told


def test_a_file_no_arguments_explain_is_refused_as_before(tmp_path):
    net, path = _saved(tmp_path, "test_resnet", {})
    from safetensors.torch import load_file, save_file
    state = load_file(path)
    state["layer1.0.conv1.weight"] = torch.zeros(7, 7, 3, 3)  # a width no argument of the name builds alone
    save_file(state, path)
    with pytest.raises(HardenError, match="do not fit the architecture"):
        harden.load(path, arch="test_resnet")


def test_a_warning_of_a_build_redone_at_the_trained_size_is_said_once(tmp_path):
    """A ViT fine-tuned at another size is built again at the size its position embedding says; the class count read
    from its head was warned by both builds' resolutions."""
    _saved(tmp_path, "test_vit", dict(img_size=32))
    with held_warnings() as said:
        model = harden.load(tmp_path / "m.safetensors", arch="test_vit")
    assert model.spec.input_size == (32, 32)
    counts = [w for w in said if "--num-classes 5" in w]
    assert len(counts) == 1, said


def test_layer_scales_in_the_file_build_the_vit_with_them(tmp_path):
    """DeiT-III's and CaiT-style fine-tuning's `init_values=1e-5`: the file holds ls1.gamma and ls2.gamma, which the
    name's default (None) builds without; built with a value (the file's scales replace it), said."""
    net, path = _saved(tmp_path, "test_vit", dict(init_values=1e-5))
    with held_warnings() as said:
        model = harden.load(path, arch="test_vit")
    assert model.spec.model_args == {"init_values": 1e-5}
    assert any("holds layer scales (ls1.gamma, ls2.gamma)" in " ".join(w.split()) for w in said), said
    x = torch.rand(2, 3, 160, 160)
    spec = model.eval().spec
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (spec.mean, spec.std))
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-5)


def _zeros(tmp_path, name, **kw):
    """A file of `name`'s shapes, made on the meta device (no initialisation: a search reads only the shapes)."""
    import timm
    from safetensors.torch import save_file
    with torch.device("meta"):
        net = timm.create_model(name, pretrained=False, **kw)
    save_file({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in net.state_dict().items()}, tmp_path / "z.safetensors")
    return tmp_path / "z.safetensors"


def test_another_variants_weights_are_refused_with_the_name_they_fit(tmp_path):
    """A width the name sets moved by the weights (test_vit's embed_dim 64 -> 96, as ViT-Ti's weights under ViT-S's
    name move 384 -> 192) makes them another variant's, whose head count no tensor holds: the name's is then a guess,
    refused and asked for. Weights of a sibling no argument reaches are refused with the timm name they fit."""
    path = _zeros(tmp_path, "test_vit", num_classes=5, embed_dim=96, num_heads=3)
    with pytest.raises(HardenError) as refused:
        harden.load(path, arch="test_vit")
    said = " ".join(str(refused.value).split())
    assert "embed_dim=96" in said and "--model-arg num_heads=VALUE" in said, said
    from harden.checkpoint import _siblings_hint  # what a refusal adds where no argument reaches the file's network
    path = _zeros(tmp_path, "test_vit4", num_classes=5)
    assert _siblings_hint(path, {"arch": "test_vit"}) == " The weights fit timm's test_vit4: --arch test_vit4."


def _small_vit_b_16(*, weights=None, progress=True, image_size: int = 224, **kwargs):
    """torchvision's vit_b_16 as its factory builds it (image_size from **kwargs, default 224), narrowed to a test's
    size: one layer of 32 features."""
    from torchvision.models.vision_transformer import VisionTransformer
    return VisionTransformer(image_size=image_size, patch_size=16, num_layers=1, num_heads=2, hidden_dim=32,
                             mlp_dim=64, **kwargs)


def test_a_torchvision_vit_fine_tuned_at_another_size_takes_it_and_its_weights_transform(tmp_path, monkeypatch):
    """torchvision's ViT-B/16 fine-tuned from its SWAG weights at 384 (`vit_b_16(image_size=384)`): its position
    embedding has 577 rows where the default build's has 197, and the load stopped there. The size is read from the
    embedding (built with image_size=384, said) and the transform is that of the factory's weights at 384 (SWAG's
    bicubic, ImageNet's statistics); at a size it has no weights for (96), the transform is left out as for a size
    given by a flag, and the message says what gave the size."""
    import torchvision

    from harden.models.config import torchvision_config
    assert torchvision_config("torchvision.models:vit_b_16", 384)["weights"] == "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1"
    assert torchvision_config("torchvision.models:vit_b_16", 96) is None
    monkeypatch.setattr(torchvision.models, "vit_b_16", _small_vit_b_16)
    torch.manual_seed(0)
    for side in (384, 96):
        net = _small_vit_b_16(image_size=side, num_classes=4).eval()
        torch.save(net.state_dict(), tmp_path / f"vit{side}.pth")
        with held_warnings() as said:
            model = harden.load(tmp_path / f"vit{side}.pth", arch="torchvision.models:vit_b_16")
        assert model.spec.input_size == (side, side) and model.spec.model_args == {"image_size": side}
        assert model.config_sources["input_size"] == "checkpoint weights (encoder.pos_embedding's positions)"
        told = " ".join(" ".join(said).split())
        assert f"trained at {side}x{side} (torchvision's weights for vit_b_16 say 224x224)" in told, told
        if side == 384:
            # given the size instead, it is built for it too (it stopped at "Wrong image height! Expected 224")
            given = harden.load(tmp_path / f"vit{side}.pth", arch="torchvision.models:vit_b_16", input_size=(384, 384))
            assert given.spec.model_args == {"image_size": 384} and given.config_sources["model_args"] == "--input-size"
            assert model.spec.interpolation == "bicubic" and model.spec.mean == (0.485, 0.456, 0.406)
            assert "IMAGENET1K_SWAG_E2E_V1" in model.config_sources["mean"]
            x = torch.rand(2, 3, side, side)
            mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
            with torch.no_grad():
                assert torch.allclose(model.eval()(x), net((x - mean) / std), atol=1e-5)
        else:
            assert "is not taken with a size given by the file's encoder.pos_embedding" in told, told


@pytest.mark.parametrize("factory, kw", [("mobilenet_v2", {"width_mult": 0.5}),
                                         ("mobilenet_v3_small", {"width_mult": 0.75}),
                                         ("mobilenet_v3_large", {"reduced_tail": True})])
def test_torchvision_factories_built_with_other_arguments(tmp_path, factory, kw):
    """torchvision's `mobilenet_v2(width_mult=0.5)` (its factory `(*, weights, progress, **kwargs)` under a decorator;
    MobileNetV3's through `_mobilenet_v3_conf(arch, **kwargs)` and the class's builder, two callables): with --arch
    the file loaded as a structurally pruned network (the right widths, a wrong account, no arguments kept) or, for
    the reduced tail, after the narrowing's 15 s; the factory's `**kwargs` are now read through to the callables they
    reach, a width multiplier searched over the values networks are built with, and the arguments found. Without
    --arch, the error names the factory whose names the weights have, with those arguments."""
    import torchvision
    torch.manual_seed(0)
    net = getattr(torchvision.models, factory)(num_classes=4, **kw).eval()
    torch.save(net.state_dict(), tmp_path / "m.pth")
    with held_warnings() as said:
        model = harden.load(tmp_path / "m.pth", arch=f"torchvision.models:{factory}")
    assert model.spec.model_args == kw and model.spec.num_classes == 4
    told = " ".join(" ".join(said).split())
    assert "builds tried on the meta device" in told and "pruned" not in told, told
    x = torch.rand(2, 3, 64, 64)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), net((x - mean) / std), atol=1e-5)
    if factory != "mobilenet_v2":
        return
    with pytest.raises(HardenError, match=r"Its weights have the names of torchvision's mobilenet_v2 built with "
                                          r"width_mult=0\.5 \(--arch torchvision\.models:mobilenet_v2, whose arguments "
                                          r"harden reads from the weights, or --model-arg width_mult=0\.5 with it\)\."):
        harden.load(tmp_path / "m.pth")


def test_a_vit_given_its_size_is_built_for_it(tmp_path):
    """DeiT's training script saves `{'model': ..., 'args': Namespace(model=name, nb_classes=10, input_size=160, ...)}`
    and a user may give `--input-size`: harden took the size but built the timm ViT at its name's own, so the load
    stopped at "cannot run on a batch of 2 x 3 x 160 x 160 (Input height (160) doesn't match model (224))". A size
    given (flag or metadata) to a timm class that takes `img_size` is now passed to it, as its training passed it."""
    import argparse

    import timm
    torch.manual_seed(0)
    net = timm.create_model("test_vit", num_classes=10, img_size=64).eval()
    args = argparse.Namespace(model="test_vit", nb_classes=10, input_size=64, batch_size=64, lr=5e-4)
    torch.save({"model": net.state_dict(), "optimizer": {}, "epoch": 299, "args": args}, tmp_path / "checkpoint.pth")
    model = harden.load(tmp_path / "checkpoint.pth")
    assert model.spec.input_size == (64, 64) and model.spec.model_args == {"img_size": 64}
    torch.save(net.state_dict(), tmp_path / "sd.pth")
    model = harden.load(tmp_path / "sd.pth", arch="test_vit", input_size=(64, 64))
    assert model.spec.model_args == {"img_size": 64} and model.config_sources["model_args"] == "--input-size"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), net(x), atol=1e-5)  # mean 0 and std 1: timm's are not taken at a size


def test_a_facebook_script_s_model_is_timm_s_where_torchvision_has_the_name_too(tmp_path):
    """DeiT's and ConvNeXt's main.py build `timm.create_model(args.model, num_classes=args.nb_classes)` and save those
    args: a name torchvision's factories have too (`efficientnet_b0`, ConvNeXt's `convnext_tiny`) was read as
    torchvision's factory, whose layout is another, and the load stopped at a key mismatch. A script's args with
    `nb_classes` (which torchvision's reference scripts never save) now name timm's model."""
    import argparse

    import timm
    torch.manual_seed(0)
    net = timm.create_model("efficientnet_b0", num_classes=7).eval()
    args = argparse.Namespace(model="efficientnet_b0", nb_classes=7, input_size=96, drop_path=0.1, lr=4e-3)
    torch.save({"model": net.state_dict(), "optimizer": {}, "epoch": 9, "args": args}, tmp_path / "checkpoint-best.pth")
    model = harden.load(tmp_path / "checkpoint-best.pth")
    assert (model.spec.arch, model.spec.num_classes, model.spec.input_size) == ("efficientnet_b0", 7, (96, 96))
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
        assert torch.allclose(model.eval()(x), net((x - mean) / std), atol=1e-5)


def test_the_swin_repository_s_checkpoint_loads_with_no_flag(tmp_path, monkeypatch):
    """Microsoft's Swin Transformer repository saves `{'model': ..., 'optimizer', 'max_accuracy', 'epoch', 'config':
    yacs CfgNode}`, its weights in the original layout (a stage's downsample at its end, `head.weight`, the relative
    position indices): timm's converter read the weights, but nothing read the architecture, so the load asked for
    --arch and --num-classes. Its config's MODEL.NAME (a timm name, or the one its type and sizes spell),
    MODEL.NUM_CLASSES, DATA.IMG_SIZE and DATA.INTERPOLATION, and its evaluation transform (256/224 and a centre crop
    where TEST.CROP), are now read; the network answers as the original."""
    import re
    import sys

    import timm
    _registered_test_swin()
    (tmp_path / "yacs").mkdir()
    (tmp_path / "yacs" / "__init__.py").write_text("")
    (tmp_path / "yacs" / "config.py").write_text("class CfgNode(dict):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from yacs.config import CfgNode  # a stand-in for yacs' own (a dict subclass, pickled as its class)
    torch.manual_seed(0)
    net = timm.create_model("harden_test_swin", num_classes=4).eval()
    original = {}
    for k, v in net.state_dict().items():  # timm's layout back to the repository's
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        original[k.replace("head.fc.", "head.")] = v
        if k.endswith("attn.relative_position_bias_table"):
            original[k.replace("bias_table", "index")] = torch.zeros(49, 49, dtype=torch.long)
    config = CfgNode(MODEL=CfgNode(TYPE="swin", NAME="harden_test_swin", NUM_CLASSES=4),
                     DATA=CfgNode(IMG_SIZE=224, INTERPOLATION="bicubic"), TEST=CfgNode(CROP=True))
    torch.save({"model": original, "optimizer": {}, "max_accuracy": 81.2, "epoch": 299, "config": config},
               tmp_path / "ckpt_epoch_299.pth")
    for name in [m for m in sys.modules if m == "yacs" or m.startswith("yacs.")]:
        monkeypatch.delitem(sys.modules, name)  # read as data: the class is never imported
    model = harden.load(tmp_path / "ckpt_epoch_299.pth")
    spec = model.spec
    assert (spec.arch, spec.num_classes, spec.input_size, spec.interpolation) == ("harden_test_swin", 4, (224, 224),
                                                                                  "bicubic")
    assert spec.crop_pct == 224 / 256 and spec.mean == (0.485, 0.456, 0.406)
    x = torch.rand(2, 3, 224, 224)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (spec.mean, spec.std))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), net((x - mean) / std), atol=1e-5)
    from harden.formats import _swin_train_config
    fine_tuned = {"MODEL": {"TYPE": "swin", "NAME": "swin_base_patch4_window12_384_22kto1k_finetune", "NUM_CLASSES": 100,
                            "SWIN": {"EMBED_DIM": 128, "DEPTHS": [2, 2, 18, 2], "WINDOW_SIZE": 12}},
                  "DATA": {"IMG_SIZE": 384}, "TEST": {"CROP": False}}
    assert _swin_train_config(fine_tuned) == {"arch": "swin_base_patch4_window12_384", "num_classes": 100,
                                              "input_size": [384, 384], "crop_pct": 1.0, "crop_mode": "squash",
                                              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_a_torchvision_family_at_other_depths_without_arch_names_its_class(tmp_path):
    """A state dict of torchvision's `ResNet(BasicBlock, [1, 1, 1, 1])` given no --arch: the error named only its
    head's rows; its names are a torchvision ResNet's but for their numbers, so it now names the class with the
    arguments the search reads from the weights (4 classes, as the factories' test above: their shapes are built once
    a count)."""
    from torchvision.models.resnet import BasicBlock, ResNet
    torch.manual_seed(0)
    torch.save(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=4).state_dict(), tmp_path / "r10.pth")
    with pytest.raises(HardenError, match=r"Its weights have the names of torchvision's ResNet class at other depths, "
                                          r"built with block='BasicBlock', layers=\[1, 1, 1, 1\] \(--arch "
                                          r"torchvision\.models\.resnet:ResNet, whose arguments harden reads from the "
                                          r"weights, or --model-arg block=BasicBlock --model-arg layers=\[1,1,1,1\] "
                                          r"with it\)\.$"):
        harden.load(tmp_path / "r10.pth")
