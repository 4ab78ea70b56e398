"""Images saved one array a file (`np.save(f"{cls}/{i}.npy", img)`, `np.savez_compressed(f"{cls}/{i}.npz",
image=img)`, `torch.save(tensor, f"{cls}/{i}.pt")`; in class folders, a list, an archive): read as an .npz of the same
images would be (pixels.py's rules), then as any decoded image. An .npz is read without pickles, a .pt with
torch.load(weights_only=True); either holds one array, or one named as an image (image, img, x, data, ...). A lone file
cannot say whether its floats are in [0, 1] or 0-255 (a dark image in 0-255 can stay below 1), so a listing's float
arrays are judged together, on a spread sample of its files: any value above 1 there makes them 0-255. Each file is
checked against that judgement when it is read, and one that breaks it is named as unreadable (as a truncated JPEG
is)."""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..errors import HardenError
from .pixels import channels_first

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"  # an .npz, and torch.save's zip format
ARRAY_EXT = (".npy", ".npz", ".pt")
SAMPLE_FILES = 32  # files read to judge a listing's float range
ONE_IMAGE_BYTES = 1 << 26  # an .npz or .pt larger than this is a dataset's arrays, not one image
IMAGE_KEYS = ("image", "img", "x", "data", "pixels", "input", "arr_0")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def is_array(data: bytes) -> bool:
    """Whether a file's bytes are an array file's: .npy by its magic; an .npz or a torch zip by their zip's first
    member (`x.npy`, `archive/data.pkl`)."""
    if data[:len(NPY_MAGIC)] == NPY_MAGIC:
        return True
    if data[:4] != ZIP_MAGIC or len(data) < 30:
        return False
    name_length = int.from_bytes(data[26:28], "little")
    first = data[30:30 + name_length]
    return first.endswith(b".npy") or first.endswith(b"data.pkl") or b"/" in first and first.split(b"/")[-1] in (
        b"data.pkl", b"byteorder", b".format_version", b"version")


def npy_bytes(raw: bytes, shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """Raw pixels as the bytes of an .npy file of them: what read_array reads back, and a source hands on for an
    image stored as bare pixels (FFCV's raw images, MDS's pil and ndarray columns)."""
    if len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{len(raw)} bytes of raw pixels for an image of {' x '.join(map(str, shape))}")
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                               "shape": tuple(shape)})
    return out.getvalue() + raw


def _chosen(arrays: dict[str, Any], what: str) -> Any:
    """The one array of a file holding several: the only one, else the one named as an image."""
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    named = [k for k in IMAGE_KEYS if k in arrays] + [k for k in arrays if k.lower() in IMAGE_KEYS]
    if named:
        return arrays[named[0]]
    raise ValueError(f"{what} holding {len(arrays)} arrays ({', '.join(list(arrays)[:6])}), none named as an image "
                     f"({', '.join(IMAGE_KEYS[:5])}, ...)")


def read_array(data: bytes) -> np.ndarray:
    """The array of an .npy, .npz or .pt file's bytes (never a pickle: object arrays are refused, torch files read
    with weights_only=True)."""
    if data[:4] == ZIP_MAGIC and not data[:len(NPY_MAGIC)] == NPY_MAGIC:
        import zipfile
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile as e:
            raise ValueError(f"a damaged zip ({e})") from None
        if not any(n.endswith("data.pkl") for n in names):
            try:
                with np.load(io.BytesIO(data), allow_pickle=False) as z:
                    return np.asarray(_chosen({k: z[k] for k in z.files}, "an .npz"))
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise ValueError("an .npz of Python objects, not of pixels (harden never loads pickles from "
                                     "data)") from None
                raise
        import pickle

        import torch
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, EOFError) as e:
            raise ValueError(f"a torch file torch.load(weights_only=True) does not read ({str(e).splitlines()[0][:160]})"
                             ) from None
        if isinstance(obj, dict):
            obj = _chosen({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)} or obj, "a torch file")
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"a torch file holding {type(obj).__name__}, not an image tensor")
        return obj.detach().cpu().float().numpy() if obj.dtype in (torch.bfloat16, torch.float16) else \
            obj.detach().cpu().numpy()
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError("an .npy of Python objects, not of pixels (harden never loads pickles from data)") from None
        raise


def as_height_width_channels(a: np.ndarray) -> np.ndarray:
    """H x W x C (C 1, 3 or 4) from H x W, H x W x C or C x H x W (told apart as pixels.channels_first does)."""
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3 and channels_first((1, *a.shape)):
        return np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] in _MODES:
        return a
    raise ValueError(f"an array of shape {tuple(a.shape)}, not an image (H x W, H x W x C or C x H x W with C 1, 3 "
                     "or 4)")


