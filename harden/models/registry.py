"""Model registry (timm-style: one factory, models found by name) and the [0,1]-pixel wrapper."""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
from importlib.machinery import SourceFileLoader
import inspect
import itertools
import json
import os
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..compiling import COMPILED, network
from ..errors import ConstructorFailed, DoesNotRun, HardenError, MissingArguments, NoInputGradient
from .meta_build import shapes_build
from ..outputs import (BINARY_SIGMOID, LOG_WHERE_PROBABILITIES, LOGITS_KEY, ScoresOf, as_scores, attach_scores,
                       class_count, log_where_probabilities)

_BUILTINS: dict[str, Callable[..., nn.Module]] = {}

FILE_MODULE_PREFIX = "harden_arch_"  # the module name a file imported by its path is given (file.py:name)


def register_model(name: str):
    def deco(fn: Callable[..., nn.Module]):
        _BUILTINS[name] = fn
        return fn
    return deco


def list_builtin() -> list[str]:
    _ensure_builtins()
    return sorted(_BUILTINS)


def _ensure_builtins() -> None:
    from . import builtin  # noqa: F401  (registers on import)


CHANNEL_ORDER = "channel_order"  # metadata (spec.extra): "bgr" for a network fed blue, green, red (Caffe's)


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model from its weights; stored in checkpoint metadata."""
    arch: str
    num_classes: int
    in_chans: int = 3
    input_size: tuple[int, int] = (32, 32)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    data: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # the evaluation transform of images read from files (timm's data-config names); arrays are only resized
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "center"
    model_args: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of timm.create_model

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def is_known_arch(arch: str) -> bool:
    _ensure_builtins()
    from .exported_program import ARCH as PROGRAM_ARCH
    from .onnx_graph import ARCH as ONNX_ARCH
    from .torch_layers import ARCH as LAYERS_ARCH
    if arch in _BUILTINS or ":" in arch or arch in (ONNX_ARCH, PROGRAM_ARCH, LAYERS_ARCH):
        return True
    import timm
    return timm.is_model(arch)


def _build_net(spec: ModelSpec) -> nn.Module:
    _ensure_builtins()
    arch = spec.arch
    if arch in _BUILTINS:
        return _BUILTINS[arch](num_classes=spec.num_classes, in_chans=spec.in_chans, input_size=spec.input_size)
    from . import exported_program, hf_transformers, onnx_graph, torch_layers
    if arch == torch_layers.ARCH:
        return torch_layers.build(spec.model_args)
    if arch == onnx_graph.ARCH:
        return onnx_graph.build(spec.model_args)
    if arch == exported_program.ARCH:
        return exported_program.build(spec.model_args)
    if arch.startswith(hf_transformers.PREFIX):
        return hf_transformers.build(arch, spec.num_classes, spec.in_chans, spec.model_args)
    if ":" in arch:
        fn = _import_callable(arch)
        kwargs = {"num_classes": spec.num_classes, "in_chans": spec.in_chans, "input_size": spec.input_size}
        try:  # the three harden always offers go only where the callable takes them; model_args always go
            params = inspect.signature(fn).parameters
            if any(p.kind == p.VAR_KEYWORD for p in params.values()):
                # `**kwargs` (torchvision's resnet50(*, weights, progress, **kwargs) hands them to the class): the
                # class count, and the channels only when they are not the usual three
                kwargs = {k: v for k, v in kwargs.items()
                          if k in params or k == "num_classes" or (k == "in_chans" and v != 3)}
            else:  # under the callable's own names for them (n_classes, in_channels, ...)
                from .config import parameter_for, size_argument
                named = {}
                for key, value in kwargs.items():
                    name = parameter_for(params, key)
                    if name and name not in spec.model_args:  # --model-arg wins
                        named[name] = size_argument(arch, params[name], value, spec.in_chans) \
                            if key == "input_size" else value
                kwargs = named
                unknown = [k for k in spec.model_args if k not in params]
                if unknown:
                    raise HardenError(f"Architecture {arch!r} takes no argument {', '.join(map(repr, unknown))} "
                                      f"(from --model-arg or the metadata); it takes {', '.join(params) or 'none'}.")
        except (TypeError, ValueError):
            pass
        kwargs.update(_no_download(fn, spec.model_args))
        if getattr(fn, "__module__", "").startswith("torchvision.models") and \
                getattr(fn, "__name__", "") in INIT_WEIGHTS_FACTORIES and "init_weights" not in spec.model_args:
            kwargs["init_weights"] = False  # the checkpoint supplies every weight (and torchvision warns otherwise)
        said = {**kwargs, **spec.model_args}  # the arguments as given (a class named by its text)
        try:
            net = built(fn, kwargs, spec.model_args)
        except TypeError as e:
            missing = _required_not_given(fn, {**kwargs, **spec.model_args})
            give = (f"give {' '.join(f'--model-arg {name}=VALUE' for name in missing)} (a JSON value or text: the "
                    "value its own code passes: a class by its name as in block=BasicBlock, a function by its dotted "
                    "path as in act=F.gelu; a JSON object is read by key or attribute, as a constructor that takes "
                    "its settings as one reads them: "
                    f"--model-arg {missing[0]}='{{\"depth\": 28}}' gives {missing[0]}.depth)" if missing
                    else "give its arguments with --model-arg")
            raise (MissingArguments if missing else HardenError)(
                f"Architecture {arch!r} could not be built with {said}: {e}. {give[0].upper()}{give[1:]}, or name a "
                "callable that builds it with --arch (package.module:factory, or file.py:factory).") from None
        except HardenError:
            raise
        except Exception as e:  # whatever the user's constructor raises: said as its failure, not harden's
            raise ConstructorFailed(f"Architecture {arch!r} raised {type(e).__name__} while building with {said}: "
                              f"{str(e).strip()[:300]}. harden builds the architecture without network access (the "
                              "checkpoint supplies the weights); check the callable, or pass its arguments with "
                              "--model-arg.") from e  # --debug shows the constructor's own traceback
        if not isinstance(net, nn.Module):
            raise HardenError(f"{arch!r} returned {type(net).__name__}, not a torch.nn.Module.")
        return unwrapped(net, say=False)  # a factory that compiles or wraps what it builds (built for each probe)
    import timm
    from .arch_in_file import is_file_alone
    if is_file_alone(arch):  # `harden train --arch resnet.py`: no weights to find its network by (load does that)
        from .arch_in_file import candidates
        names = list(candidates(_import_file(arch, arch)))
        raise HardenError(f"--arch {arch} names a file, not what in it builds the network: give --arch "
                          f"{arch}:NAME" + (f"; it defines {', '.join(names[:12])}." if names else
                                            "; it defines no network class or factory function."))
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:5]
        hint = f" Close timm names: {', '.join(close)}." if close else ""
        raise HardenError(f"Unknown architecture {arch!r}: not a harden built-in ({', '.join(list_builtin())}), "
                          f"not a timm model name, and not package.module:callable.{hint}")
    # pretrained=False always: no weights can be downloaded; the user's checkpoint supplies them.
    try:
        return timm.create_model(arch, pretrained=False, num_classes=spec.num_classes, in_chans=spec.in_chans,
                                 **spec.model_args)
    except TypeError as e:
        raise HardenError(f"timm could not build {arch!r} with model_args {spec.model_args}: {e}") from None


def timm_size_args(arch: str, num_classes: int, in_chans: int, input_size) -> dict[str, Any]:
    """{"img_size": [H, W]} for a new timm network to be built at a size other than its config's, where its
    constructor takes one (ViT, Swin, BEiT, ...: their position embeddings and windows are sized by it, and they run
    at no other size); {} where it takes none (a CNN runs at any size) or is not a timm name. For a network built
    afresh (`harden train`): a checkpoint's size comes with its weights (checkpoint.py)."""
    from .config import timm_config
    cfg = timm_config(arch)
    size = [int(input_size[0]), int(input_size[1])]
    if cfg is None or cfg["input_size"] == size:
        return {}
    import timm
    try:
        shapes_build(lambda: timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                               img_size=size))
    except Exception:  # noqa: BLE001 - no img_size (TypeError), or none it can be built at: as before
        return {}
    return {"img_size": size}


