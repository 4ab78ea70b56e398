"""Data made by the user's own code: a torch `Dataset` (or a `DataLoader`, a Lightning `DataModule`, a Hugging Face
`Dataset` or `DatasetDict`) given to the library (`harden.evaluate(net, test_ds)`, `harden.fix(net, (train_ds,
test_ds))`, `unlabeled=`) or named on the command line (`--data file.py:name`, `--unlabeled pool.py:name`:
from_code.py). Read as
images in memory are (arrays.py), item by item as a run indexes them: only the items a run uses, each through the
dataset's own transform; the report reads them in the calling process, training in worker processes (item_batches);
a share of a dataset stays a view of it (base.read_per_item), never read whole.

A dataset hands over what its transform makes: PIL images, `ToTensor()`'s floats in [0, 1] (C x H x W), uint8 tensors,
numpy arrays. harden takes pixels (budgets are in pixel units), so a transform that ends in `Normalize(mean, std)`
(torchvision's, v1 or v2, or albumentations') is undone on each item and the model is given that mean and std
inside (model_for: a plain nn.Module is wrapped with them; a checkpoint whose own were assumed takes them, and the
dataset's image size), and a transform that gives another image at each read is refused for the images a report is
measured on. Images of many sizes are read as image files are (DatasetRows.fit: the model's transform, else one for
their typical size)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import HardenError
from .base import LazyRows

DATASET_SOURCE = "torch Dataset"  # a source named so is known by its content only, as arrays in memory are
DATASET_NORMALIZE = "the dataset's Normalize"  # where a model's mean and std came from, when a dataset gave them
DATASET_TRANSFORM = "the dataset's transform"  # where its input size came from
IMAGE_KEYS = ("image", "img", "pixel_values", "images", "input", "inputs", "x")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "fine_label", "class", "class_id")
LABEL_ATTRS = ("targets", "labels", "_labels", "y")  # torchvision's names for a dataset's labels, read without images
SAMPLE_ITEMS = 8  # items read to learn the value range of a dataset's floats
SIZE_SAMPLE = 32  # items read (the first SAMPLE_ITEMS and a seeded spread) to learn its images' sizes and channels
PARALLEL_ROWS = 128  # rows read at once from which worker processes read them
PARALLEL_CHUNK = 32
NORMALIZE_SLACK = 2e-3  # a pixel undone from Normalize may stray this far outside [0, 1] by rounding


def is_dataset(obj: Any) -> bool:
    return isinstance(obj, (torch.utils.data.Dataset, torch.utils.data.DataLoader)) or _is_hf(obj) or \
        _is_hf_dict(obj) or _is_datamodule(obj)


def _is_datamodule(obj: Any) -> bool:
    """A Lightning DataModule (or anything with its protocol: setup(stage), train_dataloader(), and
    test_dataloader() or val_dataloader())."""
    return not isinstance(obj, type) and all(callable(getattr(obj, k, None)) for k in ("setup", "train_dataloader")) \
        and any(callable(getattr(obj, k, None)) for k in ("test_dataloader", "val_dataloader"))


def _datamodule_splits(dm: Any) -> tuple:
    """(train, test) datasets of a DataModule: set up for fitting and testing (prepare_data, which may download, is
    the user's to have run), its test loader's dataset, else its validation loader's."""
    for stage in ("fit", "test"):
        try:
            dm.setup(stage)
        except Exception as e:  # noqa: BLE001 - the user's code: said as its failure
            raise HardenError(f"The DataModule's setup({stage!r}) raised {type(e).__name__}: {str(e).strip()[:300]} "
                              "(harden does not call prepare_data, which may download: run it once beforehand).") \
                from e
    train = dm.train_dataloader()
    for name in ("test_dataloader", "val_dataloader"):
        try:
            test = getattr(dm, name)()
        except Exception as e:  # noqa: BLE001 - the user's code: said unless it is Lightning's "not defined"
            if type(e).__name__ in ("NotImplementedError", "MisconfigurationException"):
                continue  # Lightning's default where a module defines no such loader: the next one
            raise HardenError(f"The DataModule's {name}() raised {type(e).__name__}: {str(e).strip()[:300]}") from e
        if isinstance(test, (list, tuple)):  # several loaders: the first
            test = test[0] if test else None
        if test is not None:
            return train, test
    raise HardenError("The DataModule gives no test_dataloader() or val_dataloader(): harden reports on a test split.")


def _is_hf(obj: Any) -> bool:
    """A Hugging Face `datasets.Dataset` (not a torch Dataset, but indexed as one: items are dicts)."""
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "features") and hasattr(obj, "column_names")


def _is_hf_dict(obj: Any) -> bool:
    """load_dataset's DatasetDict of splits."""
    return type(obj).__module__.startswith("datasets.") and type(obj).__name__ == "DatasetDict"


HF_TEST_SPLITS = ("test", "validation", "valid", "val")


def _splits_of(obj: Any) -> tuple:
    """A DatasetDict or a DataModule as (train, test) (or its one split); anything else as it is."""
    if _is_datamodule(obj):
        return _datamodule_splits(obj)
    if not _is_hf_dict(obj):
        return (obj,)
    test = next((obj[k] for k in HF_TEST_SPLITS if k in obj), None)
    if "train" in obj and test is not None:
        return obj["train"], test
    if len(obj) == 1:
        return (next(iter(obj.values())),)
    raise HardenError(f"The DatasetDict has splits {sorted(obj)}; harden takes a train split and a test split "
                      f"(one of {', '.join(HF_TEST_SPLITS)}), or one split: pass dataset_dict['name'].")


def _hf_label_column(ds: Any) -> str | None:
    """The Hugging Face dataset's label column: its ClassLabel feature, else a column named as labels are."""
    features = getattr(ds, "features", None) or {}
    for name in LABEL_KEYS:
        if type(features.get(name)).__name__ == "ClassLabel":
            return name
    classed = [k for k, v in features.items() if type(v).__name__ == "ClassLabel"]
    if classed:
        return classed[0]
    return next((k for k in LABEL_KEYS if k in getattr(ds, "column_names", ())), None)


