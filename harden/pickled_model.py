"""The weights of a whole pickled model (`torch.save(model)`, or `{'model': model, ...}`), read without running it.

Published code often saves the module object itself. torch.load(weights_only=True) refuses such a file (it names
the model's class), and a full torch.load would import that class and run whatever the pickle asks. Here the pickle
is read with inert_pickle.py: every module is an Inert holder of its pickled `__dict__`, in which an nn.Module keeps
`_parameters`, `_buffers` (and which of them are not persistent) and `_modules`. Walking those gives the keys and
tensors `module.state_dict()` would; the architecture still comes from --arch, and the pickled class's name is what
the error suggests for it. Only torch's zip format (the default since PyTorch 1.6) is read this way."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import HardenError
from .inert_pickle import READ_ERRORS, Inert, load_inert, load_inert_legacy


def is_module(obj: Any) -> bool:
    return isinstance(obj, Inert) and ("_parameters" in obj.fields or "_modules" in obj.fields)


def module_state(obj: Inert, prefix: str = "", out: dict[str, torch.Tensor] | None = None,
                 ancestors: frozenset[int] = frozenset()) -> dict[str, torch.Tensor]:
    """nn.Module.state_dict()'s keys and tensors, from a pickled module's fields (a module shared by two parents
    under both names, as state_dict() gives it; a module that holds its own ancestor, which only a damaged or crafted
    file can, is not followed)."""
    out = {} if out is None else out
    ancestors = ancestors | {id(obj)}
    fields = obj.fields
    skip = fields.get("_non_persistent_buffers_set")
    skip = skip if isinstance(skip, (set, frozenset)) else set()
    for name, value in _entries(fields.get("_parameters")):
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.clone()
    for name, value in _entries(fields.get("_buffers")):
        if isinstance(value, torch.Tensor) and name not in skip:
            out[prefix + name] = value.clone()
    for name, child in _entries(fields.get("_modules")):
        if is_module(child) and id(child) not in ancestors:
            module_state(child, f"{prefix}{name}.", out, ancestors)
    return out


def _entries(table: Any) -> list[tuple[str, Any]]:
    """A module's `_parameters`/`_buffers`/`_modules` table: its string-named entries (a damaged file may hold
    anything there)."""
    return [(k, v) for k, v in table.items() if isinstance(k, str)] if isinstance(table, dict) else []


COMPILED = "torch._dynamo.eval_frame.OptimizedModule"
CONTAINERS = ("torch.nn.modules.container.Sequential", "torch.nn.modules.container.ModuleList")


def _described(module: Inert) -> str:
    """A pickled module's class; for torch's containers, with their children's classes (a Sequential is rebuilt by
    code that lists them, not by its own constructor)."""
    if module.inert_global not in CONTAINERS:
        return module.inert_global
    children = [c.inert_global if is_module(c) else type(c).__name__
                for _, c in _entries(module.fields.get("_modules"))]
    return container_description(module.inert_global, children)


def container_description(cls: str, children: list[str]) -> str:
    """`Sequential(Conv2d, ReLU, ...)`: a torch container's class with its children's (the first six)."""
    shown = ", ".join(children[:6]) + (f", ... ({len(children)} in all)" if len(children) > 6 else "")
    return f"{cls.rpartition('.')[2]}({shown})"


def _with_state_dicts(obj: Any, classes: list[str], depth: int = 0, architectures: list | None = None) -> Any:
    """The container with each pickled module replaced by its state dict (formats.select then finds it as it finds
    any state dict, `--key` included); `classes` collects the modules' class names, `architectures` what each says of
    its own architecture (`own_architecture`)."""
    if isinstance(obj, Inert) and obj.inert_global == COMPILED and obj.args and is_module(obj.args[0]):
        obj = obj.args[0]  # torch.compile's wrapper pickles as (its class, (the module, the compile settings))
    if is_module(obj):
        inner, seen = obj, {id(obj)}
        while (set((inner.fields.get("_modules") or {})) == {"module"} and is_module(inner.fields["_modules"]["module"])
               and id(inner.fields["_modules"]["module"]) not in seen):
            inner = inner.fields["_modules"]["module"]  # DataParallel / DistributedDataParallel: the wrapped model
            seen.add(id(inner))
        classes.append(_described(inner))
        state = module_state(inner)  # once: read by own_architecture, and the file's keys where nothing wraps it
        if architectures is not None:
            from .formats import class_names
            from .models.zoo_attributes import pickled
            # its preprocessing as attributes (Cadene's pretrainedmodels'), below what its class says of itself
            said = pickled(inner, own_architecture(inner, state))
            names = class_names(inner.fields)  # the transfer-learning tutorials' `model.class_to_idx = ...`
            architectures.append({**(said or {}), "label_names": names} if names else said)
        return state if inner is obj else module_state(obj)
    if depth >= 4:
        return obj
    held = _held_model(obj)
    if held is not None:  # a training framework's object that holds the model (fastai's exported Learner)
        found = _with_state_dicts(held, classes, depth + 1, architectures)
        said = fastai_preprocessing(obj)
        if said and architectures and architectures[-1] is not None:
            architectures[-1].update(said)  # the Learner's data pipeline: how the model's input was made
        return found
    if isinstance(obj, dict):
        return {k: _with_state_dicts(v, classes, depth + 1, architectures) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_with_state_dicts(v, classes, depth + 1, architectures) for v in obj]
    return obj


HOLDER_FIELDS = ("model", "net", "network")  # where an object that is not a module keeps one (Learner.model)


def _held_model(obj: Any) -> Any:
    """The module a pickled object that is not one keeps as an attribute (fastai's `learn.export()` pickles the whole
    Learner: its `model`, beside data loaders emptied of data, a loss and callbacks): its field named model, net or
    network; else None."""
    if not isinstance(obj, Inert) or is_module(obj):
        return None
    return next((obj.fields[f] for f in HOLDER_FIELDS if is_module(obj.fields.get(f))), None)


def _inert_objects(root: Any, limit: int = 20000):
    """The Inert objects reachable from `root` through fields, lists, tuples and dicts (each once, at most `limit`
    nodes visited: an exported Learner's data loaders are empty, but a pickle may hold anything)."""
    from .inert_pickle import ITEMS, LIST
    stack, seen, visited = [root], set(), 0
    while stack and visited < limit:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        visited += 1
        if isinstance(obj, Inert):
            yield obj
            stack.extend(obj.fields.values())
            stack.extend(obj.args)
            for extra in (obj.fields.get(ITEMS), obj.fields.get(LIST)):
                if isinstance(extra, dict):
                    stack.extend(extra.values())
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)


