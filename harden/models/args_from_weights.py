"""Constructor arguments of a `file.py:Class` architecture that nothing gives and the checkpoint's weights say,
found by building on the meta device (no memory, no initialisation) and matching the file's tensors, as `--model-arg`
would give them (warned by the caller): a required argument naming one of the configurations its own code defines
(pytorch-cifar's `VGG('VGG19')`, whose module's `cfg` dict maps each name to its layers; a `Literal['s', 'm']`
variant; where several names fit, the error lists them), or, where the defaults build a network the weights do not
fit, its integer and true/false arguments (a WideResNet's depth and widen_factor; RobustBench's sub_block1)."""
from __future__ import annotations

import inspect
import json
import re
import sys
import time
import typing
from collections.abc import Callable
from typing import Any

from ..errors import HardenError
from .config import ARG_ALIASES
from .registry import arg_text

MAX_NAMES = 64  # names tried at most (each is one meta-device build)


def _literal_values(fn: Callable[..., Any], name: str) -> list[Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hint = typing.get_type_hints(target).get(name)
    except (NameError, TypeError, AttributeError, SyntaxError):  # an annotation that does not resolve: no values
        return []
    if typing.get_origin(hint) is typing.Literal:
        return [v for v in typing.get_args(hint) if isinstance(v, (str, int)) and not isinstance(v, bool)]
    return []


def _defined_names(fn: Callable[..., Any]) -> list[Any]:
    """The names its module and class define: the keys of dicts of names (`cfg = {'VGG11': [...], 'VGG13': [...]}`)
    or of sizes (pytorch-cifar's `ShuffleNetV2(net_size)` over `configs = {0.5: {...}, 1: {...}, ...}`), tuples and
    lists of names (EfficientNet-PyTorch's `VALID_MODELS = ('efficientnet-b0', ...)` beside its
    `EfficientNet.from_name(model_name)`)."""
    owner = getattr(fn, "__self__", None)  # a classmethod factory's class
    module = getattr(fn, "__module__", None)
    spaces = [vars(sys.modules[module])] if module in sys.modules else []
    for cls in (fn, owner):
        if inspect.isclass(cls):
            spaces += [vars(c) for c in cls.__mro__ if c is not object]
    out: list[Any] = []
    for space in spaces:
        for attr, value in list(space.items()):
            if attr.startswith("__") or not isinstance(value, (dict, tuple, list)) or \
                    not 2 <= len(value) <= MAX_NAMES:
                continue
            if all(isinstance(k, str) for k in value) or \
                    all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in value) and isinstance(value, dict):
                out += [k for k in value if k not in out]
    return out


def _defined_counts(fn: Callable[..., Any]) -> list[int]:
    """The whole numbers among `_defined_names`: the keys of a dict of configurations by size or depth."""
    return [k for k in _defined_names(fn) if isinstance(k, int) and not isinstance(k, bool) and k >= 1]


def missing_name(fn: Callable[..., Any], model_args: dict[str, Any]) -> str | None:
    """The one parameter without a default that neither `model_args` nor harden (class count, channels, size) gives."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    offered = {a for names in ARG_ALIASES.values() for a in names}
    needed = [p.name for p in params.values() if p.default is p.empty and p.name not in model_args
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return needed[0] if len(needed) == 1 and needed[0] not in offered else None


# (tensors whose names the build lacks or the file lacks, tensors whose shapes differ, the build's tensors the file
# lacks, whether the shapes that differ are only a head's rows)
Score = tuple[int, int, int, bool]


def _fits(score: Score | None) -> bool:
    """Every tensor there, each of its shape; or all but a head's rows: a constructor that takes a class count is
    built here with its default one, the file's read later (checkpoint.load)."""
    return score is not None and score[0] == 0 and (score[1] == 0 or score[3])


def configuration_from_weights(fn: Callable[..., Any], model_args: dict[str, Any], score: Callable[[Any], Score],
                               sizes: set[int] = frozenset()) -> tuple[dict[str, Any], str] | None:
    """The constructor arguments the weights say, where nothing gave them, and a sentence saying so: the one
    required argument naming a configuration its code defines (`VGG('VGG19')`), else, where its defaults build a
    network the weights do not fit (beyond a head's rows), its integer and true/false arguments (WideResNet's depth
    and widen_factor, RobustBench's sub_block1), searched one at a time for the build whose tensors the file holds
    (`sizes`: the sizes of the file's tensors, tried for integers above 128). None where nothing better fits."""
    global _MEMO
    name = missing_name(fn, model_args)
    _MEMO = {}
    try:
        if name is not None:
            named = _named(fn, model_args, score, name)
            if named is not None:
                return named
        return _searched(fn, model_args, score, set(sizes))
    finally:
        _MEMO = None


# what a search has built, by arguments, while it runs (its passes and checks build the same arguments again: a
# ResNet-164's search asked for 54 arguments that build 134 times); None outside a search
_MEMO: dict[tuple, Any] | None = None


def _remembered(kind: str, fn, model_args: dict[str, Any], compute: Callable[[], Any], *more: Any) -> Any:
    if _MEMO is None:
        return compute()
    key = (kind, id(fn), *map(id, more), repr(sorted(model_args.items(), key=lambda item: item[0])))
    if key not in _MEMO:
        _MEMO[key] = compute()
    return _MEMO[key]


def _built(fn, model_args: dict[str, Any]):
    """The network on the meta device, or None where the constructor refuses the values (an assertion, a KeyError)."""
    from .meta_build import shapes_build
    from .registry import built
    try:
        return shapes_build(lambda: built(fn, {}, _folded(fn, model_args), text_too=False))
    except Exception:  # noqa: BLE001 - whatever the user's constructor raises for a value it does not take
        return None


def _scored(fn, model_args: dict[str, Any], score: Callable[[Any], Score]) -> Score | None:
    import torch

    def scored():
        net = _built(fn, model_args)
        return score(net) if isinstance(net, torch.nn.Module) else None  # a factory may return something else
    return _remembered("score", fn, model_args, scored, score)


