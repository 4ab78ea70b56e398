"""A whole pickled model that says its architecture needs no --arch: one made only of torch.nn's layers (loaded,
computing what the pickled module computes, hardened, and written to a checkpoint that rebuilds without the pickle),
a timm model (its name, class count, channels, size and preprocessing from its own attributes) and a torchvision
model (the factory that builds its class with its weights' names and shapes)."""
import argparse
import inspect
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import harden
from harden import HardenError
from harden.errors import WeightsDoNotFit


def tutorial_net(in_chans=1, classes=10) -> nn.Sequential:
    """An MNIST tutorial's model: a Sequential with BatchNorm, dropout, a flatten and a log-softmax head."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(in_chans, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Dropout(0.25), nn.Flatten(), nn.Linear(6 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, classes),
                        nn.LogSoftmax(dim=1))
    net(torch.rand(16, in_chans, 8, 8))  # moves BatchNorm's running statistics off their start
    return net.eval()


class ScriptsOwnBlock(nn.Module):  # pickled as this test module's class: its forward is code, not a layer
    def forward(self, x):
        return x * 2


def outputs_agree(model, net, chans=1):
    x = torch.rand(5, chans, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(model.eval()(x), net(x), atol=1e-6)


@pytest.mark.parametrize("how", ["zip", "legacy", "dict with DataParallel", "torch.compile's wrapper"])
def test_pickled_sequential_loads_without_arch(tmp_path, how):
    net, path = tutorial_net(), tmp_path / "model.pt"
    if how == "zip":
        torch.save(net, path)
    elif how == "legacy":
        torch.save(net, path, _use_new_zipfile_serialization=False)
    elif how.startswith("dict"):
        torch.save({"model": nn.DataParallel(net), "epoch": 3, "acc": 98.1}, path)
    else:  # pickles as (OptimizedModule, (the module, the compile settings)); never compiled here (compiling is lazy)
        torch.save(torch.compile(net), path)
    model = harden.load(path, input_size=8)
    assert model.spec.arch == "torch-layers"
    assert (model.spec.num_classes, model.spec.in_chans) == (10, 1)  # the last linear's rows, the first conv's input
    assert "rebuilt from torch.nn's own layers" in model.load_notes[0], model.load_notes
    assert outputs_agree(model, net)


def test_an_all_convolutional_head_says_its_class_count_by_its_output(tmp_path):
    """No linear layer to read the count from (a 1x1 convolution to the classes and a global pool, as
    all-convolutional and NIN-style networks end): the output of two images says it, for a whole pickled Sequential
    and for a state dict whose --arch takes no count."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 7, 1), nn.AdaptiveAvgPool2d(1)).eval()
    torch.save(net, tmp_path / "whole.pt")
    model = harden.load(tmp_path / "whole.pt", input_size=8)
    assert model.spec.num_classes == 7 and model.config_sources["num_classes"] == "the network's output width"
    assert outputs_agree(model, lambda x: net(x).flatten(1), chans=3)
    (tmp_path / "allconv.py").write_text(
        "from torch import nn\n\n\nclass AllConv(nn.Sequential):\n    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 7, 1), nn.AdaptiveAvgPool2d(1))\n")
    torch.save(net.state_dict(), tmp_path / "state.pt")
    model = harden.load(tmp_path / "state.pt", arch=f"{tmp_path / 'allconv.py'}:AllConv", input_size=8)
    assert model.spec.num_classes == 7 and outputs_agree(model, lambda x: net(x).flatten(1), chans=3)


@pytest.mark.parametrize("softmax_when", ["always", "at inference"])
def test_a_softmax_head_is_trained_on_its_logarithm_and_written_as_it_is(digits, digits_model, softmax_when):
    """A network that ends in a softmax (always, or only in eval mode, where training's attack runs): a cross-entropy
    of its probabilities taken as logits has almost no gradient, and `fix` collapsed it to chance (88.5% clean ->
    11%). Training sees log(p); the hardened model still returns probabilities."""
    import copy

    class SoftmaxHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = copy.deepcopy(digits_model)

        def forward(self, x):
            z = self.body(x)
            return z if self.training and softmax_when == "at inference" else z.softmax(1)

    kw = dict(attacks=["fgsm"], n=200, metrics=False, masking_checks=False)
    base = harden.evaluate(SoftmaxHead(), digits, **kw)
    res = harden.fix(SoftmaxHead(), digits, sets=["eps=0.1"], epochs=3, data_frac=0.3, report=False, device="cpu")
    fixed = harden.evaluate(res.model, digits, **kw)
    assert fixed.clean_accuracy > base.clean_accuracy - 0.1 and fixed.output_kind == "probabilities", (base, fixed)
    assert "_log_where_probabilities" not in res.model.__dict__


def test_a_recipe_that_wraps_the_forward_trains_a_softmax_head_on_its_logarithm_too():
    """idfr's patch runs the whole forward (embed, its restorer, classify: the head's softmax kept); while such a model
    trains it gives log(p), as a plain forward does, and returns probabilities again after."""
    from harden.outputs import trained_as_log_probabilities
    from harden.recipes import get_recipe
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5),
                        nn.Softmax(dim=1)).eval()
    model = harden.models.from_module(net, input_size=8, in_chans=1, num_classes=5)
    get_recipe("idfr").attach(model, {"stage": "idfr", "residual": True})
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        p = model(x)
        assert torch.allclose(p.sum(1), torch.ones(6)) and (p >= 0).all()
        with trained_as_log_probabilities(model, True):
            assert torch.allclose(model(x), p.log(), atol=1e-6)
        assert torch.equal(model(x), p)


def test_one_output_is_a_binary_classifiers_logit(tmp_path, digits):
    """A network with one output (a binary classifier's logit, trained with BCEWithLogitsLoss) is two classes, read
    as the scores (0, z): given to the library it was refused as "the model has only 1 classes", and a pickled one
    loaded as one class."""
    two = digits.y_test < 2
    x, y = digits.x_test[:][two], digits.y_test[two]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 1))
    report = harden.evaluate(net, (x, y), attacks=["fgsm"], n=len(y), metrics=False, masking_checks=False)
    with torch.no_grad():
        z = net(torch.as_tensor(x).float().reshape(len(x), 1, 8, 8) / (255 if x.dtype == "uint8" else 1)).squeeze(1)
    assert report.clean_accuracy == pytest.approx(float(((z > 0).long() == torch.as_tensor(y)).float().mean()))
    torch.save(net, tmp_path / "binary.pt")
    assert harden.load(tmp_path / "binary.pt", input_size=8, in_chans=1).spec.num_classes == 2


def test_a_pickled_sequential_that_shares_a_block_or_a_weight_is_rebuilt_sharing_them(tmp_path, digits):
    """A block applied twice and a weight tied between two layers are one object in the pickle: the rebuilt
    network shares them too, so hardening trains each as one, and the written checkpoint rebuilds them shared."""
    torch.manual_seed(0)
    block, a, b = nn.Conv2d(4, 4, 3, padding=1), nn.Linear(16, 16), nn.Linear(16, 16)
    b.weight = a.weight
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), block, nn.ReLU(), block, nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), a, nn.ReLU(), b, nn.ReLU(), nn.Linear(16, 10)).eval()
    torch.save(net, tmp_path / "shared.pt")
    model = harden.load(tmp_path / "shared.pt", input_size=8)
    assert model.net[2] is model.net[4] and model.net[7].weight is model.net[9].weight
    assert model.net[7].bias is not model.net[9].bias
    assert outputs_agree(model, net)
    res = harden.fix(model, digits, recipe="at", epochs=1, data_frac=0.1, report=False, device="cpu",
                     sets=["eps=0.1", "val_frac=0"])
    assert res.model.net[2] is res.model.net[4] and res.model.net[7].weight is res.model.net[9].weight  # trained as one
    harden.save(res.model, tmp_path / "hardened.safetensors")
    again = harden.load(tmp_path / "hardened.safetensors")
    assert again.net[2] is again.net[4] and again.net[7].weight is again.net[9].weight
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), res.model.eval()(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_a_pickled_sequential_saved_in_another_precision_runs_in_float32(tmp_path, dtype):
    """torch.save(model.half()) or of a model trained in double: the rebuilt network is float32 (harden feeds float32
    images), its weights widened exactly or rounded, and the load notes say which."""
    net = tutorial_net().to(dtype)
    torch.save(net, tmp_path / "model.pt")
    model = harden.load(tmp_path / "model.pt", input_size=8)
    assert all(t.dtype == torch.float32 for t in model.net.state_dict().values() if t.is_floating_point())
    said = "widened exactly" if dtype == torch.float16 else "rounded to the network's float32"
    assert any(f"weights stored as {str(dtype).removeprefix('torch.')}, {said}" in n for n in model.load_notes)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net.float()(x) if dtype == torch.float16 else net(x.double()).float()  # the same weights in float32
        assert torch.allclose(model.eval()(x), want, atol=1e-5)


def test_arch_given_anyway_takes_none_of_the_trees_arguments(tmp_path):
    """--arch still wins (with a warning), built with its own arguments: the tree is the file's, not the function's."""
    (tmp_path / "make_net.py").write_text("from torch import nn\n\n\ndef make():\n    return nn.Sequential("
                                          "nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2), "
                                          "nn.Dropout(0.25), nn.Flatten(), nn.Linear(6 * 4 * 4, 16), nn.ReLU(), "
                                          "nn.Linear(16, 10), nn.LogSoftmax(dim=1))\n")
    net = tutorial_net()
    torch.save(net, tmp_path / "model.pt")
    model = harden.load(tmp_path / "model.pt", arch=f"{tmp_path / 'make_net.py'}:make", input_size=8)
    assert model.spec.arch.endswith("make_net.py:make") and not model.spec.model_args
    assert outputs_agree(model, net)


def test_hardened_checkpoint_rebuilds_without_the_pickle(tmp_path, digits):
    net, path = tutorial_net(), tmp_path / "model.pt"
    torch.save(net, path)
    res = harden.fix(harden.load(path, input_size=8), digits, recipe="at", epochs=1, data_frac=0.2, report=False,
                     device="cpu", sets=["eps=0.1", "val_frac=0"])
    out = tmp_path / "hardened.safetensors"
    harden.save(res.model, out)
    path.unlink()  # nothing of the pickle is needed again
    again = harden.load(out)
    assert again.spec.arch == "torch-layers" and again.spec.input_size == (8, 8)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), res.model.eval()(x))
        assert not torch.allclose(again(x), net(x))  # it trained


def test_a_pruned_sequential_loads_without_arch_and_keeps_its_masks(tmp_path):
    """torch.nn.utils.prune's hooks (pruned twice: a container of two methods) are the one kind of hook read: the
    tree is rebuilt with the plain weight, the masks come back from the file's weight_mask (pruned.py); the output
    is the pickled model's, and what harden writes keeps the masks."""
    from torch.nn.utils import prune
    net = tutorial_net()
    prune.l1_unstructured(net[0], "weight", amount=0.5)
    prune.random_unstructured(net[0], "weight", amount=0.3)
    prune.l1_unstructured(net[6], "weight", amount=0.4)
    torch.save(net, tmp_path / "pruned.pt")
    model = harden.load(tmp_path / "pruned.pt", input_size=8)
    assert model.spec.arch == "torch-layers" and any(n.startswith("pruned as saved: the masks of 2") for n in
                                                     model.load_notes), model.load_notes
    assert outputs_agree(model, net)
    harden.save(model, tmp_path / "p.safetensors")
    again = harden.load(tmp_path / "p.safetensors")
    assert "0.weight_mask" in again.net.state_dict() and outputs_agree(again, net)


def test_a_tree_with_other_code_needs_arch(tmp_path):
    """The script's own module, a hook or a class outside torch.nn leaves the architecture to --arch, as before."""
    with_own = nn.Sequential(nn.Conv2d(1, 4, 3), ScriptsOwnBlock(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    hooked = tutorial_net()
    hooked[0].register_forward_hook(print)
    for i, net in enumerate((with_own, hooked)):
        torch.save(net, tmp_path / f"m{i}.pt")
        with pytest.raises(HardenError, match="--arch"):
            harden.load(tmp_path / f"m{i}.pt", input_size=8)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layers_that_keep_a_function_or_an_unexported_class(tmp_path, activation):
    """TransformerEncoderLayer keeps its activation as a function (F.relu; F.gelu pickles as torch._C._nn.gelu) and
    its attention's output projection is a class torch.nn does not export: both rebuilt, and again from the hardened
    checkpoint's tree."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(2), nn.TransformerEncoderLayer(32, 2, 64, batch_first=True, activation=activation),
                        nn.Flatten(), nn.Linear(3 * 32, 4)).eval()
    torch.save(net, tmp_path / "t.pt")
    model = harden.load(tmp_path / "t.pt", input_size=(4, 8)).eval()
    harden.save(model, tmp_path / "t.safetensors")
    x = torch.rand(2, 3, 4, 8)
    with torch.no_grad():
        for m in (model, harden.load(tmp_path / "t.safetensors").eval()):
            assert m.spec.arch == "torch-layers" and torch.allclose(m(x), net(x), atol=1e-6)


def test_names_outside_torch_nn_are_refused():
    import torchvision
    from harden.models.torch_layers import NotPlain, build, layer_class
    assert layer_class("torch.nn.modules.conv.Conv2d") is nn.Conv2d
    assert layer_class("torchvision.models.resnet.BasicBlock") is torchvision.models.resnet.BasicBlock
    for name in ("torch.nn.modules.conv.Linear", "os.system", "torch.nn.modules.module.__class__", "builtins.eval",
                 "torch.nn.Conv2d", "torchvision.models.resnet.resnet18", "torchvision.models.resnet._resnet",
                 "torchvision.models.nothing.Net", "torchvision.io.image.read_image", "fastai.layers.Module"):
        with pytest.raises(NotPlain):
            layer_class(name)
    from timm.layers.format import Format

    from harden.models.torch_layers import enum_class, functional
    assert enum_class("timm.layers.format.Format") is Format
    for name in ("os.SEEK_SET", "enum.Enum", "timm.layers.format.Nothing", "timm.models.resnet.ResNet",
                 "subprocess.Popen"):
        with pytest.raises(NotPlain):
            enum_class(name)
    assert functional("torch.nn.functional.relu") is torch.nn.functional.relu
    for name in ("torch._C._nn._parse_to", "os.system", "torch.nn.functional.Tensor", "torch.nn.functional.torch"):
        with pytest.raises(NotPlain):
            functional(name)
    with pytest.raises(HardenError, match="cannot be rebuilt"):
        build({"tree": {"class": "subprocess.Popen", "settings": {}, "parameters": {}, "buffers": {}, "children": {}}})
    linear = '{"class": "torch.nn.modules.linear.Linear", "settings": %s, "parameters": %s, "buffers": {}, "children": {}}'
    for damaged in ("{", "[" * 5000 + "]" * 5000, linear % ("[]", "{}"), linear % ("{}", '{"weight": [[2, 2], "float99"]}'),
                    linear % ("{}", '{"weight": [[1000000000, 1000000000], "float32"]}')):
        with pytest.raises(HardenError, match="damaged|cannot be rebuilt"):
            build({"tree": damaged})


def test_cli_evaluates_a_pickled_sequential(tmp_path, cli):
    torch.save(tutorial_net(), tmp_path / "model.pt")
    code, out, err = cli("eval", tmp_path / "model.pt", "--data", "digits", "--input-size", "8", "--attack", "fgsm",
                         "--eps", "0.1", "--n", "20", "--no-metrics", "--no-masking-checks", "-q",
                         "--json", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 20


@pytest.mark.parametrize("name, kw", [
    ("vit_tiny_patch16_224", dict(img_size=32, num_classes=5, global_pool="avg")),  # size and pooling: constructor's
    ("convnext_atto", dict(num_classes=4, in_chans=1)),  # a grey model: RGB's statistics averaged
])
def test_pickled_timm_model_says_its_architecture(tmp_path, name, kw):
    import timm
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, **kw).eval()
    torch.save({"model": net, "epoch": 9}, tmp_path / "m.pt")
    model = harden.load(tmp_path / "m.pt").eval()
    spec = model.spec
    assert spec.arch == name and spec.num_classes == kw["num_classes"] and spec.in_chans == kw.get("in_chans", 3)
    assert spec.input_size == (kw.get("img_size", 224),) * 2 and len(spec.mean) == spec.in_chans
    assert f"its architecture the {name} it says it is" in model.load_notes[0]
    x = torch.rand(2, spec.in_chans, *spec.input_size)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (spec.mean, spec.std))
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-5)


def test_pickled_timm_model_with_a_head_replaced_by_hand(tmp_path):
    """`model.head.fc = nn.Linear(..., 3)` leaves timm's num_classes attribute at 1000: the count is the head's rows
    (the head named by the model's pretrained_cfg)."""
    import timm
    torch.manual_seed(0)
    net = timm.create_model("convnext_atto", pretrained=False)
    net.head.fc = nn.Linear(net.head.fc.in_features, 3)
    torch.save(net.eval(), tmp_path / "m.pt")
    model = harden.load(tmp_path / "m.pt").eval()
    assert model.spec.num_classes == 3
    x = torch.rand(2, 3, 64, 64)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-5)


def _rebuilt_as_pickled(net: nn.Module, tmp_path, **load_kw):
    """`net` saved whole and loaded: rebuilt from its pickled tree of modules, it computes what `net` computes on 32-px
    images, and what harden writes from it reloads the same."""
    torch.save(net, tmp_path / "m.pt")
    model = harden.load(tmp_path / "m.pt", **load_kw).eval()
    assert "rebuilt from torch.nn's own layers" in model.load_notes[0]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))
    harden.save(model, tmp_path / "out.safetensors")
    with torch.no_grad():
        assert torch.equal(harden.load(tmp_path / "out.safetensors").net(x), net(x))
    return model


