"""Bring your own checkpoint: every form a foreign checkpoint comes in loads with flags only (format by content,
any container, any key prefix, old BatchNorm buffers), and every kind of model (a timm model, a plain
nn.Module defined in a file, an nn.Sequential with a custom flatten, a log_softmax model) goes through inspect,
import, eval, fix (fixer and idfr) and export."""
import argparse
import datetime
import io
import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import harden
from harden.checkpoint import read_checkpoint, sha256_file
from harden.errors import HardenError
from harden.models.probe import discover_taps
from harden.models.registry import taps_of

NETS = '''
import torch
import torch.nn.functional as F
from torch import nn


class Plain(nn.Module):
    """No feature_info, no forward_features: what most users write."""
    def __init__(self, num_classes=10, in_chans=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(x.flatten(1))


class MyFlatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def plain(num_classes=10, in_chans=1):
    return Plain(num_classes, in_chans)


def seq(num_classes=10):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), MyFlatten(), nn.Linear(16 * 4 * 4, num_classes))


class LogSoftmaxNet(Plain):
    def forward(self, x):
        return F.log_softmax(super().forward(x), dim=1)


def logsoftmax(num_classes=10, in_chans=1):
    return LogSoftmaxNet(num_classes, in_chans)


class Normalised(Plain):
    """The input normalisation inside the network, as persistent buffers of its own."""
    def __init__(self, num_classes=10, in_chans=1):
        super().__init__(num_classes, in_chans)
        self.register_buffer("mean", torch.full((1, in_chans, 1, 1), 0.3))
        self.register_buffer("std", torch.full((1, in_chans, 1, 1), 0.35))

    def forward(self, x):
        return super().forward((x - self.mean) / self.std)


def normalised(num_classes=10, in_chans=1):
    return Normalised(num_classes, in_chans)


class NormalisedAnySize(Normalised):
    def forward(self, x):
        x = F.relu(self.bn1(self.conv1((x - self.mean) / self.std)))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv2(x)), 4).flatten(1))


def normalised_any_size(num_classes=10, in_chans=1):
    return NormalisedAnySize(num_classes, in_chans)


class Normalize(nn.Module):  # adversarial-robustness code's: its statistics as attributes, not buffers
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def forward(self, x):
        return (x - self.mean) / self.std


def normalised_layer(num_classes=10, in_chans=1):
    return nn.Sequential(Normalize([0.3], [0.35]), Plain(num_classes, in_chans))


class NormalizeLayer(nn.Module):  # Cohen et al.'s randomized smoothing: means and sds, moved to the device later
    def __init__(self, means, sds):
        super().__init__()
        self.means, self.sds = torch.tensor(means), torch.tensor(sds)

    def forward(self, x):
        return (x - self.means.view(1, -1, 1, 1)) / self.sds.view(1, -1, 1, 1)


def normalised_smoothing(num_classes=10, in_chans=1):
    return nn.Sequential(NormalizeLayer([0.3], [0.35]), Plain(num_classes, in_chans))


class Centred(nn.Module):  # research code's `self.mu = torch.tensor(cifar10_mean).view(1, 3, 1, 1)`, in no Normalize
    def __init__(self, mu, std):
        super().__init__()
        self.mu, self.std = torch.tensor(mu).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def forward(self, x):
        return (x - self.mu) / self.std


def normalised_inline(num_classes=10, in_chans=1):
    return nn.Sequential(Centred([0.3], [0.35]), Plain(num_classes, in_chans))


def normalised_transform(num_classes=10, in_chans=1):
    from torchvision import transforms
    return nn.Sequential(transforms.Normalize([0.3], [0.35]), Plain(num_classes, in_chans))
'''

# pytorch/examples' MNIST network as published: no constructor arguments, a flatten that fixes the input size at
# 28x28, a log_softmax head; and the same written as a fully convolutional network (no linear layer)
EXAMPLES_MNIST = """
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


class Odd(Net):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64 * 15 * 15, 128)  # 34x34 images: no common size


class MLP(nn.Module):  # no convolution: the first linear layer reads 1 x 28 x 28
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))


class Aliased(nn.Module):  # published code's own names for the counts
    def __init__(self, n_classes=10, in_channels=3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean((2, 3)))


class DMStyle(Aliased):  # DeepMind's and RobustBench's WideResNet name the channels num_input_channels
    def __init__(self, num_classes=10, num_input_channels=3):
        super().__init__(num_classes, num_input_channels)


class CamelCount(Aliased):  # Torch7 ports (bamos' DenseNet) write the count nClasses, with no default
    def __init__(self, nClasses):
        super().__init__(nClasses, 3)


class AllConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 7, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))
"""


# constructors that take their input size, as published code writes them: a flatten sized from it, a size without
# a default, and a size a fully pooled network only records
SIZED_NETS = """
import torch.nn.functional as F
from torch import nn


class NetImg(nn.Module):
    def __init__(self, num_classes=10, img_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * (img_size // 4) ** 2, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.max_pool2d(F.relu(self.conv1(x)), 2))), 2)
        return self.fc(x.view(x.size(0), -1))


class NetInput(NetImg):
    def __init__(self, input_size=28, num_classes=10):
        super().__init__(num_classes, input_size)


class NetImage(NetImg):
    def __init__(self, image_size, num_classes=10):
        super().__init__(num_classes, image_size)


class PoolNet(nn.Module):
    def __init__(self, num_classes=10, img_size=(3, 224, 224)):
        super().__init__()
        self.img_size = img_size
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1))


class NeuralNet(nn.Module):  # pytorch-tutorial's: input_size is the flattened image's length
    def __init__(self, input_size, hidden_size, num_classes):
        super(NeuralNet, self).__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.reshape(-1, 28 * 28))))


class MLP(nn.Module):
    def __init__(self, input_size=784, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(input_size, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))
"""


def test_a_constructor_that_takes_its_input_size_gets_it_and_says_it(tmp_path):
    """`Net(img_size=64)` sizes its flatten from its input size (under img_size, image_size or input_size): the
    size is passed to it in the form its default has (an int; (C, H, W) for a tuple), its default is the model's
    input size rather than 32x32, and a file trained at another size (or a constructor without a default) is
    rebuilt at the common sizes until its weights fit. A flag and --model-arg still win."""
    from harden.models.registry import _import_callable
    (tmp_path / "sized.py").write_text(SIZED_NETS)
    arch = f"{tmp_path / 'sized.py'}:{{}}"
    torch.manual_seed(0)
    made = {name: _import_callable(arch.format(name))(**kw).eval() for name, kw in
            (("NetImg", {"img_size": 64}), ("NetInput", {}), ("NetImage", {"image_size": 96}), ("PoolNet", {}),
             ("NeuralNet", {"input_size": 784, "hidden_size": 20, "num_classes": 10}), ("MLP", {}))}
    for name, net in made.items():
        torch.save(net.state_dict(), tmp_path / f"{name}.pt")

    def load(name, **kw):
        return harden.load(tmp_path / f"{name}.pt", arch=arch.format(name), **kw)
    from harden.runtime import console
    with console.capture() as cap:
        trained_at_64 = load("NetImg")
    assert trained_at_64.spec.input_size == (64, 64) and trained_at_64.config_sources["input_size"].startswith("tried")
    assert "--input-size 64" in " ".join(cap.get().split())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(trained_at_64.net(x), made["NetImg"](x))
    assert load("NetImg", input_size=(64, 64)).config_sources["input_size"] == "flag"
    assert load("NetImg", model_args={"img_size": 64}).config_sources["input_size"] == "--model-arg img_size"
    with pytest.raises(HardenError, match="do not fit"):
        load("NetImg", input_size=(32, 32))  # the user's word stands
    default = load("NetInput")
    assert default.spec.input_size == (28, 28) and default.config_sources["input_size"].startswith("default of")
    assert load("NetImage").spec.input_size == (96, 96)  # no default: built at the common sizes until it fits
    pooled = load("PoolNet")
    assert pooled.spec.input_size == (224, 224) and pooled.net.img_size == (3, 224, 224)
    assert load("PoolNet", input_size=(64, 64)).net.img_size == (3, 64, 64)  # the size reaches it, as a tuple
    saved = tmp_path / "saved.safetensors"
    harden.save(trained_at_64, saved)
    assert harden.load(saved).spec.input_size == (64, 64)
    # an MLP's input_size is the flattened image's length (784), not a side: given C x H x W, never 784x784
    for mlp in (load("MLP"), load("NeuralNet", num_classes=10, model_args={"hidden_size": 20})):
        assert (mlp.spec.in_chans, mlp.spec.input_size) == (1, (28, 28)) and mlp.net.fc1.in_features == 784


LIGHTNING_MODULE = """
from torch import nn


class LitClassifier(nn.Module):  # stands for a LightningModule whose __init__ calls save_hyperparameters()
    def __init__(self, num_classes=10, width=16, lr=1e-3, img_size=32):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                   nn.Linear(width * (img_size // 2) ** 2, num_classes))

    def forward(self, x):
        return self.model(x)
"""


class AttributeDict(dict):
    """Lightning's AttributeDict, EasyDict: a dict subclass, which torch.load(weights_only=True) refuses."""


def test_a_lightning_checkpoint_gives_its_module_its_hyper_parameters(tmp_path):
    """Lightning's `load_from_checkpoint` builds the module from the checkpoint's hyper_parameters: so does harden
    for `--arch file.py:Class` (the arguments the constructor names; the class count, channels and input size read
    under their published names), under --model-arg. hyper_parameters pickled as a dict subclass (AttributeDict, a
    research config's EasyDict) are read without running anything."""
    from harden.models.registry import _import_callable
    (tmp_path / "lit.py").write_text(LIGHTNING_MODULE)
    arch = f"{tmp_path / 'lit.py'}:LitClassifier"
    torch.manual_seed(0)
    net = _import_callable(arch)(num_classes=7, width=24, lr=0.01, img_size=64).eval()
    container = {"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.4.0", "state_dict": net.state_dict(),
                 "hyper_parameters": AttributeDict(num_classes=7, width=24, lr=0.01, img_size=64),
                 "optimizer_states": [], "lr_schedulers": []}
    torch.save(container, tmp_path / "lit.ckpt")
    model = harden.load(tmp_path / "lit.ckpt", arch=arch)
    assert (model.spec.num_classes, model.spec.input_size) == (7, (64, 64))
    assert model.spec.model_args == {"width": 24, "lr": 0.01}
    assert model.config_sources["model_args"] == "checkpoint hyper_parameters"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))
    with pytest.raises(HardenError, match="do not fit"):
        harden.load(tmp_path / "lit.ckpt", arch=arch, model_args={"width": 16})  # the user's word stands
    saved = tmp_path / "saved.safetensors"
    harden.save(model, saved)
    again = harden.load(saved)
    assert again.spec.model_args == {"width": 24, "lr": 0.01} and "hyper_parameters" not in again.spec.extra
    torch.save({"cfg": AttributeDict(lr=0.1, note="x"), "model": net.state_dict()}, tmp_path / "research.pth")
    assert harden.load(tmp_path / "research.pth", arch=arch, num_classes=7, input_size=(64, 64),
                       model_args={"width": 24}).spec.num_classes == 7


