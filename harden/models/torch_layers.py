"""A whole pickled model made only of torch.nn's own layers (`torch.save(nn.Sequential(...))`), rebuilt without --arch.

Tutorials and small published models save the module itself, and a Sequential of torch's layers carries its whole
architecture: which layers, in which order, with which settings. The inert read (pickled_model.py) gives each module's
class name and pickled fields without importing or running anything. Where every module of the tree is one of
torch.nn's own classes and every setting plain data (numbers, strings, tuples, a function of torch.nn.functional: an
activation kept as an attribute; hook tables empty), the module is built here as torch.load itself would build it
(the class's `__new__`, then its own `__setstate__` with those settings) from torch's code alone; the file's tensors
are the weights. A tree with any other class (the training script's own `Net`, whose forward is its code), a function
from elsewhere or a hook is not rebuilt: the architecture then comes from --arch, as before.

torchvision's and timm's modules (an installed library's classes, as torch.load would import them; settings may then
be dicts of plain data, as timm's pretrained_cfg) and stand-ins for fastai's head layers and its TimmBody
(models/fastai_layers.py) are taken as torch.nn's are: fastai's exported Learner holds a Sequential of a torchvision
body's children (or a timm model in a TimmBody) and those head layers; notebooks save `nn.Sequential(timm_backbone,
nn.Linear(...))`.

The architecture `torch-layers` keeps the tree in the metadata as JSON (classes and settings, the parameters' shapes
and dtypes, no values), so a hardened checkpoint rebuilds with no pickle beside it."""
from __future__ import annotations

import importlib
import json
import sys
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ..errors import HardenError
from .config import TORCH_LAYERS

ARCH = TORCH_LAYERS
PREFIX = "torch.nn.modules."
LIBRARY_PREFIXES = ("torchvision.models.", "torchvision.ops.", "timm.models.", "timm.layers.")
# a setting may name a function of these (an activation kept as an attribute: F.relu, or F.gelu, a builtin pickled
# under torch._C._nn): tensor operations, nothing else
FUNCTIONS = {"torch.nn.functional.": torch.nn.functional, "torch._C._nn.": torch._C._nn}
# nn.Module's own bookkeeping: rebuilt from the tree's parameters, buffers and children; hook tables must be empty
_BOOKKEEPING = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_is_full_backward_hook"}
_HOOKS = {"_backward_pre_hooks", "_backward_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
          "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks",
          "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"}
_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                                     torch.int64, torch.int32, torch.uint8, torch.bool)}


class NotPlain(Exception):
    """The tree holds something other than torch.nn's layers and plain settings."""


def layer_class(name: str) -> type[nn.Module]:
    """torch.nn's own class of that full name (`torch.nn.modules.conv.Conv2d`), torchvision's building blocks
    (`torchvision.models.resnet.BasicBlock`: a fastai body is a torchvision model's children), or harden's stand-in
    for one of fastai's head layers (models/fastai_layers.py); NotPlain for any other."""
    from .fastai_layers import STAND_INS
    if name in STAND_INS:
        return STAND_INS[name]
    module, _, short = name.rpartition(".")
    # torch.nn's own submodules, already imported with torch; a class defined there (MultiheadAttention's
    # NonDynamicallyQuantizableLinear is not exported as torch.nn's); torchvision's modules, an installed library's
    where = sys.modules.get(module) if name.startswith(PREFIX) else None
    library = name.startswith(LIBRARY_PREFIXES) and not short.startswith("__")
    if library:  # a library's own classes, its private ones too (torchvision's DenseNet `_DenseBlock`)
        try:
            where = importlib.import_module(module)
        except ImportError:
            raise NotPlain(name) from None
    cls = getattr(where, short, None) if where is not None and (library or not short.startswith("_")) else None
    if not isinstance(cls, type) or not issubclass(cls, nn.Module) or cls.__module__ != module:
        raise NotPlain(name)
    return cls


def describe(module: Any) -> dict[str, Any] | None:
    """The JSON tree of an inert pickled module (inert_pickle.Inert), or None where it is not all torch.nn layers."""
    try:
        return _node(module, depth=0, path="", seen={})
    except NotPlain:
        return None


