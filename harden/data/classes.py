"""Class names found on disk (folder names, a list's text labels) -> the model's output indices.

In order: `--class-map FILE` (JSON {name: index}, or CSV/TSV rows name,index); the model's own label names (a hub
folder's config.json `label_names`, a checkpoint's `class_names`); WordNet synset ids (ImageNet's folder names) for
a model with an ImageNet-sized head, through timm's ImageNet metadata, even when the folder holds only some classes;
ImageNet's class names as people write them ("tench", "English springer": Imagenette) for such a head;
integer folder names; and, when the count matches the model's outputs (or there is no model yet), sorted order."""
from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from pathlib import Path

from ..errors import HardenError

SYNSET = re.compile(r"^n\d{8}$")
SYNSET_NAMED = re.compile(r"^n\d{8}($|[-_ .])")


def read_class_map(path: str | Path) -> dict[str, int]:
    path = Path(path)
    if not path.is_file():
        raise HardenError(f"--class-map {str(path)!r} does not exist.")
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
                raw = {n: i for i, n in enumerate(raw)}  # a list of class names in index order
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            pairs = list(raw.items())
            if pairs and all(str(k).isdigit() and isinstance(v, str) for k, v in pairs):
                pairs = _unshared([({v}, int(k)) for k, v in pairs])  # index -> name (TorchServe's index_to_name)
            elif pairs and all(str(k).isdigit() and isinstance(v, list) and v and all(isinstance(n, str) for n in v)
                             for k, v in pairs):
                # index -> [synset, name] (Keras' imagenet_class_index.json): each name in the list maps to the
                # index, but for a name two classes share (ImageNet's two "crane"s), which names neither
                pairs = _unshared([(set(v), int(k)) for k, v in pairs])
        elif path.suffix.lower() == ".txt":  # one class a line, in index order (classes.txt, synset_words.txt)
            pairs = _unshared([(_line_names(line), i) for i, line in
                               enumerate(ln for ln in text.splitlines() if ln.strip())])
        else:
            delim = "\t" if path.suffix.lower() == ".tsv" or "\t" in text.splitlines()[0] else ","
            pairs = [(r[0].strip(), r[1].strip()) for r in csv.reader(io.StringIO(text), delimiter=delim) if r]
            if pairs and not pairs[0][1].lstrip("-").isdigit():
                pairs = pairs[1:]  # a header row
        mapping = {str(k): int(v) for k, v in pairs}
    except (ValueError, IndexError, TypeError) as e:
        raise HardenError(f"--class-map {str(path)!r} is not a map of folder name -> class index (JSON object, CSV/TSV "
                          f"rows name,index, or a .txt of one class a line in index order): {e}.") from None
    if any(v < 0 for v in mapping.values()):
        raise HardenError(f"--class-map {str(path)!r} has negative class indices.")
    return mapping


def _unshared(named: list[tuple[set[str], int]]) -> list[tuple[str, int]]:
    """(name, index) for every name of every class, but for a name two classes share (ImageNet's two "crane"s), which
    names neither."""
    from collections import Counter
    shared = Counter(n for names, _ in named for n in names)
    return [(n, i) for names, i in named for n in sorted(names) if shared[n] == 1]


def _line_names(line: str) -> set[str]:
    """The names a class list's line gives its class: the line; with a WordNet id first (synset_words.txt,
    LOC_synset_mapping.txt: `n01440764 tench, Tinca tinca`) the id, the description and each of its names."""
    line = line.strip()
    first, _, rest = line.partition(" ")
    if not SYNSET.match(first) or not rest.strip():
        return {line}
    return {first, rest.strip(), *(part.strip() for part in rest.split(",") if part.strip())}


# TensorFlow's slim models (Inception, MobileNet v1, ResNet v1/v2 from its model zoo) and the checkpoints converted
# from them have 1001 outputs: index 0 is a "background" class, and ImageNet's 1000 follow in their usual order.
BACKGROUND = "background"


