"""Models pruned with torch.nn.utils.prune, as their state dicts hold them: `conv.weight_orig` and `conv.weight_mask`
in place of `conv.weight` (the weight the model uses is their product, made by a forward pre-hook). The architecture
a user gives is the unpruned one, so the masks are put back on it (prune.custom_from_mask) before the weights load:
the model answers as it did, `fix` trains it with the pruned weights held at zero (their gradient goes through the
mask), and what harden writes keeps the same two tensors. An export bakes the product (reparametrized.baked)."""
from __future__ import annotations

import torch
from torch import nn

ORIG, MASK = "_orig", "_mask"


def _module_for(path: str, modules: dict[str, nn.Module]) -> str | None:
    """The module a file's key path names, allowing for a prefix on either side (DataParallel's `module.`)."""
    if path in modules:
        return path
    hits = [m for m in modules if m and (path.endswith("." + m) or m.endswith("." + path))]
    return hits[0] if len(hits) == 1 else None


def prune_as_saved(net: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Applies each pruning mask the file holds (an `X_mask` beside an `X_orig`) to the architecture's parameter X
    where it is not pruned already; returns the load notes (empty where none)."""
    from torch.nn.utils import prune
    modules = dict(net.named_modules())
    done = []
    for key in [k for k in state if k.endswith(MASK) and k[:-len(MASK)] + ORIG in state]:
        path, _, name = key[:-len(MASK)].rpartition(".")
        found = _module_for(path, modules)
        module = modules.get(found) if found is not None else None
        if module is None or isinstance(getattr(module, name + ORIG, None), nn.Parameter):
            continue
        param = module._parameters.get(name)
        if param is None or param.shape != state[key].shape:
            continue
        prune.custom_from_mask(module, name, state[key].to(param.device))
        done.append(f"{found}.{name}" if found else name)
    if not done:
        return []
    return [f"pruned as saved: the masks of {len(done)} weight(s) ({done[0]}, ...) put back on the architecture "
            "(torch.nn.utils.prune): pruned weights stay zero in training, and what harden writes keeps the masks"]