def _loader_dataset(loader: torch.utils.data.DataLoader) -> Any:
    """The items a DataLoader reads: its dataset, or the part of it its sampler draws from. Published code splits one
    dataset into training and validation with two samplers (`SubsetRandomSampler(train_idx)`, `(val_idx)`): read
    whole, the validation loader's report counted the training images too. A sampler that orders or weights the whole
    dataset (sequential, shuffled, weighted, distributed: harden shares a run out itself) stands for all of it; one
    that draws a part (an `indices` list, or a batch sampler of the user's own) for that part, in the dataset's order."""
    ds, sampler, batches = loader.dataset, loader.sampler, loader.batch_sampler
    if isinstance(ds, torch.utils.data.IterableDataset):
        return ds  # refused by the caller
    whole = (torch.utils.data.SequentialSampler, torch.utils.data.RandomSampler, torch.utils.data.WeightedRandomSampler,
             torch.utils.data.distributed.DistributedSampler)
    own_batches = batches is not None and not isinstance(batches, torch.utils.data.BatchSampler)
    if own_batches:
        drawn = {int(i) for b in batches for i in b}  # a batch sampler of the user's own: what it yields once
    elif isinstance(sampler, whole) and not (isinstance(sampler, torch.utils.data.RandomSampler) and
                                             sampler.num_samples < len(ds)):
        return ds
    elif hasattr(sampler, "indices"):  # torch's SubsetRandomSampler
        drawn = {int(i) for i in sampler.indices}
    else:  # a sampler of the user's own (or a RandomSampler of fewer items): what it yields once
        drawn = {int(i) for i in sampler}
    if len(drawn) == len(ds):
        return ds
    from ..runtime import info
    info(f"the DataLoader's {type(batches if own_batches else sampler).__name__} draws {len(drawn):,} of its "
         f"dataset's {len(ds):,} items: harden reads those")
    return torch.utils.data.Subset(ds, sorted(drawn))


def _map_style(obj: Any, what: str) -> torch.utils.data.Dataset:
    ds = _loader_dataset(obj) if isinstance(obj, torch.utils.data.DataLoader) else obj
    if isinstance(ds, torch.utils.data.IterableDataset) or type(ds).__name__ == "IterableDataset":
        raise HardenError(f"{what} is an IterableDataset ({type(ds).__name__}): harden reads images by index (a "
                          "seeded, stratified draw of them, the same on every run), which a stream cannot give. Pass a "
                          "map-style Dataset, or the images and labels as tensors.")
    try:
        len(ds)
    except TypeError:
        raise HardenError(f"{what} ({type(ds).__name__}) has no length: harden reads a dataset by index and needs "
                          "its size (define __len__).") from None
    return ds


def _transforms(ds: Any) -> list[Any]:
    """Every transform of ds's pipeline, flattened (torchvision's Compose and StandardTransform, albumentations'
    Compose), through Subset and ConcatDataset to the datasets they read."""
    if isinstance(ds, torch.utils.data.Subset):
        return _transforms(ds.dataset)
    if isinstance(ds, torch.utils.data.ConcatDataset):
        return [t for d in ds.datasets for t in _transforms(d)]
    out: list[Any] = []

    def walk(t: Any, depth: int = 0) -> None:
        if t is None or depth > 8:
            return
        out.append(t)
        inner = getattr(t, "transforms", None)
        if isinstance(inner, (list, tuple)):
            for s in inner:
                walk(s, depth + 1)
        elif getattr(t, "transform", None) is not None and t is not ds:  # torchvision's StandardTransform
            walk(t.transform, depth + 1)

    walk(getattr(ds, "transform", None))
    if getattr(ds, "transform", None) is None:
        walk(getattr(ds, "transforms", None))
    if _is_hf(ds):  # set_transform / with_transform: a function of the user's, as Hugging Face's tutorials write it
        walk((getattr(ds, "format", None) or {}).get("format_kwargs", {}).get("transform"))
    for fn in [t for t in out if _is_function(t)]:  # a function applying a pipeline it names (a global, a closure)
        for value in _referenced(fn):
            walk(value)
    if not out:  # a dataset of one's own may keep its pipeline under any name (self.tf, self.aug)
        for value in getattr(ds, "__dict__", {}).values():
            if type(value).__name__ in ("Compose", "Normalize") or isinstance(getattr(value, "transforms", None),
                                                                             (list, tuple)):
                walk(value)
    return out


def _is_function(obj: Any) -> bool:
    import types
    return isinstance(obj, (types.FunctionType, types.MethodType))


def _referenced(fn: Any) -> list[Any]:
    """The transform pipelines a function refers to: its closure's and the globals it names, where they are one
    (a Compose, a Normalize, anything with a list of `transforms`); nothing is called."""
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    values = [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c)]
    if code is not None:
        names, codes = set(), [code]
        while codes:  # with the names its comprehensions and inner functions use (code objects of their own)
            c = codes.pop()
            names |= set(c.co_names)
            codes += [k for k in c.co_consts if hasattr(k, "co_names")]
        values += [v for k, v in (getattr(fn, "__globals__", None) or {}).items() if k in names]
    return [v for v in values if type(v).__name__ in ("Compose", "Normalize") or _is_image_processor(v)
            or isinstance(getattr(v, "transforms", None), (list, tuple))]


def _is_image_processor(obj: Any) -> bool:
    """A Hugging Face image processor (transformers' `ViTImageProcessor`, `AutoImageProcessor.from_pretrained(...)`,
    the older feature extractors), as its fine-tuning tutorials apply one in a `with_transform` function."""
    return not isinstance(obj, type) and all(hasattr(obj, a) for a in ("image_mean", "image_std", "do_normalize"))


def _processor_normalize(p: Any) -> Any:
    """An image processor's normalisation as a Normalize-like object (None where it does not normalise): its mean and
    std apply to pixels rescaled to [0, 1] (rescale_factor 1/255)."""
    from types import SimpleNamespace
    if not getattr(p, "do_normalize", False) or p.image_mean is None or p.image_std is None:
        return None
    return SimpleNamespace(mean=p.image_mean, std=p.image_std)


def _filled(cell: Any) -> bool:
    try:
        return cell.cell_contents is not None
    except ValueError:  # an empty cell
        return False


