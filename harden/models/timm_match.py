"""Which timm models build a network with exactly these weights' names and shapes: for the error of a plain state dict
given without --arch (a fine-tuning script's `torch.save(model.state_dict(), ...)` of a timm model that torchvision
does not have: GhostNet, NFNet, FastViT, ...).

timm registers some 1,400 models in about 100 modules; building them all on the meta device takes minutes. The
candidates are ordered instead: first the timm names the file's path spells (`convnext_tiny_best.pth`, a run folder
`ghostnet_100-finetune/`), longest first; then the models of the modules whose own layer names (read from the
modules' source, nothing built) cover most of the weights' names. Each is built for its shapes alone at the file's
class count until the time given runs out; a name is told only where the names and shapes are exactly its.

Before those modules come the models an index says have exactly the weights' names (`timm_names.json`: every timm
model's sorted state-dict keys, hashed; 823 key sets for 1,371 models, at most 18 models a set, built in 42 s on
the 2-core CPU by `python -m harden.models.timm_match`): a ViT's names are every ViT-like module's, so no ranking
found one within the time, while its key set is shared by a few models only. The index is a shortcut, never an
answer: each model it names is built and compared as the others are, and a timm that registers other models (or
other names for them) falls back to the ranking."""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .meta_build import shapes_build

# `self.conv_stem = ...`, `self.stem: nn.Module = ...`, `add_module(f'stage{i}', ...)`, `('conv1', nn.Conv2d(...))` in
# an OrderedDict, `register_buffer('pos', ...)`: the names a module's layers take in a state dict (a name made with
# an f-string or str.format, `"b{}".format(i + 1)`, counts by its text before the braces)
_LAYER_NAME = re.compile(r"self\.(\w+)\s*(?::[^=\n]*)?=(?!=)|add_module\(\s*f?['\"](\w+)|\(\s*f?['\"](\w+)['\"]"
                         r"|register_(?:buffer|parameter)\(\s*['\"](\w+)|f?['\"]([A-Za-z_]\w*)\{")
_IMPORTED = re.compile(r"^from \.(\w+) import", re.M)  # a timm module's classes taken from a sibling module
_NOT_NAMES = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
MODULES_TRIED = 6  # modules whose models are built, best first, while the time given lasts
DISTINCT_SHARE = 0.1  # a search needs one weight name that at most this share of the modules gives
_COVER_MIN = 0.5  # weighted share of the weights' names a module must give to be tried


def _word(name: str) -> str:
    """A layer name without its number (`layer3`, `stage2`, `b1` -> `layer`, `stage`, `b`): numbered layers are
    named in loops."""
    return name.rstrip("0123456789") or name


def _names_in(source: str) -> frozenset:
    return frozenset(_word(x) for groups in _LAYER_NAME.findall(source) for x in groups if x)


@functools.lru_cache(maxsize=1)
def _modules() -> tuple[dict[str, list[str]], dict[str, frozenset], frozenset]:
    """({timm module: its model names}, {module: the layer names its source and the sibling modules it imports from
    give}, the names timm.layers gives)."""
    import timm
    from timm import layers
    from timm.models import _registry
    models: dict[str, list[str]] = {}
    for name in timm.list_models():
        models.setdefault(_registry._model_to_module.get(name, ""), []).append(name)
    own, imports = {}, {}
    for module in models:
        mod = sys.modules.get(f"timm.models.{module}")
        try:
            source = inspect.getsource(mod) if mod is not None else ""
        except (OSError, TypeError):  # no source shipped (a frozen install): its models are not ranked
            source = ""
        own[module], imports[module] = _names_in(source), set(_IMPORTED.findall(source))
    names = {m: own[m].union(*(own.get(i, frozenset()) for i in imports[m])) for m in models}
    shared = frozenset()
    for f in Path(layers.__file__).parent.glob("*.py"):
        shared |= _names_in(f.read_text(errors="replace"))
    return models, names, shared


def _named_in_path(path: str | None, models: dict[str, list[str]]) -> list[str]:
    """The timm names the file's name or its folders' names spell, longest first (`resnet50d` before `resnet50`)."""
    if not path:
        return []
    p = Path(path)
    words = [w.lower().replace("-", "_") for w in [p.name.split(".")[0], p.parent.name, p.parent.parent.name] if w]
    found = {n for names in models.values() for n in names if any(n in w for w in words)}
    return sorted(found, key=lambda n: (-len(n), n))


