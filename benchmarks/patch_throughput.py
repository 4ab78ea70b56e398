"""How fast patch-ft builds its augmented set (issue: patch-ft), against one training pass of the model.

    python benchmarks/patch_throughput.py --data ../shared/data/mnist.npz --n 6000 \\
        --checkpoint bench-out/mnist-cnn-small.safetensors

Times `apply_patches` (all nine functions, batched per function) on n training images, and one
forward + backward training pass of the checkpoint's model on the same images, both on --device.
"""
from __future__ import annotations

import argparse
import time

import torch

import harden
from harden.data import to_tensor
from harden.recipes.patch_ft import apply_patches, assign
from harden.runtime import resolve_device


def timed(fn, device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/mnist.npz")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--patch", type=int, default=7)
    ap.add_argument("--patches", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    data = harden.load_data(args.data)
    x = to_tensor(data.x_train[: args.n], device)
    y = torch.from_numpy(data.y_train[: args.n]).to(device)
    funcs, corners = assign(len(x), data.input_size, args.patch, args.patches, 0)
    aug_s = timed(lambda: apply_patches(x, funcs, corners, args.patch, 0), device)

    model = harden.load(args.checkpoint, device=device).train()

    def one_epoch():
        for s in range(0, len(x), args.batch_size):
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[s:s + args.batch_size]), y[s:s + args.batch_size]).backward()

    train_s = timed(one_epoch, device)
    print(f"device {device}, {len(x)} images {tuple(x.shape[1:])}, patch {args.patch} x{args.patches}")
    print(f"apply_patches: {aug_s:.3f} s ({len(x) / aug_s:,.0f} img/s)")
    print(f"one training epoch (forward + backward, batch {args.batch_size}): {train_s:.3f} s "
          f"({len(x) / train_s:,.0f} img/s); augmentation / epoch = {aug_s / train_s:.2f}")


if __name__ == "__main__":
    main()