def test_published_mnist_network_needs_no_flags_its_weights_and_shapes_say_them(tmp_path, cli):
    """A constructor without arguments fixes the class count (the output's width, read from a probe forward), the
    first convolution the channels (an MLP's first linear layer: its inputs as 1 x 28 x 28), and a
    flatten before a linear layer the input size: all three are read, each said with where it came from; a flag
    still wins; a size outside the common ones is still asked for."""
    (tmp_path / "mnist_net.py").write_text(EXAMPLES_MNIST)
    arch = f"{tmp_path / 'mnist_net.py'}:Net"
    torch.manual_seed(0)
    net = harden.create_model(arch, 10, 1, (28, 28)).net
    torch.save(net.state_dict(), tmp_path / "mnist_cnn.pt")
    from harden.runtime import console
    with console.capture() as cap:
        model = harden.load(tmp_path / "mnist_cnn.pt", arch=arch)
    said = " ".join(cap.get().split())
    spec, sources = model.spec, model.config_sources
    assert (spec.num_classes, spec.in_chans, spec.input_size) == (10, 1, (28, 28))
    assert sources["num_classes"] == "the network's output width"  # Net() takes no count: what it returns says it
    assert sources["in_chans"] == "checkpoint weights (conv1.weight)"
    assert sources["input_size"].startswith("tried")
    assert "--input-size 28" in said and "--num-classes 10" in said and "assuming input_size" not in said
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(model(x), net(x))
    assert harden.load(tmp_path / "mnist_cnn.pt", arch=arch, input_size=(28, 28)).config_sources[
        "input_size"] == "flag"
    code, out, err = cli("inspect", tmp_path / "mnist_cnn.pt", "--arch", arch)
    assert code == 0 and "28x28" in out and "conv1.weight" in out, out + err

    odd = f"{tmp_path / 'mnist_net.py'}:Odd"
    torch.save(harden.create_model(odd, 10, 1, (34, 34)).net.state_dict(), tmp_path / "odd.pt")
    with pytest.raises(HardenError, match="cannot run on a batch of 2 x 1 x 32 x 32.*from 28 to 512.*--input-size"):
        harden.load(tmp_path / "odd.pt", arch=odd)
    assert harden.load(tmp_path / "odd.pt", arch=odd, input_size=(34, 34)).spec.num_classes == 10

    mlp = f"{tmp_path / 'mnist_net.py'}:MLP"
    torch.save(harden.create_model(mlp, 10, 1, (28, 28)).net.state_dict(), tmp_path / "mlp.pt")
    model = harden.load(tmp_path / "mlp.pt", arch=mlp)
    assert (model.spec.num_classes, model.spec.in_chans, model.spec.input_size) == (10, 1, (28, 28))
    assert model.config_sources["in_chans"] == "checkpoint weights (fc1.weight: 784 inputs, 1 x 28 x 28)"

    aliased = f"{tmp_path / 'mnist_net.py'}:Aliased"
    from harden.models.registry import _import_callable
    net = _import_callable(aliased)(n_classes=5, in_channels=1).eval()
    torch.save(net.state_dict(), tmp_path / "aliased.pt")
    model = harden.load(tmp_path / "aliased.pt", arch=aliased)  # n_classes and in_channels passed under their names
    assert (model.spec.num_classes, model.spec.in_chans) == (5, 1)
    with torch.no_grad():
        assert torch.equal(model.net(x[:, :1]), net(x[:, :1]))
    torch.save(_import_callable(f"{tmp_path / 'mnist_net.py'}:DMStyle")(num_input_channels=1).state_dict(),
               tmp_path / "dm.pt")
    from harden.runtime import held_warnings
    with held_warnings() as words:  # the channels given under its name, not searched for after a failed load
        model = harden.load(tmp_path / "dm.pt", arch=f"{tmp_path / 'mnist_net.py'}:DMStyle")
    assert model.spec.in_chans == 1 and not any("built with" in w for w in words), words
    torch.save(_import_callable(f"{tmp_path / 'mnist_net.py'}:CamelCount")(6).state_dict(), tmp_path / "camel.pt")
    model = harden.load(tmp_path / "camel.pt", arch=f"{tmp_path / 'mnist_net.py'}:CamelCount", num_classes=6)
    assert model.spec.num_classes == 6 and model.net.head.out_features == 6

    allconv = f"{tmp_path / 'mnist_net.py'}:AllConv"
    torch.save(harden.create_model(allconv, 7, 1, (28, 28)).net.state_dict(), tmp_path / "allconv.pt")
    # no linear layer to read the count from: its output's width says it
    model = harden.load(tmp_path / "allconv.pt", arch=allconv)
    assert (model.spec.num_classes, model.config_sources["num_classes"]) == (7, "the network's output width")
    assert harden.load(tmp_path / "allconv.pt", arch=allconv, num_classes=7).spec.in_chans == 1


DIGITS = ["--num-classes", "10", "--in-chans", "1", "--input-size", "8x8", "--mean", "0.3", "--std", "0.35"]


@pytest.fixture(scope="module")
def nets_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / "nets.py"
    path.write_text(NETS)
    return path


def _module(nets_file, fn):
    model = harden.create_model(f"{nets_file}:{fn}", 10, 1, (8, 8), (0.3,), (0.35,))
    return model.net


def _save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


# ------------------------------------------------------------------ forms of a checkpoint

FORMS = {
    "top-level state dict, .pt": lambda sd: ("m.pt", sd, {}),
    "legacy pickle, .th": lambda sd: ("m.th", sd, {"legacy": True}),
    "nested state_dict + epoch, .pth.tar": lambda sd: ("m.pth.tar", {"state_dict": sd, "epoch": 3, "best": 0.9}, {}),
    "nested model_state_dict + optimizer, .tar": lambda sd: (
        "m.tar", {"model_state_dict": sd, "optimizer_state_dict": {"state": {0: {"momentum_buffer": torch.zeros(2)}},
                                                                  "param_groups": [{"lr": 0.1}]}}, {}),
    "nested net, no extension": lambda sd: ("weights", {"net": sd}, {}),
    "DataParallel module. prefix": lambda sd: ("m.pt", {f"module.{k}": v for k, v in sd.items()}, {}),
    "torch.compile _orig_mod. prefix": lambda sd: ("m.pt", {f"_orig_mod.{k}": v for k, v in sd.items()}, {}),
    "Lightning checkpoint, .ckpt": lambda sd: (
        "m.ckpt", {"epoch": 4, "global_step": 100, "pytorch-lightning_version": "2.4.0",
                   "state_dict": {f"classifier.{k}": v for k, v in sd.items()},
                   "optimizer_states": [{"state": {}, "param_groups": []}], "lr_schedulers": []}, {}),
    "ema under model_ema": lambda sd: ("m.pt", {"model_ema": sd, "epoch": 1}, {}),
    # torchvision's reference scripts and timm's save their argparse Namespace; scores often as numpy scalars
    "training script's args, numpy scores, paths": lambda sd: (
        "checkpoint.pth", {"model": sd, "epoch": 7, "args": argparse.Namespace(lr=0.1, output_dir=Path("/runs/a")),
                           "best_acc1": np.float64(91.5), "history": np.array([80.0, 91.5], np.float32),
                           "saved": datetime.datetime(2025, 1, 2)}, {}),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_form_loads_with_flags_only(form, nets_file, tmp_path, cli):
    net = _module(nets_file, "plain")
    sd = OrderedDict((k, v.clone()) for k, v in net.state_dict().items())
    name, obj, opts = FORMS[form](sd)
    path = _save(obj, tmp_path / name, legacy=opts.get("legacy", False))
    model = harden.load(path, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    for k, v in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), (form, k)
    flags = ["--arch", f"{nets_file}:plain", *DIGITS]
    code, out, err = cli("inspect", path, *flags)
    assert code == 0 and "head" in out, (form, err)
    code, _, err = cli("import", path, *flags, "--data", "digits", "-o", tmp_path / "imp.safetensors")
    assert code == 0, (form, err)
    code, _, err = cli("eval", tmp_path / "imp.safetensors", "--n", 4, "--attack", "fgsm", "--no-metrics",
                       "--no-masking-checks", "-q")
    assert code == 0, (form, err)


def test_numpy_scalars_saved_under_numpy_1_load_and_code_is_still_refused(nets_file, tmp_path):
    """numpy 1 pickles its scalars as numpy.core.multiarray.scalar, numpy 2 as numpy._core...: both read as data.
    The allowance is for data only: torch still refuses a function or a class of the file's choosing."""
    net = _module(nets_file, "plain")
    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "acc": np.float64(0.5)}, buf)
    src, out = zipfile.ZipFile(io.BytesIO(buf.getvalue())), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("data.pkl"):  # protocol 2 names globals as text lines: rename the module
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray\nscalar" in data
            dst.writestr(name, data)
    (tmp_path / "np1.pt").write_bytes(out.getvalue())
    model = harden.load(tmp_path / "np1.pt", arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    assert torch.equal(model.net.fc.weight, net.fc.weight)
    for evil in (argparse.ArgumentParser, np.load, Path.unlink, np.random.default_rng(0)):
        # beyond data: torch refuses, and harden reads the file inertly (test_checkpoint: nothing runs)
        _save({"state_dict": net.state_dict(), "x": evil}, tmp_path / "evil.pt")
        with pytest.raises(pickle.UnpicklingError):
            torch.load(tmp_path / "evil.pt", weights_only=True)
        m = harden.load(tmp_path / "evil.pt", arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
        assert torch.equal(m.net.fc.weight, net.fc.weight)


def test_timm_train_checkpoint_loads_without_flags(tmp_path, cli):
    """timm's train.py writes {'arch', 'state_dict', 'state_dict_ema', 'args', 'optimizer', ...}: its arch and its
    args (classes, channels, size, mean/std, global pool) are read as timm's own evaluation reads them, the rest of
    the preprocessing from timm's config; the EMA copy is one --key away."""
    import timm
    net = timm.create_model("test_resnet.r160_in1k", num_classes=5, in_chans=1, global_pool="max").eval()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    args = argparse.Namespace(model="test_resnet.r160_in1k", num_classes=5, in_chans=None, input_size=[1, 96, 96],
                              img_size=None, mean=[0.5], std=[0.25], interpolation="", crop_pct=None, gp="max",
                              model_kwargs={}, output=Path("/runs"), lr=0.1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    path = _save({"epoch": 9, "arch": "test_resnet.r160_in1k", "state_dict": net.state_dict(), "optimizer":
                  opt.state_dict(), "version": 2, "args": args, "metric": np.float64(71.2), "state_dict_ema": ema},
                 tmp_path / "model_best.pth.tar")
    code, _, err = cli("inspect", path)
    assert code == 2 and "'state_dict_ema'" in err and "--key" in err
    assert "'state_dict_ema' is an average of the weights" in " ".join(err.split())
    model = harden.load(path, key="state_dict")
    spec = model.spec
    assert (spec.arch, spec.num_classes, spec.in_chans, spec.input_size) == ("test_resnet.r160_in1k", 5, 1, (96, 96))
    assert (tuple(spec.mean), tuple(spec.std)) == ((0.5,), (0.25,))
    cfg = timm.models.get_pretrained_cfg("test_resnet.r160_in1k")  # what args left to the model's default
    assert (spec.interpolation, spec.crop_pct) == (cfg.interpolation, cfg.crop_pct)
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-5)
    assert torch.equal(harden.load(path, key="state_dict_ema").net.fc.bias, ema["fc.bias"])
    # an 'arch' timm does not know is not taken (pass --arch), nor are args of another model
    # (its weights are timm's test_resnet's, but a file that names its network otherwise is not loaded as timm's)
    _save({"arch": "my_private_net", "state_dict": net.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(HardenError, match="its 'arch', 'my_private_net', is no timm or torchvision name\\); pass --arch"):
        harden.load(tmp_path / "other.pth")


def test_class_count_from_the_constructor_default_checked_against_the_head(nets_file, tmp_path, capsys):
    """A callable's own default class count is used where nothing else says it, and strict loading checks it: a
    head with other rows gives its count (with a warning); a constructor that requires the count (WideResNet-pytorch's
    `WideResNet(depth, num_classes)`) is given its last linear layer's rows, which strict loading checks (it asked for
    the flag before), and where they build a network the file does not fit, the flag is asked for as before."""
    arch = f"{nets_file}:plain"
    for n in (10, 4):
        net = harden.create_model(arch, n, 1, (8, 8)).net
        torch.save(net.state_dict(), tmp_path / f"p{n}.pt")
        model = harden.load(tmp_path / f"p{n}.pt", arch=arch, in_chans=1, input_size=(8, 8))
        assert model.spec.num_classes == n and torch.equal(model.net.fc.weight, net.fc.weight)
    assert harden.load(tmp_path / "p10.pt", arch=arch, in_chans=1, input_size=(8, 8)).config_sources[
        "num_classes"] == f"default of {arch}"
    (tmp_path / "nodefault.py").write_text("from torch import nn\n\ndef make(num_classes):\n"
                                           "    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n")
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).state_dict(), tmp_path / "nd.pt")
    from harden.runtime import held_warnings
    with held_warnings() as said:
        model = harden.load(tmp_path / "nd.pt", arch=f"{tmp_path / 'nodefault.py'}:make", in_chans=1, input_size=(8, 8))
    assert model.spec.num_classes == 3 and any("has no default count" in " ".join(w.split()) for w in said), said
    # the count sizes a hidden layer, the last layer's rows are two: the rows build a network the file does not fit
    (tmp_path / "hidden.py").write_text("from torch import nn\n\ndef make(num_classes):\n    return nn.Sequential("
                                        "nn.Flatten(), nn.Linear(64, num_classes), nn.Linear(num_classes, 2))\n")
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5), torch.nn.Linear(5, 2)).state_dict(),
               tmp_path / "hidden.pt")
    with pytest.raises(HardenError, match="pass --num-classes.*has 2 rows"):
        harden.load(tmp_path / "hidden.pt", arch=f"{tmp_path / 'hidden.py'}:make", in_chans=1, input_size=(8, 8))


