"""Rounding in a model's forward is attacked with straight-through gradients (BPDA) by default: the attacks reach
what the rounding hid, the masking checks stay quiet, the report says so; --no-bpda attacks the zero gradient (and
the checks trip: test_autoattack.py). A model that does not round is not touched."""
import pytest
import torch
from torch import nn

import harden
from harden.bpda import straight_through


class InputRounding(nn.Module):
    """Bit-depth reduction in front of a classifier, written as research code writes it."""

    def __init__(self, model, levels=2, how="function"):
        super().__init__()
        self.model, self.levels, self.how = model, levels, how
        self.spec = model.spec

    def forward(self, x):
        v = x * self.levels
        v = torch.round(v) if self.how == "function" else v.round() if self.how == "method" else torch.floor(v + 0.5)
        return self.model(v / self.levels)


KW = dict(n=100, attacks=["fgsm", "pgd"], eps=0.2, device="cpu", metrics=False)


def test_rounding_is_attacked_straight_through_and_said(digits_model, digits):
    rounded = InputRounding(digits_model)
    through = harden.evaluate(rounded, digits, **KW)
    stalled = harden.evaluate(rounded, digits, **KW, bpda=False)
    assert through.clean_accuracy == stalled.clean_accuracy  # judged on the model's own outputs
    robust = [(a.robust_accuracy, b.robust_accuracy) for a, b in zip(through.attacks, stalled.attacks, strict=True)]
    assert stalled.attacks[1].robust_accuracy == stalled.clean_accuracy  # the zero gradient moves nothing
    assert through.attacks[1].robust_accuracy < stalled.clean_accuracy - 0.4, robust
    assert not [f for f in through.masking if f["tripped"] and f["kind"] == "masking"], through.masking
    assert any("BPDA" in note and "torch.round x1" in note for note in through.notes), through.notes
    assert any("--no-bpda attacked its zero gradient" in note for note in stalled.notes), stalled.notes


@pytest.mark.parametrize("how", ["method", "floor"])
def test_every_way_of_rounding_passes_the_gradient(digits_model, digits, how):
    x, _ = digits.images("test", torch.arange(4).numpy())
    model, note = straight_through(InputRounding(digits_model, how=how), x[:2])
    assert note is not None and ("torch.round" in note if how == "method" else "torch.floor" in note)
    probe = x.clone().requires_grad_(True)
    model(probe).sum().backward()
    assert (probe.grad.flatten(1).abs().amax(1) > 0).all()
    with torch.no_grad():  # without a gradient to pass, the model's own outputs, bit for bit
        assert torch.equal(model(x), InputRounding(digits_model, how=how)(x))


def test_a_model_that_does_not_round_is_left_as_it_is(digits_model, digits):
    x, _ = digits.images("test", torch.arange(2).numpy())
    model, note = straight_through(digits_model, x)
    assert model is digits_model and note is None
    a = harden.evaluate(digits_model, digits, **KW)
    b = harden.evaluate(digits_model, digits, **KW, bpda=False)
    assert [r.robust_accuracy for r in a.attacks] == [r.robust_accuracy for r in b.attacks] and a.notes == b.notes


def test_eval_takes_no_bpda(digits_ckpt, cli, monkeypatch):
    from harden import report
    seen = []
    real = report.evaluate
    monkeypatch.setattr(report, "evaluate", lambda *a, **k: (seen.append(k["bpda"]), real(*a, **k))[1])
    for flag in ([], ["--no-bpda"]):
        code, _, err = cli("eval", digits_ckpt, "--n", 8, "--attack", "fgsm", "--no-metrics", "--no-masking-checks",
                           *flag)
        assert code == 0, err
    assert seen == [True, False]


def test_fix_trains_through_rounding(digits_model, digits):
    """`fix` of a model that rounds its input: the training attack and the validation PGD pass the rounding (BPDA).
    With --no-bpda they stall at its zero gradient: the training batches are clean images, and validation calls the
    clean accuracy robust."""
    import copy

    class Quantize(nn.Module):
        def forward(self, x):
            return torch.round(x * 4) / 4
    rounded = copy.deepcopy(digits_model)
    rounded.net = nn.Sequential(Quantize(), rounded.net)
    kw = dict(recipe="at", sets=["eps=0.2"], epochs=1, data_frac=0.3, device="cpu", report=False)
    through = harden.fix(rounded, digits, **kw)
    stalled = harden.fix(rounded, digits, **kw, bpda=False)
    (a,), (b,) = through.history, stalled.history
    assert b["val_robust"] == b["val_clean"] and b["adv_acc"] > a["adv_acc"] + 0.2, (a, b)
    assert a["val_robust"] < a["val_clean"] - 0.2, a
    assert through.model.spec.extra["trained_through_rounding"] == "torch.round x1"
    assert "trained_through_rounding" not in stalled.model.spec.extra


