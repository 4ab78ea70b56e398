"""Constructor arguments of a `file.py:Class` architecture that the weights cannot say: left at their defaults,
where another value its code offers builds the same tensors but another network. DeepMind's and RobustBench's
`DMWideResNet(..., activation_fn=nn.ReLU)` is trained with the Swish its module defines for the best published CIFAR
models: a file of such weights loads strictly into the ReLU network its defaults build and answers every image, only
not as it was trained to. Nothing in the file tells the two apart, so the load says which value it took and which
others build alike, for the user to give."""
from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from typing import Any

UNSAID = "unsaid arguments"  # the config_sources entry naming them (the chance check names them too)
MAX_ALTERNATIVES = 8  # values tried per argument (each a meta-device build)
CHECK_SECONDS = 3.0  # the most the builds take on a load; the arguments not reached by then go unsaid


def _parameterless(obj: Any) -> bool:
    """A module class that builds with no arguments, holds no tensors and changes what it is given (an activation:
    Swish, Mish; not a DropPath, which passes its input on unchanged in evaluation)."""
    import torch
    try:
        module = obj()
        if any(True for _ in module.state_dict()):
            return False
        x = torch.linspace(-3, 3, 64).view(1, 4, 4, 4)
        with torch.no_grad():
            y = module.eval()(x)
    except Exception:  # noqa: BLE001 - a class that needs arguments, or takes no feature map, is no activation
        return False
    return isinstance(y, torch.Tensor) and y.shape == x.shape and not torch.equal(y, x)


def _activation_like(f: Any) -> bool:
    """A function that maps a feature map to another of its shape (relu, swish), called on a small tensor."""
    import torch
    x = torch.linspace(-3, 3, 64).view(1, 4, 4, 4)
    try:
        with torch.no_grad():
            y = f(x)
    except Exception:  # noqa: BLE001 - one that takes other arguments is no activation
        return False
    return isinstance(y, torch.Tensor) and y.shape == x.shape and not torch.equal(y, x)


def _one_expression(f: Any) -> bool:
    """A function of the user's module that only returns an expression of its one argument (`def swish(x): return x *
    torch.sigmoid(x)`): safe to call on a tensor to see what it does, where a helper that builds or trains is not."""
    import ast
    import textwrap
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(f)))
    except (OSError, TypeError, SyntaxError):
        return False
    node = tree.body[0] if tree.body else None
    return isinstance(node, ast.FunctionDef) and len(node.args.args) - len(node.args.defaults) == 1 and \
        len(node.body) == 1 and isinstance(node.body[0], ast.Return) and not node.args.vararg


# torch's modules whose functions an activation argument may name (`from torch.nn.functional import gelu`): calling
# one on a tensor computes and nothing else, where another of torch's (a download, a process group) may do more
TORCH_ACTIVATION_MODULES = ("torch", "torch.nn.functional", "torch.special", "torch._C._nn", "torch._C._special",
                            "torch._VariableFunctions")