def _three(value: Any) -> list[float] | None:
    """A per-channel statistic of fastai's Normalize (a 1 x C x 1 x 1 tensor) as C floats."""
    if isinstance(value, torch.Tensor) and value.numel() in (1, 3) and value.is_floating_point():
        return [float(v) for v in value.flatten()]
    return None


RESIZE_MODES = {"crop": "center", "squish": "squash"}  # fastai's ResizeMethod -> timm's crop_mode


def fastai_preprocessing(learner: Inert) -> dict[str, Any]:
    """What a fastai Learner's data pipeline says of the model's input (its loaders kept their transforms when
    exported): Normalize's mean and std (after IntToFloatTensor's division by 255: harden's [0, 1] units) and
    Resize's size and method (crop: the centre of the image's shorter side; squish: the whole image, stretched), as
    checkpoint metadata. Empty where the object is no fastai Learner or says none."""
    if not learner.inert_global.startswith("fastai."):
        return {}
    out: dict[str, Any] = {}
    for obj in _inert_objects(learner.fields.get("dls")):
        name = obj.inert_global.rpartition(".")[2]
        if name == "Normalize" and "mean" not in out:
            mean, std = _three(obj.fields.get("mean")), _three(obj.fields.get("std"))
            if mean and std and len(mean) == len(std) and all(v > 0 for v in std):
                out["mean"], out["std"] = mean, std
        elif name == "Resize" and "input_size" not in out:
            size, method = obj.fields.get("size"), obj.fields.get("method")
            if isinstance(size, Inert) and size.args and isinstance(size.args[0], (tuple, list)):
                size = size.args[0]  # fastcore's fastuple, a tuple subclass: its items are its constructor's
            size = list(size) if isinstance(size, (tuple, list)) else [size, size] if isinstance(size, int) else None
            if size and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size) and \
                    str(method) in RESIZE_MODES:
                out["input_size"], out["crop_pct"] = size, 1.0
                out["crop_mode"] = RESIZE_MODES[str(method)]
    return out


