import pytest
import torch

from harden import HardenError, create_model
from harden.models import list_builtin


@pytest.mark.parametrize("arch,chans,size", [
    ("resnet9", 3, (32, 32)), ("cnn-small", 1, (28, 28)), ("cnn-small", 1, (8, 8)), ("fmnist-conv", 1, (28, 28)),
    ("cifar-conv", 3, (32, 32)), ("resnet18", 3, (32, 32)), ("mobilenetv3_small_050", 3, (32, 32)),
    ("efficientnet_b0", 3, (32, 32)),
])
def test_every_family_builds_with_taps_and_split(arch, chans, size):
    m = create_model(arch, 10, chans, size).eval()
    x = torch.rand(2, chans, *size)
    logits = m(x)
    assert logits.shape == (2, 10)
    taps = m.taps()
    assert len(taps) >= 3 and all({"module", "num_chs", "reduction"} <= set(t) for t in taps)
    modules = dict(m.net.named_modules())
    assert all(t["module"] in modules for t in taps)
    # the encoder/classifier split recomposes the model exactly
    assert torch.allclose(m.forward_head(m.forward_features(x)), logits, atol=1e-5)
    assert torch.allclose(m.classify(m.embed(x)), logits, atol=1e-5)
    assert m.embed(x).dim() == 2


def test_wrapper_normalizes_inside():
    m = create_model("cnn-small", 10, 1, (8, 8), mean=(0.5,), std=(0.25,)).eval()
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(m(x), m.net((x - 0.5) / 0.25))


def test_builtins_listed():
    assert {"resnet9", "cnn-small", "cifar-conv", "fmnist-conv"} <= set(list_builtin())


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(HardenError, match="Unknown architecture"):
        create_model("resnet-nonexistent-xyz", 10)


def test_user_callable_arch(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\n"
        "def build(num_classes, in_chans):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 64, num_classes))\n"
        "class Net(nn.Sequential):\n"
        "    @classmethod\n"
        "    def from_name(cls, model_name, num_classes=1000):\n"
        "        return cls(nn.Flatten(), nn.Linear(64, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = create_model("mynet:build", 10, 1, (8, 8))
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    # a class's factory method, as efficientnet_pytorch's EfficientNet.from_name
    named = create_model("mynet:Net.from_name", 6, 1, (8, 8), model_args={"model_name": "b0"})
    assert named(torch.rand(2, 1, 8, 8)).shape == (2, 6)
    with pytest.raises(HardenError, match="no callable"):
        create_model("mynet:missing", 10, 1, (8, 8))
    with pytest.raises(HardenError, match="cannot be imported"):
        create_model("nosuchmodule_xyz:build", 10, 1, (8, 8))


def test_torch_hub_models_from_the_cache_and_constructors_that_would_download(tmp_path, monkeypatch):
    """`torchhub:owner/repo:entry` builds from torch.hub's cache (hubconf.py importing its own package), offline;
    a `pretrained` that defaults to downloading (True, Cadene's 'imagenet') is turned off; whatever a constructor
    raises is said as its failure, one paragraph."""
    import torch.hub
    repo = tmp_path / "hub" / "someone_cifar-models_master"
    (repo / "cifar_models").mkdir(parents=True)
    (repo / "hubconf.py").write_text("dependencies = ['torch']\nfrom cifar_models.nets import tiny, cadene, broken\n")
    (repo / "cifar_models" / "__init__.py").write_text("")
    (repo / "cifar_models" / "nets.py").write_text(
        "import torch.nn as nn\n"
        "def _net(n):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, n))\n"
        "def tiny(pretrained=True, num_classes=10):\n"
        "    assert pretrained is False, 'would download'\n"
        "    return _net(num_classes)\n"
        "def cadene(num_classes=1000, pretrained='imagenet'):\n"
        "    assert pretrained is None, 'would download'\n"
        "    return _net(num_classes)\n"
        "def broken(num_classes=10):\n"
        "    raise RuntimeError('no kernel image for this card')\n")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    m = create_model("torchhub:someone/cifar-models:tiny", 4, 3, (8, 8))
    assert m(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    assert create_model("torchhub:someone/cifar-models:master:cadene", 5, 3, (8, 8))(torch.rand(1, 3, 8, 8)).shape == (1, 5)
    with pytest.raises(HardenError, match="raised RuntimeError while building.*no kernel image"):
        create_model("torchhub:someone/cifar-models:broken", 4, 3, (8, 8))
    with pytest.raises(HardenError, match="not in torch.hub's cache.*downloads nothing"):
        create_model("torchhub:someone/elsewhere:tiny", 4, 3, (8, 8))
