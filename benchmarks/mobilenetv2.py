"""A MobileNetV2 built in the project, for the benchmarks: torchvision's layout and names, random weights.

The ImageNet MobileNetV2 of Sandler et al. 2018 ("MobileNetV2: Inverted Residuals and Linear Bottlenecks"),
width 1.0, with the module names torchvision gives it — so a layer here is named as in a real checkpoint
(``features.4.conv.0.2`` is block 4's expand ReLU6, ``features.4.conv.1.2`` its depthwise ReLU6) — but no
torchvision import, and weights (BatchNorm statistics included) drawn from a seed:

    features.0      conv 3x3/2 -> 32, BN, ReLU6
    features.1      inverted residual, t=1 (depthwise 3x3 -> 1x1 project to 16)
    features.2-17   inverted residuals (t=6): 24 x2, 32 x3, 64 x4, 96 x3, 160 x3, 320 x1
    features.18     conv 1x1 -> 1280, BN, ReLU6
    classifier      dropout, linear 1280 -> 1000 after a global average pool

Run this file to print the layer table (``circuits layers benchmarks/mobilenetv2.py:MobileNetV2`` prints
the same).
"""

from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper's table 2
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias), BatchNorm, ReLU6: children ``0``, ``1``, ``2`` as in torchvision."""

    def __init__(self, cin, cout, kernel=3, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [ConvBNReLU6(cin, hidden, kernel=1)]
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 with random weights from ``seed`` (He-initialised convs, BN statistics drawn so that
    every neuron is sometimes active), in eval mode."""

    def __init__(self, num_classes: int = 1000, seed: int = 0):
        super().__init__()
        blocks = [ConvBNReLU6(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(ConvBNReLU6(cin, 1280, kernel=1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                elif isinstance(m, nn.BatchNorm2d):
                    c = m.num_features
                    m.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=generator))
                    m.bias.copy_(0.1 * torch.randn(c, generator=generator))
                    m.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                    m.running_var.copy_(1.0 + 0.5 * torch.rand(c, generator=generator))
                elif isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.01)
                    m.bias.zero_()
        self.eval()

    def forward(self, x):
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        return self.classifier(x)


if __name__ == "__main__":
    from circuits.cli import main

    main(["layers", f"{__file__}:MobileNetV2", "--input-shape", "3,224,224"])