def _normalize_of(ds: Any, what: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and std of the Normalize its transform ends in, or None."""
    steps = _transforms(ds)
    found = [t for t in steps if type(t).__name__ == "Normalize" and hasattr(t, "mean") and hasattr(t, "std")]
    found += [n for n in map(_processor_normalize, filter(_is_image_processor, steps)) if n is not None]
    if not found:
        return None
    pairs = {(tuple(np.atleast_1d(np.asarray(t.mean, np.float64)).tolist()),
              tuple(np.atleast_1d(np.asarray(t.std, np.float64)).tolist())) for t in found}
    if len(pairs) > 1:
        raise HardenError(f"{what}'s transforms normalise with {len(pairs)} different means and stds; harden undoes "
                          "one Normalize to read pixels. Give it a transform without Normalize (and the model its "
                          "mean and std).")
    mean, std = (np.asarray(v, np.float64) for v in next(iter(pairs)))
    if (std <= 0).any():
        raise HardenError(f"{what}'s Normalize has a std of {std.tolist()}; harden cannot undo it.")
    return mean, std


def transform_text(ds: Any, limit: int = 400) -> str:
    """The dataset's transform as its repr says it, on one line (what a report was measured through)."""
    found = _transforms(ds)
    if not found:
        return ""
    top = found[0]
    if _is_function(top):  # a function of the user's (with_transform): named, with the pipelines it applies
        fn = getattr(top, "__func__", top)
        inner = {id(step) for t in found if isinstance(getattr(t, "transforms", None), (list, tuple))
                 for step in t.transforms}  # a Compose's steps: said by the Compose
        applied = [_step_text(t) for t in found[1:] if not _is_function(t) and id(t) not in inner]
        where = fn.__module__
        from ..models.registry import FILE_MODULE_PREFIX
        if where.startswith(FILE_MODULE_PREFIX):  # a file imported by its path (--data file.py:name): its name
            from pathlib import Path
            where = Path(fn.__code__.co_filename).name
        text = f"{where}:{fn.__qualname__}()" + (f" applying {', '.join(applied)}" if applied else "")
    else:
        steps = top.transforms if isinstance(getattr(top, "transforms", None), (list, tuple)) else [top]
        text = ", ".join(map(_step_text, steps))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _step_text(t: Any) -> str:
    """One step of a pipeline on one line; an image processor by its class and what it does to pixels."""
    if _is_image_processor(t):
        said = {k: getattr(t, k, None) for k in ("size", "crop_size", "image_mean", "image_std")}
        if not getattr(t, "do_center_crop", False):
            said["crop_size"] = None
        try:
            for k in ("size", "crop_size"):  # a dict, or transformers' SizeDict: the sides it sets
                said[k] = {a: b for a, b in dict(said[k] or {}).items() if b is not None} or None
        except (TypeError, ValueError):
            pass
        return f"{type(t).__name__}({', '.join(f'{k}={v}' for k, v in said.items() if v is not None)})"
    return " ".join(repr(t).split())


def resize_of(ds: Any, size: tuple[int, int]) -> dict[str, Any] | None:
    """The evaluation resize of ds's transform in timm's data-config names (a model written from it then reads image
    files as the dataset did): `Resize(r)` of the shorter side then `CenterCrop(c)` is crop_pct c / r, `Resize((h,
    w))` alone a squash; None where the pipeline is another (or random)."""
    from .transforms import INTERPOLATIONS
    steps = _transforms(ds)
    if _random_transforms(ds):
        return None
    resize = next((t for t in steps if type(t).__name__ == "Resize"), None)
    crop = next((t for t in steps if type(t).__name__ == "CenterCrop"), None)
    if resize is None:
        return next((r for r in (_processor_resize(p, size) for p in steps if _is_image_processor(p)) if r), None)
    mode = getattr(getattr(resize, "interpolation", None), "value", getattr(resize, "interpolation", "bilinear"))
    if str(mode) not in INTERPOLATIONS:
        return None
    r = resize.size
    r = [r] if isinstance(r, int) else list(r)
    c = crop.size if crop is not None else None
    c = None if c is None else [c] if isinstance(c, int) else list(c)
    if len(r) == 1 and c is not None and len(set(c)) == 1 and tuple(size) == (c[0], c[0]) and c[0] <= r[0]:
        # timm resizes to floor(c / crop_pct): c / r can floor to r - 1 by rounding, c / (r + 1/4) never does
        pct = c[0] / r[0] if math.floor(c[0] / (c[0] / r[0])) == r[0] else c[0] / (r[0] + 0.25)
        return {"interpolation": str(mode), "crop_pct": pct, "crop_mode": "center"}
    if len(r) == 2 and crop is None and tuple(size) == tuple(r):
        return {"interpolation": str(mode), "crop_pct": 1.0, "crop_mode": "squash"}
    return None


def _processor_resize(p: Any, size: tuple[int, int]) -> dict[str, Any] | None:
    """An image processor's resize as resize_of gives one: `size` {height, width} without a centre crop (ViT's) a
    squash, {shortest_edge: r} then a {height, width} crop of c x c (BiT's, ResNet's) crop_pct c / r."""
    if not getattr(p, "do_resize", False):
        return None
    resample = getattr(p, "resample", None)  # PIL's numbering; unset: the processors' default, bilinear
    mode = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(2 if resample is None else int(resample))
    sz, crop = getattr(p, "size", None), getattr(p, "crop_size", None) if getattr(p, "do_center_crop", False) else None
    if mode is None or sz is None:
        return None
    h, w, r = (getattr(sz, k, None) if not isinstance(sz, dict) else sz.get(k) for k in ("height", "width",
                                                                                          "shortest_edge"))
    if h and w and crop is None and (h, w) == tuple(size):
        return {"interpolation": mode, "crop_pct": 1.0, "crop_mode": "squash"}
    c = None if crop is None else (crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", None))
    if r and c and tuple(size) == (c, c) and c <= r and getattr(p, "crop_pct", None) is None:
        pct = c / r if math.floor(c / (c / r)) == r else c / (r + 0.25)
        return {"interpolation": mode, "crop_pct": pct, "crop_mode": "center"}
    return None


def _random_transforms(ds: Any) -> list[str]:
    return sorted({type(t).__name__ for t in _transforms(ds) if type(t).__name__.startswith("Random")})


def _keys_of(ds: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The dict keys an item's image and label are looked up under: a Hugging Face dataset's Image and label
    columns first."""
    if not _is_hf(ds):
        return IMAGE_KEYS, LABEL_KEYS
    images = tuple(k for k, v in ds.features.items() if type(v).__name__ == "Image")
    label = _hf_label_column(ds)
    return images + IMAGE_KEYS, ((label,) if label else ()) + LABEL_KEYS


def _split_item(item: Any, what: str, index: int, keys: tuple = (IMAGE_KEYS, LABEL_KEYS),
                need_label: bool = True) -> tuple[Any, Any]:
    """(image, label) of one item: a pair (or longer tuple: its first two), or a dict with an image and a label key;
    without `need_label` (an unlabeled pool), an image alone too (label None)."""
    if isinstance(item, dict):
        img = next((item[k] for k in keys[0] if k in item), None)
        label = next((item[k] for k in keys[1] if k in item), None)
        if img is not None and not need_label:
            return img, label
        if img is None or label is None:
            raise HardenError(f"{what}[{index}] is a dict with keys {sorted(map(str, item))[:8]}; harden reads an "
                              f"image under one of {', '.join(IMAGE_KEYS)} and a label under one of "
                              f"{', '.join(LABEL_KEYS)}.")
        return img, label
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    if not need_label:
        return (item[0] if isinstance(item, (tuple, list)) and len(item) == 1 else item), None
    raise HardenError(f"{what}[{index}] is {type(item).__name__}, not an (image, label) pair: harden measures accuracy "
                      "against labels (images without them are measured against the model's own answers: "
                      "labels='predicted', eval --labels predicted).")


def _label(value: Any, what: str, index: int) -> int:
    a = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if a.ndim == 1 and a.size > 1:  # one-hot or per-class scores: the largest
        a = a.argmax()
    if a.size != 1 or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
                           or a.dtype == np.bool_):
        raise HardenError(f"{what}[{index}]'s label is {type(value).__name__} {getattr(a, 'shape', '')}; harden "
                          "takes one class index an image (or a one-hot row).")
    v = float(a.reshape(()))
    if v != int(v) or v < 0:
        raise HardenError(f"{what}[{index}]'s label is {v:g}; labels are class indices (0, 1, ...).")
    return int(v)


def _as_array(img: Any, what: str, index: int) -> np.ndarray:
    """An item's image as a numpy array H x W x C (any dtype): PIL images in their own mode (grey as 1 channel,
    other modes as RGB or RGBA, 16-bit scaled: transforms.to_channels), tensors as C x H x W, numpy arrays H x W x C
    (or C x H x W where the last axis cannot be channels)."""
    if isinstance(img, torch.Tensor):
        a = img.detach().cpu().numpy()
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3:
            raise HardenError(f"{what}[{index}]'s image is a tensor of shape {tuple(img.shape)}; expected C x H x W.")
        return np.moveaxis(a, 0, -1)
    if hasattr(img, "mode") and hasattr(img, "convert"):  # a PIL image
        from .transforms import to_channels
        grey = img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
        a = np.asarray(to_channels(img, 1 if grey else 4 if img.mode in ("RGBA", "PA") else 3))
        return a[..., None] if a.ndim == 2 else a
    a = np.asarray(img)
    if a.ndim == 2:
        return a[..., None]
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        return np.moveaxis(a, 0, -1)
    if a.ndim != 3 or a.dtype == object:
        raise HardenError(f"{what}[{index}]'s image is {type(img).__name__} of shape {getattr(a, 'shape', '?')}; "
                          "harden reads PIL images, tensors C x H x W and arrays H x W x C.")
    return a


def _item(ds: Any, i: int, what: str) -> Any:
    """ds[i], its failure said as the user's dataset code's, with the item's index."""
    try:
        return ds[i]
    except Exception as e:  # noqa: BLE001 - the user's dataset code: said as its failure
        raise HardenError(f"{what}[{i}] raised {type(e).__name__}: {str(e).strip()[:300]}") from e


def _sampled_items(n: int) -> list[int]:
    """The items read to learn a dataset's images: its first SAMPLE_ITEMS and a seeded spread, SIZE_SAMPLE in all."""
    k = min(SIZE_SAMPLE - SAMPLE_ITEMS, max(0, n - SAMPLE_ITEMS))  # drawn without listing the items: any size
    rest = np.random.default_rng(0).choice(max(0, n - SAMPLE_ITEMS), size=k, replace=False) + SAMPLE_ITEMS
    return list(range(min(SAMPLE_ITEMS, n))) + sorted(rest.tolist())


def _fit_for(sampled: list[np.ndarray], chans: int, fit: Any, what: str) -> tuple[Any, str]:
    """(the transform that brings a dataset's images to one size and `chans` channels, what to say of it) where its
    sampled images vary in size: `fit` (the model's transform, data.Preprocess) where a model asks, else one for their
    typical size (as for a folder of such image files: data._typical, a shorter side of GUESSED_SIDE_MAX at most);
    (None, "") where they share one size."""
    from collections import Counter
    sizes = Counter(tuple(a.shape[:2]) for a in sampled)
    if len(sizes) == 1:
        return None, ""
    from dataclasses import replace
    from . import GUESSED_SIDE_MAX, _typical
    from .transforms import Preprocess
    if fit is not None:
        fit, whose = replace(fit, in_chans=chans), "the model's size and transform"
    else:
        (h, w), whose = _typical(sizes)
        whose = whose.rpartition(": ")[2]  # "a square of their median shorter side" / "the size of k of n sampled ..."
        if min(h, w) > GUESSED_SIDE_MAX:
            scale = GUESSED_SIDE_MAX / min(h, w)
            h, w = max(1, round(h * scale)), max(1, round(w * scale))
            whose += f", scaled to a shorter side of {GUESSED_SIDE_MAX}"
        fit = Preprocess(chans, (h, w))
    note = (f"{len(sizes)} sizes among {len(sampled)} sampled images; each read as image files are, at "
            f"{' x '.join(map(str, fit.input_size))} ({whose}): {fit.describe()}")
    from ..runtime import info
    info(f"{what}'s images: {note}")
    return fit, note


class DatasetRows(LazyRows):
    """uint8 N x H x W x C rows of a map-style dataset's images, each read through its transform when indexed; the
    labels are read apart (labels_of). `normalize`: the (mean, std) undone on each image."""
    read_per_item = True  # base.read_per_item: subsets stay views, training reads it in worker processes

    def __init__(self, ds: Any, what: str, normalize: tuple[np.ndarray, np.ndarray] | None, labelled: bool = True,
                 fit: Any = None):
        self.ds, self.what, self.normalize, self.labelled = ds, what, normalize, labelled
        self.keys = _keys_of(ds)
        self.dtype = np.dtype(np.uint8)
        n = len(ds)
        if n == 0:
            raise HardenError(f"{what} is empty.")
        first = [self._raw(i) for i in _sampled_items(n)]
        floats = [a for a in first if a.dtype.kind == "f"]
        top = max((float(a.max()) for a in floats if a.size), default=0.0)
        lo = min((float(a.min()) for a in floats if a.size), default=0.0)
        if floats and (lo < -NORMALIZE_SLACK or top > 255.5):
            raise HardenError(f"{what} gives images with values from {lo:.4g} to {top:.4g}: normalised images, not "
                              "pixels, and harden found no Normalize in its transform to undo. harden takes pixels "
                              "(ToTensor()'s floats in [0, 1], or uint8) and normalises inside the model: drop the "
                              "normalisation from the dataset's transform and give the model its mean and std "
                              "(harden.models.from_module(net, ..., mean=..., std=...)).")
        self.scale = 255.0 if floats and top <= 1.0 + NORMALIZE_SLACK else 1.0
        chans = {a.shape[2] for a in first}
        chans = chans.pop() if len(chans) == 1 else 3  # grey among colour (PIL images in their own modes): colour
        self.fit, self.fit_note = _fit_for(first, chans, fit, what)
        self._tf = None  # fit (or an odd item's resize), built when first needed
        self._hwc = (*(self.fit.input_size if self.fit else first[0].shape[:2]), chans)
        self.shape = (n, *self._hwc)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tf": None}  # a worker process builds its own transform

    def _raw(self, i: int) -> np.ndarray:
        img, _ = _split_item(_item(self.ds, i, self.what), self.what, i, self.keys, self.labelled)
        a = _as_array(img, self.what, i)
        if self.normalize is not None:
            mean, std = self.normalize
            if len(mean) not in (1, a.shape[-1]) or len(std) not in (1, a.shape[-1]):
                raise HardenError(f"{self.what}'s Normalize has {len(mean)} means for images of {a.shape[-1]} "
                                  "channels.")
            a = a.astype(np.float32) * std.astype(np.float32) + mean.astype(np.float32)
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
            if lo < -NORMALIZE_SLACK or hi > 1.0 + NORMALIZE_SLACK:
                raise HardenError(f"{self.what}[{i}] undone from its transform's Normalize (mean "
                                  f"{mean.round(4).tolist()}, std {std.round(4).tolist()}) holds values from {lo:.4g} "
                                  f"to {hi:.4g}, not pixels in [0, 1]: the Normalize is not the transform's last "
                                  "step on [0, 1] pixels. Give the dataset a transform without it (and the model its "
                                  "mean and std).")
            a = a.clip(0.0, 1.0)
        return a

    def _read(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) >= PARALLEL_ROWS and torch.utils.data.get_worker_info() is None:
            # many at once (the report's images): read by worker processes, PARALLEL_CHUNK items a task
            parts = [rows[a:a + PARALLEL_CHUNK] for a in range(0, len(rows), PARALLEL_CHUNK)]
            return np.concatenate(list(item_batches(self, parts, 0)))
        out = np.empty((len(rows), *self._hwc), np.uint8)
        for k, i in enumerate(rows.tolist()):
            a = self._pixels(self._raw(i), i)
            out[k] = self._fitted(a) if self.fit is not None or a.shape != self._hwc else a
        return out

    def _pixels(self, a: np.ndarray, i: int) -> np.ndarray:
        """An item's image as uint8 pixels (floats scaled as its first items' were)."""
        if a.dtype == np.uint8:
            return a
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)):  # min and max carry a NaN or an infinity
            from .pixels import non_finite
            raise HardenError(non_finite(f"{self.what}[{i}]", a, rows=False))
        if lo < -NORMALIZE_SLACK or hi * self.scale > 255.5:
            raise HardenError(f"{self.what}[{i}] holds values from {lo:.4g} to {hi:.4g} where its first "
                              f"items were pixels {'in [0, 1]' if self.scale != 1 else 'of 0-255'}.")
        return np.rint(a * self.scale).clip(0, 255).astype(np.uint8)

    def _fitted(self, a: np.ndarray) -> np.ndarray:
        """An item at the rows' size and channels, as image files are read: through `fit` (the model's transform, or
        one for the sampled images' typical size) where the dataset's images vary in size; an item of another size
        than the others' (every sampled one shared theirs) its shorter side resized to theirs and centre-cropped;
        another channel count converted as PIL converts a file (pixels.convert_channels)."""
        from .pixels import convert_channels
        a = convert_channels(a, self._hwc[2])
        if self.fit is None and a.shape == self._hwc:
            return a
        if self._tf is None:
            from .transforms import Preprocess
            self._tf = (self.fit or Preprocess(self._hwc[2], self._hwc[:2])).eval_transform()
        from PIL import Image
        return self._tf(Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)).permute(1, 2, 0).numpy()

    def _reshaped(self, shape: tuple[int, ...]) -> "LazyRows":
        raise HardenError(f"{self.what}: images read from a dataset keep their shape.")