def own_architecture(module: Inert, state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The metadata that makes a pickled module its own architecture, or None: a timm model says its timm name,
    class count, channels and preprocessing in its attributes (`pretrained_cfg`, as timm's hub config does); a
    torchvision model's factory is the one that builds its class with its weights' names and shapes; a tree of
    torch.nn's layers is rebuilt as such (models/torch_layers.py). `state`: the module's `module_state`."""
    fields = module.fields
    cfg = fields.get("pretrained_cfg")
    if module.inert_global.startswith("timm.") and isinstance(cfg, dict) and isinstance(cfg.get("architecture"), str):
        import timm
        from .models.config import timm_meta
        arch = cfg["architecture"]
        count = fields.get("num_classes")
        head = state.get(f"{cfg.get('classifier')}.weight") if isinstance(cfg.get("classifier"), str) else None
        if head is not None and head.dim() >= 2 and head.shape[0] != count:
            count = int(head.shape[0])  # a head replaced by hand (model.fc = nn.Linear(512, 5)): the attribute lags
        if timm.is_model(arch) and isinstance(count, int) and count > 0:
            from .models.config import channel_statistics
            meta = timm_meta({"pretrained_cfg": cfg, "num_classes": count}, arch)
            if isinstance(fields.get("in_chans"), int):  # create_model(..., in_chans=1): the config's stay RGB's
                meta["in_chans"] = fields["in_chans"]
                for key in ("mean", "std"):
                    if meta.get(key):
                        meta[key] = channel_statistics(meta[key], fields["in_chans"])
            args = {}
            embed = (fields.get("_modules") or {}).get("patch_embed")
            size = embed.fields.get("img_size") if is_module(embed) else None
            if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
                # a ViT built for another size (create_model(..., img_size=64)) keeps its config's 224
                args["img_size"] = meta["input_size"] = list(size)
                meta.pop("test_input_size", None)
            if isinstance(fields.get("global_pool"), str) and embed is not None:  # a ViT's pooling: its head's keys
                args["global_pool"] = fields["global_pool"]
            if args:
                meta["model_args"] = args
            if _builds_the_same(arch, meta, state):
                return meta
            # built with other arguments than its name's (create_model(..., depth=4)), or changed after (pruned
            # widths and heads): the pickled tree of timm's modules, with the name's preprocessing
            from .models.torch_layers import describe, meta_for
            tree = describe(module)
            if tree is None:  # a tree it cannot rebuild (a parametrization's classes): the name, as before, whose
                return meta   # load then fits the file's tensors (pruning masks, weight norm) or says why not
            return {**{k: v for k, v in meta.items() if k not in ("arch", "model_args", "num_classes")},
                    **meta_for(tree)}
        return None
    if module.inert_global.startswith("torchvision.models."):
        from .models.torchvision_match import factories_fitting
        rows = _head_rows(module, state)
        names = factories_fitting(state, rows, module.inert_global) if rows else []
        if len(names) == 1:
            return {"arch": f"torchvision.models:{names[0]}", "in_chans": 3, "num_classes": rows}
        # no factory builds it (CIFAR code's `m.conv1 = nn.Conv2d(3, 64, 3, 1, 1); m.maxpool = nn.Identity()`): the
        # pickled tree of torchvision's modules, as it was saved (its transform, ImageNet's at 224, is not taken)
    from .models.torch_layers import describe, meta_for
    tree = describe(module)
    return None if tree is None else meta_for(tree)


def _builds_the_same(arch: str, meta: dict[str, Any], state: dict[str, torch.Tensor]) -> bool:
    """Whether timm's `arch`, built with what `meta` says, takes the pickled state as a load would (its names and
    shapes, pruning masks and weight norms put back; built on the meta device: no memory, no initialisation)."""
    import timm
    from .models.meta_build import shapes_build
    try:
        net = shapes_build(lambda: timm.create_model(arch, pretrained=False, num_classes=int(meta["num_classes"]),
                                                     in_chans=int(meta.get("in_chans", 3)),
                                                     **dict(meta.get("model_args") or {})))
    except Exception:  # noqa: BLE001 - a constructor that refuses what the pickle says: not the same network
        return False
    from .checkpoint import weights_fit
    try:  # as loading fits them: pruning masks and weight norms put back on the layers
        return weights_fit(net, state)
    except Exception:  # noqa: BLE001 - tensors the fitting cannot take onto a meta-device build: the tree decides
        return False


def _head_rows(module: Inert, state: dict[str, torch.Tensor]) -> int | None:
    """A pickled torchvision model's class count: its last linear layer's rows (a head replaced by hand leaves an
    attribute such as ViT's num_classes behind), else its num_classes (SqueezeNet's head is a convolution)."""
    from .models.config import last_linear
    found = last_linear(state)
    if found:
        return found[1]
    count = module.fields.get("num_classes")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


def read_pickled_model(path: Path) -> tuple[Any, list[str], list]:
    """(the file's object with its pickled modules as state dicts, the modules' class names, the metadata of each
    that is its own architecture, else None: `own_architecture`)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                obj = load_inert(z)
        else:  # torch's legacy format (before 1.6): pickles, then the storages' bytes
            with open(path, "rb") as f:
                obj = load_inert_legacy(f)
    except READ_ERRORS as e:
        from .formats import cut_short
        raise HardenError(f"{str(path)!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})."
                          f"{cut_short(Path(path))}") from None
    classes: list[str] = []
    architectures: list = []
    return _with_state_dicts(obj, classes, architectures=architectures), classes, architectures


def arch_hint(classes: list[str], holds: str = "pickles a whole") -> str:
    """What to pass as --arch for the first pickled module's class (`holds`: how the file holds it)."""
    if not classes:
        return ""
    module, _, name = classes[0].rpartition(".")
    head = f" The file {holds} {classes[0]}: its weights are read without running it, and the architecture "
    if classes[0].startswith(tuple(c.rpartition(".")[2] + "(" for c in CONTAINERS)):
        return head + ("is a function that builds the same container of the same modules: --arch "
                       "path/to/file.py:make, where make() returns it as the training code built it (the file's keys "
                       "then say whether it matches).")
    if module.split(".")[0] == "timm":
        return head + "is the timm name it was created with: --arch NAME (timm.list_models() lists them)."
    if module == "__main__":  # defined in the training script itself, run as a program
        return head + (f"is that script's class: --arch path/to/train.py:{name} (the script that defined it; importing "
                       "it runs its top-level code, so its training belongs under `if __name__ == '__main__':`), "
                       "with the constructor's arguments as --num-classes and --model-arg.")
    if module.split(".")[0] == "torchvision":
        return head + ("comes from torchvision's factory of that name: --arch torchvision.models:FACTORY (e.g. "
                       "torchvision.models:resnet50).")
    return head + (f"comes from --arch, e.g. --arch {module}:{name} (its package importable from here) or --arch "
                   f"path/to/{module.replace('.', '/')}.py:{name}, with the constructor's arguments as --num-classes "
                   "and --model-arg.")