def test_a_constructor_s_own_arguments_are_asked_for_by_name(tmp_path, cli):
    """Published code's `VGG(vgg_name)` (no class count, no default): the error names the argument to give with
    --model-arg, where it asked for --num-classes first, which the class does not take; given it, the class count is
    the network's output width. `harden train` takes --model-arg too (its error named the flag it lacked)."""
    (tmp_path / "vgg.py").write_text(
        "from torch import nn\ncfg = {'VGGs': [8, 'M', 16, 'M']}\n\nclass VGG(nn.Module):\n"
        "    def __init__(self, vgg_name):\n        super().__init__()\n        layers, c = [], 3\n"
        "        for x in cfg[vgg_name]:\n            layers += [nn.MaxPool2d(2)] if x == 'M' else "
        "[nn.Conv2d(c, x, 3, padding=1), nn.ReLU()]\n            c = x if x != 'M' else c\n"
        "        self.features = nn.Sequential(*layers)\n        self.classifier = nn.Linear(16 * 8 * 8, 10)\n\n"
        "    def forward(self, x):\n        out = self.features(x)\n"
        "        return self.classifier(out.view(out.size(0), -1))\n")
    net = harden.create_model(f"{tmp_path / 'vgg.py'}:VGG", 10, model_args={"vgg_name": "VGGs"}).net
    torch.save({"net": net.state_dict(), "acc": 55.0, "epoch": 3}, tmp_path / "ckpt.pth")
    arch = f"{tmp_path / 'vgg.py'}:VGG"
    with pytest.raises(HardenError) as missing:
        harden.load(tmp_path / "ckpt.pth", arch=arch)
    said = str(missing.value)
    assert "--model-arg vgg_name=VALUE" in said and "--num-classes" not in said
    model = harden.load(tmp_path / "ckpt.pth", arch=arch, model_args={"vgg_name": "VGGs"})
    assert model.spec.num_classes == 10 and torch.equal(model.net.classifier.weight, net.classifier.weight)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x_train=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(40) % 10, x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    code, _, err = cli("train", "--arch", arch, "--model-arg", "vgg_name=VGGs", "--data", tmp_path / "c.npz",
                       "--epochs", 1, "-o", tmp_path / "t.safetensors")
    assert code == 0, err
    assert harden.load(tmp_path / "t.safetensors").spec.model_args == {"vgg_name": "VGGs"}


def _repo(root: Path, package: str) -> Path:
    """A published repository's layout: a package whose modules import each other relatively, and a training script
    beside it that imports the package absolutely."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("from .resnet import *\n")
    (root / package / "layers.py").write_text("from torch import nn\n\ndef conv3x3(i, o, s=1):\n"
                                              "    return nn.Conv2d(i, o, 3, s, 1, bias=False)\n")
    (root / package / "resnet.py").write_text(
        "import torch.nn as nn\nfrom .layers import conv3x3\n\n__all__ = ['net']\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, num_classes=10):\n        super().__init__()\n        self.c = conv3x3(1, 8, 2)\n"
        "        self.fc = nn.Linear(8, num_classes)\n\n    def forward(self, x):\n"
        "        return self.fc(self.c(x).mean((2, 3)))\n\n\ndef net(num_classes=10):\n    return Net(num_classes)\n")
    (root / "train.py").write_text(f"from {package}.resnet import Net\n\n\ndef make(num_classes=10):\n"
                                   "    return Net(num_classes)\n")
    return root


def test_architectures_from_a_repository_import_as_python_imports_them(tmp_path, monkeypatch):
    """Relative imports inside a package, a script's absolute imports of its siblings, and a dotted name from the
    current folder (as `python -m` finds it) all work; two repositories with a package of the same name are an error
    that says so, not the wrong class. A script without the .py suffix (an executable `train`) imports too: it raised
    "'NoneType' object has no attribute 'loader'"."""
    repo = _repo(tmp_path / "repo", "pubrepo_models")
    (repo / "train").write_text("#!/usr/bin/env python\n" + (repo / "train.py").read_text())
    flags = dict(num_classes=5, in_chans=1, input_size=(8, 8))
    for arch in (f"{repo}/pubrepo_models/resnet.py:net", f"{repo}/pubrepo_models/__init__.py:net",
                 f"{repo}/train.py:make", f"{repo}/train:make"):
        m = harden.create_model(arch, **flags)
        assert type(m.net).__name__ == "Net" and m.net.fc.out_features == 5, arch
    other = _repo(tmp_path / "other", "pubrepo_cwd")
    monkeypatch.chdir(other)
    assert harden.create_model("pubrepo_cwd.resnet:net", **flags).net.fc.out_features == 5
    clash = _repo(tmp_path / "clash", "pubrepo_models")
    with pytest.raises(HardenError, match="already taken"):
        harden.create_model(f"{clash}/pubrepo_models/resnet.py:net", **flags)
    with pytest.raises(HardenError, match="cannot be imported.*current folder"):
        harden.create_model("no_such_pkg_xyz.mod:net", **flags)


def test_safetensors_found_by_header_whatever_the_name(nets_file, tmp_path):
    from safetensors.torch import save_file
    net = _module(nets_file, "plain")
    path = tmp_path / "model.bin"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = harden.load(path, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    assert torch.equal(model.net.fc.weight, net.fc.weight)


def test_a_second_copy_of_the_weights_in_one_state_dict_is_asked_about(nets_file, tmp_path):
    """A Lightning module with an EMA copy as an attribute saves `model.*` and `model_ema.*` in one state dict: the
    EMA had been set aside silently for `model.`; now the error names both, and --key takes a prefix as a level."""
    a, b = _module(nets_file, "plain"), _module(nets_file, "plain")
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.1)
    sd = {**{f"model.{k}": v for k, v in a.state_dict().items()}, **{f"model_ema.{k}": v for k, v in b.state_dict().items()}}
    path = _save({"state_dict": sd, "epoch": 3, "pytorch-lightning_version": "2.1.0"}, tmp_path / "ema.ckpt")
    flags = dict(arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    with pytest.raises(HardenError, match="'model.', 'model_ema.'.*--key state_dict.model_ema"):
        harden.load(path, **flags)
    model = harden.load(path, key="state_dict.model_ema", **flags)
    assert torch.equal(model.net.fc.weight, b.fc.weight)
    # a temperature-scaling wrapper's `temperature` beside `model.`: loaded without it, and said
    path = _save({"temperature": torch.ones(1), **{f"model.{k}": v for k, v in a.state_dict().items()}}, tmp_path / "t.pt")
    assert "set aside 1 key(s) of the file outside the model (temperature)" in harden.load(path, **flags).load_notes


def test_a_quantization_aware_training_checkpoint_says_what_it_is(nets_file, tmp_path):
    """torch.ao.quantization's prepare_qat adds fake-quantize observers beside the float weights: the mismatch error
    says what the file is and how to evaluate the model deployed."""
    import warnings

    import torch.ao.quantization as q
    net = _module(nets_file, "plain").train()
    net.qconfig = q.get_default_qat_qconfig("fbgemm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own deprecation notice for reduce_range
        qat = q.prepare_qat(net)
    qat(torch.rand(4, 1, 8, 8))
    path = _save(qat.state_dict(), tmp_path / "qat.pth")
    with pytest.raises(HardenError, match="fake-quantize observers: a quantization-aware training checkpoint"):
        harden.load(path, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))


def test_thop_counters_left_in_a_state_dict_are_dropped(nets_file, tmp_path):
    """thop.profile(model) before saving leaves total_ops and total_params buffers on every module (a published CIFAR
    checkpoint habit), under DataParallel's prefix here: dropped, said; the weights load as they are."""
    net = _module(nets_file, "plain")
    sd = dict(net.state_dict())
    for name, _ in net.named_modules():
        for counter in ("total_ops", "total_params"):
            sd[f"{name}.{counter}" if name else counter] = torch.zeros(1, dtype=torch.float64)
    path = _save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "profiled.pth")
    model = harden.load(path, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    assert any(n.startswith("dropped ") and "thop" in n for n in model.load_notes), model.load_notes
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net.eval()(x), atol=1e-6)


