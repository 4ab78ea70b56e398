"""`eval --labels predicted`: images without labels (a team's production captures, a crawl, a folder of photos with no
class folders), each labelled by the evaluated model's own clean prediction. Robust accuracy then measures how often
an attack cannot change the model's prediction (its stability at the budget), not its accuracy; the report says so,
and where the data has labels after all, how often they agree with the predictions (the clean accuracy, not used).
A labelled source gives its test split (and a split `fix` held out, as for `eval`); any other source of images that
`--unlabeled` takes gives all of its images (a train/val tree its val split)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..errors import HardenError
from .base import Data

LABELS = ("given", "predicted")


def check_labels(labels: str) -> str:
    if labels not in LABELS:
        raise HardenError(f"--labels takes given (the data's labels) or predicted (the model's own clean predictions, "
                          f"for images without labels), got {labels!r}.")
    return labels


def images_to_predict(spec: str, target, extra: dict, model_name: str) -> Data:
    """The images `eval --labels predicted` reads from what --data names: the test split as `eval` reads it where the
    source has labels the model can take, else every image of it as an unlabeled pool (its test split where it has
    one), as the test split."""
    from . import load_data
    from .held_out import test_split_for
    from .unlabeled import load_unlabeled
    try:
        return test_split_for(load_data(spec, target), extra, model_name)
    except HardenError as refused:  # no labels, or classes the model cannot name: the images alone
        try:
            pool = load_unlabeled(spec, target, prefer="test")
        except HardenError:
            raise refused from None
    return _as_test_split(pool, int(target.num_classes or pool.num_classes))


def _as_test_split(pool: Data, num_classes: int) -> Data:
    """A pool (every image in its training split) as data whose test split holds those images."""
    from .arrays import ImageData
    from .files import FileData
    if isinstance(pool, FileData):
        listing = pool.listing("train")
        return replace(pool, num_classes=num_classes, listers={"test": lambda: listing}, _cache={"test": listing})
    if isinstance(pool, ImageData):
        x = pool.x_train
        empty = np.zeros((0, *x.shape[1:]), np.uint8)
        return ImageData(empty, np.zeros(0, np.int64), x, pool.y_train, pool.source, num_classes)
    raise HardenError(f"{pool.source}: --labels predicted reads image files and arrays.")


def labels_note(given: torch.Tensor, predicted: torch.Tensor) -> str:
    """What the report's labels are, and where the data had labels (>= 0), how often they agree with the model."""
    text = ("the model's own clean predictions (--labels predicted): robust accuracy is the share of images whose "
            "predicted class the attack cannot change, clean accuracy 100% by construction")
    known = given >= 0
    if bool(known.any()):
        rate = float((given[known] == predicted[known]).float().mean())
        text += f"; the data's own labels agree with {100 * rate:.1f}% of them ({int(known.sum())} images), unused"
    return text