def npy_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """An .npy file's shape and dtype from its header (nothing else is read); OSError or ValueError where it is none."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            major, _ = fmt.read_magic(f)
            shape, _, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(f)
    except SyntaxError as e:  # a header whose dict does not parse
        raise ValueError(str(e)) from None
    return tuple(shape), dtype


def is_one_image(shape: tuple[int, ...]) -> bool:
    """Whether an array of this shape is one image (H x W, H x W x C or C x H x W) as as_height_width_channels reads it."""
    try:
        as_height_width_channels(np.broadcast_to(np.zeros((), np.uint8), shape))  # a view: nothing allocated
    except ValueError:
        return False
    return True


def holds_one_image(path: str) -> bool:
    """Whether an array file holds one image, not a dataset's array of them (CIFAR-10-C's `fog.npy`, N x H x W x C):
    an .npy by its header alone; a small .npz or .pt by its array."""
    try:
        if not path.lower().endswith(".npy"):
            import os
            if os.path.getsize(path) > ONE_IMAGE_BYTES:
                return False
            with open(path, "rb") as f:
                a = read_array(f.read())
            return is_one_image(a.shape) and a.dtype.kind in "uif"
        shape, dtype = npy_header(path)
    except (OSError, ValueError, HardenError):
        return False
    return is_one_image(shape) and dtype.kind in "uif"


def _range(a: np.ndarray) -> tuple[float, float]:
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"an array of {a.dtype}; harden reads pixels as uint8 0-255, or floats in [0, 1]")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("an array holding NaN or infinite values")
    return lo, hi


def float_scale(listing: Any) -> float:
    """What a listing's float arrays are multiplied by to give 0-255 pixels (255: in [0, 1]; 1: in 0-255), judged on a
    spread sample of its files, once per listing and process (the same files, so every process judges alike)."""
    scale = getattr(listing, "array_scale", None)
    if scale is not None:
        return scale
    n = len(listing)
    highest = None
    for i in sorted({int(i) for i in np.linspace(0, n - 1, min(n, SAMPLE_FILES))}) if n else []:
        try:
            data = listing.read_bytes(i)
            if not is_array(data):
                continue
            a = read_array(data)
            if np.issubdtype(a.dtype, np.floating) and a.size:
                hi = _range(a)[1]
                highest = hi if highest is None else max(highest, hi)
        except (OSError, ValueError, HardenError):  # an unreadable file is named when a run reads it
            continue
    scale = 255.0 if highest is None or highest <= 1.0 else 1.0
    listing.array_scale = scale
    return scale


def array_image(a: np.ndarray, scale: float):
    """A PIL image (L, RGB or RGBA) of one image array, its values checked: pixels, never normalised values."""
    from PIL import Image
    layout = "H x W" if a.ndim == 2 else "C x H x W" if channels_first((1, *a.shape)) else "H x W x C"
    floats = np.issubdtype(a.dtype, np.floating)
    saved_as = f"{a.dtype} {layout}" + (f", read as {'[0, 1]' if scale != 1 else '0-255'}" if floats else "")
    a = as_height_width_channels(a)
    lo, hi = _range(a)
    if a.dtype != np.uint8:
        s = scale if floats else 1.0
        if lo < 0 or hi * s > 255.5:
            if not floats:
                raise ValueError(f"integers from {lo:.6g} to {hi:.6g}: not 8-bit pixels (16-bit scans are saved "
                                 "as uint8 the way the model's training scaled them)")
            raise ValueError(f"values from {lo:.4g} to {hi:.4g}, where the sampled files of this data held "
                             f"{'pixels in [0, 1]' if s != 1 else 'pixels of 0-255'}: normalised images are refused, "
                             "since budgets are in pixels and the model normalises inside (--mean, --std)")
        a = np.rint(a * s).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(a[:, :, 0] if a.shape[-1] == 1 else a), _MODES[a.shape[-1]])
    img.format = "NPY"  # what `harden data` says the files are, with how they were saved and read
    img.info["array"] = saved_as
    return img


def open_image(data: bytes, listing: Any = None):
    """The image of a file's bytes: Pillow's, or an .npy array's (its float range judged over `listing`)."""
    from PIL import Image
    if is_array(data):
        return array_image(read_array(data), float_scale(listing) if listing is not None else 255.0)
    return Image.open(io.BytesIO(data))