def test_batchnorm_without_num_batches_tracked_loads_that_buffer_only(nets_file, tmp_path):
    net = _module(nets_file, "plain")
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = _save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "old.th", legacy=True)
    model = harden.load(path, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    assert any("num_batches_tracked" in n for n in model.load_notes)
    # anything else missing is still an error, naming the key
    sd.pop("bn1.running_mean")
    _save(sd, tmp_path / "older.th")
    with pytest.raises(HardenError, match="bn1.running_mean"):
        harden.load(tmp_path / "older.th", arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))


def test_ambiguous_container_asks_for_key(cli, nets_file, tmp_path):
    net = _module(nets_file, "plain")
    sd = net.state_dict()
    path = _save({"student": sd, "teacher": {k: v + 1 for k, v in sd.items()}}, tmp_path / "two.pt")
    code, _, err = cli("inspect", path, "--arch", f"{nets_file}:plain", *DIGITS)
    assert code == 2 and "'student'" in err and "'teacher'" in err and "--key" in err
    assert "moving average" not in err
    code, out, err = cli("inspect", path, "--arch", f"{nets_file}:plain", *DIGITS, "--key", "teacher")
    assert code == 0, err
    lst = _save({"state_dict": [sd, {k: v + 1 for k, v in sd.items()}]}, tmp_path / "list.pt")
    code, _, err = cli("inspect", lst, "--arch", f"{nets_file}:plain", *DIGITS)
    assert code == 2 and "state_dict.0" in err
    m = harden.load(lst, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8), key="state_dict.1")
    assert torch.equal(m.net.fc.bias, sd["fc.bias"] + 1)
    # one model kept twice (the module itself beside its state_dict(), read inert): the same weights, taken unasked
    both = _save({"model": net, "state_dict": sd, "epoch": 3}, tmp_path / "both.pt")
    code, _, err = cli("inspect", both, "--arch", f"{nets_file}:plain", *DIGITS)
    assert code == 0, err
    # torch's stochastic weight averaging beside the weights: asked as an EMA is (it was taken as 'model' silently)
    from torch.optim.swa_utils import AveragedModel
    swa = _save({"model": sd, "swa_model": AveragedModel(net).state_dict(), "epoch": 3}, tmp_path / "swa.pt")
    code, _, err = cli("inspect", swa, "--arch", f"{nets_file}:plain", *DIGITS)
    assert code == 2 and "'swa_model' is an average of the weights" in " ".join(err.split())
    code, _, err = cli("inspect", swa, "--arch", f"{nets_file}:plain", *DIGITS, "--key", "swa_model")
    assert code == 0, err  # its n_averaged buffer and module. prefix set aside


def test_bad_input_is_one_paragraph_exit_2(cli, nets_file, tmp_path):
    net = _module(nets_file, "plain")
    path = _save(net.state_dict(), tmp_path / "p.pt")
    cases = [
        (["--arch", f"{nets_file}:seq"], "do not fit"),  # keys of another architecture
        (["--arch", str(tmp_path / "missing.py") + ":plain"], "does not exist"),
        (["--arch", f"{nets_file}:nothing"], "no callable"),
    ]
    for flags, msg in cases:
        code, out, err = cli("eval", path, *flags, *DIGITS, "--data", "digits", "--n", "4")
        assert code == 2 and msg in err and "Traceback" not in err, (flags, err)
    bad = tmp_path / "notmodule.py"
    bad.write_text("def make(num_classes=10):\n    return 42\n")
    code, _, err = cli("eval", path, "--arch", f"{bad}:make", *DIGITS, "--data", "digits")
    assert code == 2 and "not a torch.nn.Module" in err
    assert not list(tmp_path.glob("*.json"))


def test_taps_probe_matches_timm_feature_info():
    import timm
    for name in ("resnet18", "resnet50", "regnetx_002", "convnext_atto", "vgg11"):
        m = timm.create_model(name, pretrained=False, num_classes=10)
        declared = [(t["module"], t["num_chs"], t["reduction"]) for t in taps_of(m)]
        found = [(t["module"], t["num_chs"], t["reduction"]) for t in discover_taps(m, 3, (64, 64))]
        assert found == declared, name


def test_channels_last_outputs_are_no_taps():
    """ConvNeXt's and Swin's blocks permute to channels-last (N, H, W, C) and back: such an output was read as a map of
    H channels and sides (W, C). timm's Swin at 64 px gave four taps of 16, 8, 4 and 2 "channels" (its maps' sides);
    a ConvNeXt as FB's code writes it, at 32 px where its last stage is 1x1, gave taps of 1 channel at side 256.
    Neither is a feature map; maps channels-first stay taps, at any aspect."""
    import timm
    from torch import nn

    class Block(nn.Module):  # FB's ConvNeXt block: depthwise conv, then LayerNorm and MLP channels-last
        def __init__(self, dim):
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm, self.pwconv1, self.act = nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU()
            self.pwconv2 = nn.Linear(4 * dim, dim)

        def forward(self, x):
            y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x).permute(0, 2, 3, 1)))))
            return x + y.permute(0, 3, 1, 2)

    class Published(nn.Module):
        def __init__(self, dims=(8, 16, 32, 64)):
            super().__init__()
            self.stem = nn.Conv2d(3, dims[0], 4, 4)
            self.stages = nn.ModuleList(Block(d) for d in dims)
            self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, 2) for a, b in zip(dims[:-1], dims[1:], strict=True))
            self.head = nn.Linear(dims[-1], 10)

        def forward(self, x):
            x = self.stem(x)
            for i, stage in enumerate(self.stages):
                x = stage(x)
                x = self.downs[i](x) if i < len(self.downs) else x
            return self.head(x.mean((2, 3)))

    net = Published()
    assert [(t["module"], t["num_chs"]) for t in discover_taps(net, 3, (32, 32))] == \
        [("stages.0", 8), ("stages.1", 16), ("stages.2", 32)]  # the last stage is 1x1 at 32 px: a pooled map
    assert [(t["num_chs"], t["reduction"]) for t in discover_taps(net, 3, (64, 128))] == \
        [(8, 4), (16, 8), (32, 16), (64, 32)]
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10, img_size=64,
                             window_size=2, depths=(1, 1, 1, 1), embed_dim=24, num_heads=(1, 1, 1, 1))
    assert discover_taps(swin, 3, (64, 64)) == []  # its stages' outputs are all channels-last (its feature_info says)


# attention as published ViT code writes it (lucidrains' vit-pytorch): the weights pass through nn.Softmax and
# nn.Dropout modules, 4-D outputs of heads x tokens x tokens
TOKEN_NETS = '''
import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim, heads=4):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(0.1)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, -1))
        attn = self.dropout(self.attend(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5))
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, d)) + x


class ViT(nn.Module):
    def __init__(self, num_classes=10, patch=2, dim=32, depth=2, stem=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU()) if stem else nn.Identity()
        self.patch = nn.Conv2d(16 if stem else 3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.layers = nn.ModuleList([Attention(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch(self.stem(x)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.size(0), -1, -1), x], 1)
        for layer in self.layers:
            x = layer(x)
        return self.head(x[:, 0])
'''


def test_attention_weights_are_no_taps(tmp_path):
    """A ViT's attention weights (4-D: heads x tokens x tokens) were taken as a feature map (`layers.1.dropout`,
    4 channels at reduction 0), the last tap, so the fixer recipe put its convolutions on them (on a hybrid's
    default taps, or any ViT's chosen by --set taps=...); the convolutions' maps are the taps."""
    path = tmp_path / "vit.py"
    path.write_text(TOKEN_NETS)
    for size in (8, 16):  # 17 and 65 tokens: the attention maps wider and narrower than the image
        vit = harden.create_model(f"{path}:ViT", 10, 3, (size, size))
        assert [(t["module"], t["num_chs"], t["reduction"]) for t in vit.taps()] == [("patch", 32, 2)]
        hybrid = harden.create_model(f"{path}:ViT", 10, 3, (size, size), model_args={"stem": True})
        assert [(t["module"], t["num_chs"], t["reduction"]) for t in hybrid.taps()] == [
            ("stem.2", 16, 1), ("stem.4", 16, 2), ("patch", 32, 4)]


def test_taps_and_head_of_plain_modules(nets_file):
    plain = harden.create_model(f"{nets_file}:plain", 10, 1, (8, 8))
    assert [t["module"] for t in plain.taps()] == ["bn1", "conv2"]
    assert plain.head() == ("fc", "none")
    seq = harden.create_model(f"{nets_file}:seq", 10, 1, (8, 8))
    assert [t["module"] for t in seq.taps()] == ["1", "4"]
    assert seq.head() == ("6", "none")
    logsm = harden.create_model(f"{nets_file}:logsoftmax", 10, 1, (8, 8))
    assert logsm.head() == ("fc", "log_softmax")
    x = torch.rand(3, 1, 8, 8)
    for m in (plain, seq, logsm):
        m.eval()
        with torch.no_grad():
            assert torch.allclose(m.classify(m.embed(x)), m(x), atol=1e-5)


# ------------------------------------------------------------------ every kind of model, every command

