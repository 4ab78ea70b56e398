"""`--arch path/to/file.py` with no callable named: the one its file defines whose network the checkpoint's weights
fit, found by building each on the meta device (no memory, no initialisation), as the argument search does
(args_from_weights.py). Published code keeps several networks in one file (pytorch-cifar's resnet.py: `BasicBlock`,
`Bottleneck`, `ResNet`, `ResNet18`, ... `ResNet152`), and its checkpoints rarely say which one they hold. Only
network classes and functions that read as factories (assignments and a return) are built, never a `test()` or a
`main()`; one that fits is taken and said, several that fit (under other names than one object's) are an error that
lists them, and none is an error that lists what the file defines."""
from __future__ import annotations

import inspect
import os
import time
from typing import Any

from ..errors import HardenError, WeightsDoNotFit

FILE_SECONDS = 20.0  # the most the candidates' builds and searches take before the file's callables are listed


def is_file_alone(arch: Any) -> bool:
    """Whether `--arch` names a Python file, or a package's folder (`models/`), with no callable after it."""
    if not isinstance(arch, str) or ":" in arch.replace(":\\", ""):
        return False
    return arch.endswith(".py") or ("/" in arch or "\\" in arch or os.path.isdir(arch)) and \
        os.path.isfile(os.path.join(os.path.expanduser(arch), "__init__.py"))


def candidates(module) -> dict[str, Any]:
    """The module's own network classes and factory functions, by name (one object under several names once); a
    package's, those its submodules define and it exports (`from .resnet import *`)."""
    import torch

    from .args_from_weights import _factory
    out: dict[str, Any] = {}
    own = (module.__name__, *((f"{module.__name__}.",) if hasattr(module, "__path__") else ()))
    for name, obj in vars(module).items():
        where = getattr(obj, "__module__", None) or ""
        if name.startswith("_") or not callable(obj) or not (where == own[0] or len(own) > 1 and
                                                              where.startswith(own[1])) or \
                any(obj is seen for seen in out.values()):
            continue
        if issubclass(obj, torch.nn.Module) if inspect.isclass(obj) else _factory(obj):
            out[name] = obj
    return out