def _node(module: Any, depth: int, path: str, seen: dict[int, str]) -> dict[str, Any]:
    """`seen`: {id of a module or tensor met before: its dotted path}. A module or parameter the pickle holds under
    two names (a block applied twice, `fc2.weight = fc1.weight`) is one object there: the second name becomes
    {"same_as": path}, so the rebuilt network shares it too and trains it as one."""
    from ..inert_pickle import Inert
    if not isinstance(module, Inert) or depth > 64:
        raise NotPlain(type(module).__name__)
    if id(module) in seen:
        return {"same_as": seen[id(module)]}
    seen[id(module)] = path
    layer_class(module.inert_global)
    fields = module.fields
    pruned = _pruned_tensors(fields)
    if any(fields.get(k) for k in _HOOKS - {"_forward_pre_hooks"}) or (fields.get("_forward_pre_hooks") and
                                                                       not pruned) or \
            fields.get("_non_persistent_buffers_set"):
        raise NotPlain("hooks or non-persistent buffers")
    node: dict[str, Any] = {"class": module.inert_global, "settings": {}, "parameters": {}, "buffers": {},
                            "children": {}}
    for kind in ("parameters", "buffers"):
        for name, t in _table(fields.get(f"_{kind}")).items():
            if t is not None and not isinstance(t, torch.Tensor):
                raise NotPlain(name)
            if kind == "buffers" and name.endswith("_mask") and name[:-5] in pruned:
                continue  # the pruning mask: put back from the weights by pruned.prune_as_saved when they load
            if kind == "parameters" and name.endswith("_orig") and name[:-5] in pruned:
                name = name[:-5]  # the layer's own parameter, of the same shape
            if t is not None and id(t) in seen:
                node[kind][name] = {"same_as": seen[id(t)]}
                continue
            node[kind][name] = None if t is None else [list(t.shape), str(t.dtype).removeprefix("torch.")]
            if t is not None:
                seen[id(t)] = path + name
            if t is not None and node[kind][name][1] not in _DTYPES:
                raise NotPlain(str(t.dtype))
    for name, child in _table(fields.get("_modules")).items():
        node["children"][name] = None if child is None else _node(child, depth + 1, f"{path}{name}.", seen)
    for name, value in fields.items():
        if name not in _BOOKKEEPING and name not in _HOOKS and name not in pruned:  # not the hook's product
            node["settings"][name] = _plain(value)
    return node


def _pruned_tensors(fields: dict[str, Any]) -> set[str]:
    """The tensors a module's forward pre-hooks prune (torch.nn.utils.prune's methods, alone or in a container):
    their names, where every pre-hook is one of those; else empty."""
    from ..inert_pickle import Inert
    table = fields.get("_forward_pre_hooks")
    hooks = list(table.values()) if isinstance(table, dict) else []  # keyed by the hooks' handle ids (ints)
    names = set()
    for hook in hooks:
        if not isinstance(hook, Inert) or not hook.inert_global.startswith("torch.nn.utils.prune."):
            return set()
        name = hook.fields.get("_tensor_name")
        if not isinstance(name, str) or f"{name}_orig" not in (_table(fields.get("_parameters"))):
            return set()
        names.add(name)
    return names


