"""Structurally pruned networks (torch-pruning's, NNI's speed-up, a copy pruned by hand): the architecture's own layers
with fewer channels, saved as a state dict that holds every tensor of the architecture, some of them narrower. The
network is rebuilt as torch-pruning's own load rebuilds it from the attributes it saves: each such layer given the
file's shapes (a convolution's channels and groups, a linear layer's features, a normalisation's channels, a module's
own parameter such as a layer scale), nothing else changed. Only then may its forward fail (a width written into the
code, `x.view(-1, 512)`, an attention's head size), and the load's error stands."""
from __future__ import annotations

import torch
from torch import nn

NBT = "num_batches_tracked"


def _conv_counts(module: nn.modules.conv._ConvNd, shape: torch.Size) -> tuple[int, int, int] | None:
    """(in channels, out channels, groups) of a convolution whose weight has `shape`; None where its kernel differs
    or its groups cannot follow."""
    if tuple(shape[2:]) != tuple(module.kernel_size):
        return None
    old_in, old_out, groups = module.in_channels, module.out_channels, module.groups
    if module.transposed:  # weight: in x out / groups x kernel
        return int(shape[0]), int(shape[1] * groups), groups
    if groups == 1:
        return int(shape[1]), int(shape[0]), 1
    if old_in // groups == 1 and shape[1] == 1:  # depthwise: its groups follow its channels
        per_group = old_out // groups  # the channel multiplier (1 for MobileNet's)
        if shape[0] % per_group:
            return None
        return int(shape[0] // per_group), int(shape[0]), int(shape[0] // per_group)
    return int(shape[1] * groups), int(shape[0]), groups  # grouped (ResNeXt's): pruned within each group


def _resized(module: nn.Module, name: str, shape: torch.Size) -> None:
    old = getattr(module, name)
    fresh = torch.zeros(shape, dtype=old.dtype, device=old.device)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(fresh, requires_grad=old.requires_grad))
    else:
        module._buffers[name] = fresh


def narrowed(net: nn.Module, own: dict[str, torch.Tensor], fitted: dict[str, torch.Tensor]) -> list[str] | None:
    """Rebuilds `net`'s layers at the shapes of the file's tensors (`fitted`: its state with keys fitted to `own`,
    the network's own state) where the two hold the same tensors and differ only in sizes; returns one line per layer
    changed, or None (nothing changed) where the file is not such a pruning of the network."""
    if set(fitted) - set(own) or {k for k in own if k not in fitted and not k.endswith(NBT)}:
        return None
    differ = {k: fitted[k].shape for k in own if k in fitted and fitted[k].shape != own[k].shape}
    if not differ or any(len(shape) != own[k].dim() or any(f > o for f, o in zip(shape, own[k].shape, strict=True))
                         for k, shape in differ.items()):
        return None  # a wider tensor anywhere: another network (a width the user gave wrong), not a pruning
    modules = dict(net.named_modules())
    by_module: dict[str, dict[str, torch.Size]] = {}
    for key, shape in differ.items():
        path, _, name = key.rpartition(".")
        if path not in modules or name not in dict(modules[path].named_parameters(recurse=False)) and \
                name not in dict(modules[path].named_buffers(recurse=False)):
            return None
        by_module.setdefault(path, {})[name] = shape
    plan = [(modules[path], path, shapes) for path, shapes in by_module.items()]
    said: list[str] = []
    for module, _, shapes in plan:  # checked first, then set: a refusal leaves the network as it was
        if isinstance(module, nn.modules.conv._ConvNd) and "weight" in shapes and \
                _conv_counts(module, shapes["weight"]) is None:
            return None
        if isinstance(module, nn.GroupNorm) and next(iter(shapes.values()))[0] % module.num_groups:
            return None
    for module, path, shapes in plan:
        what = type(module).__name__
        if isinstance(module, nn.modules.conv._ConvNd) and "weight" in shapes:
            new_in, new_out, groups = _conv_counts(module, shapes["weight"])
            what += f" ({module.in_channels}->{new_in} in, {module.out_channels}->{new_out} out" + (
                f", groups {module.groups}->{groups})" if groups != module.groups else ")")
            module.in_channels, module.out_channels, module.groups = new_in, new_out, groups
        elif isinstance(module, nn.Linear) and "weight" in shapes:
            what += f" ({module.in_features}->{shapes['weight'][1]} in, {module.out_features}->{shapes['weight'][0]} out)"
            module.out_features, module.in_features = int(shapes["weight"][0]), int(shapes["weight"][1])
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            channels = int(next(iter(shapes.values()))[0])
            what += f" ({module.num_features}->{channels})"
            module.num_features = channels
        elif isinstance(module, nn.LayerNorm):
            new = tuple(int(v) for v in next(iter(shapes.values())))
            what += f" ({tuple(module.normalized_shape)}->{new})"
            module.normalized_shape = new
        elif isinstance(module, nn.GroupNorm):
            channels = int(next(iter(shapes.values()))[0])
            what += f" ({module.num_channels}->{channels})"
            module.num_channels = channels
        else:
            what += " (" + ", ".join(f"{n} {tuple(getattr(module, n).shape)}->{tuple(s)}" for n, s in shapes.items()) + ")"
        for name, shape in shapes.items():
            _resized(module, name, shape)
        said.append(f"{path}: {what}")
    return said