KINDS = {
    "timm": ("test_resnet", lambda: __import__("timm").create_model("test_resnet", num_classes=10, in_chans=1)),
    "plain": ("{f}:plain", None),
    "sequential": ("{f}:seq", None),
    "log_softmax": ("{f}:logsoftmax", None),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_command_on_a_foreign_checkpoint(kind, cli, nets_file, tmp_path):
    arch, build = KINDS[kind]
    arch = arch.format(f=nets_file)
    net = build() if build else _module(nets_file, arch.rpartition(":")[2])
    src = _save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 1},
                tmp_path / "foreign.pth.tar")
    flags = ["--arch", arch, *DIGITS]

    code, out, err = cli("inspect", src, *flags)
    assert code == 0, err
    assert "taps" in out and "head" in out and "output kind" in out
    assert ("log-probabilities" in out) == (kind == "log_softmax")

    imported = tmp_path / "imported.safetensors"
    code, out, err = cli("import", src, *flags, "--data", "digits", "-o", imported)
    assert code == 0, err
    meta = read_checkpoint(imported)[1]
    assert meta["imported_from"]["sha256"] == sha256_file(src) and meta["data"] == "digits"

    js = tmp_path / "r.json"
    code, out, err = cli("eval", imported, "--n", 8, "--attack", "fgsm", "--eps", "0.1", "--no-metrics",
                         "--no-masking-checks", "-q", "--json", js)  # no flags: the import wrote them
    assert code == 0, err
    assert json.loads(js.read_text())["threat_model"] == "white-box"

    for recipe in ("fixer", "idfr"):
        fixed = tmp_path / f"{recipe}.safetensors"
        code, out, err = cli("fix", src, *flags, "--data", "digits", "--recipe", recipe, "--data-frac", "0.05",
                             "--epochs", 1, "--no-report", "-q", "-o", fixed, *(
                                 ["--set", "fr_epochs=1", "--set", "steps=2"] if recipe == "idfr" else []))
        assert code == 0, (recipe, err)
        again = harden.load(fixed)  # the hardened model reloads with no flags
        assert again.spec.extra["recipe"] == recipe

        onnx_path = tmp_path / f"{recipe}.onnx"
        code, out, err = cli("export", fixed, "-o", onnx_path, "--num-images", 16, "-q")
        assert code == 0, (recipe, out, err)
        assert "OK" in out and "100.0%" in out and onnx_path.is_file()


def test_export_refuses_to_overwrite_and_writes_nothing_on_error(cli, digits_ckpt, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_text("keep")
    code, _, err = cli("export", digits_ckpt, "-o", target)
    assert code == 2 and "--force" in err and target.read_text() == "keep"


def test_export_names_the_operator_onnx_lacks(cli, tmp_path):
    (tmp_path / "odd.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Odd(nn.Module):\n"
        "    def __init__(self, num_classes=10, in_chans=1):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(64 * in_chans, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.special.i0e(x).flatten(1))\n")
    model = harden.create_model(f"{tmp_path / 'odd.py'}:Odd", 10, 1, (8, 8))
    ckpt = harden.save(model, tmp_path / "odd.safetensors")
    code, out, err = cli("export", ckpt, "-o", tmp_path / "odd.onnx")
    assert code == 2 and "special_i0e" in err and "Torch IR graph" not in out + err
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".odd.onnx*"))


def test_existing_harden_checkpoints_load_as_before(digits_ckpt, digits_model):
    again = harden.load(digits_ckpt)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), digits_model.eval()(x))
    assert again.load_notes == []


# ------------------------------------------------------------------ the shared CIFAR-10 ResNet-20, as its authors saved it

SHARED = Path(__file__).resolve().parents[2] / "shared"
ARCHS = Path(__file__).resolve().parents[1] / "benchmarks" / "archs.py"
RESNET20 = ["--arch", f"{ARCHS}:resnet20", "--num-classes", "10", "--mean", "0.485,0.456,0.406", "--std",
            "0.229,0.224,0.225"]


@pytest.mark.skipif(not (SHARED / "models" / "resnet20_cifar10.th").is_file(), reason="../shared absent")
def test_shared_resnet20_th_evaluates_and_fixes_with_flags_only(cli, tmp_path):
    th = SHARED / "models" / "resnet20_cifar10.th"
    import numpy as np
    with np.load(SHARED / "data" / "cifar10.npz") as f:  # its test split only: inflating x_train took 8 s of the test
        x, y = f["x_test"][:3000], f["y_test"][:3000]
    data = tmp_path / "cifar10_part.npz"
    np.savez(data, x_train=x[1000:], y_train=y[1000:], x_test=x[:1000], y_test=y[:1000])
    js = tmp_path / "r.json"
    code, out, err = cli("eval", th, *RESNET20, "--data", data, "--n", 100, "--attack", "fgsm", "--no-metrics",
                         "--no-masking-checks", "-q", "--json", js)
    assert code == 0, err
    assert json.loads(js.read_text())["clean_accuracy"] >= 0.85  # the authors report 91.7%
    code, out, err = cli("fix", th, *RESNET20, "--data", data, "--recipe", "fixer", "--data-frac", "0.025",
                         "--epochs", 1, "--no-report", "-q", "-o", tmp_path / "f.safetensors")
    assert code == 0, err
    assert harden.load(tmp_path / "f.safetensors").spec.extra["taps"] == ["layer1", "layer2"]


@pytest.mark.parametrize("in_chans", [3, 1])
def test_torchvision_factories_take_their_class_count_through_kwargs(tmp_path, in_chans):
    """torchvision's resnet18(*, weights=None, progress=True, **kwargs) hands **kwargs to ResNet, which takes no
    in_chans or input_size: harden passes only the class count there (and in_chans when it is not 3, which such a
    factory must then take: an error naming it, not a silent three-channel model)."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=6).eval()
    torch.save(net.state_dict(), tmp_path / "tv.pth")
    flags = dict(arch="torchvision.models:resnet18", num_classes=6, in_chans=in_chans, input_size=(64, 64))
    if in_chans == 1:
        with pytest.raises(HardenError, match="in_chans"):
            harden.load(tmp_path / "tv.pth", **flags)
        return
    model = harden.load(tmp_path / "tv.pth", **flags)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    assert [t["module"] for t in model.taps()][-4:] == ["layer1", "layer2", "layer3", "layer4"]


def test_a_kwargs_factorys_class_count_is_the_files_head_when_the_weights_load_with_it(tmp_path):
    """torchvision's factories have no num_classes default to read: the rows of the file's last linear weight are
    tried and kept only where the weights then load strictly (said in a warning); otherwise the usual request for
    --num-classes, naming those rows."""
    import torchvision
    net = torchvision.models.resnet18(num_classes=7).eval()
    torch.save(net.state_dict(), tmp_path / "tv.pth")
    from harden.runtime import console
    with console.capture() as cap:
        model = harden.load(tmp_path / "tv.pth", arch="torchvision.models:resnet18", input_size=(64, 64))
    assert model.spec.num_classes == 7 and model.config_sources["num_classes"] == "checkpoint weights (fc.weight's rows)"
    assert "--num-classes 7: the rows of the file's last linear weight" in " ".join(cap.get().split())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    state = net.state_dict()
    state["projection.weight"] = torch.zeros(3, 4)  # last, but no layer of the architecture
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(HardenError, match="pass --num-classes. Its last linear weight, projection.weight, has 3 rows"):
        harden.load(tmp_path / "extra.pth", arch="torchvision.models:resnet18", input_size=(64, 64))


def test_torchvision_checkpoints_name_their_factory_and_take_torchvision_s_preprocessing(tmp_path):
    """A torchvision factory's preprocessing is its default weights' evaluation transform (what torchvision's
    fine-tuning recipes evaluate with); PyTorch's ImageNet example saves the factory's name as 'arch' (a
    MobileNet-V2's keys are not timm's), torchvision's reference script saves its args (the factory and the evaluation
    sizes): both load with no flag."""
    import torchvision
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=5).eval()
    torch.save(resnet.state_dict(), tmp_path / "tv.pth")
    model = harden.load(tmp_path / "tv.pth", arch="torchvision.models:resnet18")
    spec = model.spec
    assert (spec.input_size, spec.crop_pct, spec.interpolation) == ((224, 224), 0.875, "bilinear")
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406)) and spec.std == pytest.approx((0.229, 0.224, 0.225))
    assert model.config_sources["mean"] == "torchvision weights (ResNet18_Weights.IMAGENET1K_V1)"
    from harden.runtime import console
    with console.capture() as cap:
        small = harden.load(tmp_path / "tv.pth", arch="torchvision.models:resnet18", input_size=(32, 32))
    assert small.config_sources["crop_pct"] == "default"  # the weights' crop belongs to their size
    # so do its statistics, but they are the likeliest for a file fine-tuned with torchvision's scripts: named
    said = " ".join(cap.get().split())
    assert "torchvision's weights' transform for torchvision.models:resnet18" in said
    assert "fine-tuned with torchvision's scripts takes --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225" in said

    mobilenet = torchvision.models.mobilenet_v2(num_classes=4).eval()
    _save({"epoch": 90, "arch": "mobilenet_v2", "state_dict": mobilenet.state_dict(), "best_acc1": torch.tensor(71.9),
           "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "model_best.pth.tar")
    model = harden.load(tmp_path / "model_best.pth.tar")
    assert (model.spec.arch, model.spec.num_classes) == ("torchvision.models:mobilenet_v2", 4)
    assert model.spec.input_size == (224, 224) and model.spec.mean == pytest.approx((0.485, 0.456, 0.406))
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model.net(x), mobilenet(x))

    args = argparse.Namespace(model="resnet18", val_resize_size=232, val_crop_size=224, train_crop_size=176,
                              interpolation="bicubic", data_path="/data/pets", lr=0.5)
    _save({"model": resnet.state_dict(), "optimizer": {}, "lr_scheduler": {}, "epoch": 599, "args": args},
          tmp_path / "checkpoint.pth")
    model = harden.load(tmp_path / "checkpoint.pth")
    spec = model.spec
    assert (spec.arch, spec.num_classes, spec.input_size) == ("torchvision.models:resnet18", 5, (224, 224))
    assert (spec.crop_pct, spec.interpolation) == (pytest.approx(224 / 232), "bicubic")
    assert spec.std == pytest.approx((0.229, 0.224, 0.225))
    with torch.no_grad():
        assert torch.equal(model.net(x), resnet(x))


def test_lightning_hyper_parameters_naming_a_timm_model_give_the_architecture(tmp_path):
    """A LightningModule around `timm.create_model(self.hparams.model_name, num_classes=...)`: its checkpoint's
    hyper_parameters name the architecture (no flag); where the module builds more than that model (a head of its
    own), the mismatch error says where the name came from."""
    import timm
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", num_classes=3).eval()
    hp = {"model_name": "resnet10t", "num_classes": 3, "lr": 1e-3}
    _save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
           "hyper_parameters": hp}, tmp_path / "lit.ckpt")
    model = harden.load(tmp_path / "lit.ckpt")
    assert (model.spec.arch, model.spec.num_classes) == ("resnet10t", 3)
    assert "arch_hyper_parameter" not in model.spec.extra  # nothing of it is written into what harden saves
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))
    head = {f"backbone.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    head.update({"head.0.weight": torch.zeros(3, 512), "head.0.bias": torch.zeros(3)})
    _save({"state_dict": head, "hyper_parameters": {"backbone": "resnet10t", "num_classes": 3}}, tmp_path / "own.ckpt")
    with pytest.raises(HardenError, match=r"read from the checkpoint's hyper_parameters\['backbone'\]"):
        harden.load(tmp_path / "own.ckpt")


def test_torchvision_googlenet_trained_without_aux_classifiers_loads(tmp_path):
    """torchvision's GoogLeNet (and Inception-v3) trained with aux_logits=False: the factory builds the auxiliary
    classifiers by default; a file that lacks exactly them is built without (warned), and answers as saved."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.googlenet(aux_logits=False, init_weights=False, num_classes=4).eval()
    torch.save(net.state_dict(), tmp_path / "goog.pth")
    model = harden.load(tmp_path / "goog.pth", arch="torchvision.models:googlenet", num_classes=4)
    assert model.spec.model_args == {"aux_logits": False}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))


