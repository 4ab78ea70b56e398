"""A state dict saved in shards, as Hugging Face's tools save any model's weights beyond a size
(`huggingface_hub.save_torch_state_dict`, accelerate's `save_model`, `save_pretrained` of a large model):
`model-00001-of-00004.safetensors` ... beside `model.safetensors.index.json` (its `weight_map`: each tensor's shard),
or the `pytorch_model-0000k-of-0000n.bin` files of the same layout. Given the folder (without the config.json of a hub
folder), the index, or any one shard, the whole set is read as one state dict: one shard alone holds a part of the
model, and a load from it would fail on the missing layers or, worse, name them as the error."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import HardenError

INDEX_SUFFIX = ".index.json"
SHARD = re.compile(r"(?P<stem>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.(?P<ext>safetensors|bin|pt|pth)$")


def _weight_map(index: Path) -> dict[str, str] | None:
    try:
        found = json.loads(index.read_text()).get("weight_map")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, dict) and found and all(isinstance(v, str) for v in found.values()) else None


def _indices(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.is_file() and e.name.endswith(INDEX_SUFFIX)
                      and _weight_map(Path(e.path)) is not None)
    except OSError:
        return []


def shard_set(path: Path) -> tuple[list[Path], Path | None] | None:
    """(the shards, their index or None) that `path` gives: a folder holding one index (and no hub config), the index
    itself, or one shard (its index beside it, else its siblings by their `-of-0000n` names); None otherwise."""
    if path.is_dir():
        if (path / "config.json").is_file():
            return None  # a hub folder: its own reader knows its shards
        found = _indices(path)
        if len(found) > 1:
            raise HardenError(f"{str(path)!r} holds {len(found)} shard indices ({', '.join(f.name for f in found)}): "
                              "give the index of the weights to read.")
        return (_from_index(found[0]), found[0]) if found else None
    if path.name.endswith(INDEX_SUFFIX) and path.is_file():
        return (_from_index(path), path) if _weight_map(path) is not None else None
    m = SHARD.match(path.name)
    if m is None or not path.is_file():
        return None
    for index in _indices(path.parent):
        shards = _from_index(index)
        if path in shards:
            return shards, index
    n = int(m["n"])
    siblings = [path.with_name(f"{m['stem']}-{k:05d}-of-{m['n']}.{m['ext']}") for k in range(1, n + 1)]
    missing = [s.name for s in siblings if not s.is_file()]
    if missing:
        raise HardenError(f"{str(path)!r} is shard {int(m['k'])} of {n}, and {', '.join(missing[:3])}"
                          f"{' ...' if len(missing) > 3 else ''} {'is' if len(missing) == 1 else 'are'} not beside it: "
                          "one shard holds a part of the model's weights; put the whole set in one folder.")
    return siblings, None


def _from_index(index: Path) -> list[Path]:
    names = sorted(set((_weight_map(index) or {}).values()))
    shards = [index.parent / n for n in names]
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise HardenError(f"{str(index)!r} names {len(shards)} shards, and {', '.join(missing[:3])}"
                          f"{' ...' if len(missing) > 3 else ''} {'is' if len(missing) == 1 else 'are'} missing beside "
                          "it.")
    return shards


def read_shards(shards: list[Path], index: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One state dict of every shard (each read as harden reads a weights file), checked against the index's map."""
    from .checkpoint import read_checkpoint
    from .runtime import info
    state: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for shard in shards:
        part, part_meta = read_checkpoint(shard, shard_alone=True)
        repeated = sorted(set(part) & set(state))
        if repeated:
            raise HardenError(f"{str(shard)!r} holds {repeated[0]}, which an earlier shard holds too: shards of two "
                              "saves mixed?")
        state.update(part)
        meta = meta or part_meta
    weight_map = _weight_map(index) if index is not None else None
    if weight_map is not None:
        wrong = [k for k, f in weight_map.items() if k not in state]
        if wrong:
            raise HardenError(f"{str(index)!r} maps {wrong[0]} to {weight_map[wrong[0]]}, which does not hold it"
                              + (f" ({len(wrong)} such tensors)" if len(wrong) > 1 else "") + ".")
    info(f"weights read from {len(shards)} shards ({shards[0].name} ... {shards[-1].name})"
         + (f" along {index.name}" if index is not None else ""))
    return state, meta


def digest_parts(shards: list[Path], index: Path | None) -> list[Path]:
    """The files whose digests make the sharded model's sha256."""
    return ([index] if index is not None else []) + shards
