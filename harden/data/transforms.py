"""Transforms. Files: each image converted to the model's channel count on its own, then the model's evaluation
transform (timm's: resize the shorter side to size / crop_pct with the model's interpolation, centre crop) or its
training transform (timm's random resized crop + horizontal flip at the model's size), as uint8 tensors; pixels
become float [0, 1] on the device and normalisation stays inside the model. Arrays: albumentations pipelines of the
small-image recipes."""
from __future__ import annotations

import math

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import HardenError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
CROP_MODES = ("center", "squash", "border")
# What an architecture with no known preprocessing gets (and a warning naming these values)
DEFAULT_INTERPOLATION, DEFAULT_CROP_PCT, DEFAULT_CROP_MODE = "bilinear", 1.0, "center"
# A camera's EXIF orientation tag: "stored" reads the pixels as the file stores them, as torchvision's ImageFolder and
# timm's readers do; "upright" turns them as the tag says, as Hugging Face's datasets (since 2.19) and transformers'
# load_image do. A model trained one way and evaluated the other sees its phone photos sideways.
ORIENTATIONS = ("stored", "upright")
EXIF_ORIENTATION = 0x0112
HF_LAYOUTS = ("parquet", "arrow", "table")  # Hugging Face datasets' files: `datasets` decodes their images upright


def resolve_orientation(choice: str, layout: str) -> str:
    """--exif-orientation: auto is "upright" for a Hugging Face dataset (as `datasets` reads it), else "stored" (as
    torchvision and timm read files); DataTarget.for_model has already made it "upright" for a transformers model."""
    if choice == "auto":
        return "upright" if layout in HF_LAYOUTS else "stored"
    if choice not in ORIENTATIONS:
        raise HardenError(f"--exif-orientation takes auto, {' or '.join(ORIENTATIONS)}, got {choice!r}.")
    return choice


def orientation_note(source: str, orientation: str) -> str:
    """Said once a run meets an image with an EXIF orientation: how it was read, and the flag for the other way."""
    if orientation == "upright":
        return (f"{source}: some images carry a camera's EXIF orientation tag; they are read turned upright as the tag "
                "says, as Hugging Face's datasets and transformers read them. A model trained on them as stored "
                "(torchvision's ImageFolder, timm) needs --exif-orientation stored.")
    return (f"{source}: some images carry a camera's EXIF orientation tag; they are read as stored, as torchvision's "
            "ImageFolder and timm read them. A model trained on them turned upright (Hugging Face's datasets, "
            "transformers' load_image) needs --exif-orientation upright.")


@dataclass(frozen=True)
class Preprocess:
    """How the model expects its images: channels, size, and the evaluation crop. timm's data-config names."""
    in_chans: int = 3
    input_size: tuple[int, int] = (224, 224)
    interpolation: str = DEFAULT_INTERPOLATION
    crop_pct: float = DEFAULT_CROP_PCT
    crop_mode: str = DEFAULT_CROP_MODE
    orientation: str = "stored"  # ORIENTATIONS: how a file's EXIF orientation tag is read

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise HardenError(f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}.")
        if self.crop_mode not in CROP_MODES:
            raise HardenError(f"crop mode {self.crop_mode!r} is not one of {', '.join(CROP_MODES)}.")
        if not 0 < float(self.crop_pct) <= 1:
            raise HardenError(f"crop fraction must be in (0, 1], got {self.crop_pct}.")
        if self.orientation not in ORIENTATIONS:
            raise HardenError(f"EXIF orientation {self.orientation!r} is not one of {', '.join(ORIENTATIONS)}.")

    @classmethod
    def of(cls, spec: Any) -> "Preprocess":
        """From a ModelSpec (or anything with its attributes)."""
        return cls(int(spec.in_chans), (int(spec.input_size[0]), int(spec.input_size[1])),
                   str(spec.interpolation), float(spec.crop_pct), str(spec.crop_mode))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        if self.orientation == "stored":  # the default, left out: records written before it existed read the same
            del d["orientation"]
        return d

    def how_oriented(self) -> str:
        """How an image with an EXIF orientation tag is read, in words."""
        return "turned upright" if self.orientation == "upright" else "as stored"

    def describe(self) -> str:
        turned = ", EXIF orientation applied (upright)" if self.orientation == "upright" else ""
        return self._describe_size() + turned

    def _describe_size(self) -> str:
        h, w = self.input_size
        if self.crop_mode == "squash" and self.crop_pct < 1:
            return (f"resized to {math.floor(h / self.crop_pct)}x{math.floor(w / self.crop_pct)} "
                    f"({self.interpolation}), aspect ratio not kept, centre crop {h}x{w}")
        if self.crop_mode == "squash":
            return f"resized to {h}x{w} ({self.interpolation}), aspect ratio not kept"
        scale = int(min(h, w) / self.crop_pct) if self.crop_pct < 1 else min(h, w)
        return f"shorter side resized to {scale} ({self.interpolation}), centre crop {h}x{w}"

    def eval_transform(self):
        """PIL image (any mode) -> uint8 C x H x W tensor: timm's evaluation transform without normalisation."""
        from timm.data import create_transform
        tf = create_transform(self.input_size, is_training=False, interpolation=self.interpolation,
                              crop_pct=self.crop_pct, crop_mode=self.crop_mode, use_prefetcher=True)
        return _Channels(self.in_chans, tf, upright=self.orientation == "upright")

    def train_transform(self):
        """Random resized crop (timm's default scale and ratio) + horizontal flip at the model's size."""
        from timm.data import create_transform
        tf = create_transform(self.input_size, is_training=True, interpolation=self.interpolation,
                              color_jitter=None, use_prefetcher=True)
        # the smallest crop it takes (8% of the area at aspect 3/4) still spans the model's size at this side
        return _Channels(self.in_chans, tf, draft_side=math.ceil(max(self.input_size) / math.sqrt(0.08 * 3 / 4)),
                         upright=self.orientation == "upright")


