"""The preprocessing a model object states in its attributes (Cadene's pretrainedmodels convention: input_space,
input_range, input_size, mean, std), read from a whole pickled model, a factory that sets them, and the package's own
table for its factories' state dicts (harden/models/zoo_attributes.py)."""
import importlib.util

import pytest
import torch

import harden

ZOO = '''
import torch.nn as nn
import torch.nn.functional as F


class SmallNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.last_linear = nn.Linear(16, num_classes)

    def forward(self, x):
        f = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.last_linear(F.adaptive_avg_pool2d(f, 1).view(f.size(0), -1))


class Wrapper(nn.Module):
    """A repository's own model around a pretrainedmodels network, pickled whole."""
    def __init__(self, num_classes=10):
        super().__init__()
        self.base = smallnet(num_classes)

    def forward(self, x):
        return self.base(x)


def smallnet(num_classes=1000, pretrained=None):
    model = SmallNet(num_classes)
    # the preprocessing as plain attributes, read by the user's transform (pretrainedmodels' load_pretrained)
    model.input_space = 'BGR'
    model.input_size = [3, 40, 40]
    model.input_range = [0, 255]
    model.mean = [104, 117, 128]
    model.std = [1, 1, 1]
    return model


class CentredNet(SmallNet):
    """A lone `self.mean`/`self.std` that its own forward subtracts: not the input's statistics."""
    def __init__(self, num_classes=1000):
        super().__init__(num_classes)
        self.mean = [0.5, 0.5, 0.5]
        self.std = [0.25, 0.25, 0.25]
'''


def _zoo(tmp_path, monkeypatch):
    (tmp_path / "zoo.py").write_text(ZOO)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # a whole pickle names its class as zoo.SmallNet
    spec = importlib.util.spec_from_file_location("zoo", tmp_path / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(__import__("sys").modules, "zoo", module)
    spec.loader.exec_module(module)
    return module


def _by_hand(net, x):
    """TransformImage's tensor steps on [0, 1] RGB pixels: BGR, 0-255, then the mean and std."""
    bgr = x.flip(1) * 255
    return net((bgr - torch.tensor([104.0, 117.0, 128.0]).view(1, 3, 1, 1)) / 1.0)


def test_a_whole_pickled_model_s_attributes_are_its_preprocessing(tmp_path, monkeypatch):
    zoo = _zoo(tmp_path, monkeypatch)
    torch.manual_seed(0)
    net = zoo.smallnet(num_classes=10).eval()
    torch.save(net, tmp_path / "whole.pt")
    model = harden.load(tmp_path / "whole.pt", arch="zoo.py:SmallNet")
    s, where = model.spec, model.config_sources
    assert tuple(s.input_size) == (40, 40) and s.crop_pct == 0.875 and s.interpolation == "bilinear"
    assert s.extra["channel_order"] == "bgr" and "pretrainedmodels" in where["channel_order"]
    assert [round(v * 255, 3) for v in s.mean] == [104, 117, 128] and "its attributes" in where["mean"]
    assert "TransformImage" in where["crop_pct"]
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), _by_hand(net, x), atol=1e-4)
    # a wrapper around such a network: its module's attributes
    torch.save(zoo.Wrapper(10).eval(), tmp_path / "wrapped.pt")
    wrapped = harden.load(tmp_path / "wrapped.pt", arch="zoo.py:Wrapper")
    assert wrapped.spec.extra["channel_order"] == "bgr" and "its module base's" in wrapped.config_sources["mean"]
    # what harden writes keeps them, said as its own metadata
    harden.save(model, tmp_path / "out.safetensors")
    again = harden.load(tmp_path / "out.safetensors")
    assert again.spec.extra["channel_order"] == "bgr" and list(again.spec.mean) == list(s.mean)
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-6)


def test_a_factory_that_sets_the_attributes_says_its_state_dict_s_preprocessing(tmp_path, monkeypatch):
    zoo = _zoo(tmp_path, monkeypatch)
    net = zoo.smallnet(num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    model = harden.load(tmp_path / "sd.pt", arch="zoo.py:smallnet")
    assert model.spec.extra["channel_order"] == "bgr" and tuple(model.spec.input_size) == (40, 40)
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), _by_hand(net, x), atol=1e-4)
    # a flag still wins, and the class alone (no attributes) assumes as before
    flagged = harden.load(tmp_path / "sd.pt", arch="zoo.py:smallnet", mean=[0.5], std=[0.5])
    assert list(flagged.spec.mean) == [0.5] and flagged.config_sources["mean"] == "flag"
    plain = harden.load(tmp_path / "sd.pt", arch="zoo.py:SmallNet")
    assert plain.config_sources["mean"] == "default" and "channel_order" not in plain.spec.extra


def test_a_lone_mean_attribute_is_not_taken_for_the_input_s(tmp_path, monkeypatch):
    zoo = _zoo(tmp_path, monkeypatch)
    torch.save(zoo.CentredNet(10).eval(), tmp_path / "self.pt")
    model = harden.load(tmp_path / "self.pt", arch="zoo.py:CentredNet")
    assert model.config_sources["mean"] == "default" and list(model.spec.mean) == [0.0]


def test_pretrainedmodels_factories_take_the_package_s_settings():
    """A state dict of pretrainedmodels' BNInception (BGR, 0-255, Caffe's mean) loaded by its factory's name: fed as
    the package's own TransformImage feeds it (its ToSpaceBGR, ToRange255 and Normalize as the reference)."""
    pm = pytest.importorskip("pretrainedmodels")
    from pretrainedmodels.utils import ToRange255, ToSpaceBGR
    from torchvision.transforms import Normalize
    torch.manual_seed(0)
    net = pm.__dict__["bninception"](num_classes=1000, pretrained=None).eval()
    net.last_linear = torch.nn.Linear(net.last_linear.in_features, 7)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        torch.save(net.state_dict(), f"{d}/bn.pt")
        model = harden.load(f"{d}/bn.pt", arch="pretrainedmodels:bninception")
    settings = pm.pretrained_settings["bninception"]["imagenet"]
    assert model.spec.num_classes == 7 and tuple(model.spec.input_size) == (224, 224)
    assert model.config_sources["mean"] == "pretrainedmodels settings (bninception, imagenet)"
    x = torch.rand(2, 3, 224, 224)
    fed = torch.stack([Normalize(settings["mean"], settings["std"])(ToRange255(True)(ToSpaceBGR(True)(img)))
                       for img in x])
    with torch.no_grad():
        assert torch.allclose(model(x), net(fed), atol=1e-3, rtol=1e-4)


def test_a_module_given_to_the_library_is_fed_as_its_attributes_say(tmp_path, monkeypatch):
    """`harden.evaluate(model, data)` with a pretrainedmodels-style module itself (a notebook's): its attributes give
    the mean, std and channel order where the data's own transform says none."""
    import numpy as np
    from harden.data import ImageData
    from harden.data.dataset_objects import wrapped_for
    zoo = _zoo(tmp_path, monkeypatch)
    net = zoo.smallnet(num_classes=10).eval()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 40, 40, 3), dtype=np.uint8)
    data = ImageData(x, np.arange(8) % 10, x, np.arange(8) % 10, "pixels", 10)
    model = wrapped_for(net, data)
    assert model.spec.extra["channel_order"] == "bgr" and "its attributes" in model.config_sources["mean"]
    pixels = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(model(pixels), _by_hand(net, pixels), atol=1e-4)
