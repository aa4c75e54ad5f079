"""The zoo's architectures: small, fx-traceable, written so the neuron-graph IR names layers plainly.

Layer names (as ``circuits layers`` prints them):

- :class:`PlainCNN`      conv1, conv2, conv3 (functional ReLU after each conv), fc
- :class:`FacingCNN`     as PlainCNN; conv3's first channels are trained as (class, facing) cases
- :class:`InceptionCNN`  stem, inc1 (concat of inc1.b1, inc1.b3, inc1.b5, inc1.bp), inc2 (likewise), fc
- :class:`ResNetCNN`     stem, block1, block2 (BatchNorm and residual add inside each block), fc
- :class:`MLP`           fc1, fc2, fc3
- :class:`CurveCNN`      conv1, conv2, conv3, fc (5x5 first layer, trained on arcs of every orientation)

No forward has data-dependent control flow, so ``torch.fx.symbolic_trace`` works on every one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PlainCNN(nn.Module):
    """Three 3x3 conv layers with ReLU and 2x2 max pooling, global max pool, a linear classifier."""

    first_kernel = 3

    def __init__(self, in_channels: int = 1, size: int = 32, classes: int = 3, width: tuple = (8, 16, 16)):
        super().__init__()
        self.input_shape = (in_channels, size, size)
        c1, c2, c3 = width
        k = self.first_kernel
        self.conv1 = nn.Conv2d(in_channels, c1, k, padding=k // 2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.fc = nn.Linear(c3, classes)

    def forward(self, x):
        x = F.relu(self.conv3(self.conv3_input(x)))
        x = torch.amax(x, dim=(2, 3))
        return self.fc(x)

    def conv3_input(self, x):
        """What conv3 reads: conv1 and conv2, each with its ReLU and a 2x2 max-pool."""
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.conv2(x))
        return F.max_pool2d(x, 2)


class FacingCNN(PlainCNN):
    """The plain CNN whose first ``2 x classes`` conv3 channels are each made to report one case, a class
    facing one way (channel ``2k`` class k facing left, ``2k + 1`` facing right), during training.

    ``forward`` returns the class logits only, so the traced graph, ``evaluate`` and every tool see the class
    network. Training adds a cross-entropy over the cases whose logits are those channels' strongest
    pre-activations, each through its own scale and offset (:meth:`forward_with_cases`): a diagonal read-out, so a case must
    be one neuron, not spread over many (a linear facing head on all of conv3 was tried first: it reached
    98% facing accuracy while no single neuron separated the facings better than AUROC 0.77). The class
    labels do not depend on facing, so ``fc`` learns to OR the two facings of its class: a union over
    reflection whose cases are facing detectors. The rest of the recipe (each image with its mirror, a contrast
    between them, the class read through fc from its two cases alone) is :func:`circuits.zoo.train.loss`.
    """

    def __init__(self, in_channels: int = 1, size: int = 32, classes: int = 3, width: tuple = (8, 16, 16)):
        super().__init__(in_channels, size, classes, width)  # same parameters, same init order as PlainCNN
        if width[2] < 2 * classes:
            raise ValueError(f"FacingCNN needs at least {2 * classes} conv3 channels for its cases, got {width[2]}")
        self.case_scale = nn.Parameter(torch.ones(2 * classes))
        self.case_bias = nn.Parameter(torch.zeros(2 * classes))

    def forward_with_cases(self, x, peaks: bool = False):
        """``(class logits, case logits)`` from one pass (and the case channels' peaks with ``peaks=True``);
        case ``2k + f`` is class k facing left (f=0) or right.

        A case logit reads its channel's strongest *pre-activation*: read after the ReLU, a case channel
        that went negative everywhere early in training stayed dead (no gradient), and was no detector."""
        peak = torch.amax(self.conv3(self.conv3_input(x)), dim=(2, 3))
        cases = peak[:, : len(self.case_scale)]
        out = (self.fc(F.relu(peak)), cases * self.case_scale + self.case_bias)
        return (*out, cases) if peaks else out


class ConvReLU(nn.Module):
    """conv -> ReLU; its output is one neuron layer named after this module."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)

    def forward(self, x):
        return F.relu(self.conv(x))


class PoolBranch(nn.Module):
    """3x3 max pool -> 1x1 conv -> ReLU: the pool branch of an inception module."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        return F.relu(self.conv(F.max_pool2d(x, 3, stride=1, padding=1)))


class InceptionBlock(nn.Module):
    """Parallel 1x1 / 3x3 / 5x5 / pool branches, concatenated along channels (Szegedy et al. 2015)."""

    def __init__(self, in_channels: int, branch: int):
        super().__init__()
        self.b1 = ConvReLU(in_channels, branch, 1)
        self.b3 = ConvReLU(in_channels, branch, 3)
        self.b5 = ConvReLU(in_channels, branch, 5)
        self.bp = PoolBranch(in_channels, branch)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class InceptionCNN(nn.Module):
    """stem conv, two inception modules with pooling between, global average pool, linear classifier."""

    def __init__(self, in_channels: int = 1, size: int = 32, classes: int = 3, stem: int = 12, branch: int = 6):
        super().__init__()
        self.input_shape = (in_channels, size, size)
        self.stem = ConvReLU(in_channels, stem, 3)
        self.inc1 = InceptionBlock(stem, branch)
        self.inc2 = InceptionBlock(4 * branch, branch)
        self.fc = nn.Linear(4 * branch, classes)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 2)
        x = F.max_pool2d(self.inc1(x), 2)
        x = self.inc2(x)
        x = torch.amax(x, dim=(2, 3))
        return self.fc(x)


class ConvBNReLU(nn.Module):
    """conv -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    """Two 3x3 conv+BN with a residual add (He et al. 2016); a 1x1 conv+BN projects the skip when the shape
    changes. Its output, ReLU(branch + skip), is the neuron layer named after the block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.project = stride != 1 or in_channels != out_channels
        if self.project:
            self.skip_conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skip_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = self.skip_bn(self.skip_conv(x)) if self.project else x
        return F.relu(out + skip)


class ResNetCNN(nn.Module):
    """stem conv+BN, two residual blocks (the second downsamples), global max pool, linear classifier."""

    def __init__(self, in_channels: int = 1, size: int = 32, classes: int = 3, width: tuple = (12, 12, 24)):
        super().__init__()
        self.input_shape = (in_channels, size, size)
        c0, c1, c2 = width
        self.stem = ConvBNReLU(in_channels, c0, 3)
        self.block1 = ResBlock(c0, c1)
        self.block2 = ResBlock(c1, c2, stride=2)
        self.fc = nn.Linear(c2, classes)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 2)
        x = self.block1(x)
        x = self.block2(x)
        x = torch.amax(x, dim=(2, 3))
        return self.fc(x)


class MLP(nn.Module):
    """Flattened image -> two hidden ReLU layers -> logits."""

    def __init__(self, in_channels: int = 1, size: int = 32, classes: int = 3, hidden: tuple = (256, 128)):
        super().__init__()
        self.input_shape = (in_channels, size, size)
        h1, h2 = hidden
        self.fc1 = nn.Linear(in_channels * size * size, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class CurveCNN(PlainCNN):
    """5x5 conv, then two 3x3 convs with pooling between, global max pool, linear classifier.

    Trained on arcs at every orientation, its early layers are where rotated copies of one detector
    (equivariant families, as in Distill's "Curve Detectors") would appear.
    """

    first_kernel = 5

    def __init__(self, in_channels: int = 1, size: int = 32, classes: int = 4, width: tuple = (8, 16, 16)):
        super().__init__(in_channels, size, classes, width)


ARCHITECTURES = {
    "PlainCNN": PlainCNN,
    "FacingCNN": FacingCNN,
    "InceptionCNN": InceptionCNN,
    "ResNetCNN": ResNetCNN,
    "MLP": MLP,
    "CurveCNN": CurveCNN,
}
