"""Extraction on trained zoo models: the documented JSON schema, and the union neurons' mirror pairs."""

import json
from pathlib import Path

import pytest

from circuits import zoo
from circuits.extraction import extract, to_json
from circuits.graph import build_graph
from circuits.provenance import envelope

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "extract.schema.json").read_text())
SEEDS = ["plain-cnn-s0", "plain-cnn-s1", "plain-cnn-s2"]


def unions(name):
    return zoo.card(name)["motifs"]["reflection_unions"]["neurons"]


@pytest.mark.parametrize("name", SEEDS)
def test_union_neurons_have_their_mirror_pair_among_their_top_inputs(name):
    graph = build_graph(f"zoo:{name}")
    found = unions(name)
    assert found, f"{name}: the zoo card lists no union over reflection"
    best = max(found, key=lambda u: u["invariance"])
    target = f"{best['layer']}:{best['channel']}"
    circuit = extract(graph, target, depth=1, top_k=8)  # ranked by |strength|, negative edges included
    top = {int(s.split(":")[1]) for s in circuit.predecessors(target)}
    assert set(best["pair"]) <= top, f"{target}: mirror pair {best['pair']} not in its top 8 inputs {sorted(top)}"
    for union in found:  # every union neuron: the pair is among its four strongest excitatory inputs
        target = f"{union['layer']}:{union['channel']}"
        full = extract(graph, target, depth=1, top_k=10_000)
        excitatory = sorted((e for e in full.in_edges(target, data=True) if e[2]["weight"] > 0),
                            key=lambda e: -e[2]["weight"])[:4]  # fmt: skip
        assert set(best["pair"] if union is best else union["pair"]) <= {int(e[0].split(":")[1]) for e in excitatory}


@pytest.mark.parametrize("name, target", [("plain-cnn", "conv3:7"), ("inception-cnn", "inc2:5"),
                                          ("resnet-cnn", "block2:3"), ("mlp", "fc2:4")])  # fmt: skip
def test_extract_json_on_zoo_models_validates_against_the_schema(name, target):
    jsonschema = pytest.importorskip("jsonschema")
    graph = build_graph(f"zoo:{name}")
    payload = to_json(extract(graph, target, depth=2, top_k=4))
    jsonschema.validate(envelope(payload, {"model": name}, graph.weights_hash), SCHEMA)