def _named(fn, model_args, score, name) -> tuple[dict[str, Any], str] | None:
    literal = _literal_values(fn, name)
    values = (literal + [k for k in _defined_names(fn) if k not in literal])[:MAX_NAMES]
    fits: dict[int, list[Any]] = {}
    for value in values:
        got = _scored(fn, {**model_args, name: value}, score)
        if _fits(got):
            fits.setdefault(got[1], []).append(value)
    best = fits[min(fits)] if fits else []
    if len(best) > 1:
        raise HardenError(f"{name} is not given, and the weights fit {len(best)} of the names its code defines "
                          f"({', '.join(map(repr, best[:8]))}): give the one it was trained with, --model-arg "
                          f"{name}=NAME.")
    if not best:
        return None
    defaults = _searchable(fn, {**model_args, name: best[0]})
    _refuse_unread(fn, {**model_args, name: best[0]}, defaults, {}, f"{name}={best[0]!r}",
                   f"--model-arg {name}={json.dumps(best[0])}")
    shown = ", ".join(map(repr, values[:6])) + (", ..." if len(values) > 6 else "")
    return {name: best[0]}, (f"built with {name}={best[0]!r}, which nothing gave: the one of the "
                             f"{len(values)} names its code defines ({shown}) whose layers the weights fit "
                             f"(--model-arg {name} sets it)")


SEARCH_SECONDS = 10.0  # the most a search of integer and true/false arguments takes before giving up
NEAR = 24  # the steps either way a choice's move takes an integer to the nearest value that builds with it
PAST_THE_FILE = 4  # successive larger values whose builds hold more tensors the file lacks than the best: no larger
# never set by a search: arguments that fetch or write something, seed or say how to log and initialise
UNTRIED = re.compile(r"pretrain|download|progress|verbose|debug|seed|weight|cache|checkpoint|path|url|load|save|"
                     r"init|log|print", re.IGNORECASE)


