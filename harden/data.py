"""Datasets (`--data`): sklearn digits, .npz archives, CIFAR-10 python batches, image-folder trees.
Images stay uint8 NHWC on the host; batches become float [0,1] NCHW tensors on the device."""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import HardenError

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class ImageData:
    x_train: np.ndarray  # uint8 NHWC
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    num_classes: int
    subset: dict = field(default_factory=dict)  # fraction, seed, n, index hash when subsampled
    class_names: list[str] | None = None  # when the data says them (image folders, CIFAR-10 meta, an npz key)

    @property
    def in_chans(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[1]), int(self.x_train.shape[2])

    @property
    def kind(self) -> str:
        """'mnist-like' (grey, <= 28 px) or 'cifar-like': picks data-dependent recipe defaults."""
        return "mnist-like" if self.in_chans == 1 and max(self.input_size) <= 28 else "cifar-like"

    def mean_std(self) -> tuple[list[float], list[float]]:
        x = self.x_train.reshape(-1, self.in_chans).astype(np.float64) / 255.0
        return x.mean(0).round(4).tolist(), np.maximum(x.std(0), 1e-3).round(4).tolist()


def load_data(spec: str | Path) -> ImageData:
    spec = str(spec)
    if spec == "digits":
        return _digits()
    path = Path(spec)
    if not path.exists():
        raise HardenError(f"Data path {spec!r} does not exist. --data takes 'digits', an .npz file with "
                          "x_train/y_train/x_test/y_test, a CIFAR-10 python-batches folder, or an image folder "
                          "with train/ and test/ (or val/) class folders.")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise HardenError(f"Data file {spec!r} is not an .npz archive.")
        return _npz(path)
    if (path / "data_batch_1").exists() and (path / "test_batch").exists():
        return _cifar_batches(path)
    return _image_folder(path)


def _finish(x_train, y_train, x_test, y_test, source: str, class_names=None) -> ImageData:
    arrays = []
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
            raise HardenError(f"{source}: {name} has shape {x.shape}; expected N x H x W or N x H x W x C "
                              "with C in 1, 3, 4.")
        if x.dtype != np.uint8:
            raise HardenError(f"{source}: {name} is {x.dtype}; harden expects uint8 pixels 0-255.")
        arrays.append(x)
    ytr, yte = np.asarray(y_train).astype(np.int64).ravel(), np.asarray(y_test).astype(np.int64).ravel()
    if len(ytr) != len(arrays[0]) or len(yte) != len(arrays[1]):
        raise HardenError(f"{source}: image and label counts differ.")
    if arrays[0].shape[1:] != arrays[1].shape[1:]:
        raise HardenError(f"{source}: train images {arrays[0].shape[1:]} and test images {arrays[1].shape[1:]} differ.")
    if (ytr.size and ytr.min() < 0) or (yte.size and yte.min() < 0):
        raise HardenError(f"{source}: labels must be non-negative integers.")
    num_classes = int(max(ytr.max(initial=0), yte.max(initial=0)) + 1)
    names = [str(c) for c in class_names] if class_names is not None and len(class_names) >= num_classes else None
    return ImageData(arrays[0], ytr, arrays[1], yte, source, num_classes, class_names=names)


def _digits() -> ImageData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # 8x8, values 0-16
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    return _finish(xtr, ytr, xte, yte, "digits")


def _npz(path: Path) -> ImageData:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise HardenError(f"{str(path)!r} lacks {', '.join(missing)}; an .npz for harden holds "
                                  "x_train, y_train, x_test, y_test (uint8 images NHW or NHWC).")
            names = z["class_names"].tolist() if "class_names" in z.files else None
            return _finish(z["x_train"], z["y_train"], z["x_test"], z["y_test"], str(path), names)
    except HardenError:
        raise
    except Exception as e:  # zipfile / format errors
        raise HardenError(f"{str(path)!r} is not a readable .npz archive ({e}).") from None


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles: allow only what numpy arrays need, never arbitrary code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise HardenError(f"Refused to unpickle {module}.{name} from a CIFAR batch file: it is not plain data.")


def _cifar_batches(path: Path) -> ImageData:
    def read(name):
        with open(path / name, "rb") as f:
            d = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"])
    parts = [read(f"data_batch_{i}") for i in range(1, 6) if (path / f"data_batch_{i}").exists()]
    xte, yte = read("test_batch")
    names = None
    if (path / "batches.meta").exists():
        with open(path / "batches.meta", "rb") as f:
            meta = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])] or None
    return _finish(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xte, yte, str(path),
                   names)