@pytest.mark.parametrize("change", ["depth", "pruned heads"])
def test_pickled_timm_model_built_or_pruned_otherwise_than_its_name_is_rebuilt_as_pickled(tmp_path, change):
    """A timm ViT built with another depth than its name's (`create_model(..., depth=4)`), or pruned by torch-pruning
    (fewer heads, narrower embedding; torch-pruning's own recipe sets each attention's num_heads, head_dim and attn_dim
    after the pruning, and saves the whole model): its name builds other tensors, so the pickled tree of timm's
    modules is rebuilt as it is (their attributes included), with the name's preprocessing, and computes what the
    pickled model computes; what harden writes reloads the same."""
    import timm
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, depth=4 if change == "depth" else 2)
    net.eval()
    if change == "pruned heads":
        tp = pytest.importorskip("torch_pruning")
        heads = {blk.attn.qkv: blk.attn.num_heads for blk in net.blocks}
        pruner = tp.pruner.MetaPruner(net, torch.randn(1, 3, 32, 32), importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=0.5, head_pruning_ratio=0.5, ignored_layers=[net.head],
                                      num_heads=heads, prune_num_heads=True, prune_head_dims=False)
        pruner.step()
        for blk in net.blocks:
            blk.attn.num_heads = pruner.num_heads[blk.attn.qkv]
            blk.attn.head_dim = blk.attn.qkv.out_features // (3 * blk.attn.num_heads)
            blk.attn.attn_dim = blk.attn.num_heads * blk.attn.head_dim
        assert net.blocks[0].attn.num_heads == 1 and net.cls_token.shape[-1] < 192
    model = _rebuilt_as_pickled(net, tmp_path)
    assert model.spec.num_classes == 5 and model.spec.input_size == (32, 32) and list(model.spec.mean) == [0.5] * 3


def test_pickled_timm_model_with_pruning_masks_keeps_its_name(tmp_path):
    """torch.nn.utils.prune's masks on a pickled timm model (weight_orig and weight_mask in place of weight) are what
    a load fits: its name still builds it, so it loads as that timm model, not as a rebuilt tree."""
    import timm
    from torch.nn.utils import prune
    net = timm.create_model("resnet10t", num_classes=5).eval()
    prune.l1_unstructured(net.fc, "weight", amount=0.5)
    torch.save(net, tmp_path / "m.pt")
    model = harden.load(tmp_path / "m.pt")
    assert model.spec.arch == "resnet10t"
    x = torch.rand(2, 3, 32, 32)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-5)


@pytest.mark.parametrize("build", [
    lambda tv: tv.models.DenseNet(growth_rate=4, block_config=(1, 1), num_init_features=8, bn_size=2, num_classes=5),
    lambda tv: tv.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8,
                                           mlp_dim=16, num_classes=5),
], ids=["densenet private blocks", "vit partial norm layer"])
def test_pickled_torchvision_classes_no_factory_builds_are_rebuilt_as_pickled(tmp_path, build):
    """torchvision's classes built at sizes no factory has: DenseNet's private `_DenseBlock`/`_DenseLayer` and the
    ViT's `norm_layer = partial(nn.LayerNorm, eps=1e-6)` setting are rebuilt as pickled, exactly."""
    import torchvision
    torch.manual_seed(0)
    model = _rebuilt_as_pickled(build(torchvision).eval(), tmp_path, input_size=32)
    assert model.spec.arch == "torch-layers" and model.spec.num_classes == 5