def _functions(fn, default) -> list[str]:
    """The activation-like functions `fn`'s module holds beside `default`, by the bare names --model-arg takes for a
    parameter whose default is a function: its own one-expression functions and torch's it imports by name."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    out = []
    for name, obj in (vars(module).items() if module is not None else ()):
        if not inspect.isroutine(obj) or inspect.isclass(obj) or obj is default or name.startswith("_"):
            continue
        own = getattr(obj, "__module__", None) == module.__name__
        if (own and _one_expression(obj) or getattr(obj, "__module__", None) in TORCH_ACTIVATION_MODULES) and \
                _activation_like(obj):
            out.append(name)
    return out[:MAX_ALTERNATIVES]


def _function_text(fn, f) -> str:
    """A function as --model-arg names it: by its module's alias for torch's functional (`F.relu`), else its path."""
    import torch.nn.functional as functional
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    for alias, value in (vars(module).items() if module is not None else ()):
        if value is functional and getattr(functional, f.__name__, None) is f:
            return f"{alias}.{f.__name__}"
    return f"{f.__module__}.{f.__name__}"


def _class_text(fn, cls) -> str:
    """A class as --model-arg names it: by its name where `fn`'s module sees it so, else by its import path (torch's
    layers under torch.nn)."""
    import torch

    from .registry import _named_object
    if _named_object(fn, cls.__name__) is cls:
        return cls.__name__
    if getattr(torch.nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _alternatives(fn, spec) -> dict[str, tuple[str, list[Any]]]:
    """{argument: (its default as --model-arg writes it, the other values its code offers)}: for a default that is a
    module class holding no tensors, the classes of that kind the module defines; for a function (`act=F.relu`), the
    activation-like functions the module holds; for text, the values its constructor compares it with
    (args_from_weights._text_choices); for true/false, the other. Arguments nothing gave only: a value given, even the
    default, is said."""
    import torch

    from .args_from_weights import UNTRIED, _block_classes, _text_choices
    from .config import ARG_ALIASES
    from .registry import _named_object
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    offered = {a for names in ARG_ALIASES.values() for a in names}
    texts = _text_choices(fn, spec.model_args)
    classes: list[str] | None = None
    out: dict[str, tuple[str, list[Any]]] = {}
    for p in params.values():
        if p.name in spec.model_args or p.name in offered or UNTRIED.search(p.name):
            continue
        if p.name in texts:
            out[p.name] = (p.default, texts[p.name][:MAX_ALTERNATIVES])
        elif isinstance(p.default, bool):
            out[p.name] = (json.dumps(p.default), [not p.default])
        elif inspect.isroutine(p.default) and not inspect.isclass(p.default) and _activation_like(p.default):
            others = _functions(fn, p.default)
            if others:
                out[p.name] = (_function_text(fn, p.default), others)
        elif inspect.isclass(p.default) and issubclass(p.default, torch.nn.Module) and _parameterless(p.default):
            if classes is None:
                classes = [n for n in _block_classes(fn) if _parameterless(_named_object(fn, n))]
            others = [n for n in classes if _named_object(fn, n) is not p.default][:MAX_ALTERNATIVES]
            if others:
                out[p.name] = (_class_text(fn, p.default), others)
    return out


PROBE_IMAGES = 2  # images through both networks, with the loaded weights, to tell them apart
# a network larger than this is not built again to probe (a ViT-B's build and two forwards take 1.1 s on a 2-core
# CPU, a ViT-L's about four times that): its alternatives are judged by their settings alone, flags not at all
PROBE_MAX_PARAMETERS = 100_000_000


def unsaid_arguments(model) -> list[tuple[str, str, list[str]]]:
    """(argument, its default as text, the values that build the same tensors as it and another network, as
    --model-arg writes them) for each argument of the loaded model's `file.py:Class` architecture that nothing gave
    and the weights cannot tell; [] for any other architecture. Another network: other settings in its layers (built
    on the meta device), then, with the loaded weights in both, other scores for the same random inputs, so that a
    value that changes only how the network computes (a memory-saving flag, `inplace`) is no alternative."""
    import torch

    from .args_from_weights import _settings
    from .lazy import tensor_shapes
    from .meta_build import shapes_build
    from .registry import _build_net, _import_callable, _installed, arg_text
    spec = model.spec
    if ":" not in spec.arch or spec.arch.startswith("transformers:"):
        return []
    try:
        fn = _import_callable(spec.arch)
    except Exception:  # noqa: BLE001 - the load built it; nothing to say where it cannot be read again
        return []
    if _installed(sys.modules.get(getattr(fn, "__module__", "") or "")):  # a library's factory (timm, torchvision)
        return []
    choices = _alternatives(fn, spec)
    if not choices:
        return []

    def build(model_args, meta=True):
        try:
            made = lambda: _build_net(dataclasses.replace(spec, model_args=model_args))  # noqa: E731
            return shapes_build(made) if meta else made()
        except Exception:  # noqa: BLE001 - a value its constructor refuses
            return None
    base = build(dict(spec.model_args))
    if base is None:
        return []
    shapes, settings = tensor_shapes(base), _settings(base)
    weights = model.net.state_dict()
    probe = torch.randn(PROBE_IMAGES, spec.in_chans, *spec.input_size, generator=torch.Generator().manual_seed(0))

    def scores(net):
        try:
            if net is not model.net:
                net.load_state_dict(weights, strict=True)
            with torch.no_grad():
                out = net.eval()(probe.to(next(iter(weights.values())).device if net is model.net else "cpu"))
            return out.float().cpu() if isinstance(out, torch.Tensor) else None
        except Exception:  # noqa: BLE001 - harden changed the loaded network (a norm put back): not comparable
            return None
    was_training = model.net.training
    small = sum(t.numel() for t in weights.values()) <= PROBE_MAX_PARAMETERS
    own = scores(model.net) if small else None
    if own is not None and not torch.equal(own, scores(model.net)):
        own = None  # a network that answers at random: two of its own answers differ already
    model.net.train(was_training)
    start, out = time.perf_counter(), []
    for name, (default, values) in choices.items():
        alike = []
        for value in values:
            if time.perf_counter() - start > CHECK_SECONDS:
                return out
            net = build({**spec.model_args, name: value})
            if net is None or tensor_shapes(net) != shapes or _settings(net) == settings:
                continue
            if own is None and isinstance(value, bool):
                continue  # nothing to compare, and a flag often changes only how the network computes
            other = scores(build({**spec.model_args, name: value}, meta=False)) if own is not None else None
            if own is not None and (other is None or other.shape == own.shape and
                                    torch.allclose(other, own, rtol=1e-4, atol=1e-5)):
                continue  # the same scores, or none: a network that does not run with it is no alternative
            alike.append(arg_text(value))
        if alike:
            out.append((name, default, alike))
    return out
