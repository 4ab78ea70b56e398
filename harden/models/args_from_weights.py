"""Constructor arguments of a `file.py:Class` architecture that nothing gives and the checkpoint's weights say,
found by building on the meta device (no memory, no initialisation) and matching the file's tensors, as `--model-arg`
would give them (warned by the caller): a required argument naming one of the configurations its own code defines
(pytorch-cifar's `VGG('VGG19')`, whose module's `cfg` dict maps each name to its layers; a `Literal['s', 'm']`
variant; where several names fit, the error lists them), or, where the defaults build a network the weights do not
fit, its integer and true/false arguments (a WideResNet's depth and widen_factor; RobustBench's sub_block1)."""
from __future__ import annotations

import inspect
import json
import re
import sys
import time
import typing
from collections.abc import Callable
from typing import Any

from ..errors import HardenError
from .config import ARG_ALIASES

MAX_NAMES = 64  # names tried at most (each is one meta-device build)


def _literal_values(fn: Callable[..., Any], name: str) -> list[Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hint = typing.get_type_hints(target).get(name)
    except (NameError, TypeError, AttributeError, SyntaxError):  # an annotation that does not resolve: no values
        return []
    if typing.get_origin(hint) is typing.Literal:
        return [v for v in typing.get_args(hint) if isinstance(v, (str, int)) and not isinstance(v, bool)]
    return []


def _defined_names(fn: Callable[..., Any]) -> list[Any]:
    """The names its module and class define: the keys of dicts of names (`cfg = {'VGG11': [...], 'VGG13': [...]}`)
    or of sizes (pytorch-cifar's `ShuffleNetV2(net_size)` over `configs = {0.5: {...}, 1: {...}, ...}`), tuples and
    lists of names (EfficientNet-PyTorch's `VALID_MODELS = ('efficientnet-b0', ...)` beside its
    `EfficientNet.from_name(model_name)`)."""
    owner = getattr(fn, "__self__", None)  # a classmethod factory's class
    module = getattr(fn, "__module__", None)
    spaces = [vars(sys.modules[module])] if module in sys.modules else []
    for cls in (fn, owner):
        if inspect.isclass(cls):
            spaces += [vars(c) for c in cls.__mro__ if c is not object]
    out: list[Any] = []
    for space in spaces:
        for attr, value in list(space.items()):
            if attr.startswith("__") or not isinstance(value, (dict, tuple, list)) or \
                    not 2 <= len(value) <= MAX_NAMES:
                continue
            if all(isinstance(k, str) for k in value) or \
                    all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in value) and isinstance(value, dict):
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


# (tensors whose names the build lacks or the file lacks, tensors whose shapes differ, the build's tensors the file
# lacks, whether the shapes that differ are only a head's rows)
Score = tuple[int, int, int, bool]


def _fits(score: Score | None) -> bool:
    """Every tensor there, each of its shape; or all but a head's rows: a constructor that takes a class count is
    built here with its default one, the file's read later (checkpoint.load)."""
    return score is not None and score[0] == 0 and (score[1] == 0 or score[3])


def configuration_from_weights(fn: Callable[..., Any], model_args: dict[str, Any], score: Callable[[Any], Score],
                               sizes: set[int] = frozenset()) -> tuple[dict[str, Any], str] | None:
    """The constructor arguments the weights say, where nothing gave them, and a sentence saying so: the one
    required argument naming a configuration its code defines (`VGG('VGG19')`), else, where its defaults build a
    network the weights do not fit (beyond a head's rows), its integer and true/false arguments (WideResNet's depth
    and widen_factor, RobustBench's sub_block1), searched one at a time for the build whose tensors the file holds
    (`sizes`: the sizes of the file's tensors, tried for integers above 128). None where nothing better fits."""
    name = missing_name(fn, model_args)
    if name is not None:
        return _named(fn, model_args, score, name)
    return _searched(fn, model_args, score, set(sizes))


def _built(fn, model_args: dict[str, Any]):
    """The network on the meta device, or None where the constructor refuses the values (an assertion, a KeyError)."""
    from .meta_build import built_for_shapes
    try:
        with built_for_shapes():
            return fn(**model_args)
    except Exception:  # noqa: BLE001 - whatever the user's constructor raises for a value it does not take
        return None


def _scored(fn, model_args: dict[str, Any], score: Callable[[Any], Score]) -> Score | None:
    import torch
    net = _built(fn, model_args)
    return score(net) if isinstance(net, torch.nn.Module) else None  # a factory may return something else


def _named(fn, model_args, score, name) -> tuple[dict[str, Any], str] | None:
    literal = _literal_values(fn, name)
    values = (literal + [k for k in _defined_names(fn) if k not in literal])[:MAX_NAMES]
    fits: dict[int, list[Any]] = {}
    for value in values:
        got = _scored(fn, {**model_args, name: value}, score)
        if _fits(got):
            fits.setdefault(got[1], []).append(value)
    best = fits[min(fits)] if fits else []
    if len(best) > 1:
        raise HardenError(f"{name} is not given, and the weights fit {len(best)} of the names its code defines "
                          f"({', '.join(map(repr, best[:8]))}): give the one it was trained with, --model-arg "
                          f"{name}=NAME.")
    if not best:
        return None
    defaults = _searchable(fn, {**model_args, name: best[0]})
    _refuse_unread(fn, {**model_args, name: best[0]}, defaults, {}, f"{name}={best[0]!r}",
                   f"--model-arg {name}={json.dumps(best[0])}")
    shown = ", ".join(map(repr, values[:6])) + (", ..." if len(values) > 6 else "")
    return {name: best[0]}, (f"built with {name}={best[0]!r}, which nothing gave: the one of the "
                             f"{len(values)} names its code defines ({shown}) whose layers the weights fit "
                             f"(--model-arg {name} sets it)")