def _imagenet_subset(num_classes: int) -> tuple[str | None, int]:
    """(timm's ImageNet subset for a head of this size, the index of its first class: 1 behind a background)."""
    from timm.data import infer_imagenet_subset
    if num_classes == 1001:
        return "imagenet-1k", 1
    return infer_imagenet_subset({"num_classes": num_classes}), 0


def imagenet_synsets(num_classes: int) -> list[str] | None:
    """The model's synset per output index for ImageNet-sized heads (1000, 1001 with TensorFlow's background class
    first, 11221, 11821, 21841-21843)."""
    from timm.data import ImageNetInfo
    subset, first = _imagenet_subset(num_classes)
    return [BACKGROUND] * first + ImageNetInfo(subset).label_names() if subset else None


def _behind_background(num_classes: int) -> str:
    return " (index 0: TensorFlow's background class)" if _imagenet_subset(num_classes)[1] else ""


def map_classes(found: list[str], num_classes: int | None, label_names: list[str] | None = None,
                class_map: str | Path | None = None, source: str = "the data",
                order: tuple[str, ...] | None = None, order_from: str = "its ClassLabel names"
                ) -> tuple[dict[str, int], str]:
    """{found name: model index} and how it was decided. `order`: the data's own index of each name (a Hugging
    Face ClassLabel, a list's one-hot columns), used where folders would use sorted order; names after the model's
    last output are allowed where no image has them (ISIC 2019's UNK column for an 8-class model)."""
    found = sorted(set(found))
    if class_map is not None:
        mapping = read_class_map(class_map)
        missing = [c for c in found if c not in mapping]
        if missing:
            raise HardenError(f"--class-map {str(class_map)!r} does not name the classes {_few(missing)} of {source}.")
        how = f"--class-map {class_map}"
        out = {c: mapping[c] for c in found}
    elif label_names and all(c in label_names for c in found):
        index = {n: i for i, n in enumerate(label_names)}
        out, how = {c: index[c] for c in found}, "the model's label names"
    elif label_names and (loose := _loosely(found, label_names)) is not None:
        out, how = loose, "the model's label names (case, spaces, '_' and '-' aside)"
    elif num_classes and all(SYNSET_NAMED.match(c) for c in found) and imagenet_synsets(num_classes):
        # n01440764, or a synset and a name (Stanford Dogs' n02085620-Chihuahua, n01440764_tench)
        synsets = imagenet_synsets(num_classes)
        index = {s: i for i, s in enumerate(synsets)}
        index.update({c: index[c[:9]] for c in found if c[:9] in index})
        unknown = [c for c in found if c not in index]
        if unknown:
            raise HardenError(f"{source}: the synset folders {_few(unknown)} are not among the {num_classes} classes "
                              "of the model's ImageNet subset; give --class-map FILE.")
        out, how = {c: index[c] for c in found}, (f"WordNet synsets -> the model's {num_classes} ImageNet indices"
                                                   + _behind_background(num_classes))
    elif num_classes and imagenet_synsets(num_classes) and _by_description(found, num_classes)[0]:
        out, how = _by_description(found, num_classes)[0], (f"ImageNet class names -> the model's {num_classes} "
                                                            f"indices{_behind_background(num_classes)}")
    elif order is not None and (num_classes is None or len(order) == num_classes or (
            len(order) > num_classes and all(order.index(c) < num_classes for c in found))):
        index = {c: i for i, c in enumerate(order)}
        out, how = {c: index[c] for c in found}, f"the dataset's own class order ({order_from})"
    elif label_names and len(unnamed := _not_label_names(found, label_names)) < len(found):
        # most folders carry the model's label names and some do not (a misspelt, renamed or stray folder): the
        # sorted order would shift every class after it onto its neighbour's index, silently
        raise HardenError(f"{source}: {_few(unnamed)} {'is' if len(unnamed) == 1 else 'are'} not among the model's "
                          f"label names ({_few(list(label_names))}), which its other classes are; matching by sorted "
                          "order would label the classes after them with their neighbours' indices. Rename or remove "
                          "them, or give --class-map FILE (folder name -> class index, JSON or CSV).")
    elif all(c.isdigit() for c in found):
        out, how = {c: int(c) for c in found}, "class names are class indices"
    elif num_classes is None or len(found) == num_classes:
        out, how = {c: i for i, c in enumerate(found)}, "sorted class names (folders or labels)"
    elif len(found) == 1 and num_classes > 1:  # one folder of loose images, most often, not one class
        raise HardenError(f"{source} holds one class ({found[0]}) and the model has {num_classes} outputs: harden reads a "
                          "folder as one folder of images per class (or a list of files and labels given as --data, "
                          "train.csv); loose images without labels go with --labels predicted (eval, fix) or "
                          "--unlabeled (fix). Give --class-map FILE where that one class is one of the model's.")
    else:
        why = _by_description(found, num_classes)[1] if num_classes and imagenet_synsets(num_classes) else ""
        raise HardenError(f"{source} has {len(found)} classes ({_few(found)}) and the model has {num_classes} outputs; "
                          f"they cannot be matched by name, synset or number{why}. Give --class-map FILE (folder name "
                          "-> class index, JSON or CSV).")
    if num_classes is not None:
        over = [c for c, i in out.items() if i >= num_classes]
        if over:
            raise HardenError(f"{source}: classes {_few(over)} map to indices beyond the model's {num_classes} outputs.")
    return out, how