def test_vit_fine_tuned_on_averaged_tokens_and_facebook_scripts_args(tmp_path):
    """MAE's and BEiT's fine-tuning average the tokens into fc_norm (timm's global_pool='avg'): a file with fc_norm in
    place of norm is built so (warned) where --arch names the ViT; their main_finetune.py `args` (MAE's model name
    `vit_tiny_patch16` is timm's at 224, nb_classes, input_size, global_pool, ImageNet's statistics, bicubic at
    224/256) give it all with no flag."""
    import timm
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", global_pool="avg", num_classes=7).eval()
    _save({"model": vit.state_dict()}, tmp_path / "ft.pth")
    _save({"model": vit.state_dict(), "epoch": 99,
           "args": argparse.Namespace(model="vit_tiny_patch16", global_pool=True, nb_classes=7, input_size=224)},
          tmp_path / "checkpoint-99.pth")
    x = torch.rand(2, 3, 224, 224)
    flagged = harden.load(tmp_path / "ft.pth", arch="vit_tiny_patch16_224", num_classes=7)
    bare = harden.load(tmp_path / "checkpoint-99.pth")
    assert flagged.spec.model_args == {"global_pool": "avg"} == bare.spec.model_args
    assert (bare.spec.arch, bare.spec.num_classes, bare.spec.interpolation) == ("vit_tiny_patch16_224", 7, "bicubic")
    assert bare.spec.mean == pytest.approx((0.485, 0.456, 0.406)) and bare.spec.crop_pct == pytest.approx(0.875)
    with torch.no_grad():
        assert torch.equal(flagged.net(x), vit(x)) and torch.equal(bare.net(x), vit(x))


def test_submodules_wrapped_in_data_parallel_load_without_their_module_segment(tmp_path):
    """PyTorch's ImageNet example wraps AlexNet's and VGG's `features` alone in DataParallel (`features.module.0.
    weight`), and a whole model wrapped again puts `module.` in front as well: both load into the bare network."""
    nn = torch.nn
    (tmp_path / "small.py").write_text(
        "from torch import nn\n\n\ndef small(num_classes=3):\n    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), "
        "nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), nn.Linear(4, num_classes))\n")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                        nn.Linear(4, 3)).eval()
    wrapped = nn.Sequential(nn.DataParallel(net[0]), net[1])
    whole = nn.DataParallel(wrapped)
    assert "0.module.0.weight" in wrapped.state_dict() and "module.0.module.0.weight" in whole.state_dict()
    _save({"epoch": 1, "state_dict": wrapped.state_dict()}, tmp_path / "inner.pth.tar")
    _save({"epoch": 1, "state_dict": whole.state_dict()}, tmp_path / "both.pth.tar")
    x = torch.rand(2, 3, 8, 8)
    for name in ("inner.pth.tar", "both.pth.tar"):
        model = harden.load(tmp_path / name, arch=f"{tmp_path / 'small.py'}:small", input_size=(8, 8))
        assert any("DataParallel" in n for n in model.load_notes), model.load_notes
        with torch.no_grad():
            assert torch.equal(model.net(x), net(x))


def _parts(sd, head="head.", body="backbone."):
    return {(head if k.startswith("fc.") else body) + k: v for k, v in sd.items()}


@pytest.mark.parametrize("form,names", [
    # OpenMMLab's mmpretrain: backbone and head under names of their own, class names in meta.dataset_meta
    ("mmpretrain", lambda sd: {"meta": {"dataset_meta": {"classes": [f"c{i}" for i in range(10)]}, "epoch": 3},
                               "state_dict": _parts(sd)}),
    # mmcls 0.x: meta.CLASSES
    ("mmcls", lambda sd: {"meta": {"CLASSES": [f"c{i}" for i in range(10)]}, "state_dict": _parts(sd)}),
    # the transfer-learning tutorial's checkpoint: ImageFolder's class_to_idx beside the weights
    ("class_to_idx", lambda sd: {"state_dict": sd, "class_to_idx": {f"c{i}": i for i in reversed(range(10))}}),
    # an encoder and a classifier under a Lightning module's own names
    ("encoder/classifier", lambda sd: {"state_dict": _parts(sd, "model.classifier.", "model.encoder."),
                                       "hyper_parameters": {"class_names": [f"c{i}" for i in range(10)]}}),
])
def test_parts_saved_under_their_own_names_and_class_names_beside_the_weights(form, names, nets_file, tmp_path):
    net = _module(nets_file, "plain")
    path = _save(names(OrderedDict(net.state_dict())), tmp_path / "m.pth")
    model = harden.load(path, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    for k, v in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), (form, k)
    assert model.spec.extra["label_names"] == [f"c{i}" for i in range(10)]
    if form != "class_to_idx":
        assert "removed the key prefixes" in model.load_notes[0]


def test_class_names_for_another_head_are_said_and_left_out(nets_file, tmp_path):
    net = _module(nets_file, "plain")
    path = _save({"state_dict": net.state_dict(), "classes": ["cat", "dog"]}, tmp_path / "m.pth")
    from harden.runtime import console
    with console.capture() as cap:
        model = harden.load(path, arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    assert "label_names" not in model.spec.extra
    assert "holds 2 class names for a model of 10 classes" in " ".join(cap.get().split())


def test_keys_of_another_shape_are_not_taken_under_a_second_prefix(nets_file, tmp_path):
    net = _module(nets_file, "plain")
    sd = _parts(OrderedDict(net.state_dict()))
    sd["head.fc.weight"] = torch.zeros(3, 256)  # a head for another class count: the usual mismatch error
    sd["head.fc.bias"] = torch.zeros(3)
    with pytest.raises(HardenError, match="missing key"):
        harden.load(_save(sd, tmp_path / "m.pth"), arch=f"{nets_file}:plain", num_classes=10, in_chans=1,
                    input_size=(8, 8))


def _robustness_library(sd, mean, std):
    """Madry et al.'s robustness library: the wrapper's normalizer, the model, and the attacker's copies of both."""
    out = {"module.normalizer.new_mean": mean.view(-1, 1, 1), "module.normalizer.new_std": std.view(-1, 1, 1)}
    out.update({f"module.model.{k}": v for k, v in sd.items()})
    out.update({"module.attacker.normalize.new_mean": mean.view(-1, 1, 1),
                "module.attacker.normalize.new_std": std.view(-1, 1, 1)})
    out.update({f"module.attacker.model.{k}": v for k, v in sd.items()})
    return {"model": out, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}, "schedule": None,
            "epoch": 150}


@pytest.mark.parametrize("form", [
    "robustness",
    # RobustBench's normalize_model: nn.Sequential(normalize=ImageNormalizer(mean, std), model=model)
    "robustbench",
    # buffers in 0-255 pixel units (OpenMMLab's, detectron2's convention)
    "0-255",
])
def test_input_normalisation_saved_beside_the_weights_is_the_model_s(form, nets_file, tmp_path):
    net = _module(nets_file, "plain").eval()
    sd = OrderedDict(net.state_dict())
    mean, std = torch.tensor([0.3]), torch.tensor([0.35])
    obj = (_robustness_library(sd, mean, std) if form == "robustness" else
           {"normalize.mean": mean.view(1, -1, 1, 1), "normalize.std": std.view(1, -1, 1, 1),
            **{f"model.{k}": v for k, v in sd.items()}} if form == "robustbench" else
           {"state_dict": {"data_preprocessor.mean": mean * 255, "data_preprocessor.std": std * 255, **_parts(sd)}})
    path = _save(obj, tmp_path / "m.pt")
    flags = dict(arch=f"{nets_file}:plain", num_classes=10, in_chans=1, input_size=(8, 8))
    model = harden.load(path, **flags)
    assert list(model.spec.mean) == pytest.approx([0.3]) and list(model.spec.std) == pytest.approx([0.35])
    assert model.config_sources["mean"].startswith("checkpoint buffers (")
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - 0.3) / 0.35), atol=1e-5)
    flagged = harden.load(path, **flags, mean=[0.5], std=[0.5])  # a flag still says otherwise
    assert list(flagged.spec.mean) == [0.5] and flagged.config_sources["mean"] == "flag"


def test_normalisation_buffers_the_network_holds_itself_are_not_applied_twice(nets_file, tmp_path):
    net = _module(nets_file, "normalised").eval()  # normalises inside, with its own mean / std buffers
    path = _save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "m.pt")
    from harden.runtime import console
    with console.capture():
        model = harden.load(path, arch=f"{nets_file}:normalised", num_classes=10, in_chans=1, input_size=(8, 8))
    # said as the network's own (it read "default", and the warning asked for --mean/--std, which normalise twice)
    assert list(model.spec.mean) == [0.0] and model.config_sources["mean"] == \
        "the network normalises its input itself (its buffers module.mean/std)"
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    with console.capture() as said:  # preprocessing assumed: said once, for what was finally assumed
        harden.load(_save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "any.pt"),
                    arch=f"{nets_file}:normalised_any_size", num_classes=10, in_chans=1)
    text = " ".join(said.get().split())
    assert text.count("assuming") == 1 and "mean 0" not in text and "--mean" not in text and \
        "the network normalises its input itself" in text, text
    # a file without them (converted from JAX, or saved before the buffers were added: RobustBench loads such files
    # without strictness) keeps the architecture's own, said with their values; it stopped at the missing buffers
    without = _save({k: v for k, v in net.state_dict().items() if k not in ("mean", "std")}, tmp_path / "without.pt")
    with console.capture() as said:
        kept = harden.load(without, arch=f"{nets_file}:normalised", num_classes=10, in_chans=1, input_size=(8, 8))
    assert "kept the architecture's own input normalisation mean/std (mean 0.3, std 0.35), which the file does not " \
        "hold" in " ".join(said.get().split()) and kept.config_sources["mean"].startswith("the network normalises")
    with torch.no_grad():
        assert torch.allclose(kept(x), net(x), atol=1e-6)
    with console.capture() as said:  # the flags normalise once more: said
        model = harden.load(path, arch=f"{nets_file}:normalised", num_classes=10, in_chans=1, input_size=(8, 8),
                            mean=[0.1307], std=[0.3081])
    assert model.config_sources["mean"] == "flag" and "the network normalises them again itself (its buffers " \
        "module.mean/std: mean 0.3, std 0.35)" in " ".join(said.get().split())


