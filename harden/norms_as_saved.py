"""Weight norm and spectral norm as a state dict holds them, put back on an architecture built without them.

Training code often builds a stock network and wraps its layers afterwards (`model.apply(add_spectral_norm)`, as
Lipschitz-constrained and certified-robustness code does), so the file holds `conv.weight_g` and `conv.weight_v`,
`fc.weight_orig`, `fc.weight_u` and `fc.weight_v`, or `parametrizations.weight.original0/1`, where the architecture
a user names (`torchvision.models:resnet18`, a timm name) has `conv.weight`. As with pruning masks (pruned.py), the
same reparametrization is applied to the architecture before the weights load: the model answers as saved, `fix`
trains it under its constraint, and what harden writes keeps the same tensors."""
from __future__ import annotations

import torch
from torch import nn

from .pruned import _module_for

PARAMETRIZED = ".parametrizations."


def _norm_dim(weight: torch.Tensor, g_shape: tuple) -> int | None | bool:
    """The `dim` weight_norm was applied with, read from the shape of its saved magnitude `g`; False where none fits."""
    for dim in [0, *range(1, weight.dim()), None]:
        if tuple(torch.norm_except_dim(weight, 2, -1 if dim is None else dim).shape) == g_shape:
            return dim
    return False


def _spectral_dim(module: nn.Module, weight: torch.Tensor, u_shape: tuple) -> int | None:
    """The `dim` spectral_norm was applied with (0; 1 for transposed convolutions), from its saved vector u."""
    first = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
    for dim in dict.fromkeys([first, *range(weight.dim())]):
        if weight.dim() > dim and (weight.shape[dim],) == u_shape:
            return dim
    return None


def _found(net_modules: dict[str, nn.Module], path: str, name: str) -> tuple[str, nn.Module] | None:
    """The module a saved key's path names, where it holds a plain parameter `name` to wrap."""
    found = _module_for(path, net_modules)
    module = net_modules.get(found) if found is not None else None
    if module is None or not isinstance(module._parameters.get(name), nn.Parameter):
        return None
    return found, module


def norms_as_saved(net: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Applies each weight norm and spectral norm the file holds to the architecture's plain parameter; returns the
    load notes (empty where none)."""
    from torch.nn.utils import parametrizations, spectral_norm, weight_norm
    modules = dict(net.named_modules())
    done: dict[str, list[str]] = {}
    for key in list(state):
        applied = None
        if key.endswith("_g") and key[:-2] + "_v" in state:  # weight_norm's hook: magnitude g, direction v
            path, _, name = key[:-2].rpartition(".")
            hit = _found(modules, path, name)
            if hit and (dim := _norm_dim(hit[1]._parameters[name], tuple(state[key].shape))) is not False:
                weight_norm(hit[1], name, -1 if dim is None else dim)
                applied = "weight norm", hit[0], name
        elif key.endswith("_orig") and key[:-5] + "_u" in state and key[:-5] + "_v" in state:  # spectral_norm's hook
            path, _, name = key[:-5].rpartition(".")
            hit = _found(modules, path, name)
            if hit and (dim := _spectral_dim(hit[1], hit[1]._parameters[name], tuple(state[key[:-5] + "_u"].shape))
                        ) is not None:
                spectral_norm(hit[1], name, dim=dim)
                applied = "spectral norm", hit[0], name
        elif PARAMETRIZED in key and key.endswith((".original0", ".original")):  # torch's parametrizations
            path, _, rest = key.partition(PARAMETRIZED)
            name = rest.rpartition(".")[0]
            base = f"{path}{PARAMETRIZED}{name}"
            hit = _found(modules, path, name)
            if hit is None:
                continue
            weight = hit[1]._parameters[name]
            if key.endswith(".original0") and base + ".original1" in state and \
                    (dim := _norm_dim(weight, tuple(state[key].shape))) is not False:
                parametrizations.weight_norm(hit[1], name, dim)
                applied = "weight norm", hit[0], name
            elif key.endswith(".original") and base + ".0._u" in state and \
                    (dim := _spectral_dim(hit[1], weight, tuple(state[base + ".0._u"].shape))) is not None:
                parametrizations.spectral_norm(hit[1], name, dim=dim)
                applied = "spectral norm", hit[0], name
        if applied:
            done.setdefault(applied[0], []).append(f"{applied[1]}.{applied[2]}" if applied[1] else applied[2])
    return [f"{kind} as saved: put back on {len(where)} weight(s) of the architecture ({where[0]}, ...; torch.nn.utils"
            f"), so the model answers as trained, `fix` trains under it and what harden writes keeps its tensors"
            for kind, where in done.items()]
