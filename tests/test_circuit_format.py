"""A circuit is a value that survives storage: JSON and catalog round trips lose nothing emit or render read.

The reference each test compares against is the circuit as extracted from the model: the module emitted
from it and its diagram's DOT source. A round trip passes only when both come back byte for byte.
"""

import json

import jsonschema
import nets
import numpy as np
import pytest
from test_cli import SCHEMA

import circuits
from circuits.catalog import Catalog
from circuits.circuit import Circuit
from circuits.compile import emit
from circuits.errors import UsageError
from circuits.extraction import extract
from circuits.pipeline import compile_circuit, emit_stored, record, stored
from circuits.provenance import envelope
from circuits.render import circuit_dot

TWINS = ["PlainCNN", "InceptionNet", "ResNet", "ONetLike", "MLP", "MobileNetLike", "DenseNetLike", "EfficientNetLike"]
PLANTED = [("planted:union", "union:0"), ("planted:bn-union", "union:0"), ("planted:inception-union", "union:0"),
           ("planted:curves", "curves:3"), ("planted:wedges", "wedges:1"), ("planted:lines", "lines:2")]
ZOO = [("zoo:plain-cnn", "conv3:7"), ("zoo:inception-cnn", "fc:1"), ("zoo:resnet-cnn", "fc:0"), ("zoo:mlp", "fc2:5"),
       ("zoo:curve-cnn", "conv3:4")]


def _twin_case(name):
    graph = circuits.layers(getattr(nets, name)())
    last = [layer for layer in graph.layers.values() if layer.preact is not None][-1]
    return graph, f"{last.name}:0"


def _cases():
    for spec, target in PLANTED + ZOO:
        yield pytest.param(spec, target, id=f"{spec}/{target}")
    for name in TWINS:
        yield pytest.param(name, None, id=f"twin:{name}")


def _circuit(spec, target):
    graph, target = _twin_case(spec) if target is None else (circuits.layers(circuits.load(spec)), target)
    return graph, extract(graph, target, depth=2, top_k=3)


def _same_module(a, b):
    assert a.code == b.code
    assert a.npz_name == b.npz_name and sorted(a.constants) == sorted(b.constants)
    for key in a.constants:
        np.testing.assert_array_equal(a.constants[key], b.constants[key])


@pytest.mark.parametrize(("spec", "target"), list(_cases()))
def test_json_round_trip_emits_and_draws_the_same_bytes(spec, target, tmp_path):
    _, circuit = _circuit(spec, target)
    text = json.dumps(circuit.to_json())  # through real JSON text, as a file or a worker would carry it
    back = Circuit.from_json(json.loads(text))
    _same_module(emit(back), emit(circuit))
    assert circuit_dot(back, tmp_path).source == circuit_dot(circuit, tmp_path).source
    assert back.to_json() == circuit.to_json()
    assert nx_attributes(back) == nx_attributes(circuit)


def nx_attributes(circuit):
    """Every node, edge and graph attribute, tuples read as lists (as JSON has them)."""
    return json.loads(json.dumps({"graph": circuit.graph, "nodes": dict(circuit.nodes(data=True)),
                                  "edges": {f"{s}->{t}": a for s, t, a in circuit.edges(data=True)}}))


@pytest.mark.parametrize(("spec", "target"), [("planted:union", "union:0"), ("zoo:plain-cnn", "conv3:7"),
                                              ("ResNet", None), ("MobileNetLike", None)])
def test_catalog_round_trip_emits_and_draws_the_same_bytes(spec, target, tmp_path):
    graph, circuit = _circuit(spec, target)
    with Catalog(tmp_path / "cat.db") as cat:
        ids = record(cat, graph, circuit)
    with Catalog(tmp_path / "cat.db") as cat:  # a fresh reader: nothing but the file
        back = stored(cat, ids["circuit"])
    _same_module(emit(back), emit(circuit))
    assert circuit_dot(back, tmp_path).source == circuit_dot(circuit, tmp_path).source


