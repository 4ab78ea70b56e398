"""BatchNorm put back for training into graphs whose exporter folded it (bn_unfold.py): the function kept at
insertion, folded back exactly, trained with batch statistics, written in the graph's own layout."""
import copy

import numpy as np
import pytest
import torch

import harden
from harden import bn_unfold
from harden.errors import HardenError
from harden.runtime import console
from test_onnx_input import LeNetView, TokenNorm, export


def folded_lenet(tmp_path, name="lenet.onnx"):
    """A published-code CNN (conv-BN-ReLU, a conv without BN, view-flatten, log_softmax) with BatchNorm statistics
    far from identity, exported by torch's TorchScript exporter, which folds the BatchNorm into conv1."""
    torch.manual_seed(0)
    net = LeNetView(num_classes=10, in_chans=1)
    net.fc = torch.nn.Linear(16 * 2 * 2, 10)  # for 8 x 8 digits
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-1, 1)
        net.bn1.running_var.uniform_(0.5, 2)
        net.bn1.weight.uniform_(0.5, 1.5)
        net.bn1.bias.uniform_(-0.5, 0.5)
    return export(net, tmp_path / name, size=(8, 8), chans=1)


def load_quietly(path):
    with console.capture():
        return harden.load(path)


def test_inserted_batchnorm_keeps_the_function_and_folds_back_exactly(tmp_path, digits):
    model = load_quietly(folded_lenet(tmp_path))
    keys = list(model.net.state_dict())
    x, _ = digits.images("test", np.arange(64))
    with torch.no_grad():
        before = model(x)
    assert bn_unfold.wanted(model, "auto", trains_base=True)
    assert bn_unfold.insert(model, digits, torch.device("cpu")) == 2  # conv1 (its BatchNorm folded) and conv2
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-4)  # the same function in eval mode
        model.train()
        # train mode: each inserted BatchNorm normalises by the batch's own statistics, close to the calibration's
        train_out = model(x)
        assert not torch.equal(train_out, before) and torch.allclose(train_out, before, atol=0.5)
        model.eval()
        for m in model.net.modules():  # as training would move them
            if isinstance(m, bn_unfold.Unfolded):
                m[1].running_mean.add_(0.2)
                m[1].running_var.mul_(1.5)
                m[1].weight.mul_(0.8)
                m[1].bias.sub_(0.1)
        moved = model(x)
        assert not torch.allclose(moved, before, atol=1e-2)
        assert bn_unfold.fold(model.net) == 2
        assert torch.allclose(model(x), moved, atol=1e-4)  # folded exactly into the convolutions
    assert list(model.net.state_dict()) == keys
    assert not any(isinstance(m, (bn_unfold.Unfolded, torch.nn.BatchNorm2d)) for m in model.net.modules())


class Gated(torch.nn.Module):
    """A squeeze-excitation gate: a convolution with a bias on pooled 1x1 maps, which never had a BatchNorm."""
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.gate = torch.nn.Conv2d(8, 8, 1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        f = torch.relu(self.bn(self.conv(x)))
        f = f * torch.sigmoid(self.gate(f.mean((2, 3), keepdim=True)))
        return self.fc(f.mean((2, 3)))


def test_convolutions_on_pooled_maps_get_no_batchnorm(tmp_path, digits):
    model = load_quietly(export(Gated(), tmp_path / "gated.onnx", size=(8, 8), chans=1))
    assert bn_unfold.insert(model, digits, torch.device("cpu")) == 1  # the folded convolution, not the gate
    assert bn_unfold.fold(model.net) == 1


def test_auto_inserts_only_into_graphs_without_normalisation(tmp_path, digits_model):
    onnx_model = load_quietly(folded_lenet(tmp_path))
    assert not bn_unfold.wanted(onnx_model, "auto", trains_base=False)  # a recipe on a frozen base: nothing
    assert not bn_unfold.wanted(onnx_model, "off", trains_base=True)
    assert not bn_unfold.wanted(digits_model, "auto", trains_base=True)  # a torch checkpoint: its layers as written
    assert bn_unfold.wanted(digits_model, "on", trains_base=True)
    with_bn = copy.deepcopy(digits_model)  # convolutions with a bias, then BatchNorm (as torchvision's VGG-BN)
    with_bn.net.stages[0][1] = torch.nn.Sequential(torch.nn.BatchNorm2d(64), torch.nn.ReLU())
    with console.capture() as said:  # a network with BatchNorm of its own gets none more, even when asked
        assert not bn_unfold.wanted(with_bn, "on", trains_base=True)
    assert "has normalisation layers of its own; no BatchNorm inserted" in " ".join(said.get().split())
    layer_norm = load_quietly(export(TokenNorm(), tmp_path / "token_norm.onnx"))
    assert not bn_unfold.wanted(layer_norm, "auto", trains_base=True)  # normalised already (no BatchNorm to restore)
    with pytest.raises(HardenError, match="--unfold-bn must be one of auto, on, off"):
        bn_unfold.wanted(onnx_model, "yes", trains_base=True)


def test_fix_from_a_folded_graph_trains_with_batch_statistics(tmp_path, digits, monkeypatch):
    src = folded_lenet(tmp_path)
    seen = []
    fold = bn_unfold.fold

    def spy(net):  # what training left in the inserted BatchNorms, just before they are folded back
        seen.extend(int(m[1].num_batches_tracked) for m in net.modules() if isinstance(m, bn_unfold.Unfolded))
        return fold(net)
    monkeypatch.setattr(bn_unfold, "fold", spy)
    with console.capture():
        result = harden.fix(src, digits, epochs=1, device="cpu", report_n=20, attacks=["fgsm"], metrics=False,
                            masking_checks=False)
    assert len(seen) == 2 and min(seen) > 0  # both BatchNorms trained in train mode, on the training batches
    model = result.model
    assert model.spec.extra["unfolded_batchnorm"] == 2
    assert "trained with BatchNorm after 2 convolutions, folded back into them" in " ".join(
        result.reports["fixed_white_box"].notes)
    assert list(model.net.state_dict()) == list(result.base.net.state_dict())  # the graph's own layout
    out = tmp_path / "hardened.safetensors"
    harden.save(model, out)
    back = load_quietly(out)
    x, _ = digits.images("test", np.arange(32))
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-5)
    seen.clear()
    with console.capture():
        off = harden.fix(src, digits, epochs=1, report=False, device="cpu", unfold_bn="off")
    assert not seen and "unfolded_batchnorm" not in off.model.spec.extra