def test_pickled_torchvision_model_with_a_cifar_stem_is_rebuilt_as_pickled(tmp_path):
    """CIFAR training code's torchvision ResNet-18 with its stem swapped (`m.conv1 = nn.Conv2d(3, 64, 3, 1, 1)`,
    `m.maxpool = nn.Identity()`), saved whole: no factory builds it, so its pickled tree of torchvision's modules is
    rebuilt as it was saved (its `_norm_layer` class among the settings) and computes what it computes; what harden
    writes reloads the same."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    model = _rebuilt_as_pickled(net.eval(), tmp_path)
    assert model.spec.arch == "torch-layers" and model.spec.num_classes == 10


def test_pickled_torchvision_model_is_found_by_its_factory(tmp_path):
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=1000)
    net.fc = nn.Linear(512, 6)  # fine-tuned the usual way: a new head of the same kind
    net.class_to_idx = {name: i for i, name in enumerate("abcdef")}  # the transfer-learning tutorials keep it so
    torch.save(net.eval(), tmp_path / "m.pt")
    model = harden.load(tmp_path / "m.pt").eval()
    assert (model.spec.arch, model.spec.num_classes) == ("torchvision.models:resnet18", 6)
    assert model.spec.extra["label_names"] == list("abcdef")
    assert model.spec.input_size == (224, 224) and model.config_sources["mean"].startswith("torchvision")
    assert "its architecture the torchvision.models:resnet18 it says it is" in model.load_notes[0]
    x = torch.rand(2, 3, 224, 224)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-5)
    torch.save(net.state_dict(), tmp_path / "state.pt")  # a plain state dict still takes --arch, and is told which
    with pytest.raises(HardenError, match=r"shapes of torchvision's resnet18: --arch torchvision.models:resnet18 "):
        harden.load(tmp_path / "state.pt")
    # OpenMMLab's (mmpretrain) ResNet: torchvision's names under `backbone.`, its classifier under `head.`
    mm = {("head." if k.startswith("fc.") else "backbone.") + k: v for k, v in net.state_dict().items()}
    torch.save({"meta": {"CLASSES": list("abcdef")}, "state_dict": mm}, tmp_path / "mm.pth")
    with pytest.raises(HardenError, match=r"shapes of torchvision's resnet18 \(under the key prefixes 'backbone\.', "
                                          r"'head\.', which a load removes\): --arch torchvision.models:resnet18 "):
        harden.load(tmp_path / "mm.pth")
    mm_model = harden.load(tmp_path / "mm.pth", arch="torchvision.models:resnet18")
    assert mm_model.spec.extra["label_names"] == list("abcdef")
    with torch.no_grad():
        assert torch.equal(mm_model.net(x), net(x))
    net.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(512, 6))  # a head no factory builds: rebuilt as pickled
    torch.save(net.eval(), tmp_path / "other.pt")
    other = harden.load(tmp_path / "other.pt")
    assert other.spec.arch == "torch-layers" and other.spec.num_classes == 6
    with torch.no_grad():
        assert torch.equal(other.net(x), net(x))
    torch.save(net.state_dict(), tmp_path / "other_state.pt")
    with pytest.raises(HardenError) as no_factory:
        harden.load(tmp_path / "other_state.pt")
    assert "names and shapes of torchvision" not in str(no_factory.value)


def test_a_fastai_export_loads_without_fastai_or_arch(tmp_path, monkeypatch):
    """`learn.export()` pickles the whole Learner (fastai.learner.Learner): its model, a torchvision body's children
    and vision_learner's head (fastai.layers.AdaptiveConcatPool2d and Flatten before torch.nn's layers), is found in
    it and rebuilt with harden's stand-ins for fastai's two layers: the same outputs, with fastai not importable. Its
    data loaders, emptied of data, keep their transforms: Resize (its size a fastcore fastuple) and Normalize say the
    input size and normalisation."""
    import sys
    import types

    import torchvision
    modules = {n: types.ModuleType(n) for n in ("fastai", "fastai.layers", "fastai.learner", "fastai.data",
                                                 "fastai.data.core", "fastai.data.transforms", "fastai.vision",
                                                 "fastai.vision.augment", "fastcore", "fastcore.basics",
                                                 "fastcore.transform")}

    class AdaptiveConcatPool2d(nn.Module):  # as fastai 2.x defines them
        def __init__(self, size=None):
            super().__init__()
            self.size = size or 1
            self.ap, self.mp = nn.AdaptiveAvgPool2d(self.size), nn.AdaptiveMaxPool2d(self.size)

        def forward(self, x):
            return torch.cat([self.mp(x), self.ap(x)], 1)

    class Flatten(nn.Module):
        def __init__(self, full=False):
            super().__init__()
            self.full = full

        def forward(self, x):
            return x.view(-1) if self.full else x.view(x.size(0), -1)

    class fastuple(tuple):  # fastcore's name
        pass

    class Holder:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    made = {}
    for where, name, base in (("fastai.layers", "AdaptiveConcatPool2d", AdaptiveConcatPool2d),
                              ("fastai.layers", "Flatten", Flatten), ("fastcore.basics", "fastuple", fastuple),
                              ("fastai.learner", "Learner", Holder), ("fastai.data.core", "DataLoaders", Holder),
                              ("fastai.data.core", "TfmdDL", Holder), ("fastcore.transform", "Pipeline", Holder),
                              ("fastai.vision.augment", "Resize", Holder),
                              ("fastai.data.transforms", "IntToFloatTensor", Holder),
                              ("fastai.data.transforms", "Normalize", Holder)):
        cls = base if base is not Holder else type(name, (Holder,), {})
        cls.__module__, cls.__qualname__, cls.__name__ = where, name, name
        setattr(modules[where], name, cls)
        made[name] = cls
    for name, mod in modules.items():
        mod.__path__ = []
        monkeypatch.setitem(sys.modules, name, mod)
    torch.manual_seed(0)
    body = torchvision.models.squeezenet1_1(num_classes=10).features
    head = nn.Sequential(made["AdaptiveConcatPool2d"](), made["Flatten"](), nn.BatchNorm1d(1024), nn.Dropout(0.25),
                         nn.Linear(1024, 16), nn.ReLU(inplace=True), nn.BatchNorm1d(16), nn.Dropout(0.5),
                         nn.Linear(16, 3))
    net = nn.Sequential(body, head).eval()
    resize = made["Resize"](size=made["fastuple"]((96, 96)), method="squish", order=1)
    normalize = made["Normalize"](mean=torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
                                  std=torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), axes=(0, 2, 3))
    loader = made["TfmdDL"](after_item=made["Pipeline"](fs=[resize]),
                            after_batch=made["Pipeline"](fs=[made["IntToFloatTensor"](div=255.0), normalize]))
    learner = made["Learner"](model=net, dls=made["DataLoaders"](loaders=[loader, loader]),
                              loss_func=nn.CrossEntropyLoss(), lr=1e-3)
    torch.save(learner, tmp_path / "export.pkl")
    for name in modules:
        monkeypatch.delitem(sys.modules, name)  # fastai is not installed where harden reads it
    model = harden.load(tmp_path / "export.pkl").eval()
    assert model.spec.arch == "torch-layers" and model.spec.num_classes == 3
    assert tuple(model.spec.input_size) == (96, 96) and model.spec.crop_mode == "squash"
    assert model.spec.mean == pytest.approx((0.485, 0.456, 0.406)) and model.spec.std == pytest.approx((0.229, 0.224,
                                                                                                         0.225))
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-5)


def test_a_pickled_sequential_with_a_timm_backbone_loads_without_arch(tmp_path, monkeypatch):
    """A notebook's `nn.Sequential(timm.create_model(..., num_classes=0), nn.Linear(...))`, and fastai's TimmBody
    around a timm model (vision_learner with a timm architecture): timm's modules rebuilt with their settings (dicts
    of plain data: pretrained_cfg), the same outputs; kept in the hardened checkpoint's tree."""
    import sys
    import types

    import timm
    torch.manual_seed(0)
    backbone = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=0)
    with torch.no_grad():
        pooled, maps = backbone.eval()(torch.rand(1, 3, 64, 64)).shape[1], backbone.num_features
    net = nn.Sequential(backbone, nn.Linear(pooled, 4)).eval()
    torch.save(net, tmp_path / "seq.pt")
    model = harden.load(tmp_path / "seq.pt", input_size=64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert model.spec.arch == "torch-layers" and torch.allclose(model.net(x), net(x), atol=1e-5)
    harden.save(model, tmp_path / "seq.safetensors")
    with torch.no_grad():
        assert torch.allclose(harden.load(tmp_path / "seq.safetensors").eval().net(x), net(x), atol=1e-5)

    modules = {n: types.ModuleType(n) for n in ("fastai", "fastai.vision", "fastai.vision.learner")}

    class TimmBody(nn.Module):  # as fastai 2.7 defines it
        def __init__(self, model):
            super().__init__()
            self.needs_pool = model.default_cfg.get("pool_size", None) is not None
            self.model = model

        def forward(self, x):
            return self.model.forward_features(x) if self.needs_pool else self.model(x)
    TimmBody.__module__, TimmBody.__qualname__ = "fastai.vision.learner", "TimmBody"
    modules["fastai.vision.learner"].TimmBody = TimmBody
    for name, mod in modules.items():
        mod.__path__ = []
        monkeypatch.setitem(sys.modules, name, mod)
    fast = nn.Sequential(TimmBody(backbone), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(maps, 3)).eval()
    torch.save(fast, tmp_path / "fast.pt")
    for name in modules:
        monkeypatch.delitem(sys.modules, name)
    again = harden.load(tmp_path / "fast.pt", input_size=64).eval()
    with torch.no_grad():
        assert torch.allclose(again.net(x), fast(x), atol=1e-5)


def test_a_factory_named_in_the_wrong_module_or_misspelt_is_pointed_to():
    """`torchvision:resnet18` (the factories live in torchvision.models) and a typo: the error names where it is."""
    with pytest.raises(HardenError, match=r"It is in torchvision\.models: --arch torchvision\.models:resnet18\."):
        harden.create_model("torchvision:resnet18", 10, 3, (32, 32))
    with pytest.raises(HardenError, match=r"Close names there: resnet18"):
        harden.create_model("torchvision.models:resnet1", 10, 3, (32, 32))


BLOCK = '''
class Block(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(i), nn.Conv2d(i, o, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(torch.relu(self.bn(x)))
'''


NAMED_CONFIGS = '''
from typing import Literal

import torch
import torch.nn as nn

cfg = {
    'VGG-A': [8, 'M', 16, 'M'],
    'VGG-B': [8, 8, 'M', 16, 'M'],
    'VGG-B2': [8, 8, 'M', 16, 'M'],  # the same layers as VGG-B under another name
    'VGG-W': [8, 8, 'M', 32, 'M'],
}


class VGG(nn.Module):  # pytorch-cifar's shape: the configuration by name, no class count, a view-flatten
    def __init__(self, vgg_name):
        super(VGG, self).__init__()
        self.features = self._make_layers(cfg[vgg_name])
        self.classifier = nn.Linear(cfg[vgg_name][-2] * 16, 10)  # 16 px in

    def forward(self, x):
        out = self.features(x)
        out = out.view(out.size(0), -1)
        return self.classifier(out)

    def _make_layers(self, cfg):
        layers, in_channels = [], 3
        for x in cfg:
            if x == 'M':
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, x, kernel_size=3, padding=1), nn.BatchNorm2d(x), nn.ReLU(inplace=True)]
                in_channels = x
        return nn.Sequential(*layers)


''' + BLOCK + '''

class WideResNet(nn.Module):  # TRADES' and RobustBench's signature: depth and width default to one network
    def __init__(self, depth=34, num_classes=10, widen_factor=10, sub_block1=False, dropRate=0.0, bias_last=True):
        super().__init__()
        assert (depth - 4) % 6 == 0
        n, w = (depth - 4) // 6, 2 * widen_factor
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.block1 = nn.Sequential(*[Block(4 if i == 0 else w, w) for i in range(n)])
        if sub_block1:
            self.sub_block1 = nn.Sequential(*[Block(4 if i == 0 else w, w) for i in range(n)])
        self.bn1 = nn.BatchNorm2d(w)
        self.fc = nn.Linear(w, num_classes, bias=bias_last)
        self.w = w

    def forward(self, x):
        out = torch.relu(self.bn1(self.block1(self.conv1(x))))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(out, 1).view(-1, self.w))


configs = {0.5: {'out_channels': 4}, 1: {'out_channels': 8}}  # pytorch-cifar's ShuffleNetV2(net_size): sizes as keys


class Shuffle(nn.Module):
    def __init__(self, net_size):
        super().__init__()
        width = configs[net_size]['out_channels']
        self.conv, self.linear = nn.Conv2d(3, width, 3), nn.Linear(width, 10)

    def forward(self, x):
        return self.linear(torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))


VALID_MODELS = ('eff-a', 'eff-b')  # EfficientNet-PyTorch's names, a tuple beside its from_name factory


class Eff(nn.Module):
    def __init__(self, width, num_classes=1000):
        super().__init__()
        self.stem, self.fc = nn.Conv2d(3, width, 3), nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(self.stem(x), 1).flatten(1))

    @classmethod
    def from_name(cls, model_name, in_channels=3, **override_params):
        return cls({'eff-a': 4, 'eff-b': 6}[model_name], **override_params)


class RequiredWRN(WideResNet):  # WideResNet-pytorch's signature: a depth and a class count with no default
    def __init__(self, depth, num_classes, widen_factor=1, dropRate=0.0):
        super().__init__(depth=depth, num_classes=num_classes, widen_factor=widen_factor, dropRate=dropRate)


class DropWRN(nn.Module):  # meliketoy's `Wide_ResNet(depth, widen_factor, dropout_rate, num_classes)`: all required
    def __init__(self, depth, widen_factor, dropout_rate, num_classes):
        super().__init__()
        assert (depth - 4) % 6 == 0, 'Wide-resnet depth should be 6n+4'
        n, w = (depth - 4) / 6, 2 * widen_factor
        strides = [1] + [1] * (int(n) - 1)  # one block at depth 4 as at 10, as its code builds
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(*[nn.Sequential(Block(4 if i == 0 else w, w), nn.Dropout(p=dropout_rate))
                                      for i, _ in enumerate(strides)])
        self.linear = nn.Linear(w, num_classes)

    def forward(self, x):
        return self.linear(torch.nn.functional.adaptive_avg_pool2d(self.layer1(self.conv1(x)), 1).flatten(1))


class Dense(nn.Module):  # bamos' `DenseNet(growthRate, depth, reduction, nClasses, bottleneck)`: no annotations
    def __init__(self, growthRate, depth, reduction, nClasses, bottleneck):
        super().__init__()
        blocks = (depth - 4) // 3 // (2 if bottleneck else 1)
        c = 2 * growthRate
        self.conv1 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        layers = []
        for _ in range(blocks):
            layers.append(nn.Sequential(nn.Conv2d(c, 4 * growthRate, 1), nn.Conv2d(4 * growthRate, growthRate, 3,
                                                                                   padding=1))
                          if bottleneck else nn.Conv2d(c, growthRate, 3, padding=1))
            c += growthRate
        self.dense = nn.ModuleList(layers)
        self.trans = nn.Conv2d(c, int(c * reduction), 1)
        self.fc = nn.Linear(int(c * reduction), nClasses)

    def forward(self, x):
        out = self.conv1(x)
        for layer in self.dense:
            out = torch.cat((out, layer(out)), 1)
        out = torch.nn.functional.adaptive_avg_pool2d(self.trans(out), 1).flatten(1)
        return torch.nn.functional.log_softmax(self.fc(out), dim=1)


class Stages(nn.Module):  # pytorch-cifar's `ResNet(block, num_blocks, num_classes=10)` and its factories beside it
    def __init__(self, block, num_blocks, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(*[block(4, 4) for _ in range(num_blocks[0])])
        self.linear = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.linear(torch.nn.functional.adaptive_avg_pool2d(self.layer1(self.stem(x)), 1).flatten(1))


class Normed(nn.Module):  # torchvision's and timm's `norm_layer=nn.BatchNorm2d`: a class passed as an argument
    def __init__(self, norm_layer, kind: str, act=nn.ReLU, num_classes=10):
        super().__init__()
        assert isinstance(kind, str), kind
        self.conv, self.norm, self.act = nn.Conv2d(3, 4, 3), norm_layer(4), act()
        self.linear = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.linear(self.act(self.norm(self.conv(x))).mean((2, 3)))


def Stages2():
    return Stages(Block, [2])


def Stages3():
    return Stages(Block, [3])


def Stages_test():  # a check its author runs by hand: never called by a load
    net = Stages2()
    open('called', 'w').write('yes')
    return net


class Configured(nn.Module):  # research code's `Net(args)`: its settings one object, read by attribute
    def __init__(self, args):
        super().__init__()
        self.conv = nn.Conv2d(3, args.width, 3)
        self.fc = nn.Linear(args.width, getattr(args, "n_out", 10))
        self.act = nn.ReLU() if args.layers["act"] == "relu" else nn.GELU()

    def forward(self, x):
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(self.act(self.conv(x)), 1).flatten(1))


class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1) @ v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class ViT(nn.Module):  # vit-pytorch's signature: every size keyword-only and required, channels and dim_head defaulted
    def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, channels=3, dim_head=64):
        super().__init__()
        assert image_size % patch_size == 0, 'Image dimensions must be divisible by the patch size.'
        self.p, patch_dim = patch_size, channels * patch_size ** 2
        self.to_patch_embedding = nn.Sequential(nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, (image_size // patch_size) ** 2 + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.layers = nn.ModuleList([nn.ModuleList([Attention(dim, heads, dim_head), nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))]) for _ in range(depth)])
        self.mlp_head = nn.Linear(dim, num_classes)

    def forward(self, img):
        b, c, h, w = img.shape
        x = img.reshape(b, c, h // self.p, self.p, w // self.p, self.p).permute(0, 2, 4, 3, 5, 1)
        x = self.to_patch_embedding(x.reshape(b, (h // self.p) * (w // self.p), -1))
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embedding
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.mlp_head(x[:, 0])


class Sized(nn.Module):  # a variant typed as a Literal, beside a class count harden gives
    def __init__(self, variant: Literal['s', 'm'], num_classes=10):
        super().__init__()
        width = {'s': 4, 'm': 8}[variant]
        self.body = nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))
'''


def _written(tmp_path, monkeypatch, name, code):
    """`code` written as tmp_path/<name>.py (the working folder, as a user's `--arch <name>.py:...` finds it) and
    imported here under another module name, for the test to build what the user trained."""
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"{name}_for_test", tmp_path / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nets(tmp_path, monkeypatch):
    return _written(tmp_path, monkeypatch, "nets", NAMED_CONFIGS)


def test_a_configuration_named_by_an_argument_is_found_from_the_weights(tmp_path, monkeypatch):
    """pytorch-cifar's `VGG('VGG19')` takes the name of one of its module's `cfg` entries and nothing else: its
    checkpoint (`{'net': DataParallel(net).state_dict(), 'acc': ..., 'epoch': ...}`) loaded only with
    `--model-arg vgg_name=...`. Each name its code defines is built on the meta device and the one the weights fit is
    taken, warned and written into what harden saves; a Literal-typed variant, a classmethod factory's name from a
    tuple of them (EfficientNet-PyTorch's) and a size keying a dict (pytorch-cifar's ShuffleNetV2) the same; names
    whose layers are the same are refused by name, and weights that fit no name get the error that asks for the
    argument."""
    nets = _nets(tmp_path, monkeypatch)
    torch.manual_seed(0)
    net = nets.VGG("VGG-W").eval()
    torch.save({"net": nn.DataParallel(net).state_dict(), "acc": 91.2, "epoch": 180}, tmp_path / "ckpt.pth")
    from harden.runtime import held_warnings
    with held_warnings() as said:
        model = harden.load(tmp_path / "ckpt.pth", arch="nets.py:VGG", input_size=16)
    assert any("built with vgg_name='VGG-W', which nothing gave: the one of the" in w for w in said), said
    assert model.spec.model_args == {"vgg_name": "VGG-W"} and model.spec.num_classes == 10
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    harden.save(model, tmp_path / "m.safetensors")
    assert harden.load(tmp_path / "m.safetensors").spec.model_args == {"vgg_name": "VGG-W"}  # no flag, no search
    torch.save(nets.VGG("VGG-B").state_dict(), tmp_path / "b.pth")
    with pytest.raises(HardenError, match=r"fit 2 of the names its code defines \('VGG-B', 'VGG-B2'\)"):
        harden.load(tmp_path / "b.pth", arch="nets.py:VGG", input_size=16)
    assert harden.load(tmp_path / "b.pth", arch="nets.py:VGG", input_size=16,
                       model_args={"vgg_name": "VGG-B2"}).spec.model_args == {"vgg_name": "VGG-B2"}
    torch.save(nn.Sequential(nn.Linear(3, 4)).state_dict(), tmp_path / "other.pth")
    with pytest.raises(HardenError, match="--model-arg vgg_name=VALUE"):
        harden.load(tmp_path / "other.pth", arch="nets.py:VGG", input_size=16, num_classes=4)
    torch.save(nets.Eff.from_name("eff-b", num_classes=3).state_dict(), tmp_path / "eff.pth")
    with held_warnings() as said:
        model = harden.load(tmp_path / "eff.pth", arch="nets.py:Eff.from_name", input_size=16)
    assert model.spec.model_args == {"model_name": "eff-b"} and model.spec.num_classes == 3, said
    torch.save(nets.Shuffle(0.5).state_dict(), tmp_path / "shuffle.pth")
    assert harden.load(tmp_path / "shuffle.pth", arch="nets.py:Shuffle", input_size=16).spec.model_args == \
        {"net_size": 0.5}
    sized = nets.Sized("m", num_classes=5)
    torch.save(sized.state_dict(), tmp_path / "sized.pth")
    with held_warnings() as said:
        model = harden.load(tmp_path / "sized.pth", arch="nets.py:Sized", input_size=16)
    assert any("built with variant='m'" in w for w in said), said
    assert model.spec.num_classes == 5 and model.spec.model_args == {"variant": "m"}


def test_a_wide_resnet_s_depth_and_width_are_found_from_the_weights(tmp_path, monkeypatch):
    """A WideResNet's constructor defaults to one network (TRADES' WRN-34-10) and is saved at another (WRN-16-1, with
    RobustBench's sub_block1 and no head bias, for 3 classes): it loaded only with each --model-arg. The integer and
    true/false arguments are searched on the meta device for the build whose tensors the file holds, warned with the
    flags that say them; the class count comes from the head as before; a file that fits no build is the error it was."""
    from harden.runtime import held_warnings
    nets = _nets(tmp_path, monkeypatch)
    torch.manual_seed(0)
    net = nets.WideResNet(depth=16, widen_factor=1, sub_block1=True, bias_last=False, num_classes=3).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "wrn.pt")
    with held_warnings() as said:
        model = harden.load(tmp_path / "wrn.pt", arch="nets.py:WideResNet")
    assert model.spec.model_args == {"depth": 16, "widen_factor": 1, "sub_block1": True, "bias_last": False}
    assert model.spec.num_classes == 3
    told = next(" ".join(w.split()) for w in said if "builds tried on the meta device" in w)
    assert all(f"--model-arg {flag}" in told for flag in ("depth=16", "widen_factor=1", "sub_block1=true",
                                                          "bias_last=false")), told
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    torch.save(nn.Sequential(nn.Conv2d(3, 5, 3)).state_dict(), tmp_path / "other.pt")
    with pytest.raises(HardenError, match="do not fit the architecture"):
        harden.load(tmp_path / "other.pt", arch="nets.py:WideResNet", num_classes=10)