class NumpySqueeze(nn.Module):
    """An input-transformation defence as its paper's code writes it: the images leave torch for numpy (bit-depth
    reduction, Xu et al.'s feature squeezing) and come back with torch.from_numpy, cutting autograd."""

    def forward(self, x):
        import numpy as np
        a = np.round(x.detach().cpu().numpy() * 4) / 4
        return torch.from_numpy(a).to(x.device, x.dtype)


def _squeezed(model):
    import copy
    out = copy.deepcopy(model)
    out.net = nn.Sequential(NumpySqueeze(), out.net)
    return out


def test_a_detour_out_of_torch_is_attacked_through_as_the_identity(digits_model, digits):
    """Where the forward leaves torch, no gradient attack could run (refused before); the detour is passed as the
    identity (BPDA): the input gradient is the network's own at the squeezed image, the attacks reach what the
    squeezing hid, the report says so; --no-bpda refuses as before; a forward under no_grad is still refused."""
    squeezed = _squeezed(digits_model)
    x, _ = digits.images("test", torch.arange(4).numpy())
    model, note = straight_through(squeezed, x[:2])
    assert note is not None and "comes back at 1 (SimpleConvNet) x1" in note and "BPDA" in note, note
    probe = x.clone().requires_grad_(True)
    model(probe).sum().backward()
    ref = x.clone().requires_grad_(True)  # the identity's gradient: the network's own at g(x), g's Jacobian the identity
    xn = digits_model.normalize(ref)
    digits_model.net(xn + (torch.round(xn * 4) / 4 - xn).detach()).sum().backward()
    assert torch.allclose(probe.grad, ref.grad, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(model(x), squeezed(x))
    through = harden.evaluate(squeezed, digits, **KW)
    assert through.attacks[1].robust_accuracy < through.clean_accuracy - 0.4, through.attacks
    assert any("leaves torch" in note and "BPDA" in note for note in through.notes), through.notes
    with pytest.raises(harden.HardenError, match="do not depend on its input through autograd"):
        harden.evaluate(squeezed, digits, **KW, bpda=False)

    class Probe(nn.Module):  # a frozen backbone run under no_grad: no detour to pass, still refused
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            with torch.no_grad():
                return self.net(x)
    frozen = _squeezed(digits_model)
    frozen.net = Probe(digits_model.net)
    with pytest.raises(harden.HardenError, match="do not depend on its input through autograd"):
        harden.evaluate(frozen, digits, **KW)


def test_fix_trains_through_a_detour_out_of_torch(digits_model, digits, tmp_path):
    """Trained through it (BPDA); an export, whose tracer would hold the detour's result as a constant (a graph that
    gave the same output for every input, and then an IndexError on its missing input), is refused, said."""
    kw = dict(recipe="at", sets=["eps=0.2"], epochs=1, data_frac=0.3, device="cpu", report=False)
    result = harden.fix(_squeezed(digits_model), digits, **kw)
    from harden.export import export_onnx
    from harden.export_program import export_program
    x, _ = digits.images("test", torch.arange(4).numpy())
    with pytest.raises(harden.HardenError, match="ONNX cannot hold this model: its forward leaves torch"):
        export_onnx(result.model, tmp_path / "m.onnx", x, "test images")
    with pytest.raises(harden.HardenError, match="torch.export program cannot hold this model"):
        export_program(result.model, tmp_path / "m.pt2", x, "test images")
    assert not list(tmp_path.iterdir())
    (h,) = result.history
    assert h["val_robust"] < h["val_clean"] - 0.2, h  # the validation PGD reached through the squeezing
    assert result.model.spec.extra["trained_through_detour"] == "1 (SimpleConvNet) x1"
    with pytest.raises(harden.HardenError, match="do not depend on its input through autograd"):
        harden.fix(_squeezed(digits_model), digits, **kw, bpda=False)