def _ranked_modules(state: dict[str, Any], names: dict[str, frozenset], shared: frozenset) -> list[str]:
    """The modules whose layer names give most of the weights' names, best first, each name weighted by how few
    modules give it (`blocks` and `norm` say little; `unroll` says Hiera); a name neither the module nor timm's
    shared layers give counts against it."""
    wanted = {_word(p) for k in state for p in k.split(".") if not p.isdigit() and p not in _NOT_NAMES}
    if not wanted:
        return []
    n = len(names)
    given_by = {w: sum(w in own for own in names.values()) for w in wanted}
    if min(given_by.values()) > n * DISTINCT_SHARE:  # `conv1`, `fc2`: a network of one's own, or any of dozens
        return []
    weight = {w: math.log((n + 1) / (1 + given_by[w])) + 0.1 for w in wanted}
    total = sum(weight.values())
    scored = []
    for module, own in names.items():
        score = (sum(weight[w] for w in wanted & own) - sum(weight[w] for w in wanted - own - shared)) / total
        if score >= _COVER_MIN:
            scored.append((-score, len(own), module))  # a tie: the module of fewer names fits more closely
    return [m for _, _, m in sorted(scored)][:MODULES_TRIED]


def _stem_and_head(name: str, shapes: dict[str, tuple]) -> tuple[bool, int | None]:
    """(whether the weights hold the first convolution and the classifier timm's configuration of `name` names, read
    without building it: most of a module's models are passed over so; the input channels of that convolution in
    the weights: a grey or 4-channel model is built so). (True, None) where the configuration names neither."""
    from timm.models import get_pretrained_cfg
    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - a model without a configuration: built and compared
        return True, None
    found = []
    for layer in (getattr(cfg, "first_conv", None), getattr(cfg, "classifier", None)):
        layers = [f"{x}.weight" for x in (layer if isinstance(layer, (list, tuple)) else [layer]) if x]
        if layers and not any(k in shapes for k in layers):
            return False, None
        found.append(next((k for k in layers if k in shapes), None))
    stem = shapes.get(found[0]) if found and found[0] else None
    # grey or RGBA; any other count is the model's own reading of 3 channels (TResNet's space-to-depth stem: 48)
    return True, (stem[1] if stem is not None and len(stem) == 4 and stem[1] in (1, 4) else None)


def shared_prefix(state: dict[str, torch.Tensor]) -> str:
    """The leading dotted parts every key shares (`module.`), which no network's own keys all share (a stem and a head
    sit beside its blocks); '' where there are none."""
    parts = [k.split(".") for k in state]
    n = 0
    while parts and all(len(p) > n + 1 and p[n] == parts[0][n] for p in parts):
        n += 1
    return ".".join(parts[0][:n]) + "." if n else ""


def timm_models_fitting(state: dict[str, torch.Tensor], rows: int, path: str | None, seconds: float) -> list[str]:
    """The timm models whose weights have exactly `state`'s names and shapes at `rows` classes, among those built
    within `seconds` (see the module's note for their order)."""
    from timm.models import _registry
    start = time.perf_counter()
    models, names, shared = _modules()
    module_of = _registry._model_to_module.get
    shapes = key_shapes(state)  # without `module.` (DataParallel), `model.`, `_orig_mod.`: a load removes it
    keys = frozenset(k for k, _ in shapes)
    by_key = dict(shapes)
    named = _named_in_path(path, models)
    candidates = list(named) + [n for n in indexed(keys) if n not in named]
    first = len(candidates)
    for module in _ranked_modules(by_key, names, shared):
        candidates += [n for n in models[module] if n not in candidates]
    fitting: list[str] = []
    for i, name in enumerate(candidates):
        if time.perf_counter() - start > seconds:
            break
        if fitting and (i == first or (i > first and module_of(name) != module_of(fitting[-1]))):
            break  # the path's or the index's names fit, or the module that holds one is done: its twins are there
        if fits_exactly(name, rows, shapes):
            fitting.append(name)
    return fitting


def fits_exactly(name: str, rows: int, shapes: frozenset) -> bool:
    """Whether timm's `name`, built for its shapes at `rows` classes (and at the weights' grey or 4-channel stem),
    has exactly these (key, shape) pairs."""
    import timm
    by_key = dict(shapes)
    fits, in_chans = _stem_and_head(name, by_key)
    if not fits:
        return False
    try:
        net = shapes_build(lambda: timm.create_model(name, pretrained=False, num_classes=rows,
                                                     **({"in_chans": in_chans} if in_chans not in (None, 3) else {})))
    except Exception:  # noqa: BLE001 - a model that cannot be built so (a class count it refuses): not this one
        return False
    own = net.state_dict()
    return frozenset(own) == frozenset(by_key) and frozenset((k, tuple(v.shape)) for k, v in own.items()) == shapes