def _image_folder(path: Path) -> ImageData:
    from PIL import Image
    test_dir = path / "test" if (path / "test").is_dir() else path / "val"
    if not (path / "train").is_dir() or not test_dir.is_dir():
        raise HardenError(f"{str(path)!r} is a folder but neither CIFAR-10 python batches nor an image tree with "
                          "train/ and test/ (or val/) holding one folder per class.")
    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise HardenError(f"{str(path / 'train')!r} must hold at least two class folders.")

    def read(split: Path):
        xs, ys, size, mode = [], [], None, None
        for ci, c in enumerate(classes):
            for f in sorted((split / c).glob("*")) if (split / c).is_dir() else []:
                if f.suffix.lower() not in IMAGE_EXT:
                    continue
                im = Image.open(f)
                mode = mode or ("L" if im.mode in ("L", "1", "I;16") else "RGB")
                im = im.convert(mode)
                size = size or im.size
                if im.size != size:
                    im = im.resize(size, Image.BILINEAR)
                xs.append(np.asarray(im, dtype=np.uint8))
                ys.append(ci)
        if not xs:
            raise HardenError(f"No images found under {str(split)!r}.")
        return np.stack(xs), np.asarray(ys)
    xtr, ytr = read(path / "train")
    xte, yte = read(test_dir)
    return _finish(xtr, ytr, xte, yte, str(path), classes)


def stratified_subset(y: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Deterministic per-class draw of round(frac * n_c) (at least 1) indices, sorted."""
    if not (0.0 < frac <= 1.0):
        raise HardenError(f"--data-frac must be in (0, 1], got {frac}.")
    if frac == 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(frac * len(idx))))
        picks.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picks))


def index_hash(idx: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


def subsample(data: ImageData, frac: float, seed: int) -> ImageData:
    idx = stratified_subset(data.y_train, frac, seed)
    return ImageData(data.x_train[idx], data.y_train[idx], data.x_test, data.y_test, data.source, data.num_classes,
                     subset=dict(fraction=frac, seed=seed, n=int(len(idx)), index_sha256=index_hash(idx)),
                     class_names=data.class_names)


def check_fits(data: ImageData, in_chans: int, num_classes: int) -> None:
    if data.in_chans != in_chans:
        raise HardenError(f"The data ({data.source}) has {data.in_chans}-channel images but the model takes "
                          f"{in_chans} channel(s). Use data of the kind the model was trained on.")
    if data.num_classes > num_classes:
        raise HardenError(f"The data ({data.source}) has labels up to {data.num_classes - 1} but the model has "
                          f"only {num_classes} classes.")


def to_tensor(x: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]; converts on the device to keep host work small."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def fit_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False).clamp_(0, 1)


# ---------------------------------------------------------------- augmentation (albumentations)

def build_augment(kind: str, size: tuple[int, int], seed: int):
    """'seed000': seed 000 appendix table 3 (reflect-pad 1/8 of the side, random crop, v/h flips 0.5,
    solarize 0.5 p=0.3, one 10/32-side cutout p=0.5). 'flip-crop': pad + crop + horizontal flip (the usual
    adversarial-training pipeline). 'crop': pad + crop only (for digits, where flips change the class).
    'none': identity."""
    import albumentations as A
    import cv2
    h, w = size
    if kind == "none":
        return None
    pad = [A.PadIfNeeded(min_height=h + 2 * max(1, h // 8), min_width=w + 2 * max(1, w // 8),
                         border_mode=cv2.BORDER_REFLECT_101, position="center"), A.RandomCrop(h, w)]
    if kind == "crop":
        return A.Compose(pad, seed=seed)
    if kind == "flip-crop":  # the adversarial-training standard (Madry et al., Rice et al.): pad + crop + h-flip
        return A.Compose(pad + [A.HorizontalFlip(p=0.5)], seed=seed)
    if kind == "seed000":
        hole = (max(1, round(h * 10 / 32)), max(1, round(w * 10 / 32)))
        return A.Compose(pad + [
            A.VerticalFlip(p=0.5), A.HorizontalFlip(p=0.5),
            A.Solarize(threshold_range=(0.5, 0.5), p=0.3),
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(hole[0], hole[0]),
                            hole_width_range=(hole[1], hole[1]), p=0.5),
        ], seed=seed)
    raise HardenError(f"Unknown augmentation {kind!r}; use seed000, flip-crop, crop or none.")


def augment(x: np.ndarray, aug) -> np.ndarray:
    if aug is None:
        return x
    # albumentations transforms one image per call; images are small and this runs on the host.
    return np.stack([aug(image=img)["image"].reshape(img.shape) for img in x])


def batches(n: int, batch_size: int, shuffle: bool, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if shuffle else np.arange(n)
    for s in range(0, n, batch_size):
        yield order[s:s + batch_size]
