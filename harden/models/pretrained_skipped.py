"""Pretrained weights a network's own constructor fetches, not fetched: the checkpoint supplies every weight.

Fine-tuning code builds its network from downloaded weights inside its constructor: torchvision's
`models.resnet18(pretrained=True)` or `weights=ResNet18_Weights.IMAGENET1K_V1`, `timm.create_model(name,
pretrained=True, num_classes=0)`, torch.hub's `model_zoo.load_url(url)` (as Cadene's pretrainedmodels calls it). With
no network (a CI runner) and nothing in torch's or the hub's cache, that build raised, though the strict load that
follows replaces each of those tensors with the checkpoint's. While harden builds an architecture of one's own, torch
hub's loader returns an empty stand-in that `load_state_dict` takes as nothing to load, and timm's `load_pretrained`
does nothing; what was skipped is counted for the load notes. A file that lacks tensors the download would have
given (a checkpoint of the new head alone) is still refused by the strict load, which names them."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

_skipped: list[str] = []  # what was not fetched, in this process


class _NotFetched(dict):
    """What torch hub's loader returns instead of the weights at `url`."""

    def __init__(self, url: str):
        super().__init__()
        self.url = url


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
    loader = nn.Module.load_state_dict

    def load_state_dict(self: nn.Module, state_dict: Any, *args: Any, **kwargs: Any):
        if isinstance(state_dict, _NotFetched):
            return _IncompatibleKeys([], [])
        return loader(self, state_dict, *args, **kwargs)
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in swaps]
    try:
        for obj, name, stand_in in swaps:
            setattr(obj, name, stand_in)
        nn.Module.load_state_dict = load_state_dict
        yield
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)
        nn.Module.load_state_dict = loader


def skipped() -> list[str]:
    """What has not been fetched so far in this process, in order."""
    return list(_skipped)
