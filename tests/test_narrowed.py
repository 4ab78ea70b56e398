"""Structurally pruned networks (harden/models/narrowed.py): a state dict of an architecture's own tensors, some with
fewer channels, as torch-pruning (the reference here) and hand pruning leave them, loads into the architecture rebuilt
at the file's widths and answers as the pruned network did; what cannot be rebuilt so keeps the load's error, said."""
import pytest
import torch
from torch import nn

import harden
from harden.errors import HardenError
from harden.runtime import held_warnings

tp = pytest.importorskip("torch_pruning")


def _pruned(net, ratio, ignored):
    torch.manual_seed(0)
    pruner = tp.pruner.MagnitudePruner(net, torch.randn(1, 3, 32, 32), importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=ignored)
    pruner.step()
    return net.eval()


def _builds():
    import timm
    import torchvision
    r18 = torchvision.models.resnet18(num_classes=10)
    mnv3 = timm.create_model("mobilenetv3_small_050", num_classes=10)  # depthwise convolutions, squeeze-excitation
    cnx = timm.create_model("convnext_atto", num_classes=10)  # LayerNorm2d, a layer scale (a bare parameter)
    return [("torchvision.models:resnet18", _pruned(r18, 0.5, [r18.fc])),
            ("mobilenetv3_small_050", _pruned(mnv3, 0.3, [mnv3.classifier])),
            ("convnext_atto", _pruned(cnx, 0.3, [cnx.head.fc]))]


def test_pruned_standard_architectures_load_at_their_widths_and_answer_as_pruned(tmp_path):
    x = torch.rand(2, 3, 32, 32)
    for i, (arch, net) in enumerate(_builds()):
        torch.save(net.state_dict(), tmp_path / f"{i}.pth")
        with held_warnings() as said:
            model = harden.load(tmp_path / f"{i}.pth", arch=arch, num_classes=10, input_size=32, mean=(0, 0, 0),
                                std=(1, 1, 1))
        if arch == "convnext_atto":  # pruned alike in every stage: timm's own dims argument, found as another's
            assert model.spec.model_args == {"dims": [28, 56, 112, 224]}  # (tests/test_timm_args.py), said so
            assert any("found from the weights" in w and "dims=[28,56,112,224]" in w for w in said), said
        else:
            assert any("structurally pruned" in w and "Rebuilt at the file's widths" in w for w in said), (arch, said)
            assert model.config_sources["layer widths"].startswith("checkpoint weights (structurally pruned")
        with torch.no_grad():
            assert torch.allclose(model(x), net(x), atol=1e-5), arch
        # harden's own output of it (the recipe's metadata) rebuilds the same way, with no flags
        harden.save(model, tmp_path / f"{i}.safetensors")
        again = harden.load(tmp_path / f"{i}.safetensors")
        with torch.no_grad():
            assert torch.allclose(again(x), net(x), atol=1e-5), arch
    r18 = _builds()[0][1]
    torch.save(tp.state_dict(r18), tmp_path / "tp.pth")  # torch-pruning's own format: each module's __dict__
    model = harden.load(tmp_path / "tp.pth", arch="torchvision.models:resnet18", num_classes=10, input_size=32)
    with torch.no_grad():
        assert torch.allclose(model.net(x), r18(x), atol=1e-5)


class Grouped(nn.Module):  # ResNeXt's grouped convolution, pruned within each of its groups, and a view by width
    def __init__(self, width=16, flat=None):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.grouped = nn.Conv2d(width, width, 3, padding=1, groups=4)
        self.norm = nn.GroupNorm(4, width)
        self.fc = nn.Linear(width, 5)
        self.flat = flat

    def forward(self, x):
        x = torch.relu(self.norm(self.grouped(torch.relu(self.stem(x)))))
        x = x.mean((2, 3))
        return self.fc(x.view(-1, self.flat) if self.flat else x)


def test_grouped_layers_keep_their_groups_and_a_width_written_in_the_code_keeps_the_error(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "narrow_test_nets", sys.modules[__name__])
    narrow = Grouped(width=8).eval()  # the pruned form: 2 channels of each group's 4 kept
    torch.save(narrow.state_dict(), tmp_path / "g.pth")
    model = harden.load(tmp_path / "g.pth", arch=f"{__name__}:Grouped", num_classes=5, input_size=16,
                        model_args={"width": 16})  # the architecture as its code builds it, as a user gives it
    assert model.net.grouped.groups == 4 and model.net.grouped.in_channels == 8 and "layer widths" in model.config_sources
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), narrow(x), atol=1e-6)
    with pytest.raises(HardenError, match=r"Its tensors are narrower than the architecture's.*does not run"):
        harden.load(tmp_path / "g.pth", arch=f"{__name__}:Grouped", num_classes=5, input_size=16,
                    model_args={"width": 16, "flat": 16})
    torch.save(nn.Sequential(nn.Linear(3, 4)).state_dict(), tmp_path / "other.pth")  # other tensors: not a pruning
    with pytest.raises(HardenError) as e:
        harden.load(tmp_path / "other.pth", arch=f"{__name__}:Grouped", num_classes=5, input_size=16)
    assert "narrower" not in str(e.value)
