"""Architectures of the reference checkpoints in ../shared/models, written from the descriptions in its README
(key names and shapes match the files). Used by the benchmarks and tests as `--arch archs:NAME` with
benchmarks/ on PYTHONPATH, or `--arch benchmarks/archs.py:NAME`."""
import torch.nn.functional as F
from torch import nn


class DeepRobustMnistNet(nn.Module):
    """DeepRobust's MNIST CNN: conv 5x5 1->20, pool, conv 5x5 20->50, pool, fc 800->500, fc 500->10, log_softmax."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(x), dim=1)


def deeprobust_mnist(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    return DeepRobustMnistNet(num_classes, in_chans)


class _ShortcutA(nn.Module):
    """He et al.'s option A: subsample by 2 and zero-pad the channels; no parameters."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _ShortcutA(planes // 4) if stride != 1 or cin != planes else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks: int = 3, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, planes in enumerate((16, 32, 64)):
            layers = []
            for j in range(blocks):
                layers.append(_BasicBlock(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet20(num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return CifarResNet(3, num_classes, in_chans)
