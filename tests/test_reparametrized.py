"""Layers whose weight is computed from other tensors, as Lipschitz-constrained and certified-robustness code writes
them: torch's spectral_norm / weight_norm parametrizations and their older hooks. Read from a state dict (the stem's
channels and the image size follow from the computed-from tensors), hardened, exported with the weights baked."""
import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import harden
from harden.data import ImageData
from harden.export import export_onnx
from harden.models.config import first_conv, last_linear
from harden.reparametrized import baked, reparametrized

NETS = '''
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations as P
from torch.nn.utils import spectral_norm, weight_norm


class NewStyle(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.c1 = P.spectral_norm(nn.Conv2d(1, 8, 3, padding=1))
        self.c2 = P.weight_norm(nn.Conv2d(8, 8, 3, padding=1, stride=2))
        self.fc = P.spectral_norm(nn.Linear(8 * 4 * 4, num_classes))

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return F.log_softmax(self.fc(x.view(x.size(0), -1)), dim=1)


class OldStyle(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.c1 = weight_norm(nn.Conv2d(1, 8, 3, padding=1))
        self.c2 = spectral_norm(nn.Conv2d(8, 8, 3, padding=1, stride=2))
        self.fc = weight_norm(nn.Linear(8 * 4 * 4, num_classes))

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(x.view(x.size(0), -1))


class Plain(nn.Module):  # the same network before training code wrapped its layers (model.apply(...))
    def __init__(self, num_classes=4):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(x.view(x.size(0), -1))
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    (folder / "nets.py").write_text(NETS)
    return folder / "nets.py"


def built(nets, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location("reparam_nets", nets)
    mod = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated, still in use
        spec.loader.exec_module(mod)
        torch.manual_seed(0)
        net = getattr(mod, name)()
    x = torch.rand(8, 1, 8, 8)
    net.train()
    net(x).sum().backward()  # a power-iteration step, and old-style weights left as a graph's outputs
    return net.eval()


@pytest.mark.parametrize("name", ["NewStyle", "OldStyle"])
def test_baked_copy_answers_the_same_and_leaves_the_model_as_it_was(nets, name):
    net = built(nets, name)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        before = net(x)
    plain = baked(net)
    assert reparametrized(net) == ["c1", "c2", "fc"] and reparametrized(plain) == []
    assert sorted(k for k, _ in plain.named_parameters()) == ["c1.bias", "c1.weight", "c2.bias", "c2.weight",
                                                              "fc.bias", "fc.weight"]
    with torch.no_grad():
        assert torch.equal(plain(x), before)
        # the original still runs (removing a parametrization from a deepcopy deletes it from the shared class)
        assert torch.equal(net(x), before) and reparametrized(net) == ["c1", "c2", "fc"]
    assert not net.training
    assert baked(plain) is plain


@pytest.mark.parametrize("name", ["NewStyle", "OldStyle"])
def test_state_dict_says_stem_channels_and_head(nets, name):
    state = built(nets, name).state_dict()
    assert "c1.weight" not in state
    assert first_conv(state)[1] == 1
    assert last_linear(state)[1] == 4


@pytest.mark.parametrize("name", ["NewStyle", "OldStyle"])
def test_eval_fix_and_export_of_reparametrized_layers(nets, name, tmp_path):
    """No --in-chans or --num-classes: the first convolution's computed-from weight says one channel, the
    constructor four classes. fix deep-copies a model whose old-style weights came from a
    backward pass; the ONNX file holds the weights baked and answers as harden does."""
    net = built(nets, name)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "m.pth")
    model = harden.load(tmp_path / "m.pth", arch=f"{nets}:{name}", input_size=8)
    assert model.spec.in_chans == 1 and model.spec.num_classes == 4 and tuple(model.spec.input_size) == (8, 8)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (48, 8, 8, 1), dtype=np.uint8)
    y = np.arange(48) % 4
    data = ImageData(x, y, x[:16], y[:16], "synthetic", 4)
    model.net.train()
    model(torch.rand(4, 1, 8, 8)).sum().backward()  # as a user's own code may have left it
    model.eval()
    result = harden.fix(model, data, recipe="at", data_frac=1.0, epochs=1, batch_size=16, report=False)
    assert reparametrized(result.model.net) == ["c1", "c2", "fc"]
    harden.save(result.model, tmp_path / "h.safetensors")
    again = harden.load(tmp_path / "h.safetensors")
    probe = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(again(probe), result.model(probe), atol=1e-6)
    check = export_onnx(again, tmp_path / "h.onnx", probe, "random pixels")
    assert check.ok, check
    import onnx
    ops = {n.op_type for n in onnx.load(str(tmp_path / "h.onnx")).graph.node}
    # the weights are constants: none of spectral norm's (vdot has no ONNX form) or weight norm's arithmetic
    assert not ops & {"ReduceL2", "ReduceSum", "Sqrt", "Pow", "MatMul", "Mul"}, ops


def test_deepcopy_of_old_style_hooks_after_backward_needs_settling(nets):
    """What copy_module guards against: torch refuses to deepcopy a hook-computed weight that is a graph's output."""
    from harden.reparametrized import copy_module
    net = built(nets, "OldStyle")
    net.train()
    net(torch.rand(2, 1, 8, 8)).sum().backward()
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(net)
    assert reparametrized(copy_module(net)) == ["c1", "c2", "fc"]


def test_whole_model_parametrized_is_refused(nets):
    from torch.nn.utils import parametrizations as P
    with pytest.raises(ValueError):
        baked(P.spectral_norm(nn.Linear(3, 2)))


PLAIN = '''
import torch.nn.functional as F
from torch import nn