SEARCH_SECONDS = 10.0  # the most a search of integer and true/false arguments takes before giving up
PAST_THE_FILE = 4  # successive larger values whose builds hold more tensors the file lacks than the best: no larger
# never set by a search: arguments that fetch or write something, seed or say how to log and initialise
UNTRIED = re.compile(r"pretrain|download|progress|verbose|debug|seed|weight|cache|checkpoint|path|url|load|save|"
                     r"init|log|print", re.IGNORECASE)


def _searchable(fn, model_args) -> dict[str, Any]:
    """The integer and true/false arguments a search may set, with their defaults."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    offered = {a for names in ARG_ALIASES.values() for a in names}
    return {p.name: p.default for p in params.values()
            if p.name not in model_args and p.name not in offered and not UNTRIED.search(p.name)
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and (isinstance(p.default, bool) or isinstance(p.default, int) and p.default > 0)}


def _values(default: Any, renames: bool, sizes: set[int]) -> list[Any]:
    """A true/false argument's other value; an integer's: where it changes which tensors there are (a depth), every
    count to 128 (a WideResNet's depth of 70); where it changes only their shapes (a width), the counts to 16 (a
    widen_factor) and the sizes the file's tensors have (an embedding's 192)."""
    if isinstance(default, bool):
        return [not default]
    ints = set(range(1, 129)) | {v for v in sizes if v > 128} if renames else set(range(1, 17)) | sizes
    return sorted(v for v in ints if v != default and v > 0)


def _layers(fn, model_args) -> tuple | None:
    """The names and shapes of what a build holds (None: the constructor refuses those arguments)."""
    import torch

    from .lazy import tensor_shapes
    net = _built(fn, model_args)
    return tensor_shapes(net) if isinstance(net, torch.nn.Module) else None


def _effect(fn, model_args, name, default, base: tuple | None) -> str | None:
    """What the argument changes, from a build at one of its next values: "names" (which tensors there are),
    "shapes", "nothing" (no tensor: an attention's head count, a stride, a flag; not searched), or None where no such
    build could be made (not searched either, and not said to change nothing)."""
    tries = [not default] if isinstance(default, bool) else [default + 1, default + 2, default * 2, default + 6]
    for value in tries:
        got = _layers(fn, {**model_args, name: value})
        if got is None or base is None:
            continue
        if got == base:
            return "nothing"
        return "names" if [k for k, _ in got] != [k for k, _ in base] else "shapes"
    return None


def _searched(fn, model_args, score, sizes: set[int]) -> tuple[dict[str, Any], str] | None:
    """Coordinate search from the defaults: each argument that changes a layer (those that change which tensors there
    are first) takes in turn the value that leaves the fewest tensors unmatched (names first, then shapes), until a
    build fits or a pass changes nothing."""
    best = _scored(fn, model_args, score)
    if best is None or _fits(best):  # a constructor that needs what harden gives later (a class count) is not searched
        return None
    defaults = _searchable(fn, model_args)
    found: dict[str, Any] = {}
    start, builds = time.perf_counter(), 0
    for _ in range(3):
        changed = False
        base = _layers(fn, {**model_args, **found})
        effects = {name: _effect(fn, {**model_args, **found}, name, found.get(name, default), base)
                   for name, default in defaults.items()}
        order = [n for n in defaults if effects[n] == "names"] + [n for n in defaults if effects[n] == "shapes"]
        for name in order:
            pick, past = None, 0
            for value in _values(found.get(name, defaults[name]), effects[name] == "names", sizes):
                # ascending: a depth past the file's builds ever more tensors, ever slower
                if time.perf_counter() - start > SEARCH_SECONDS:
                    return None
                got = _scored(fn, {**model_args, **found, name: value}, score)
                builds += 1
                if got is None:
                    continue
                if got[:2] < best[:2]:
                    best, pick = got, value
                    if _fits(best):
                        break
                past = past + 1 if got[2] > best[0] and not isinstance(value, bool) else 0
                if past >= PAST_THE_FILE:
                    break
            if pick is not None:
                found[name], changed = pick, True
            if _fits(best):
                said = ", ".join(f"{k}={v!r}" for k, v in found.items())
                flags = " ".join(f"--model-arg {k}={json.dumps(v)}" for k, v in found.items())
                _refuse_unread(fn, {**model_args, **found}, defaults, found, said, flags)
                return found, (f"built with {said}: the weights fit no network its defaults build, and "
                               f"{'these' if len(found) > 1 else 'this'} {'were' if len(found) > 1 else 'was'} found "
                               f"from them ({builds} builds tried on the meta device; `{flags}` says "
                               f"{'them' if len(found) > 1 else 'it'})")
        if not changed:
            return None
    return None


def _refuse_unread(fn, model_args, defaults, found, said, flags) -> None:
    """A network whose tensors all fit may still compute another function: an integer argument that changes no
    tensor (an attention's head count: timm's ViT-Ti has 3 heads, its class's default 12, over the same weights; a
    stride) left at its default is a guess the weights cannot check. Refused, naming what was found and what is
    still to give."""
    base = _layers(fn, model_args)
    unread = [n for n, d in defaults.items() if n not in found and not isinstance(d, bool)
              and _effect(fn, model_args, n, d, base) == "nothing"]
    if unread:
        them = "it" if len(unread) == 1 else "them"
        raise HardenError(
            f"The weights fit a network built with {said} (found from them), but {', '.join(unread)} "
            f"change{'s' if len(unread) == 1 else ''} no tensor's name or shape, so the weights cannot say {them} "
            f"and the default may compute another function over the same weights (an attention's head count does): "
            f"give {them} too: {flags} {' '.join(f'--model-arg {n}=VALUE' for n in unread)}.")

