"""A timm name as a callable whose signature the argument search reads (models/args_from_weights.py): a file saved
from `timm.create_model(name, class_token=False, global_pool='avg')` or `create_model('swin_tiny_...', window_size=5,
img_size=160)` holds a network the name's defaults do not build, and timm's factory shows only `(pretrained=False,
**kwargs)`. Its signature here is the keyword arguments of the class it builds (VisionTransformer, SwinTransformer,
...), each at the value the name builds it with: the factory's own where it writes one (a ViT-S's `embed_dim=384,
depth=12`, Swin-T's `window_size=7, depths=(2, 2, 6, 2)`), else the class's default; an argument the factory sets to
something else (a block class) is not searched."""
from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from typing import Any


def factory_keywords(factory: Any) -> dict[str, Any]:
    """The keywords a timm factory's own code passes on (`model_args = dict(patch_size=16, embed_dim=384)`,
    `_gen_efficientnet(..., channel_multiplier=1.0)`), each with its value where that is written out (a number, a
    flag, a text, a tuple of them), else NOT_WRITTEN (a block class, a variable)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(factory)))
    except (OSError, TypeError, SyntaxError):
        return {}
    out: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for k in node.keywords:
                if k.arg:
                    try:
                        out[k.arg] = ast.literal_eval(k.value)
                    except ValueError:
                        out[k.arg] = NOT_WRITTEN
    return out


NOT_WRITTEN = object()


def timm_callable(arch: str) -> Any | None:
    """`create_model(arch, pretrained=False, **kwargs)` with the signature described above (`forwarded_to`: the class,
    whose code the search reads for a text argument's choices); None for a name timm lacks or one whose build fails."""
    import timm
    from timm.models import model_entrypoint

    from .meta_build import shapes_build
    if ":" in arch or not timm.is_model(arch):
        return None
    try:
        net = shapes_build(lambda: timm.create_model(arch, pretrained=False))
        cls = type(net)
        params = inspect.signature(cls.__init__).parameters
    except Exception:  # noqa: BLE001 - a name timm cannot build here: no search
        return None
    written = factory_keywords(model_entrypoint(arch))
    kept = [p.replace(kind=p.KEYWORD_ONLY, default=written.get(name, p.default)) for name, p in list(params.items())[1:]
            if written.get(name) is not NOT_WRITTEN and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and (p.default is not p.empty or name in written) and name != "pretrained"]

    def build(**kwargs: Any) -> Any:
        return timm.create_model(arch, pretrained=False, **kwargs)

    build.__signature__ = inspect.Signature(kept)  # type: ignore[attr-defined]
    build.__name__ = build.__qualname__ = arch
    build.__module__ = cls.__module__
    build.forwarded_to = cls  # type: ignore[attr-defined]
    # what the name says (args_from_weights._refuse_unread: no guess to refuse while the name's widths stand)
    build.name_writes = frozenset(k for k, v in written.items() if v is not NOT_WRITTEN)  # type: ignore[attr-defined]
    if "img_size" in params and getattr(net, "pos_embed", None) is not None:
        # a size a learnt position embedding holds (a ViT's, not a Swin's), searched where nothing gave the size (then
        # it is among the arguments given)
        build.searched_size = "img_size"  # type: ignore[attr-defined]
    return build


@functools.lru_cache(maxsize=32)
def takes_image_size(arch: str) -> bool:
    """Whether the class a timm name builds takes `img_size` (a ViT's, a Swin's: they run at the size they are built
    for), read from a build on the meta device."""
    fn = timm_callable(arch)
    return fn is not None and "img_size" in inspect.signature(fn).parameters


MOST_PREFIX_TOKENS = 17  # a class token and up to 16 registers (or a distillation token) ahead of the patches


def sides_from_positions(state: dict[str, Any]) -> set[int]:
    """The image sides a ViT's position embedding allows, for the search to try (`pos_embed` of 1 x R x D beside a
    patch embedding of kernel P: R less its class and register tokens is a square number of patches S x S, the side
    S x P): every count of tokens ahead of the patches that leaves a square, the search's builds then choosing."""
    import math
    pos = state.get("pos_embed")
    kernel = next((v for k, v in state.items() if k.startswith("patch_embed") and getattr(v, "ndim", 0) == 4), None)
    if pos is None or getattr(pos, "ndim", 0) != 3 or kernel is None:
        return set()
    rows, patch = int(pos.shape[1]), int(kernel.shape[-1])
    return {math.isqrt(rows - k) * patch for k in range(min(MOST_PREFIX_TOKENS, rows))
            if math.isqrt(rows - k) ** 2 == rows - k and rows - k > 0}


SIBLING_SECONDS = 10.0  # the most the names beside one are built for, on an error's path


def fitting_names(arch: str, model_args: dict[str, Any], score: Any) -> list[str]:
    """timm's other names of the same family (`vit_tiny_patch16_224` beside `vit_small_patch16_224`: its module's
    names with the same leading letters) whose own values build a network the file's tensors fit (`score`, as the search
    scores a build), for the error where the name given does not; each built on the meta device, for at most
    SIBLING_SECONDS."""
    import time

    import timm
    from timm.models import model_entrypoint

    from .args_from_weights import _fits, _scored
    bare = arch.partition(".")[0]  # without a pretrained tag (`resnet50.a1_in1k`)
    module = model_entrypoint(arch).__module__.rpartition(".")[2]
    stem = re.match(r"[a-z]*", bare).group()  # its leading letters: vit, resnet, convnext
    out, start = [], time.perf_counter()
    for name in timm.list_models(module=module):
        if name == bare or re.match(r"[a-z]*", name).group() != stem:
            continue
        if time.perf_counter() - start > SIBLING_SECONDS:
            break
        if _fits(_scored(lambda _name=name, **kw: timm.create_model(_name, pretrained=False, **kw), model_args, score)):
            out.append(name)
    return out
