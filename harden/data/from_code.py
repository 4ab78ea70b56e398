"""Data named on the command line as the user's own Python code: `--data file.py:name` (or `package.module:name`,
imported as `--arch` imports one), `--unlabeled pool.py:name`. What it names (a dataset, a loader, a DataModule,
arrays, or a function that makes one when called with no arguments) is read as the library reads such objects
(dataset_objects.py); a hardened checkpoint remembers it with its file's absolute path."""
from __future__ import annotations

from typing import Any

from ..errors import HardenError
from .dataset_objects import is_dataset


def is_code_spec(spec: Any) -> bool:
    """`path/to/file.py:name` or `package.module:name` as --data: data made by the user's own Python code."""
    if not isinstance(spec, str):
        return False
    module, sep, name = spec.rpartition(":")
    if not sep or not name or not all(p.isidentifier() for p in name.split(".")) or module in ("hf", "torchhub"):
        return False
    return module.endswith(".py") or all(p.isidentifier() for p in module.split("."))


def remembered_code(spec: str) -> str:
    """A code spec with its file's absolute path, so that a checkpoint naming it finds it from any folder."""
    from ..checkpoint import remembered_arch
    return remembered_arch(spec)


def import_data(spec: str, flag: str = "--data") -> Any:
    """What `file.py:name` names, called with no arguments where it is a callable (a function, a class) rather than
    a dataset: the user's own code makes the data."""
    from ..models.registry import _import_callable
    from .base import Data
    obj = _import_callable(spec, "Data", flag, need_callable=False)
    if callable(obj) and not is_dataset(obj) and not isinstance(obj, Data):
        try:
            obj = obj()
        except HardenError:
            raise
        except Exception as e:  # whatever the user's code raises: said as its failure, not harden's
            raise HardenError(f"{flag} {spec!r}: calling {spec.rpartition(':')[2]}() raised {type(e).__name__}: "
                              f"{str(e).strip()[:300]}. harden calls it with no arguments: give a function that "
                              "builds the dataset with its own settings.") from e
    return obj


def data_from_code(spec: str, workers: int | None = None, fit: Any = None) -> Any:
    """--data `file.py:name`: a dataset, a DataLoader, (train, test) datasets, a DatasetDict or arrays (or a callable
    that makes one), read as the library reads them (`fit`: the model's transform, for dataset images of many
    sizes)."""
    from .arrays import from_arrays, is_arrays
    from .base import Data
    obj = import_data(spec)
    if isinstance(obj, Data):
        return obj
    if is_dataset(obj) or isinstance(obj, (tuple, list)) and any(map(is_dataset, obj)):
        data = from_arrays(obj, source=spec, fit=fit)
        if workers is not None:  # --workers: the processes that read its items while training
            data.from_dataset["workers"] = int(workers)
        return data
    if not is_arrays(obj):
        raise HardenError(f"--data {spec!r} gave {type(obj).__name__}; it names a torch Dataset or DataLoader, "
                          "(train, test) datasets, a Hugging Face Dataset or DatasetDict, or images and labels as "
                          "(x, y) or (x_train, y_train, x_test, y_test) arrays (or a function that returns one).")
    return from_arrays(obj, source=spec)


def code_hint(path) -> str:
    """What to say of a Python file given as --data without the name of what in it makes the data: its top-level
    functions, classes and assignments, read from its syntax (nothing in it runs)."""
    import ast
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    names = []  # in the file's order
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name) and not t.id.isupper()]
    names = [n for n in names if not n.startswith("_")]
    shown = ", ".join(f"{path}:{n}" for n in names[:6]) + (", ..." if len(names) > 6 else "")
    return (f"{str(path)!r} is Python code: name what in it makes the data, as --data {path}:NAME (a dataset, a "
            "DataLoader, a DataModule, arrays, or a function that returns one when called with no arguments)"
            + (f"; it defines {shown}." if names else "."))