@pytest.mark.parametrize("fn", ["normalised_layer", "normalised_transform", "normalised_smoothing",
                                "normalised_inline"])
def test_a_normalising_layer_without_buffers_is_said_and_not_applied_twice(fn, nets_file, tmp_path):
    """The normalisation as a layer of the network whose statistics are attributes (torchvision's
    transforms.Normalize in an nn.Sequential; robustness code's own Normalize): nothing of it is in the file, so the
    preprocessing warning asked for --mean/--std, which would normalise twice. Said as the network's own; flags that
    normalise again are warned of."""
    net = _module(nets_file, fn).eval()
    path = _save(net.state_dict(), tmp_path / "m.pt")
    from harden.runtime import console
    with console.capture() as said:
        model = harden.load(path, arch=f"{nets_file}:{fn}", num_classes=10, in_chans=1, input_size=(8, 8))
    layer = f"its layer 0 ({type(net[0]).__name__}: mean 0.3, std 0.35)"
    assert model.config_sources["mean"] == f"the network normalises its input itself ({layer})"
    assert "--mean" not in " ".join(said.get().split())
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    with console.capture() as said:
        harden.load(path, arch=f"{nets_file}:{fn}", num_classes=10, in_chans=1, input_size=(8, 8), mean=[0.3],
                    std=[0.35])
    assert f"the network normalises them again itself ({layer})" in " ".join(said.get().split())


def test_mean_and_std_flags_in_0_255_units_are_taken_in_pixel_units(nets_file, tmp_path, cli):
    """OpenMMLab's and detectron2's configs give `mean=[123.675, 116.28, 103.53]`: as flags they are divided by 255
    (said), since no statistic of [0, 1] pixels exceeds 1, and so is a std given with them (Caffe's 1); values in
    pixel units are taken as they are."""
    arch = f"{nets_file}:plain"
    torch.save(_module(nets_file, "plain").state_dict(), tmp_path / "m.pt")
    from harden.runtime import console
    with console.capture() as cap:
        model = harden.load(tmp_path / "m.pt", arch=arch, in_chans=1, input_size=(8, 8), mean=[76.5], std=[89.25])
    assert model.spec.mean == pytest.approx((0.3,)) and model.spec.std == pytest.approx((0.35,))
    assert "0-255 units" in " ".join(cap.get().split())
    with console.capture() as cap:
        model = harden.load(tmp_path / "m.pt", arch=arch, in_chans=1, input_size=(8, 8), mean=[0.3], std=[1.0])
    assert model.spec.mean == pytest.approx((0.3,)) and model.spec.std == pytest.approx((1.0,))
    assert "0-255" not in cap.get()
    # Caffe's: mean in 0-255 units and a std of 1, which is then 1/255 of a pixel too
    model = harden.load(tmp_path / "m.pt", arch=arch, in_chans=1, input_size=(8, 8), mean=[104.0], std=[1.0])
    assert model.spec.mean == pytest.approx((104 / 255,)) and model.spec.std == pytest.approx((1 / 255,))
    code, out, err = cli("inspect", tmp_path / "m.pt", "--arch", arch, "--in-chans", "1", "--input-size", "8",
                         "--mean", "123.675", "--std", "58.395")
    assert code == 0 and "0.485" in out and "0.229" in out, out + err


def test_a_network_fed_bgr_takes_harden_s_rgb_pixels_reversed_and_keeps_its_order(nets_file, tmp_path, cli):
    """Caffe's networks (and the ONNX Model Zoo's caffe2 ones) take blue, green, red in 0-255 less a per-channel
    mean: `--channel-order bgr --mean 104,117,123 --std 1,1,1` is that network on harden's [0, 1] RGB pixels; the
    order is kept in the metadata of what harden writes; a one-channel network has no order to reverse."""
    arch = f"{nets_file}:plain"
    torch.manual_seed(0)
    net = harden.create_model(arch, 10, 3, (8, 8)).net.eval()
    torch.save(net.state_dict(), tmp_path / "caffe.pt")
    flags = dict(arch=arch, in_chans=3, input_size=(8, 8), mean=[104.0, 117.0, 123.0], std=[1.0, 1.0, 1.0])
    model = harden.load(tmp_path / "caffe.pt", channel_order="bgr", **flags)
    x = torch.rand(4, 3, 8, 8)
    caffe = x.flip(1) * 255 - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), net(caffe), atol=1e-4)
        assert not torch.allclose(harden.load(tmp_path / "caffe.pt", **flags)(x), net(caffe), atol=1e-2)
    saved = harden.save(model, tmp_path / "caffe.safetensors")
    again = harden.load(saved)
    assert again.spec.extra["channel_order"] == "bgr" and again.config_sources["channel_order"] == "checkpoint"
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    code, out, err = cli("inspect", saved)
    assert code == 0 and "bgr" in out, out + err
    assert "channel_order" not in harden.load(tmp_path / "caffe.pt", **flags).spec.extra  # RGB: nothing written
    with pytest.raises(HardenError, match="three-channel"):
        harden.load(tmp_path / "caffe.pt", channel_order="bgr", **{**flags, "in_chans": 1, "mean": None,
                                                                 "std": None})
    with pytest.raises(HardenError, match="rgb or bgr"):
        harden.load(tmp_path / "caffe.pt", channel_order="grb", **flags)


def test_normalisation_buffers_that_disagree_are_not_taken(nets_file, tmp_path):
    sd = OrderedDict(_module(nets_file, "plain").state_dict())
    obj = _robustness_library(sd, torch.tensor([0.3]), torch.tensor([0.35]))
    obj["model"]["module.attacker.normalize.new_mean"] = torch.tensor([0.5]).view(1, 1, 1)
    from harden.runtime import console
    with console.capture():
        model = harden.load(_save(obj, tmp_path / "m.pt"), arch=f"{nets_file}:plain", num_classes=10, in_chans=1,
                            input_size=(8, 8))
    assert model.config_sources["mean"] == "default"


def test_a_model_pickled_by_its_training_script_names_the_script_and_an_mlp_gives_its_image_size(tmp_path):
    """`torch.save(model)` in a training script run as a program pickles the class as `__main__.Net`: the error asks
    for that script (not an importable `__main__` package); an MLP on flattened images reads exactly C x H x W values,
    so its first layer gives the input size too, also one outside the common sizes (3 x 8 x 8)."""
    import subprocess
    import sys
    script = tmp_path / "train.py"
    script.write_text("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                      "        super().__init__()\n        self.fc = nn.Linear(3 * 8 * 8, 4)\n\n"
                      "    def forward(self, x):\n        return self.fc(x.flatten(1))\n\n\n"
                      "if __name__ == '__main__':\n    torch.manual_seed(0)\n"
                      f"    torch.save(Net(), {str(tmp_path / 'model.pt')!r})\n")
    subprocess.run([sys.executable, str(script)], check=True, cwd=tmp_path)
    with pytest.raises(HardenError, match=r"__main__\.Net.*that script's class: --arch path/to/train\.py:Net"):
        harden.load(tmp_path / "model.pt")
    model = harden.load(tmp_path / "model.pt", arch=f"{script}:Net")
    assert (model.spec.in_chans, model.spec.input_size, model.spec.num_classes) == (3, (8, 8), 4)
    assert model.config_sources["input_size"] == "checkpoint weights (fc.weight: 192 inputs, 3 x 8 x 8)"


WIDE_NET = '''
import torch.nn.functional as F
from torch import nn


class WideNet(nn.Module):  # licence plates, text lines, spectrograms: trained at 32 high x 64 wide
    def __init__(self, num_classes=2):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 32, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(x.view(x.size(0), -1))
'''


def test_a_network_that_runs_at_no_square_size_takes_the_size_of_its_data(tmp_path, cli):
    """A state dict with --arch alone whose flatten was sized for 32 x 64 runs at no square size: eval, fix, import
    and data take the size of --data's images where it runs there (said), and refuse as before where it does not,
    with the form HxW in the remedy."""
    from PIL import Image
    (tmp_path / "wide.py").write_text(WIDE_NET)
    torch.manual_seed(0)
    from harden.models.registry import _import_callable
    torch.save(_import_callable(f"{tmp_path / 'wide.py'}:WideNet")().state_dict(), tmp_path / "wide.pt")
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / "plates" / split / c).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (64, 32), (60 * i, 90 if c == "a" else 10, 200)).save(
                    tmp_path / "plates" / split / c / f"{i}.png")
    flags = ["--arch", f"{tmp_path / 'wide.py'}:WideNet"]
    code, out, err = cli("eval", tmp_path / "wide.pt", *flags, "--data", tmp_path / "plates", "--attack", "fgsm",
                         "--num-images", 8, "--no-metrics", "--no-masking-checks", "-q", "--json", tmp_path / "r.json")
    said = " ".join(err.split())
    assert code == 0, err
    assert "taken as its input size (--input-size 32x64" in said and "assuming input_size 32x32" not in said
    code, out, err = cli("import", tmp_path / "wide.pt", *flags, "--data", tmp_path / "plates", "-o",
                         tmp_path / "wide.safetensors")
    assert code == 0 and harden.load(tmp_path / "wide.safetensors").spec.input_size == (32, 64)
    code, out, err = cli("data", tmp_path / "plates", "--model", tmp_path / "wide.pt", *flags)
    assert code == 0 and "centre crop 32x64" in " ".join(out.split()), err
    code, out, err = cli("fix", tmp_path / "wide.pt", *flags, "--data", tmp_path / "plates", "--data-frac", 1,
                         "--epochs", 1, "--set", "val_frac=0", "--no-report", "-q", "-o", tmp_path / "fixed.safetensors")
    assert code == 0 and harden.load(tmp_path / "fixed.safetensors").spec.input_size == (32, 64), err
    np.savez(tmp_path / "squares.npz", x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((4, 32, 32, 3), np.uint8), y_test=np.array([0, 1, 0, 1]))
    code, out, err = cli("eval", tmp_path / "wide.pt", *flags, "--data", tmp_path / "squares.npz", "--attack", "fgsm")
    assert code == 2 and "HxW" in err and "taken as" not in err


