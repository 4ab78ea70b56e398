"""Runs launched by torchrun: one process per device, `torch.distributed` underneath (nccl on CUDA, gloo on CPU).

Single-process runs never touch torch.distributed: every helper here is the identity when the world is one
process. Evaluation is sharded by whole batches (batch i of the fixed batching belongs to rank i mod world), each
batch's attack seeded by its position in the whole set, so the gathered per-image results equal one process's.
Training shards each global batch across the ranks and averages the trainable parameters' gradients with one
flattened all-reduce per step. DistributedDataParallel's reducer is not used because it expects exactly one
forward per backward through the wrapped module, while a recipe's step runs many input-gradient forwards
(the training attack) and frozen-base forwards between the loss's forward and its backward.
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from typing import Any, Callable, Iterable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def launched() -> bool:
    """torchrun (or any launcher with its environment) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: the group's once started, torchrun's RANK before that, 0 in one process."""
    if active():
        return dist.get_rank()
    return int(os.environ["RANK"]) if launched() else 0


def world() -> int:
    if active():
        return dist.get_world_size()
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def is_main() -> bool:
    return rank() == 0


def where() -> str:
    """'rank 1 of 2: ' in a distributed run (started or not yet), '' otherwise (for messages)."""
    return f"rank {rank()} of {world()}: " if world() > 1 else ""


def setup(device: str | torch.device = "auto") -> torch.device:
    """Initialise the process group when torchrun launched this process (idempotent) and return the device of
    this rank: cuda:LOCAL_RANK with nccl where CUDA is asked for or available, else the CPU with gloo."""
    from .errors import HardenError
    if not launched():
        raise RuntimeError("distributed.setup outside torchrun (runtime.resolve_device only calls it under torchrun)")
    spec = str(device).strip().lower()
    if spec not in ("auto", "cpu", "cuda"):
        raise HardenError(f"--device {device!r} under torchrun: give auto, cpu or cuda; each rank takes the device of "
                          "its LOCAL_RANK.")
    use_cuda = spec == "cuda" or (spec == "auto" and torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if not torch.cuda.is_available():
            raise HardenError("--device cuda was asked for under torchrun, but no CUDA device is available.")
        if local >= torch.cuda.device_count():
            raise HardenError(f"LOCAL_RANK {local} has no GPU: this machine has {torch.cuda.device_count()}; start "
                              f"torchrun with --nproc-per-node {torch.cuda.device_count()} or fewer.")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("HARDEN_DIST_TIMEOUT", "1800")))
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timeout, **kwargs)
        # harden started the group, so harden ends it: a group left to interpreter shutdown can abort the process
        atexit.register(teardown)
    return dev


def is_collective_failure(e: BaseException) -> bool:
    """An error raised by a collective because a peer process went away (gloo: connection closed / reset;
    nccl: DistBackendError), as opposed to a failure of this rank's own work."""
    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    text = str(e).lower()
    return isinstance(e, kinds) or any(w in text for w in ("connection closed", "connection reset", "broken pipe"))


def teardown(clean: bool = True) -> None:
    """End the process group. After a clean run every rank first waits for the others (a bounded barrier on
    gloo): a rank that tears its connections down while a peer's group is still up can make gloo abort the
    peer at exit ("terminate called without an active exception"). After a failure there is no waiting."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean and dist.get_world_size() > 1:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=60))
            else:
                dist.barrier()
        except RuntimeError:  # a peer already gone or not answering (gloo/nccl errors are RuntimeErrors)
            pass
    _host_group.clear()
    dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------- evaluation

def my_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """This rank's batches of the fixed batching of [0, n): batch i belongs to rank i mod world (all of them until
    the group is started)."""
    bs = max(1, int(batch_size))
    starts = range(0, n, bs)
    r, w = (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)
    return [(s, min(n, s + bs)) for i, s in enumerate(starts) if i % w == r]


def run_my_batches(fn: Callable[[int, int], T], n: int, batch_size: int, device: torch.device,
                   on_batch: Callable[[int], None] | None = None) -> list[T]:
    """fn(start, stop) over this rank's batches of [0, n) (all of them in one process), positions in the whole
    set; CUDA out-of-memory halving applies inside each batch."""
    from .batching import run_batched
    out: list[T] = []
    for s0, e0 in my_batches(n, batch_size):
        out += run_batched(lambda s, e, s0=s0: fn(s0 + s, s0 + e), e0 - s0, batch_size, device, on_batch)
    return out


def gather(obj: T) -> list[T]:
    """Every rank's obj, in rank order, on every rank ([obj] in one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def from_main(fn: Callable[[], T]) -> T:
    """fn() run on rank 0 only; its result on every rank (work that is cheap to do once and must agree)."""
    if not active():
        return fn()
    box = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_ok(ok: bool = True) -> bool:
    """Whether every rank reached this point with ok=True; a rank that died makes this raise on the others.
    Called before rank 0 writes anything, so a failure anywhere leaves no output."""
    if not active():
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


