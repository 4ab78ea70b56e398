"""Defaults chosen for the device a run is on. On the CPU they are the measured CPU settings; on CUDA the report's
attack batch is found from the card's free memory, and convolutional networks run in channels_last.

The training batch of `fix` is not changed on CUDA: BENCHMARKS.md shows robust accuracy following the number of
optimizer steps, not of images seen (MNIST at 1%, 30 epochs: batch 128 34.8%, 32 72.8%), and a larger batch with the
learning rate scaled by its square root lost AutoAttack accuracy even with twice the epochs (CIFAR-10 ResNet-20 10%:
batch 32 29.5%; 128 at lr 0.02 24.5%, 26.0% with 40 epochs; "A larger training batch for the card"), and in three
paired seeds (500 images) 2.6 points below batch 32 on average, lower in every seed ("The batch rule in three paired
seeds")."""
from __future__ import annotations

import torch
from torch import nn

from .runtime import frozen

CPU_ATTACK_BATCH = 128  # the report's attack batch on the CPU, at most
# On the CPU a batch whose autograd activations pass about this size runs slower per image, not faster (out of the
# caches, into memory bandwidth), and its memory is the process's: measured 2026-12-06 on the 2-core CPU, steady-state
# forward+backward per image at 224 px, ResNet-50 (86 MB of activations an image): 0.133 s at batch 8, 0.148 s at 16,
# 0.260 s at 64, 0.379 s at 128; ConvNeXt-B (120 MB): 0.42 s at 8, 0.41 s at 16, 0.62 s at 64; ViT-B/16 (74 MB) and
# ResNet-18 (22 MB): flat from 8 to 32 (to 64 for ResNet-18); a report of ConvNeXt-B at batch 128 held 17 GB
CPU_ACTIVATION_BYTES = 2**30
PROBE_BATCH = 32
MAX_ATTACK_BATCH = 2048
PLAIN_LAYOUT = "_plain_layout"  # set on a model whose forward pass failed on channels_last
FREE_SHARE = 0.5  # of the free memory, for one attack batch's forward+backward (the rest: the attack's own tensors)


def attack_batch_size(model: nn.Module, device: torch.device, requested: int | None, shape: tuple[int, ...]) -> int:
    """The report's attack batch: `requested` when given; else on the CPU the largest power of two up to 128 whose
    activations fit CPU_ACTIVATION_BYTES (cpu_attack_batch); on CUDA the largest power of two (32
    to 2048) whose forward+backward fits in half the free memory, from the peak memory of one probe at batch 32
    (an out-of-memory later still halves the batch: batching.run_batched)."""
    if requested:
        return int(requested)
    if device.type != "cuda":
        return cpu_attack_batch(model, shape)
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


def cpu_attack_batch(model: nn.Module, shape: tuple[int, ...]) -> int:
    """The largest power of two from 1 to CPU_ATTACK_BATCH whose activations for an input gradient fit
    CPU_ACTIVATION_BYTES: 128 for the small networks of 32-px data, 8 for a ResNet-50 at 224 px. A network whose probe
    fails keeps CPU_ATTACK_BATCH (the report's own forward passes then say what is wrong)."""
    per_image = activation_bytes_per_image(model, shape)
    if per_image is None:
        return CPU_ATTACK_BATCH
    batch = CPU_ATTACK_BATCH
    while batch > 1 and batch * per_image > CPU_ACTIVATION_BYTES:
        batch //= 2
    return batch


def activation_bytes_per_image(model: nn.Module, shape: tuple[int, ...], images: int = 2) -> int | None:
    """The bytes autograd keeps per image for the gradient of the input (what an attack's step holds): the tensors a
    forward pass of `images` images saves for its backward pass, each storage once and the weights left out; no
    backward pass is made. None where the forward pass fails."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()] if t.device.type == "cpu"}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, nested): not counted
            return t
        if storage.data_ptr() not in own:
            kept[storage.data_ptr()] = storage.nbytes()
        return t
    x = torch.rand(images, *shape, requires_grad=True)
    try:
        with frozen(model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
    except Exception:  # noqa: BLE001 - the user's network: its own errors are said where the report runs it
        return None
    return max(1, sum(kept.values()) // images)


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def prepare_for_device(model: nn.Module, device: torch.device) -> nn.Module:
    """channels_last on CUDA for convolutional networks (the layout cuDNN's fastest kernels read) whose forward pass
    runs on it (channels_last_if_it_runs); unchanged on the CPU, where it was not measured to pay."""
    if device.type == "cuda" and has_convolutions(model):
        channels_last_if_it_runs(model, device)
    return model


def channels_last_if_it_runs(model: nn.Module, device: torch.device) -> bool:
    """Put the weights in channels_last, so that convolutions answer in it, and keep it only if a forward pass of two
    images at the model's input size then runs. Published code flattens feature maps with `x.view(x.size(0), -1)`,
    which fails on channels-last activations ("view size is not compatible with input tensor's size and stride"):
    such a network, or one whose input size is not known (no harden spec), keeps the plain layout. Returns whether
    channels_last was kept."""
    spec = getattr(model, "spec", None)
    if spec is None or model.__dict__.get(PLAIN_LAYOUT):
        return False
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    probe = torch.rand(2, int(spec.in_chans), *map(int, spec.input_size), device=device,
                       dtype=weight.dtype if weight is not None else torch.float32)

    def runs() -> str | None:
        """None, or the first line of the error the forward pass raised."""
        try:
            with frozen(model), torch.no_grad():
                model(probe)
        except Exception as e:  # noqa: BLE001 - any failure decides the layout; the run meets its own errors
            return (str(e).splitlines() or [type(e).__name__])[0][:160]
        return None
    model.to(memory_format=torch.channels_last)
    failed = runs()
    if failed is None:
        return True
    model.to(memory_format=torch.contiguous_format)
    model.__dict__[PLAIN_LAYOUT] = True  # once per model: a fix's reports do not probe and say it again
    if runs() is None:  # the plain layout runs: the layout was the cause
        from .runtime import info
        info(f"channels_last is left off for this network: its forward pass fails on channels-last activations "
             f"({failed})")
    return False