def test_integers_a_constructor_requires_are_found_from_the_weights(tmp_path, monkeypatch):
    """Published constructors often take their sizes with no default: WideResNet-pytorch's `WideResNet(depth,
    num_classes, widen_factor=1)`, vit-pytorch's `ViT(*, image_size, patch_size, num_classes, dim, depth, heads,
    mlp_dim, channels=3, dim_head=64)`. Such a file stopped with "missing required arguments" (after asking for the
    class count its head says). The required integers are searched from one value that builds (the required ones
    alone first, so the defaults are kept where the weights fit either: 48 channels of 1-pixel patches fit as well as
    3 of 4 x 4), a patch size tried with the image side scaled alike; a required dropout rate given 0; an
    unannotated one tried at 0 and fractions too (bamos' DenseNet's reduction and bottleneck flag); heads x
    dim_head, which only their product shapes, is refused and asked for; given, the rest is found and the network
    computes the file's function."""
    from harden.runtime import held_warnings
    nets = _nets(tmp_path, monkeypatch)
    torch.manual_seed(0)
    wrn = nets.RequiredWRN(16, 7, widen_factor=2).eval()
    torch.save({"epoch": 200, "state_dict": wrn.state_dict(), "best_prec1": 95.1}, tmp_path / "wrn.pth.tar")
    with held_warnings() as said:
        model = harden.load(tmp_path / "wrn.pth.tar", arch="nets.py:RequiredWRN")
    assert model.spec.model_args == {"depth": 16, "widen_factor": 2} and model.spec.num_classes == 7, said
    assert any("its constructor requires depth, which nothing gave" in " ".join(w.split()) for w in said), said
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), wrn(x), atol=1e-6)

    # a required dropout rate (no tensor, unused in evaluation) is given 0, not asked for; its depth's first values
    # build the same network (4 and 10: one block), so "changes nothing" needs every value tried to agree
    drop = nets.DropWRN(22, 3, 0.3, 5).eval()
    torch.save(drop.state_dict(), tmp_path / "drop.pth")
    with held_warnings() as said:
        model = harden.load(tmp_path / "drop.pth", arch="nets.py:DropWRN")
    assert model.spec.model_args == {"dropout_rate": 0.0, "depth": 22, "widen_factor": 3}, said
    with torch.no_grad():
        assert torch.allclose(model(x), drop(x), atol=1e-6)

    # unannotated required arguments take 0 and fractions too: a compression of 0.5, a flag said as True
    dense = nets.Dense(growthRate=6, depth=16, reduction=0.5, nClasses=4, bottleneck=True).eval()
    torch.save(dense.state_dict(), tmp_path / "dense.pth")
    model = harden.load(tmp_path / "dense.pth", arch="nets.py:Dense")
    assert model.spec.model_args["reduction"] == 0.5 and model.spec.model_args["bottleneck"] is True
    assert model.spec.model_args["growthRate"] == 6 and (model.spec.model_args["depth"] - 4) // 6 == 2
    with torch.no_grad():
        assert torch.allclose(model(x), dense(x), atol=1e-5)

    vit = nets.ViT(image_size=32, patch_size=4, num_classes=10, dim=24, depth=3, heads=2, mlp_dim=48).eval()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(HardenError, match=r"as well one built with heads=4, dim_head=32.*--model-arg heads=VALUE"):
        harden.load(tmp_path / "vit.pth", arch="nets.py:ViT")
    with held_warnings() as said:
        model = harden.load(tmp_path / "vit.pth", arch="nets.py:ViT", model_args={"heads": 2})
    assert model.spec.model_args == {"heads": 2, "image_size": 32, "patch_size": 4, "dim": 24, "depth": 3,
                                     "mlp_dim": 48}, said
    assert model.spec.input_size == (32, 32) and model.spec.num_classes == 10
    with torch.no_grad():
        assert torch.allclose(model(x), vit(x), atol=1e-5)
    # 224 px in patches of 16 (a side no tensor has), 8 heads of 32 features
    big = nets.ViT(image_size=224, patch_size=16, num_classes=5, dim=32, depth=2, heads=8, dim_head=16, mlp_dim=64)
    torch.save(big.eval().state_dict(), tmp_path / "big.pth")
    model = harden.load(tmp_path / "big.pth", arch="nets.py:ViT", model_args={"heads": 8})
    assert model.spec.model_args == {"heads": 8, "image_size": 224, "patch_size": 16, "dim": 32, "depth": 2,
                                     "mlp_dim": 64, "dim_head": 16}
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), big(x), atol=1e-5)
    harden.save(model, tmp_path / "m.safetensors")
    assert harden.load(tmp_path / "m.safetensors").spec.model_args == model.spec.model_args  # no search again


def test_a_factory_beside_the_one_named_that_fits_the_weights_is_named_in_the_error(tmp_path, monkeypatch):
    """pytorch-cifar defines `ResNet(block, num_blocks)` and beside it `ResNet18()`, `ResNet34()`, ...: a ResNet34
    checkpoint loaded with `--arch resnet.py:ResNet18` (or the class itself) stopped at the mismatch. The error now
    names the factories its file defines beside it whose networks the weights fit (built on the meta device; a
    function that does more than build and return, such as a test, is never called), and takes none unasked."""
    nets = _nets(tmp_path, monkeypatch)
    torch.save({"net": nn.DataParallel(nets.Stages3()).state_dict(), "acc": 90.0}, tmp_path / "ckpt.pth")
    with pytest.raises(HardenError, match=r"The weights fit Stages3, which nets.py defines beside it: "
                                          r"--arch nets.py:Stages3\."):
        harden.load(tmp_path / "ckpt.pth", arch="nets.py:Stages2")
    assert not (tmp_path / "called").exists()
    assert harden.load(tmp_path / "ckpt.pth", arch="nets.py:Stages3").spec.num_classes == 10
    # the class itself is built as its factories build it, its block and stage depths found from the weights
    # (test_a_block_class_and_stage_depths_a_constructor_requires_are_found_from_the_weights)
    assert harden.load(tmp_path / "ckpt.pth", arch="nets.py:Stages").spec.model_args == {"block": "Block",
                                                                                          "num_blocks": [3]}


def test_a_class_or_function_given_by_its_name_is_passed_as_its_own_code_passes_it(tmp_path, monkeypatch):
    """pytorch-cifar's `ResNet(block, num_blocks)` is called `ResNet(BasicBlock, [2, 2, 2, 2])`: `--model-arg
    block=BasicBlock`, the value its own code passes, reached the constructor as the text 'BasicBlock' ("'str' object
    is not callable"). Text that names a class or function in the constructor's module, or one importable by its
    dotted path, is passed as that object (kept as text in the metadata, and resolved again when the written
    checkpoint is loaded); where the parameter takes text (a `str` annotation or a text default) it stays text, and
    so does a bare function's name (a function is named by its dotted path); a constructor that looks its block up
    by name (the build with the class raises) is built with the text."""
    nets = _nets(tmp_path, monkeypatch)
    torch.manual_seed(0)
    net = nets.Stages(nets.Block, [3]).eval()
    torch.save({"net": net.state_dict()}, tmp_path / "s.pth")
    model = harden.load(tmp_path / "s.pth", arch="nets.py:Stages", model_args={"block": "Block", "num_blocks": [3]})
    assert outputs_agree(model, net, chans=3)
    assert model.spec.model_args == {"block": "Block", "num_blocks": [3]}
    harden.save(model, tmp_path / "s.safetensors")
    assert outputs_agree(harden.load(tmp_path / "s.safetensors"), net, chans=3)
    with pytest.raises(HardenError, match=r"built with \{.*'block': 'Block', 'num_blocks': 3\}: .*subscriptable"):
        harden.load(tmp_path / "s.pth", arch="nets.py:Stages", model_args={"block": "Block", "num_blocks": 3})
    # the one not given is found from the weights (test_a_block_class_and_stage_depths_...)
    assert harden.load(tmp_path / "s.pth", arch="nets.py:Stages", model_args={"block": "Block"}).spec.model_args == \
        {"block": "Block", "num_blocks": [3]}

    net = nets.Normed(nn.BatchNorm2d, "Block", act=nn.GELU).eval()
    net.norm.running_mean.uniform_()
    torch.save(net.state_dict(), tmp_path / "n.pth")
    for norm in ("nn.BatchNorm2d", "torch.nn.BatchNorm2d", "torch.nn.modules.batchnorm.BatchNorm2d"):
        model = harden.load(tmp_path / "n.pth", arch="nets.py:Normed",
                            model_args={"norm_layer": norm, "kind": "Block", "act": "nn.GELU"})
        assert isinstance(model.net.norm, nn.BatchNorm2d) and isinstance(model.net.act, nn.GELU)
        assert outputs_agree(model, net, chans=3)
    from harden.models.registry import as_passed
    passed = as_passed(nets.Normed, {"norm_layer": "timm.layers.BatchNormAct2d", "kind": "nn", "act": "Nothing"})
    import timm.layers
    assert passed == {"norm_layer": timm.layers.BatchNormAct2d, "kind": "nn", "act": "Nothing"}
    assert as_passed(nets.Normed, {"act": "torch.nn", "norm_layer": "os.path.join"}) == \
        {"act": "torch.nn", "norm_layer": __import__("os").path.join}  # a module is no class or function
    # a bare function's name stays text (code compares `act == 'relu'` more often than it takes `relu` itself)
    from harden.models.registry import _import_callable
    normed = _import_callable("nets.py:Normed")  # as a load imports it: its module's names are looked up
    module = __import__("sys").modules[normed.__module__]
    assert as_passed(normed, {"norm_layer": "Stages2", "act": "Block", "num_classes": "torch.nn.functional.gelu"}) \
        == {"norm_layer": "Stages2", "act": module.Block, "num_classes": torch.nn.functional.gelu}
    # a constructor that looks its block up by name takes the text: the build with the class raises, the text builds
    (tmp_path / "byname.py").write_text('''
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)


class ByName(nn.Module):
    def __init__(self, block, num_classes=10):
        super().__init__()
        self.body = {"Block": Block}[block]()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.body.conv(x).mean((2, 3)))
''')
    net = _import_callable("byname.py:ByName")("Block").eval()
    torch.save(net.state_dict(), tmp_path / "b.pth")
    model = harden.load(tmp_path / "b.pth", arch="byname.py:ByName", model_args={"block": "Block"})
    assert outputs_agree(model, net, chans=3) and model.spec.model_args == {"block": "Block"}


def test_a_package_s_folder_is_an_architecture_and_one_network_under_two_names_is_one(tmp_path, monkeypatch):
    """Published code keeps its networks in a package (`models/__init__.py` with `from .net import *`, its modules
    importing each other relatively) and a factory beside each class (`def small_net(**kw): return SmallNet(**kw)`).
    `--arch repo/models:SmallNet` said the file did not exist (it is a folder), `--arch repo/models` was no
    architecture, and the file given alone stopped at "the weights fit 2 of the networks it defines" where both names
    build the one network. A package's folder imports as its __init__.py (relative imports work), given alone it is
    searched as a file is, and names that build the same class with the same tensors are one network: the class is
    taken and the others said; names that build different networks the weights fit are still the user's choice."""
    pkg = tmp_path / "repo" / "models_for_pkg_test"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .net import *\n")
    (pkg / "layers.py").write_text("import torch.nn as nn\n\n\ndef conv3x3(i, o):\n    return nn.Conv2d(i, o, 3, 1, 1)\n")
    (pkg / "net.py").write_text('''import torch.nn as nn
from .layers import conv3x3

__all__ = ["SmallNet", "small_net"]


class SmallNet(nn.Module):
    def __init__(self, num_classes=10, width=4):
        super().__init__()
        self.conv, self.fc = conv3x3(3, width), nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.conv(x).relu().mean((2, 3))
        return self.fc(x.view(x.size(0), -1))


def small_net(**kw):
    return SmallNet(**kw)
''')
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    torch.manual_seed(0)
    net = _import_callable("repo/models_for_pkg_test/net.py:SmallNet")(num_classes=5).eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "best.pth.tar")
    for arch in ("repo/models_for_pkg_test:SmallNet", "repo/models_for_pkg_test/:small_net"):
        assert outputs_agree(harden.load(tmp_path / "best.pth.tar", arch=arch), net, chans=3)
    with held_warnings() as said:
        model = harden.load(tmp_path / "best.pth.tar", arch="repo/models_for_pkg_test")
    assert model.spec.arch == "repo/models_for_pkg_test:SmallNet" and outputs_agree(model, net, chans=3)
    assert any("(--arch repo/models_for_pkg_test:SmallNet says it; small_net builds the same network)" in
               " ".join(w.split()) for w in said), said
    with held_warnings() as said:
        assert harden.load(tmp_path / "best.pth.tar", arch="repo/models_for_pkg_test/net.py").spec.arch == \
            "repo/models_for_pkg_test/net.py:SmallNet"
    harden.save(model, tmp_path / "best.safetensors")  # the folder remembered as an absolute path: loads anywhere
    monkeypatch.chdir(tmp_path / "repo")
    again = harden.load(tmp_path / "best.safetensors")
    assert again.spec.arch == f"{pkg}:SmallNet" and outputs_agree(again, net, chans=3)
    monkeypatch.chdir(tmp_path)
    # a subclass with its own forward holds the same tensors but is another network
    (tmp_path / "two.py").write_text((pkg / "net.py").read_text().replace("from .layers import conv3x3", "")
                                     .replace("conv3x3(3, width)", "nn.Conv2d(3, width, 3, 1, 1)")
                                     + "\n\nclass Doubled(SmallNet):\n    def forward(self, x):\n        return "
                                     "super().forward(x) * 2\n")
    with pytest.raises(HardenError, match=r"the weights fit 3 of the networks it defines \(SmallNet, small_net, "
                                          r"Doubled\): give the one it was trained with"):
        harden.load(tmp_path / "best.pth.tar", arch="two.py")
    (tmp_path / "loose").mkdir()
    with pytest.raises(HardenError, match=r"'\./loose' is a folder with no __init__.py, not a Python file or "
                                          r"package: give the file that defines SmallNet, --arch \./loose/FILE.py:"
                                          r"SmallNet\."):
        harden.load(tmp_path / "best.pth.tar", arch="./loose:SmallNet")


def test_an_architecture_s_code_is_imported_without_writing_beside_it(tmp_path, monkeypatch):
    """Python writes `__pycache__` beside a module it imports; harden reads the user's repository, it does not write
    to it (a checkout under version control, or a folder it may only read), wherever bytecode writing is on."""
    pkg = tmp_path / "repo" / "nets_for_bytecode_test"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .blocks import Net\n")
    (pkg / "blocks.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Sequential):\n    def __init__(self, "
                                   "num_classes=10):\n        super().__init__(nn.Flatten(), nn.Linear(48, num_classes))\n")
    (tmp_path / "repo" / "loose_net.py").write_text((pkg / "blocks.py").read_text())
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.chdir(tmp_path / "repo")
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(48, 3)).state_dict(), tmp_path / "w.pth")
    for arch in ("loose_net.py:Net", "nets_for_bytecode_test:Net"):
        assert harden.load(tmp_path / "w.pth", arch=arch, input_size=(4, 4), in_chans=3).spec.num_classes == 3
    assert sorted(p.name for p in (tmp_path / "repo").rglob("*")) == ["__init__.py", "blocks.py", "loose_net.py",
                                                                       "nets_for_bytecode_test"]
    assert sys.dont_write_bytecode is False  # the process's own setting is given back


