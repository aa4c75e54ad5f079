"""Notebook views: results show themselves in Jupyter with the numbers the library computes."""

import re

import circuits
from circuits.formatting import circuit_tree, layers_table


def test_weights_html_lists_the_strongest_edge_first():
    graph = circuits.layers(circuits.load("zoo:plain-cnn"))
    weights = circuits.weights(graph, "conv2", "conv3")
    strength = weights.tensor.sum((-1, -2))  # independent: the kernel sums, [target, source]
    t, s = divmod(int(strength.abs().argmax()), strength.shape[1])
    first = re.search(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td[^>]*>([^<]+)</td>", weights._repr_html_())
    assert first.groups()[:2] == (f"conv2:{s}", f"conv3:{t}")
    assert float(first.group(3)) == round(float(strength[t, s]), 4)


def test_attribution_html_lists_the_largest_attribution_first():
    graph = circuits.layers(circuits.load("zoo:plain-cnn"))
    data = circuits.load_data("toyworld:8:2", graph.input_shape)
    result = circuits.attribution(graph, "conv2", "conv3", data)
    t, s = divmod(int(result.tensor.abs().argmax()), result.tensor.shape[1])
    assert f"<tr><td>conv2:{s}</td><td>conv3:{t}</td>" in result._repr_html_()


def test_circuit_and_graph_show_what_the_commands_print():
    graph = circuits.layers(circuits.load("planted:union"))
    circuit = circuits.extract(graph, "union:0", depth=2, top_k=2)
    assert circuit_tree(circuit.to_json()) in circuit._repr_html_().replace("&lt;", "<").replace("&gt;", ">")
    assert layers_table(graph).splitlines()[1] in graph._repr_html_()
    svg = circuit._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and all(f">{n}<" in svg for n in circuit.nodes)
