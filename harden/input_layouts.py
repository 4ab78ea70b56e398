"""How a network takes its images where its forward does not take the N x C x H x W batch harden gives it.

Published code's training loops shape the batch before calling the network, and its forward then expects that shape:
an MLP of MNIST tutorials is called on `data.view(data.size(0), -1)` (rows of C*H*W values); a network ported from
TensorFlow or JAX takes N x H x W x C and transposes it itself (`x.permute(0, 3, 1, 2)`); a grey-image network fed
MNIST's N x 28 x 28 tensors adds the channel axis itself (`x.unsqueeze(1)`). Where the probe batch fails and the same
images in one of these layouts run, a forward pre-hook gives the network every batch so, whoever calls it: the
report's attacks, training, an export (the hook is traced into the ONNX graph). The load notes say which."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


def flattened_images(module: nn.Module, args: tuple) -> tuple | None:
    """A batch of images as N rows of C*H*W values; rows already flat pass as they are."""
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() > 2:
        return (args[0].flatten(1), *args[1:])
    return None


def channels_last_images(module: nn.Module, args: tuple) -> tuple | None:
    """A batch of images channels-last (N x H x W x C)."""
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].permute(0, 2, 3, 1), *args[1:])
    return None


def images_without_channel_axis(module: nn.Module, args: tuple) -> tuple | None:
    """A batch of grey images as N x H x W."""
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4 and args[0].shape[1] == 1:
        return (args[0][:, 0], *args[1:])
    return None


@dataclass(frozen=True)
class Layout:
    hook: Callable[[nn.Module, tuple], tuple | None]  # the forward pre-hook that gives a batch so
    distinct: Callable[[torch.Tensor], bool]  # whether it differs from N x C x H x W for this batch
    note: str  # the load note
    hint: str  # what to write, for a module of the caller's (which harden leaves as it is)


FLATTENED = Layout(flattened_images, lambda x: x.dim() == 4,
                   "its forward takes each image as one row of values (its training code flattened them: "
                   "data.view(data.size(0), -1)); harden flattens the images before it",
                   "Its forward takes each image as one row of values (its training code flattened them): give "
                   "nn.Sequential(nn.Flatten(), model).")
CHANNELS_LAST = Layout(channels_last_images, lambda x: x.dim() == 4 and x.shape[1] != x.shape[2],
                       "its forward takes images channels-last (N x H x W x C, as TensorFlow's, and transposes them "
                       "itself); harden gives them so",
                       "Its forward takes images channels-last (N x H x W x C, as TensorFlow's): give a module that "
                       "transposes them before it (x.permute(0, 2, 3, 1)).")
NO_CHANNEL_AXIS = Layout(images_without_channel_axis, lambda x: x.dim() == 4 and x.shape[1] == 1,
                         "its forward takes grey images without a channel axis (N x H x W, as MNIST's tensors are "
                         "stored, adding the axis itself); harden gives them so",
                         "Its forward takes grey images without a channel axis (N x H x W): give a module that drops "
                         "it before it (x[:, 0]).")
LAYOUTS = (FLATTENED, CHANNELS_LAST, NO_CHANNEL_AXIS)


def layout_of(net: nn.Module) -> Layout | None:
    """The layout harden gives this network its images in (its pre-hook), None for N x C x H x W."""
    hooks = list(net._forward_pre_hooks.values())
    return next((layout for layout in LAYOUTS if layout.hook in hooks), None)


def layout_it_runs_in(net: nn.Module, x: torch.Tensor) -> Layout | None:
    """For a network that failed on the batch x: the first layout in which the same images run, else None."""
    if layout_of(net) is not None:
        return None
    for layout in LAYOUTS:
        if not layout.distinct(x):
            continue
        try:
            with torch.no_grad():
                net(layout.hook(net, (x,))[0])
            return layout
        except Exception:  # noqa: BLE001 - any failure: it does not take them so either
            continue
    return None


def give_in(net: nn.Module, layout: Layout) -> None:
    """From now on every caller's batch reaches `net` in `layout`."""
    net.register_forward_pre_hook(layout.hook)
