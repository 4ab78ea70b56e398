"""What the recipes need from any nn.Module, found by one probe forward through hooks (no per-family cases):

- taps: the block boundaries where fixers attach, the way timm's feature_info marks stage ends: for each
  feature-map resolution, the outermost single-resolution module that finishes last there (so `layer1`, not
  `layer1.2.relu`); on timm's ResNets, RegNets, DenseNets, ConvNeXts, VGGs and MobileNetV3s this reproduces
  feature_info (EfficientNet differs at its last stage: the 1x1 head conv after it is taken);
- head: the final linear layer (the last nn.Linear, or 1x1-conv-free classifier, that runs), whose input is
  the embedding (idfr's f_enc) and which, with what follows it, is the classifier (f_cls)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import HardenError


def _probe(net: nn.Module, in_chans: int, input_size: tuple[int, int], hook_filter) -> list[tuple[str, Any]]:
    """Run one forward on a zero batch of 2; returns (module name, output) in completion order."""
    records: list[tuple[str, Any]] = []
    handles = []
    for name, m in net.named_modules():
        if name and hook_filter(m):
            handles.append(m.register_forward_hook(lambda mod, i, o, name=name: records.append((name, o))))
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            p = next(net.parameters(), None)
            x = torch.zeros(2, in_chans, *input_size, device=p.device if p is not None else "cpu")
            net(x)
    finally:
        for h in handles:
            h.remove()
        net.train(was)
    return records


def discover_taps(net: nn.Module, in_chans: int, input_size: tuple[int, int]) -> list[dict[str, Any]]:
    """One tap per feature-map resolution: of the outermost modules that run at a single resolution, the last
    to finish at that resolution. Skipped: identities, outputs of 1x1 spatial size (pooled / squeeze-excite
    maps), attention weights (a square map whose side is the length of a token sequence the forward also makes),
    channels-last tensors (_channels_first) and containers whose children run at several resolutions (a body
    holding several stages)."""
    modules = dict(net.named_modules())
    recs = _probe(net, in_chans, input_size, lambda m: not isinstance(m, nn.Identity))
    shape: dict[str, tuple[int, int, int]] = {}
    order: dict[str, int] = {}
    pooled_ok = tuple(input_size) == (1, 1)
    # a transformer's attention weights (heads x tokens x tokens, from the Softmax or Dropout modules that published
    # ViT code runs them through) are 4-D too, but no feature map: a square whose side is a token count
    tokens = {out.shape[1] for _, out in recs if isinstance(out, torch.Tensor) and out.dim() == 3}
    for i, (name, out) in enumerate(recs):
        if isinstance(out, torch.Tensor) and out.dim() == 4 and (pooled_ok or out.shape[2] * out.shape[3] > 1) \
                and not (out.shape[2] == out.shape[3] and out.shape[3] in tokens) and _channels_first(out, input_size):
            shape[name] = tuple(out.shape[1:])
            order[name] = i  # a module run twice counts at its last completion

    def spans_stages(name: str) -> bool:
        kids = {shape[n][1:] for n in shape if n.rpartition(".")[0] == name}
        return len(kids) > 1

    cands = {n for n in shape if not spans_stages(n) and n in modules}

    def inside_another(n: str) -> bool:
        parts = n.split(".")
        return any(".".join(parts[:i]) in cands for i in range(1, len(parts)))

    units = [n for n in cands if not inside_another(n)]  # the outermost single-resolution modules
    by_res: dict[tuple[int, int], list[str]] = {}
    for n in sorted(units, key=order.get):
        by_res.setdefault(shape[n][1:], []).append(n)
    taps = []
    for res, names in by_res.items():
        name = max(names, key=order.get)
        taps.append({"num_chs": int(shape[name][0]), "reduction": int(round(input_size[0] / res[0])), "module": name})
    return sorted(taps, key=lambda t: order[t["module"]])


def _aspect_mismatch(h: int, w: int, input_size: tuple[int, int]) -> float:
    """How far a map of sides (h, w) is from the input's shape: |log| of the ratio of the two sides' strides."""
    return abs(math.log((input_size[0] / max(int(h), 1)) / (input_size[1] / max(int(w), 1))))


def _channels_first(out: torch.Tensor, input_size: tuple[int, int]) -> bool:
    """Whether a 4-D output reads as (N, C, H, W) rather than channels-last (N, H, W, C), which ConvNeXt's and Swin's
    blocks make between their permutes and is no feature map: its sides (1, 2) keep the input's aspect better than
    sides (2, 3) do (at 32 px published ConvNeXt's last stage gave (N, 1, 1, 256), read as a map of 1 channel and
    side 256; timm's Swin gave taps of as many channels as its maps' sides). A tie stays channels-first."""
    return _aspect_mismatch(out.shape[1], out.shape[2], input_size) + 0.01 >= \
        _aspect_mismatch(out.shape[2], out.shape[3], input_size)


def find_head(net: nn.Module, in_chans: int, input_size: tuple[int, int]) -> str:
    """The name of the last nn.Linear that runs in a forward: the classifier head."""
    recs = _probe(net, in_chans, input_size, lambda m: isinstance(m, nn.Linear))
    if not recs:
        raise HardenError(f"{type(net).__name__} runs no nn.Linear layer, so its embedding and classifier cannot be "
                          "split (idfr needs the input of the final linear layer as the embedding).")
    return recs[-1][0]


class _Stop(Exception):
    pass


def embedding(net: nn.Module, head: str, x: torch.Tensor) -> torch.Tensor:
    """The input of the head layer for x (the forward stops there)."""
    box: dict[str, torch.Tensor] = {}

    def grab(mod, inputs):
        box["h"] = inputs[0]
        raise _Stop

    handle = net.get_submodule(head).register_forward_pre_hook(grab)
    try:
        net(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "h" not in box:
        raise HardenError(f"The head layer {head!r} did not run in the forward pass.")
    return box["h"]
