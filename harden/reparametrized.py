"""Weights computed from other tensors at every forward pass: torch's parametrizations (spectral_norm, weight_norm,
orthogonal, and any registered with torch.nn.utils.parametrize), the older hooks of torch.nn.utils.spectral_norm
and weight_norm, as Lipschitz-constrained and certified-robustness code writes its layers, and torch.nn.utils.prune's
masks (pruned.py).

An exported graph takes the weights as the model uses them, as constants: spectral norm's power iteration (vdot)
has no ONNX operator, and a deployed graph would otherwise recompute at every call what does not change."""
from __future__ import annotations

import copy

import torch
from torch import nn


def _old_hooks(module: nn.Module) -> list:
    """The forward pre-hooks that compute a weight: spectral_norm's and weight_norm's, and torch.nn.utils.prune's
    (weight = weight_orig * weight_mask; pruned.py)."""
    from torch.nn.utils.prune import BasePruningMethod
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm
    return [h for h in module._forward_pre_hooks.values() if isinstance(h, (SpectralNorm, WeightNorm,
                                                                            BasePruningMethod))]


def reparametrized(model: nn.Module) -> list[str]:
    """The names of the modules whose weights are computed (empty: none)."""
    from torch.nn.utils import parametrize
    return [name for name, m in model.named_modules() if parametrize.is_parametrized(m) or _old_hooks(m)]


def settled(model: nn.Module) -> nn.Module:
    """`model`, its old-style hooks' weights recomputed without a graph: after a forward pass with gradients such a
    weight is a graph's output, which deepcopy refuses (torch's "Only Tensors created explicitly by the user"). The
    values are those the next forward pass in the same mode computes (no power iteration outside training)."""
    with torch.no_grad():
        for m in model.modules():
            for hook in _old_hooks(m):
                hook(m, None)
    return model


def copy_module(model: nn.Module) -> nn.Module:
    """copy.deepcopy of a model that may hold old-style hooks' weights from a forward pass with gradients."""
    return copy.deepcopy(settled(model))


def baked(model: nn.Module) -> nn.Module:
    """`model` itself where nothing is reparametrized, else an eval-mode copy whose computed weights are plain
    parameters of the values the model uses in evaluation (spectral norm without its power iteration step)."""
    if not reparametrized(model):
        return model
    from torch.nn.utils import parametrize, prune, remove_spectral_norm, remove_weight_norm
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm
    was_training = model.training
    model.eval()  # the copy's values are evaluation's (and deepcopy leaves the original's mode as it was)
    try:
        out = copy_module(model).eval()
    finally:
        model.train(was_training)
    for name, m in list(out.named_modules()):
        if parametrize.is_parametrized(m):
            _replace(out, name, _plain(m))
        for hook in _old_hooks(m):  # these keep their state on the instance: removed from the copy's own
            if isinstance(hook, SpectralNorm):
                remove_spectral_norm(m, hook.name)
            elif isinstance(hook, WeightNorm):
                remove_weight_norm(m, hook.name)
            else:  # a pruning container or method: weight_orig * weight_mask made a plain weight
                prune.remove(m, hook._tensor_name)
    return out


def _plain(m: nn.Module) -> nn.Module:
    """A parametrized module as an instance of the class it was made from, its computed tensors as parameters.
    Not parametrize.remove_parametrizations: a deepcopy shares its original's generated class, and removing deletes
    the property from that class, which breaks the original."""
    cls = type(m).__bases__[0]  # parametrize made type("Parametrized<Name>", (<Name>,), ...)
    new = cls.__new__(cls)
    new.__dict__.update(m.__dict__)
    new._parameters, new._buffers = dict(m._parameters), dict(m._buffers)
    new._modules = {k: v for k, v in m._modules.items() if k != "parametrizations"}
    with torch.no_grad():
        for key in m.parametrizations:
            new._parameters[key] = nn.Parameter(getattr(m, key).detach().clone(), requires_grad=False)
    return new


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    if not name:
        raise ValueError("the model itself is parametrized")  # a Linear given as the whole model; not a classifier
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent), child, module)
