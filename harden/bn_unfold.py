"""BatchNorm put back, for training, into a network whose exporter folded it into the convolutions (ONNX graphs from
both of torch.onnx's exporters, tf2onnx, deployment optimisers; in pre-activation networks, the BatchNorms right after
a convolution, the others kept). Adversarial training of the folded network reached
the checkpoint's robust accuracy but 13 points less clean accuracy (BENCHMARKS.md, "Hardening from an ONNX file"):
nothing in it follows the adversarial batches' statistics, as BatchNorm does.

`insert` puts a BatchNorm after every convolution with a bias (a folded BatchNorm always leaves one) that no kept
BatchNorm follows and whose outputs are maps larger than 1x1 (not a squeeze-excitation gate or a head on pooled
features, which had none), its running statistics those of the convolution's outputs on training images and its
affine parameters set to undo them, so the network computes the same function (exactly in eval mode). `fold` folds
each back into its convolution after training: the hardened network has the base's own modules and state-dict keys
(an ONNX graph rebuilds as before)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .errors import HardenError
from .runtime import frozen, info, progress, warn

MODES = ("auto", "on", "off")
CALIBRATION_IMAGES = 512  # training images whose convolution outputs give the inserted BatchNorms' statistics
OTHER_NORMALISATION = (nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)


class Unfolded(nn.Sequential):
    """A convolution and the BatchNorm inserted after it (`fold` turns it back into the convolution)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__(conv, bn)


def _is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def _other_normalisation(net: nn.Module) -> bool:
    """Layer, group or instance normalisation: a transformer's or a ConvNeXt's (never folded, never BatchNorm's).
    onnx2torch's own normalisation modules (OnnxLayerNorm, ...) are not torch's classes: by name too."""
    return any(isinstance(m, OTHER_NORMALISATION) or ("norm" in type(m).__name__.lower() and not _is_batchnorm(m))
               for m in net.modules())


def _graph_modules(net: nn.Module) -> list[torch.fx.GraphModule]:
    return [m for m in net.modules() if isinstance(m, torch.fx.GraphModule)]


def _called(gm: torch.fx.GraphModule, node) -> nn.Module | None:
    """The module a graph node calls (None for other nodes, or a target that cannot be looked up)."""
    try:
        return gm.get_submodule(node.target) if node.op == "call_module" else None
    except AttributeError:
        return None


def _biased_convs(net: nn.Module) -> list[tuple[nn.Module, str, nn.Conv2d]]:
    """(parent, name in it, convolution) for every 2-d convolution with a bias (a folded BatchNorm always leaves one)
    whose output does not go straight into a BatchNorm of the network's own (one the exporter could not fold, in a
    graph we can read: an exporter run in training mode). Parents' _modules, not dotted names: onnx2torch names
    modules after graph nodes, which may hold dots."""
    followed = set()
    for gm in _graph_modules(net):
        for node in gm.graph.nodes:
            if node.op == "call_module" and node.users and all(_is_batchnorm(_called(gm, u)) for u in node.users):
                followed.add(id(_called(gm, node)))
    return [(parent, name, m) for parent in net.modules() for name, m in parent._modules.items()
            if isinstance(m, nn.Conv2d) and m.bias is not None and id(m) not in followed]


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise HardenError(f"--unfold-bn must be one of {', '.join(MODES)}, got {mode!r}.")


def wanted(model, mode: str, trains_base: bool) -> bool:
    """Whether `fix` inserts BatchNorm for training. `auto`: into an ONNX graph without layer, group or instance
    normalisation (a CNN's; its exporter folded what BatchNorm it could, all of it, or, in pre-activation networks,
    the BatchNorms right after a convolution, keeping the others; or it never had any: BENCHMARKS.md measures both).
    `on`: also into a torch checkpoint with no normalisation layer at all (a torch module's data flow is not read,
    so a BatchNorm of its own might follow). `off`: never. Recipes on a frozen base: never."""
    check_mode(mode)
    if mode == "off" or not trains_base or not _biased_convs(model.net):
        return False
    from .models.onnx_graph import ARCH
    graph = model.spec.arch == ARCH
    if _other_normalisation(model.net) or (not graph and any(_is_batchnorm(m) for m in model.net.modules())):
        if mode == "on":
            warn("--unfold-bn on: the network has normalisation layers of its own; no BatchNorm inserted.")
        return False
    return mode == "on" or graph