class _Channels:
    """Convert to the model's channel count, then apply tf; returns a uint8 C x H x W tensor. `draft_side`: a JPEG
    may be decoded at 1/2, 1/4 or 1/8 scale (the decoder's own DCT scaling, several times faster on camera photos)
    where both sides stay at least this long; set for training's random crops only, so evaluation stays pixel for
    pixel timm's. `upright`: the file's EXIF orientation applied first (ORIENTATIONS)."""

    def __init__(self, in_chans: int, tf, draft_side: int | None = None, upright: bool = False):
        self.in_chans, self.tf, self.draft_side, self.upright = in_chans, tf, draft_side, upright

    def draft(self, img) -> None:
        """Called before the image is decoded."""
        if self.draft_side and getattr(img, "format", None) == "JPEG":
            img.draft(img.mode, (self.draft_side, self.draft_side))

    def __call__(self, img):
        if self.upright and exif_orientation(img) != 1:
            img = turned_upright(img)
        t = self.tf(to_channels(img, self.in_chans))
        return t if t.ndim == 3 else t[None]

    def __repr__(self) -> str:
        return f"channels={self.in_chans} -> {self.tf}"


def exif_orientation(img) -> int:
    """A PIL image's EXIF orientation (1 to 8; 1: upright as stored); 1 where the file has none, or one that cannot be
    read (phones and editors write damaged EXIF blocks; such a file is read as stored rather than refused)."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - any error of PIL's EXIF parser: no orientation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def turned_upright(img):
    """The image turned (and mirrored) as its EXIF orientation says: PIL's exif_transpose."""
    from PIL import ImageOps
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a tag exif_orientation read but PIL cannot apply: as stored
        return img


def to_channels(img, in_chans: int):
    """Any PIL mode (grey, RGBA, palette, CMYK, 16-bit, float) as 'L' (1 channel), 'RGB' (3) or 'RGBA' (4). As timm
    reads images, alpha is dropped rather than composited; 16-bit and 32-bit integer images are scaled to 8 bits
    (PIL's own conversion would clip them at 255)."""
    from PIL import Image
    target = {1: "L", 3: "RGB", 4: "RGBA"}.get(in_chans)
    if target is None:
        raise HardenError(f"Image files can feed models with 1, 3 or 4 input channels, not {in_chans}.")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if a.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        img = Image.fromarray(np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        img = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if img.mode == target:
        return img
    with warnings.catch_warnings():  # palette-with-transparency: converted as timm converts it
        warnings.simplefilter("ignore")
        return img.convert(target)


# ---------------------------------------------------------------- small images in memory (albumentations)

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


