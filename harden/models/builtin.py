"""Architectures from the source papers. Each declares feature_info (its taps) and the
forward_features / forward_head split, like timm models do."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class _TappedNet(nn.Module):
    """Common plumbing: `stages` run in order (their ends are the taps), then `head`."""

    stages: nn.Sequential
    head: nn.Module
    feature_info: list[dict]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm's signature: pre_logits=True stops before the final linear layer (the embedding)."""
        return self.head[:-1](x) if pre_logits else self.head(x)

    def get_classifier(self) -> nn.Module:
        return self.head[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _declare_taps(self, in_chans: int, input_size) -> int:
        """Run a dummy input through the stages to record channels/reduction per stage; returns head input size."""
        h = input_size[0]
        x = torch.zeros(1, in_chans, *input_size)
        info = []
        with torch.no_grad():
            for i, stage in enumerate(self.stages):
                x = stage(x)
                info.append(dict(num_chs=int(x.shape[1]), reduction=max(1, round(h / max(1, x.shape[-1]))),
                                 module=f"stages.{i}"))
        self.feature_info = info
        return int(x.numel())


def conv_block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    """Seed 000 table 5: Conv3x3 - BN - ReLU - (MaxPool2)."""
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """Seed 000 table 6: input + ConvBlock(ConvBlock(input))."""

    def __init__(self, ch: int):
        super().__init__()
        self.a, self.b = conv_block(ch, ch, False), conv_block(ch, ch, False)

    def forward(self, x):
        return x + self.b(self.a(x))


class ResNet9(_TappedNet):
    """Seed 000 appendix table 8 (without fixer modules). Three stages, split where the paper puts
    its fixers: after res_block_1, after res_block_2, and the pooled output."""

    def __init__(self, num_classes=10, in_chans=3, input_size=(32, 32)):
        super().__init__()
        self.stages = nn.Sequential(
            nn.Sequential(conv_block(in_chans, 64, False), conv_block(64, 128, True), Residual(128)),
            nn.Sequential(conv_block(128, 256, False), conv_block(256, 512, True), Residual(512)),
            nn.Sequential(nn.MaxPool2d(4, ceil_mode=True)),
        )
        flat = self._declare_taps(in_chans, input_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))


class SimpleConvNet(_TappedNet):
    """Seed 004 section 4.1 CNN (also seed 003 table 1 F-MNIST_conv): Conv(64,8x8) - Conv(128,6x6) -
    Conv(128,5x5) - dense, ReLU. Strides follow the reference (cleverhans) basic CNN: 2, 2, 1; padding
    keeps it valid for inputs as small as 8x8."""

    def __init__(self, num_classes=10, in_chans=1, input_size=(28, 28)):
        super().__init__()
        self.stages = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_chans, 64, 8, stride=2, padding=3), nn.ReLU()),
            nn.Sequential(nn.Conv2d(64, 128, 6, stride=2, padding=2), nn.ReLU()),
            nn.Sequential(nn.Conv2d(128, 128, 5, stride=1, padding=2), nn.ReLU()),
        )
        flat = self._declare_taps(in_chans, input_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))


class CifarConv(_TappedNet):
    """Seed 003 table 1 CIFAR_conv: Conv(5x5x32) ReLU MaxPool(3x3) - Conv(8x8x64) ReLU AvgPool(3x3) -
    Conv(8x8x64) ReLU AvgPool(3x3) - FC(64) - FC(10). 'Same' padding and stride-2 pools (the table gives
    neither); a ReLU between the two FC layers, without which they would collapse into one."""

    def __init__(self, num_classes=10, in_chans=3, input_size=(32, 32)):
        super().__init__()
        self.stages = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_chans, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)),
            nn.Sequential(nn.ZeroPad2d((3, 4, 3, 4)), nn.Conv2d(32, 64, 8), nn.ReLU(), nn.AvgPool2d(3, 2, 1)),
            nn.Sequential(nn.ZeroPad2d((3, 4, 3, 4)), nn.Conv2d(64, 64, 8), nn.ReLU(), nn.AvgPool2d(3, 2, 1)),
        )
        flat = self._declare_taps(in_chans, input_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, num_classes))


@register_model("resnet9")
def resnet9(num_classes=10, in_chans=3, input_size=(32, 32)):
    return ResNet9(num_classes, in_chans, input_size)


@register_model("cnn-small")
def cnn_small(num_classes=10, in_chans=1, input_size=(28, 28)):
    return SimpleConvNet(num_classes, in_chans, input_size)


@register_model("fmnist-conv")
def fmnist_conv(num_classes=10, in_chans=1, input_size=(28, 28)):
    # Seed 003 table 1 gives the same layer list as seed 004's CNN.
    return SimpleConvNet(num_classes, in_chans, input_size)


@register_model("cifar-conv")
def cifar_conv(num_classes=10, in_chans=3, input_size=(32, 32)):
    return CifarConv(num_classes, in_chans, input_size)
