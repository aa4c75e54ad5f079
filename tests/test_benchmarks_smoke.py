"""Smoke test of the tracing benchmark: its GoogLeNet-size network builds into the expected neuron graph, and
its naive autograd-loop reference agrees with circuits' expanded weights. Correctness only, no timing."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_trace import ablation_subset, compose_kernels, max_relative_error, naive_expanded, paste  # noqa: E402
from googlenet import INCEPTION_CHANNELS, GoogLeNet, linearised_chain  # noqa: E402

from circuits.graph import build_graph  # noqa: E402
from circuits.trace import weights  # noqa: E402
from circuits.trace.edges import ablate, attribute  # noqa: E402


@pytest.fixture(scope="module")
def googlenet():
    model = GoogLeNet(seed=0, input_shape=(3, 96, 96))  # the real channel counts on a small input
    return model, build_graph(model)


def test_googlenet_graph_has_every_layer_and_concat_blocks(googlenet):
    _, graph = googlenet
    # input, conv1-conv3, 9 Inception blocks x (6 branch layers + their concat), fc
    assert len(graph.layers) == 1 + 3 + 9 * 7 + 1
    for block, (_, c1, _, c3, _, c5, cp) in INCEPTION_CHANNELS.items():
        layer = graph.layer(block)
        assert layer.kind == "concat"
        assert [part for part, _, _ in layer.parts] == [
            f"{block}.branch1", f"{block}.branch2.1", f"{block}.branch3.1", f"{block}.branch4.1"
        ]  # fmt: skip
        assert layer.channels == c1 + c3 + c5 + cp
    assert graph.layer("inception4c.branch2.1").sources == ["inception4c.branch2.0"]
    assert graph.layer("inception4c.branch2.0").sources == graph.layer("inception4b").sources
    assert graph.layer("inception4c").spatial == (6, 6)
    assert graph.layer("fc").kind == "output" and graph.layer("fc").channels == 1000


@pytest.mark.parametrize("branch", ["branch2", "branch3"])  # 3x3 (field inside the map), 5x5 (clipped)
def test_naive_autograd_loop_agrees_with_expanded_weights(googlenet, branch):
    model, graph = googlenet
    target = f"inception4c.{branch}.1"
    (kernel_set,) = weights(graph, "inception4b", target, expanded=True, use_cache=False).kernel_sets
    t_layer, s_layer = graph.layer(target), graph.layer("inception4b")
    chain = linearised_chain(*getattr(model.inception4c, branch))
    targets = list(range(0, t_layer.channels, t_layer.channels // 8))
    position = tuple(d // 2 for d in t_layer.spatial)
    naive = naive_expanded(chain, s_layer.shape, targets, position)
    assert max_relative_error(paste(kernel_set, s_layer.shape)[targets], naive) < 1e-4
    shared = naive_expanded(chain, s_layer.shape, targets, position, shared_forward=True)
    assert max_relative_error(shared, naive) < 1e-5
    if not kernel_set.clipped:  # the whole kernel fits the map: it equals the directly composed kernels
        assert max_relative_error(kernel_set.kernels, compose_kernels(chain)) < 1e-4


def test_ablation_baseline_is_circuits_ablate_and_attribution_takes_the_kernel_route(googlenet):
    _, graph = googlenet
    data = torch.randn(2, *graph.input_shape, generator=torch.Generator().manual_seed(1))
    source, target = "inception4b", "inception4c.branch1"
    _, _, subset = ablation_subset(graph, source, target, data, [0, 7, 300])
    assert torch.allclose(subset, ablate(graph, source, target, data)[:, [0, 7, 300]], atol=1e-5)
    assert attribute(graph, source, target, data).route == "kernel"
