"""Which torchvision factory builds a network with exactly these weights' names and shapes.

Each classification factory is built for its shapes alone (meta_build.py) at the file's class count, once per
process and count. A pickled torchvision model (pickled_model.py) is matched among the factories that return its
class, and then loads with no --arch; so does a plain state dict without --arch where one factory fits and no timm
model does (checkpoint.arch_from_weights: the same names and shapes may be timm's model of the same name, with other
preprocessing, and then the error names them). RegNets' constructors compute their widths with tensors and read them
back, which the meta device cannot: shapes_build builds them with only their weights there."""
from __future__ import annotations

import functools
import re

import torch

from .meta_build import shapes_build


def _factory_shapes(rows: int, module: str | None = None) -> tuple[tuple[str, str, str, frozenset], ...]:
    # one cache entry a (rows, module) however it is called: `f(10)` and `f(10, None)` are two keys to lru_cache, and
    # the no-arch error built every factory twice (4.4 s each time here)
    return _built_factory_shapes(int(rows), module)


@functools.lru_cache(maxsize=8)
def _built_factory_shapes(rows: int, module: str | None) -> tuple[tuple[str, str, str, frozenset], ...]:
    """(name, the module it is defined in, the class it returns, its (key, shape) pairs) for every factory (defined
    in `module`, where given: a pickled class is matched only among its neighbours, so only they are built)."""
    import torchvision
    from torchvision.models import get_model_builder
    out = []
    for name in torchvision.models.list_models(module=torchvision.models):
        builder = get_model_builder(name)
        if module is not None and builder.__module__ != module:
            continue
        try:
            net = shapes_build(builder, weights=None, num_classes=rows)
        except Exception:  # noqa: BLE001 - a factory that cannot be built so: never matched
            continue
        shapes = frozenset((k, tuple(v.shape)) for k, v in net.state_dict().items())
        out.append((name, builder.__module__, type(net).__name__, shapes))
    return tuple(out)


def factories_fitting(state: dict[str, torch.Tensor], rows: int, pickled_class: str | None = None) -> list[str]:
    """The factories whose weights have exactly `state`'s names and shapes at `rows` classes; with `pickled_class`
    (`torchvision.models.resnet.ResNet`), only those defined beside that class that return it."""
    shapes = frozenset((k, tuple(v.shape)) for k, v in state.items())
    module, _, cls = (pickled_class or "").rpartition(".")
    return [name for name, where, returns, theirs in _factory_shapes(rows, module if pickled_class else None)
            if theirs == shapes and (pickled_class is None or (where == module and returns == cls))]


def factory_shapes(name: str, rows: int) -> frozenset:
    """The (key, shape) pairs of the factory `name`'s weights at `rows` classes."""
    return next(theirs for factory, _, _, theirs in _factory_shapes(rows) if factory == name)


def transforms_its_input(name: str, rows: int) -> bool:
    """Whether the factory's class takes `transform_input` (GoogLeNet, Inception-v3): torchvision sets it where it
    loads ImageNet weights, so a network fine-tuned from them re-normalises its input inside, and nothing in its
    state dict says so."""
    import inspect
    import sys
    module, cls = next((where, returns) for factory, where, returns, _ in _factory_shapes(rows) if factory == name)
    built = getattr(sys.modules.get(module), cls, None)
    return built is not None and "transform_input" in inspect.signature(built).parameters


def factories_named_alike(state: dict[str, torch.Tensor], rows: int) -> list[str]:
    """The factories whose weights have exactly `state`'s names at other shapes: the same network built with other
    arguments (`mobilenet_v2(width_mult=0.5)`), which a search of its arguments may read from the weights."""
    names = frozenset(state)
    return [name for name, _, _, theirs in _factory_shapes(rows) if frozenset(k for k, _ in theirs) == names]


def _without_counts(keys) -> frozenset:
    """Key names with every number left out (`layer1.0.conv1.weight` -> `layer.N.conv.weight`): a family's names at
    any depth."""
    return frozenset(re.sub(r"\d+", "N", k) for k in keys)


def classes_named_alike(state: dict[str, torch.Tensor], rows: int) -> list[str]:
    """The torchvision network classes (`torchvision.models.resnet:ResNet`) one of whose factories' weights have
    `state`'s names but for their numbers: the family built at other depths (`ResNet(BasicBlock, [1, 1, 1, 1])`),
    which a search of the class's arguments may read from the weights."""
    names = _without_counts(state)
    out: list[str] = []
    for _, module, cls, theirs in _factory_shapes(rows):
        if _without_counts(k for k, _ in theirs) == names and f"{module}:{cls}" not in out:
            out.append(f"{module}:{cls}")
    return out


def factories_fitting_under_prefixes(state: dict[str, torch.Tensor], rows: int) -> tuple[list[str], list[str]]:
    """Where no factory fits the keys as saved: the factories whose every weight the file holds at its shape under
    the key prefixes a load removes (`module.`; OpenMMLab's `backbone.` and `head.`, a model's parts saved under names
    of their own), and nothing else beside them; with those prefixes (of the first factory)."""
    from types import SimpleNamespace

    from ..formats import _parts_under_other_prefixes, find_prefix
    fitting, prefixes = [], []
    for name, _, _, theirs in _factory_shapes(rows):
        own = {k: SimpleNamespace(shape=shape) for k, shape in theirs}
        prefix = find_prefix(own, state)
        if not prefix:
            continue
        adapted = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
        more = _parts_under_other_prefixes(own, adapted, rest)
        if not rest and frozenset((k, tuple(v.shape)) for k, v in adapted.items()) == theirs:
            fitting.append(name)
            prefixes = prefixes or [prefix, *more]
    return fitting, prefixes
