"""A torch zip file's pickle read without running anything it names.

torch.load(weights_only=True) refuses a pickle that names a class or function outside its allowlist: a whole
pickled model (`torch.save(model)`), a TorchScript archive's module tree, a Lightning checkpoint's Hydra config.
This unpickler builds every such global as an Inert placeholder: a holder of the arguments and state the pickle
gives it, whose class is never imported and whose code never runs. Only its own tensor rebuilders, dict, set and
the archive's storage records are real. What a caller then takes from the result is tensors, found by walking the
placeholders' fields (pickled_model.py, torchscript.py)."""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import torch


class Inert:
    """An object of a class the file names (module.name in `inert_global`): constructor arguments in `args`,
    pickled state in `fields` (a dict; a tuple's slots merged in). Nothing of the file's choosing is ever called on
    it, and its fields are kept apart from its attributes, so a second BUILD cannot reach a method of the file's."""
    inert_global = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ calls __new__ alone
        obj = super().__new__(cls)
        obj.args, obj.fields = args, {}
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict, slots)
        if isinstance(state, dict):
            self.fields.update(state)
        else:
            self.fields["__state__"] = state

    # a dict or list subclass (Lightning's AttributeDict, EasyDict, addict's Dict: research code's configs saved
    # beside the weights) is filled by SETITEMS / APPENDS: its items kept as fields too
    def __setitem__(self, key: Any, value: Any) -> None:
        self.fields.setdefault(ITEMS, {})[key] = value

    def append(self, value: Any) -> None:
        self.fields.setdefault(LIST, []).append(value)

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)


ITEMS, LIST = "__items__", "__list__"  # Inert fields: a dict subclass's items, a list subclass's elements


def as_mapping(value: Any) -> dict | None:
    """A dict, or the items of a dict subclass read inert; None for anything else."""
    if isinstance(value, dict):
        return value
    if isinstance(value, Inert) and isinstance(value.fields.get(ITEMS), dict):
        return value.fields[ITEMS]
    return None


def inert_class(module: str, name: str) -> type:
    return type(name, (Inert,), {"inert_global": f"{module}.{name}", "__qualname__": name})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *rest) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, *rest) -> torch.Tensor:
    return data


def _rebuild_from_type(func, _type, args, _state=None):  # a tensor subclass: the tensor, not the subclass
    return func(*args)


class _OrderedDict(dict):
    """collections.OrderedDict as pickled: a dict, and the attributes state_dict() sets on it (`_metadata`, BUILD's
    state) dropped."""

    def __setstate__(self, state: Any) -> None:
        pass


def _first(value: Any, *rest) -> Any:
    return value


# TorchScript's typed lists and type tags of a module's attributes: the plain value
_TYPED_LISTS = {"build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_complexlist",
                "restore_type_tag"}
_REAL = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor, ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
         ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
         ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
         ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
         ("collections", "OrderedDict"): _OrderedDict, ("builtins", "set"): set, ("__builtin__", "set"): set,
         ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset}


class InertUnpickler(pickle._Unpickler):  # the Python one: REDUCE must take TorchScript's enums (args not a tuple)
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix, self.storages = archive, prefix, {}
        self.classes: dict[str, type] = {}

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self.stack[-1](*(args if isinstance(args, tuple) else (args,)))

    dispatch[pickle.REDUCE[0]] = load_reduce

    def find_class(self, module: str, name: str):
        if (module, name) in _REAL:
            return _REAL[(module, name)]
        if module == "torch.jit._pickle" and name in _TYPED_LISTS:
            return _first
        if module == "torch" and name.endswith("Storage"):
            return name  # a storage type, read by persistent_load
        key = f"{module}.{name}"
        if key not in self.classes:
            self.classes[key] = inert_class(module, name)
        return self.classes[key]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"an unknown persistent record {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            from torch.storage import _get_dtype_from_pickle_storage_type
            dtype = (_get_dtype_from_pickle_storage_type(storage_type) if isinstance(storage_type, str)
                     else torch.uint8)  # an untyped storage
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self.storages[key] = flat[:numel]
        return self.storages[key]


# what reading a damaged archive raises, besides pickle's own error: zipfile's, struct's (a truncated opcode
# argument), a length field's MemoryError/OverflowError, and what a wrong type in a damaged stack gives
READ_ERRORS = (KeyError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError,
               RuntimeError, AttributeError, IndexError, struct.error, MemoryError, OverflowError, NotImplementedError)


