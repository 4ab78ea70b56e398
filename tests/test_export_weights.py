"""`harden export -o model.pth` (harden/export_weights.py): the hardened network's state dict, keyed as its own code
names it, read back by that code."""
from __future__ import annotations

import importlib.util

import pytest
import torch

import harden
from harden.errors import HardenError
from harden.export_weights import export_state_dict

# as published MNIST code writes a network: a log_softmax head, a flatten by view, no class-count argument
PUBLISHED = '''
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.bn1 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = x.view(x.size(0), -1)
        return F.log_softmax(self.fc1(x), dim=1)


class AllConv(nn.Module):  # class scores as an N x K x 1 x 1 map, read by harden through a hook on the network
    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1),
                                  nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.body(x)
'''


def _module(path):
    spec = importlib.util.spec_from_file_location("published_net", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_hardened_network_goes_back_into_its_own_code(tmp_path, cli):
    (tmp_path / "net.py").write_text(PUBLISHED)
    torch.manual_seed(0)
    net = _module(tmp_path / "net.py").Net()
    # saved as DataParallel training code saves it: the weights under 'net', every key prefixed with 'module.'
    torch.save({"net": {f"module.{k}": v for k, v in net.state_dict().items()}, "acc": 11.2, "epoch": 1},
               tmp_path / "ckpt.pth")
    code, _, err = cli("fix", tmp_path / "ckpt.pth", "--arch", f"{tmp_path / 'net.py'}:Net", "--data", "digits",
                       "--mean", "0.5", "--std", "0.25", "--data-frac", "0.2", "--epochs", "1", "--no-report",
                       "-o", tmp_path / "hard.safetensors", "-q")
    assert code == 0, err
    code, out, err = cli("export", tmp_path / "hard.safetensors", "-o", tmp_path / "hard.pth", "-q")
    assert code == 0, err
    said = " ".join(out.split())
    assert "keys as" in said and "mean 0.5, std 0.25" in said and "predictions agree on 100.0%" in said, said
    state = torch.load(tmp_path / "hard.pth", weights_only=True)
    again = _module(tmp_path / "net.py").Net().eval()
    again.load_state_dict(state)  # strict: the code's own keys, no 'net.' or 'module.' prefix
    model = harden.load(tmp_path / "hard.safetensors")
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(model.normalize(x)), model.net(model.normalize(x)))
        assert not torch.equal(again.fc1.weight, net.fc1.weight)  # the hardened weights, not the base's
    code, _, err = cli("export", tmp_path / "hard.safetensors", "-o", tmp_path / "hard.pth")
    assert code == 2 and "--force" in err
    assert cli("export", tmp_path / "hard.safetensors", "-o", tmp_path / "hard.pth", "--force", "-q")[0] == 0
    code, _, err = cli("export", tmp_path / "hard.safetensors", "-o", tmp_path / "hard2.safetensors")
    assert code == 2 and "not .safetensors" in err and not (tmp_path / "hard2.safetensors").exists()


def test_a_timm_state_dict_loads_with_timm_s_own_checkpoint_reader(tmp_path):
    timm = pytest.importorskip("timm")
    model = harden.create_model("test_resnet.r160_in1k", 5, 3, (32, 32), (0.5,), (0.25,))
    x = torch.rand(3, 3, 32, 32)
    check = export_state_dict(model, tmp_path / "r.pth", x, "random pixels")
    assert check.ok and (tmp_path / "r.pth").exists()
    back = timm.create_model("test_resnet.r160_in1k", pretrained=False, num_classes=5,
                             checkpoint_path=str(tmp_path / "r.pth")).eval()
    with torch.no_grad():
        assert torch.allclose(back(model.normalize(x)), model(x), atol=1e-6)


def test_what_the_architecture_s_code_cannot_load_is_refused_and_nothing_written(tmp_path):
    x = torch.rand(2, 3, 32, 32)
    patched = harden.create_model("resnet18", 3, 3, (32, 32), (0.5,), (0.25,))
    patched.patch = torch.nn.Identity()  # a recipe's modules (fixer's, idfr's)
    with pytest.raises(HardenError, match="cannot load them from a state dict"):
        export_state_dict(patched, tmp_path / "patched.pth", x, "random pixels")
    swapped = harden.create_model("resnet18", 3, 3, (32, 32), (0.5,), (0.25,))
    swapped.spec.extra["brelu_swapped"] = 3
    with pytest.raises(HardenError, match="bounded ReLU"):
        export_state_dict(swapped, tmp_path / "swapped.pth", x, "random pixels")
    renamed = harden.create_model("resnet18", 3, 3, (32, 32), (0.5,), (0.25,))
    renamed.net.fc = torch.nn.Sequential(renamed.net.fc)  # loaded as other code than the architecture's builds
    with pytest.raises(HardenError, match="does not take the network's own state dict.*missing: fc.weight"):
        export_state_dict(renamed, tmp_path / "renamed.pth", x, "random pixels")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_network_whose_scores_harden_reads_through_a_hook_exports_and_checks(tmp_path):
    (tmp_path / "net.py").write_text(PUBLISHED)
    model = harden.create_model(f"{tmp_path / 'net.py'}:AllConv", 10, 1, (8, 8))
    check = export_state_dict(model, tmp_path / "all.pth", torch.rand(6, 1, 8, 8), "random pixels")
    assert check.ok and check.agreement == 1.0, check
    again = _module(tmp_path / "net.py").AllConv().eval()
    again.load_state_dict(torch.load(tmp_path / "all.pth", weights_only=True))
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x).flatten(1), model(x))


def test_pruned_weights_are_written_as_torch_s_pruning_keeps_them(tmp_path):
    from torch.nn.utils import prune
    (tmp_path / "net.py").write_text(PUBLISHED)
    torch.manual_seed(0)
    net = _module(tmp_path / "net.py").Net().eval()
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)
    torch.save(net.state_dict(), tmp_path / "p.pth")
    model = harden.load(tmp_path / "p.pth", arch=f"{tmp_path / 'net.py'}:Net", input_size=8)
    check = export_state_dict(model, tmp_path / "out.pth", torch.rand(4, 1, 8, 8), "random pixels")
    assert check.ok and "weight_mask" in check.written
    again = _module(tmp_path / "net.py").Net().eval()
    prune.identity(again.fc1, "weight")  # the pruning its code applies before it loads
    again.load_state_dict(torch.load(tmp_path / "out.pth", weights_only=True))
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