def _searchable(fn, model_args) -> dict[str, Any]:
    """The integer and true/false arguments a search may set, with their defaults; a list of counts each element on
    its own (`depths[2]`: Swin's and ConvNeXt's `depths=[3, 3, 9, 3]`, whose small and base take 27 blocks there)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    # what harden gives, unless the callable asks for its size to be searched (a timm ViT's img_size, where nothing
    # gave the size: its position embedding's rows say it only with its class and register tokens, searched too)
    offered = {a for names in ARG_ALIASES.values() for a in names} - {getattr(fn, "searched_size", None)}
    out: dict[str, Any] = {}
    for p in params.values():
        if p.name in model_args or p.name in offered or UNTRIED.search(p.name) or \
                p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if isinstance(p.default, bool) or _count(p.default) or type(p.default) is int and p.default == 0:
            out[p.name] = p.default  # 0: a count of extra parts none of by default (timm ViT's reg_tokens)
        elif _multiplier(p.name, p.default):
            out[p.name] = p.default
        elif isinstance(p.default, (list, tuple)) and 1 <= len(p.default) <= MAX_ELEMENTS and \
                all(_count(v) for v in p.default):
            out.update({f"{p.name}[{i}]": v for i, v in enumerate(p.default)})
    return out


def _text_choices(fn, model_args) -> dict[str, list[str]]:
    """The other values of each text argument with a default that its constructor compares it with (bearpaw's
    `ResNet(depth, num_classes=1000, block_name='BasicBlock')`: `if block_name.lower() == 'basicblock': ... elif
    block_name.lower() == 'bottleneck':`) or looks up in a dict (`ACTIVATIONS[activation]`, `ACTIVATIONS.get(act)`,
    a dict written there or the module's), searched as a block class is; the constructor's own code, read, not run."""
    import ast
    import textwrap
    try:
        params = inspect.signature(fn).parameters
        code = getattr(fn, "forwarded_to", fn)  # a factory's `**kwargs` reach the class that reads them
        tree = ast.parse(textwrap.dedent(inspect.getsource(code.__init__ if inspect.isclass(code) else code)))
    except (OSError, TypeError, ValueError, SyntaxError):
        return {}
    offered = {a for names in ARG_ALIASES.values() for a in names}
    texts = {p.name: p.default for p in params.values() if isinstance(p.default, str) and p.name not in model_args
             and p.name not in offered and not UNTRIED.search(p.name)}

    def mentions(node, name: str) -> bool:  # `name`, `name.lower()`, `name.lower().strip()`
        while isinstance(node, (ast.Call, ast.Attribute)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and node.id == name

    def words(node) -> list[str]:
        items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]

    module = vars(sys.modules[code.__module__]) if getattr(code, "__module__", None) in sys.modules else {}

    def keys(table) -> list[str]:  # a dict looked up by the text: written there, or a module's dict by its name
        value = table if isinstance(table, ast.Dict) else module.get(table.id) if isinstance(table, ast.Name) else None
        if isinstance(value, ast.Dict):
            return [k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        return [k for k in value if isinstance(k, str)] if isinstance(value, dict) else []

    out: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            seen = [w for side in sides for w in words(side)]
        elif isinstance(node, ast.Subscript):  # `ACTIVATIONS[activation]`, `{'relu': nn.ReLU, ...}[act]`
            sides, seen = [node.slice], keys(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and \
                node.args:  # `ACTIVATIONS.get(activation)`
            sides, seen = [node.args[0]], keys(node.func.value)
        else:
            continue
        for name, default in texts.items():
            if any(mentions(side, name) for side in sides):
                found = out.setdefault(name, [])
                found += [w for w in seen if w.lower() != default.lower() and w not in found][:MAX_NAMES - len(found)]
    return {name: values for name, values in out.items() if values}


MAX_ELEMENTS = 8  # a list of counts longer than this (a per-layer table) is not searched
ELEMENT = re.compile(r"^(\w+)\[(\d+)\]$")  # a list argument's element, searched as an integer of its own


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# the values a width multiplier or ratio is tried at (torchvision's and RepDistiller's MobileNetV2 `width_mult`, a
# ViT's `mlp_ratio`): the ones published networks are built with
MULTIPLIERS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.25, 1.3, 1.4, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
# positive floats that are no multiplier of a width: a training-time rate (TRAINING_ONLY), a norm's epsilon and
# momentum, a scale's initial value (UNTRIED), a temperature
NOT_A_MULTIPLIER = re.compile(r"eps|momentum|temp|std|lr|decay|smooth|alpha|beta|gamma|scale", re.IGNORECASE)


def _multiplier(name: str, default: Any) -> bool:
    """A float argument with a positive default that may set widths (`width_mult=1.0`, `mlp_ratio=4.0`), searched
    over MULTIPLIERS."""
    return type(default) is float and default > 0 and not TRAINING_ONLY.search(name) and \
        not NOT_A_MULTIPLIER.search(name)


def _folded(fn, model_args: dict[str, Any]) -> dict[str, Any]:
    """The arguments with each element searched (`depths[2]`) put in its list: the list given, else the default."""
    if not any(ELEMENT.match(k) for k in model_args):
        return model_args
    params = inspect.signature(fn).parameters
    out = {k: v for k, v in model_args.items() if not ELEMENT.match(k)}
    for key, value in model_args.items():
        match = ELEMENT.match(key)
        if match:
            name, i = match.group(1), int(match.group(2))
            base = out.get(name, params[name].default)
            out[name] = [*base[:i], value, *base[i + 1:]]  # a list, as JSON keeps it (as_passed gives a tuple)
    return out


SEEDS = (1, 2, 3, 4, 8, 16, 32, 64)  # first values for the required integers, until the constructor builds
# a training-time rate (meliketoy's `Wide_ResNet(depth, widen_factor, dropout_rate, num_classes)`): it holds no tensor
# and the evaluated network does not use it, so a required one is given 0 rather than searched or asked for
TRAINING_ONLY = re.compile(r"drop", re.IGNORECASE)


def _required(fn, model_args) -> list[str] | None:
    """The arguments without a default that nothing gives (harden gives the counts and the size it knows), each one a
    search may set (unannotated or an int: vit-pytorch's `ViT(*, image_size, patch_size, dim, depth, heads, mlp_dim,
    ...)`, WideResNet-pytorch's `depth`); None where one is of another kind (a block class, a list of stage depths)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    needed = [p for p in params.values() if p.default is p.empty and p.name not in model_args
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(UNTRIED.search(p.name) or _kind(p) is None for p in needed):
        return None
    return [p.name for p in needed]


_COUNTS = re.compile(r"(typing\.)?(list|List|Sequence|tuple|Tuple)\[int(, *\.\.\.)?\]")
# a block class passed where the annotation names what it builds (`block: nn.Module`) or how it is called
_CLASS = re.compile(r"(typing\.)?(type|Type)(\[.*\])?|((torch\.)?nn\.)?Module|(typing\.)?Callable(\[.*\])?")


def _kind(p: inspect.Parameter) -> str | None:
    """What a required argument's annotation lets the search give it: "any" (none written), "int", "class" (`type[...]`:
    torchvision's `ResNet(block: type[Union[BasicBlock, Bottleneck]], layers: list[int], ...)`, which published code
    copies, annotations and all; `nn.Module` and `Callable`, as typed code also annotates a block class), "counts"
    (`list[int]`, `List[int]`, `Sequence[int]`, `tuple[int, ...]`); None for another kind. Written annotations (`from
    __future__ import annotations`) are read as their text."""
    import collections.abc
    a = p.annotation
    if a is p.empty:
        return "any"
    if a is int or a == "int":
        return "int"
    if isinstance(a, str):
        text = a.replace(" ", "")
        return "counts" if _COUNTS.fullmatch(text) else "class" if _CLASS.fullmatch(text) else None
    import torch
    origin, args = typing.get_origin(a), typing.get_args(a)
    if a is type or origin is type or a is torch.nn.Module or origin is collections.abc.Callable:
        return "class"
    if origin in (list, tuple, collections.abc.Sequence) and args in ((int,), (int, Ellipsis)):
        return "counts"
    return None


def _seeded(fn, model_args, required: list[str]) -> dict[str, Any] | None:
    """Values for the required integers with which the constructor builds (the search starts from them): one value
    for all, else one of them another (a WideResNet's `assert (depth - 4) % 6 == 0` takes 4 or 16, its width 1);
    else, for arguments with no annotation or one of a class or a list of integers, a block class or a list of counts
    (`_structured_seeds`)."""
    tries = [dict.fromkeys(required, v) for v in SEEDS]
    tries += [{**dict.fromkeys(required, base), name: v} for base in SEEDS for name in required for v in SEEDS
              if len(required) > 1 and v != base]
    for seeds in tries:
        if _builds(fn, {**model_args, **seeds}):
            return seeds
    return _structured_seeds(fn, model_args, required)


SEED_LISTS = 6  # lists of ones tried as a required argument's seed, of one to this many elements
SEED_SECONDS = 3.0  # the most the structured seeds' builds take


def _structured_seeds(fn, model_args, required: list[str]) -> dict[str, Any] | None:
    """pytorch-cifar's `ResNet(block, num_blocks)`, called `ResNet(BasicBlock, [2, 2, 2, 2])`: each required argument
    with no annotation tried as each network class its module holds (by name: passed as the class, as --model-arg
    passes it), as a list of ones (the shortest that builds is the list's length: a longer one is read in part) or as
    an integer of SEEDS, in that order, one annotated as a class or a list of integers (`_kind`) only as those; the
    first combination with which the constructor builds, each argument it also builds with as 1 set to 1."""
    import itertools
    params = inspect.signature(fn).parameters
    classes = _block_classes(fn)
    lists = [[1] * n for n in range(1, SEED_LISTS + 1)]
    # the integers after them (RepDistiller's `ResNet(depth, num_filters, ...)` asserts a depth of 6n + 2: 2 builds)
    tried = {"any": [*classes, *lists, *SEEDS], "class": classes, "counts": lists, "int": list(SEEDS)}
    kinds = [tried[_kind(params[name]) or "int"] for name in required]
    start = time.perf_counter()
    for combo in itertools.product(*kinds):
        if time.perf_counter() - start > SEED_SECONDS:
            return None
        seeds = dict(zip(required, combo, strict=True))
        if any(isinstance(v, (str, list)) for v in combo) and _builds(fn, {**model_args, **seeds}):
            # the classes come first, and a layer may keep one as a setting without complaint (a stride): each
            # argument the constructor also builds with as 1 takes 1
            for name, value in seeds.items():
                if value != 1 and _builds(fn, {**model_args, **seeds, name: 1}):
                    seeds[name] = 1
            return seeds
    return None


def _block_classes(fn) -> list[str]:
    """The names of the network classes `fn`'s module holds besides `fn` (its blocks), in their order there: its own
    and those it imports from torchvision's models (`from torchvision.models.resnet import BasicBlock, Bottleneck`
    beside a CIFAR subclass of its ResNet), not torch's layers nor timm's."""
    import torch
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    return [name for name, obj in (vars(module).items() if module is not None else ())
            if inspect.isclass(obj) and issubclass(obj, torch.nn.Module) and obj is not fn and not name.startswith("_")
            and not _library_layer(getattr(obj, "__module__", "") or "")][:MAX_NAMES]


def _library_layer(module: str) -> bool:
    return module == "torch" or module.startswith(("torch.", "timm", "torchvision.ops"))


def _builds(fn, model_args) -> bool:
    import torch
    return isinstance(_built(fn, model_args), torch.nn.Module)


LOOSE = (0, 0.25, 0.5, 0.75)  # also tried for a required argument with no annotation: a flag passed as 0 or 1, a
# fraction (bamos' `DenseNet(growthRate, depth, reduction, nClasses, bottleneck)`: reduction 0.5, bottleneck True)


MAX_COUNT = 2048  # the largest count extrapolated to beyond the scan's 128 (He et al.'s ResNet-1202, bearpaw's 164)


def _values(default: Any, renames: bool, sizes: set[int], side: bool = False, loose: bool = False) -> list[Any]:
    """A true/false argument's other value; an integer's: where it changes which tensors there are (a depth), every
    count to 128 (a WideResNet's depth of 70); where it changes only their shapes (a width), the counts to 16 (a
    widen_factor), the sizes the file's tensors have (an embedding's 192) and powers of two; an image's side
    (`side`), the common ones too (a ViT's 224 is no tensor's size: its position embedding has 197 rows)."""
    if isinstance(default, bool):
        return [not default]
    if type(default) is float:
        return [v for v in MULTIPLIERS if v != default]
    ints = set(range(1, 129)) | {v for v in sizes if v > 128} if renames else set(range(1, 17)) | sizes | \
        {2 ** k for k in range(5, max(sizes, default=1).bit_length())}  # an attention head's 32 or 64 features
    if side:
        from .config import SIZES_TRIED
        ints |= set(SIZES_TRIED)
    return [*(v for v in LOOSE if loose and v != default), *sorted(v for v in ints if v != default and v > 0)]


def _layers(fn, model_args) -> tuple | None:
    """The names and shapes of what a build holds (None: the constructor refuses those arguments)."""
    import torch

    from .lazy import tensor_shapes

    def layers():
        net = _built(fn, model_args)
        return tensor_shapes(net) if isinstance(net, torch.nn.Module) else None
    return _remembered("layers", fn, model_args, layers)


def _settings(net) -> tuple:
    """All a build holds that its forward can read: each module's class, its tensors' shapes and every other attribute
    (a stride, a head count, a class kept to call later), as comparable plain values; an object that is none of
    those is compared by its type and repr, so two of them never pass for one where the repr shows an address."""
    import torch
    internals = set(vars(torch.nn.Module()))

    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return ("tensor", tuple(v.shape), str(v.dtype))
        if isinstance(v, torch.nn.Module):
            return ("module", type(v).__qualname__)
        if isinstance(v, (list, tuple)):
            return (type(v).__name__, tuple(plain(x) for x in v))
        if isinstance(v, dict):
            return ("dict", tuple((repr(k), plain(x)) for k, x in v.items()))
        if isinstance(v, (str, int, float, bool, type(None))):
            return v
        if inspect.isclass(v) or inspect.isfunction(v) or inspect.isbuiltin(v):
            return (getattr(v, "__module__", ""), getattr(v, "__qualname__", repr(v)))
        return (type(v).__qualname__, repr(v))

    return tuple((name, type(m).__qualname__, tuple(sorted((k, plain(v)) for k, v in vars(m).items()
                                                           if k not in internals and k != "training")),
                  tuple((k, plain(t)) for k, t in [*m._parameters.items(), *m._buffers.items()]))
                 for name, m in net.named_modules())


INERT_TRIES = (0, 1, 2, 3, 7, 16, 40, 100)  # the values an argument that changes nothing builds alike at


def _inert(fn, model_args: dict[str, Any], name: str) -> bool:
    """Whether the argument changes nothing a build holds (pytorch-cifar's `PNASNet(cell_type, num_cells,
    num_planes)` never reads num_cells): at every value of INERT_TRIES, each build that succeeds (two at least) holds
    the same settings. Then the forward, which reads only what its modules hold, computes the same function for any value."""
    import torch
    base = _built(fn, model_args)
    if not isinstance(base, torch.nn.Module):
        return False
    now = _now(model_args, name, None)
    settings, alike = _settings(base), 0
    # 0: a flag builds alike at every true value; the larger: a depth read as `(depth - 4) // 6` blocks, none below 10
    for value in INERT_TRIES:
        if value == now:
            continue
        net = _built(fn, {**model_args, name: value})
        if isinstance(net, torch.nn.Module):
            if _settings(net) != settings:
                return False
            alike += 1
    return alike >= 2


def _side_scaled(model_args, name, value, side: str | None) -> dict[str, Any] | None:
    """A patch size the image side does not divide (`assert image_size % patch_size == 0`) is tried with the side
    scaled alike, so the patches keep their count (and a position embedding its rows): the move, or None."""
    now = model_args.get(name)
    if side is None or side == name or side not in model_args or isinstance(value, bool) or \
            not isinstance(value, int) or not isinstance(now, int) or isinstance(now, bool) or now < 1:
        return None
    scaled = model_args[side] * value / now
    return {name: value, side: int(scaled)} if scaled == int(scaled) and scaled >= 1 else None


def _effect(fn, model_args, name, default, base: tuple | None, side: str | None = None,
            loose: bool = False) -> str | None:
    """What the argument changes, from a build at one of its next values: "names" (which tensors there are),
    "shapes", "nothing" (no tensor: an attention's head count, a stride, a flag; not searched), or None where no such
    build could be made (not searched either, and not said to change nothing). `loose`: 0 and a fraction tried too
    (a flag seeded 1 builds alike at every larger value)."""
    counts = not isinstance(default, (bool, float))
    if type(default) is float:  # a multiplier: halved and doubled
        tries = [default / 2, default * 2]
    elif isinstance(default, bool):
        tries = [not default]
    else:
        tries = list(dict.fromkeys([default + 1, default + 2, default * 2, default + 6, default + 12, default * 4]))
    if counts:
        # then below it, and the numbers its module keys configurations by: a depth that indexes a dict of layer
        # lists (network slimming's `defaultcfg[depth]`, {11: [...], ..., 19: [...]}) builds at none above 19
        tries += [v for v in (default - 1, default - 2, default // 2, *_defined_counts(fn))
                  if v >= 1 and v != default and v not in tries]
    tries = [v for v in LOOSE[:3] if loose and v != default] + tries
    # where none of those builds, the next values up to a step of 24 (a depth of 9n + 2 that another block's 6n + 2
    # left at 38: 47 is the next one that builds)
    steps = [default + k for k in range(3, 25) if counts and default + k not in tries]
    same, built = False, False
    for value in tries + steps:
        if value in steps and (built or same):
            break
        got = _layers(fn, {**model_args, name: value})
        scaled = _side_scaled({**model_args, name: default}, name, value, side) if got is None else None
        if scaled is not None:
            got = _layers(fn, {**model_args, **scaled})
        if got is None or base is None:
            continue
        built = True
        if got == base:  # at this value; another may differ (meliketoy's WideResNet builds one block at depths 4 and 10)
            same = True
            continue
        return "names" if [k for k, _ in got] != [k for k, _ in base] else "shapes"
    return "nothing" if same else None


def _searched(fn, model_args, score, sizes: set[int]) -> tuple[dict[str, Any], str] | None:
    """Coordinate search from the defaults (and, for integers with no default, from one value with which the
    constructor builds): each argument that changes a layer (those that change which tensors there are first) takes
    in turn the value that leaves the fewest tensors unmatched (names first, then shapes), until a build fits or a
    pass changes nothing. The required integers are searched alone first: the weights often fit several settings
    (vit-pytorch's patches: 3 channels of 4 x 4 pixels or 48 channels of one), and the one that keeps the defaults
    is the one its code would build."""
    required = _required(fn, model_args)
    if required is None:
        return None
    unused = {n: 0.0 for n in required if TRAINING_ONLY.search(n)}
    required = [n for n in required if n not in unused]
    seeds = _seeded(fn, {**model_args, **unused}, required) if required else {}
    if seeds is None:
        return None
    best = _scored(fn, {**model_args, **unused, **seeds}, score)
    start = None
    if best is None and not required:
        # the defaults do not build with what was given (network slimming's pruned `cfg`, saved beside the weights,
        # is 19 widths for a depth of 20, and its default depth 164 reads past them): the first integer value with
        # which it builds, the descent's start
        start = _building_start(fn, {**model_args, **unused}, score)
        if start is not None:
            seeds, best = {**seeds, **start[0]}, start[1]
    if best is None or _fits(best) and not required and not start:
        # a constructor that needs what harden gives later (a class count) is not searched
        return None
    # a list seeded searched element by element (`num_blocks[2]`), a class seeded over its module's other classes
    elements = {f"{n}[{i}]": v for n, seq in seeds.items() if isinstance(seq, list) for i, v in enumerate(seq)}
    choices = {n: [c for c in _block_classes(fn) if c != v] for n, v in seeds.items() if isinstance(v, str)}
    texts = _text_choices(fn, {**model_args, **unused})
    choices.update(texts)
    searched = [n for n in required if not isinstance(seeds[n], list)] + list(elements)
    params = inspect.signature(fn).parameters
    defaults = {**{n: v for n, v in seeds.items() if not isinstance(v, list)}, **elements,
                **_searchable(fn, {**model_args, **unused}), **{n: params[n].default for n in texts}}
    found: dict[str, Any] = {**unused, **seeds}
    search = _Search(fn, model_args, score, sizes, best, {n for n in required if params[n].annotation is params[n].empty
                                                           and not isinstance(seeds[n], (list, str))}, choices)
    for names in ([searched, list(defaults)] if required else [list(defaults)]):
        if search.descend({n: defaults[n] for n in names}, found):
            _refuse_other_classes(fn, {**model_args, **found}, choices, score, set(texts))
            return _said(fn, model_args, score, defaults, found, required, search.builds, search.loose)
        if search.out_of_time():
            return None
    return None


def _building_start(fn, model_args, score) -> tuple[dict[str, Any], Score] | None:
    """One searchable integer moved to the smallest count (to 128) with which the constructor builds with the
    arguments given, and that build's score; None where none builds within SEED_SECONDS."""
    begun = time.perf_counter()
    for name, default in _searchable(fn, model_args).items():
        if isinstance(default, bool) or ELEMENT.match(name):
            continue
        for value in _values(default, True, set()):
            if time.perf_counter() - begun > SEED_SECONDS:
                return None
            got = _scored(fn, {**model_args, name: value}, score)
            if got is not None:
                return {name: value}, got
    return None


class _Search:
    """The coordinate descent's state: the best score so far, the builds made, the time they took."""

    def __init__(self, fn, model_args, score, sizes: set[int], best: Score, loose: set[str] = frozenset(),
                 choices: dict[str, list[str]] | None = None):
        self.fn, self.model_args, self.score, self.sizes, self.best = fn, model_args, score, sizes, best
        self.loose = loose  # required arguments with no annotation: 0 and fractions tried too
        self.choices = choices or {}  # a block class's argument: its module's other classes, by name
        self.searched: set[str] = set()  # the arguments the descent moves (those a choice's move may take along)
        self.start, self.builds = time.perf_counter(), 0

    def out_of_time(self) -> bool:
        return time.perf_counter() - self.start > SEARCH_SECONDS

    def beyond(self, args: dict[str, Any], name: str, lower: tuple[int, Score],
               upper: tuple[int, Score]) -> dict[str, Any] | None:
        """A count still closing in on the file at the top of the scan (a ResNet-1202's depth, past every count to
        128): the value at which the build would hold as many tensors as the file, from the two largest built
        (tensors grow in step with a depth), and the three values nearest it that build; twice, from the better
        one. The move to the best, or None where none comes closer."""
        pick = None
        for _ in range(2):
            (v0, _), (v1, s1) = lower, upper
            n0, n1 = (len(_layers(self.fn, {**args, name: v}) or ()) for v in (v0, v1))
            if n1 <= n0 or v1 <= v0:
                return pick
            in_file = n1 - s1[2] + (s1[0] - s1[2])  # the build's tensors, less those the file lacks, plus its own
            centre = round(v1 + (in_file - n1) * (v1 - v0) / (n1 - n0))
            if centre <= v1 or centre > MAX_COUNT:
                return pick
            near: list[tuple[int, Score]] = []
            for value in sorted(range(centre - NEAR, centre + NEAR + 1), key=lambda v: abs(v - centre)):
                if value <= v1 or value > MAX_COUNT or len(near) >= 3 or self.out_of_time():
                    continue
                got = _scored(self.fn, {**args, name: value}, self.score)
                self.builds += 1
                if got is not None:
                    near.append((value, got))
            if not near:
                return pick
            value, got = min(near, key=lambda vg: vg[1][:2])
            if got[:2] >= self.best[:2]:
                return pick
            self.best, pick = got, {name: value}
            if _fits(got):
                return pick
            lower, upper = upper, (value, got)
        return pick

    def near(self, args: dict[str, Any], move: dict[str, Any]) -> tuple[dict[str, Any], Score | None]:
        """A choice that does not build with the other arguments as they are, built with one integer among them moved
        to its nearest value that builds (up to NEAR steps either way): the move and its score, or (move, None)."""
        for other, now in args.items():
            if other in move or other not in self.searched or not _count(now):
                continue
            for step in range(1, NEAR + 1):
                for value in (now + step, now - step):
                    if value < 1:
                        continue
                    got = _scored(self.fn, {**args, **move, other: value}, self.score)
                    self.builds += 1
                    if got is not None:
                        return {**move, other: value}, got
        return move, None

    def descend(self, defaults: dict[str, Any], found: dict[str, Any]) -> bool:
        """Up to three passes over `defaults`' arguments, setting `found`; whether a build fits."""
        fn, model_args = self.fn, self.model_args
        self.searched = set(defaults)
        side = next((n for n in ARG_ALIASES["input_size"] if n in defaults), None)  # searched: an image's side
        if _fits(self.best):
            return True
        for _ in range(3):
            changed = False
            base = _layers(fn, {**model_args, **found})
            effects = {name: "names" if name in self.choices else
                       _effect(fn, {**model_args, **found}, name, found.get(name, default), base,
                               side if side in found else None, name in self.loose)
                       for name, default in defaults.items()}
            order = [n for n in defaults if effects[n] == "names"] + [n for n in defaults if effects[n] == "shapes"]
            for name in order:
                pick, past, built = None, 0, []
                values = self.choices[name] if name in self.choices else \
                    _values(found.get(name, defaults[name]), effects[name] == "names", self.sizes,
                            name in ARG_ALIASES["input_size"], name in self.loose)
                for value in values:
                    # ascending: a depth past the file's builds ever more tensors, ever slower
                    if self.out_of_time():
                        return False
                    move = {name: value}
                    got = _scored(fn, {**model_args, **found, **move}, self.score)
                    self.builds += 1
                    scaled = _side_scaled({**model_args, **defaults, **found}, name, value, side) \
                        if got is None else None
                    if scaled is not None:
                        move = scaled
                        got = _scored(fn, {**model_args, **found, **move}, self.score)
                        self.builds += 1
                    if got is None and name in self.choices:  # a block that takes other depths (9n + 2, not 6n + 2)
                        move, got = self.near({**model_args, **found}, move)
                    if got is None:
                        continue
                    if len(move) == 1 and _count(value):
                        built.append((value, got))
                    if got[:2] < self.best[:2]:
                        self.best, pick = got, move
                        if _fits(self.best):
                            break
                    past = past + 1 if got[2] > self.best[0] and not isinstance(value, bool) else 0
                    if past >= PAST_THE_FILE:
                        break
                if effects[name] == "names" and not _fits(self.best) and len(built) >= 2 and pick == {
                        name: built[-1][0]} and built[-1][0] >= 64 and name != side:
                    pick = self.beyond({**model_args, **found}, name, built[-2], built[-1]) or pick
                if pick is not None:
                    found.update(pick)
                    changed = True
                if _fits(self.best):
                    return True
            if not changed:
                return False
        return False


def _said(fn, model_args, score, defaults, found, required, builds, loose=frozenset()) -> tuple[dict[str, Any], str]:
    """The arguments found and the sentence that says so, after refusing any the weights cannot say."""
    found = _as_flags(fn, model_args, found, loose)
    # an argument the descent moved and then back (Swin's patch_size, on the way to its window_size) is not said
    found = {k: v for k, v in found.items() if k in required or k not in defaults or v != defaults[k]}
    unused = [n for n in found if n not in defaults and TRAINING_ONLY.search(n)]  # a required training-time rate, 0
    # a required argument its code never reads (pytorch-cifar's PNASNet's num_cells): as seeded, said
    inert = [n for n in required if _count(found.get(n)) and _inert(fn, {**model_args, **found}, n)]
    found = _folded(fn, found)
    said = ", ".join(f"{k}={v!r}" for k, v in found.items())
    flags = " ".join(f"--model-arg {k}={arg_text(v)}" for k, v in found.items())
    _refuse_unread(fn, {**model_args, **found}, defaults, found, said, flags, required, loose)
    _refuse_traded(fn, {**model_args, **found}, defaults, score, said)
    why = (f"its constructor requires {', '.join([*required, *unused])}, which nothing gave" if required or unused
           else "the weights fit no network its defaults build") + \
        (f" ({', '.join(unused)}: a training-time rate, no tensor's and unused in evaluation, given 0)" if unused else "") \
        + (f" ({', '.join(f'{n}={found[n]}' for n in inert)}: read by none of its layers, the network the same at "
           f"any value)" if inert else "")
    return found, (f"built with {said}: {why}, and {'these' if len(found) > 1 else 'this'} "
                   f"{'were' if len(found) > 1 else 'was'} found from the weights ({builds} builds tried on the meta "
                   f"device; `{flags}` says {'them' if len(found) > 1 else 'it'})")


def _as_flags(fn, model_args, found: dict[str, Any], loose) -> dict[str, Any]:
    """A required argument with no annotation that builds alike at 1 and 2 and otherwise at 0 (bamos' `bottleneck`,
    first built at 1 or 2 with the other seeds) is a flag: said as True, or False where found at 0."""
    out = dict(found)
    for name in loose:
        value = out.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        zero, one, two = (_layers(fn, {**model_args, **out, name: v}) for v in (0, 1, 2))
        if None not in (zero, one, two) and one == two != zero and value in (0, 1, 2) or \
                value > 2 and one == two == _layers(fn, {**model_args, **out}) != zero:
            out[name] = value != 0
    return out


def _refuse_unread(fn, model_args, defaults, found, said, flags, required=(), loose=frozenset()) -> None:
    """A network whose tensors all fit may still compute another function: an integer argument that changes no
    tensor (an attention's head count: timm's ViT-Ti has 3 heads, its class's default 12, over the same weights; a
    stride) left at its default, or at the value a required one was first built with, is a guess the weights cannot
    check. Refused, naming what was found and what is still to give. For a library's name (a timm name), its values
    are what the name builds, as for a load that needs no search, unless the weights moved a width the name sets (a
    ViT-Ti's file under ViT-S's name: embed_dim 192 for 384): then they are another variant's, and the name's values
    that no tensor holds (its head count) are the guess."""
    writes = getattr(fn, "name_writes", None)
    widths: list[str] = []
    if writes is not None:
        base = _layers(fn, model_args)
        widths = [n for n in found if n in writes and (n not in defaults or found[n] != defaults[n])
                  and _reshaped(base, _layers(fn, {**model_args, n: inspect.signature(fn).parameters[n].default}))]
        if not widths:
            return
        defaults = {n: d for n, d in defaults.items() if (_list_of(n) or n) in writes}
    base = _layers(fn, model_args)
    # a defaulted list's elements that change no tensor (strides) keep their defaults, as before lists were searched;
    # a required list's (seeded with ones) are a guess, as a required integer's first value is
    unread = [n for n, d in defaults.items() if (n not in found or n in required or _list_of(n) in required)
              and not isinstance(d, bool) and (not ELEMENT.match(n) or _list_of(n) in required)
              and isinstance(_now(model_args, n, d), int)
              and _effect(fn, model_args, n, _now(model_args, n, d), base, loose=n in loose) == "nothing"
              and not _inert(fn, model_args, n)]
    unread = list(dict.fromkeys(_list_of(n) or n for n in unread))  # `strides[0]`, `strides[1]`: strides
    if widths:
        # the name's value stands where the width moved lies outside what it sets (a ViT's mlp_ratio reshapes its
        # MLPs, not the attention whose head count no tensor holds)
        reshaped = set().union(*(_touched(fn, model_args, n, inspect.signature(fn).parameters[n].default)
                                 for n in widths))
        touched = {n: _touched(fn, model_args, n, None) for n in unread}  # empty: not probed, kept
        unread = [n for n in unread if not touched[n] or _related(reshaped, touched[n])]
    if unread and set(unread) & set(required):
        found = {k: v for k, v in found.items() if k not in unread}
        said = ", ".join(f"{k}={v!r}" for k, v in found.items()) or "nothing else"
        flags = " ".join(f"--model-arg {k}={arg_text(v)}" for k, v in found.items())
    if unread:
        them = "it" if len(unread) == 1 else "them"
        raise HardenError(
            f"The weights fit a network built with {said} (found from them), but {', '.join(unread)} "
            f"change{'s' if len(unread) == 1 else ''} no tensor's name or shape, so the weights cannot say {them} "
            f"and the value it was built with (its default, or a first value where it has none) may compute "
            f"another function over the same weights (an attention's head count does): "
            f"give {them} too: {flags} {' '.join(f'--model-arg {n}=VALUE' for n in unread)}.")


ARGS_KEPT = re.compile(r"_*(model_|init_)?(kw)?args$")  # timm's `net._model_args`: the arguments, not a setting


def _touched(fn, model_args: dict[str, Any], name: str, value: Any) -> set[str]:
    """The modules whose tensors' shapes or settings a build with `name` at `value` (None: the next integer that
    builds, up or down) holds otherwise than the build with `model_args`."""
    import torch
    base = _built(fn, model_args)
    params = inspect.signature(fn).parameters
    now = _now(model_args, name, params[name].default if name in params else None)
    tries = [value] if value is not None else \
        [v for v in (now + 1, now * 2, now - 1) if v >= 1 and v != now] if isinstance(now, int) else []
    if not isinstance(base, torch.nn.Module):
        return set()
    for v in tries:
        other = _built(fn, {**model_args, name: v})
        if isinstance(other, torch.nn.Module):
            mine = _module_settings(base)
            return {m for m, entry in _module_settings(other).items() if mine.get(m) != entry}
    return set()


def _module_settings(net) -> dict[str, tuple]:
    """Each module's _settings entry by its name, less a copy of the arguments it was built with (ARGS_KEPT)."""
    return {e[0]: (e[1], tuple(a for a in e[2] if not ARGS_KEPT.match(a[0])), e[3]) for e in _settings(net)}


def _related(some: set[str], others: set[str]) -> bool:
    """Whether a module of one set is one of the other's, or inside it, or holds it."""
    return any(a == b or a.startswith(b + ".") or b.startswith(a + ".") or not a or not b for a in some for b in others)


def _refuse_other_classes(fn, model_args, choices: dict[str, list[str]], score, texts=frozenset()) -> None:
    """A block class found where another of the module's classes fits the weights as well (the same tensors, and
    perhaps another computation: a pre-activation block's layers in another order): the weights cannot say which.
    So for a text argument the search moved off its default (`texts`: values its code compares it with)."""
    for name, others in choices.items():
        if name not in model_args:  # a text argument left at its default: what its code builds
            continue
        fitting = [c for c in others if c != model_args[name] and _fits(_scored(fn, {**model_args, name: c}, score))]
        if fitting:
            listed = [model_args[name], *fitting]
            both = ", ".join(map(repr, listed)) if name in texts else ", ".join(listed)
            kind = "values its code compares it with" if name in texts else "each a class its module holds"
            raise HardenError(f"The weights fit a network built with {name} as any of {both} ({kind}, building the "
                              f"same tensors): give the one it was trained with, --model-arg {name}=NAME.")


def _reshaped(one: tuple | None, other: tuple | None) -> bool:
    """Whether two builds hold the same tensors by name, some of other shapes (a width moved, not a depth)."""
    return one is not None and other is not None and [k for k, _ in one] == [k for k, _ in other] and one != other


def _list_of(name: str) -> str | None:
    """The list argument an element's name is of (`strides[1]`: strides), or None."""
    match = ELEMENT.match(name)
    return match.group(1) if match else None


def _now(model_args: dict[str, Any], name: str, default: Any) -> Any:
    """An argument's value in `model_args`, an element's in its list there, else `default`."""
    listed = _list_of(name)
    if listed is not None and isinstance(model_args.get(listed), (list, tuple)):
        return model_args[listed][int(ELEMENT.match(name).group(2))]
    return model_args.get(name, default)


def _refuse_traded(fn, model_args, defaults, score, said) -> None:
    """Two integers whose product alone shapes the tensors (vit-pytorch's `heads` x `dim_head`: 4 heads of 64 and 8
    of 32 hold the same weights, and attend differently) fit the weights at another pair too, one doubled and the
    other halved: the weights cannot say which. Refused, naming both pairs and asking for one of the two. Not for a
    library's name, whose values are the name's (_refuse_unread)."""
    if getattr(fn, "name_writes", None) is not None:
        return
    ints = [n for n, d in defaults.items() if not ELEMENT.match(n) and not isinstance(model_args.get(n, d), bool)
            and isinstance(model_args.get(n, d), int) and model_args.get(n, d) > 0]
    start = time.perf_counter()
    for i, a in enumerate(ints):
        for b in ints[i + 1:]:
            va, vb = model_args.get(a, defaults[a]), model_args.get(b, defaults[b])
            for other in ({a: va * 2, b: vb // 2}, {a: va // 2, b: vb * 2}):
                if min(other.values()) < 1 or any(v * 2 != w and w * 2 != v for v, w in
                                                  ((other[a], va), (other[b], vb))) or \
                        time.perf_counter() - start > SEARCH_SECONDS:
                    continue
                if _fits(_scored(fn, {**model_args, **other}, score)):
                    alt = ", ".join(f"{k}={v!r}" for k, v in other.items())
                    raise HardenError(
                        f"The weights fit a network built with {said} (found from them), and as well one built with "
                        f"{alt}: only the product of {a} and {b} shapes the tensors, and the two compute different "
                        f"functions. Give the one it was trained with: --model-arg {a}=VALUE (or {b}).")


def _factory(obj) -> bool:
    """Whether a function reads as a network's factory, and so may be called to build on the meta device: a few
    assignments and a return, no loop (pytorch-cifar's `def ResNet34(): return ResNet(BasicBlock, [3, 4, 6, 3])`;
    its `def test(): net = ResNet18(); y = net(...); print(y.size())` ends in a print, a training `main()` loops),
    beside branches on a flag that is off unless given (FB's ConvNeXt's `if pretrained:` fetching its weights)."""
    import ast
    import textwrap
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return False
    fn = tree.body[0] if tree.body and isinstance(tree.body[0], ast.FunctionDef) else None
    if fn is None:
        return False
    a = fn.args
    defaults = list(zip(a.args[len(a.args) - len(a.defaults):], a.defaults, strict=True)) + \
        [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
    off = {arg.arg for arg, d in defaults if isinstance(d, ast.Constant) and not d.value}
    body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) and \
        isinstance(fn.body[0].value, ast.Constant) else fn.body  # its docstring
    runs = [node for node in body if not (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                                          and node.test.id in off and not node.orelse)]
    # assignments, then the return: a statement that is a bare call (a print, a write) does something else
    return bool(runs) and len(runs) <= 3 and isinstance(runs[-1], ast.Return) and \
        all(isinstance(node, (ast.Assign, ast.AnnAssign)) for node in runs[:-1]) and \
        not any(isinstance(node, (ast.For, ast.While, ast.With)) for run in runs for node in ast.walk(run))


def fitting_siblings(fn, model_args: dict[str, Any], score: Callable[[Any], Score]) -> list[str]:
    """The callables `fn`'s module defines beside it, named alike (pytorch-cifar's `ResNet18`, `ResNet34`, ... beside
    `ResNet(block, num_blocks)`: one stem) and built without running anything else (network classes, and functions
    that read as factories: never a `test()` or `main()`), that build with nothing but what harden gives (the class
    count, channels, size) a network whose tensors the file holds; for the error, never taken unasked: the user named
    another."""
    import torch
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    # the name's leading letters: ResNet18 -> resnet, convnext_tiny -> convnext (FB's convnext_small beside it)
    stem = re.match(r"[A-Za-z]*", getattr(fn, "__name__", "")).group().lower()
    if module is None or len(stem) < 3:
        return []
    out, start = [], time.perf_counter()
    for name, obj in list(vars(module).items()):
        if obj is fn or not callable(obj) or not name.lower().startswith(stem) or \
                getattr(obj, "__module__", None) != module.__name__ or \
                (not issubclass(obj, torch.nn.Module) if inspect.isclass(obj) else not _factory(obj)):
            continue
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        keywords = any(p.kind == p.VAR_KEYWORD for p in params.values())
        args = {k: v for k, v in model_args.items() if k in params or keywords}
        if any(p.default is p.empty and p.name not in args and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in params.values()):
            continue
        if time.perf_counter() - start > SEARCH_SECONDS:
            break
        if _fits(_scored(obj, args, score)):
            out.append(name)
    return out