def _table(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise NotPlain("table")
    return dict(value)


def _plain(value: Any, depth: int = 0) -> Any:
    """A setting as JSON: tuples tagged (a layer may compare its kernel size with a tuple), NotPlain for anything
    that is not a number, a string, None or a list/tuple of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type) and getattr(value, "inert_global", "").startswith(tuple(FUNCTIONS)):
        functional(value.inert_global)  # TransformerEncoderLayer's activation: one of torch.nn.functional's
        return {"function": value.inert_global}
    if isinstance(value, type) and getattr(value, "inert_global", ""):
        layer_class(value.inert_global)  # a layer class kept to build with (torchvision's ResNet's `_norm_layer`)
        return {"layer_class": value.inert_global}
    from ..inert_pickle import Inert
    state = value.fields.get("__state__") if isinstance(value, Inert) and value.inert_global == "functools.partial" \
        else None
    if isinstance(state, tuple) and len(state) == 4 and isinstance(state[0], type) and not state[3] and \
            isinstance(state[1], tuple) and isinstance(state[2], (dict, type(None))) and depth < 4:
        # functools.partial of a layer class or a function (torchvision's ViT keeps partial(nn.LayerNorm, eps=1e-6))
        return {"partial": _plain(state[0], depth + 1), "args": [_plain(v, depth + 1) for v in state[1]],
                "kwargs": {str(k): _plain(v, depth + 1) for k, v in (state[2] or {}).items()}}
    if isinstance(value, (list, tuple)) and depth < 4:
        items = [_plain(v, depth + 1) for v in value]
        return {"tuple": items} if isinstance(value, tuple) else items
    if isinstance(value, dict) and depth < 4 and all(isinstance(k, str) for k in value):  # timm's pretrained_cfg
        return {"dict": {k: _plain(v, depth + 1) for k, v in value.items()}}
    if isinstance(value, Inert) and len(value.args) == 1 and isinstance(value.args[0], (str, int)) and \
            not value.fields:
        enum_class(value.inert_global)  # a library's enum member (timm's Format.NCHW), pickled as (class, value)
        return {"enum": value.inert_global, "value": value.args[0]}
    raise NotPlain(type(value).__name__)


def enum_class(name: str) -> type:
    """An Enum class of the libraries whose modules are rebuilt (timm.layers.format.Format); NotPlain for any other."""
    import enum
    module, _, short = name.rpartition(".")
    if not name.startswith(LIBRARY_PREFIXES) or short.startswith("_"):
        raise NotPlain(name)
    try:
        cls = getattr(importlib.import_module(module), short, None)
    except ImportError:
        raise NotPlain(name) from None
    if not isinstance(cls, type) or not issubclass(cls, enum.Enum):
        raise NotPlain(name)
    return cls


def functional(name: str) -> Any:
    """The function of that full name in torch.nn.functional or torch._C._nn; NotPlain for any other."""
    module, _, short = name.rpartition(".")
    where = FUNCTIONS.get(module + ".")
    fn = getattr(where, short, None) if where is not None and not short.startswith("_") else None
    if not callable(fn) or isinstance(fn, type):
        raise NotPlain(name)
    return fn


def _unplain(value: Any) -> Any:
    if isinstance(value, dict) and "function" in value:
        return functional(value["function"])
    if isinstance(value, dict) and "layer_class" in value:
        return layer_class(value["layer_class"])
    if isinstance(value, dict) and "partial" in value:
        import functools
        return functools.partial(_unplain(value["partial"]), *[_unplain(v) for v in value["args"]],
                                 **{k: _unplain(v) for k, v in value["kwargs"].items()})
    if isinstance(value, dict) and "dict" in value:
        return {k: _unplain(v) for k, v in value["dict"].items()}
    if isinstance(value, dict) and "enum" in value:
        return enum_class(value["enum"])(value["value"])
    if isinstance(value, dict):
        return tuple(_unplain(v) for v in value["tuple"])
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def build(model_args: dict[str, Any]) -> nn.Module:
    """The architecture `torch-layers`: the module its tree describes, with zero weights (the checkpoint's load)."""
    tree = (model_args or {}).get("tree")
    if isinstance(tree, str):
        try:
            tree = json.loads(tree)
        except (ValueError, RecursionError) as e:
            raise HardenError(f"The tree of torch.nn layers kept in this checkpoint's metadata is damaged ({e}).") \
                from None
    if not isinstance(tree, dict):
        raise HardenError("The architecture 'torch-layers' needs its tree of torch.nn layers (kept in the model_args "
                          "of checkpoints harden writes from a pickled model); give the pickled model itself.")
    try:
        return _build(tree, "", {})
    except (NotPlain, KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError, RuntimeError,
            MemoryError) as e:  # a damaged or crafted tree (a shape no memory holds among them)
        raise HardenError(f"The tree of torch.nn layers kept in this checkpoint's metadata cannot be rebuilt "
                          f"({type(e).__name__}: {e}).") from None


def _as_built(dtype: str) -> torch.dtype:
    """Float tensors are built in float32 whatever the pickle held (a model saved after .half() or .double()): harden
    feeds float32 images, and the checkpoint's load widens or rounds the weights into them, saying so."""
    d = _DTYPES[dtype]
    return torch.float32 if d.is_floating_point else d


def _build(node: dict[str, Any], path: str, built: dict[str, Any]) -> nn.Module:
    """`built`: {dotted path: the module or tensor built there}, for the tree's {"same_as": path} entries (_node)."""
    if "same_as" in node:
        return built[node["same_as"]]
    cls = layer_class(node["class"])
    module = cls.__new__(cls)
    built[path] = module
    state = {k: _unplain(v) for k, v in node["settings"].items()}
    state.update({k: OrderedDict() for k in _HOOKS}, _is_full_backward_hook=None, _non_persistent_buffers_set=set())

    def tensor(name: str, v: Any, parameter: bool):
        if v is None:
            return None
        if isinstance(v, dict):
            return built[v["same_as"]]
        t = torch.zeros(v[0], dtype=_as_built(v[1]))
        built[path + name] = nn.Parameter(t, requires_grad=_DTYPES[v[1]].is_floating_point) if parameter else t
        return built[path + name]
    state["_parameters"] = {k: tensor(k, v, True) for k, v in node["parameters"].items()}
    state["_buffers"] = {k: tensor(k, v, False) for k, v in node["buffers"].items()}
    state["_modules"] = {k: None if v is None else _build(v, f"{path}{k}.", built) for k, v in node["children"].items()}
    module.__setstate__(state)  # the class's own: what torch.load runs after __new__ for a pickled module
    return module


def first_setting(tree: dict[str, Any], name: str, last: bool = False) -> int | None:
    """The first (or last) value of an integer setting in the tree's depth-first order (in_channels of the first
    convolution, out_features of the last linear layer)."""
    found: list[int] = []

    def walk(node):
        if "same_as" in node:  # a module met before: its settings were read there
            return
        value = node["settings"].get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            found.append(value)
        for child in node["children"].values():
            if child is not None:
                walk(child)
    walk(tree)
    return (found[-1] if last else found[0]) if found else None


def meta_for(tree: dict[str, Any]) -> dict[str, Any]:
    """The metadata a rebuilt tree gives read_checkpoint: the architecture, its input channels and class count
    where its layers say them (the first convolution's input, the last linear layer's output)."""
    meta: dict[str, Any] = {"arch": ARCH, "model_args": {"tree": json.dumps(tree, separators=(",", ":"))}}
    chans, classes = first_setting(tree, "in_channels"), first_setting(tree, "out_features", last=True)
    if chans:
        meta["in_chans"] = chans
    if classes:
        from ..outputs import class_count
        meta["num_classes"] = class_count(classes)
    return meta