def test_train_leaves_the_normalisation_to_a_network_that_normalises_itself(nets_file, digits):
    """`harden train` normalised the data with its own statistics before a network that normalises again (its own
    buffers, as DeepMind's WideResNet): a checkpoint whose export then said `--mean ...` beside the network's own.
    Trained on pixels, said; a network without its own normalisation keeps the data's statistics."""
    from harden import TrainConfig, train
    from harden.runtime import console, set_quiet
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, augment="crop", seed=0)
    set_quiet(False)  # the line is for the terminal (progress bars and notes), quiet in tests otherwise
    try:
        with console.capture() as said:
            model = train(f"{nets_file}:normalised", digits, cfg, "cpu")
    finally:
        set_quiet(True)
    assert list(model.spec.mean) == [0.0] and list(model.spec.std) == [1.0]
    assert "normalises its input itself (its buffers mean/std): trained on pixels" in " ".join(said.get().split())
    plain = train(f"{nets_file}:plain", digits, cfg, "cpu")
    assert list(plain.spec.mean) != [0.0]


def test_an_all_convolutional_head_gives_a_torchvision_factory_its_class_count(tmp_path):
    """PyTorch's ImageNet example saves `{'arch': 'squeezenet1_1', 'state_dict': DataParallel's, ...}`: SqueezeNet's
    head is a 1x1 convolution to the classes (`classifier.1`), no linear layer, and its factory takes the count
    through **kwargs with no default, so the load stopped at "does not say its number of classes". The last 1x1
    convolution's output channels are now tried as a linear head's rows are (kept where the weights then load
    strictly, said), and a plain state dict's error names them beside the factory."""
    import torchvision
    from torch import nn
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(num_classes=7).eval()
    torch.save({"epoch": 90, "arch": "squeezenet1_1", "state_dict": nn.DataParallel(net).state_dict(),
                "best_acc1": torch.tensor(58.2)}, tmp_path / "checkpoint.pth.tar")
    from harden.runtime import held_warnings
    with held_warnings() as said:
        model = harden.load(tmp_path / "checkpoint.pth.tar")
    assert model.spec.num_classes == 7 and model.spec.arch == "torchvision.models:squeezenet1_1"
    assert any("the file's head, a 1x1 convolution (module.classifier.1.weight's output channels)" in " ".join(w.split())
               for w in said), said
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
        assert torch.allclose(model.eval()(x), net((x - mean) / std), atol=1e-5)
    # a plain state dict: no timm model has SqueezeNet's names, so the one factory that fits is taken, and said
    torch.save(net.state_dict(), tmp_path / "sq.pth")
    with held_warnings() as said:
        plain = harden.load(tmp_path / "sq.pth")
    assert (plain.spec.arch, plain.spec.num_classes) == ("torchvision.models:squeezenet1_1", 7)
    assert any("its weights have exactly the names and shapes of torchvision's squeezenet1_1, and of no other timm or "
               "torchvision model: loaded as torchvision.models:squeezenet1_1, with torchvision's preprocessing"
               in " ".join(w.split()) for w in said), said
    assert plain.config_sources["num_classes"] == "the 7 outputs of its classifier, classifier.1.weight"
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), model(x))


def test_torchvision_state_dicts_load_where_their_weights_say_enough(tmp_path):
    """MNASNet's load_state_dict reads its layout version, which harden's rebuilt dict had lost ("version should be
    set to 1 or 2 instead of None", even with --arch); now it loads with no flag, as the one network of either
    library with its names and shapes. GoogLeNet's weights do not say whether it re-normalises its input inside
    (`transform_input`, set where torchvision's ImageNet weights were loaded): refused, and the error says the flag."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.mnasnet0_5(num_classes=7).eval()
    torch.save(net.state_dict(), tmp_path / "mnas.pth")
    model = harden.load(tmp_path / "mnas.pth").eval()
    assert (model.spec.arch, model.spec.num_classes) == ("torchvision.models:mnasnet0_5", 7)
    x = torch.rand(2, 3, 64, 64)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean) / std), atol=1e-5)
    google = torchvision.models.googlenet(weights=None, num_classes=7, transform_input=True, init_weights=False)
    torch.save(google.state_dict(), tmp_path / "google.pth")
    with pytest.raises(HardenError) as err:
        harden.load(tmp_path / "google.pth")
    said = " ".join(str(err.value).split())
    assert "torchvision's googlenet: --arch torchvision.models:googlenet. Fine-tuned from torchvision's ImageNet " \
           "weights, it re-normalises its input inside, which its weights do not say: add --model-arg " \
           "transform_input=true then." in said, said
    again = harden.load(tmp_path / "google.pth", arch="torchvision.models:googlenet", num_classes=7,
                        model_args={"transform_input": True}).eval()
    with torch.no_grad():
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (again.spec.mean, again.spec.std))
        assert torch.allclose(again(x), google.eval()((x - mean) / std), atol=1e-5)


@pytest.mark.parametrize("arch, folder, wrapped, chans", [("ghostnet_050", "run3", True, 1),
                                                          ("regnetx_002", "regnetx_002-finetune", False, 3)])
def test_a_plain_state_dict_of_a_timm_model_loads_as_the_one_that_fits(tmp_path, arch, folder, wrapped, chans, capsys):
    """A fine-tuning script's `torch.save(model.state_dict(), "model.pth")` of a timm model torchvision does not
    have: the error said "pass --arch" and nothing of which, then named the model. Where one timm model's weights
    have exactly the file's names and shapes (or models built alike with the same preprocessing), it now loads as
    that, with timm's preprocessing, and says so: found through the layer names the weights use (GhostNet's
    `cheap_operation`), or through a name in the path (a run folder named after the model); grey, or saved from
    DataParallel (`module.`), alike."""
    import timm
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False, num_classes=7, in_chans=chans).eval()
    (tmp_path / folder).mkdir()
    torch.save((torch.nn.DataParallel(net) if wrapped else net).state_dict(), tmp_path / folder / "model.pth")
    model = harden.load(tmp_path / folder / "model.pth")
    said = " ".join(capsys.readouterr().err.split())
    assert f"does not say its architecture, and its weights have exactly the names and shapes of timm's {arch}, and " \
           "of no other timm or torchvision model" in said
    assert f"loaded as {arch}, with timm's preprocessing for it" in said
    assert (model.spec.arch, model.spec.num_classes, model.spec.in_chans) == (arch, 7, chans)
    assert list(model.spec.mean)[:chans] == list(timm.create_model(arch, pretrained=False).pretrained_cfg["mean"])[:chans] \
        or chans == 1
    x = torch.rand(2, chans, 64, 64)
    with torch.no_grad():
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
        assert torch.allclose(model.eval()(x), net((x - mean) / std), atol=1e-5)


def test_a_plain_state_dict_of_a_torchvision_regnet_loads_as_its_factory(tmp_path, capsys):
    """torchvision's RegNets compute their stage widths with tensors and read them back, which the meta device (where
    harden builds the factories to compare their weights' names and shapes) cannot: they were never matched, and a
    fine-tuned `regnet_y_400mf` saved as a plain state dict stopped at "pass --arch". They are built with only their
    weights on the meta device (meta_build.shapes_build), and load as that factory with torchvision's preprocessing."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.regnet_y_400mf(num_classes=7).eval()
    (tmp_path / "run").mkdir()
    torch.save(net.state_dict(), tmp_path / "run" / "model_best.pth")
    model = harden.load(tmp_path / "run" / "model_best.pth")
    said = " ".join(capsys.readouterr().err.split())
    assert "its weights have exactly the names and shapes of torchvision's regnet_y_400mf" in said, said
    assert (model.spec.arch, model.spec.num_classes) == ("torchvision.models:regnet_y_400mf", 7)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.spec.mean, model.spec.std))
        assert torch.allclose(model.eval()(x), net((x - mean) / std), atol=1e-5)


@pytest.mark.parametrize("arch, alike", [
    ("vit_tiny_patch16_224", ["deit_tiny_patch16_224", "vit_tiny_patch16_224"]),
    ("tf_efficientnet_b0", ["efficientnet_b0", "efficientnet_blur_b0", "tf_efficientnet_b0"])])
def test_timm_models_built_alike_are_named_not_chosen(tmp_path, arch, alike):
    """A ViT's and a DeiT's weights have the same names and shapes and are read with other statistics (0.5, or
    ImageNet's); `tf_efficientnet_b0` has `efficientnet_b0`'s and pads as TensorFlow does: the error names them all
    and loads none. A ViT's names are every ViT-like module's, so the ranking of modules finds no candidate in time:
    the index of timm's key sets (timm_names.json) does. A file whose name spells one of them loads as that one."""
    import timm
    net = timm.create_model(arch, pretrained=False, num_classes=7)
    (tmp_path / "run").mkdir()
    torch.save(net.state_dict(), tmp_path / "run" / "model.pth")
    from harden.models import timm_match
    assert set(alike) <= set(timm_match.indexed(net.state_dict().keys()))
    with pytest.raises(HardenError) as err:
        harden.load(tmp_path / "run" / "model.pth")
    said = " ".join(str(err.value).split())
    assert f"exactly the names and shapes of timm's {', '.join(alike)} (built alike; their preprocessing, timm's config " \
           f"of each name, or their forward may differ): {' or '.join(f'--arch {n}' for n in alike)} --num-classes 7." \
           in said, said
    # a released file named after the model (`deit_tiny_patch16_224-a1311bcf.pth`) says which: that one loads, said
    for named in (alike[0], arch):
        torch.save({"model": net.state_dict()}, tmp_path / "run" / f"{named}-a1311bcf.pth")
        model = harden.load(tmp_path / "run" / f"{named}-a1311bcf.pth")
        assert model.spec.arch == named and f"its path names {named}" in " ".join(model.config_sources["arch"].split())


def test_a_network_of_one_s_own_gets_no_timm_name(tmp_path):
    """Weights named as any CNN names them (`conv1`, `fc2`) fit dozens of timm's modules' words: no timm search, and no
    timm model named (7 classes: torchvision's factories are built at the count of the tests above, once)."""
    from torch import nn
    net = nn.Module()
    net.conv1, net.conv2, net.fc1, net.fc2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5), nn.Linear(256, 84), nn.Linear(84, 7)
    torch.save(net.state_dict(), tmp_path / "lenet.pth")
    from harden.models import timm_match
    assert timm_match._ranked_modules(net.state_dict(), *timm_match._modules()[1:]) == []
    with pytest.raises(HardenError) as err:
        harden.load(tmp_path / "lenet.pth")
    said = str(err.value)
    assert "names and shapes of timm's" not in said and "--num-classes 7 if that layer is the classifier" in said