STAGED = '''
import torch
import torch.nn as nn


class Staged(nn.Module):  # FB's ConvNeXt and Microsoft's Swin: stage depths and widths as lists with defaults
    def __init__(self, in_chans=3, num_classes=1000, depths=[1, 1, 2], dims=(4, 8, 8), strides=[1, 2, 2],
                 drop_path_rate=0.1):
        super().__init__()
        assert isinstance(dims, tuple)  # code that extends it (`dims + (x,)`) takes no list: JSON's lists are made tuples
        # their drop-path rates, read back from a tensor: no value on the meta device the search builds on
        rates = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        stages, c = [], in_chans
        for depth, dim, stride in zip(depths, dims, strides):
            stages.append(nn.Sequential(nn.Conv2d(c, dim, 3, stride, 1),
                                        *[nn.Conv2d(dim, dim, 3, 1, 1) for _ in range(depth - 1)]))
            c = dim
        assert len(rates) == sum(depths)
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.head(self.stages(x).mean((2, 3)))
'''


def test_a_block_class_and_stage_depths_a_constructor_requires_are_found_from_the_weights(tmp_path, monkeypatch):
    """pytorch-cifar's `ResNet(block, num_blocks, num_classes=10)` requires a block class and a list of stage depths
    (its factories call `ResNet(BasicBlock, [2, 2, 2, 2])`), which no integer search could seed: `--arch
    resnet.py:ResNet` stopped at "missing 2 required positional arguments" however the weights were built. Each
    required argument with no annotation is now seeded as a network class its module holds, a list of ones (the
    shortest that builds) or 1; the list is searched element by element and the class over the module's other
    classes, and both are said as flags (`--model-arg block=Bottleneck --model-arg num_blocks=[1,2]`) that the
    written checkpoint keeps and rebuilds from. A required list whose elements change no tensor (strides, with a
    pooled head) is a guess the weights cannot check: refused, asking for it, as a required integer's is."""
    (tmp_path / "stages.py").write_text('''
import torch.nn as nn
import torch.nn.functional as F


class Basic(nn.Module):
    expansion = 1

    def __init__(self, i, o, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.shortcut = nn.Sequential() if stride == 1 and i == o else nn.Sequential(nn.Conv2d(i, o, 1, stride))

    def forward(self, x):
        return F.relu(self.bn1(self.conv1(x))) + self.shortcut(x)


class Bottleneck(nn.Module):
    expansion = 2

    def __init__(self, i, o, stride=1):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(i, o, 1, bias=False), nn.Conv2d(o, o * 2, 3, stride, 1, bias=False)
        self.shortcut = nn.Sequential() if stride == 1 and i == o * 2 else nn.Sequential(nn.Conv2d(i, o * 2, 1, stride))

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x)))) + self.shortcut(x)


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10):
        super(ResNet, self).__init__()
        self.in_planes = 4
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(block, 4, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 8, num_blocks[1], stride=2)
        self.linear = nn.Linear(8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for stride in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.layer2(self.layer1(F.relu(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(out.view(out.size(0), -1))


class Pooled(nn.Module):  # its strides, a required list too, change no tensor: the weights cannot say them
    def __init__(self, widths, strides, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, strides[0], 1)
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, strides[1], 1)
        self.fc = nn.Linear(widths[1], num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.conv2(F.relu(self.conv1(x)))).mean((2, 3)))
''')
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    stages = _import_callable("stages.py:ResNet").__module__
    import sys
    torch.manual_seed(0)
    for block, depths, classes in (("Bottleneck", [1, 2], 10), ("Basic", [3, 1], 6)):
        net = _import_callable("stages.py:ResNet")(getattr(sys.modules[stages], block), depths, classes).eval()
        torch.save({"net": nn.DataParallel(net).state_dict()}, tmp_path / "r.pth")
        with held_warnings() as said:
            model = harden.load(tmp_path / "r.pth", arch="stages.py:ResNet")
        assert model.spec.model_args == {"block": block, "num_blocks": depths} and model.spec.num_classes == classes
        assert any(f"`--model-arg block={block} --model-arg num_blocks={json.dumps(depths, separators=(',', ':'))}` "
                   "says them" in " ".join(w.split()) for w in said), said
        assert outputs_agree(model, net, chans=3)
        harden.save(model, tmp_path / "r.safetensors", force=True)
        assert outputs_agree(harden.load(tmp_path / "r.safetensors"), net, chans=3)
    torch.save(_import_callable("stages.py:Pooled")([4, 8], [2, 2]).state_dict(), tmp_path / "p.pth")
    with pytest.raises(HardenError, match=r"built with widths=\[4, 8\] \(found from them\), but strides changes no "
                                          r"tensor's name or shape.*give it too: --model-arg widths=\[4,8\] "
                                          r"--model-arg strides=VALUE\."):
        harden.load(tmp_path / "p.pth", arch="stages.py:Pooled")
    model = harden.load(tmp_path / "p.pth", arch="stages.py:Pooled", model_args={"strides": [2, 2]})
    assert model.spec.model_args == {"strides": [2, 2], "widths": [4, 8]}
    # two block classes that build the same tensors (a pre-activation block's layers run in another order): refused
    (tmp_path / "twins.py").write_text((tmp_path / "stages.py").read_text() + (
        "\n\nclass PreAct(Basic):\n    def forward(self, x):\n        return self.conv1(F.relu(self.bn1(x))) if "
        "self.conv1.in_channels == self.conv1.out_channels else super().forward(x)\n"))
    torch.save(_import_callable("stages.py:ResNet")(sys.modules[stages].Basic, [1, 1]).state_dict(),
               tmp_path / "t.pth")
    with pytest.raises(HardenError, match=r"built with block as any of Basic, PreAct \(each a class its module holds, "
                                          r"building the same tensors\): give the one it was trained with, "
                                          r"--model-arg block=NAME\."):
        harden.load(tmp_path / "t.pth", arch="twins.py:ResNet")
    assert harden.load(tmp_path / "t.pth", arch="twins.py:ResNet", model_args={"block": "PreAct"}).spec.model_args \
        == {"block": "PreAct", "num_blocks": [1, 1]}


TYPED_RESNET = '''
from typing import List, Optional, Type, Union

import torch.nn as nn
from torch import Tensor


class BasicBlock(nn.Module):
    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        return self.bn1(self.conv1(x)).relu() + (x if self.downsample is None else self.downsample(x))


class Bottleneck(nn.Module):
    expansion: int = 2

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes * 2, 3, stride, 1, bias=False)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x).relu()) + (x if self.downsample is None else self.downsample(x))


class ResNet(nn.Module):
    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], layers: List[int], num_classes: int = 10) -> None:
        super().__init__()
        self.inplanes = 4
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(block, 4, layers[0])
        self.layer2 = self._make_layer(block, 8, layers[1], stride=2)
        self.fc = nn.Linear(8 * block.expansion, num_classes)

    def _make_layer(self, block: Type[Union[BasicBlock, Bottleneck]], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False)
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.conv1(x).relu())).mean((2, 3))
        return self.fc(x.view(x.size(0), -1))


class Configured(nn.Module):  # a required argument of another kind: not searched
    def __init__(self, cfg: dict, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg["width"], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.mean((2, 3)))
'''


@pytest.mark.parametrize("future, block", [(False, None), (True, None), (False, "nn.Module"), (True, "Callable")],
                         ids=["annotations", "annotations as text", "block: nn.Module", "block: 'Callable'"])
def test_a_constructor_typed_as_torchvision_s_resnet_has_its_block_and_layers_found(tmp_path, monkeypatch, future,
                                                                                      block):
    """Published code copies torchvision's ResNet with its annotations (`block: Type[Union[BasicBlock, Bottleneck]],
    layers: List[int]`), and torchvision's own class is `ResNet(block: type[...], layers: list[int], ...)`: the search
    seeded only arguments with no annotation (or an int's), so `--arch resnet.py:ResNet` and `--arch
    torchvision.models.resnet:ResNet` stopped at "missing 2 required positional arguments". An annotation of a class
    (`type`, `Type[...]`) is now seeded over the module's network classes and one of a list of integers (`list[int]`,
    `List[int]`, `Sequence[int]`, `tuple[int, ...]`) over lists of ones, read from the text where the file defers its
    annotations (and `nn.Module` or `Callable` for the block class, as typed code also writes it); a required argument
    of another kind (a dict) is still asked for."""
    import sys

    from harden.models.registry import _import_callable
    code = TYPED_RESNET if block is None else TYPED_RESNET.replace(
        "def __init__(self, block: Type[Union[BasicBlock, Bottleneck]]", f"def __init__(self, block: {block}").replace(
        "from typing import List", "from typing import Callable, List")
    (tmp_path / "typed.py").write_text(("from __future__ import annotations\n" if future else "") + code)
    monkeypatch.chdir(tmp_path)
    typed = sys.modules[_import_callable("typed.py:ResNet").__module__]
    torch.manual_seed(0)
    for block, layers, classes in (("Bottleneck", [2, 1], 10), ("BasicBlock", [1, 3], 5)):
        net = typed.ResNet(getattr(typed, block), layers, classes).eval()
        torch.save({"net": net.state_dict(), "acc": 93.1}, tmp_path / "r.pth")
        model = harden.load(tmp_path / "r.pth", arch="typed.py:ResNet")
        assert model.spec.model_args == {"block": block, "layers": layers} and model.spec.num_classes == classes
        assert outputs_agree(model, net, chans=3)
    torch.save(typed.Configured({"width": 3}).state_dict(), tmp_path / "c.pth")
    with pytest.raises(HardenError, match=r"missing 1 required positional argument: 'cfg'"):
        harden.load(tmp_path / "c.pth", arch="typed.py:Configured")


def test_torchvision_s_resnet_class_is_built_as_the_weights_say(tmp_path):
    """`--arch torchvision.models.resnet:ResNet` for a ResNet no factory of torchvision's builds (ResNet(BasicBlock,
    [1, 1, 1, 1]): a ResNet-10): its block and layers, annotated `type[Union[BasicBlock, Bottleneck]]` and
    `list[int]`, found from the weights, with their class count (without --arch: tests/test_timm_args.py)."""
    from torchvision.models.resnet import BasicBlock, ResNet
    torch.manual_seed(0)
    net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=4).eval()
    torch.save(net.state_dict(), tmp_path / "r10.pth")
    model = harden.load(tmp_path / "r10.pth", arch="torchvision.models.resnet:ResNet")
    assert model.spec.model_args == {"block": "BasicBlock", "layers": [1, 1, 1, 1]} and model.spec.num_classes == 4
    assert outputs_agree(model, net, chans=3)


CELLS = '''
import torch.nn as nn
import torch.nn.functional as F


class Cell(nn.Module):
    def __init__(self, in_planes, out_planes, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_planes)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class WideCell(Cell):
    def __init__(self, in_planes, out_planes, stride=1):
        super().__init__(in_planes, out_planes, stride)
        self.side = nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x):
        return super().forward(x) + self.side(x)


class Net(nn.Module):
    def __init__(self, cell_type, num_cells, num_planes):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, num_planes, 3, 1, 1, bias=False)
        self.layer1 = nn.Sequential(*[cell_type(num_planes, num_planes) for _ in range(3)])  # num_cells unread
        self.layer2 = cell_type(num_planes, num_planes * 2, stride=2)
        self.layer3 = nn.Sequential(*[cell_type(num_planes * 2, num_planes * 2) for _ in range(3)])
        self.linear = nn.Linear(num_planes * 2, 10)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(F.relu(self.conv1(x)))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).view(out.size(0), -1))


def NetA():
    return Net(Cell, num_cells=3, num_planes=8)
'''


def test_a_required_argument_its_code_never_reads_is_given_and_a_block_is_no_network(tmp_path, monkeypatch):
    """pytorch-cifar's `PNASNet(cell_type, num_cells, num_planes)` never reads num_cells (its stages are six cells
    whatever is passed): the search seeded it as a block class and stopped at "num_cells as any of SepConv, CellA,
    CellB". An argument that changes nothing a build holds (no tensor, no layer's setting) is given 1 and said; one
    that changes a setting (a stride, a head count) is still asked for. A block class given as the architecture was
    told the file held "6 whole copies of the model's weights" (an EMA's, a teacher's): it is a block of the
    network, and a file given alone is no longer said to fit its blocks."""
    (tmp_path / "cells.py").write_text(CELLS)
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    import sys
    cells = sys.modules[_import_callable("cells.py:Net").__module__]
    torch.manual_seed(0)
    net = cells.Net(cells.WideCell, 6, 6).eval()
    torch.save({"net": net.state_dict(), "acc": 91.0}, tmp_path / "wide.pth")
    for arch in ("cells.py:Net", "cells.py"):
        with held_warnings() as said:
            model = harden.load(tmp_path / "wide.pth", arch=arch)
        assert model.spec.arch == "cells.py:Net"
        assert model.spec.model_args == {"cell_type": "WideCell", "num_cells": 1, "num_planes": 6}, arch
        assert any("(num_cells=1: read by none of its layers, the network the same at any value)" in
                   " ".join(w.split()) for w in said), said
        assert outputs_agree(model, net, chans=3)
    for block in ("Cell", "WideCell"):
        with pytest.raises(WeightsDoNotFit, match=r"builds one block of the file's network: its \d+ tensors are there "
                                                  r"3 times, as the numbered blocks 'layer(\d).0.', 'layer\1.1.', "
                                                  r"'layer\1.2.', and the file holds \d+ tensors more besides "
                                                  r"\(conv1.weight, "):
            harden.load(tmp_path / "wide.pth", arch=f"cells.py:{block}")
    # a required stride, which a convolution keeps as a setting whatever it is (a class too): seeded 1, and asked for
    # as what the weights cannot say; the file's one network that needs it is named with what it needs
    (tmp_path / "strided.py").write_text(CELLS.replace("cell_type, num_cells, num_planes)", "cell_type, num_cells, "
                                                       "num_planes, stride2)").replace("stride=2)", "stride=stride2)"))
    strided = sys.modules[_import_callable("strided.py:Net").__module__]
    torch.save(strided.Net(strided.WideCell, 1, 6, 2).state_dict(), tmp_path / "strided.pth")
    for arch in ("strided.py:Net", "strided.py"):
        with pytest.raises(HardenError, match=r"built with cell_type='WideCell', num_cells=1, num_planes=6 \(found from "
                                              r"them\), but stride2 changes no tensor's name or shape"):
            harden.load(tmp_path / "strided.pth", arch=arch)
    with pytest.raises(HardenError, match=r"--arch strided.py: of the 4 networks and factories it defines, the weights "
                                          r"fit Net \(--arch strided.py:Net\) alone\. The weights fit"):
        harden.load(tmp_path / "strided.pth", arch="strided.py")


FORWARDING = '''
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, i, o, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(o)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, width, num_classes=1000):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.layer1 = nn.Sequential(*[block(width, width) for _ in range(layers[0])])
        self.layer2 = nn.Sequential(block(width, 2 * width, 2), *[block(2 * width, 2 * width) for _ in range(layers[1] - 1)])
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(F.relu(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).view(x.size(0), -1))


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).view(x.size(0), -1))


def _resnet(block, layers, pretrained, **kwargs):
    model = ResNet(block, layers, **kwargs)
    if pretrained:
        raise RuntimeError("no download here")
    return model


def resnet8(pretrained=False, **kwargs):
    return _resnet(Block, [1, 2], pretrained, **kwargs)


def plain(**kwargs):
    return Plain(**kwargs)


def resnet(**kwargs):  # bearpaw's pytorch-classification: `models.__dict__[args.arch](num_classes=..., depth=...)`
    return Deep(**kwargs)


class Deep(nn.Module):
    def __init__(self, depth, num_classes=1000):
        super().__init__()
        assert (depth - 2) % 6 == 0, 'depth should be 6n+2'
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layers = nn.Sequential(*[Block(4, 4) for _ in range((depth - 2) // 6)])
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.layers(F.relu(self.stem(x))), 1).flatten(1))
'''