_host_group: list = []  # a gloo group beside NCCL, for host values (made on first use, by every rank at once)


def all_max(values: list[int]) -> list[int]:
    """Element-wise maximum over the ranks of a few small host integers (unchanged in one process). Called once a
    training step, so under NCCL it goes through a gloo group on the host: an NCCL all-reduce read back would wait
    for the step's kernels to finish, and the card would idle while the next step is launched."""
    if not active():
        return list(values)
    group = None
    if dist.get_backend() != "gloo":
        if not _host_group:
            _host_group.append(dist.new_group(backend="gloo"))
        group = _host_group[0]
    t = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return t.tolist()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over the ranks (values unchanged in one process)."""
    if not active():
        return values
    t = values.detach().to(_comm_device(), torch.float64).clone()
    dist.all_reduce(t)
    return t.to(values.device)


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# ------------------------------------------------------------------------------------------------- training

def my_share(batch: Any) -> Any:
    """This rank's share of a global batch of indices (strided, so every rank's share has nearly equal size)."""
    return batch[dist.get_rank()::dist.get_world_size()] if active() else batch


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank: the start of training is the same everywhere."""
    if not active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        data = t.data.to(_comm_device())
        dist.broadcast(data, src=0)
        t.data.copy_(data.to(t.device))


def average_gradients(params: Iterable[torch.nn.Parameter], weight: float) -> None:
    """sum over ranks of weight * grad, in one flattened all-reduce. weight = this rank's share of the global
    batch (local images / global images), so the result is the gradient of the mean loss over the global batch,
    as one process would compute it (up to BatchNorm statistics, which are per rank)."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1).float() for g in grads]) * weight
    flat = flat.to(_comm_device())
    dist.all_reduce(flat)
    flat = flat.to(grads[0].device)
    off = 0
    for g in grads:
        g.copy_(flat[off: off + g.numel()].view_as(g))
        off += g.numel()


def average_batchnorm_stats(module: torch.nn.Module) -> None:
    """BatchNorm running statistics averaged over the ranks, which each saw their own shard."""
    if not active():
        return
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for b in (m.running_mean, m.running_var):
                if b is not None:
                    data = b.data.to(_comm_device())
                    dist.all_reduce(data)
                    b.data.copy_(data.to(b.device) / world())


def _swap_batchnorm(module: torch.nn.Module, make: Callable[[torch.nn.Module], torch.nn.Module]) -> None:
    for name, child in module.named_children():
        new = make(child)
        if new is not child:
            setattr(module, name, new)
        else:
            _swap_batchnorm(child, make)


def sync_batchnorm(module: torch.nn.Module, device: torch.device, on: bool) -> None:
    """--sync-bn on: BatchNorm layers in place become torch's SyncBatchNorm (batch statistics over every rank's
    share; CUDA only); off: back to plain BatchNorm with the same weights and statistics, as they are saved."""
    from .errors import HardenError
    if not active():
        return
    if on:
        if device.type != "cuda":
            raise HardenError("--sync-bn needs CUDA (torch's SyncBatchNorm runs on GPUs only); drop it on the CPU, "
                              "where each rank keeps its own batch statistics and the running ones are averaged "
                              "every epoch.")

        def synced(m: torch.nn.Module) -> torch.nn.Module:
            if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                return m
            new = torch.nn.SyncBatchNorm.convert_sync_batchnorm(m)
            new.harden_original_class = type(m)  # BatchNorm1d/2d/3d: restored as it was after training
            return new
        _swap_batchnorm(module, synced)
        return

    def plain(m: torch.nn.Module) -> torch.nn.Module:
        if not isinstance(m, torch.nn.SyncBatchNorm):
            return m
        cls = getattr(m, "harden_original_class", torch.nn.BatchNorm2d)
        bn = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, device=device)
        bn.load_state_dict(m.state_dict())
        bn.train(m.training)
        return bn
    _swap_batchnorm(module, plain)
