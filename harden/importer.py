"""`harden import`: a checkpoint that harden did not write (any container, any key prefix, a file-defined
architecture) loaded strictly once and written as a harden .safetensors whose metadata says everything later
commands need (arch, classes, channels, input size, mean/std, data, the source file's sha256)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoint import load, save, sha256_file
from .models import Classifier


def import_checkpoint(src: str | os.PathLike, out: str | os.PathLike, *, model_flags: dict[str, Any] | None = None,
                      data: str | None = None, force: bool = False) -> Classifier:
    flags = dict(model_flags or {})
    model = load(src, **flags)  # a file-defined architecture is saved by absolute path (checkpoint.remembered_arch)
    if data:
        model.spec.data = data
    model.spec.extra["imported_from"] = {"file": Path(src).name, "sha256": sha256_file(src),
                                         **({"key": flags["key"]} if flags.get("key") else {})}
    save(model, out, force=force, inputs=[src])
    return model
