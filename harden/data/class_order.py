"""Class folders named by numbers, read the way the model was trained to read them.

Training code reads numbered folders in two ways: as the class indices themselves (a script that wrote class i's
images to folder `i`), or in sorted order, as torchvision's ImageFolder numbers every folder it finds ('0', '1', '10',
'11', ..., '19', '2', ...); 1-based names ('1' to 'n') are read as indices minus one too. From eleven classes on
(or with 1-based names) these readings disagree, and the wrong one puts most images under another class's index: the
report would measure nothing. The folders cannot say which reading the model learned, but the model can: a small
stratified sample of the evaluation images is classified once and the reading under which the model is right far
more often is taken, said in the data's class note. Where no reading wins beyond noise (an untrained model), the
indices reading stands, as before, and the report's chance check speaks."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

INDICES = "class names are class indices"
SORTED = ("folder names that are numbers, in sorted order, as torchvision's ImageFolder numbers them ('0', '1', "
          "'10', '11', ..., '2')")
ONE_BASED = "folder names that are numbers from 1, each its class index plus one"
SORTED_NAMES = "sorted class names (folders or labels)"  # classes.map_classes' note for its sorted reading
LIST_FILES = ("wnids.txt", "classes.txt", "class_names.txt")  # Tiny ImageNet's; class lists datasets ship beside
SHORT = {INDICES: "as indices", SORTED: "in sorted order", ONE_BASED: "from 1", SORTED_NAMES: "in sorted order",
         **{f"the order of the dataset's {f}": f"in {f}'s order" for f in LIST_FILES}}
PER_CLASS = 4  # sample: images a class, up to SAMPLE_MAX, drawn from the evaluation split
ASKED = "the model's clean accuracy on a sample of"  # in every note choose() writes (reports show those notes)
CHUNK = 32  # images decoded and classified at a time, until the readings are told apart
SAMPLE_MAX = 256
DECISIVE_P = 1e-3  # McNemar's exact p on the sample (over all looks): the winner must beat every other beyond noise


def numbered_readings(found: list[str], num_classes: int | None) -> dict[str, dict[str, int]]:
    """The readings of all-numeric class names that give each name its own index below `num_classes`, keyed by the
    note that says them, the indices reading first. Empty unless two or more such readings disagree."""
    if num_classes is None or not found or not all(c.isdigit() for c in found):
        return {}
    names = sorted(set(found))
    readings: dict[str, dict[str, int]] = {}
    as_int = {c: int(c) for c in names}
    if len(set(as_int.values())) == len(names) and max(as_int.values()) < num_classes:
        readings[INDICES] = as_int
    if len(names) == num_classes:
        readings[SORTED] = {c: i for i, c in enumerate(names)}
    if sorted(as_int.values()) == list(range(1, num_classes + 1)):
        readings[ONE_BASED] = {c: v - 1 for c, v in as_int.items()}
    distinct = {tuple(sorted(m.items())) for m in readings.values()}
    return readings if len(distinct) > 1 else {}


def listed_readings(found: list[str], num_classes: int | None, root) -> dict[str, dict[str, int]]:
    """Sorted class names against the order of a class list the dataset ships at its root (Tiny ImageNet's wnids.txt:
    code that numbers classes along it and code that uses ImageFolder's sorted order both exist), where the list names
    every class the model has, once each, in another order; else empty. A line is a name, or an index and a name
    (`1 001.Black_footed_Albatross`)."""
    from pathlib import Path
    if num_classes is None or not found:
        return {}
    for name in LIST_FILES:
        path = Path(root) / name
        if not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        listed = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if parts:
                listed.append(parts[-1] if len(parts) == 2 and parts[0].isdigit() else line.strip())
        if len(listed) != num_classes or len(set(listed)) != len(listed) or not set(found) <= set(listed) or \
                listed == sorted(listed):
            continue
        return {SORTED_NAMES: {c: i for i, c in enumerate(sorted(listed)) if c in set(found)},
                f"the order of the dataset's {name}": {c: i for i, c in enumerate(listed) if c in set(found)}}
    return {}


def predictor(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's predicted classes for [0, 1] pixels, on its own device, in batches."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return torch.cat([model(b.to(device)).argmax(1).cpu() for b in x.split(64)])
        finally:
            model.train(was_training)
    return predict


def choose(data, split: str, readings: dict[str, dict[str, int]], used: str,
           predict: Callable[[torch.Tensor], torch.Tensor]) -> tuple[str, str]:
    """(the reading to take, the note that says how it was chosen). `data` labels its images by readings[used]. The
    sample is read in shuffled chunks and the question settled as soon as one reading wins beyond noise (each look
    tested at DECISIVE_P divided by the number of looks, so that looking early adds no false decision): a model that
    knows its classes settles it in the first chunk."""
    from ..report.compare import paired
    from .base import stratified_sample
    y = data.listing(split).labels
    n = min(len(y), SAMPLE_MAX, PER_CLASS * len(readings[used]))
    sample = np.random.default_rng(0).permutation(stratified_sample(y, n, 0))  # chunks across classes
    chunks = [sample[i:i + CHUNK] for i in range(0, len(sample), CHUNK)]
    by_used = {i: name for name, i in readings[used].items()}
    correct: dict[str, np.ndarray] = {k: np.zeros(0, bool) for k in readings}
    best, beaten = used, False
    for chunk in chunks:
        x, labels = data.images(split, np.sort(chunk))
        predicted = predict(x).numpy()
        for k, m in readings.items():
            truth = np.array([m[by_used[int(i)]] for i in labels.numpy()])
            correct[k] = np.concatenate([correct[k], predicted == truth])
        best = max(correct, key=lambda k: int(correct[k].sum()))
        beaten = all(paired(correct[k], correct[best])["p"] < DECISIVE_P / len(chunks)
                     and correct[k].sum() < correct[best].sum() for k in correct if k != best)
        if beaten:
            break
    seen = len(correct[used])
    said = "; ".join(f"{100 * correct[k].mean():.0f}% {SHORT[k]}" for k in correct)
    if beaten:
        return best, f"{best} ({ASKED} {seen}: {said})"
    return used, (f"{used}; other readings of the classes were not told apart by {ASKED} {seen} ({said}): "
                  "--class-map FILE sets the order")