class AttributeDict(dict):
    """A JSON object given as a constructor argument: a dict that also reads by attribute, since research code takes
    its settings as one object (`def __init__(self, args): ... args.depth`, argparse's Namespace or an EasyDict)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None  # getattr(args, 'x', default) and hasattr work


def _with_attributes(value: Any) -> Any:
    if isinstance(value, dict):
        return AttributeDict({k: _with_attributes(v) for k, v in value.items()})
    return [_with_attributes(v) for v in value] if isinstance(value, list) else value


def as_passed(fn: Callable[..., Any], model_args: dict[str, Any], names: bool = True) -> dict[str, Any]:
    """`--model-arg` values (JSON, kept so in the metadata) as the constructor takes them: a JSON object read by key
    or attribute, and text that names a class, or with a dotted path a class or function, where its own code would
    pass one (`ResNet(block, num_blocks)` called as `ResNet(BasicBlock, [2, 2, 2, 2])`; `norm_layer=nn.BatchNorm2d`;
    `act=F.gelu`; `act=torch.nn.GELU`): the object of that name in the constructor's module, else importable by that
    path. Text stays text where the parameter takes text (a text default or a `str` annotation), where it is a bare
    function's name (`act=relu` beside an imported `relu`: code that compares it with 'relu' is the commoner) unless
    the parameter's default is a function (`act=F.relu` given `act=swish`: the module's `swish`), or where nothing
    has the name; `names` False: no name is looked up (`built`'s second try). A list is a tuple where the default is
    one."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    out = {}
    for key, value in model_args.items():
        named = None if not names or _takes_text(params.get(key)) or not isinstance(value, str) else \
            _named_object(fn, value)
        if named is None and names and isinstance(value, str) and key in params and \
                inspect.isroutine(params[key].default):
            named = module_function(fn, value)
        out[key] = named if named is not None else _with_attributes(value)
        if isinstance(value, list) and key in params and isinstance(params[key].default, tuple):
            out[key] = tuple(out[key])  # JSON's list where the default is a tuple (`dims + (x,)` takes no list)
    return out


def arg_text(value: Any) -> str:
    """A constructor argument as `--model-arg` takes it back (as_passed's inverse): text as it is (block=BasicBlock)
    unless it reads as JSON ("28" stays text as "28"), anything else as compact JSON (num_blocks=[2,2,2,2]: one word
    in a shell)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, separators=(",", ":"))


def _takes_text(param: inspect.Parameter | None) -> bool:
    if param is None:
        return False
    annotation = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
    return isinstance(param.default, str) or annotation.replace(" ", "") in ("str", "Optional[str]", "str|None")


def module_function(fn: Callable[..., Any], name: str) -> Any:
    """The function `fn`'s module holds under the bare name `name` (its own `def swish(x)`, an imported `gelu`);
    None for anything else."""
    import sys
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    found = (getattr(fn, "__globals__", None) or (vars(module) if module is not None else {})).get(name)
    return found if inspect.isroutine(found) and not inspect.isclass(found) else None


def _named_object(fn: Callable[..., Any], text: str) -> Any:
    """The class or function `text` names (`BasicBlock`, `nn.BatchNorm2d`, `torch.nn.GELU`) as `fn`'s own module
    would see it, else by import; None for anything else (a module, a number, a name nothing defines)."""
    import sys
    parts = text.strip().split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    namespace = getattr(fn, "__globals__", None) or (vars(module) if module is not None else {})
    found = _attribute_path(namespace.get(parts[0]), parts[1:]) if parts[0] in namespace else None
    for cut in range(len(parts) - 1, 0, -1):  # torch.nn.GELU, timm.layers.Mlp: the longest importable prefix
        if found is not None:
            break
        try:
            found = _attribute_path(importlib.import_module(".".join(parts[:cut])), parts[cut:])
        except Exception:  # noqa: BLE001 - not a module (ImportError) or one that fails to import: not a name
            continue
    if inspect.isclass(found) or len(parts) > 1 and (inspect.isroutine(found) or isinstance(found, functools.partial)):
        return found
    return None


def built(fn: Callable[..., Any], kwargs: dict[str, Any], model_args: dict[str, Any], text_too: bool = True) -> Any:
    """`fn(**kwargs, **model_args as passed)`; where a name was looked up and that build raises, the build with the
    text as given (a constructor that looks its block up by name, `{'BasicBlock': BasicBlock}[block]`), else the
    first build's error. `text_too` False: the first build alone (the argument search, whose seeds name classes that
    must not build as text: `strides='Basic'` indexes its letters)."""
    from ..cuda_calls import gpu_moves_on_cpu
    from .pretrained_skipped import pretrained_not_fetched
    kwargs = {**_on_this_machine(fn, {**kwargs, **model_args}), **kwargs}
    passed = as_passed(fn, model_args)
    # timm's and torchvision's constructors name no CUDA device: built without the mode that watches every torch call
    # for one (a fifth of a Swin's build on the meta device, which the argument search makes hundreds of)
    library = str(getattr(fn, "__module__", "") or "").startswith(("timm.", "torchvision."))
    moves = contextlib.nullcontext if library else gpu_moves_on_cpu
    try:  # a constructor's own download of weights the checkpoint supplies; its own device='cuda' on a CPU machine
        with pretrained_not_fetched(), moves():
            return fn(**{**kwargs, **passed})
    except Exception as first:
        text = as_passed(fn, model_args, names=False)
        if not text_too or all(passed[k] is text[k] for k in passed):
            raise
        try:
            with pretrained_not_fetched(), moves():
                return fn(**{**kwargs, **text})
        except Exception:  # noqa: BLE001 - the first build's error is the one to say
            raise first from None


def _attribute_path(obj: Any, names: list[str]) -> Any:
    for name in names:
        obj = getattr(obj, name, None)
    return obj


def _required_not_given(fn: Callable[..., Any], kwargs: dict[str, Any]) -> list[str]:
    """The parameters a callable needs (no default) that `kwargs` leaves out, in order: `VGG(vgg_name)`'s vgg_name."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty and p.name not in kwargs
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


