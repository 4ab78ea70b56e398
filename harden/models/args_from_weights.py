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


# (tensors whose names the build lacks or the file lacks, tensors whose shapes differ, the build's tensors the file
# lacks)
Score = tuple[int, int, int]


def _fits(score: Score | None) -> bool:
    return score is not None and score[0] == 0 and score[1] <= HEAD_TENSORS


def configuration_from_weights(fn: Callable[..., Any], model_args: dict[str, Any],
                               score: Callable[[Any], Score]) -> tuple[dict[str, Any], str] | None:
    """The constructor arguments the weights say, where nothing gave them, and a sentence saying so: the one
    required argument naming a configuration its code defines (`VGG('VGG19')`), else, where its defaults build a
    network the weights do not fit (beyond a head's rows), its integer and true/false arguments (WideResNet's depth
    and widen_factor, RobustBench's sub_block1), searched one at a time for the build whose tensors the file holds.
    None where nothing better fits."""
    name = missing_name(fn, model_args)
    if name is not None:
        return _named(fn, model_args, score, name)
    return _searched(fn, model_args, score)


def _scored(fn, model_args: dict[str, Any], score: Callable[[Any], Score]) -> Score | None:
    from .meta_build import built_for_shapes
    try:
        with built_for_shapes():
            net = fn(**model_args)
        return score(net)
    except Exception:  # noqa: BLE001 - a value the constructor refuses (an assertion, a KeyError, ...)
        return None


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
    shown = ", ".join(map(repr, values[:6])) + (", ..." if len(values) > 6 else "")
    return {name: best[0]}, (f"built with {name}={best[0]!r}, which nothing gave: the one of the "
                             f"{len(values)} names its code defines ({shown}) whose layers the weights fit "
                             f"(--model-arg {name} sets it)")


SEARCH_SECONDS = 20.0  # the most a search of integer and true/false arguments takes before giving up
PAST_THE_FILE = 4  # successive larger values whose builds hold more tensors the file lacks than the best: no larger
# never tried: arguments that fetch or write something, or change no layer
UNTRIED = re.compile(r"pretrain|download|progress|verbose|debug|seed|weight|cache|checkpoint|path|url|load|save|"
                     r"init|log|print", re.IGNORECASE)


def _int_values(default: int) -> list[int]:
    """Every count to 128 (depths of 70 and 106 are WideResNets'), then multiples of 8 to 1,024 and of 64 to the
    larger of 4,096 and four times the default (widths)."""
    top = max(4096, 4 * default)
    return list(range(1, 129)) + list(range(136, 1025, 8)) + list(range(1088, top + 1, 64))


def _searchable(fn, model_args) -> dict[str, list[Any]]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    offered = {a for names in ARG_ALIASES.values() for a in names}
    out: dict[str, list[Any]] = {}
    for p in params.values():
        if p.name in model_args or p.name in offered or UNTRIED.search(p.name) or \
                p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if isinstance(p.default, bool):
            out[p.name] = [not p.default]
        elif isinstance(p.default, int) and p.default > 0:
            out[p.name] = [v for v in _int_values(p.default) if v != p.default]
    return out


def _searched(fn, model_args, score) -> tuple[dict[str, Any], str] | None:
    """Coordinate search from the defaults: each argument in turn takes the value that leaves the fewest tensors
    unmatched (names first, then shapes), until a build fits or a pass changes nothing."""
    best = _scored(fn, model_args, score)
    if best is None or _fits(best):  # a constructor that needs what harden gives later (a class count) is not searched
        return None
    space = _searchable(fn, model_args)
    if not space:
        return None
    found: dict[str, Any] = {}
    start, builds = time.perf_counter(), 0
    for _ in range(3):
        changed = False
        for name, values in space.items():
            pick, past = None, 0
            for value in values:  # ascending: a depth past the file's builds ever more tensors, ever slower
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
                past = past + 1 if got[2] > best[0] and isinstance(value, int) and not isinstance(value, bool) else 0
                if past >= PAST_THE_FILE:
                    break
            if pick is not None:
                found[name], changed = pick, True
            if _fits(best):
                said = ", ".join(f"{k}={v!r}" for k, v in found.items())
                flags = " ".join(f"--model-arg {k}={json.dumps(v)}" for k, v in found.items())
                return found, (f"built with {said}: the weights fit no network its defaults build, and "
                               f"{'these' if len(found) > 1 else 'this'} {'were' if len(found) > 1 else 'was'} found "
                               f"from them ({builds} builds tried on the meta device; `{flags}` says "
                               f"{'them' if len(found) > 1 else 'it'})")
        if not changed:
            return None
    return None
