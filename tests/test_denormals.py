"""Subnormal floats are flushed inside harden's entry points (they slowed fp32 training 2.5x on the CPU) and the
caller's setting is back when the outermost call returns."""
import pytest
import torch

from harden.report.runner import evaluate
from harden.runtime import flushing_denormals

SUBNORMAL = 1e-39  # under float32's smallest normal number, 1.18e-38


def product() -> float:
    return float(torch.tensor([SUBNORMAL]) * 1.0)


@pytest.fixture(autouse=True)
def flushing_supported():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")


def test_flushed_inside_restored_after_nested_calls():
    seen = []

    @flushing_denormals
    def inner():
        seen.append(product())

    @flushing_denormals
    def outer():
        inner()
        seen.append(product())  # the inner call's exit does not unflush the outer one

    assert product() > 0
    outer()
    assert seen == [0.0, 0.0] and product() > 0


def test_flushed_even_when_the_call_raises():
    @flushing_denormals
    def fails():
        assert product() == 0.0
        raise ValueError("x")

    with pytest.raises(ValueError):
        fails()
    assert product() > 0


def test_entry_points_carry_it():
    assert hasattr(evaluate, "__wrapped__")
    from harden.api import train
    from harden.fix import fix
    from harden.training import fit
    assert all(hasattr(f, "__wrapped__") for f in (train, fix, fit))