def key_shapes(state: dict[str, torch.Tensor]) -> frozenset:
    """The weights' (key, shape) pairs, without a prefix every key shares (shared_prefix: a load removes it)."""
    prefix = shared_prefix(state)
    return frozenset((k[len(prefix):], tuple(v.shape)) for k, v in state.items())


def the_one_fitting(state: dict[str, torch.Tensor], rows: int) -> tuple[str | None, list[str]]:
    """(the timm model, where exactly one of all timm's has these weights' names and shapes; every one that does):
    the index names every model with these keys (twins included: `tf_efficientnet_b0` pads as TensorFlow does
    with `efficientnet_b0`'s weights), each is built and compared. None where the index does not know the keys (a
    timm that registers other models: no answer is sure then) or several fit."""
    shapes = key_shapes(state)
    fitting = [n for n in indexed(k for k, _ in shapes) if fits_exactly(n, rows, shapes)]
    return (fitting[0] if len(fitting) == 1 else None), fitting


PATH_NAMES_TRIED = 3  # timm names a file's path spells, longest first, built to convert its weights


def path_names(path: str | None) -> list[str]:
    """The timm names the file's path spells (_named_in_path), none contained in another (`convnext_tiny_best.pth`
    names convnext_tiny, not convnext_t... nor a shorter name inside it)."""
    if not path:
        return []
    import timm
    named = _named_in_path(path, {"": timm.list_models()})
    return [n for n in named if not any(n != m and n in m for m in named)]


def chosen_by_path(fitting: list[str], path: str | None) -> str | None:
    """Of timm models built alike whose weights all fit (a DeiT's and a ViT's), the one the file's path names, where
    it names exactly one of them (`deit_small_patch16_224-cd65a155.pth`)."""
    named = [n for n in path_names(path) if n in fitting]
    return named[0] if len(named) == 1 else None


def converted_from_original(state: dict[str, torch.Tensor], rows: int, path: str | None) -> str | None:
    """The timm model the file's path names whose own converter (its module's checkpoint_filter_fn, as
    formats._timm_original_layout takes it) turns the weights, as the model's original repository saved them
    (FB's ConvNeXt `convnext_tiny_1k_224_ema.pth`, Microsoft's Swin `swin_tiny_patch4_window7_224.pth`), into
    exactly its names and shapes; None where none or several do."""
    from ..formats import _timm_original_layout
    import timm
    prefix = shared_prefix(state)
    plain = {k[len(prefix):]: v for k, v in state.items()}
    hits = []
    for name in path_names(path)[:PATH_NAMES_TRIED]:
        try:
            net = shapes_build(timm.create_model, name, pretrained=False, num_classes=rows)
        except Exception:  # noqa: BLE001 - a model that cannot be built so: not this one
            continue
        if _timm_original_layout(net, net.state_dict(), plain) is not None:
            hits.append(name)
    return hits[0] if len(hits) == 1 else None


INDEX = Path(__file__).with_name("timm_names.json")


def names_digest(keys) -> str:
    """A state dict's key set as the index keeps it."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, list[str]]:
    try:
        return json.loads(INDEX.read_text())["models"]
    except (OSError, ValueError, KeyError):  # an install without it: the ranking alone
        return {}


def index_known() -> bool:
    """Whether this install has the index (a timm model with given keys can then be ruled out)."""
    return bool(_index())


def indexed(keys) -> list[str]:
    """The timm models registered here whose state dict has exactly these keys, by the index."""
    import timm
    return [n for n in _index().get(names_digest(keys), []) if timm.is_model(n)]


def write_index(path: Path = INDEX) -> dict[str, list[str]]:
    """Builds every timm model for its shapes (at 1,000 classes: a class count changes no key) and writes the index
    of their key sets."""
    import timm
    groups: dict[str, list[str]] = {}
    for name in timm.list_models():
        try:
            keys = shapes_build(timm.create_model, name, pretrained=False, num_classes=1000).state_dict().keys()
        except Exception:  # noqa: BLE001 - a model that does not build so is left out (the ranking may find it)
            continue
        groups.setdefault(names_digest(keys), []).append(name)
    path.write_text(json.dumps({"timm": timm.__version__, "models": groups}, indent=0, sort_keys=True) + "\n")
    return groups


if __name__ == "__main__":
    found = write_index()
    print(f"{sum(map(len, found.values()))} timm models, {len(found)} key sets: {INDEX}")
