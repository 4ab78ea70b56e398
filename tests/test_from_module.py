"""A checkpoint written from a plain nn.Module (models.from_module, as harden.fix(net, ...) does) names an
architecture that rebuilds it: a timm model its timm name, a torchvision model its factory; other classes their
`module:Class`, whose load says what to give where the class cannot be built with its defaults."""
import pytest
import timm
import torch
import torchvision

import harden
from harden.errors import HardenError
from harden.models.registry import from_module


@pytest.mark.parametrize("build, arch, args", [
    (lambda: timm.create_model("resnet10t", num_classes=3), "resnet10t", {}),
    (lambda: timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, depth=2), None, {}),
    (lambda: timm.create_model("deit_tiny_patch16_224", num_classes=5, img_size=32), "deit_tiny_patch16_224",
     {"img_size": [32, 32]}),
    (lambda: torchvision.models.resnet18(num_classes=7), "torchvision.models:resnet18", {}),
])
def test_a_module_written_loads_by_its_own_name(tmp_path, build, arch, args):
    torch.manual_seed(0)
    net = build().eval()
    model = from_module(net, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    if arch is None:  # built with arguments that change its weights (depth=2): its class, and load says what to give
        assert model.spec.arch == f"{type(net).__module__}:{type(net).__qualname__}"
        harden.save(model, tmp_path / "m.safetensors")
        with pytest.raises(HardenError, match="--arch"):
            harden.load(tmp_path / "m.safetensors")
        return
    assert (model.spec.arch, model.spec.model_args) == (arch, args)
    harden.save(model, tmp_path / "m.safetensors")
    back = harden.load(tmp_path / "m.safetensors").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-5)
