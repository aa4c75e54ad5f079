"""Seeded fuzzing of the library twins: a notebook's bad argument is one ``circuits.errors`` sentence.

Each row of ``VERBS`` calls one public function (``circuits.load``, ``extract``, ``emit``, ...) with
arguments drawn by hypothesis: mostly valid values mixed with wrong types, unknown names, negative, huge and
NaN numbers, bad data specs, bad shapes, tensors of the wrong dtype or shape, empty tensors. For every call:

* it returns, or raises a :class:`circuits.errors.CircuitsError` (what the CLI turns into exit 1 or 2) whose
  message is one non-empty line; never a raw ``TypeError``/``KeyError``/``RuntimeError`` from torch or
  networkx;
* it ends within ``LIMIT_S`` seconds (a SIGALRM stops a hang and fails the case).

Add a verb with one ``Verb(id, call, {argument: (valid, bad)}, examples)`` row: ``call(world, **drawn)`` makes
the call from the drawn arguments and the shared ``world`` (a tiny planted model, its graph, probe data, a
circuit, an emitted module, a catalog). The run is deterministic (``derandomize=True``, no example database);
``CIRCUITS_FUZZ_EXAMPLES`` sets the examples per row for a longer hunt, as for ``tests/test_fuzz_cli.py``.
"""

from __future__ import annotations

import copy
import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fuzz_tally import tally
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import circuits
from circuits import featvis
from circuits.errors import CircuitsError

SCALE = int(os.environ.get("CIRCUITS_FUZZ_EXAMPLES", "0"))
LIMIT_S = 30
UNION = "planted:union"
SHAPE = (1, 24, 24)  # planted:union's input


@dataclass
class Verb:
    """``call(world, **drawn)`` calls one library function; ``args`` maps each argument to ``(valid, bad)``
    strategies, and each case draws all but (usually) one of them valid."""

    id: str
    call: Callable
    args: dict[str, st.SearchStrategy] = field(default_factory=dict)
    examples: int = 20


# --- strategies: values a careless notebook passes -------------------------------------------------------------

