"""What a file is when it is not what its name says, by the bytes it starts with: real folders and repositories hold
Git LFS pointers (a repository cloned without `git lfs pull`), web pages saved under an image's or a checkpoint's name
(a download that got an error or sign-in page), documents. Said in the one-paragraph errors instead of a reader's
own words (Pillow's `cannot identify image file <_io.BytesIO object at 0x...>`, safetensors' "no valid header")."""
from __future__ import annotations

import re
from pathlib import Path

PAGE = "an HTML page (a download that saved an error or sign-in page)"
SIGNATURES = ((b"version https://git-lfs", None),  # said with the size it points to (lfs_pointer)
              (b"%PDF", "a PDF document"),
              (b"<svg", "an SVG drawing (vector graphics)"),
              (b"<!doctype html", PAGE),
              (b"<html", PAGE),
              (b"{", "a JSON document"))


# what no data file can be (a JSON document or an SVG may be a dataset's list or image)
NOT_DATA = ("a Git LFS pointer", "a PDF document", PAGE)


def lfs_pointer(head: bytes) -> str:
    """A Git LFS pointer, with the size of the file it stands for where it says one."""
    size = re.search(rb"\nsize (\d+)", head)
    of = f" to a file of {int(size.group(1)):,} bytes" if size else ""
    return f"a Git LFS pointer{of}, not the file itself: fetch it with `git lfs pull` in its repository"


def what_file_is(head: bytes) -> str | None:
    """What the first bytes of a file say it is, among SIGNATURES; None where they say none of them."""
    text = head[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for start, what in SIGNATURES:
        if text.startswith(start) or (start == b"<svg" and text.startswith(b"<?xml") and start in text):
            return what or lfs_pointer(head[:256])
    return None


def what_path_is(path: str | Path) -> str | None:
    """what_file_is for a file on disk (None where it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return what_file_is(f.read(256))
    except OSError:
        return None
