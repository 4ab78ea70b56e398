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

from ..errors import HardenError

FILE_SECONDS = 20.0  # the most the candidates' builds and searches take before the file's callables are listed


def is_file_alone(arch: Any) -> bool:
    """Whether `--arch` names a Python file with no callable after it."""
    return isinstance(arch, str) and arch.endswith(".py") and ":" not in arch.replace(":\\", "")


def candidates(module) -> dict[str, Any]:
    """The module's own network classes and factory functions, by name (one object under several names once)."""
    import torch

    from .args_from_weights import _factory
    out: dict[str, Any] = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or not callable(obj) or getattr(obj, "__module__", None) != module.__name__ or \
                any(obj is seen for seen in out.values()):
            continue
        if issubclass(obj, torch.nn.Module) if inspect.isclass(obj) else _factory(obj):
            out[name] = obj
    return out


def callable_for_weights(path: str | os.PathLike, kw: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(the `file.py:name` architecture the weights fit, the constructor arguments found for it, the sentence that
    says so) for `kw['arch']`, a file given alone."""
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
    start = time.perf_counter()
    for name in found:
        inputs = _search_inputs(path, {**kw, "arch": f"{file}:{name}"})
        if inputs is None or time.perf_counter() - start > FILE_SECONDS:
            continue
        fn, offered, given, unmatched, _, _ = inputs
        if _fits(_scored(fn, {**offered, **given}, unmatched)):
            fits.append(name)
    if len(fits) == 1:
        return f"{file}:{fits[0]}", {}, (f"{fits[0]}, of the {len(found)} networks and factories it defines, builds "
                                         f"the network the weights hold (--arch {file}:{fits[0]} says it)")
    if len(fits) > 1:
        raise HardenError(f"--arch {file}: the weights fit {len(fits)} of the networks it defines "
                          f"({', '.join(fits[:8])}): give the one it was trained with, --arch {file}:NAME.")
    # none builds as it is: those whose constructor arguments the weights say (a WideResNet's depth and width)
    searched: dict[str, tuple[dict[str, Any], str]] = {}
    partly: list[str] = []
    for name in found:
        if time.perf_counter() - start > FILE_SECONDS:
            break
        try:
            got = _arguments_from_weights(path, {**kw, "arch": f"{file}:{name}"})
        except HardenError:  # found in part, the rest asked for: the weights fit it, but it cannot be built alone
            partly.append(name)
            continue
        if got is not None:
            searched[name] = got
    if len(searched) == 1:
        name, (args, said) = next(iter(searched.items()))
        return f"{file}:{name}", args, (f"{name}, of the {len(found)} networks and factories it defines, builds the "
                                        f"network the weights hold, {said}")
    listed = ", ".join(list(found)[:12]) + (", ..." if len(found) > 12 else "")
    if searched or partly:
        names = list(searched) + partly
        raise HardenError(f"--arch {file}: the weights fit {', '.join(names[:8])} of the networks it defines, each "
                          f"only with arguments to give: give --arch {file}:NAME (the error then names them).")
    raise HardenError(f"--arch {file}: none of the networks and factories it defines ({listed}) builds a network the "
                      f"weights fit; give --arch {file}:NAME naming the one that builds it, with its --model-arg "
                      "arguments.")
