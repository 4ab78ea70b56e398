"""Pretrained weights a network's own constructor fetches, not fetched: the checkpoint supplies every weight.

Fine-tuning code builds its network from downloaded weights inside its constructor: torchvision's
`models.resnet18(pretrained=True)` or `weights=ResNet18_Weights.IMAGENET1K_V1`, `timm.create_model(name,
pretrained=True, num_classes=0)`, torch.hub's `model_zoo.load_url(url)` (as Cadene's pretrainedmodels calls it). With
no network (a CI runner) and nothing in torch's or the hub's cache, that build raised, though the strict load that
follows replaces each of those tensors with the checkpoint's. While harden builds an architecture of one's own, torch
hub's loader returns an empty stand-in that `load_state_dict` takes as nothing to load, and timm's `load_pretrained`
does nothing; so does `torch.load` of a file the constructor reads that is not there (a self-supervised backbone
loaded from `./pretrained/backbone.pth`, as research code's constructors do); what was skipped is counted for the load
notes. A file that lacks tensors the download would have
given (a checkpoint of the new head alone) is still refused by the strict load, which names them."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

_skipped: list[str] = []  # what was not fetched, in this process


class _NotFetched(dict):
    """What torch hub's loader returns instead of the weights at `url` (and torch.load instead of a file the
    constructor reads that is not there): empty, and itself under any key, as code unwraps a checkpoint
    (`torch.load(path)['state_dict']`, `.get('model', ckpt)`)."""

    def __init__(self, url: str):
        super().__init__()
        self.url = url

    def __missing__(self, key: Any) -> "_NotFetched":
        return self

    def get(self, key: Any, default: Any = None) -> "_NotFetched":
        return self


def _hub_stand_in(url: str, *args: Any, **kwargs: Any) -> _NotFetched:
    _skipped.append(str(url).rsplit("/", 1)[-1])
    return _NotFetched(str(url))


def _timm_stand_in(model: nn.Module, pretrained_cfg: Any = None, *args: Any, **kwargs: Any) -> None:
    cfg = pretrained_cfg if isinstance(pretrained_cfg, dict) else getattr(pretrained_cfg, "__dict__", {}) or {}
    _skipped.append(f"timm's {cfg.get('architecture') or type(model).__name__} weights")


@contextlib.contextmanager
def pretrained_not_fetched() -> Iterator[None]:
    """While a user's constructor runs: torch hub's loader (and torchvision's and timm's use of it, where those are
    imported) fetches nothing."""
    import torch.hub
    import torch.utils.model_zoo
    swaps: list[tuple[Any, str, Any]] = [(torch.hub, "load_state_dict_from_url", _hub_stand_in),
                                         (torch.utils.model_zoo, "load_url", _hub_stand_in)]
    api = sys.modules.get("torchvision.models._api")  # torchvision's weights enums call their own binding of it
    if api is not None and hasattr(api, "load_state_dict_from_url"):
        swaps.append((api, "load_state_dict_from_url", _hub_stand_in))
    builder = sys.modules.get("timm.models._builder")
    if builder is not None and hasattr(builder, "load_pretrained"):
        swaps.append((builder, "load_pretrained", _timm_stand_in))
    loader, reader = nn.Module.load_state_dict, torch.load
    missed = [0]  # files the constructor reads that are not here, in this build

    def read(f: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(f, (str, os.PathLike)) and not os.path.exists(f):
            missed[0] += 1
            _skipped.append(f"{os.path.basename(os.fspath(f))}, a file it reads, absent here")
            return _NotFetched(os.fspath(f))
        return reader(f, *args, **kwargs)

    def load_state_dict(self: nn.Module, state_dict: Any, *args: Any, **kwargs: Any):
        # the stand-in, or what code made of it (`{k.replace('module.', ''): v for k, v in ckpt.items()}`: empty)
        if isinstance(state_dict, _NotFetched) or (missed[0] and hasattr(state_dict, "keys") and not len(state_dict)):
            return _IncompatibleKeys([], [])
        return loader(self, state_dict, *args, **kwargs)
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in swaps]
    try:
        for obj, name, stand_in in swaps:
            setattr(obj, name, stand_in)
        nn.Module.load_state_dict, torch.load = load_state_dict, read
        yield
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)
        nn.Module.load_state_dict, torch.load = loader, reader


def skipped() -> list[str]:
    """What has not been fetched so far in this process, in order."""
    return list(_skipped)
