"""torch.distributed.checkpoint (DCP) folders as checkpoints: what `dcp.save(state_dict, checkpoint_id=folder)` leaves
(FSDP's and torchtitan's sharded checkpoints; `.metadata` beside `__0_0.distcp`, ...), read in one process as
torch.load reads a file: the saved dict, nested as it was saved, its tensors whole.

Read safely, as every checkpoint is: the `.metadata` pickle through an unpickler that builds only DCP's own metadata
records, torch's sizes, dtypes and layouts and paths (torch's reader unpickles it whole); the tensors through DCP's
reader, which reads each with torch.load(weights_only=True); the non-tensor values DCP keeps as pickled bytes (a step
count, a scheduler's state) are left unread, since unpickling them could run code and weights never need them."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .errors import HardenError

METADATA = ".metadata"
SHARD_EXT = ".distcp"
_DCP_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
_PATHS = ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")


def is_dcp_folder(path: Path) -> bool:
    if not path.is_dir() or not (path / METADATA).is_file():
        return False
    try:
        return any(e.name.endswith(SHARD_EXT) for e in os.scandir(path))
    except OSError:
        return False


class _MetadataUnpickler(pickle.Unpickler):
    """DCP's metadata records and torch's plain values; any other global is refused, named."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _DCP_MODULES and not name.startswith("__"):
            import importlib
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type):  # a record class or an enum, never a function
                return found
        if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            return getattr(torch, name)
        if (module, name) == ("torch.serialization", "_get_layout"):  # a layout by its name
            from torch.serialization import _get_layout
            return _get_layout
        if module == "pathlib" and name in _PATHS:
            import pathlib
            return getattr(pathlib, name)
        if (module, name) == ("collections", "OrderedDict"):
            from collections import OrderedDict
            return OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not among the metadata records harden reads")


def _metadata(path: Path):
    try:
        with open(path / METADATA, "rb") as f:
            return _MetadataUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError, OSError) as e:
        raise HardenError(f"{str(path)!r} is a torch.distributed.checkpoint folder whose {METADATA} does not read "
                          f"({type(e).__name__}: {e}).") from None


def read_dcp(path: Path) -> dict[str, Any]:
    """The checkpoint's tensors, nested as they were saved (DCP flattens nested dicts; its planner data says how)."""
    try:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    except ImportError as e:
        raise HardenError(f"{str(path)!r} is a torch.distributed.checkpoint folder, and this torch has no "
                          f"torch.distributed ({e}): convert it where it has (torch.distributed.checkpoint."
                          "format_utils.dcp_to_torch_save) and pass the file.") from None
    meta = _metadata(path)
    entries = getattr(meta, "state_dict_metadata", None)
    if not isinstance(entries, dict):
        raise HardenError(f"{str(path)!r}: its {METADATA} holds {type(meta).__name__}, not DCP's Metadata.")
    flat = {k: torch.empty(tuple(m.size), dtype=m.properties.dtype) for k, m in entries.items()
            if isinstance(m, TensorStorageMetadata)}
    if not flat:
        raise HardenError(f"{str(path)!r} is a torch.distributed.checkpoint folder without tensors.")

    class Reader(dcp.FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            return meta

    import warnings
    try:
        with warnings.catch_warnings():  # "torch.distributed is disabled ...: assuming a single process": so it is
            warnings.simplefilter("ignore")
            dcp.load(flat, storage_reader=Reader(str(path)), no_dist=True)
    except (OSError, RuntimeError, ValueError, KeyError, AssertionError, pickle.UnpicklingError) as e:
        raise HardenError(f"{str(path)!r}: its tensors do not read as torch.distributed.checkpoint wrote them "
                          f"({type(e).__name__}: {str(e)[:300]}). A shard missing or truncated?") from None
    paths = getattr(meta, "planner_data", None) or {}
    out: dict[str, Any] = {}
    for key, tensor in flat.items():
        where = paths.get(key, (key,))
        node = out
        for part in where[:-1]:
            node = node.setdefault(str(part), {})
            if not isinstance(node, dict):  # a list's index among the path: the flat name instead
                node, where = out, (key,)
                break
        node[str(where[-1])] = tensor
    return out
