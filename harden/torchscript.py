"""The weights of a TorchScript archive (`torch.jit.save` of a traced or scripted model), read without running it.

torch.load(weights_only=True) refuses these archives and torch.jit.load would build the scripted module (and run
its TorchScript `__setstate__` code). The archive's `data.pkl` is the module tree as a pickle: every module an
instance of a `__torch__.*` class whose state is a dict of attributes (submodules, parameters, buffers, flags), the
tensors stored as in any torch zip file. This unpickler builds the `__torch__.*` objects as plain attribute holders,
the tensors from the archive's storage records, and refuses every other global, so nothing in the file runs. The
state dict is the tensors of the module tree by their dotted attribute paths: the keys `module.state_dict()` gives,
so the architecture still comes from --arch (the archive's code is not used)."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import HardenError


def is_torchscript(path: Path) -> bool:
    """A torch zip file with TorchScript's records (code/ and constants.pkl beside data.pkl)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


class _ScriptObject:
    """A `__torch__.*` object: BUILD sets its attributes; an enum value (`Format('NCHW')`) keeps its arguments."""

    def __init__(self, *args):
        self._args = args


def _script_class(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (_ScriptObject,), {"__qualname__": name})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *rest) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, *rest) -> torch.Tensor:
    return data


_TYPED_LISTS = {"build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_complexlist",
                "restore_type_tag"}


def _first(value: Any, *rest) -> Any:
    return value


class _Unpickler(pickle._Unpickler):  # the Python one: REDUCE must take TorchScript's enums (args not a tuple)
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix, self.storages = archive, prefix, {}

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self.stack[-1](*(args if isinstance(args, tuple) else (args,)))

    dispatch[pickle.REDUCE[0]] = load_reduce

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return _script_class(f"{module}.{name}")
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch.jit._pickle" and name in _TYPED_LISTS:
            return _first  # typed lists and type tags of a scripted module's attributes: the plain value
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch" and name.endswith("Storage"):
            return name  # a storage type, read by persistent_load
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which harden never builds")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"an unknown persistent record {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            from torch.storage import _get_dtype_from_pickle_storage_type
            dtype = _get_dtype_from_pickle_storage_type(storage_type)
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self.storages[key] = flat[:numel]
        return self.storages[key]


def _tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:  # a module shared by two attributes is listed once, as in state_dict()
        return
    seen.add(id(obj))
    for name, value in vars(obj).items():
        if name == "_args":
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.clone()
        elif isinstance(value, _ScriptObject):
            _tensors(value, f"{prefix}{name}.", out, seen)


def read_torchscript_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        with zipfile.ZipFile(path) as z:
            data = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            if data is None:
                raise HardenError(f"{str(path)!r} is a TorchScript archive without data.pkl; re-save the model.")
            prefix = data[: -len("data.pkl")]
            with z.open(data) as f:
                root = _Unpickler(f, z, prefix).load()
    except pickle.UnpicklingError as e:
        raise HardenError(f"Refused to read the TorchScript archive {str(path)!r}: {e}. harden reads only its "
                          "modules' tensors.") from None
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, ValueError, TypeError, RuntimeError) as e:
        raise HardenError(f"{str(path)!r} is not a readable TorchScript archive ({type(e).__name__}: {e}).") from None
    if not isinstance(root, _ScriptObject):
        raise HardenError(f"{str(path)!r} is a TorchScript archive that holds no module.")
    state: dict[str, torch.Tensor] = {}
    _tensors(root, "", state, set())
    if not state:
        raise HardenError(f"The TorchScript archive {str(path)!r} holds no tensors.")
    return state