def test_a_factory_that_hands_its_keywords_on_takes_the_arguments_of_what_it_calls(tmp_path, monkeypatch):
    """bearpaw's `def resnet(**kwargs): return ResNet(**kwargs)`, the name its training script records as the
    architecture, shows no parameter: harden could not give it the class count ("does not say its number of
    classes") nor search its class's required depth. Its signature is now its own parameters and those its keywords
    reach, through factories that forward to factories (`resnet8(pretrained=False, **kwargs)` -> `_resnet(block,
    layers, pretrained, **kwargs)` -> `ResNet(block, layers, width, num_classes=1000)`), less what each passes
    itself; one that reaches a class taking nothing is given no class count."""
    (tmp_path / "fwd.py").write_text(FORWARDING)
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    import sys
    fwd = sys.modules[_import_callable("fwd.py:Deep").__module__]
    assert str(inspect.signature(_import_callable("fwd.py:resnet8"))) == "(pretrained=False, *, width, num_classes=1000)"
    torch.manual_seed(0)
    cases = (("resnet8", fwd.resnet8(width=8, num_classes=7), {"width": 8}, 7),
             ("resnet", fwd.resnet(depth=20, num_classes=100), {"depth": 20}, 100),
             ("plain", fwd.plain(), {}, 10))
    for name, net, args, classes in cases:
        torch.save({"state_dict": nn.DataParallel(net).state_dict(), "arch": name}, tmp_path / "m.pth")
        with held_warnings() as said:
            model = harden.load(tmp_path / "m.pth", arch=f"fwd.py:{name}")
        assert model.spec.model_args == args and model.spec.num_classes == classes, (name, said)
        assert outputs_agree(model, net.eval(), chans=1 if name == "plain" else 3)


NAMED_BLOCKS = '''
import torch.nn as nn
import torch.nn.functional as F


class Basic(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x)))) + x


class Bottle(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))) + x


class ResNet(nn.Module):
    def __init__(self, depth, num_classes=1000, block_name='BasicBlock'):
        super(ResNet, self).__init__()
        if block_name.lower() == 'basicblock':
            assert (depth - 2) % 6 == 0, 'When use basicblock, depth should be 6n+2, e.g. 20, 32, 44, 56, 110, 1202'
            n = (depth - 2) // 6
            block = Basic
        elif block_name.lower() == 'bottleneck':
            assert (depth - 2) % 9 == 0, 'When use bottleneck, depth should be 9n+2, e.g. 20, 29, 47, 56, 110, 1199'
            n = (depth - 2) // 9
            block = Bottle
        else:
            raise ValueError('block_name shoule be Basicblock or Bottleneck')
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.layers = nn.Sequential(*[block(4) for _ in range(n)])
        self.fc = nn.Linear(4, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, 0.1)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.layers(F.relu(self.conv1(x))), 1).flatten(1))


def resnet(**kwargs):
    return ResNet(**kwargs)


class Filtered(nn.Module):  # RepDistiller's `ResNet(depth, num_filters, block_name='BasicBlock', num_classes=10)`
    def __init__(self, depth, num_filters, num_classes=10):
        super().__init__()
        assert (depth - 2) % 6 == 0, 'When use basicblock, depth should be 6n+2, e.g. 20, 32, 44, 56, 110, 1202'
        self.conv1 = nn.Conv2d(3, num_filters[0], 3, padding=1)
        self.layers = nn.Sequential(*[Basic(num_filters[0]) for _ in range((depth - 2) // 6)])
        self.proj = nn.Conv2d(num_filters[0], num_filters[1], 1)
        self.fc = nn.Linear(num_filters[1], num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.proj(self.layers(self.conv1(x))), 1).flatten(1))
'''


def test_a_text_argument_is_searched_over_the_values_its_code_compares_it_with(tmp_path, monkeypatch):
    """bearpaw's `ResNet(depth, num_classes=1000, block_name='BasicBlock')` (and the many CIFAR codes copied from
    it) builds a 164-layer bottleneck network only when told `block_name='bottleneck'`: a text argument was never
    searched, so such a file stopped at the mismatch. A text argument's other values are read from the comparisons
    its constructor makes (`block_name.lower() == 'bottleneck'`) and searched as a block class is; a depth whose next
    few values do not build under the new block (9n + 2 after 6n + 2) is still searched; a count beyond the scan's
    128 is extrapolated to from the tensors the builds hold (the file's 137 and 602 layers); a required depth that
    builds only at 6n + 2 is seeded with an integer beside a list (RepDistiller's `ResNet(depth, num_filters, ...)`).
    """
    (tmp_path / "named.py").write_text(NAMED_BLOCKS)
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    import sys
    named = sys.modules[_import_callable("named.py:ResNet").__module__]
    torch.manual_seed(0)
    for depth, block in ((137, "bottleneck"), (38, "bottleneck"), (20, "BasicBlock"), (602, "BasicBlock")):
        net = named.resnet(depth=depth, num_classes=10, block_name=block).eval()
        torch.save({"state_dict": net.state_dict()}, tmp_path / "r.pth")
        for arch in ("named.py:resnet", "named.py")[:1 if depth > 200 else 2]:
            with held_warnings() as said:
                model = harden.load(tmp_path / "r.pth", arch=arch)
            expected = {"depth": depth} if block == "BasicBlock" else {"depth": depth, "block_name": block}
            assert model.spec.model_args == expected and model.spec.num_classes == 10, (arch, said)
            builds = int(re.search(r"\((\d+) builds tried", " ".join(" ".join(said).split())).group(1))
            assert depth < 200 or builds < 200, builds  # 602 layers: extrapolated to, not scanned a value at a time
            assert outputs_agree(model, net, chans=3)
    # a required depth that 1 does not build (6n + 2) beside a required list: seeded with 2 and ones, then searched
    net = named.Filtered(14, [8, 12], num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "f.pth")
    model = harden.load(tmp_path / "f.pth", arch="named.py:Filtered")
    assert model.spec.model_args == {"depth": 14, "num_filters": [8, 12]} and outputs_agree(model, net, chans=3)


def test_block_classes_imported_from_torchvision_are_searched(tmp_path, monkeypatch):
    """A CIFAR subclass of torchvision's ResNet (`class CifarResNet(ResNet): def __init__(self, block, layers,
    num_classes=10)`, its stem swapped for a 3x3 convolution) takes torchvision's BasicBlock or Bottleneck, imported
    by name: those were left out of the block classes searched (every class from a `torch...` module was), so the
    class asked for both arguments. torchvision's model classes are searched now, torch's layers and timm's are not."""
    (tmp_path / "cifar_resnet.py").write_text('''
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


class CifarResNet(ResNet):
    def __init__(self, block, layers, num_classes=10):
        super().__init__(block, layers, num_classes=num_classes)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()
''')
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from torchvision.models.resnet import BasicBlock
    torch.manual_seed(0)
    net = _import_callable("cifar_resnet.py:CifarResNet")(BasicBlock, [1, 2, 1, 1]).eval()
    torch.save(net.state_dict(), tmp_path / "r.pth")
    model = harden.load(tmp_path / "r.pth", arch="cifar_resnet.py:CifarResNet")
    assert model.spec.model_args == {"block": "BasicBlock", "layers": [1, 2, 1, 1]}
    assert outputs_agree(model, net, chans=3)
    harden.save(model, tmp_path / "r.safetensors")
    assert outputs_agree(harden.load(tmp_path / "r.safetensors"), net, chans=3)


def test_a_hidden_width_is_found_where_the_class_count_is_the_heads_rows_read(tmp_path, monkeypatch):
    """PyTorch's MNIST MLP written with a hidden width (`MLP(hidden=512)`: fc1 784 -> hidden, fc3 hidden -> 10, no
    class count to give) and trained at 256: the count, read from the head's rows (10), was blamed for the head's
    mismatch, whose rows agree and whose inputs differ, so the load stopped at "does not say its number of classes"
    and the search for the width never ran. A head that holds the count's rows is no longer the count's mismatch."""
    (tmp_path / "mlp.py").write_text('''
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, hidden=512):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        return F.log_softmax(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x))))), dim=1)
''')
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    torch.manual_seed(0)
    net = _import_callable("mlp.py:MLP")(hidden=32).eval()
    torch.save(net.state_dict(), tmp_path / "mlp.pt")
    model = harden.load(tmp_path / "mlp.pt", arch="mlp.py:MLP")
    assert model.spec.model_args == {"hidden": 32} and model.spec.num_classes == 10
    assert (model.spec.in_chans, model.spec.input_size) == (1, (28, 28))
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)


def test_an_input_shape_is_given_as_channels_height_and_width(tmp_path, monkeypatch):
    """Keras-minded code sizes its flatten from `input_shape` (`c, h, w = input_shape`, a dummy forward of
    `torch.zeros(1, *input_shape)`), a required argument no alias named: "missing 1 required positional argument:
    'input_shape'". It is given as C x H x W from the channels and size harden has (the size tried where none is
    known, as for an `img_size`), and a sequence default of three takes the channels too."""
    (tmp_path / "shapenet.py").write_text('''
import torch
import torch.nn as nn


class CNN(nn.Module):
    def __init__(self, input_shape, n_classes):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        with torch.no_grad():
            n = self.features(torch.zeros(1, *input_shape)).view(1, -1).shape[1]
        self.fc = nn.Linear(n, n_classes)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.view(x.size(0), -1))
''')
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.models.config import size_argument
    import inspect
    for shape in ((3, 32, 32), (1, 28, 28)):
        torch.manual_seed(0)
        net = _import_callable("shapenet.py:CNN")(shape, 6).eval()
        torch.save(net.state_dict(), tmp_path / "cnn.pt")
        model = harden.load(tmp_path / "cnn.pt", arch="shapenet.py:CNN")
        assert (model.spec.in_chans, *model.spec.input_size) == shape and model.spec.num_classes == 6
        x = torch.rand(2, *shape)
        with torch.no_grad():
            assert torch.allclose(model(x), net(x), atol=1e-6)
    param = inspect.Parameter("img_size", inspect.Parameter.KEYWORD_ONLY, default=(3, 224, 224))
    assert size_argument("shapenet.py:CNN", param, (28, 28), 1) == (1, 28, 28)  # (3, ...) before


def test_a_list_of_stage_depths_and_widths_is_found_from_the_weights(tmp_path, monkeypatch):
    """FB's ConvNeXt class takes `depths=[3, 3, 9, 3], dims=[96, 192, 384, 768]` (its tiny's); a base checkpoint
    (depths [3, 3, 27, 3], dims [128, ...]) given `--arch convnext.py:ConvNeXt` stopped at the mismatch, since only
    integer and true/false arguments were searched. Each element of a list of counts is now searched as an integer
    of its own and said as the list (`--model-arg depths=[1,3,2]`); a list given stays as given; a list whose
    elements change no tensor (strides) keeps its default, as an unsearched argument did. The constructor reads its
    drop-path rates back from a tensor, as FB's and Microsoft's code does, which the meta device the search builds on
    cannot give: every build failed and the search found nothing (meta_build.shapes_build)."""
    (tmp_path / "staged.py").write_text(STAGED)
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    torch.manual_seed(0)
    net = _import_callable("staged.py:Staged")(num_classes=7, depths=[1, 3, 2], dims=(4, 16, 8)).eval()
    torch.save({"model": net.state_dict()}, tmp_path / "c.pth")
    with held_warnings() as said:
        model = harden.load(tmp_path / "c.pth", arch="staged.py:Staged")
    assert model.spec.model_args == {"depths": [1, 3, 2], "dims": [4, 16, 8]} and model.spec.num_classes == 7
    assert any("`--model-arg depths=[1,3,2] --model-arg dims=[4,16,8]` says them" in " ".join(w.split())
               for w in said), said
    assert outputs_agree(model, net, chans=3)
    harden.save(model, tmp_path / "c.safetensors")
    assert outputs_agree(harden.load(tmp_path / "c.safetensors"), net, chans=3)
    model = harden.load(tmp_path / "c.pth", arch="staged.py:Staged", model_args={"depths": [1, 3, 2]})
    assert model.spec.model_args == {"depths": [1, 3, 2], "dims": [4, 16, 8]}
    with pytest.raises(HardenError):  # a list given wrong is the user's: not searched over
        harden.load(tmp_path / "c.pth", arch="staged.py:Staged", model_args={"depths": [1, 2, 2]})
    # a width beyond 128 (ConvNeXt-B's 1024), reached after many builds that come no closer
    net = _import_callable("staged.py:Staged")(num_classes=7, depths=[1, 3, 2], dims=(4, 200, 300)).eval()
    torch.save({"model": net.state_dict()}, tmp_path / "w.pth")
    model = harden.load(tmp_path / "w.pth", arch="staged.py:Staged")
    assert model.spec.model_args == {"depths": [1, 3, 2], "dims": [4, 200, 300]} and outputs_agree(model, net, chans=3)


def test_settings_given_as_one_object_are_read_by_attribute(tmp_path, monkeypatch):
    """`def __init__(self, args): ... args.width` (argparse's Namespace, an EasyDict): a JSON object given with
    --model-arg reached it as a dict, and `args.width` raised AttributeError. It is read by attribute and by key
    (`getattr(args, 'x', default)` keeps its default), kept as plain JSON in what harden writes, and the error for the
    missing argument says how to give it."""
    nets = _nets(tmp_path, monkeypatch)
    net = nets.Configured(argparse.Namespace(width=6, layers={"act": "gelu"})).eval()
    torch.save(net.state_dict(), tmp_path / "cfg.pth")
    with pytest.raises(HardenError, match=r"a JSON object is read by key or attribute.*--model-arg args='"):
        harden.load(tmp_path / "cfg.pth", arch="nets.py:Configured")
    model = harden.load(tmp_path / "cfg.pth", arch="nets.py:Configured",
                        model_args={"args": {"width": 6, "layers": {"act": "gelu"}}})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    harden.save(model, tmp_path / "m.safetensors")
    again = harden.load(tmp_path / "m.safetensors")
    assert again.spec.model_args == {"args": {"width": 6, "layers": {"act": "gelu"}}}
    assert type(again.spec.model_args["args"]) is dict
    with torch.no_grad():
        assert torch.allclose(again(x), net(x), atol=1e-6)
    # the script's own settings saved beside the weights (`torch.save({'state_dict': ..., 'args': args}, ...)`, an
    # argparse Namespace read as data) are the argument its constructor takes by that name, or by another
    # settings-like name where the file holds that one object: no flag
    settings = argparse.Namespace(width=6, layers={"act": "gelu"}, lr=0.1, data="./data", out=Path("runs"))
    torch.save({"epoch": 9, "state_dict": net.state_dict(), "args": settings}, tmp_path / "run.pth.tar")
    model = harden.load(tmp_path / "run.pth.tar", arch="nets.py:Configured")
    assert model.spec.model_args == {"args": {"width": 6, "layers": {"act": "gelu"}, "lr": 0.1, "data": "./data"}}
    assert "the checkpoint's args" in model.config_sources["model_args"]
    assert not any("settings" in k for k in model.spec.extra)  # used, not carried into what harden writes
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    # (its own file: `from nets import ...` would find another test's nets module under that name)
    (tmp_path / "opt_net.py").write_text("from torch import nn\n\n\nclass OptNet(nn.Module):\n"
                                         "    def __init__(self, opt):\n        super().__init__()\n"
                                         "        self.conv = nn.Conv2d(3, opt.width, 3)\n"
                                         "        self.fc = nn.Linear(opt.width, 10)\n\n"
                                         "    def forward(self, x):\n"
                                         "        return self.fc(self.conv(x).mean((2, 3)))\n")
    assert harden.load(tmp_path / "run.pth.tar", arch="opt_net.py:OptNet").spec.model_args["opt"]["width"] == 6
    # a flag wins over the file's settings; the constructor's own failure is said (not "does not say its number of
    # classes", which the guess of its count from the output's width said before)
    with pytest.raises(HardenError, match="raised AttributeError while building with {'args': {'width': 6}}"):
        harden.load(tmp_path / "run.pth.tar", arch="nets.py:Configured", model_args={"args": {"width": 6}})


