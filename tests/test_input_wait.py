"""The training loop measures how long it waited for its batches (TrainResult.input_seconds), and says so when the
model spent a large share of the run waiting on its input."""
import time

import torch

import harden.training as training
from harden.data import load_data
from harden.training import TrainConfig, TrainResult, fit, input_bound_note


class SlowFeeder:
    """The data's own feeder, each batch `delay` seconds late (workers falling behind)."""

    def __init__(self, feeder, delay):
        self.feeder, self.delay = feeder, delay

    def __getattr__(self, name):
        return getattr(self.feeder, name)

    def epoch(self, batches, epoch_no):
        for b in self.feeder.epoch(batches, epoch_no):
            time.sleep(self.delay)
            yield b


def test_the_loop_counts_the_time_spent_waiting_for_batches(monkeypatch):
    data = load_data("digits")
    real = type(data).feeder
    monkeypatch.setattr(type(data), "feeder", lambda self, *a: SlowFeeder(real(self, *a), 0.02))
    import harden
    model = harden.create_model("cnn-small", 10, 1, (8, 8), (0.5,), (0.25,))
    cfg = TrainConfig(epochs=1, batch_size=256, lr=0.05, augment="none", seed=0)
    result = fit(model, data, cfg, torch.device("cpu"))
    steps = data.steps_per_epoch(256)
    assert 0.02 * steps <= result.input_seconds < result.seconds  # every batch's delay counted, within the run
    monkeypatch.undo()
    fast = fit(harden.create_model("cnn-small", 10, 1, (8, 8), (0.5,), (0.25,)), data, cfg, torch.device("cpu"))
    assert fast.input_seconds < 0.02 * steps  # the same run without the delay


def test_input_bound_training_is_told_so(monkeypatch):
    said = []
    monkeypatch.setattr(training, "info", said.append)
    input_bound_note("at", TrainResult(seconds=100.0, history=[], input_seconds=45.0), workers=2)
    assert len(said) == 1 and "45%" in said[0] and "--workers; 2 now" in said[0]
    input_bound_note("at", TrainResult(seconds=100.0, history=[], input_seconds=10.0), workers=2)  # model-bound
    input_bound_note("at", TrainResult(seconds=5.0, history=[], input_seconds=4.0), workers=2)  # too short to say
    assert len(said) == 1