def labels_of(ds: Any, what: str) -> np.ndarray:
    """Every item's class index: from the labels a torchvision-style dataset keeps beside its images (`targets`,
    `labels`; through Subset and ConcatDataset), checked against three items read whole; else read item by item,
    each image through the transform (said: a dataset without them is read once whole)."""
    n, keys = len(ds), _keys_of(ds)
    kept = _kept_labels(ds)
    if kept is not None and len(kept) == n:
        probe = sorted({0, n // 2, n - 1})
        if all(_label(_split_item(_item(ds, i, what), what, i, keys)[1], what, i) == int(kept[i]) for i in probe):
            return kept
    from ..runtime import info, progress_if
    info(f"{what} keeps no labels beside its images (`targets`): reading its {n:,} items once for them")
    chunks = [np.arange(a, min(a + LABEL_CHUNK, n)) for a in range(0, n, LABEL_CHUNK)]
    out = []
    with progress_if(n > 4 * LABEL_CHUNK, f"reading {what}'s labels", n) as advance:
        for got in item_batches(_LabelsOf(ds, what, keys), chunks, 0):
            out.append(got)
            advance(len(got))
    return np.concatenate(out).astype(np.int64)


LABEL_CHUNK = 256  # items whose labels one worker reads at a time


class _LabelsOf:
    """The labels of a dataset's items as rows (`item_batches` reads them in worker processes)."""

    def __init__(self, ds: Any, what: str, keys: tuple):
        self.ds, self.what, self.keys = ds, what, keys

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray([_label(_split_item(_item(self.ds, i, self.what), self.what, i, self.keys)[1], self.what, i)
                           for i in rows.tolist()], np.int64)


def _kept_labels(ds: Any) -> np.ndarray | None:
    if isinstance(ds, torch.utils.data.Subset):
        parent = _kept_labels(ds.dataset)
        return None if parent is None else parent[np.asarray(ds.indices, np.int64)]
    if isinstance(ds, torch.utils.data.ConcatDataset):
        parts = [_kept_labels(d) for d in ds.datasets]
        return None if any(p is None for p in parts) else np.concatenate(parts)
    if getattr(ds, "target_transform", None) is not None:  # the kept labels are not what an item gives
        return None
    if isinstance(ds, torch.utils.data.TensorDataset) and len(ds.tensors) >= 2:  # (images, labels) as tensors
        labels = ds.tensors[1].detach().cpu()
        return labels.numpy().astype(np.int64) if labels.ndim == 1 and not labels.is_floating_point() else None
    if _is_hf(ds):  # the label column alone: no image decoded
        column = _hf_label_column(ds)
        if column is None:
            return None
        for view in (ds, ds.with_format(None)):  # through its transform, else (one that wants every column) raw
            try:
                value = view[column]
                a = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(list(value) if not hasattr(
                    value, "__array__") else value)
            except Exception:  # noqa: BLE001 - the user's transform, given one column: the column as stored
                continue
            return a.astype(np.int64) if a.ndim == 1 and np.issubdtype(a.dtype, np.integer) else None
        return None
    for name in LABEL_ATTRS:
        value = getattr(ds, name, None)
        if value is None or isinstance(value, (str, bytes, dict)):
            continue
        try:
            a = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        except (TypeError, ValueError):
            continue
        if a.ndim == 1 and (np.issubdtype(a.dtype, np.integer) or (a.dtype.kind == "f" and np.all(a == np.round(a)))):
            return a.astype(np.int64)
    return _sample_labels(ds)


def _sample_labels(ds: Any) -> np.ndarray | None:
    """The labels of a list of (file, class index) pairs the dataset, or its reader, keeps: torchvision's `samples`,
    timm's `ImageDataset` (`create_dataset`: its `reader.samples`)."""
    for holder in (ds, getattr(ds, "reader", None)):
        samples = getattr(holder, "samples", None)
        if isinstance(samples, (list, tuple)) and samples and all(
                isinstance(s, (list, tuple)) and len(s) == 2 for s in samples[:3]):
            try:
                a = np.asarray([s[1] for s in samples])
            except (TypeError, ValueError):
                continue
            if a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
                return a.astype(np.int64)
    return None


def class_names_of(ds: Any) -> list[str] | None:
    while isinstance(ds, torch.utils.data.Subset):
        ds = ds.dataset
    if isinstance(ds, torch.utils.data.ConcatDataset):
        ds = ds.datasets[0]
    if _is_hf(ds):
        column = _hf_label_column(ds)
        names = getattr(ds.features.get(column), "names", None) if column else None
        return [str(c) for c in names] if names else None
    names = getattr(ds, "classes", None)
    if isinstance(names, (list, tuple)) and names:
        return [str(c) for c in names]
    to_idx = getattr(getattr(ds, "reader", None), "class_to_idx", None)  # timm's ImageDataset
    if isinstance(to_idx, dict) and sorted(to_idx.values()) == list(range(len(to_idx))):
        return [str(c) for c, _ in sorted(to_idx.items(), key=lambda kv: kv[1])]
    return None


def _check_repeatable(ds: Any, rows: DatasetRows, what: str) -> None:
    """The images a report is measured on must be the same at every read (clean pass, each attack, each check)."""
    for i in sorted({0, len(ds) - 1}):
        if not np.array_equal(rows[i], rows[i]):
            randoms = _random_transforms(ds)
            raise HardenError(f"{what} gives another image each time item {i} is read"
                              + (f" (its transform has {', '.join(randoms)})" if randoms else "")
                              + ": a report compares the same images clean and attacked. Give the dataset it is "
                              "measured on its evaluation transform (no random crops or flips).")


def from_datasets(objs: tuple, name: str | None = None, fit: Any = None):
    """ImageData over one dataset (one split: evaluated whole, `fix` holds a share out) or (train, test), named
    `name` (the --data that made them) or by their class. `fit`: the model's transform (data.Preprocess), which
    brings images of many sizes to its own, as it reads image files (DatasetRows)."""
    from .arrays import _finish
    if len(objs) == 1:
        objs = _splits_of(objs[0])
    if len(objs) not in (1, 2):
        raise HardenError(f"Datasets come as one (a split) or as (train, test); got {len(objs)}.")
    whats = ["the dataset"] if len(objs) == 1 else ["the training dataset", "the test dataset"]
    dss = [_map_style(o, w) for o, w in zip(objs, whats, strict=True)]
    norms = [_normalize_of(d, w) for d, w in zip(dss, whats, strict=True)]
    if len(norms) == 2 and (norms[0] is None) != (norms[1] is None) or len(norms) == 2 and norms[0] is not None \
            and not all(np.allclose(a, b) for a, b in zip(norms[0], norms[1], strict=True)):
        raise HardenError("The training and test datasets are normalised differently (one Normalize each, or one "
                          "without): harden gives the model one mean and std. Give both the same transform's "
                          "normalisation, or none.")
    rows = [DatasetRows(d, w, nm, fit=fit) for d, w, nm in zip(dss, whats, norms, strict=True)]
    _check_repeatable(dss[-1], rows[-1], whats[-1])
    labels = [labels_of(d, w) for d, w in zip(dss, whats, strict=True)]
    name = name or f"{DATASET_SOURCE} {type(dss[-1]).__name__}"
    names = class_names_of(dss[-1])
    if len(rows) == 1:
        empty = np.zeros((0, *rows[0].shape[1:]), np.uint8)
        data = _finish(empty, np.zeros(0, np.int64), rows[0], labels[0], name, names)
    else:
        data = _finish(rows[0], labels[0], rows[1], labels[1], name, names)
    data.from_dataset = {"class": type(dss[-1]).__name__}
    randoms = _random_transforms(dss[0]) if len(dss) == 2 else []
    if randoms:  # the training dataset augments its items itself: fix adds no augmentation of its own on top
        data.from_dataset["train_augments"] = randoms
    pipeline = transform_text(dss[-1])
    if pipeline:
        data.from_dataset["transform"] = pipeline
    resize = _fit_record(rows[-1].fit) if rows[-1].fit else resize_of(dss[-1], rows[-1].shape[1:3])
    if rows[-1].fit:
        data.from_dataset["resized"] = rows[-1].fit_note
    if resize:  # how a model written from it reads image files later, as this dataset read them
        data.from_dataset["resize"] = resize
    if norms[-1] is not None:
        data.from_dataset["normalize_undone"] = {"mean": norms[-1][0].round(6).tolist(),
                                                 "std": norms[-1][1].round(6).tolist()}
    return data


def _fit_record(fit: Any) -> dict[str, Any]:
    """The resize harden gave a dataset's images of many sizes, in timm's data-config names (as resize_of)."""
    return {"interpolation": fit.interpolation, "crop_pct": float(fit.crop_pct), "crop_mode": fit.crop_mode}


def normalize_undone(data: Any) -> dict | None:
    """The mean and std of the dataset's Normalize that reading `data` undid, or None."""
    return (getattr(data, "from_dataset", None) or {}).get("normalize_undone")


def layout(data: Any) -> str | None:
    """`harden data`'s layout row for data read from a dataset, or None."""
    found = getattr(data, "from_dataset", None)
    if not found:
        return None
    undone = found.get("normalize_undone")
    return (f"a torch Dataset ({found['class']}), read item by item through its own transform"
            + (f" ({found['transform']})" if found.get("transform") else "")
            + (f"; its Normalize (mean {undone['mean']}, std {undone['std']}) undone to read pixels, and given to a "
               "plain module inside" if undone else "")
            + (f"; its images: {found['resized']}" if found.get("resized") else ""))


def model_for(model: torch.nn.Module, data: Any, say: bool = True) -> torch.nn.Module:
    """The model as a dataset feeds it (data read from one; anything else leaves the model as it is): a plain
    nn.Module, which took the dataset's normalised images, wrapped with the mean and std its Normalize had
    (models.from_module); a model with harden's spec takes the dataset's image size and Normalize where its own were
    assumed (no metadata, flag or config of its own gave them; a library's size for its own weights), else keeps
    its own, warned where its normalisation differs. Said unless `say` is False (the same model's copy)."""
    if not getattr(data, "from_dataset", None):
        return model
    from ..runtime import info, warn
    info, warn = (info, warn) if say else (_silent, _silent)
    undone = normalize_undone(data)
    spec = getattr(model, "spec", None)
    if spec is None:
        if not undone:
            return model
        info(f"{data.source}'s transform ends in Normalize(mean={undone['mean']}, std={undone['std']}): harden reads "
             "its images as pixels (budgets are in pixel units) and gives the model that mean and std inside")
        return wrapped_for(model, data)
    _size_of(model, data, info)
    if undone:
        _normalisation_of(model, data, undone, info, warn)
    return model


def wrapped_for(net: torch.nn.Module, data: Any):
    """A plain module as a Classifier for `data` (models.from_module): at its images' size and channels, with the
    mean and std of a dataset's Normalize undone to read them, and, where the data came from a dataset whose transform
    resized as timm's evaluation does, that resize, so a checkpoint written from it reads image files as the
    dataset's transform did."""
    from ..models.config import SOURCES_KEY
    from ..models.registry import CHANNEL_ORDER, from_module
    from ..models.zoo_attributes import built, timm_statistics
    found = getattr(data, "from_dataset", None) or {}
    # a module that states its own input convention (Cadene's pretrainedmodels' attributes) where the data does not
    said = None if found.get("normalize_undone") else built(net) or timm_statistics(net)
    from ..models.config import channel_statistics
    undone = found.get("normalize_undone") or (  # RGB's statistics averaged for a grey network, as a load does
        {k: channel_statistics(list(said[k]), int(data.in_chans)) for k in ("mean", "std")} if said else
        {"mean": (0.0,), "std": (1.0,)})
    wrapped = from_module(net, input_size=data.input_size, in_chans=data.in_chans, mean=undone["mean"],
                          std=undone["std"], classes_hint=getattr(data, "num_classes", None))
    for key, value in (found.get("resize") or {}).items():
        setattr(wrapped.spec, key, value)
    if said:
        if said.get(CHANNEL_ORDER):
            wrapped.spec.extra[CHANNEL_ORDER] = said[CHANNEL_ORDER]
        wrapped.config_sources = {k: said[SOURCES_KEY][k] for k in ("mean", "std", CHANNEL_ORDER) if k in said}
    elif not found.get("normalize_undone"):
        # mean 0 and std 1 are the contract's word, not the module's: published code normalises in its transform, so
        # the normalisation check measures the common ones (report/normalisation.py) and names one clearly better
        wrapped.config_sources = {"mean": "default", "std": "default"}
    wrapped.plain_module = True  # its remedies are from_module's arguments, not the command line's flags
    return wrapped


def _size_of(model: Any, data: Any, info) -> None:
    """The dataset's image size for a model whose own was assumed: its transform is what the model is fed."""
    from ..report.input_size import LIBRARY_SOURCES
    sources = getattr(model, "config_sources", None) or {}
    source, size = sources.get("input_size", ""), tuple(int(v) for v in data.input_size)
    if tuple(model.spec.input_size) == size or not (source == "default" or source.startswith(LIBRARY_SOURCES)):
        return
    info(f"the model's input size was assumed ({' x '.join(map(str, model.spec.input_size))}, {source}); "
         f"{data.source}'s transform gives {size[0]} x {size[1]} images, and the model is fed them at that size")
    model.spec.input_size = size
    if isinstance(getattr(model, "config_sources", None), dict):
        model.config_sources["input_size"] = DATASET_TRANSFORM


def _normalisation_of(model: Any, data: Any, undone: dict, info, warn) -> None:
    spec = model.spec
    from ..report.normalisation import assumed
    guess, c = assumed(model), int(spec.in_chans)
    if guess is not None and len(undone["mean"]) in (1, c) and len(undone["std"]) in (1, c):
        # the checkpoint's mean and std were a guess (no metadata, flag or config gave them): the dataset's word
        mean, std = (torch.as_tensor(undone[k], dtype=model.mean.dtype).expand(c) for k in ("mean", "std"))
        model.mean.copy_(mean.view_as(model.mean))
        model.std.copy_(std.view_as(model.std))
        spec.mean, spec.std = (tuple(float(v) for v in (undone[k] * c if len(undone[k]) == 1 else undone[k]))
                               for k in ("mean", "std"))
        sources = getattr(model, "config_sources", None)
        if isinstance(sources, dict):
            sources["mean"] = sources["std"] = DATASET_NORMALIZE
        info(f"the model's mean and std were assumed ({guess}); {data.source}'s transform gives them "
             f"(Normalize(mean={undone['mean']}, std={undone['std']})), and the model normalises with them")
        return
    own = (np.asarray(spec.mean, np.float64), np.asarray(spec.std, np.float64))
    theirs = (np.asarray(undone["mean"]), np.asarray(undone["std"]))
    if any(a.shape != b.shape and a.size != 1 and b.size != 1 or not np.allclose(a, b, atol=1e-3)
           for a, b in zip(own, theirs, strict=True)):
        warn(f"{data.source}'s transform normalises with mean {undone['mean']}, std {undone['std']}; the model "
             f"normalises with its own (mean {list(spec.mean)}, std {list(spec.std)}), which applies: harden "
             "undid the dataset's to read pixels.")


def _silent(msg: str) -> None:
    """Said once already (the same model's copy)."""


class _BatchesOf(torch.utils.data.Dataset):
    """Batch k of `index_batches` read from `rows` in a worker process: its uint8 rows as a tensor (passed through
    shared memory), or the error reading them raised, to be raised in the main process as itself (not as a
    worker's traceback)."""

    def __init__(self, rows: Any, index_batches: list[np.ndarray]):
        self.rows, self.index_batches = rows, index_batches

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, k: int) -> Any:
        try:
            return torch.from_numpy(np.ascontiguousarray(self.rows[self.index_batches[k]]))
        except HardenError as e:
            return e
        except Exception as e:  # noqa: BLE001 - the user's dataset code: said as its failure
            return HardenError(f"Reading the dataset's items raised {type(e).__name__}: {str(e).strip()[:300]}")


def _as_is(batch: Any) -> Any:
    return batch


def item_batches(rows: Any, index_batches: list[np.ndarray], epoch_no: int, workers: int | None = None):
    """uint8 rows of each batch of indices, in order, read by worker processes (a dataset's items are read through
    its own code, image by image: several processes read them while the model trains, as the user's own DataLoader
    would); in this process where one worker (or one batch) would do. `workers`: --workers, else one per core."""
    from .loader import default_workers, leave_stop_signals, start_workers
    count = min(default_workers() if workers is None else workers, len(index_batches))
    if count < 2:
        yield from (rows[bi] for bi in index_batches)
        return
    loader = torch.utils.data.DataLoader(_BatchesOf(rows, index_batches), batch_size=None, num_workers=count,
                                         collate_fn=_as_is, prefetch_factor=2, worker_init_fn=leave_stop_signals,
                                         # its own generator: the workers' seeds never draw on the run's random state
                                         generator=torch.Generator().manual_seed(int(epoch_no)))
    for got in start_workers(loader):
        if isinstance(got, Exception):
            raise got
        yield got.numpy()


def dataset_pool(obj: Any, source: str | None = None, workers: int | None = None, fit: Any = None):
    """An unlabeled pool (`fix --unlabeled`, unlabeled.load_unlabeled) from a dataset, a DataLoader or a DatasetDict
    (its train split): each item's image (a pair's first, a dict's image, or the item itself) read as training reads
    a dataset's, never whole; its kept labels where it has them, for the agreement figure only (never read item by
    item: the pool's labels never reach training)."""
    from .arrays import ImageData
    from .unlabeled import NO_LABEL
    what = "the unlabeled dataset"
    ds = _map_style(_splits_of(obj)[0], what)
    rows = DatasetRows(ds, what, _normalize_of(ds, what), labelled=False, fit=fit)
    kept = _kept_labels(ds)
    labels = kept if kept is not None and len(kept) == len(ds) else np.full(len(ds), NO_LABEL, np.int64)
    data = ImageData(rows, labels, np.zeros((0, *rows.shape[1:]), np.uint8), np.zeros(0, np.int64),
                     source or f"{DATASET_SOURCE} {type(ds).__name__}", int(max(labels.max(initial=0), 0) + 1))
    data.from_dataset = {"class": type(ds).__name__, **({"resized": rows.fit_note} if rows.fit else {})}
    if workers is not None:
        data.from_dataset["workers"] = int(workers)
    return data