def test_cli_refuses_an_unknown_mode(cli, tmp_path):
    code, out, err = cli("fix", folded_lenet(tmp_path), "--data", "digits", "--unfold-bn", "always")
    assert code == 2 and "--unfold-bn must be one of auto, on, off" in " ".join((out + err).split())


def test_a_fold_that_changes_the_function_is_caught(tmp_path, digits, monkeypatch):
    model = load_quietly(folded_lenet(tmp_path))
    bn_unfold.insert(model, digits, torch.device("cpu"))
    for m in model.net.modules():
        if isinstance(m, bn_unfold.Unfolded):
            m[1].running_var.mul_(4.0)  # as training moves them: folding must now rescale the convolutions

    def forgetful(net):  # drops the BatchNorms instead of folding them
        for parent in list(net.modules()):
            for name, m in list(parent._modules.items()):
                if isinstance(m, bn_unfold.Unfolded):
                    parent._modules[name] = m[0]
        return 0
    monkeypatch.setattr(bn_unfold, "fold", forgetful)
    with pytest.raises(RuntimeError, match="folding the inserted BatchNorms changed the outputs"):
        bn_unfold.fold_checked(model, digits, torch.device("cpu"))


def test_inspect_says_fix_will_put_batchnorm_back(cli, tmp_path, digits_ckpt):
    code, out, _ = cli("inspect", folded_lenet(tmp_path))
    assert code == 0 and "`fix` trains it with a BatchNorm after its 2 convolutions with a bias" in " ".join(out.split())
    code, out, _ = cli("inspect", digits_ckpt)  # a torch checkpoint: auto leaves it as it is
    assert code == 0 and "trains it with a BatchNorm" not in " ".join(out.split())


class PreActBlock(torch.nn.Module):
    """A pre-activation residual block (PreActResNet, WideResNet): BN-ReLU-conv. The exporter folds bn2 into conv1
    (right before it); bn1 comes after the residual sum, so it stays a BatchNorm node."""
    def __init__(self, c):
        super().__init__()
        self.bn1, self.conv1 = torch.nn.BatchNorm2d(c), torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2, self.conv2 = torch.nn.BatchNorm2d(c), torch.nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(torch.relu(self.bn1(x)))
        return self.conv2(torch.relu(self.bn2(out))) + x


class PreAct(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.blocks = torch.nn.Sequential(PreActBlock(8), PreActBlock(8))
        self.bn, self.fc = torch.nn.BatchNorm2d(8), torch.nn.Linear(8, 10)

    def forward(self, x):
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(out.mean((2, 3)))


def test_pre_activation_graphs_get_batchnorm_where_it_was_folded(tmp_path, digits):
    torch.manual_seed(1)
    net = PreAct().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    model = load_quietly(export(net, tmp_path / "preact.onnx", size=(8, 8), chans=1))
    kept = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.modules())
    assert kept == 3  # each block's bn1 and the last bn: not foldable, kept by the exporter
    assert bn_unfold.wanted(model, "auto", trains_base=True)
    x, _ = digits.images("test", np.arange(32))
    with torch.no_grad():
        before = model(x)
        assert bn_unfold.insert(model, digits, torch.device("cpu")) == 2  # each block's conv1, bn2 folded into it
        assert torch.allclose(model(x), before, atol=1e-4)
        assert bn_unfold.fold(model.net) == 2
        assert torch.allclose(model(x), before, atol=1e-4)


def test_a_convolution_that_a_kept_batchnorm_follows_gets_none():
    """A graph exported with its BatchNorm unfolded (training mode): BatchNorm after a convolution with a bias."""
    seq = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU())
    convs = bn_unfold._biased_convs(torch.fx.symbolic_trace(seq))
    assert [name for _, name, _ in convs] == ["3"]
