"""A GoogLeNet-size Inception network (GoogLeNet / InceptionV1) built in the project, for the benchmarks.

The real GoogLeNet v1 layout (Szegedy et al. 2015, "Going deeper with convolutions") with torchvision's
channel counts and its conv+BN blocks — but no torchvision import, and random weights from a seed:

    conv1 7x7/2, maxpool1, conv2 1x1, conv3 3x3, maxpool2, inception3a/3b, maxpool3,
    inception4a-4e, maxpool4, inception5a/5b, avgpool, dropout, fc

Each Inception block has four branches, concatenated on channels:

    branch1  1x1
    branch2  1x1 reduce -> 3x3
    branch3  1x1 reduce -> 5x5   (the paper's 5x5; torchvision uses 3x3 here, a known bug it keeps)
    branch4  3x3/1 max pool -> 1x1 projection

Every conv is a ``BasicConv2d`` (conv without bias, BatchNorm with eps 1e-3, ``F.relu`` at the end of its
forward), so the neuron layers are named after the block: ``conv3``, ``inception4c.branch1``,
``inception4c.branch2.0`` (the 1x1 reduce), ``inception4c.branch2.1`` (the 3x3), ``inception4c.branch4.1``
(the pool projection), and each block's concat is a concat layer named ``inception4c``.
Run this file to print the layer table (``circuits layers benchmarks/googlenet.py:GoogLeNet`` prints the same).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's GoogLeNet channel counts: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
INCEPTION_CHANNELS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    """conv (no bias) + BatchNorm + ReLU: one neuron layer, named after this module."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, 1), BasicConv2d(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, 1), BasicConv2d(c5r, c5, 5, padding=2))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(cin, cp, 1)
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    """GoogLeNet v1 with random weights from ``seed`` (He-normal convs, non-trivial BN statistics)."""

    input_shape = (3, 224, 224)

    def __init__(
        self, seed: int = 0, num_classes: int = 1000, input_shape: tuple[int, int, int] | None = None
    ):
        super().__init__()
        if input_shape is not None:
            self.input_shape = tuple(input_shape)
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(*INCEPTION_CHANNELS["inception3a"])
        self.inception3b = Inception(*INCEPTION_CHANNELS["inception3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(*INCEPTION_CHANNELS["inception4a"])
        self.inception4b = Inception(*INCEPTION_CHANNELS["inception4b"])
        self.inception4c = Inception(*INCEPTION_CHANNELS["inception4c"])
        self.inception4d = Inception(*INCEPTION_CHANNELS["inception4d"])
        self.inception4e = Inception(*INCEPTION_CHANNELS["inception4e"])
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(*INCEPTION_CHANNELS["inception5a"])
        self.inception5b = Inception(*INCEPTION_CHANNELS["inception5b"])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)
        self._randomize(seed)
        self.eval()

    @torch.no_grad()
    def _randomize(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                m.bias.zero_()

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4c(self.inception4b(self.inception4a(x)))
        x = self.maxpool4(self.inception4e(self.inception4d(x)))
        x = self.inception5b(self.inception5a(x))
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return self.fc(x)


def linearised_chain(*blocks: BasicConv2d) -> nn.Module:
    """The path through consecutive ``BasicConv2d`` blocks with every ReLU read as the identity.

    Returns a deep-copied eval-mode module whose output is the *last* block's pre-activation (BN
    included): the map whose Jacobian is the expanded weight (docs/neuron-graph.md). It is built from the
    blocks directly, independently of the neuron-graph IR, to serve as the benchmarks' reference.
    """
    parts = []
    for block in blocks:
        parts += [copy.deepcopy(block.conv), copy.deepcopy(block.bn)]
    chain = nn.Sequential(*parts).eval()
    for p in chain.parameters():
        p.requires_grad_(False)
    return chain


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from circuits.graph import build_graph

    graph = build_graph(GoogLeNet())
    for layer in graph.layers.values():
        print(
            f"{layer.name:28s} {layer.kind:10s} {'x'.join(map(str, layer.shape)):12s} {', '.join(layer.sources)}"
        )
    print(f"{len(graph.layers)} layers")
