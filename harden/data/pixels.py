"""Image arrays as harden keeps them (uint8 N x H x W x C) from arrays saved otherwise: channels first (N x C x H x W,
as a torch tensor's `.numpy()` gives them) and pixels as floats in [0, 1] (after ToTensor) or as wider integers or
floats in 0-255. The rows are converted when a run indexes them, so a memory-mapped archive is still read only where
used and memory grows with the batch, never with the array. Normalised images (negative values, or above 255) are
refused: harden's budgets are in pixels, and only the model knows its normalisation."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import HardenError
from .npz import READ_ERRORS, DeferredArray

_CHANNELS = (1, 3, 4)
_SAMPLE_ROWS = 1024  # rows read to find the value range of an array that is not uint8


def channels_first(shape: tuple[int, ...]) -> bool:
    """N x C x H x W with C in 1, 3, 4 and a last axis that cannot be channels."""
    return len(shape) == 4 and shape[1] in _CHANNELS and shape[-1] not in _CHANNELS


class RowView:
    """uint8 N x H x W x C rows computed from `base` (an array, another view, or a DeferredArray, inflated on the
    first read) as a run indexes them; subclasses say the shape and how rows are converted (`_convert`)."""
    shape: tuple[int, ...]

    def __init__(self, base: Any, what: str):
        self._base, self.what = base, what
        self.dtype = np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(self._base, DeferredArray):
            try:
                self._base = self._base.load()
            except READ_ERRORS as e:
                raise HardenError(f"{self.what} could not be read ({e}).") from None
        return self._convert(np.asarray(self._base[idx]))

    def _convert(self, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class PixelView(RowView):
    """uint8 N x H x W x C rows of images saved channels first or as floats / wider integers."""

    def __init__(self, base: Any, first: bool, scale: float, what: str):
        super().__init__(base, what)
        self.first, self.scale = first, scale
        n, *rest = base.shape
        self.shape = (n, rest[1], rest[2], rest[0]) if first else (n, *rest)

    def _convert(self, a: np.ndarray) -> np.ndarray:
        if self.first:
            a = np.moveaxis(a, -3, -1)
        if self.scale != 1.0 or a.dtype != np.uint8:
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
            if not (np.isfinite(lo) and np.isfinite(hi)):  # min and max carry a NaN or an infinity
                raise HardenError(non_finite(self.what, a))
            if lo < 0 or hi * self.scale > 255.5:
                raise HardenError(f"{self.what} holds values from {lo:.4g} to {hi:.4g} in rows its first rows did "
                                  f"not show (they were pixels {'in [0, 1]' if self.scale != 1 else 'of 0-255'}); "
                                  "save the images as uint8 0-255.")
            a = np.rint(a * self.scale).clip(0, 255).astype(np.uint8)
        return a


class RowsOf(RowView):
    """Rows `idx` of `base` (a split held out of arrays that have one): read as a run indexes them, never copied."""

    def __init__(self, base: Any, idx: np.ndarray, what: str):
        super().__init__(base, what)
        self.idx = np.asarray(idx, dtype=np.int64)
        self.shape = (len(self.idx), *base.shape[1:])

    def __getitem__(self, idx) -> np.ndarray:
        rows = self.idx[idx]
        if isinstance(self._base, RowView) or np.ndim(rows) == 0:
            return np.asarray(self._base[rows])
        order = np.argsort(rows, kind="stable")  # a memory map reads sorted rows in one pass
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        out[order] = np.asarray(self._base[rows[order]])
        return out

    def _convert(self, a: np.ndarray) -> np.ndarray:
        return a


def convert_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """uint8 ... x C rows as `channels` channels, as PIL's convert gives an image file to a model of that many (so
    arrays and files read alike): grey replicated ('RGB'), luminance by ITU-R 601-2 in PIL's integer arithmetic
    ('L'), alpha dropped ('RGB' of RGBA) or opaque ('RGBA' of RGB)."""
    c = a.shape[-1]
    if c == channels:
        return a
    if channels == 1:
        w = a[..., :3].astype(np.uint32) if c >= 3 else None
        if w is None:
            raise HardenError(f"cannot give {c}-channel images one channel")
        return ((w[..., 0] * 19595 + w[..., 1] * 38470 + w[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)[..., None]
    rgb = np.repeat(a, 3, axis=-1) if c == 1 else a[..., :3]
    if channels == 3:
        return rgb
    if channels == 4:
        return np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    raise HardenError(f"cannot give {c}-channel images {channels} channels")


CHANNEL_NOTES = {(1, 3): "grey images replicated to 3 channels", (1, 4): "grey images as RGBA, opaque",
                 (3, 1): "colour images as grey (ITU-R 601-2 luminance)", (4, 1): "RGBA images as grey (luminance)",
                 (4, 3): "RGBA images as RGB (alpha dropped)", (3, 4): "RGB images as RGBA, opaque"}


class ChannelView(RowView):
    """uint8 N x H x W x C rows of `base` with `channels` channels (convert_channels): arrays fed to a model of
    another channel count, as files are."""

    def __init__(self, base: Any, channels: int, what: str):
        super().__init__(base, what)
        self.channels, self.source_chans = channels, int(base.shape[-1])
        self.shape = (*base.shape[:-1], channels)

    def _convert(self, a: np.ndarray) -> np.ndarray:
        return convert_channels(a, self.channels)


def _roughness(img: np.ndarray) -> float:
    """Mean step between neighbouring pixels of k x H x W x C images: small where the reading is the true one."""
    return float(np.abs(np.diff(img, axis=1)).mean() + np.abs(np.diff(img, axis=2)).mean())


def unflattened(x: Any, what: str) -> Any:
    """Rows of flattened images (N x D) as images: D = s*s a grey s x s image (MNIST as scikit-learn's fetch_openml
    and many loaders keep it); D = 3*s*s an RGB one, either planar (all red, then green, then blue: CIFAR's python
    batches, Downsampled ImageNet) or interleaved (an N x s x s x 3 array flattened), decided by which reading makes
    neighbouring pixels alike (planar where they tie). Anything else is returned as it is (the caller refuses it).
    Arrays and deferred or lazy rows are reshaped, never read whole."""
    import math
    n, d = x.shape
    side = math.isqrt(d)
    if side * side == d and side >= 4:
        return x.reshape((n, side, side))
    side = math.isqrt(d // 3)
    if d % 3 or 3 * side * side != d or side < 4:
        return x
    sample = np.asarray((x.load() if isinstance(x, DeferredArray) else x)[:64]).astype(np.float32)
    planar = sample.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    interleaved = sample.reshape(-1, side, side, 3)
    if len(sample) and _roughness(interleaved) < 0.9 * _roughness(planar):
        from ..runtime import info
        info(f"{what}: rows of {d} values read as {side}x{side} RGB images, interleaved (each pixel's red, green and "
             "blue together, an N x H x W x 3 array flattened): that reading makes neighbouring pixels alike")
        return x.reshape((n, side, side, 3))
    return x.reshape((n, 3, side, side))


def non_finite(what: str, a: np.ndarray, rows: bool = True) -> str:
    """The refusal of images with NaN or infinite values (cast to uint8 they became arbitrary pixels, silently);
    `rows`: `a` holds several images (else one)."""
    bad = ~np.isfinite(a)
    where = ""
    if rows:
        hit = np.unique(np.nonzero(bad.reshape(len(a), -1))[0])
        where = f", in {len(hit):,} image(s) (the first: row {int(hit[0])} of those read)"
    return (f"{what} holds {int(bad.sum()):,} NaN or infinite value(s){where}: pixels are finite numbers, uint8 0-255 "
            "or floats in [0, 1]. Drop or repair those images.")


def as_pixels(x: Any, what: str, like: PixelView | None = None) -> Any:
    """x as uint8 N x H x W x C rows: itself when it is that already (a DeferredArray stays deferred), else a
    PixelView. Refuses normalised images. `like`: the view of the other split, whose value range a deferred array
    of the same type takes instead of being inflated to find its own (rows read later are checked all the same)."""
    first = channels_first(tuple(x.shape))
    if x.dtype == np.uint8 and not first:
        return x
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise HardenError(f"{what} is {x.dtype}; harden reads pixels as uint8 0-255, or floats in [0, 1].")
    scale = 1.0
    if x.dtype != np.uint8 and isinstance(x, DeferredArray) and like is not None and like._base.dtype == x.dtype:
        scale = like.scale
    elif x.dtype != np.uint8:
        sample = np.asarray((x.load() if isinstance(x, DeferredArray) else x)[:_SAMPLE_ROWS])
        lo, hi = (float(sample.min()), float(sample.max())) if sample.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise HardenError(non_finite(what, sample))
        if lo < 0 or hi > 255:
            raise HardenError(f"{what} holds values from {lo:.4g} to {hi:.4g}: normalised images, not pixels. "
                              "harden takes pixels (uint8 0-255, or floats in [0, 1]) and normalises inside the "
                              "model (--mean, --std); save the images before normalisation.")
        scale = 255.0 if np.issubdtype(x.dtype, np.floating) and hi <= 1.0 else 1.0
    return PixelView(x, first, scale, what)