class _PlainUnpickler(pickle.Unpickler):
    """The legacy format's header records (magic number, protocol, system info, storage keys): plain data only."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"{module}.{name} in a legacy checkpoint's header")


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's MAGIC_NUMBER


class LegacyInertUnpickler(InertUnpickler):
    """The main pickle of torch's legacy format (torch.save before 1.6, or `_use_new_zipfile_serialization=False`):
    its storages follow it in the file; each is given here as an empty tensor that load_inert_legacy fills after."""

    def __init__(self, file: BinaryIO, size: int):
        pickle._Unpickler.__init__(self, file)
        self.storages, self.classes, self.size = {}, {}, size

    def persistent_load(self, pid):
        kind = pid[0].decode("ascii") if isinstance(pid, bytes) else pid[0] if isinstance(pid, tuple) else None
        if kind == "module":  # a pickled module's class with its source: the class (an Inert placeholder)
            return pid[1]
        if kind != "storage" or len(pid) != 6:
            raise pickle.UnpicklingError(f"an unknown persistent record {pid!r:.80}")
        _, storage_type, key, _location, numel, view = pid
        from torch.storage import _get_dtype_from_pickle_storage_type
        if key not in self.storages:
            dtype = _get_dtype_from_pickle_storage_type(storage_type)
            if not 0 <= int(numel) * dtype.itemsize <= self.size:  # a damaged count: not allocated
                raise pickle.UnpicklingError(f"storage {key}: {numel} elements in a file of {self.size} bytes")
            self.storages[key] = torch.zeros(int(numel), dtype=dtype)
        root = self.storages[key]
        if view is not None:  # (view key, offset, size) in elements of the root storage
            _, offset, size = view
            return root[int(offset):int(offset) + int(size)]
        return root


class PlainInertUnpickler(InertUnpickler):
    """A plain pickle (`pickle.dump(model.state_dict(), f)`, not torch.save): a tensor pickles its storage as the
    bytes of a one-storage legacy torch file (torch.storage._load_from_bytes), read here with load_inert_legacy."""

    def __init__(self, file: BinaryIO):
        pickle._Unpickler.__init__(self, file)
        self.storages, self.classes = {}, {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda raw: load_inert_legacy(io.BytesIO(raw), len(raw))
        if (module, name) == ("_codecs", "encode"):  # protocol 2 writes bytes as encode(text, 'latin1')
            return lambda text, encoding="utf-8": str(text).encode(str(encoding))
        real = _numpy_data().get((module, name))  # weights saved as numpy arrays: arrays, as torch's loader reads them
        return real if real is not None else super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"a persistent record {pid!r:.80} in a plain pickle")


def _numpy_data() -> dict[tuple[str, str], Any]:
    """numpy's array and scalar rebuilders, its array and dtype classes: the numpy part of what torch's weights-only
    loader is given here too (formats.data_only_globals), by the names pickles give them. Plain data: an array of
    objects holds what this unpickler made of them (placeholders), nothing of numpy's runs the file's code."""
    import numpy as np

    from .formats import data_only_globals
    out: dict[tuple[str, str], Any] = {}
    for item in data_only_globals():
        obj, name = item if isinstance(item, tuple) else (item, f"{item.__module__}.{item.__qualname__}")
        if name.startswith("numpy"):
            module, _, attr = name.rpartition(".")
            out[(module, attr)] = obj
    out[("numpy", "ndarray")], out[("numpy", "dtype")] = np.ndarray, np.dtype
    numeric = getattr(np, "_core", None) or np.core  # protocol 5 (pickle.HIGHEST_PROTOCOL) rebuilds arrays from bytes
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        out[(module, "_frombuffer")] = numeric.numeric._frombuffer
    return out


def load_inert_legacy(f: BinaryIO, size: int | None = None) -> Any:
    """The object a legacy-format torch file holds, every global an Inert placeholder, its tensors read from the
    storages that follow the pickle (a little-endian element count, then the raw elements, per storage). A file that
    is a plain pickle instead (no torch magic number first) is read as one (PlainInertUnpickler)."""
    start = f.tell()
    try:
        magic = _PlainUnpickler(f).load()
    except pickle.UnpicklingError:  # a global first: a plain pickle's object, not the legacy header's number
        magic = None
    if magic != LEGACY_MAGIC:
        f.seek(start)
        return PlainInertUnpickler(f).load()
    _PlainUnpickler(f).load()  # protocol version
    _PlainUnpickler(f).load()  # system info: endianness, type sizes
    unpickler = LegacyInertUnpickler(f, os.fstat(f.fileno()).st_size if size is None else size)
    obj = unpickler.load()
    for key in _PlainUnpickler(f).load():
        root = unpickler.storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        raw = f.read(int(numel) * root.element_size())
        if numel != root.numel() or len(raw) != numel * root.element_size():
            raise EOFError(f"storage {key}: {numel} elements recorded, {root.numel()} expected")
        if numel:
            root.copy_(torch.frombuffer(bytearray(raw), dtype=root.dtype))
    return obj


def load_inert(archive: zipfile.ZipFile, member: str = "data.pkl") -> Any:
    """The object a torch zip archive's `member` pickle holds, every global an Inert placeholder."""
    name = next((n for n in archive.namelist() if n.endswith("/" + member) or n == member), None)
    if name is None:
        raise KeyError(member)
    prefix = name[: -len(member)]
    with archive.open(name) as f:
        return InertUnpickler(f, archive, prefix).load()
