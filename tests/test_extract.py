"""circuits.extraction on architecture twins: checked against weights folded by hand from the modules."""

import json

import networkx as nx
import pytest
import torch
from nets import InceptionNet, PlainCNN, ResNet

from circuits.errors import UnknownNeuronError, UsageError
from circuits.extraction import extract, to_json


def folded(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm folded into the conv weight, written out by hand (independent of the tracer)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight.detach() * scale[:, None, None, None]


def test_top_k_inputs_are_the_strongest_by_absolute_folded_strength():
    model = ResNet()
    block = model.layer2[0]
    k = 3
    # layer2.0 = relu(bn2(conv2(layer2.0.relu)) + downsample(layer1.1)): both are direct sources
    inner = folded(block.conv2, block.bn2)[3].flatten(1).sum(1)
    skip = folded(block.downsample[0], block.downsample[1])[3].flatten(1).sum(1)
    candidates = {f"layer2.0.relu:{c}": float(v) for c, v in enumerate(inner)}
    candidates.update({f"layer1.1:{c}": float(v) for c, v in enumerate(skip)})
    expected = sorted(candidates, key=lambda n: -abs(candidates[n]))[:k]

    circuit = extract(model, "layer2.0:3", depth=1, top_k=k)

    got = sorted(circuit.predecessors("layer2.0:3"), key=lambda n: -abs(circuit.edges[n, "layer2.0:3"]["weight"]))
    assert got == expected
    for source in got:
        assert circuit.edges[source, "layer2.0:3"]["weight"] == pytest.approx(candidates[source], rel=1e-5, abs=1e-6)


def test_negative_edges_are_kept_and_marked():
    circuit = extract(ResNet(), "layer2.0:3", depth=2, top_k=4)
    signs = {d["sign"] for _, _, d in circuit.edges(data=True)}
    assert signs == {1, -1}
    for _, _, d in circuit.edges(data=True):
        assert d["sign"] == (1 if d["weight"] >= 0 else -1)


def test_walk_respects_depth_and_top_k():
    circuit = extract(PlainCNN(), "conv3:4", depth=2, top_k=3)
    assert isinstance(circuit, nx.DiGraph) and nx.is_directed_acyclic_graph(circuit)
    assert circuit.nodes["conv3:4"]["depth"] == 0
    assert max(d["depth"] for _, d in circuit.nodes(data=True)) == 2
    for node, d in circuit.nodes(data=True):
        assert circuit.in_degree(node) <= 3
        if d["depth"] < 2:
            assert circuit.in_degree(node) == 3
    layers = {d["layer"] for _, d in circuit.nodes(data=True)}
    assert layers == {"conv3", "conv2", "conv1"}


def test_kernel_of_an_edge_is_the_conv_weight_through_average_read_max_pooling():
    model = PlainCNN()
    circuit = extract(model, "conv2:1", depth=1, top_k=6)
    for source in circuit.predecessors("conv2:1"):
        c = int(source.split(":")[1])
        kernel = torch.tensor(circuit.edges[source, "conv2:1"]["kernel"])
        assert torch.allclose(kernel, model.conv2.weight.detach()[1, c], atol=1e-6)


def test_target_in_a_concat_resolves_to_the_branch_that_computes_it():
    circuit = extract(InceptionNet(), "inc1:5", depth=1, top_k=2)
    # inc1 = cat(b1: 4 channels, b3: 6, ...): channel 5 is inc1.b3:1
    assert circuit.graph["target"] == "inc1.b3:1"
    assert all(d["layer"] == "inc1.b3r" for n, d in circuit.nodes(data=True) if n != "inc1.b3:1")


def test_through_jumps_to_an_earlier_layer_with_expanded_weights():
    circuit = extract(PlainCNN(), "conv2:0", depth=1, top_k=3, through="input")
    sources = list(circuit.predecessors("conv2:0"))
    assert {s.split(":")[0] for s in sources} == {"input"}
    kernel = circuit.edges[sources[0], "conv2:0"]["kernel"]
    assert (len(kernel), len(kernel[0])) == (5, 5)  # two 3x3 convs: a 5x5 receptive field
    assert circuit.edges[sources[0], "conv2:0"]["expanded"] is True


def test_threshold_drops_weak_edges():
    full = extract(PlainCNN(), "conv3:4", depth=1, top_k=8)
    weights = sorted(abs(d["weight"]) for _, _, d in full.edges(data=True))
    cut = weights[len(weights) // 2]
    pruned = extract(PlainCNN(), "conv3:4", depth=1, top_k=8, threshold=cut)
    assert all(abs(d["weight"]) >= cut for _, _, d in pruned.edges(data=True))
    assert 0 < pruned.number_of_edges() < full.number_of_edges()


def test_pruned_share_states_the_input_strength_left_out():
    model = PlainCNN()
    circuit = extract(model, "conv2:1", depth=1, top_k=2)
    strengths = model.conv2.weight.detach()[1].flatten(1).sum(1).abs()
    kept = strengths.sort(descending=True).values[:2].sum()
    assert circuit.nodes["conv2:1"]["pruned_share"] == pytest.approx(float(1 - kept / strengths.sum()), rel=1e-5)


def test_json_payload_follows_the_documented_contract():
    payload = to_json(extract(ResNet(), "layer1.1:2", depth=2, top_k=3))
    json.dumps(payload)
    assert payload["target"] == "layer1.1:2" and payload["method"] == "weights"
    ids = {n["id"] for n in payload["nodes"]}
    for n in payload["nodes"]:
        assert n["id"] == f"{n['layer']}:{n['channel']}"
        assert isinstance(n["depth"], int)
    assert [n for n in payload["nodes"] if n["depth"] == 0][0]["id"] == "layer1.1:2"
    for e in payload["edges"]:
        assert e["source"] in ids and e["target"] in ids
        assert isinstance(e["weight"], float)
        assert e["weight"] == pytest.approx(sum(map(sum, e["kernel"])), rel=1e-5, abs=1e-6)


def test_extraction_is_deterministic():
    a = to_json(extract(InceptionNet(), "inc2.b3:2", depth=2, top_k=4))
    b = to_json(extract(InceptionNet(), "inc2.b3:2", depth=2, top_k=4))
    assert a == b


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"target": "conv9:0"}, UnknownNeuronError, "did you mean"),
        ({"target": "conv3:99"}, UnknownNeuronError, "out of range"),
        ({"target": "conv3"}, UsageError, "LAYER:CHANNEL"),
        ({"target": "conv3:0", "depth": 0}, UsageError, "depth"),
        ({"target": "conv3:0", "method": "attribution"}, UsageError, "--data"),
    ],
)
def test_bad_requests_raise_one_clear_error(kwargs, error, words):
    with pytest.raises(error, match=words):
        extract(PlainCNN(), **kwargs)
