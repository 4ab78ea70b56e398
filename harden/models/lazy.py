"""Lazy layers (torch's nn.LazyLinear, nn.LazyConv2d, nn.LazyBatchNorm2d, ...: d2l.ai writes its models with them)
take their input sizes from their first forward. harden's first forward is a probe at a size it may have assumed
(32 x 32, three channels), which would size them for that input and not for the file's weights. A network built to
load a file has its lazy layers sized from the file's tensors first, as `load_state_dict` sizes them; it then runs
only at the input its weights were trained at, which loading finds as for any network with a fixed flatten."""
from __future__ import annotations

import itertools
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy


def shape_lazy_layers(net: nn.Module, state: Mapping[str, Any], every: bool = False) -> bool:
    """Size `net`'s uninitialised lazy layers from the file's tensors (`state`, its keys as saved: a prefix such as
    `module.` is found), where each of them then holds the file's shapes (the last one's rows aside: a class count,
    which loading reads from the file's head as for any network); True where it sized any. torch's own lazy layers
    are initialised by their own code with the input features the file's weight implies, so their `in_features`,
    `in_channels` and `num_features` read as after a forward (`load_state_dict` leaves them 0, and SyncBatchNorm's
    conversion reads them); another lazy module's tensors are materialised at the file's shapes. Where a layer would
    not hold the file's shapes (a width the constructor was given wrong) or the file has no tensor for it, none is
    sized: the first forward sizes them, and loading then names what does not fit, as for any network. `every`
    (a meta-device build scored against the file, which runs no forward): every layer sized, from the file's tensors
    where it has them, so that its shapes can be compared."""
    layers = [m for m in net.modules() if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()]
    names = {id(m): name for name, m in net.named_modules()}
    plan = []
    for i, module in enumerate(layers):
        prefix = f"{names[id(module)]}." if names[id(module)] else ""
        lazy = {attr: _file_tensor(prefix + attr, state)
                for attr, t in itertools.chain(module._parameters.items(), module._buffers.items()) if is_lazy(t)}
        if any(t is None for t in lazy.values()):
            if not every:
                return False
            plan.append((module, None, {attr: torch.empty(0, device="meta") for attr in lazy}))
            continue
        features, shapes = _own_shapes(module, lazy)
        differ = [attr for attr, t in lazy.items() if shapes is not None and tuple(t.shape) != shapes.get(attr)]
        rows_only = i == len(layers) - 1 and all(tuple(lazy[a].shape[1:]) == shapes[a][1:] for a in differ)
        if differ and not every and not rows_only:
            return False
        plan.append((module, features, lazy))
    for module, features, lazy in plan:
        if features is not None:  # only the input's second dimension is read (on the meta device: no memory)
            module.initialize_parameters(torch.empty(1, features, *[1] * _spatial_dims(module), device="meta"))
        else:
            with torch.no_grad():
                for attr, t in lazy.items():
                    getattr(module, attr).materialize(tuple(t.shape))
    return bool(plan)


def _own_shapes(module: nn.Module, lazy: dict[str, Any]) -> tuple[int | None, dict[str, tuple[int, ...]] | None]:
    """(the input features the file's tensors imply for one of torch's lazy layers, the shapes its own code then
    gives each tensor); (None, None) for another lazy module, whose tensors take the file's shapes as they are."""
    weight = lazy.get("weight")
    if isinstance(module, nn.modules.conv._LazyConvXdMixin) and weight is not None and weight.ndim >= 3:
        out, groups, kernel = int(module.out_channels), int(module.groups), tuple(int(k) for k in module.kernel_size)
        if module.transposed:
            features = int(weight.shape[0])
            return features, {"weight": (features, out // groups, *kernel), "bias": (out,)}
        features = int(weight.shape[1]) * groups
        return features, {"weight": (out, features // groups, *kernel), "bias": (out,)}
    if isinstance(module, nn.LazyLinear) and weight is not None and weight.ndim == 2:
        out, features = int(module.out_features), int(weight.shape[1])
        return features, {"weight": (out, features), "bias": (out,)}
    if isinstance(module, nn.modules.batchnorm._LazyNormBase):
        first = next(iter(lazy.values()))
        if first.ndim == 1:
            return int(first.shape[0]), {attr: (int(first.shape[0]),) for attr in lazy}
    return None, None


def _spatial_dims(module: nn.Module) -> int:
    return len(module.kernel_size) if isinstance(module, nn.modules.conv._LazyConvXdMixin) else 0


def _file_tensor(key: str, state: Mapping[str, Any]) -> Any:
    """The file's tensor for the architecture's `key`: under that key, or under it behind one prefix shared by every
    candidate's shape (`module.net.0.weight`), or, where the architecture holds the saved network under a name of its
    own, under the key less its leading names (`0.weight` for `net.0.weight`). None where none is found."""
    if hasattr(state.get(key), "shape"):
        return state[key]
    behind = [v for k, v in state.items() if k.endswith("." + key) and hasattr(v, "shape")]
    if behind and all(tuple(v.shape) == tuple(behind[0].shape) for v in behind):
        return behind[0]
    parts = key.split(".")
    for i in range(1, len(parts) - 1):
        inner = ".".join(parts[i:])
        if hasattr(state.get(inner), "shape"):
            return state[inner]
    return None


def tensor_shapes(net: nn.Module) -> tuple[tuple[str, tuple], ...]:
    """(key, shape) of each tensor of `net`'s state dict; an unsized lazy layer's tensors by what its constructor did
    fix (output count, kernel, groups) in place of a shape, so that builds with other arguments still compare."""
    out = []
    for key, value in net.state_dict().items():
        if is_lazy(value):
            layer = net.get_submodule(key.rpartition(".")[0])
            fixed = tuple(getattr(layer, a) for a in ("out_features", "out_channels", "kernel_size", "groups",
                                                      "transposed") if hasattr(layer, a))
            out.append((key, ("unsized", *fixed)))
        else:
            out.append((key, tuple(value.shape)))
    return tuple(out)
