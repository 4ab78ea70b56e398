"""The weights of a TorchScript archive (`torch.jit.save` of a traced or scripted model), read without running it.

torch.load(weights_only=True) refuses these archives and torch.jit.load would build the scripted module (and run
its TorchScript `__setstate__` code). The archive's `data.pkl` is the module tree as a pickle: every module an
instance of a `__torch__.*` class whose state is a dict of attributes (submodules, parameters, buffers, flags), the
tensors stored as in any torch zip file. inert_pickle.py reads it, every `__torch__.*` object an Inert holder of
its attributes, so nothing in the file runs. The state dict is the tensors of the module tree by their dotted
attribute paths: the keys `module.state_dict()` gives, so the architecture still comes from --arch (the archive's
code is not used)."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import HardenError
from .inert_pickle import READ_ERRORS, Inert, load_inert


def is_torchscript(path: Path) -> bool:
    """A torch zip file with TorchScript's records (code/ and constants.pkl beside data.pkl)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:  # a module shared by two attributes is listed once, as in state_dict()
        return
    seen.add(id(obj))
    for name, value in obj.fields.items():
        if not isinstance(name, str):  # a damaged archive
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.clone()
        elif isinstance(value, Inert) and value.inert_global.startswith("__torch__"):
            _tensors(value, f"{prefix}{name}.", out, seen)


def _python_class(scripted: str) -> str:
    """The Python class a TorchScript class was compiled from: `__torch__.timm.models.resnet.ResNet` ->
    timm.models.resnet.ResNet; a class of the script run as a program (`__torch__.Net`, or mangled,
    `__torch__.___torch_mangle_4.Net`) -> __main__.Net."""
    parts = [p for p in scripted.split(".")[1:] if not p.startswith("___torch_mangle_")]
    return ".".join(parts if len(parts) > 1 else ["__main__", *parts])


def _described(root: Inert) -> str:
    """The root module's Python class; torch's containers with their children's classes (a Sequential is rebuilt by
    code that lists them: pickled_model's description of one)."""
    from .pickled_model import CONTAINERS, container_description
    cls = _python_class(root.inert_global)
    if cls not in CONTAINERS:
        return cls
    return container_description(cls, [_python_class(v.inert_global).rpartition(".")[2] for v in root.fields.values()
                                        if isinstance(v, Inert) and v.inert_global.startswith("__torch__")])


def read_torchscript_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(the state dict, the Python class of the scripted or traced module)."""
    try:
        with zipfile.ZipFile(path) as z:
            root = load_inert(z)
    except KeyError:
        raise HardenError(f"{str(path)!r} is a TorchScript archive without data.pkl; re-save the model.") from None
    except READ_ERRORS as e:
        raise HardenError(f"{str(path)!r} is not a readable TorchScript archive ({type(e).__name__}: {e}).") from None
    if not isinstance(root, Inert) or not root.inert_global.startswith("__torch__"):
        raise HardenError(f"{str(path)!r} is a TorchScript archive that holds no module.")
    state: dict[str, torch.Tensor] = {}
    _tensors(root, "", state, set())
    if not state:
        raise HardenError(f"The TorchScript archive {str(path)!r} holds no tensors.")
    return state, _described(root)