DEVICE_PARAMETERS = ("device", "dev")  # a constructor's device, where its default is the GPU: `device='cuda'`
GPU_SWITCHES = ("cuda", "use_cuda", "gpu", "use_gpu", "on_gpu")  # or a switch, where its default is on


def _on_this_machine(fn: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
    """On a machine without CUDA, a constructor's device argument that defaults to the GPU (`def __init__(self, ...,
    device='cuda')`, `use_cuda=True`, as research code writes them) given as the CPU: it could only raise there.
    Nothing where CUDA is, or where the argument is given (--model-arg)."""
    if torch.cuda.is_available():
        return {}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for name, p in params.items():
        if name in given or p.default is inspect.Parameter.empty:
            continue
        if name in DEVICE_PARAMETERS and str(p.default).startswith("cuda"):
            out[name] = "cpu" if isinstance(p.default, str) else torch.device("cpu")
        elif name in GPU_SWITCHES and p.default is True:
            out[name] = False
    CPU_ARGUMENTS.extend(f"{k}={v!r}" for k, v in out.items())
    return out


CPU_ARGUMENTS: list[str] = []  # what _on_this_machine gave, in this process (for the load notes)


INIT_WEIGHTS_FACTORIES = ("googlenet", "inception_v3")  # torchvision's, whose init_weights=None warns and inits


def _no_download(fn: Callable[..., nn.Module], model_args: dict[str, Any]) -> dict[str, Any]:
    """`pretrained` off where the callable downloads weights by default (Cadene's pretrainedmodels'
    `pretrained='imagenet'`, a torch.hub entry's `pretrained=True`): the checkpoint supplies them, and no network is
    used. Left alone where --model-arg sets it."""
    try:
        param = inspect.signature(fn).parameters.get("pretrained")
    except (TypeError, ValueError):
        return {}
    if param is None or "pretrained" in model_args or param.default is inspect.Parameter.empty or not param.default:
        return {}
    return {"pretrained": None if isinstance(param.default, str) else False}


def built_in_chans(arch: str, num_classes: int, in_chans: int, input_size,
                   model_args: dict[str, Any] | None = None) -> int | None:
    """The image channels a `module:callable` network reads as it builds itself: its stem's (first convolution's,
    or an MLP's first linear layer's), where that differs from `in_chans` (published code's Net() for grey digits
    ignores any channel count it is offered); None where it follows `in_chans` or is not such a callable."""
    if ":" not in arch or arch.startswith("transformers:"):
        return None
    from .config import first_conv, first_linear_image
    spec = ModelSpec(arch=arch, num_classes=int(num_classes), in_chans=int(in_chans),
                     input_size=(int(input_size[0]), int(input_size[1])), mean=(0.0,), std=(1.0,),
                     model_args=dict(model_args or {}))
    state = _build_net(spec).state_dict()
    stem = first_conv(state) or first_linear_image(state)
    return stem[1] if stem and stem[1] != int(in_chans) else None


MAIN = "__main__"  # a class defined in the running script: no other program imports it by that name
TORCHSCRIPT = "__torchscript__"  # a TorchScript module's original class: compiled code, no Python class to import


def _import_callable(arch: str, what: str = "Architecture", flag: str = "--arch", need_callable: bool = True) -> Any:
    """`path/to/file.py:callable` or `package.module:callable`, imported as Python would import them for published
    code: a file inside a package (a folder with __init__.py) as that package's module, so its relative imports
    work; its repository's root (or a loose file's folder, as `python file.py` has it) on sys.path, so its absolute
    imports of sibling modules work; a dotted name from the current folder too, as `python -m` finds it. `what` and
    `flag` name it in errors (data made by code: data/dataset_objects.py); `need_callable` False: any attribute."""
    from ..cuda_calls import gpu_moves_on_cpu, keep_cuda_calls_on_cpu
    keep_cuda_calls_on_cpu()  # published code's own .cuda() calls, on a machine without CUDA (cuda_calls.py)
    with gpu_moves_on_cpu():  # and its module-level device='cuda' / .to('cuda')
        return _imported_callable(arch, what, flag, need_callable)


def _imported_callable(arch: str, what: str, flag: str, need_callable: bool) -> Any:
    mod_name, _, fn_name = arch.rpartition(":")
    if mod_name == MAIN:
        raise HardenError(f"{what} {arch!r} was defined in the script that wrote the checkpoint (its __main__), which "
                          f"no other program can import: give {flag} path/to/file.py:{fn_name} (or "
                          f"package.module:{fn_name}) naming a module that defines it and does no work when imported.")
    if mod_name == TORCHSCRIPT:
        raise HardenError(f"{what} {arch!r}: the checkpoint was written from a TorchScript module (traced or scripted "
                          f"from a class {fn_name}), whose code harden does not run: give {flag} path/to/file.py:"
                          f"{fn_name} (or package.module:{fn_name}) naming the Python class it was made from (its "
                          "weights' names are that class's).")
    if mod_name.startswith(TORCH_HUB):
        module = _import_file(arch, str(torch_hub_file(arch, mod_name[len(TORCH_HUB):])), what, flag)
    elif mod_name.endswith(".py") or "/" in mod_name or "\\" in mod_name:
        module = _import_file(arch, mod_name, what, flag)
    else:
        _add_to_path(os.getcwd())
        try:
            with _imported_alone(mod_name, f"{what} module {mod_name!r}"):
                module = importlib.import_module(mod_name)
        except HardenError:
            raise
        except Exception as e:  # ImportError, or whatever the module raises while it runs
            raise HardenError(f"{what} {arch!r} names a module that cannot be imported ({type(e).__name__}: "
                              f"{e}). Use package.module:callable with the package on PYTHONPATH or in the current "
                              "folder, or path/to/file.py:callable.") from None
    fn = module
    for part in fn_name.split("."):  # a class's factory method too: efficientnet_pytorch:EfficientNet.from_name
        fn = getattr(fn, part, None)
    if fn is None or (need_callable and not callable(fn)):
        raise HardenError(f"{what} {arch!r}: {mod_name!r} has no {'callable ' if need_callable else ''}{fn_name!r}."
                          + _found_nearby(module, mod_name, fn_name))
    if need_callable and not _installed(module):  # the user's own code: a factory's `**kwargs` read through
        from .forwarding import with_forwarded_signature
        fn = with_forwarded_signature(fn)
    return fn


def _installed(module: Any) -> bool:
    """Whether a module is an installed library's (torchvision, timm: their factories are read as they are)."""
    path = str(getattr(module, "__file__", None) or "")
    return installed_file(path) or not path


def installed_file(path: str) -> bool:
    """Whether a source file is an installed library's (under site-packages or dist-packages)."""
    return any(part in ("site-packages", "dist-packages") for part in Path(path).parts)


NEARBY_SUBMODULES = ("models", "model", "nets", "networks", "archs")  # where packages keep their factories


def _found_nearby(module: Any, mod_name: str, fn_name: str) -> str:
    """Where a name missing from a package is: a submodule that has it (`torchvision:googlenet` ->
    torchvision.models:googlenet), or the module's names closest to it (a typo)."""
    import difflib
    if hasattr(module, "__path__") and "." not in fn_name:
        for sub in NEARBY_SUBMODULES:
            try:
                found = getattr(importlib.import_module(f"{mod_name}.{sub}"), fn_name, None)
            except Exception:  # noqa: BLE001 - a submodule that fails to import is just not where it is
                continue
            if callable(found):
                return f" It is in {mod_name}.{sub}: --arch {mod_name}.{sub}:{fn_name}."
    names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
    close = difflib.get_close_matches(fn_name.split(".")[-1], names, n=3, cutoff=0.75)
    return f" Close names there: {', '.join(close)}." if close else ""


TORCH_HUB = "torchhub:"  # torchhub:owner/repo[:branch]:entrypoint, from torch.hub's local cache


def torch_hub_file(arch: str, repo: str):
    """The hubconf.py of a repository torch.hub.load already downloaded (`$TORCH_HOME/hub/owner_repo_branch/`), read
    from the cache and never from the network."""

    import torch.hub
    owner_repo, _, branch = repo.partition(":")
    owner, _, name = owner_repo.partition("/")
    hub = Path(torch.hub.get_dir())
    if not owner or not name:
        raise HardenError(f"Architecture {arch!r}: write a torch.hub model as torchhub:owner/repo[:branch]:entrypoint "
                          "(torchhub:chenyaofo/pytorch-cifar-models:cifar10_resnet20).")
    pattern = f"{owner}_{name}_{branch.replace('/', '_')}" if branch else f"{owner}_{name}_*"
    found = sorted(p.parent for p in hub.glob(f"{pattern}/hubconf.py"))
    if len(found) == 1:
        return found[0] / "hubconf.py"
    if found:
        raise HardenError(f"Architecture {arch!r}: torch.hub's cache holds {len(found)} branches of {owner_repo} "
                          f"({', '.join(p.name for p in found)}); name one: torchhub:{owner_repo}:BRANCH:entrypoint.")
    raise HardenError(f"Architecture {arch!r}: {owner_repo} is not in torch.hub's cache ({hub}; TORCH_HOME moves it). "
                      "harden reads the cache and downloads nothing: run torch.hub.load once on a machine online, or "
                      "give the repository's file as --arch path/to/hubconf.py:entrypoint.")


def _import_file(arch: str, mod_name: str, what: str = "Architecture", flag: str = "--arch"):
    import hashlib
    import sys
    file = Path(mod_name).expanduser()
    if file.is_dir() and (file / "__init__.py").is_file():  # a package's folder (`models/` of `from models import *`)
        file = file / "__init__.py"
    elif file.is_dir():
        raise HardenError(f"{what} {arch!r}: {mod_name!r} is a folder with no __init__.py, not a Python file or "
                          f"package: give the file that defines {arch.rpartition(':')[2]}, {flag} "
                          f"{mod_name.rstrip('/')}/FILE.py:{arch.rpartition(':')[2]}.")
    if not file.is_file():
        raise HardenError(f"{what} {arch!r}: the file {mod_name!r} does not exist (from {Path.cwd()}). "
                          f"A checkpoint remembers the {flag} it was written with; pass {flag} with the file's "
                          "path from here.")
    file = file.resolve()
    package = file.parent
    while (package / "__init__.py").is_file() and (package.parent / "__init__.py").is_file():
        package = package.parent  # the outermost package holding the file
    in_package = (file.parent / "__init__.py").is_file()
    root = package.parent if in_package else file.parent
    if in_package:
        dotted = ".".join(file.relative_to(root).with_suffix("").parts)
        if dotted.endswith(".__init__"):
            dotted = dotted[:-len(".__init__")]
        _add_to_path(str(root))
        try:
            with _imported_alone(file, f"{what} file {mod_name!r}"):
                module = importlib.import_module(dotted)
        except HardenError:
            raise
        except Exception as e:
            raise HardenError(f"{what} file {mod_name!r} failed to import (as {dotted}, from {root}): "
                              f"{type(e).__name__}: {e}{_not_installed(e)}") from None
        if Path(getattr(module, "__file__", "") or "").resolve() != file:
            raise HardenError(f"{what} file {mod_name!r}: its package's name, {dotted}, is already taken by "
                              f"{getattr(module, '__file__', None) or 'a module'} in this process (two repositories "
                              "with a package of the same name): give one of them as package.module:callable.")
        return module
    name = FILE_MODULE_PREFIX + hashlib.sha1(str(file).encode()).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is None:
        # a loader named, so that a script without the .py suffix (an executable `train` with a shebang) imports too
        spec = importlib.util.spec_from_file_location(name, file, loader=SourceFileLoader(name, str(file)))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        _add_to_path(str(root))
        try:
            with _imported_alone(file, f"{what} file {mod_name!r}"):
                spec.loader.exec_module(module)
        except HardenError:
            del sys.modules[name]
            raise
        except Exception as e:
            del sys.modules[name]
            raise HardenError(f"{what} file {mod_name!r} failed to import: {type(e).__name__}: {e}"
                              f"{_not_installed(e)}") from None
    return module


@contextlib.contextmanager
def _imported_alone(file: Path | str, named: str) -> Iterator[None]:
    """A module of published code imported as `python file.py` would run it with no arguments: a training script's
    module-level `args = parser.parse_args()` (argparse, outside `if __name__ == '__main__':`) reads its own defaults,
    not harden's command line. One that exits on import anyway (an argument it requires) is a HardenError that says
    why, with what it printed, rather than its usage line and harden's exit. Nothing is written beside the code: no
    `__pycache__` in the user's repository (a checkout under version control, or a folder harden may only read)."""
    import io
    import sys
    argv, err, no_bytecode = sys.argv, io.StringIO(), sys.dont_write_bytecode
    sys.argv, sys.dont_write_bytecode = [str(file)], True
    try:
        with contextlib.redirect_stderr(err):
            yield
    except SystemExit as e:
        said = " ".join(line.strip() for line in err.getvalue().strip().splitlines()[-1:])
        raise HardenError(f"{named} stopped the program while being imported (SystemExit {e.code}"
                          + (f": {said}" if said else "") + "): code at its top level parses the command line or exits "
                          "(argparse's `args = parser.parse_args()` outside `if __name__ == '__main__':`), and harden "
                          "imports it with no arguments. Give its required arguments defaults, or move the network "
                          "into a module that does no work when imported.") from None
    except BaseException:
        sys.stderr.write(err.getvalue())  # what an import printed (its warnings) is said as before
        raise
    else:
        sys.stderr.write(err.getvalue())
    finally:
        sys.argv, sys.dont_write_bytecode = argv, no_bytecode


def _not_installed(e: Exception) -> str:
    """For a module the file imports that Python cannot find (d2l's `from d2l import torch as d2l`, a training
    framework, a sibling module of another folder): where it would come from."""
    if not isinstance(e, ModuleNotFoundError) or not e.name:
        return ""
    import sys
    return (f". If {e.name.split('.')[0]!r} is a package, install it into the Python that runs harden "
            f"({sys.executable} -m pip install ...); if it is a module of the file's own repository, run harden from "
            "the repository's root and give the architecture as package.module:Class, or copy the network's code into "
            "one file.")


FOLDERS_ADDED: set[str] = set()  # what _add_to_path put on sys.path (checkpoint.remembered_arch tells them apart)


def _add_to_path(folder: str) -> None:
    """`folder` at the end of sys.path (after everything installed, so it shadows nothing), and left there: a module
    that imports its siblings lazily, inside a function, still finds them later."""
    import sys
    if os.path.realpath(folder) not in (os.path.realpath(p or ".") for p in sys.path):
        sys.path.append(folder)
        FOLDERS_ADDED.add(folder)


def taps_of(net: nn.Module) -> list[dict[str, Any]]:
    """Block boundaries ("taps"): timm's feature_info, or the one a built-in declares."""
    fi = getattr(net, "feature_info", None)
    if fi is None:
        return []
    if hasattr(fi, "info"):  # timm FeatureInfo object
        fi = fi.info
    return [dict(num_chs=int(f["num_chs"]), reduction=int(f["reduction"]), module=str(f["module"])) for f in fi]


POST_OPS = {"none": lambda z: z, "log_softmax": lambda z: torch.log_softmax(z, 1),
            "softmax": lambda z: torch.softmax(z, 1)}


def no_input_gradient(name: str, net: nn.Module | None = None) -> str:
    quantized = [f"{k or 'the network'} ({m._get_name()})" for k, m in (net.named_modules() if net is not None else [])
                 if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized"))
                 and not type(m).__name__.endswith("PackedParams")]
    if quantized:  # torch.ao's quantized layers compute on integers, outside autograd
        return (f"{name}'s scores do not depend on its input through autograd: its layers quantized by torch.ao "
                f"({', '.join(quantized[:4])}{', ...' if len(quantized) > 4 else ''}) compute on integers, with no "
                "gradient. White-box attacks and hardening need the gradient of the scores with respect to the pixels: "
                "evaluate and harden the float model it was quantized from, and this one under transfer from it "
                "(eval quantized.pt --craft-on float.pt; harden.evaluate(quantized, data, craft_on=float_model)), "
                "which measures what the quantization keeps of its robustness.")
    return (f"{name}'s scores do not depend on its input through autograd: its forward runs (part of) the network "
            "under torch.no_grad(), calls .detach(), or leaves torch (numpy, .item()). White-box attacks and hardening "
            "need the gradient of the scores with respect to the pixels: remove that from forward (a frozen backbone "
            "stays frozen with requires_grad_(False) on its parameters), or evaluate this model under transfer only "
            "(eval --craft-on another model).")


def gives_input_gradient(model: nn.Module, x: torch.Tensor | None = None) -> bool:
    """Whether the model's scores depend on its input through autograd (one forward and backward of one image, x's
    first or a blank one of the model's shape), whether or not its parameters take gradients."""
    if x is None:
        p = next(model.parameters(), None)
        x = torch.zeros(1, model.spec.in_chans, *model.spec.input_size, device=p.device if p is not None else "cpu")
    x = x[:1].detach().clone().requires_grad_(True)
    was_training = model.training
    model.eval()  # one image: BatchNorm cannot take batch statistics of it (a train-mode model given to harden.fix)
    try:
        with torch.enable_grad():
            out = model(x)
            if not out.requires_grad:
                return False
            (grad,) = torch.autograd.grad(out.float().sum(), x, allow_unused=True)
    except NoInputGradient:
        return False
    finally:
        model.train(was_training)
    return grad is not None


def weights_dtype(net: nn.Module) -> torch.dtype:
    """The floating-point type a network's weights hold (its first floating-point parameter's, else buffer's), which
    its layers take their input in; float32 where it holds none."""
    for t in itertools.chain(net.parameters(), net.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def one_image_refused(name: str) -> str:
    return (f"{name} cannot score one image alone: a BatchNorm layer of it normalises each batch by the batch's own "
            "statistics (it was built with track_running_stats=False, so it has no running statistics to use in "
            "evaluation). Its answer on an image then depends on the images beside it, and an attack, which narrows "
            "its batch to the images not yet fooled, meets a batch of one. Give its BatchNorm layers running "
            "statistics (track_running_stats=True, then a pass over training images in train mode) and save it "
            "again.")


class Classifier(nn.Module):
    """Takes pixels in [0, 1] and normalizes inside, so attack budgets are in pixel units.

    mean/std are non-persistent buffers: the state dict holds only the architecture's own keys
    (under `net.`), so a checkpoint saved by harden is also a plain state dict of the architecture.
    """

    def __init__(self, net: nn.Module, spec: ModelSpec):
        super().__init__()
        self.net = net
        self.spec = spec
        c = spec.in_chans
        mean = torch.tensor(_per_channel(spec.mean, c, "mean"), dtype=torch.float32).view(1, c, 1, 1)
        std = torch.tensor(_per_channel(spec.std, c, "std"), dtype=torch.float32).view(1, c, 1, 1)
        if (std <= 0).any():
            raise HardenError(f"std must be positive, got {list(spec.std)}.")
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        # A recipe's added modules (fixers, denoisers, ...); None for a plain model.
        self.patch: nn.Module | None = None
        # the scores out of what a caller's own module returns (from_module), where harden put no hook on it
        self.scores_of: ScoresOf | None = None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> the network's input: normalised, in the floating-point type its weights hold (a module of
        the caller's built under torch.set_default_dtype(torch.float64), or converted with .double() or .half())."""
        if self.spec.extra.get(CHANNEL_ORDER) == "bgr":  # Caffe's networks: mean and std in the network's order
            x = x.flip(1)
        x = (x - self.mean) / self.std
        dtype = weights_dtype(self.net)
        return x if x.dtype == dtype else x.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch is not None and hasattr(self.patch, "forward_model"):
            out = self.patch.forward_model(self, x)  # a recipe that wraps the whole forward (idfr)
            # its classify() keeps a softmax head's softmax: trained on log(p), as below
            return log_where_probabilities(out) if self.__dict__.get(LOG_WHERE_PROBABILITIES) else out
        try:
            out = network(self)(self.normalize(x))
        except ValueError as e:
            if len(x) == 1 and "more than 1 value per channel" in str(e):  # torch's BatchNorm on batch statistics
                raise HardenError(one_image_refused(type(self.net).__name__)) from None
            raise
        if self.__dict__.get("scores_of") is not None:
            out = self.scores_of(self.net, (x,), out)
        elif not isinstance(out, torch.Tensor):  # a structure only train mode returns (outputs.ScoresOf)
            out = ScoresOf(self.spec.extra.get(LOGITS_KEY), self.spec.num_classes,
                           bool(self.spec.extra.get(BINARY_SIGMOID)))(self.net, (x,), out)
        if out.dtype in (torch.float16, torch.bfloat16) and not torch.is_autocast_enabled(out.device.type) or \
                out.dtype == torch.float64:
            out = out.float()  # a network that computes in half (autocast inside its forward, .half()) or double
        if x.requires_grad and not out.requires_grad and torch.is_grad_enabled():
            raise NoInputGradient(no_input_gradient(type(self.net).__name__, self.net))
        if self.__dict__.get(LOG_WHERE_PROBABILITIES):  # training a model that returns probabilities (outputs.py)
            out = log_where_probabilities(out)
        return out

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop(COMPILED, None)  # a deep copy or a pickle holds the plain network (compiling.py)
        return state

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """f_enc: [0,1] pixels -> the embedding the final linear layer reads (timm's pre-logits; for any other
        module the input of its last nn.Linear, found by a probe)."""
        net = self.net
        head, _ = self.head()
        if head is None:
            return net.forward_head(net.forward_features(self.normalize(x)), pre_logits=True)
        from .probe import embedding
        return embedding(net, head, self.normalize(x))

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """f_cls: embedding -> outputs (timm's get_classifier(); else the final linear layer and the
        log_softmax / softmax the model applies after it)."""
        head, post = self.head()
        if head is None:
            return self.net.get_classifier()(h)
        return as_scores(POST_OPS[post](self.net.get_submodule(head)(h)), self.spec.num_classes)  # one binary logit

    def head(self) -> tuple[str | None, str]:
        """(name of the final linear layer, what follows it); (None, 'none') for timm-style models."""
        cached = self.__dict__.get("_head")
        if cached is not None:
            return cached
        net = self.net
        if hasattr(net, "forward_features") and hasattr(net, "forward_head") and hasattr(net, "get_classifier"):
            found = (None, "none")
        else:
            from .probe import embedding, find_head
            name = find_head(net, self.spec.in_chans, tuple(self.spec.input_size))
            p = next(net.parameters())
            x = torch.rand(4, self.spec.in_chans, *self.spec.input_size, generator=torch.Generator().manual_seed(0))
            x = x.to(p.device)
            with torch.no_grad():
                out = net(x)
                z = net.get_submodule(name)(embedding(net, name, x))
            # as_scores: a binary head's one logit (or its sigmoid) becomes two scores
            candidates = {k: as_scores(f(z), self.spec.num_classes) for k, f in POST_OPS.items()}
            post = next((k for k, s in candidates.items() if s.shape == out.shape and
                         torch.allclose(s, out, atol=1e-4, rtol=1e-4)), None)
            if post is None:
                raise HardenError(f"The output of {type(net).__name__} is not its last linear layer {name!r} (nor its "
                                  "log_softmax or softmax): something else follows it, so harden cannot split "
                                  "embedding and classifier for this model.")
            found = (name, post)
        self.__dict__["_head"] = found
        return found

    # Encoder / classifier split (timm's forward_features / forward_head), used by recipes.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(features)

    def taps(self) -> list[dict[str, Any]]:
        """timm's feature_info (or a built-in's declaration); for any other module, found by a probe forward."""
        declared = taps_of(self.net)
        if declared:
            return declared
        cached = self.__dict__.get("_taps")
        if cached is None:
            from .probe import discover_taps
            cached = discover_taps(self.net, self.spec.in_chans, tuple(self.spec.input_size))
            self.__dict__["_taps"] = cached
        return cached


def _per_channel(values, c: int, what: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * c
    if len(values) != c:
        raise HardenError(f"{what} has {len(values)} values but the model takes {c} channel(s).")
    return values


def unwrapped(net: nn.Module, say: bool = True) -> nn.Module:
    """The module a wrapper holds, said (`say`); any other module as it is. `torch.compile(net)`'s OptimizedModule
    (its `_orig_mod`) specialises on batch sizes, so the attacks' shrinking batches recompiled it to dynamo's limit (a
    2-layer MNIST network: 35.5 s against 2.1 s eager for PGD and FGSM on 100 images); DataParallel and
    DistributedDataParallel (their `module`) split batches across GPUs and average gradients, which harden's own
    processes do (torchrun). A checkpoint written from a wrapper named the wrapper's class, which no load can build, and
    its weights' keys carried the wrapper's prefix."""
    kind = type(net).__name__
    inner = getattr(net, "_orig_mod" if kind == "OptimizedModule" else "module", None)
    if kind not in ("OptimizedModule", "DataParallel", "DistributedDataParallel") or not isinstance(inner, nn.Module):
        return net
    if say:
        from ..runtime import info
        how = ("torch.compile'd: harden runs the module it compiled (the same weights; the compiled one recompiles at "
               "every batch size the attacks narrow to); compile=True (--compile) compiles it for dynamic batch sizes"
               if kind == "OptimizedModule" else f"wrapped in {kind}: harden runs the module it wraps (the same "
               "weights; under torchrun harden shares the work out itself)")
        info(f"the {type(inner).__name__} given is {how}")
    return unwrapped(inner, say)  # torch.compile(DataParallel(net)), ...


def from_module(net: nn.Module, *, input_size, in_chans: int = 3, num_classes: int | None = None, mean=(0.0,),
                std=(1.0,), logits_key: str | None = None, classes_hint: int | None = None) -> Classifier:
    """A Classifier around a module of the caller's that takes [0, 1] pixels (mean 0, std 1: it normalises itself, or
    give its mean and std), the module itself inside, not a copy. Its class count is its output's width unless given
    (`classes_hint`, the data's class count, picks the scores among several N x K entries of what it returns).
    Its architecture is recorded as `module:Class`, so a checkpoint written from it loads where that class imports
    and builds with its constructor's defaults (else with --arch)."""
    size = (int(input_size), int(input_size)) if isinstance(input_size, int) else tuple(int(v) for v in input_size)
    net = unwrapped(net)
    if num_classes is None:
        was = net.training
        net.eval()
        p = next(net.parameters(), None)
        try:
            with torch.no_grad():
                out = net(torch.zeros(2, int(in_chans), *size, device=p.device if p is not None else "cpu",
                                      dtype=weights_dtype(net)))
        except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as e:
            from ..input_layouts import layout_it_runs_in
            from ..outputs import ONE_AT_A_TIME, runs_alone
            two = torch.zeros(2, int(in_chans), *size, device=p.device if p is not None else "cpu",
                              dtype=weights_dtype(net))
            raise HardenError(f"{type(net).__name__} cannot run on a batch of 2 x {in_chans} x {size[0]} x {size[1]} "
                              f"({str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}): "
                              + (ONE_AT_A_TIME if runs_alone(net, two[:1]) else
                                 getattr(layout_it_runs_in(net, two), "hint", "give the input size and channels it "
                                                                             "takes."))
                              ) from None
        finally:
            net.train(was)
        from ..outputs import scores_width
        # a tensor's width; else its `logits` entry's (transformers' ModelOutput), or its one N x K entry's
        num_classes = (out.shape[1] if isinstance(out, torch.Tensor) and out.ndim >= 2
                       else scores_width(out, logits_key, classes_hint))
        if num_classes is None:
            from ..outputs import _describe
            data_says = f" (the data has {classes_hint} classes: labels 0 to {classes_hint - 1})" if classes_hint else ""
            raise HardenError(f"{type(net).__name__} returns {_describe(out)} for a batch of 2: which entry holds the "
                              f"class scores is not clear{data_says}. Give num_classes, and logits_key where its scores "
                              "are one entry of what it returns (harden.models.from_module), or check the labels.")
        num_classes = class_count(num_classes)
    arch, model_args = rebuildable_arch(net, int(num_classes), int(in_chans))
    spec = ModelSpec(arch=arch, num_classes=int(num_classes), in_chans=int(in_chans), input_size=size,
                     mean=tuple(mean), std=tuple(std), model_args=model_args)
    # the caller's module is left as it is (no hook on it: its own code still gets what its forward returns); the
    # Classifier reads the scores out of that
    key, sigmoid, scores_of = attach_scores(net, spec.num_classes, spec.in_chans, spec.input_size, logits_key,
                                            register=False)
    from .hf_transformers import PREFIX as TRANSFORMERS_PREFIX
    if key is not None and not arch.startswith(TRANSFORMERS_PREFIX):  # rebuilt from transformers: logits as they are
        spec.extra[LOGITS_KEY] = key
    if sigmoid:
        spec.extra[BINARY_SIGMOID] = True
    model = Classifier(net, spec)
    model.scores_of = scores_of
    return model


def rebuildable_arch(net: nn.Module, num_classes: int, in_chans: int) -> tuple[str, dict[str, Any]]:
    """The architecture a checkpoint written from `net` names, so that it loads with no --arch: a timm model its timm
    name (its `pretrained_cfg`), a torchvision model the one factory that builds its class with its weights' names
    and shapes, where either rebuilt on the meta device (no memory, nothing downloaded) has exactly them; else its
    class as `module:Class` (built with its constructor's defaults when loaded, or given --arch)."""
    cls = type(net)
    if isinstance(net, torch.jit.ScriptModule):  # its class is TorchScript's own; the class it was made from is named
        return f"{TORCHSCRIPT}:{getattr(net, 'original_name', None) or cls.__name__}", {}
    fallback = f"{cls.__module__}:{cls.__qualname__}", {}
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    if cls.__module__.startswith("timm."):
        import timm
        cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {}
        name = cfg.get("architecture") if isinstance(cfg, dict) else None
        if isinstance(name, str) and timm.is_model(name):
            args: dict[str, Any] = {}
            size = getattr(getattr(net, "patch_embed", None), "img_size", None)
            if isinstance(size, (tuple, list)) and len(size) == 2 and tuple(size) != tuple(
                    (cfg.get("input_size") or (0, 0, 0))[1:]):
                args["img_size"] = [int(v) for v in size]  # a ViT built for another size than its config's
            try:
                rebuilt = shapes_build(lambda: timm.create_model(name, pretrained=False, num_classes=num_classes,
                                                                 in_chans=in_chans, **args))
            except Exception:  # noqa: BLE001 - a name timm cannot build so: the class, as before
                return fallback
            if {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes:
                return name, args
        return fallback
    if cls.__module__.startswith("transformers.") or cls.__module__ == "harden.models.hf_transformers":
        from .hf_transformers import arch_of
        return arch_of(net) or fallback  # its configuration kept whole: rebuilt as a model folder's is
    if cls.__module__.startswith("torchvision.models"):
        from .torchvision_match import factories_fitting
        names = factories_fitting(net.state_dict(), num_classes, f"{cls.__module__}.{cls.__name__}")
        if len(names) == 1:
            return f"torchvision.models:{names[0]}", {}
    return fallback


def _weights_put_first(net: nn.Module, state: dict[str, Any]) -> bool:
    """The file's tensors copied into the network wherever name and shape agree, for a forward that reads its own
    weights' values to choose its channels (network slimming's channel_selection keeps those its mask's nonzero
    entries name: the fresh mask of ones keeps them all, and the pruned convolution after it refuses them). Whether
    any was copied; the load that follows loads them all again, strictly."""
    from ..formats import fit_keys
    own = net.state_dict()
    fitted = fit_keys(own, state, dict(net.named_modules()))[0]
    same = {k: v for k, v in fitted.items() if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not same:
        return False
    net.load_state_dict(same, strict=False)
    return True


def create_model(arch: str, num_classes: int, in_chans: int = 3, input_size=(32, 32), mean=(0.0,), std=(1.0,),
                 data: str = "", *, interpolation: str = "bilinear", crop_pct: float = 1.0, crop_mode: str = "center",
                 model_args: dict[str, Any] | None = None, logits_key: str | None = None,
                 sized_from: dict[str, Any] | None = None, narrow_to: dict[str, Any] | None = None,
                 **extra) -> Classifier:
    """The one factory: a Classifier around a fresh (untrained) architecture. A network that returns more than its
    class scores (a tuple, a dict, a model-output object) is read at `logits_key`, or where a probe finds them.
    `sized_from`: the state dict about to be loaded, whose tensors size the network's lazy layers (models/lazy.py)
    before the probe's forward would size them for its input. `narrow_to`: a structurally pruned state dict whose
    narrower tensors the layers are rebuilt at (models/narrowed.py; `.narrowed` lists them)."""
    if num_classes < 2:
        raise HardenError(f"num_classes must be at least 2, got {num_classes}.")
    from ..data.transforms import Preprocess
    Preprocess(int(in_chans) if int(in_chans) in (1, 3, 4) else 3, (int(input_size[0]), int(input_size[1])),
               str(interpolation), float(crop_pct), str(crop_mode))  # checks the transform's values
    spec = ModelSpec(arch=arch, num_classes=int(num_classes), in_chans=int(in_chans),
                     input_size=(int(input_size[0]), int(input_size[1])), mean=tuple(mean), std=tuple(std),
                     data=data, extra=dict(extra), interpolation=str(interpolation), crop_pct=float(crop_pct),
                     crop_mode=str(crop_mode), model_args=dict(model_args or {}))
    net = _build_net(spec)
    if sized_from is not None:
        from .lazy import shape_lazy_layers
        shape_lazy_layers(net, sized_from)
    narrowed_layers: list[str] = []
    if narrow_to is not None:
        from ..formats import fit_keys
        from .narrowed import narrowed
        own = net.state_dict()
        narrowed_layers = narrowed(net, own, fit_keys(own, narrow_to, dict(net.named_modules()))[0]) or []
    try:
        key, sigmoid = attach_scores(net, spec.num_classes, spec.in_chans, spec.input_size, logits_key)
    except DoesNotRun:
        if sized_from is None or not _weights_put_first(net, sized_from):
            raise
        key, sigmoid = attach_scores(net, spec.num_classes, spec.in_chans, spec.input_size, logits_key)
    if key is not None:
        spec.extra[LOGITS_KEY] = key  # kept in the metadata of every checkpoint written from this model
    if sigmoid:
        spec.extra[BINARY_SIGMOID] = True
    model = Classifier(net, spec)
    model.narrowed = narrowed_layers
    return model