def inspect_note(model) -> str | None:
    """What `harden inspect` says of a base that `fix` would train with BatchNorm put back."""
    if model.spec.extra.get("recipe") or not wanted(model, "auto", trains_base=True):
        return None
    return (f"`fix` trains it with a BatchNorm after its {len(_biased_convs(model.net))} convolutions with a bias "
            "(where its exporter folds BatchNorm; not on 1x1 maps), folded back after (--unfold-bn auto; off: as it is)")


@torch.no_grad()
def insert(model, data, device: torch.device, seed: int = 0, n: int = CALIBRATION_IMAGES) -> int:
    """Insert the BatchNorms (see the module's doc) into `model.net`; returns how many."""
    convs = _biased_convs(model.net)
    stats: dict[int, list[torch.Tensor]] = {}

    def record(i):
        def hook(_module, _inputs, out):
            if out.shape[-1] * out.shape[-2] <= 1:  # on pooled 1x1 maps (a squeeze-excitation gate, a 1x1 head)
                return
            o = out.detach().double()
            s = [o.sum((0, 2, 3)), (o * o).sum((0, 2, 3)), torch.tensor(o.numel() / o.shape[1], dtype=torch.float64)]
            stats[i] = s if i not in stats else [a + b.to(a.device) for a, b in zip(stats[i], s, strict=True)]
        return hook

    idx = np.sort(np.random.default_rng(seed).permutation(data.n_train)[:n])
    hooks = [conv.register_forward_hook(record(i)) for i, (_, _, conv) in enumerate(convs)]
    try:
        with frozen(model), progress("BatchNorm statistics", len(idx)) as advance:  # eval mode, modes restored
            for start in range(0, len(idx), 64):
                x, _ = data.images("train", idx[start:start + 64], device)
                model(x)
                advance(len(x))
    finally:
        for h in hooks:
            h.remove()
    for i, (parent, name, conv) in enumerate(convs):
        if i not in stats:  # never reached by these images, or on 1x1 maps, where no BatchNorm was folded: left alone
            continue
        total, squares, count = stats[i]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0)
        w = conv.weight
        bn = nn.BatchNorm2d(conv.out_channels).to(device=w.device, dtype=w.dtype).train(conv.training)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean)
        parent._modules[name] = Unfolded(conv, bn)
    n_inserted = len(stats)
    if n_inserted:
        info(f"BatchNorm inserted after {n_inserted} convolutions with a bias for training, folded back into them "
             "after (exporters fold BatchNorm into the convolutions before it; --unfold-bn off: not)")
    return n_inserted


@torch.no_grad()
def fold(net: nn.Module) -> int:
    """Fold every inserted BatchNorm back into its convolution (running statistics and affine); returns how many."""
    found = [(parent, name, m) for parent in net.modules() for name, m in parent._modules.items()
             if isinstance(m, Unfolded)]
    for parent, name, unfolded in found:
        conv, bn = unfolded[0], unfolded[1]
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        parent._modules[name] = conv
    return len(found)


@torch.no_grad()
def fold_checked(model, data, device: torch.device, n: int = 64) -> int:
    """`fold`, checked: the network's outputs on training images are the same before and after (eval mode)."""
    x, _ = data.images("train", np.arange(min(n, data.n_train)), device)
    with frozen(model):
        before = model(x).float()
    folded = fold(model.net)
    with frozen(model):
        after = model(x).float()
    diff, scale = (after - before).abs().max().item(), max(1.0, before.abs().max().item())
    if not diff <= 1e-3 * scale:
        raise RuntimeError(f"internal error: folding the inserted BatchNorms changed the outputs by {diff:.3g}")
    return folded
