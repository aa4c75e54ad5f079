"""Extraction recovers planted circuits exactly: the spec is the oracle (recall = precision = 1)."""

import numpy as np
import pytest

from circuits import planted
from circuits.extraction import extract
from circuits.graph import build_graph


def spec_inputs(spec, graph):
    """For every planted neuron: {source neuron id: effective kernel} of its nonzero inputs, from the spec."""
    expected = {}
    previous = "input"
    for layer in spec.layers:
        for qualified, part in ([(f"{layer.name}.{b.name}", b) for b in layer.branches] or [(layer.name, layer)]):
            weights = planted.effective_weights(part)
            bias = planted.effective_bias(part)
            for n in range(weights.shape[0]):
                inputs = {}
                for m in range(weights.shape[1]):
                    if np.any(weights[n, m] != 0):
                        source = graph.resolve(previous, m)
                        inputs[f"{source[0]}:{source[1]}"] = weights[n, m]
                expected[f"{qualified}:{n}"] = (inputs, bias[n])
        previous = layer.name
    return expected


@pytest.mark.parametrize("name", planted.names())
def test_extract_recovers_every_planted_edge_sign_and_kernel(name):
    loaded = planted.load(name)
    graph = build_graph(loaded)
    expected = spec_inputs(loaded.module.spec, graph)
    assert expected, "the spec plants no neurons"
    for target, (inputs, bias) in expected.items():
        circuit = extract(graph, target, depth=1, top_k=len(inputs))
        found = {s: circuit.edges[s, target] for s in circuit.predecessors(target)}
        assert set(found) == set(inputs), f"{name} {target}: recall/precision below 1"
        for source, kernel in inputs.items():
            edge = found[source]
            assert np.allclose(np.array(edge["kernel"]), kernel, atol=1e-5), f"{name} {source} -> {target}"
            assert edge["weight"] == pytest.approx(kernel.sum(), abs=1e-5)
            if abs(kernel.sum()) > 1e-6:
                assert edge["sign"] == np.sign(kernel.sum())
        assert circuit.nodes[target]["bias"] == pytest.approx(bias, abs=1e-5)
        assert circuit.nodes[target]["label"] == loaded.labels[target]


def test_union_neuron_has_the_mirror_pair_as_its_only_positive_inputs():
    circuit = extract("planted:union", "union:0", depth=2, top_k=2)
    inputs = sorted(circuit.predecessors("union:0"))
    assert inputs == ["wedges:0", "wedges:1"]
    assert {circuit.nodes[i]["label"] for i in inputs} == {"wedge_left", "wedge_right"}
    assert all(circuit.edges[i, "union:0"]["sign"] == 1 for i in inputs)


def test_opponent_neuron_is_inhibited_by_the_mirror_case():
    circuit = extract("planted:union", "union:1", depth=1, top_k=2)
    signs = {circuit.nodes[s]["label"]: circuit.edges[s, "union:1"]["sign"] for s in circuit.predecessors("union:1")}
    assert signs == {"wedge_left": 1, "wedge_right": -1}
