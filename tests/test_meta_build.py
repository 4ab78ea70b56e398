"""Networks built for their weights' names and shapes alone (harden/models/meta_build.py): the same names and shapes
as a network built as usual, and torch's initialisers back as they were afterwards, after an error too."""
import pytest
import torch
import torchvision

from harden.models.meta_build import built_for_shapes


def _shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize("factory", ["resnet18", "vit_b_32", "efficientnet_b0", "convnext_tiny"])
def test_shapes_as_built_as_usual(factory):
    build = getattr(torchvision.models, factory)
    with built_for_shapes():
        fast = build(num_classes=7)
    assert all(p.is_meta for p in fast.parameters())
    with torch.device("meta"):
        usual = build(num_classes=7)
    assert _shapes(fast) == _shapes(usual)


def test_initialisers_are_restored_after_an_error_too():
    before = {n: getattr(torch.nn.init, n) for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")}
    with pytest.raises(RuntimeError, match="stop"), built_for_shapes():
        assert torch.nn.init.kaiming_normal_ is not before["kaiming_normal_"]
        w = torch.empty(3, 3)
        assert torch.nn.init.normal_(w, std=2.0) is w and torch.nn.init.zeros_(tensor=w) is w  # left as they were
        raise RuntimeError("stop")
    assert {n: getattr(torch.nn.init, n) for n in before} == before
    w = torch.nn.init.ones_(torch.empty(2))
    assert torch.equal(w, torch.ones(2)) and not w.is_meta
