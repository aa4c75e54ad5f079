"""Small random-weight twins of real architectures, one per structure the IR must understand.

Each sets ``input_shape`` and is seeded so tests are deterministic. BatchNorm layers get non-trivial running
statistics, so folding them is actually exercised.
"""

import torch
import torch.nn.functional as F
from torch import nn


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


class PlainCNN(nn.Module):
    """conv-relu x3, max pooling, dense head: the VGG shape."""

    input_shape = (3, 16, 16)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(8, 10, 3, padding=1)
        self.fc = nn.Linear(10 * 8 * 8, 5)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.pool(x)
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = ConvBlock(cin, c1, 1)
        self.b3r = ConvBlock(cin, c3r, 1)
        self.b3 = ConvBlock(c3r, c3, 3)
        self.b5r = ConvBlock(cin, c5r, 1)
        self.b5 = ConvBlock(c5r, c5, 5)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.bp = ConvBlock(cin, cp, 1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(self.b3r(x)), self.b5(self.b5r(x)), self.bp(self.pool(x))], 1)


class InceptionNet(nn.Module):
    """GoogLeNet's shape: stem, two Inception blocks (four branches, one a pooling branch), dense head."""

    input_shape = (3, 16, 16)

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem = ConvBlock(3, 8, 3)
        self.inc1 = Inception(8, 4, 4, 6, 2, 3, 3)
        self.inc2 = Inception(16, 5, 4, 6, 2, 3, 2)
        self.fc = nn.Linear(16, 4)
        randomize_bn(self, 1)

    def forward(self, x):
        x = self.inc2(self.inc1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one ReLU module called twice, BN, optional downsample."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    input_shape = (3, 16, 16)

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 12, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 3)
        randomize_bn(self, 2)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ONetLike(nn.Module):
    """MTCNN's ONet habit: PReLU, max pooling, permute NCHW -> NHWC before flatten + dense."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 6, 3)
        self.prelu1 = nn.PReLU(6)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.prelu2 = nn.PReLU(8)
        self.dense3 = nn.Linear(8 * 3 * 3, 16)
        self.prelu3 = nn.PReLU(16)
        self.dense4 = nn.Linear(16, 2)
        with torch.no_grad():
            for m in (self.prelu1, self.prelu2, self.prelu3):
                m.weight.uniform_(0.05, 0.4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu3(self.dense3(x.view(x.shape[0], -1)))
        return F.softmax(self.dense4(x), dim=1)


class MLP(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, 12)
        self.act1 = nn.Tanh()
        self.fc2 = nn.Linear(12, 10)
        self.act2 = nn.GELU()
        self.fc3 = nn.Linear(10, 3)

    def forward(self, x):
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(self.flatten(x))))))


class InvertedResidual(nn.Module):
    """MobileNetV2: 1x1 expand (ReLU6), depthwise 3x3 (ReLU6), linear 1x1 bottleneck, residual add."""

    def __init__(self, c, expand):
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True))
        self.depthwise = nn.Sequential(
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True)
        )
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class MobileNetLike(nn.Module):
    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU6())
        self.block1 = InvertedResidual(4, 3)
        self.block2 = InvertedResidual(4, 2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        randomize_bn(self, 5)

    def forward(self, x):
        return self.head(self.block2(self.block1(self.stem(x))))


class DenseLayer(nn.Module):
    """DenseNet: BN-ReLU-conv pre-activation, output concatenated onto its input."""

    def __init__(self, cin, growth):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(self.relu(self.norm(x)))], 1)


class DenseNetLike(nn.Module):
    input_shape = (3, 10, 10)

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.conv0 = nn.Conv2d(3, 4, 3, padding=1)
        self.dense1 = DenseLayer(4, 3)
        self.dense2 = DenseLayer(7, 3)
        self.norm = nn.BatchNorm2d(10)
        self.fc = nn.Linear(10, 2)
        randomize_bn(self, 6)

    def forward(self, x):
        x = self.dense2(self.dense1(self.conv0(x)))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1).flatten(1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc1 = nn.Conv2d(c, r, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(r, c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * s


class EfficientNetLike(nn.Module):
    """EfficientNet's MBConv: SiLU, depthwise conv, squeeze-excite gate, linear projection."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), nn.BatchNorm2d(6), nn.SiLU())
        self.se = SqueezeExcite(6, 2)
        self.project = nn.Sequential(nn.Conv2d(6, 4, 1, bias=False), nn.BatchNorm2d(4))
        self.head = nn.Conv2d(4, 5, 1)
        self.head_act = nn.SiLU()
        self.fc = nn.Linear(5, 3)
        randomize_bn(self, 7)

    def forward(self, x):
        x = self.project(self.se(self.dw(self.stem(x))))
        x = self.head_act(self.head(x))
        return self.fc(x.mean((2, 3)))


class UpsamplingNet(nn.Module):
    """A decoder's shape: conv-relu blocks joined by three upsamplings (nearest ``nn.Upsample``, bilinear
    ``F.interpolate``, and nearest by ``repeat_interleave``), each a linear path between two layers."""

    input_shape = (2, 3, 3)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 3, 3, padding=1)
        self.conv4 = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(self.up(x)))
        x = F.relu(self.conv3(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)))
        return F.relu(self.conv4(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)))


ALL_NETS = [PlainCNN, InceptionNet, ResNet, ONetLike, MLP, MobileNetLike, DenseNetLike, EfficientNetLike]


class MobileNetV2Twin(nn.Module):
    """MobileNetV2's layout (Sandler et al. 2018) at a quarter of its widths, on 32x32 RGB, random init.

    A 3x3 stride-2 stem, then inverted residuals ``(expand t, channels c, repeats n, stride s)``: 1x1
    expand (ReLU6), 3x3 depthwise (ReLU6; stride 2 on even maps, as in the real net, so a mirrored map is
    half a pixel off), linear 1x1 projection, a residual add where shapes allow, and a 1x1 head. Weights
    are PyTorch's default initialisation and BatchNorm is the identity: the untrained network a control
    needs (no motif it shows is learned).
    """

    input_shape = (3, 32, 32)
    settings = ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 24, 2, 1))

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        layers = [nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())]
        c_in = 8
        for t, c, n, s in self.settings:
            for i in range(n):
                layers.append(_V2Block(c_in, c, t, s if i == 0 else 1))
                c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(c_in, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))  # fmt: skip
        self.eval()

    def forward(self, x):
        return self.head(self.features(x))


class _V2Block(nn.Module):
    def __init__(self, c_in, c_out, t, stride):
        super().__init__()
        h = c_in * t
        expand = [nn.Conv2d(c_in, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6()] if t != 1 else []
        self.conv = nn.Sequential(
            *expand,
            nn.Conv2d(h, h, 3, stride=stride, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)