def callable_for_weights(path: str | os.PathLike, kw: dict[str, Any], search: bool = True
                         ) -> tuple[str, dict[str, Any], str]:
    """(the `file.py:name` architecture the weights fit, the constructor arguments found for it, the sentence that
    says so) for `kw['arch']`, a file given alone. `search` False: only those that build it as they are (one build
    each, for an error's hint: the searches cost seconds a candidate)."""
    from ..checkpoint import _arguments_from_weights, _search_inputs
    from .args_from_weights import _fits, _scored
    from .registry import _import_file
    file = str(kw["arch"])
    module = _import_file(file, file)
    found = candidates(module)
    if not found:
        raise HardenError(f"--arch {file}: the file defines no network class (an nn.Module subclass) or factory "
                          "function to build; give --arch file.py:callable naming what builds the network.")
    fits: list[str] = []
    built: dict[str, Any] = {}
    start = time.perf_counter()
    for name in found:
        inputs = _search_inputs(path, {**kw, "arch": f"{file}:{name}"})
        if inputs is None or time.perf_counter() - start > FILE_SECONDS:
            continue
        fn, offered, given, unmatched = inputs[:4]
        if _fits(_scored(fn, {**offered, **given}, unmatched)):
            fits.append(name)
            built[name] = _network_built(fn, {**offered, **given})
    same = _one_network(fits, built, found)
    if same is not None:  # `def small_net(**kw): return SmallNet(**kw)` beside its class: one network, two names
        others = [n for n in fits if n != same]
        return f"{file}:{same}", {}, (f"{same}, of the {len(found)} networks and factories it defines, builds the "
                                      f"network the weights hold (--arch {file}:{same} says it"
                                      + (f"; {', '.join(others)} build{'s' * (len(others) == 1)} the same network)"
                                         if others else ")"))
    if len(fits) > 1:
        raise HardenError(f"--arch {file}: the weights fit {len(fits)} of the networks it defines "
                          f"({', '.join(fits[:8])}): give the one it was trained with, --arch {file}:NAME.")
    if not search:
        raise HardenError(f"--arch {file}: none of its networks builds the weights' network as it is.")
    # none builds as it is: those whose constructor arguments the weights say (a WideResNet's depth and width)
    searched: dict[str, tuple[dict[str, Any], str]] = {}
    partly: dict[str, HardenError] = {}
    for name in found:
        if time.perf_counter() - start > FILE_SECONDS:
            break
        if _passes_through(file, name, found):  # searched as the class it hands everything to
            continue
        try:
            got = _arguments_from_weights(path, {**kw, "arch": f"{file}:{name}"})
        except WeightsDoNotFit:  # one of the network's blocks, repeated in it
            continue
        except HardenError as e:  # found in part, the rest asked for: the weights fit it, but it cannot be built alone
            partly[name] = e
            continue
        if got is not None:
            searched[name] = got
    if len(searched) > 1:  # `def make(**kwargs): return Net(**kwargs)` beside its class, both searched alike
        for name, (args, _) in searched.items():  # built once more only here (the file read again for each)
            inputs = _search_inputs(path, {**kw, "arch": f"{file}:{name}"})
            built[name] = _network_built(inputs[0], {**inputs[1], **inputs[2], **args}) if inputs else None
        same = _one_network(list(searched), built, found)
        if same is not None:
            searched = {same: searched[same]}
    if len(searched) == 1:
        name, (args, said) = next(iter(searched.items()))
        return f"{file}:{name}", args, (f"{name}, of the {len(found)} networks and factories it defines, builds the "
                                        f"network the weights hold, {said}")
    listed = ", ".join(list(found)[:12]) + (", ..." if len(found) > 12 else "")
    if len(partly) == 1 and not searched:  # the one network the weights fit: what it still needs, as for file.py:NAME
        name, error = next(iter(partly.items()))
        raise type(error)(f"--arch {file}: of the {len(found)} networks and factories it defines, the weights fit "
                          f"{name} (--arch {file}:{name}) alone. {error}") from None
    if searched or partly:
        names = list(searched) + list(partly)
        raise HardenError(f"--arch {file}: the weights fit {', '.join(names[:8])} of the networks it defines, each "
                          f"only with arguments to give: give --arch {file}:NAME (the error then names them).")
    raise HardenError(f"--arch {file}: none of the networks and factories it defines ({listed}) builds a network the "
                      f"weights fit; give --arch {file}:NAME naming the one that builds it, with its --model-arg "
                      "arguments.")


def _passes_through(file: str, name: str, found: dict[str, Any]) -> bool:
    """Whether `name` is a factory that hands all it takes to another of the file's networks and nothing of its own
    (bearpaw's `def resnet(**kwargs): return ResNet(**kwargs)`): the same network, its search the same."""
    from .registry import _import_callable
    try:
        fn = _import_callable(f"{file}:{name}")
        target = getattr(fn, "forwarded_to", None)
        return any(target is other for other in found.values()) and \
            list(inspect.signature(fn).parameters) == list(inspect.signature(target).parameters)
    except (HardenError, TypeError, ValueError):
        return False


def _network_built(fn, model_args: dict[str, Any]) -> tuple | None:
    """(the class of the network a callable builds, the names and shapes of its tensors), built on the meta device."""
    import torch

    from .args_from_weights import _built
    from .lazy import tensor_shapes
    net = _built(fn, model_args)
    return (type(net), tensor_shapes(net)) if isinstance(net, torch.nn.Module) else None


def _one_network(fits: list[str], built: dict[str, Any], found: dict[str, Any]) -> str | None:
    """The name to take where the weights fit one network only: the one that fits, or where several names build the
    same class with the same tensors, the class itself (else the first factory); None where they build different
    networks (ResNet18 and a ResNet18 with another block: the user's choice)."""
    if len(fits) == 1:
        return fits[0]
    if not fits or built[fits[0]] is None or any(built[n] != built[fits[0]] for n in fits[1:]):
        return None
    return next((n for n in fits if found[n] is built[n][0]), fits[0])