class Plain(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.c1(x)).view(x.size(0), -1))
'''


def test_pruned_weights_stay_pruned_through_fix_and_export(tmp_path):
    """A state dict of torch.nn.utils.prune (weight_orig and weight_mask, saved from DataParallel): the masks are put
    back on the unpruned architecture, the model answers as saved, fix keeps the pruned weights at zero and writes
    the masks, and the ONNX graph holds the product as a constant."""
    from torch.nn.utils import prune
    (tmp_path / "plain.py").write_text(PLAIN)
    import importlib.util
    spec = importlib.util.spec_from_file_location("plain_net", tmp_path / "plain.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.Plain().eval()
    for m in (net.c1, net.fc):
        prune.l1_unstructured(m, "weight", amount=0.6)
    torch.save({"net": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "p.pth")
    model = harden.load(tmp_path / "p.pth", arch=f"{tmp_path / 'plain.py'}:Plain", input_size=8)
    assert any(n.startswith("pruned as saved: the masks of 2 weight(s)") for n in model.load_notes), model.load_notes
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-6)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (40, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(40) % 4
    data = ImageData(imgs, labels, imgs[:8], labels[:8], "synthetic", 4)
    model(x).sum().backward()  # the hook's weight left as a graph's output: fix must still copy the model
    fixed = harden.fix(model, data, sets=["val_frac=0"], data_frac=1.0, epochs=2, batch_size=8, report=False).model
    mask = fixed.net.c1.weight_mask
    assert (fixed.net.c1.weight[mask == 0] == 0).all() and not torch.equal(fixed.net.c1.weight_orig, net.c1.weight_orig)
    harden.save(fixed, tmp_path / "h.safetensors")
    again = harden.load(tmp_path / "h.safetensors")
    assert "c1.weight_mask" in again.net.state_dict() and "c1.weight" not in again.net.state_dict()
    with torch.no_grad():
        assert torch.allclose(again(x), fixed(x), atol=1e-6)
    assert export_onnx(again, tmp_path / "h.onnx", x, "random pixels").ok
    import onnx
    assert "Mul" not in {n.op_type for n in onnx.load(str(tmp_path / "h.onnx")).graph.node}


@pytest.mark.parametrize("name", ["NewStyle", "OldStyle"])
def test_norms_saved_in_the_file_are_put_back_on_a_plain_architecture(nets, name, tmp_path):
    """Training code that wraps a stock network's layers afterwards saves weight_g/_v, weight_orig/_u/_v or
    parametrizations.*: the architecture named without them (DataParallel's prefix on the file) gets the same norms,
    answers as saved, and what fix writes reloads with the same architecture."""
    net = built(nets, name)
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, tmp_path / "m.pth")
    model = harden.load(tmp_path / "m.pth", arch=f"{nets}:Plain", input_size=8)
    assert reparametrized(model.net) == ["c1", "c2", "fc"]
    assert any("spectral norm as saved" in n for n in model.load_notes) and \
        any("weight norm as saved" in n for n in model.load_notes)
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():  # NewStyle ends in log_softmax, which a second log_softmax leaves as it is
        assert torch.allclose(model.net(x).log_softmax(1), net(x).log_softmax(1), atol=1e-6)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (32, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(32) % 4
    data = ImageData(images, labels, images[:16], labels[:16], "synthetic", 4)
    result = harden.fix(model, data, recipe="at", data_frac=1.0, epochs=1, batch_size=16, report=False)
    harden.save(result.model, tmp_path / "h.safetensors")
    again = harden.load(tmp_path / "h.safetensors")
    assert reparametrized(again.net) == ["c1", "c2", "fc"]
    with torch.no_grad():
        assert torch.allclose(again(x), result.model(x), atol=1e-6)
