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
