"""The checks that say whether a model reads the images as it was trained to (the chance-level one, the assumed
normalisation's, the assumed input size's), on a sample, before a long run: `harden fix` says what trips before it
trains, `harden data --model` beside the data's rows. Forward passes only; the report runs the same checks on its own
images (runner.py)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..batching import predict_labels
from ..runtime import frozen
from .checks import above_chance
from .input_size import better_input_size
from .normalisation import SAMPLE, better_normalisation
from .stats import wilson


def _sample(model, data, device: torch.device, seed: int, n: int, split: str = "test"
            ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """The indices and images of the first n of the test images a report evaluates, at the size the report gives
    them; of 'train': n of the training images drawn in proportion to their classes (the first n of a folder would
    be one class)."""
    from ..data import fit_size, is_on_disk
    from ..data.base import stratified_sample
    idx = data.eval_indices(n, seed) if split == "test" else stratified_sample(data.y_train, n, seed)
    x, y = data.images(split, idx, device)
    return idx, fit_size(x, tuple(model.spec.input_size) if not is_on_disk(data) else data.input_size), y


def _checked(model, data, split: str, idx: np.ndarray, x: torch.Tensor, y: torch.Tensor, device: torch.device
             ) -> tuple[int, list[dict[str, Any]]]:
    """(images the model gets right, the tripped ones of the chance-level, assumed-normalisation and assumed-input-
    size checks)."""
    from ..batching import non_finite_scores
    from ..errors import HardenError
    from .checks import batch_dependent_outputs, randomized_outputs
    with frozen(model):
        finite: list[torch.Tensor] = []
        pred = predict_labels(model, x, 64, device, finite)
        said = non_finite_scores(finite, type(getattr(model, "net", model)).__name__, f"{split} images sampled")
        if said is not None:  # before hours of training, not in the report after them
            raise HardenError(said)
        sample = x[:16]  # 64 image-forwards in all: seconds at 224 px on a CPU (the report checks 64 again)
        flags = [above_chance(pred, y, model.spec.num_classes, getattr(model, "config_sources", None)),
                 better_normalisation(model, x, y, pred, 64, device),
                 better_input_size(model, data, split, idx, y, pred, 64, device),
                 batch_dependent_outputs(model, sample, randomized_outputs(model, sample)["tripped"])]
    return int((pred == y).sum()), [f for f in flags if f is not None and f["tripped"]]


def checks_before_training(model, data, device: torch.device, seed: int = 0, split: str = "test"
                           ) -> list[dict[str, Any]]:
    """The tripped checks on up to 256 of the test images the report will use (split 'test'), or of the images it
    will train on ('train': `fix --no-report` reads no test split), for `harden fix` to say before it trains (a
    network trained further on images it does not read as it was trained to is hours spent on another problem).
    Forward passes only."""
    return _checked(model, data, split, *_sample(model, data, device, seed, SAMPLE, split), device)[1]


TRAIN_TEST_IMAGES = 500  # `harden train`'s closing figure: about +-4 points at 90% accuracy, seconds at 224 px


def clean_test_accuracy(model, data, device: torch.device, seed: int = 0, n: int = TRAIN_TEST_IMAGES
                        ) -> dict[str, Any] | None:
    """The clean accuracy on up to n of the test images, the ones a report of n evaluates and as it reads them, in
    batches (forward passes only): `harden train`'s closing figure, kept in the checkpoint's metadata. None where the
    data has no test split."""
    if not data.n_test:
        return None
    from ..data import fit_size, is_on_disk
    idx, how = data.eval_sample(n, seed)
    size = tuple(model.spec.input_size) if not is_on_disk(data) else data.input_size
    right = 0
    with frozen(model):
        for s in range(0, len(idx), 128):
            x, y = data.images("test", idx[s:s + 128], device)
            right += int((predict_labels(model, fit_size(x, size), 128, device) == y.to(device)).sum())
    low, high = wilson(right, len(idx))
    return {"accuracy": right / len(idx), "n": len(idx), "of": data.n_test, "interval_95": [low, high],
            "sample": how}


def sample_rows(model, data, device: torch.device, seed: int = 0, n: int = 64) -> list[tuple[str, str]]:
    """`harden data --model`'s rows: the clean accuracy on n of the test images as eval reads them, and the checks
    that trip (forward passes only)."""
    from ..errors import HardenError
    try:
        idx, x, y = _sample(model, data, device, seed, n)
    except HardenError as e:  # an unreadable file: the rows above name it; --skip-unreadable leaves it out
        return [("clean accuracy", f"on {n} test images: not measured: {str(e).split('. ')[0]}")]
    k, tripped = _checked(model, data, "test", idx, x, y, device)
    low, high = wilson(k, len(y))
    return [("clean accuracy", f"on {len(y)} test images as eval reads them: {k / len(y):.1%} (95% interval "
             f"{low:.1%}-{high:.1%})")] + [("warning", f"{f['check']}: {f['detail']}") for f in tripped]
