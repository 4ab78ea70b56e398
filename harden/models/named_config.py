"""A constructor argument that names one of the configurations its own code defines, where nothing gives it:
pytorch-cifar's `VGG('VGG19')` (its module's `cfg` dict maps each name to its layers), a `Literal['s', 'm', 'l']`
variant. Each name is built on the meta device and the one whose layers the checkpoint's weights fit is taken, as
`--model-arg` would give it (warned by the caller); where several fit, the error names them."""
from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any

from ..errors import HardenError
from .config import ARG_ALIASES

MAX_NAMES = 64  # names tried at most (each is one meta-device build)
# a build with the file's tensors whose shapes differ in at most a head's weight and bias still fits: a constructor
# that takes a class count is built here with its default one, the file's read later (checkpoint.load)
HEAD_TENSORS = 2


def _literal_values(fn: Callable[..., Any], name: str) -> list[Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hint = typing.get_type_hints(target).get(name)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: no values from it
        return []
    if typing.get_origin(hint) is typing.Literal:
        return [v for v in typing.get_args(hint) if isinstance(v, (str, int)) and not isinstance(v, bool)]
    return []


def _defined_names(fn: Callable[..., Any]) -> list[str]:
    """The keys of the dicts of names its module and class define (`cfg = {'VGG11': [...], 'VGG13': [...]}`)."""
    spaces = [vars(sys.modules[fn.__module__])] if fn.__module__ in sys.modules else []
    if inspect.isclass(fn):
        spaces += [vars(c) for c in fn.__mro__ if c is not object]
    out: list[str] = []
    for space in spaces:
        for attr, value in list(space.items()):
            if attr.startswith("__") or not isinstance(value, dict) or not 2 <= len(value) <= MAX_NAMES:
                continue
            if all(isinstance(k, str) for k in value):
                out += [k for k in value if k not in out]
    return out


def missing_name(fn: Callable[..., Any], model_args: dict[str, Any]) -> str | None:
    """The one parameter without a default that neither `model_args` nor harden (class count, channels, size) gives."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    offered = {a for names in ARG_ALIASES.values() for a in names}
    needed = [p.name for p in params.values() if p.default is p.empty and p.name not in model_args
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return needed[0] if len(needed) == 1 and needed[0] not in offered else None


def configuration_from_weights(fn: Callable[..., Any], model_args: dict[str, Any],
                               mismatches: Callable[[Any], int | None]) -> tuple[str, Any, list[Any]] | None:
    """(parameter, value, the names tried) where one name its code defines builds the network the weights fit best
    (`mismatches(net)`: None where the tensors' names differ, else how many shapes do; the fewest, at most a head's);
    None where no name fits."""
    from .meta_build import built_for_shapes
    name = missing_name(fn, model_args)
    if name is None:
        return None
    values = (_literal_values(fn, name) + [k for k in _defined_names(fn) if k not in _literal_values(fn, name)])
    values = values[:MAX_NAMES]
    fits: dict[int, list[Any]] = {}
    for value in values:
        try:
            with built_for_shapes():
                net = fn(**model_args, **{name: value})
            differ = mismatches(net)
        except Exception:  # noqa: BLE001 - a name this parameter does not take (KeyError, TypeError, ...)
            continue
        if differ is not None and differ <= HEAD_TENSORS:
            fits.setdefault(differ, []).append(value)
    best = fits[min(fits)] if fits else []
    if len(best) > 1:
        raise HardenError(f"{name} is not given, and the weights fit {len(best)} of the names its code defines "
                          f"({', '.join(map(repr, best[:8]))}): give the one it was trained with, --model-arg "
                          f"{name}=NAME.")
    return (name, best[0], values) if best else None
