"""The CPU's attack batch against the activations an image keeps: steady-state forward+backward seconds per image of a
timm network (random weights, frozen, input gradient only, as an attack step) at each batch, beside the batch
`harden.device_defaults.cpu_attack_batch` chooses. Each batch runs twice; the second (allocator warm) is the figure.

    python benchmarks/cpu_attack_batch.py resnet50 8 16 64 128
"""
import argparse
import time

import timm
import torch

from harden.allocator import keep_freed_memory
from harden.device_defaults import activation_bytes_per_image, cpu_attack_batch
from harden.runtime import frozen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch")
    ap.add_argument("batches", nargs="+", type=int)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    keep_freed_memory()  # as the CLI does
    torch.set_num_threads(args.threads)
    net = timm.create_model(args.arch, pretrained=False)
    shape = tuple(net.pretrained_cfg["input_size"])
    per_image = activation_bytes_per_image(net, shape)
    print(f"{args.arch} at {shape[1]}x{shape[2]}: {per_image / 1e6:.1f} MB of activations an image; "
          f"harden's CPU batch {cpu_attack_batch(net, shape)}", flush=True)
    with frozen(net):
        for b in args.batches:
            seconds = []
            for _ in range(2):
                x = torch.rand(b, *shape, requires_grad=True)
                t = time.perf_counter()
                torch.autograd.grad(net(x).sum(), x)
                seconds.append(time.perf_counter() - t)
            print(f"batch {b}: {seconds[1] / b:.3f} s an image (first run {seconds[0] / b:.3f})", flush=True)


if __name__ == "__main__":
    main()