HUGE = st.integers(min_value=2**63, max_value=2**200)
NUMBER = st.one_of(st.integers(-(2**70), 2**70), HUGE, st.floats(), st.sampled_from([0, -1, 0.5, math.nan, math.inf]))
TENSOR_MAKERS = {
    "empty": lambda: torch.zeros(0, *SHAPE),
    "scalar": lambda: torch.tensor(1.0),
    "1d": lambda: torch.zeros(5),
    "wrong-channels": lambda: torch.zeros(2, 3, 24, 24),
    "wrong-size": lambda: torch.zeros(2, 1, 8, 8),
    "unbatched": lambda: torch.zeros(SHAPE),
    "int64": lambda: torch.ones(2, *SHAPE, dtype=torch.int64),
    "uint8": lambda: torch.full((2, *SHAPE), 255, dtype=torch.uint8),
    "bool": lambda: torch.ones(2, *SHAPE, dtype=torch.bool),
    "float16": lambda: torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1)).half(),
    "float64": lambda: torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(2)).double(),
    "complex64": lambda: torch.zeros(2, *SHAPE, dtype=torch.complex64),
    "nan": lambda: torch.full((2, *SHAPE), math.nan),
    "inf": lambda: torch.full((2, *SHAPE), -math.inf),
    "huge-values": lambda: torch.full((2, *SHAPE), 1e38),
    "requires-grad": lambda: torch.rand(2, *SHAPE, requires_grad=True),
    "non-contiguous": lambda: torch.rand(2, 24, 24, 1).permute(0, 3, 1, 2),
}
bad_tensor = st.sampled_from(sorted(TENSOR_MAKERS)).map(lambda k: TENSOR_MAKERS[k]())
JUNK = st.one_of(
    st.none(), st.booleans(), NUMBER, st.text(max_size=12), st.binary(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([(), [], {}, "", ":", object(), Path("/nonexistent"), Path(""), math.nan, -0.0, b"x",
                     ("union:0",), {"target": "union:0"}, torch.nn.Identity(), torch.float32]),
    bad_tensor,
)  # fmt: skip

UNION_LAYERS = {"input": 1, "lines": 8, "wedges": 4, "union": 4}
layer = st.one_of(st.sampled_from(sorted(UNION_LAYERS)), st.text(max_size=8), JUNK)
neuron = st.one_of(
    st.sampled_from(sorted(UNION_LAYERS)).flatmap(lambda name: st.integers(-2, UNION_LAYERS[name] + 1).map(
        lambda ch: f"{name}:{ch}")),
    st.sampled_from(["union", "union:", ":0", "union:0:0", "nope:0", "union:1e3", f"union:{2**70}", "union:-0"]),
    JUNK,
)  # fmt: skip
shape = st.one_of(st.none(), st.just(SHAPE), st.just("1,24,24"),
                  st.lists(st.integers(-2, 40), max_size=4).map(tuple),
                  st.sampled_from(["", "x", "1,2,nan", "0,0,0", (1.5, 24, 24), (True, 24, 24), (1, 10**6, 10**6),
                                   torch.Size([1, 24, 24]), "1,60000,60000"]), JUNK)  # fmt: skip
data_spec = st.one_of(
    st.sampled_from(["noise:2", "toyworld:2", "toyworld:curves:2:3", "noise:1:0"]),
    st.sampled_from(["noise:0", "noise:-1", "noise:x", "toyworld:nope:2", "noise:2:-1", f"noise:2:{2**64}",
                     "toyworld:2000000000", "", " ", "nope:3", "/nonexistent.npy", "/dev/null", "/"]),
    st.text(max_size=10), JUNK)  # fmt: skip
probe = st.one_of(st.sampled_from(["good"] * 3), bad_tensor, JUNK)  # "good": world.data
model = st.one_of(st.sampled_from(["graph"] * 4 + ["loaded", UNION]), st.sampled_from(["zoo:nope", "planted:"]), JUNK)
flag = st.one_of(st.booleans(), st.none(), st.integers(0, 1))


def pick(world, value):
    """Stand-ins drawn as names: 'graph', 'loaded', 'good' (data), 'circuit', 'emitted' are the world's own."""
    if isinstance(value, str) and value in world.own:
        return world.own[value]
    return value


def mutated(payload: dict, where: str, key: str, value) -> dict:
    """``payload`` with one key of its first node, first edge or top level replaced (or deleted when key starts
    with '-')."""
    payload = copy.deepcopy(payload)
    target = {"top": payload, "node": (payload["nodes"] or [{}])[0], "edge": (payload["edges"] or [{}])[0],
              "graph": payload["graph"]}[where]  # fmt: skip
    if key.startswith("-"):
        target.pop(key[1:], None)
    else:
        target[key] = value
    return payload


NODE_KEYS = ["id", "layer", "channel", "depth", "kind", "bias", "activation", "inputs", "shape", "label",
             "nonlinearity", "-inputs", "-id", "-activation", "-layer", "-channel"]  # fmt: skip
EDGE_KEYS = ["source", "target", "weight", "kernel", "-kernel", "-source", "-weight", "strength"]
TOP_KEYS = ["target", "nodes", "edges", "graph", "-graph", "-target", "-nodes", "method"]
GRAPH_KEYS = ["target", "weights_sha256", "model", "-target", "-weights_sha256"]
mutation = st.one_of(
    st.tuples(st.just("node"), st.sampled_from(NODE_KEYS), JUNK),
    st.tuples(st.just("edge"), st.sampled_from(EDGE_KEYS), JUNK),
    st.tuples(st.just("top"), st.sampled_from(TOP_KEYS), JUNK),
    st.tuples(st.just("graph"), st.sampled_from(GRAPH_KEYS), JUNK),
)
circuit = st.one_of(st.just("circuit"), mutation.map(lambda m: ("mutated", m)), JUNK)


def a_circuit(world, value):
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "mutated":
        return mutated(world.payload, *value[1])
    return pick(world, value)


# --- the table -------------------------------------------------------------------------------------------------

def one_bad(args: dict) -> st.SearchStrategy:
    """Every argument valid but (mostly) one: ``args`` maps a name to ``(valid, bad)`` strategies."""
    names = sorted(args)
    return st.sampled_from([None, *names, *names]).flatmap(lambda bad: st.fixed_dictionaries(
        {n: args[n][1] if n == bad else args[n][0] for n in names}))


MODEL = (st.sampled_from(["graph", "graph", "loaded", UNION]), model)
NEURON = (st.sampled_from(["union:0", "union:3", "wedges:1", "lines:7"]), neuron)
LAYER = (st.sampled_from(["wedges", "union", "lines"]), layer)
DATA = (st.just("good"), probe)
CIRCUIT = (st.just("circuit"), circuit)
TMP_FILES = st.sampled_from(["{tmp}/random.pt", "{tmp}/missing.pt", "{tmp}", "", "{tmp}/missing/x", "/dev/null"])

VERBS = [
    Verb("load", lambda w, spec, weights, input_shape: circuits.load(pick(w, spec), weights, input_shape),
         {"spec": (st.sampled_from([UNION, "loaded"]), model),
          "weights": (st.sampled_from([None, "{tmp}/union.pt"]), st.one_of(TMP_FILES, JUNK)),
          "input_shape": (st.sampled_from([None, SHAPE, "1,24,24"]), shape)}, 50),
    Verb("layers", lambda w, model, input_shape: circuits.layers(pick(w, model), input_shape),
         {"model": MODEL, "input_shape": (st.sampled_from([None, SHAPE]), shape)}, 40),
    Verb("load_data", lambda w, spec, input_shape, default_n: circuits.load_data(spec, input_shape, default_n),
         {"spec": (st.sampled_from(["noise:2", "toyworld:2", "toyworld:curves:2:3"]), data_spec),
          "input_shape": (st.sampled_from([SHAPE, None]), shape),
          "default_n": (st.integers(1, 4), st.one_of(st.integers(-3, 0), JUNK))}, 50),
    Verb("weights", lambda w, model, source, target, expanded, at_entry: circuits.weights(
        pick(w, model), source, target, expanded=expanded, at_entry=at_entry, use_cache=False),
         {"model": MODEL, "source": (st.sampled_from([None, "wedges", ["wedges"], "lines"]),
                                     st.one_of(layer, st.lists(layer, max_size=3))),
          "target": (st.just("union"), layer), "expanded": (st.booleans(), flag), "at_entry": (st.booleans(), flag)},
         60),
    Verb("attribution", lambda w, model, source, target, data, batch_size, route, direct: circuits.attribution(
        pick(w, model), source, target, pick(w, data), batch_size=batch_size, route=route, direct=direct),
         {"model": MODEL, "source": (st.just("wedges"), layer), "target": (st.just("union"), layer), "data": DATA,
          "batch_size": (st.integers(1, 64), st.one_of(st.integers(-2, 0), JUNK)),
          "route": (st.sampled_from(["auto", "kernel", "batched"]), JUNK), "direct": (st.booleans(), flag)}, 60),
    Verb("extract", lambda w, model, target, depth, top_k, method, data, threshold, through: circuits.extract(
        pick(w, model), target, depth, top_k, method, pick(w, data), threshold, through),
         {"model": MODEL, "target": NEURON, "depth": (st.integers(1, 3), st.one_of(NUMBER, JUNK)),
          "top_k": (st.integers(1, 4), st.one_of(NUMBER, JUNK)),
          "method": (st.sampled_from(["weights", "attribution"]), JUNK), "data": DATA,
          "threshold": (st.sampled_from([None, 0.0, 0.5, math.inf]), st.one_of(NUMBER, JUNK)),
          "through": (st.sampled_from([None, "lines"]), layer)}, 80),
    Verb("circuit-from-json", lambda w, payload: circuits.Circuit.from_json(a_circuit(w, payload)),
         {"payload": (st.just("circuit").map(lambda _: ("mutated", ("top", "method", "weights"))), circuit)}, 40),
    Verb("emit", lambda w, circuit, motifs, inline_limit: circuits.emit(a_circuit(w, circuit), motifs, inline_limit),
         {"circuit": CIRCUIT, "motifs": (st.sampled_from([None, "motifs"]), st.one_of(JUNK, st.lists(JUNK, max_size=2))),
          "inline_limit": (st.integers(0, 30), st.one_of(st.integers(-2, -1), JUNK))}, 60),
    Verb("verify", lambda w, module, model, data: circuits.verify(pick(w, module), pick(w, model), pick(w, data)),
         {"module": (st.just("emitted"), st.one_of(TMP_FILES, JUNK)), "model": MODEL, "data": DATA}, 30),
    Verb("compile_circuit", lambda w, circuit, model, data: circuits.compile_circuit(
        a_circuit(w, circuit), pick(w, model), pick(w, data)),
         {"circuit": CIRCUIT, "model": MODEL, "data": DATA}, 30),
    Verb("compile_neuron", lambda w, model, target, data, depth, top_k: circuits.compile_neuron(
        pick(w, model), target, pick(w, data), depth=depth, top_k=top_k),
         {"model": MODEL, "target": NEURON, "data": DATA, "depth": (st.just(1), st.one_of(NUMBER, JUNK)),
          "top_k": (st.integers(1, 3), st.one_of(NUMBER, JUNK))}, 40),
    Verb("record", lambda w, catalog, model, circuit: circuits.record(pick(w, catalog), pick(w, model),
                                                                      a_circuit(w, circuit)),
         {"catalog": (st.just("catalog"), JUNK), "model": MODEL, "circuit": CIRCUIT}, 30),
    Verb("find_motifs", lambda w, model, kind, layer, data, network_top_k, options: circuits.find_motifs(
        pick(w, model), kind, layer, pick(w, data), network_top_k=network_top_k, **options),
         {"model": MODEL, "kind": (st.sampled_from(["union", "equivariance", "inhibition", "network", "all"]), JUNK),
          "layer": (st.sampled_from([None, "union", "wedges"]), layer), "data": (st.sampled_from([None, "good"]), probe),
          "network_top_k": (st.integers(1, 4), st.one_of(st.integers(-1, 0), JUNK)),
          "options": (st.just({}), st.dictionaries(st.sampled_from(["threshold", "top", "top_k", "alpha", "margin", "seed", "layered", "n_random", "nope"]),
                                                   st.one_of(NUMBER, JUNK), min_size=1, max_size=2))}, 40),
    Verb("visualise", lambda w, model, layer, channels, steps, copies, seed, batch_size: featvis.visualise(
        pick(w, model), layer, channels, steps=steps, copies=copies, seed=seed, batch_size=batch_size),
         {"model": MODEL, "layer": LAYER, "channels": (st.sampled_from([None, [0], [1, 0]]),
                                                       st.one_of(JUNK, st.lists(st.one_of(NUMBER, JUNK), max_size=2))),
          "steps": (st.integers(1, 2), st.one_of(NUMBER, JUNK)), "copies": (st.integers(1, 2), st.one_of(NUMBER, JUNK)),
          "seed": (st.integers(0, 9), st.one_of(NUMBER, JUNK)),
          "batch_size": (st.integers(1, 8), st.one_of(NUMBER, JUNK))}, 40),
    Verb("dataset_examples", lambda w, model, layer, data, k, channels, bottom: featvis.dataset_examples(
        pick(w, model), layer, pick(w, data), k, channels, bottom=bottom),
         {"model": MODEL, "layer": LAYER, "data": DATA, "k": (st.integers(1, 2), st.one_of(NUMBER, JUNK)),
          "channels": (st.sampled_from([None, [0]]), st.one_of(JUNK, st.lists(st.one_of(NUMBER, JUNK), max_size=2))),
          "bottom": (st.booleans(), flag)}, 40),
    Verb("circuit_agreement", lambda w, model, data, k: featvis.circuit_agreement(pick(w, model), w.pictures,
                                                                                  pick(w, data), k=k),
         {"model": MODEL, "data": DATA, "k": (st.integers(1, 2), st.one_of(NUMBER, JUNK))}, 30),
    Verb("catalog", lambda w, path, create, readonly: circuits.Catalog(pick(w, path), create, readonly).close(),
         {"path": (st.sampled_from(["{tmp}/new.db", "catalog_path"]),
                   st.one_of(st.sampled_from(["{tmp}/random.pt", "{tmp}", "{tmp}/missing/x.db", "{tmp}/foreign.db",
                                              "/dev/null", ""]), JUNK)),
          "create": (st.booleans(), flag), "readonly": (st.booleans(), flag)}, 40),
]


# --- the world and the check -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import sqlite3

    tmp = tmp_path_factory.mktemp("fuzz-library")
    rng = __import__("random").Random(19)
    (tmp / "random.pt").write_bytes(bytes(rng.randrange(256) for _ in range(512)))
    foreign = sqlite3.connect(tmp / "foreign.db")
    foreign.execute("create table t (x)")
    foreign.commit()
    foreign.close()
    loaded = circuits.load(UNION)
    torch.save(loaded.module.state_dict(), tmp / "union.pt")
    graph = circuits.layers(loaded)
    data = circuits.load_data("noise:3", SHAPE)
    found = circuits.extract(graph, "union:0", depth=2, top_k=2)
    catalog = circuits.Catalog(tmp / "catalog.db")
    own = {"graph": graph, "loaded": loaded, "good": data, "circuit": found, "emitted": circuits.emit(found),
           "motifs": [m.to_dict() for m in circuits.find_motifs(graph, kind="union")], "catalog": catalog,
           "catalog_path": str(tmp / "catalog.db")}  # fmt: skip
    pictures = featvis.visualise(graph, "wedges", steps=2)
    yield SimpleNamespace(tmp=tmp, own=own, payload=found.to_json(), pictures=pictures)
    catalog.close()


def filled(world, value):
    """``{tmp}`` inside a drawn string is the world's scratch folder."""
    return value.replace("{tmp}", str(world.tmp)) if isinstance(value, str) else value


def _alarm(signum, frame):
    raise TimeoutError(f"a library call ran over {LIMIT_S} s")


def check(verb: Verb, world, drawn: dict) -> None:
    drawn = {k: filled(world, v) for k, v in drawn.items()}
    context = f"{verb.id}({', '.join(f'{k}={v!r:.80}' for k, v in drawn.items())})"
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        verb.call(world, **drawn)
    except CircuitsError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"{context}\n{type(exc).__name__}: {message!r}"
        tally.refused()
    except Exception as exc:  # the contract broken: a raw error from torch, networkx or our own code
        tally.internal(type(exc).__name__)
        pytest.fail(f"{context}\nraised {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    tally.case("library")


@pytest.mark.parametrize("verb", VERBS, ids=[v.id for v in VERBS])
def test_library_fuzz(verb, world, monkeypatch):
    monkeypatch.chdir(world.tmp)  # a drawn relative path (Catalog("0")) lands in the scratch folder
    @settings(max_examples=SCALE or verb.examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(one_bad(verb.args))
    def run(drawn):
        check(verb, world, drawn)

    run()


def test_every_public_verb_is_in_the_table():
    """Every library twin of a CLI command is fuzzed, and the default run is at least 300 calls."""
    fuzzed = {v.id.replace("-", "_") for v in VERBS} | {"Circuit", "Catalog"}
    public = {"load", "layers", "load_data", "weights", "attribution", "extract", "Circuit", "emit", "verify",
              "compile_circuit", "compile_neuron", "record", "find_motifs", "Catalog"}  # fmt: skip
    assert public <= fuzzed | {"circuit_from_json"}, public - fuzzed
    assert sum(v.examples for v in VERBS) >= 300