def _by_description(found: list[str], num_classes: int) -> tuple[dict[str, int] | None, str]:
    """Names as people write ImageNet's classes ("tench", "English springer", "tench, Tinca tinca": Imagenette's
    and Hugging Face's ImageNet): each the whole of a class's description or one of its comma-separated names, in
    any case, naming one class only. (None, what did not match) unless every name does."""
    from timm.data import ImageNetInfo
    subset, first = _imagenet_subset(num_classes)
    if not subset:
        return None, ""
    owners: dict[str, set[int]] = {}
    for i, text in enumerate(ImageNetInfo(subset).label_descriptions(), start=first):
        for key in {text.strip().lower(), *(part.strip().lower() for part in text.split(","))}:
            owners.setdefault(key, set()).add(i)
    out, two = {}, []
    for name in found:
        hit = owners.get(name.strip().lower().replace("_", " "))
        if hit is None:
            return None, ""
        if len(hit) != 1:
            two.append(name)
        else:
            out[name] = next(iter(hit))
    if two:  # every name is ImageNet's, some of two classes ("crane": the bird and the machine)
        return None, f" ({_few(two)}: {'each names' if len(two) > 1 else 'names'} two ImageNet classes)"
    return (out, "") if len(set(out.values())) == len(out) else (None, "")


def _loose(name: str) -> str:
    # NFC: a folder copied from a Mac names `café` with a combining accent (NFD), a config.json with one character
    return re.sub(r"[\s_\-]+", " ", unicodedata.normalize("NFC", str(name)).strip().lower())


def _loosely(found: list[str], label_names) -> dict[str, int] | None:
    """{found name: index} where every name is one of the label names but for case, spaces, '_' and '-' (`Golden_
    Retriever` for `golden retriever`), and no two label names read alike that way; else None."""
    index: dict[str, int] = {}
    for i, n in enumerate(label_names):
        if index.setdefault(_loose(n), i) != i:
            return None
    out = {c: index.get(_loose(c)) for c in found}
    return out if all(v is not None for v in out.values()) else None


def _not_label_names(found: list[str], label_names) -> list[str]:
    """The found names that are none of the label names, case, spaces, '_' and '-' aside."""
    names = {_loose(n) for n in label_names}
    return [c for c in found if _loose(c) not in names]


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
