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


def test_a_librarys_own_initialiser_runs_no_arithmetic_on_the_meta_device():
    """timm's trunc_normal_ (uniform_, erfinv_, mul_, add_, clamp_ by hand) and similar code: on the meta device each
    in-place op ran torch's reference decomposition in Python (a 2-block ViT's build 71 ms, 98 builds to read its
    arguments), and changes no shape. Counted at the dispatcher: a ViT's build then runs no arithmetic at all, while
    the same in-place methods still compute on real tensors inside the block."""
    timm = pytest.importorskip("timm")
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with built_for_shapes(), Ops() as ops:
        fast = timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, depth=2)
        real = torch.ones(3, device="cpu")
        assert torch.equal(real.mul_(2).add_(1).clamp_(max=2), torch.full((3,), 2.0, device="cpu"))
    assert {"mul_", "add_", "clamp_"} <= ops.names  # the real tensor's
    with built_for_shapes(), Ops() as meta_ops:
        timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, depth=2)
    assert not {n for n in meta_ops.names if n.endswith("_")}, meta_ops.names
    with torch.device("meta"):
        usual = timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, depth=2)
    assert _shapes(fast) == _shapes(usual)


def test_a_constructor_that_reads_back_its_tensors_is_built_with_only_its_weights_on_meta():
    """torchvision's RegNets compute their widths with tensors and `.tolist()` them; published ConvNeXt, Swin and DeiT
    code reads its drop-path rates back (`[x.item() for x in torch.linspace(0, rate, depth)]`). On the meta device
    neither has values: such a constructor is built again with only its parameters and buffers put there, while
    one that raises an error of its own is not built twice."""
    from harden.models.meta_build import shapes_build

    class ReadsBack(torch.nn.Module):
        def __init__(self, depth=3, rate=0.2):
            super().__init__()
            rates = [x.item() for x in torch.linspace(0, rate, depth)]
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4, bias=r > 0) for r in rates)
            self.register_buffer("scale", torch.ones(4))

    with pytest.raises(RuntimeError, match="meta"), built_for_shapes():
        ReadsBack()
    net = shapes_build(ReadsBack, depth=3)
    assert all(t.is_meta for t in net.state_dict().values()) and _shapes(net) == _shapes(ReadsBack())
    assert not torch.nn.Module.register_parameter.__name__.endswith("on_meta")  # restored
    regnet = shapes_build(torchvision.models.regnet_y_400mf, num_classes=7)
    assert _shapes(regnet) == _shapes(torchvision.models.regnet_y_400mf(num_classes=7))
    calls = []

    def refuses(**kwargs):
        calls.append(kwargs)
        raise ValueError("depth must be even")
    with pytest.raises(ValueError, match="depth must be even"):
        shapes_build(refuses, depth=3)
    assert len(calls) == 1
