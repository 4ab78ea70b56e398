"""torch.export programs (.pt2) as input, beside the same network read as a state dict with --arch: the shared
CIFAR-10 ResNet-20 and DeepRobust's PGD-trained MNIST CNN, each exported with a dynamic batch and for a fixed batch
of 2; clean and white-box robust accuracy, time; then timm models at 224 px: load time, the size of the program kept
in harden's checkpoint, outputs against the module. Rows for BENCHMARKS.md "torch.export programs as input".

    python benchmarks/exported_program.py [--n 200]

Needs ../shared (the checkpoints, cifar10.npz and mnist.npz)."""
import argparse
import pathlib
import sys
import tempfile
import time
import warnings

import torch

import harden
from harden.runtime import set_quiet

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
ARCHS = pathlib.Path(__file__).with_name("archs.py")


def _save(net, path, shape, batch=None):
    dynamic = None if batch else {"x": {0: torch.export.Dim("batch")}}
    x = torch.rand(batch or 2, *shape)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=dynamic), str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    set_quiet(True)
    warnings.simplefilter("ignore")
    tmp = pathlib.Path(tempfile.mkdtemp())
    cases = [("resnet20", SHARED / "models" / "resnet20_cifar10.th", SHARED / "data" / "cifar10.npz", (3, 32, 32),
              {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)}, 8 / 255),
             ("deeprobust_mnist", SHARED / "models" / "deeprobust_mnist_pgd.pt", SHARED / "data" / "mnist.npz",
              (1, 28, 28), {}, 0.3)]
    print("| network | read as | threat model | clean | FGSM | PGD-50 | time |")
    print("|---|---|---|---|---|---|---|")
    for name, ckpt, data_path, shape, norm, eps in cases:
        if not ckpt.exists() or not data_path.exists():
            sys.exit(f"needs {ckpt} and {data_path}")
        source = harden.load(ckpt, arch=f"{ARCHS}:{name}", **norm)
        data = harden.load_data(str(data_path))
        net = source.net.eval()
        models = [("state dict + --arch", source),
                  (".pt2, dynamic batch", harden.load(_save(net, tmp / f"{name}.pt2", shape), **norm)),
                  (".pt2, fixed batch of 2", harden.load(_save(net, tmp / f"{name}_2.pt2", shape, 2), **norm))]
        for label, model in models:
            t = time.time()
            r = harden.evaluate(model, data, n=args.n, attacks=["fgsm", "pgd"], eps=eps, device="cpu",
                                metrics=False, masking_checks=False)
            cells = " | ".join(f"{a.robust_accuracy:.1%}" for a in r.attacks)
            print(f"| {name} | {label} | white-box | {r.clean_accuracy:.1%} | {cells} | {time.time() - t:.1f} s |",
                  flush=True)
    import timm
    print("\n| timm model (224 px, random weights) | export | harden.load | program kept | max output difference |")
    print("|---|---|---|---|---|")
    for name in ("resnet50", "vit_tiny_patch16_224", "efficientnet_b0", "convnext_atto"):
        net = timm.create_model(name, pretrained=False, num_classes=10).eval()
        t = time.time()
        path = _save(net, tmp / f"{name}.pt2", (3, 224, 224))
        exported = time.time() - t
        t = time.time()
        model = harden.load(path)
        loaded = time.time() - t
        x = torch.rand(4, 3, 224, 224)
        with torch.no_grad():
            diff = float((model.net(x) - net(x)).abs().max())
        kept = len(model.spec.model_args["program"]) / 1024
        print(f"| {name} | {exported:.1f} s | {loaded:.1f} s | {kept:.0f} KB | {diff:.2g} |", flush=True)


if __name__ == "__main__":
    main()
