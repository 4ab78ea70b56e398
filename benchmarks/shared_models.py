"""The shared CIFAR-10 ResNet-20 (../shared/models, its authors' file) loaded with its architecture and CIFAR-10's
mean and std, and the CIFAR-10 arrays beside it: what several benchmarks start from."""
import pathlib
import sys

import harden

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def shared_resnet20():
    """(model, data), or exit naming the missing files."""
    ckpt, data_path = SHARED / "models" / "resnet20_cifar10.th", SHARED / "data" / "cifar10.npz"
    if not ckpt.exists() or not data_path.exists():
        sys.exit(f"needs {ckpt} and {data_path}")
    arch = str(pathlib.Path(__file__).with_name("archs.py")) + ":resnet20"
    return harden.load(ckpt, arch=arch, mean=CIFAR10_MEAN, std=CIFAR10_STD), harden.load_data(str(data_path))