def test_a_script_s_saved_settings_give_the_constructor_its_arguments(tmp_path, monkeypatch):
    """A training script that saves its settings beside the weights (`{'state_dict': ..., 'args': args}`, `'config':
    {...}`) says the constructor's arguments by name, including those the weights cannot say (a ViT's heads, which
    the search refuses to guess): its fields named as the constructor's parameters are taken (never one that fetches
    or logs, nor an unset one), its class count and image size read as Lightning's hyper_parameters are; a flag
    wins."""
    nets = _nets(tmp_path, monkeypatch)
    vit = nets.ViT(image_size=32, patch_size=4, num_classes=10, dim=24, depth=2, heads=4, dim_head=8, mlp_dim=48)
    config = {"image_size": 32, "patch_size": 4, "dim": 24, "depth": 2, "heads": 4, "dim_head": 8, "mlp_dim": 48,
              "lr": 3e-4, "channels": None, "pretrained": True}
    torch.save({"model": vit.eval().state_dict(), "config": config}, tmp_path / "vit.pth")
    model = harden.load(tmp_path / "vit.pth", arch="nets.py:ViT")
    assert model.spec.model_args == {"patch_size": 4, "dim": 24, "depth": 2, "heads": 4, "dim_head": 8, "mlp_dim": 48}
    assert model.spec.input_size == (32, 32) and model.config_sources["input_size"] == "checkpoint"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), vit(x), atol=1e-5)
    wrn = nets.RequiredWRN(16, 3, widen_factor=2).eval()
    torch.save({"state_dict": wrn.state_dict(), "args": argparse.Namespace(depth=16, widen_factor=2, num_classes=3,
                                                                            dropRate=0.3, log_dir="runs")},
               tmp_path / "wrn.pth")
    from harden.runtime import held_warnings
    with held_warnings() as said:
        model = harden.load(tmp_path / "wrn.pth", arch="nets.py:RequiredWRN")
    assert model.spec.model_args == {"depth": 16, "widen_factor": 2, "dropRate": 0.3} and not any(
        "builds tried" in w for w in said), said  # no search: the settings said them
    assert model.spec.num_classes == 3 and model.config_sources["num_classes"] == "checkpoint"
    with torch.no_grad():
        assert torch.allclose(model(x), wrn(x), atol=1e-6)
    with pytest.raises(HardenError, match="do not fit"):  # a flag wins over the file's settings
        harden.load(tmp_path / "wrn.pth", arch="nets.py:RequiredWRN", model_args={"depth": 22})


ONE_FILE = '''
import torch
from torch import nn


''' + BLOCK + '''

class WRN(nn.Module):
    def __init__(self, depth, num_classes, widen_factor=1):
        super().__init__()
        n, w = (depth - 4) // 6, 4 * widen_factor
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[Block(4 if i == 0 else w, w) for i in range(n)])
        self.fc = nn.Linear(w, num_classes)

    def forward(self, x):
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(self.blocks(self.conv1(x)), 1).flatten(1))


def wrn16_2():
    return WRN(16, 10, 2)


def wrn22_2():
    """WRN-22-2."""
    net = WRN(22, 10, 2)
    return net


def wrn28_2(pretrained=False):  # FB's factories' shape: a branch that fetches weights when asked
    net = WRN(28, 10, 2)
    if pretrained:
        open("called", "w").write("fetched")
    return net


def test():
    open("called", "w").write("test() ran")
    return wrn16_2()
'''


def test_a_file_given_alone_is_searched_for_the_network_the_weights_fit(tmp_path, monkeypatch):
    """`--arch models/wrn.py` with no callable after it stopped at "Unknown architecture": the file's networks and
    factories are built on the meta device and the one whose network the weights hold is taken and said (a factory
    as it is, else a class with the arguments the weights say); a block that fits one part of the file under a prefix
    is not the network; a function that does more than build (its `test()`) never runs; weights no callable fits are
    an error listing what the file defines."""
    (tmp_path / "wrn.py").write_text(ONE_FILE)
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    torch.manual_seed(0)
    net = _import_callable("wrn.py:wrn22_2")().eval()
    torch.save(net.state_dict(), tmp_path / "a.pth")
    with held_warnings() as said:
        model = harden.load(tmp_path / "a.pth", arch="wrn.py")
    assert model.spec.arch == "wrn.py:wrn22_2" and any("wrn22_2, of the 5 networks and factories it defines" in
                                                       " ".join(w.split()) for w in said), said
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    net = _import_callable("wrn.py:WRN")(28, 7, widen_factor=3).eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "b.pth")
    model = harden.load(tmp_path / "b.pth", arch="wrn.py")
    assert model.spec.arch == "wrn.py:WRN" and model.spec.model_args == {"depth": 28, "widen_factor": 3}
    # inspect says where both came from (it said "flag" for each)
    assert model.config_sources["arch"] == "the one of wrn.py's networks the weights fit"
    assert model.config_sources["model_args"] == "checkpoint weights (the arguments they fit)"
    assert model.spec.num_classes == 7
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    harden.save(model, tmp_path / "b.safetensors")
    assert harden.load(tmp_path / "b.safetensors").spec.arch == f"{tmp_path / 'wrn.py'}:WRN"  # the callable found
    torch.save(nn.Sequential(nn.Conv2d(3, 5, 3)).state_dict(), tmp_path / "c.pth")
    with pytest.raises(HardenError, match=r"none of the networks and factories it defines \(Block, WRN, wrn16_2, "
                                          r"wrn22_2, wrn28_2\) builds a network the weights fit"):
        harden.load(tmp_path / "c.pth", arch="wrn.py")
    # a factory with a branch on a flag that is off unless given is built as it is (the branch never runs), and
    # named where its sibling was given (`convnext_tiny` for a `convnext_small` checkpoint, as FB's file has them)
    torch.save(_import_callable("wrn.py:wrn28_2")().state_dict(), tmp_path / "d.pth")
    assert harden.load(tmp_path / "d.pth", arch="wrn.py").spec.arch == "wrn.py:wrn28_2"
    with pytest.raises(HardenError, match=r"The weights fit wrn28_2, which wrn.py defines beside it"):
        harden.load(tmp_path / "d.pth", arch="wrn.py:wrn16_2")
    # with no weights to find it by (`harden train --arch wrn.py`), the error lists what the file defines
    with pytest.raises(HardenError, match=r"names a file, not what in it builds the network: give --arch wrn.py:NAME; "
                                          r"it defines Block, WRN, wrn16_2, wrn22_2, wrn28_2\."):
        harden.create_model("wrn.py", 10)
    assert not (tmp_path / "called").exists()


ACTIVATION_CHOICES = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.hub import load_state_dict_from_url  # torch's, but not an activation's module: never called
from torch.nn.functional import gelu


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class DropPath(nn.Module):  # timm's, copied: no tensors, and the identity in evaluation: no activation
    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return x


class GlobalPool(nn.Module):  # no tensors, another shape: no activation
    def forward(self, x):
        return x.mean((2, 3))


class Block(nn.Module):  # holds weights: never an activation's alternative
    def __init__(self, planes, activation_fn=nn.ReLU):
        super().__init__()
        self.bn, self.act, self.conv = nn.BatchNorm2d(planes), activation_fn(), nn.Conv2d(planes, planes, 3, padding=1)

    def forward(self, x):
        return x + self.conv(self.act(self.bn(x)))


class DMStyleNet(nn.Module):  # DeepMind's WideResNet: the activation a class, its Swish beside it
    def __init__(self, num_classes=10, width=4, activation_fn=nn.ReLU):
        super().__init__()
        self.init_conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.block = Block(width, activation_fn)
        self.relu = activation_fn()
        self.logits = nn.Linear(width, num_classes)

    def forward(self, x):
        out = self.relu(self.block(self.init_conv(x)))
        return self.logits(F.adaptive_avg_pool2d(out, 1).view(x.size(0), -1))


ACTIVATIONS = {'relu': nn.ReLU, 'gelu': nn.GELU, 'silu': nn.SiLU}


def swish(x):
    return x * torch.sigmoid(x)


def conv3x3(cin, cout):  # a helper of two arguments: never called to see what it does
    return nn.Conv2d(cin, cout, 3, padding=1)


def announce(x):  # more than an expression: never called either
    open("called", "w").write("ran")
    return x * 2


class FunctionActivation(nn.Module):  # the activation as a function, F.relu by default
    def __init__(self, num_classes=10, act=F.relu):
        super().__init__()
        self.act, self.conv, self.fc = act, conv3x3(3, 4), nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.act(self.conv(x)), 1).flatten(1))


class DictActivation(nn.Module):  # the activation by name, looked up in the module's dict
    def __init__(self, num_classes=10, act='relu'):
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(3, 4, 3, padding=1), ACTIVATIONS[act](), nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.act(self.conv(x)), 1).flatten(1))


class TextActivation(nn.Module):  # the activation by name, compared in the constructor
    def __init__(self, num_classes=10, activation='relu', block_name='plain', normalize_features=False,
                 memory_efficient=False):
        super().__init__()
        self.normalize_features = normalize_features  # Pang et al.'s hypersphere embedding: another function
        self.memory_efficient = memory_efficient  # DenseNet's: the same function, computed otherwise
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        if activation == 'relu':
            self.act = nn.ReLU()
        elif activation in ('swish', 'silu'):
            self.act = nn.SiLU()
        else:
            raise ValueError(activation)
        self.extra = nn.Conv2d(4, 4, 1) if block_name == 'wide' else nn.Identity()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        out = self.extra(self.act(self.conv(x)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1) if not self.memory_efficient else out.mean((2, 3))
        return self.fc(F.normalize(out) if self.normalize_features else out)
'''


def test_an_activation_the_weights_cannot_say_is_warned_of(tmp_path, monkeypatch):
    """RobustBench's best CIFAR models are DeepMind's `DMWideResNet(..., activation_fn=Swish)`, whose default is
    nn.ReLU: the weights hold no trace of the activation, so such a file loaded strictly into the ReLU network and
    answered every image as another network would, silently. The load now says which value it took and which others
    the code offers that build the same tensors (classes its module defines that hold none; text values its
    constructor compares with); a value given, even the default, is said and not warned of; an argument whose other
    values build other tensors (a block that adds a layer) is the weights' to say, as before."""
    (tmp_path / "acts.py").write_text(ACTIVATION_CHOICES)
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    from harden.runtime import held_warnings
    torch.manual_seed(0)
    net = _import_callable("acts.py:DMStyleNet")(activation_fn=_import_callable("acts.py:Swish")).eval()
    torch.save(net.state_dict(), tmp_path / "swish.pt")
    for arch in ("acts.py:DMStyleNet", "acts.py"):
        with held_warnings() as said:
            model = harden.load(tmp_path / "swish.pt", arch=arch)
        told = [" ".join(w.split()) for w in said if "activation_fn" in w]
        assert len(told) == 1 and "built with activation_fn=torch.nn.ReLU, its default, which nothing gave and the " \
            "weights cannot say: Swish builds the same tensors" in told[0] and \
            "give --model-arg activation_fn=Swish" in told[0], said
        assert not outputs_agree(model, net, chans=3)  # the ReLU network the defaults build: not the one trained
        assert model.config_sources["unsaid arguments"] == "activation_fn"  # for the chance check's advice
    for given in ("Swish", "torch.nn.ReLU"):
        with held_warnings() as said:
            model = harden.load(tmp_path / "swish.pt", arch="acts.py:DMStyleNet", model_args={"activation_fn": given})
        assert not any("activation_fn" in w for w in said), said
    assert outputs_agree(model_swish := harden.load(tmp_path / "swish.pt", arch="acts.py:DMStyleNet",
                                                    model_args={"activation_fn": "Swish"}), net, chans=3)
    # a width the weights say, the activation a flag gives: each said where it came from
    wide = _import_callable("acts.py:DMStyleNet")(width=6, activation_fn=_import_callable("acts.py:Swish")).eval()
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with held_warnings():
        model = harden.load(tmp_path / "wide.pt", arch="acts.py:DMStyleNet", model_args={"activation_fn": "Swish"})
    assert model.spec.model_args == {"activation_fn": "Swish", "width": 6} and outputs_agree(model, wide, chans=3)
    assert model.config_sources["model_args"] == "checkpoint weights (the arguments they fit): width; --model-arg: " \
        "activation_fn"
    harden.save(model_swish, tmp_path / "swish.safetensors")
    with held_warnings() as said:  # harden's own file keeps the value given
        assert outputs_agree(harden.load(tmp_path / "swish.safetensors"), net, chans=3) and not said
    # by name: 'swish' and 'silu' build the same tensors as 'relu'; block_name 'wide' adds a layer the file lacks
    net = _import_callable("acts.py:TextActivation")(activation="silu").eval()
    torch.save(net.state_dict(), tmp_path / "text.pt")
    with held_warnings() as said:
        harden.load(tmp_path / "text.pt", arch="acts.py:TextActivation")
    told = [" ".join(w.split()) for w in said if "built with" in w]
    assert len(told) == 2 and "built with activation=relu, its default" in told[0] and "swish, silu build the same " \
        "tensors" in told[0] and "block_name" not in " ".join(told), said
    # a flag that computes another function from the same weights, and one that computes the same one otherwise
    assert "built with normalize_features=false, its default" in told[1] and "--model-arg normalize_features=true" \
        in told[1] and "memory_efficient" not in " ".join(said), said
    # looked up in a dict by its name: the dict's other keys
    torch.save(_import_callable("acts.py:DictActivation")(act="gelu").state_dict(), tmp_path / "dict.pt")
    with held_warnings() as said:
        harden.load(tmp_path / "dict.pt", arch="acts.py:DictActivation")
    told = [" ".join(w.split()) for w in said if "built with" in w]
    assert len(told) == 1 and "built with act=relu, its default" in told[0] and "gelu, silu build" in told[0], said
    # a function: the module's own one-expression activations, by the bare name --model-arg then takes
    net = _import_callable("acts.py:FunctionActivation")(act=_import_callable("acts.py:swish")).eval()
    torch.save(net.state_dict(), tmp_path / "function.pt")
    with held_warnings() as said:
        harden.load(tmp_path / "function.pt", arch="acts.py:FunctionActivation")
    told = [" ".join(w.split()) for w in said if "built with" in w]
    assert len(told) == 1 and "built with act=F.relu, its default" in told[0] and "gelu, swish build" in told[0] and \
        "give --model-arg act=gelu" in told[0], said
    model = harden.load(tmp_path / "function.pt", arch="acts.py:FunctionActivation", model_args={"act": "swish"})
    assert outputs_agree(model, net, chans=3)
    harden.save(model, tmp_path / "function.safetensors")
    assert outputs_agree(harden.load(tmp_path / "function.safetensors"), net, chans=3)
    assert not (tmp_path / "called").exists()
    # a network too large to build again for the probe: text and classes by their settings, flags not at all
    import harden.models.unsaid_args as unsaid
    monkeypatch.setattr(unsaid, "PROBE_MAX_PARAMETERS", 0)
    with held_warnings() as said:
        harden.load(tmp_path / "text.pt", arch="acts.py:TextActivation")
    told = [" ".join(w.split()) for w in said if "built with" in w]
    assert len(told) == 1 and "built with activation=relu" in told[0], said


PRUNED_VGG = '''
import torch.nn as nn

layers_by_depth = {
    5: [8, 'M', 16, 'M', 16],
    6: [8, 8, 'M', 16, 'M', 16],
    8: [8, 8, 'M', 16, 16, 'M', 16, 16],
}


class vgg(nn.Module):  # network slimming's shape: the head's rows follow a dataset's name, no class count taken
    def __init__(self, dataset='cifar10', depth=8, init_weights=True, cfg=None):
        super(vgg, self).__init__()
        if cfg is None:
            cfg = layers_by_depth[depth]
        self.feature = self.make_layers(cfg)
        if dataset == 'cifar10':
            num_classes = 10
        elif dataset == 'cifar100':
            num_classes = 100
        self.classifier = nn.Linear(cfg[-1], num_classes)
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.data.normal_(0, 0.1)
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.data.fill_(0.5)
                    m.bias.data.zero_()

    def make_layers(self, cfg):
        layers, in_channels = [], 3
        for v in cfg:
            if v == 'M':
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(v),
                           nn.ReLU(inplace=True)]
                in_channels = v
        return nn.Sequential(*layers)

    def forward(self, x):
        x = nn.AdaptiveAvgPool2d(1)(self.feature(x))
        x = x.view(x.size(0), -1)
        return self.classifier(x)
