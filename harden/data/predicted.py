"""`eval --labels predicted`: images without labels (a team's production captures, a crawl, a folder of photos with no
class folders), each labelled by the evaluated model's own clean prediction. Robust accuracy then measures how often
an attack cannot change the model's prediction (its stability at the budget), not its accuracy; the report says so,
and where the data has labels after all, how often they agree with the predictions (the clean accuracy, not used).
A labelled source gives its test split (and a split `fix` held out, as for `eval`); any other source of images that
`--unlabeled` takes gives all of its images (a train/val tree its val split)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

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


def refuse_clean_requirements(requirements: list[dict]) -> None:
    """A gate on clean accuracy cannot fail when the labels are the model's own predictions: refused, not passed."""
    clean = [r["text"] for r in requirements if r.get("metric") == "clean"]
    if clean:
        raise HardenError(f"{', '.join(clean)} with --labels predicted: the clean accuracy is 100% by construction "
                          "(each label is the model's own clean prediction), so the requirement cannot fail. Drop it, "
                          "or gate clean accuracy on labelled images in a run of its own.")


def images_to_predict(spec: str, target, extra: dict, model_name: str) -> Data:
    """The images `eval --labels predicted` reads from what --data names: the test split as `eval` reads it where the
    source has labels the model can take, else every image of it as an unlabeled pool (its test split where it has
    one), as the test split."""
    from . import load_data
    from .held_out import test_split_for
    from .unlabeled import load_unlabeled
    if target is not None:
        target = replace(target, predict=None)  # the labels are to be the model's: their order is not asked
    try:
        return test_split_for(load_data(spec, target), extra, model_name)
    except HardenError as refused:  # no labels, or classes the model cannot name: the images alone
        try:
            pool = load_unlabeled(spec, target, prefer="test")
        except HardenError:
            raise refused from None
    num_classes = target.num_classes if target is not None else None
    return test_split_for(_as_test_split(pool, int(num_classes or pool.num_classes)), extra, model_name)


def data_for_module(data: Any, labels: str) -> Data:
    """The data a plain nn.Module (no harden spec: no transform or class count of its own) is evaluated or hardened
    on: read as --data takes it, images alone taken too where the labels are to be its own answers."""
    from . import load_data
    if isinstance(data, Data):
        return data
    from .arrays import is_arrays
    from .dataset_objects import is_dataset
    if labels == "predicted" and (is_dataset(data) or not is_arrays(data)):
        return images_to_predict(data, None, {}, "the model")
    return load_data(data)


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
        return ImageData(empty, np.zeros(0, np.int64), x, pool.y_train, pool.source, num_classes,
                         from_dataset=pool.from_dataset)  # a dataset's Normalize undone: still the model's to take
    raise HardenError(f"{pool.source}: --labels predicted reads image files and arrays.")


def labels_note(given: torch.Tensor, predicted: torch.Tensor) -> str:
    """What the report's labels are (eval --labels predicted), with prediction_facts."""
    return ("the model's own clean predictions (--labels predicted): robust accuracy is the share of images whose "
            "predicted class the attack cannot change, clean accuracy 100% by construction; "
            + prediction_facts(given, predicted))


def prediction_facts(given: torch.Tensor, predicted: torch.Tensor) -> str:
    """How many classes the predictions use and the largest one's share, and where the data had labels (>= 0), how
    often they agree with the predictions."""
    given, predicted = given.cpu(), predicted.cpu()
    counts = torch.bincount(predicted)
    top = int(counts.argmax())
    text = (f"classes predicted: {int((counts > 0).sum())}, the most frequent ({top}) for "
            f"{100 * float(counts[top]) / max(len(predicted), 1):.1f}% of the images")
    known = given >= 0
    if bool(known.any()):
        rate = float((given[known] == predicted[known]).float().mean())
        text += f"; the data's own labels agree with {100 * rate:.1f}% of them ({int(known.sum())} images), unused"
    return text


ONE_ANSWER = 0.8  # a model giving one class to this share of the images is stable by answering it, not by being right


def one_answer_warning(predicted: torch.Tensor, model_name: str) -> str | None:
    """Said where the predictions are mostly one class: stability is then no sign of robustness."""
    counts = torch.bincount(predicted.cpu())
    share = float(counts.max()) / max(len(predicted), 1)
    if len(predicted) < 10 or share < ONE_ANSWER:
        return None
    return (f"{model_name} predicts class {int(counts.argmax())} for {100 * share:.0f}% of these images: with "
            "--labels predicted a model that gives one answer is stable by giving it, not robust; check it on "
            "labelled images too")


def labelled_by(model, data: Data, device: torch.device) -> Data:
    """`fix --labels predicted`: the same data with every image of either split labelled by `model`'s (the base's)
    clean prediction, so the recipe trains to keep the base's answers under attack and the reports measure agreement
    with the base (a hardened model that answered one class everywhere would be stable, not agreeing). The data's own
    labels are dropped; how often they agree with the base on the test split is kept for the report."""
    import copy

    from .arrays import ImageData
    from .files import FileData
    ys = {split: _predictions(model, data, split, device) for split in ("train", "test")
          if data.has_split(split)}
    note = ("the base model's clean predictions (fix --labels predicted): accuracies are agreement with the base, "
            "the base's own 100% by construction")
    if "test" in ys:
        note += "; on the test split, " + prediction_facts(torch.as_tensor(np.asarray(data.y_test, np.int64)),
                                                           torch.as_tensor(ys["test"]))
    if isinstance(data, ImageData):
        out = copy.copy(data)
        out.y_train, out.y_test = ys.get("train", data.y_train), ys.get("test", data.y_test)
    elif isinstance(data, FileData):
        lists = {s: data.listing(s).relabelled(y) for s, y in ys.items()}
        out = data._with(listers={s: (lambda lst=lst: lst) for s, lst in lists.items()}, _cache=lists)
    else:
        raise HardenError(f"{data.source}: --labels predicted reads image files and arrays.")
    out.labels_from = note
    return out


def _predictions(model, data: Data, split: str, device: torch.device) -> np.ndarray:
    """The model's clean prediction for every image of a split, in batches (an unreadable file, skipped later as it
    is skipped everywhere, gets 0)."""
    from ..runtime import frozen, progress
    from .unlabeled import adapt, batches_with_indices
    n = len(data.y_train if split == "train" else data.y_test)
    preds = np.zeros(n, np.int64)
    size, chans = tuple(model.spec.input_size), int(model.spec.in_chans)
    with frozen(model), torch.no_grad(), progress(f"labelling the {split} split by the base", n) as advance:
        seen = 0
        for x, got in batches_with_indices(data, np.arange(n), device, split):
            preds[got] = model(adapt(x, chans, size)).argmax(1).cpu().numpy()
            advance(len(got))
            seen += len(got)
        advance(n - seen)  # the unreadable files it skipped: the bar ends full, not short as if cut off
    return preds
