"""The worked example of docs/neuron-graph.md: every number it states, recomputed by the library."""

import pytest
import torch
from torch import nn

from circuits import trace
from circuits.graph import build_graph


class Tiny(nn.Module):
    input_shape = (1, 6, 6)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(2)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(2, 1, 1)

    def forward(self, x):
        a = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.conv2(self.pool(a)))


@pytest.fixture(scope="module")
def graph():
    m = Tiny()
    with torch.no_grad():
        m.conv1.weight[0, 0] = torch.tensor([[0.0, 0, 0], [-1, 0, 1], [0, 0, 0]])
        m.conv1.weight[1, 0] = torch.tensor([[0.0, 1, 0], [0, 1, 0], [0, 1, 0]])
        m.conv1.bias[:] = torch.tensor([0.5, -1.0])
        m.bn1.weight[:] = torch.tensor([1.5, 1.0])
        m.bn1.bias[:] = torch.tensor([0.1, 0.0])
        m.bn1.running_mean[:] = torch.tensor([0.3, 0.0])
        m.bn1.running_var[:] = torch.tensor([1.0, 4.0]) - m.bn1.eps
        m.conv2.weight[:] = torch.tensor([1.0, -0.5]).view(1, 2, 1, 1)
        m.conv2.bias[:] = 0.25
    return build_graph(m.eval())


def close(a, b):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32), atol=1e-5
    )


def test_layers_and_paths(graph):
    assert list(graph.layers) == ["input", "bn1", "conv2"]
    assert graph.layer("conv2").path_ops == ["Conv2d", "MaxPool2d (read as average pooling)"]


def test_direct_weights_fold_batchnorm(graph):
    (ks,) = trace.weights(graph, target="bn1", use_cache=False).kernel_sets
    assert ks.position == (3, 3) and ks.origin == (2, 2)
    assert close(ks.kernels[0, 0], [[0, 0, 0], [-1.5, 0, 1.5], [0, 0, 0]])
    assert close(ks.kernels[1, 0], [[0, 0.5, 0]] * 3)
    assert close(ks.strength[:, 0], [0, 1.5]) and close(ks.magnitude[:, 0], [4.5**0.5, 0.75**0.5])
    assert close(ks.bias, [0.4, -0.5])


def test_max_pool_is_read_as_average_pool(graph):
    (ks,) = trace.weights(graph, target="conv2", use_cache=False).kernel_sets
    assert close(ks.kernels[0], [[[0.25, 0.25]] * 2, [[-0.125, -0.125]] * 2])
    assert close(ks.strength[0], [1.0, -0.5]) and close(ks.bias, [0.25])


def test_expanded_weights(graph):
    (ks,) = trace.weights(graph, "input", "conv2", expanded=True, use_cache=False).kernel_sets
    expected = [
        [0, -0.0625, -0.0625, 0],
        [-0.375, -0.5, 0.25, 0.375],
        [-0.375, -0.5, 0.25, 0.375],
        [0, -0.0625, -0.0625, 0],
    ]
    assert ks.origin == (1, 1) and close(ks.kernels[0, 0], expected) and close(ks.strength, [[-0.75]])


def test_attribution_on_one_image(graph):
    x = torch.zeros(1, 1, 6, 6)
    x[..., 3:] = 1.0
    assert close(trace.attribution(graph, "bn1", "conv2", x).tensor, [[8.1, -3.0]])