'''


def test_a_pruned_networks_layers_saved_beside_its_weights_and_a_depth_keying_them_are_read(tmp_path, monkeypatch):
    """Network slimming's checkpoints: a pruned VGG saved as `{'cfg': cfg, 'state_dict': ...}` is rebuilt with the
    `cfg` saved beside its weights (a constructor parameter of that name); an unpruned one at a depth below the
    default, which only indexes a dict of layer lists (no depth above the default builds), is found from the weights;
    and a head of 100 rows, which the constructor sets from `dataset='cifar100'` and takes no class count for, is
    searched with the depth rather than refused for want of --num-classes."""
    slim = _written(tmp_path, monkeypatch, "slim", PRUNED_VGG)
    from harden.runtime import held_warnings
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    cfg = [5, 'M', 7, 'M', 11, 6]
    pruned = slim.vgg(cfg=cfg).eval()
    torch.save({"cfg": cfg, "state_dict": pruned.state_dict(), "epoch": 40, "best_prec1": 0.5}, tmp_path / "p.tar")
    model = harden.load(tmp_path / "p.tar", arch="slim.py:vgg", input_size=16)
    assert model.spec.model_args == {"cfg": cfg}, model.spec.model_args
    assert model.config_sources["model_args"] == "the checkpoint's entry cfg"
    with torch.no_grad():
        assert torch.allclose(model(x), pruned(x), atol=1e-6)
    harden.save(model, tmp_path / "p.safetensors")
    assert harden.load(tmp_path / "p.safetensors").spec.model_args == {"cfg": cfg}
    for name, net, args in (("d5.tar", slim.vgg(depth=5), {"depth": 5}),
                            ("c100.tar", slim.vgg(dataset="cifar100", depth=6), {"depth": 6, "dataset": "cifar100"})):
        torch.save({"state_dict": net.eval().state_dict()}, tmp_path / name)
        with held_warnings() as said:
            model = harden.load(tmp_path / name, arch="slim.py:vgg", input_size=16)
        assert model.spec.model_args == args and model.spec.num_classes == (100 if "dataset" in args else 10), said
        with torch.no_grad():
            assert torch.allclose(model(x), net(x), atol=1e-6)
    odd = slim.vgg(depth=5)
    odd.classifier = nn.Linear(16, 37)  # a head no argument builds
    torch.save(odd.state_dict(), tmp_path / "odd.pth")
    with pytest.raises(HardenError, match=r"classifier.weight: checkpoint \(37, 16\) vs model \(10, 16\).*slim.py:vgg "
                                          r"takes no class count: its other arguments set the 10 scores"):
        harden.load(tmp_path / "odd.pth", arch="slim.py:vgg", input_size=16)


CHANNEL_SELECTION = '''
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class channel_selection(nn.Module):  # a mask whose nonzero entries name the channels kept, read in the forward
    def __init__(self, num_channels):
        super().__init__()
        self.indexes = nn.Parameter(torch.ones(num_channels))

    def forward(self, x):
        kept = np.squeeze(np.argwhere(self.indexes.data.cpu().numpy()))
        if kept.size == 1:
            kept = np.resize(kept, (1,))
        return x[:, kept, :, :]


class Block(nn.Module):
    def __init__(self, inplanes, cfg):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.select = channel_selection(inplanes)
        self.conv1 = nn.Conv2d(cfg[0], cfg[1], 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cfg[1])
        self.conv2 = nn.Conv2d(cfg[1], inplanes, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.select(self.bn1(x))))
        return x + self.conv2(F.relu(self.bn2(out)))


class resnet(nn.Module):
    def __init__(self, depth=14, dataset='cifar10', cfg=None):
        super().__init__()
        assert (depth - 2) % 2 == 0, 'depth should be 2n+2'
        n = (depth - 2) // 2
        if cfg is None:
            cfg = [8, 8] * n
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[Block(8, cfg[2 * i: 2 * i + 2]) for i in range(n)])
        self.fc = nn.Linear(8, 10 if dataset == 'cifar10' else 100)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.blocks(self.conv1(x)), 1)
        return self.fc(x.view(x.size(0), -1))
'''


def test_a_pruned_network_whose_forward_reads_its_channel_masks_is_built_and_loaded(tmp_path, monkeypatch):
    """Network slimming's pruned ResNets: `cfg` saved beside the weights is too short for the default depth (the
    constructor reads past it), so the depth is searched from the first one that builds with it; the forward keeps
    the channels its mask parameter names, so the fresh network (a mask of ones) runs only once the file's tensors
    are in it: the probe runs again with them."""
    slim = _written(tmp_path, monkeypatch, "slim_resnet", CHANNEL_SELECTION)
    torch.manual_seed(0)
    cfg = [5, 3, 8, 6]  # two blocks (depth 6): 5 and 8 of the 8 channels kept before each first convolution
    pruned = slim.resnet(depth=6, cfg=cfg)
    for block, kept in zip(pruned.blocks, (5, 8), strict=True):
        block.select.indexes.data = (torch.arange(8) < kept).float()
    pruned.eval()
    torch.save({"cfg": cfg, "state_dict": pruned.state_dict()}, tmp_path / "pruned.pth.tar")
    model = harden.load(tmp_path / "pruned.pth.tar", arch="slim_resnet.py:resnet", input_size=16)
    assert model.spec.model_args == {"cfg": cfg, "depth": 6}, model.spec.model_args
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), pruned(x), atol=1e-6)


TRAINING_SCRIPT = '''
import argparse
import torch.nn as nn

parser = argparse.ArgumentParser(description="PyTorch CIFAR Training")
parser.add_argument("--width", default=24, type=int)
parser.add_argument("--lr", default=0.1, type=float)
{required}args = parser.parse_args()


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, args.width, 3, padding=1)
        self.fc = nn.Linear(args.width, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
'''


def test_a_training_script_that_parses_its_command_line_on_import(tmp_path, monkeypatch, cli):
    """The network defined in the training script, whose top level runs `args = parser.parse_args()`: imported as
    `python train.py` would run with no arguments (its defaults; not harden's own command line, which argparse
    refused with its usage line and exit 2); one that requires an argument is refused in one paragraph, exit 2."""
    (tmp_path / "train.py").write_text(TRAINING_SCRIPT.format(required=""))
    monkeypatch.chdir(tmp_path)
    net = nn.ModuleDict({"conv": nn.Conv2d(3, 24, 3, padding=1), "fc": nn.Linear(24, 10)})  # Net's at the defaults
    torch.save(net.state_dict(), tmp_path / "ckpt.pth")
    code, out, err = cli("inspect", tmp_path / "ckpt.pth", "--arch", "train.py:Net")
    assert code == 0 and "train.py:Net" in out and "usage:" not in err, err
    (tmp_path / "strict.py").write_text(TRAINING_SCRIPT.format(required='parser.add_argument("--data", '
                                                               'required=True)\n'))
    code, out, err = cli("inspect", tmp_path / "ckpt.pth", "--arch", "strict.py:Net")
    assert code == 2 and "Traceback" not in err and "usage:" not in err
    assert "arguments are required: --data" in err and "parser.parse_args()" in err


FINE_TUNED = '''
import torch.nn as nn
import torch.utils.model_zoo as model_zoo
import timm
import torchvision.models as models


class Weights(nn.Module):  # torchvision's weights enum, as its documentation now writes it
    def __init__(self, num_classes=10):
        super().__init__()
        self.backbone = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
        self.backbone.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.backbone(x)


class Pretrained(Weights):  # the older `pretrained=True`
    def __init__(self, num_classes=10):
        nn.Module.__init__(self)
        self.backbone = models.resnet18(pretrained=True)
        self.backbone.fc = nn.Linear(512, num_classes)


class Url(Weights):  # torch hub's loader by URL, as Cadene's pretrainedmodels calls it
    def __init__(self, num_classes=10):
        nn.Module.__init__(self)
        self.backbone = models.resnet18()
        self.backbone.load_state_dict(model_zoo.load_url("https://download.pytorch.org/models/resnet18-f37072fd.pth"))
        self.backbone.fc = nn.Linear(512, num_classes)


class Timm(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.backbone = timm.create_model("resnet18", pretrained=True, num_classes=0)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))
'''


def test_a_constructor_that_fetches_pretrained_weights_builds_without_them(tmp_path, monkeypatch):
    """Fine-tuning code builds its network from downloaded weights in its constructor; harden fetches nothing (no
    network here, nor on a CI runner) and the checkpoint supplies every weight: the model computes what the saved one
    does, said in the load notes. A file without the backbone (the new head alone) is refused by the strict load."""
    import timm
    import torchvision
    (tmp_path / "finetune.py").write_text(FINE_TUNED)
    monkeypatch.chdir(tmp_path)
    fetched = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: fetched.append(a))
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=10).eval()
    torch.save({f"backbone.{k}": v for k, v in tv.state_dict().items()}, tmp_path / "tv.pt")
    tm = timm.create_model("resnet18", num_classes=0).eval()
    head = nn.Linear(512, 10)
    torch.save({**{f"backbone.{k}": v for k, v in tm.state_dict().items()},
                **{f"head.{k}": v for k, v in head.state_dict().items()}}, tmp_path / "timm.pt")
    x = torch.rand(2, 3, 32, 32)
    for name, file, network in (("Weights", "tv.pt", tv), ("Pretrained", "tv.pt", tv), ("Url", "tv.pt", tv),
                                ("Timm", "timm.pt", lambda z: head(tm(z)))):
        model = harden.load(tmp_path / file, arch=f"finetune.py:{name}")
        assert any("pretrained weights" in note and "not fetched" in note for note in model.load_notes), name
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
        with torch.no_grad():
            assert torch.allclose(model(x), network((x - mean) / std), atol=1e-5), name
    # the timm backbone's own statistics: the guess its name's checkpoint takes, which the normalisation check measures
    assert model.config_sources["mean"].startswith("timm config (resnet18: the pretrained_cfg of its module backbone")
    assert list(model.spec.mean) == list(tm.pretrained_cfg["mean"])
    assert not fetched
    torch.save({f"backbone.fc.{k}": v for k, v in tv.fc.state_dict().items()}, tmp_path / "head.pt")
    with pytest.raises(harden.HardenError, match="missing"):
        harden.load(tmp_path / "head.pt", arch="finetune.py:Weights")


EXPANDED = '''
import torch.nn as nn


class Expand(nn.Module):  # RepDistiller's MobileNetV2(T, feature_dim, input_size=32, width_mult=1.), in small
    def __init__(self, T, feature_dim, width_mult=1.):
        super().__init__()
        c = int(8 * width_mult)
        self.stem, self.bn0 = nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.expand, self.bn1 = nn.Conv2d(c, c * T, 1, bias=False), nn.BatchNorm2d(c * T)
        self.dw, self.bn2 = nn.Conv2d(c * T, c * T, 3, 1, 1, groups=c * T, bias=False), nn.BatchNorm2d(c * T)
        self.fc = nn.Linear(c * T, feature_dim)

    def forward(self, x):
        x = self.bn0(self.stem(x)).relu()
        x = self.bn2(self.dw(self.bn1(self.expand(x)).relu())).relu()
        return self.fc(x.mean((2, 3)))


def expand_t_w(T, W, feature_dim=100):
    return Expand(T=T, feature_dim=feature_dim, width_mult=W)


def half(num_classes):
    return expand_t_w(6, 0.5, num_classes)
'''


def test_a_class_the_weights_do_not_say_names_the_factory_beside_it_that_builds_them(tmp_path, monkeypatch):
    """RepDistiller's `MobileNetV2(T, feature_dim, width_mult=1.)` given as the class, for `mobile_half(num_classes)`'s
    weights (T=6 at half width): one argument at a time, T=3 at full width holds more of the file's tensors than
    either move alone, so the search stops there, and the factory beside the class, named otherwise, was not named
    (the error said only to give T and feature_dim). The network or factory of the same file that builds the weights'
    network, as `--arch nets.py` alone finds it, is now named in the error, and that flag loads."""
    (tmp_path / "nets.py").write_text(EXPANDED)
    monkeypatch.chdir(tmp_path)
    from harden.models.registry import _import_callable
    torch.manual_seed(0)
    net = _import_callable("nets.py:half")(10).eval()
    torch.save({"model": net.state_dict(), "epoch": 240, "accuracy": 64.1}, tmp_path / "half.pth")
    with pytest.raises(HardenError, match=r"half, which nets\.py defines beside it, builds the network the weights "
                                          r"hold: --arch nets\.py:half \(or --arch nets\.py alone, which finds it\)\."):
        harden.load(tmp_path / "half.pth", arch="nets.py:Expand")
    assert outputs_agree(harden.load(tmp_path / "half.pth", arch="nets.py:half"), net, chans=3)
