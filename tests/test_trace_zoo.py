"""Attribution on a trained zoo model agrees with causal ablation (docs/neuron-graph.md: they should rank alike)."""

import pytest

from circuits.data import load_data
from circuits.graph import build_graph
from circuits.trace import attribution
from circuits.trace.edges import validate


@pytest.fixture(scope="module")
def plain_cnn():
    graph = build_graph("zoo:plain-cnn")
    return graph, load_data("toyworld:96:5", graph.input_shape)


@pytest.mark.parametrize("source, target", [("conv2", "conv3"), ("conv3", "fc")])
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_attribution_ranks_edges_like_ablation_on_the_zoo_plain_cnn(plain_cnn, source, target, mode):
    graph, data = plain_cnn
    result = attribution(graph, source, target, data)
    report = validate(graph, result, data, mode=mode)
    assert report["ablation"].shape == result.tensor.shape
    assert report["rank_correlation"] >= 0.8, report["rank_correlation"]
