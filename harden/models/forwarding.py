"""A factory that hands its `**kwargs` on to the network's class (bearpaw's `def resnet(**kwargs): return
ResNet(**kwargs)`, which its training script names as the architecture; torchvision-style `def resnet20(
pretrained=False, **kwargs): return _resnet(BasicBlock, [3, 3, 3], pretrained, **kwargs)`) shows no parameter: its
signature is read as the parameters it takes and those of the callable its keywords reach, less what it passes
itself, so that what harden gives (the class count) and what the weights say (a depth) reach the class, and what it
requires is asked for by name."""
from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Any

MAX_HOPS = 3  # factories that forward to factories that forward (torchvision-style `_resnet`), followed this far
MAX_TARGETS = 2  # callables a factory's `**kwargs` go to, read through (a configuration's function, then the class's)


def with_forwarded_signature(fn: Any) -> Any:
    """`fn` as it is, or, where it is a function that passes its `**kwargs` to one other callable, a wrapper that
    calls it and whose signature holds the parameters that reach that callable (keyword-only)."""
    found = _forwarded(fn, MAX_HOPS)
    if found is None:
        return fn

    @functools.wraps(fn)
    def factory(*args, **kwargs):
        return fn(*args, **kwargs)

    factory.__signature__, factory.forwarded_to = found  # the callable whose code reads the arguments
    return factory


def _forwarded(fn: Any, hops: int) -> tuple[inspect.Signature, Any] | None:
    # a decorated factory (torchvision's, under `handle_legacy_interface`): its own code and the names it sees
    fn = inspect.unwrap(fn) if inspect.isfunction(fn) else fn
    if hops <= 0 or not inspect.isfunction(fn):
        return None
    try:
        own = inspect.signature(fn)
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, ValueError, SyntaxError):
        return None
    params = list(own.parameters.values())
    keywords = next((p.name for p in params if p.kind == p.VAR_KEYWORD), None)
    if keywords is None or any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == keywords for k in node.keywords)]
    by_target = {ast.unparse(call.func): call for call in calls}
    # one callable, or several that each take what they read and hand on the rest (torchvision's
    # `mobilenet_v3_small`: `_mobilenet_v3_conf(arch, **kwargs)` reads width_mult, `_mobilenet_v3(..., **kwargs)`
    # builds the class): the parameters reaching any of them, the last one's code the class's
    if not by_target or len(by_target) > MAX_TARGETS or any(isinstance(a, ast.Starred) for c in calls for a in c.args):
        return None
    merged = [p for p in params if p.kind != p.VAR_KEYWORD]
    tail, target = None, None
    for call in by_target.values():
        target = _resolved(fn, call.func)
        if target is None:
            return None
        try:
            reached, target = _forwarded(target, hops - 1) or (inspect.signature(target), target)
        except (TypeError, ValueError):
            return None
        taken = {k.arg for k in call.keywords if k.arg is not None} | {p.name for p in merged} | {p.name for p in params}
        positional = len(call.args)
        for p in reached.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional > 0:
                positional -= 1  # filled by the call's own positional arguments
                continue
            if p.kind == p.VAR_POSITIONAL or p.name in taken:
                continue
            if p.kind == p.VAR_KEYWORD:
                tail = p
                continue
            merged.append(p.replace(kind=p.KEYWORD_ONLY))
    if tail is not None:
        if len(merged) == len(params) - 1:  # nothing learnt: it hands them on to another `**kwargs` alone
            return None
        merged.append(tail)
    try:
        return own.replace(parameters=merged), target
    except ValueError:  # an order the signature refuses (a name twice): leave the factory as it is
        return None


def _resolved(fn: Any, node: ast.expr) -> Any:
    """The callable a call's `Name` or `module.Name` means in the factory's module, or None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    scope = {**getattr(fn, "__globals__", {}), **_closure(fn)}
    obj = scope.get(node.id)
    for part in parts:
        obj = getattr(obj, part, None)
    return obj if callable(obj) else None


def _closure(fn: Any) -> dict[str, Any]:
    names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    cells = getattr(fn, "__closure__", None) or ()
    out = {}
    for name, cell in zip(names, cells, strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return out
