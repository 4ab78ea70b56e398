"""Defaults chosen for the device a run is on. On the CPU they are the measured CPU settings; on CUDA the report's
attack batch is found from the card's free memory, and convolutional networks run in channels_last.

The training batch of `fix` is not changed on CUDA: BENCHMARKS.md shows robust accuracy following the number of
optimizer steps, not of images seen (MNIST at 1%, 30 epochs: batch 128 34.8%, 32 72.8%), and a larger batch with the
learning rate scaled by its square root lost AutoAttack accuracy even with twice the epochs (CIFAR-10 ResNet-20 10%:
batch 32 29.5%; 128 at lr 0.02 24.5%, 26.0% with 40 epochs; "A larger training batch for the card")."""
from __future__ import annotations

import torch
from torch import nn

from .runtime import frozen

CPU_ATTACK_BATCH = 128
PROBE_BATCH = 32
MAX_ATTACK_BATCH = 2048
FREE_SHARE = 0.5  # of the free memory, for one attack batch's forward+backward (the rest: the attack's own tensors)


def attack_batch_size(model: nn.Module, device: torch.device, requested: int | None, shape: tuple[int, ...]) -> int:
    """The report's attack batch: `requested` when given; else 128 on the CPU; on CUDA the largest power of two (32
    to 2048) whose forward+backward fits in half the free memory, from the peak memory of one probe at batch 32
    (an out-of-memory later still halves the batch: batching.run_batched)."""
    if requested:
        return int(requested)
    if device.type != "cuda":
        return CPU_ATTACK_BATCH
    torch.cuda.synchronize(device)
    free, _ = torch.cuda.mem_get_info(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.rand(PROBE_BATCH, *shape, device=device, requires_grad=True)
    with frozen(model):
        torch.autograd.grad(model(x).float().sum(), x)
    per_image = max(1, torch.cuda.max_memory_allocated(device) - before) / PROBE_BATCH
    del x
    fits = int(FREE_SHARE * free / per_image)
    batch = PROBE_BATCH
    while batch * 2 <= min(fits, MAX_ATTACK_BATCH):
        batch *= 2
    return batch


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def prepare_for_device(model: nn.Module, device: torch.device) -> nn.Module:
    """channels_last on CUDA for convolutional networks (the layout cuDNN's fastest kernels read); unchanged on the
    CPU, where it was not measured to pay."""
    if device.type == "cuda" and has_convolutions(model):
        model.to(memory_format=torch.channels_last)
    return model