def test_a_stored_module_comes_back_with_its_measured_faithfulness(tmp_path):
    from circuits.data import load_data

    graph = circuits.layers(circuits.load("zoo:plain-cnn-sparse"))
    circuit = extract(graph, "conv3:5", depth=1, top_k=8)
    compiled = compile_circuit(circuit, graph, load_data("toyworld:64:3", graph.input_shape), data_spec="toyworld:64:3",
                               inline_limit=10**9)  # self-contained, as the zoo's catalog stores it (no .npz)
    with Catalog(tmp_path / "cat.db") as cat:
        ids = record(cat, graph, circuit, compiled)
        rebuilt, how = emit_stored(cat, ids["module"][:10])
    assert how == "measured"
    assert rebuilt.code == compiled.module.code
    assert "'data': 'toyworld:64:3'" in rebuilt.code


def test_the_lossless_payload_validates_against_the_documented_schema():
    schema = json.loads(SCHEMA.read_text())
    _, circuit = _circuit("zoo:plain-cnn", "conv3:7")
    payload = envelope(circuit.to_json(), {"neuron": "conv3:7"}, "0" * 64)
    jsonschema.validate(payload, schema)
    assert {"graph"} <= payload.keys()
    assert {"activation", "inputs", "shape"} <= payload["nodes"][0].keys()
    assert {"magnitude", "method"} <= payload["edges"][0].keys()


def test_an_old_payload_without_geometry_draws_but_emit_names_what_is_missing(tmp_path):
    _, circuit = _circuit("planted:union", "union:0")
    old = circuit.to_json()
    old.pop("graph")
    old["nodes"] = [{k: n[k] for k in ("id", "layer", "channel", "depth", "label")} for n in old["nodes"]]
    back = Circuit.from_json(old)
    assert circuit_dot(back).source == circuit_dot(circuit).source
    with pytest.raises(UsageError, match="re-extract"):
        emit(back)


NODE_A = {"id": "a:0", "depth": 0}
MALFORMED = [[], {"nodes": []}, {"target": "a:0", "nodes": [], "edges": [{"source": "b:0", "target": "a:0"}]},
             {"target": "a:0", "nodes": ["a:0"], "edges": []}, {"target": "a:0", "nodes": {"a:0": {}}, "edges": []},
             {"target": "a:0", "nodes": [{"depth": 0}], "edges": []}, {"target": "a:0", "nodes": [{"id": ["a"]}], "edges": []},
             {"target": "a:0", "nodes": [NODE_A], "edges": [{"target": "a:0"}]}, {"target": "a:0", "graph": [1], "nodes": [], "edges": []},
             {"target": "a:0", "graph": {"model": "m"}, "nodes": [NODE_A], "edges": []},
             {"target": "a:0", "nodes": [{"id": "a:0"}], "edges": []},
             {"target": "a:0", "nodes": [NODE_A, {"id": "b:1", "depth": 1}], "edges": [{"source": "b:1", "target": "a:0", "weight": "x"}]}]


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_payload_is_refused_in_one_line(bad):
    with pytest.raises(UsageError):
        Circuit.from_json(bad)


def test_to_json_is_a_copy_and_takes_numpy_values():
    c = Circuit(target="b:0", method="weights")
    c.add_node("b:0", layer="b", channel=0, depth=0, bias=np.float32(0.5))
    c.add_node("a:1", layer="a", channel=1, depth=1)
    c.add_edge("a:1", "b:0", weight=np.float64(-0.25), kernel=np.array([[-0.25]]), magnitude=np.float32(0.25))
    payload = json.loads(json.dumps(c.to_json()))  # numpy scalars and arrays serialise
    assert payload["edges"][0]["kernel"] == [[-0.25]] and payload["nodes"][0]["bias"] == 0.5
    c.to_json()["edges"][0]["kernel"][0][0] = 99.0
    assert c.edges["a:1", "b:0"]["kernel"][0][0] == -0.25  # the circuit did not change


def test_a_hand_built_circuit_keeps_every_edge_attribute_through_the_catalog(tmp_path):
    c = Circuit(model="hand", target="b:0", method="attribution")
    c.add_node("b:0", layer="b", channel=0, depth=0)
    c.add_node("a:1", layer="a", channel=1, depth=1)
    c.add_edge("a:1", "b:0", weight=-0.5, method="attribution")  # four keys, but no kernel
    with Catalog(tmp_path / "cat.db") as cat:
        cid = cat.add_circuit("ab" * 32, c.to_json())
        back = stored(cat, cid)
    assert back.edges["a:1", "b:0"]["method"] == "attribution"
    from circuits.render import render_circuit

    assert "a:1" in render_circuit(back, tmp_path / "hand.svg").read_text()  # an edge without a kernel draws
