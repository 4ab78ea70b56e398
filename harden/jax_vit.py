"""Google's JAX/Flax Vision Transformer checkpoints (.npz), as google-research/vision_transformer publishes them (the
fine-tuned `ViT-B_16.npz`, the AugReg files `B_16-i21k-300ep-...-res_224.npz`), read as the timm VisionTransformer
they describe: its size from the arrays' shapes (patch and width from the embedding kernel, depth from the encoder
blocks, heads from the query kernel, the MLP width, the image size from the position table, the classes from the
head), the weights converted by timm's own reader (timm.models.vision_transformer._load_weights), so that every later
step sees a timm model and its metadata, and `fix` writes a timm checkpoint.

Only what timm's reader converts exactly is read: class-token models with their classifier. A checkpoint with the
representation layer (`pre_logits`, the original ImageNet-21k ones) or without a head would be read with a layer left
out or untrained, big_vision's (global-average-pooled, a MAP head, stacked blocks) and the ResNet hybrids' are built
otherwise: each is refused by name."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import HardenError

PREFIXES = ("", "opt/target/", "params/")
SIZES = {(192, 12, 3): "tiny", (384, 12, 6): "small", (768, 12, 12): "base", (1024, 24, 16): "large",
         (1280, 32, 16): "huge"}
BLOCK = re.compile(r"Transformer/encoderblock_(\d+)/")


def _refused(name: str, what: str) -> HardenError:
    return HardenError(f"{name} is a JAX/Flax ViT checkpoint {what}, which harden does not convert exactly. timm's "
                       "reader may still serve: build the timm model it is, load it with timm.models."
                       "vision_transformer._load_weights(model, 'file.npz'), check its accuracy, torch.save(model."
                       "state_dict(), 'model.pth'), and pass that with --arch.")


def read_jax_vit(path: Path, names: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(state dict, metadata) of a JAX ViT .npz whose array names are `names`; None where it is not one."""
    prefix = next((p for p in PREFIXES if f"{p}embedding/kernel" in names), None)
    if prefix is None:
        return None
    name = repr(str(path))
    p = prefix
    if f"{p}Transformer/encoderblock/LayerNorm_0/scale" in names or f"{p}pos_embedding" in names or \
            any(n.startswith(f"{p}MAPHead_0/") for n in names):
        raise _refused(name, "in big_vision's layout (stacked blocks, a pooled or MAP head)")
    if f"{p}conv_root/kernel" in names:
        raise _refused(name, "of a ResNet-ViT hybrid")
    if f"{p}pre_logits/kernel" in names:
        raise _refused(name, "with the representation layer (pre_logits) that timm no longer builds")
    if f"{p}head/kernel" not in names or f"{p}cls" not in names:
        raise _refused(name, "without a class token and a classification head (pre-training features)")
    depth = len({int(m[1]) for n in names if n.startswith(p) and (m := BLOCK.search(n[len(p):]))})
    with np.load(path, allow_pickle=False) as z:
        embed = z[f"{p}embedding/kernel"].shape  # (patch, patch, channels, width)
        pos = z[f"{p}Transformer/posembed_input/pos_embedding"].shape  # (1, 1 + grid^2, width)
        heads = z[f"{p}Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"].shape[1]
        mlp = z[f"{p}Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"].shape[1]
        classes = z[f"{p}head/kernel"].shape[1]
    patch, chans, width = embed[0], embed[2], embed[3]
    grid = int(round((pos[1] - 1) ** 0.5))
    if len(embed) != 4 or embed[0] != embed[1] or grid * grid != pos[1] - 1 or depth == 0:
        raise _refused(name, f"of shapes harden does not recognise (embedding {embed}, positions {pos})")
    img = grid * patch
    size = SIZES.get((width, depth, heads)) if mlp == 4 * width else None
    args: dict[str, Any] = {}
    import timm
    if size and timm.is_model(f"vit_{size}_patch{patch}_{img}"):
        arch = f"vit_{size}_patch{patch}_{img}"
    elif size and timm.is_model(f"vit_{size}_patch{patch}_224"):
        arch, args = f"vit_{size}_patch{patch}_224", {"img_size": img}
    else:
        arch = "vit_base_patch16_224"
        args = {"img_size": img, "patch_size": patch, "embed_dim": width, "depth": depth, "num_heads": heads,
                "mlp_ratio": mlp / width}
    from timm.models.vision_transformer import _load_weights
    model = timm.create_model(arch, pretrained=False, num_classes=classes, in_chans=chans, **args)
    try:
        _load_weights(model, str(path), prefix=p)
    except (KeyError, ValueError, RuntimeError) as e:
        raise _refused(name, f"that timm's reader could not convert ({type(e).__name__}: {e})") from None
    meta = {"arch": arch, "num_classes": classes, "in_chans": chans}
    if args:
        meta["model_args"] = args
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, meta
