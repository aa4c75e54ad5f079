"""Check the JSON objects that ``extract`` and ``motifs`` print, and give them content-hash ids.

A circuit's id is the sha256 of a canonical byte string: a header (model id, target, method, parameters,
nodes sorted by id, labels left out) followed by one line per edge, sorted by (source, target). Labels and
``created`` times are annotations, not content, so relabelling a neuron never changes a circuit's id, and
adding the same circuit twice is a no-op. The rest of a circuit (its graph, node and edge attributes:
geometry, nonlinearities, biases) follows from the same weights and parameters, so it is stored whole but
not hashed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from operator import itemgetter

from circuits.errors import CatalogError, UsageError

_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # one encoder: json.dumps(**kw) builds one per call


def canonical(obj) -> str:
    """Compact, key-sorted JSON: the one spelling that content hashes are taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class BadNeuronError(CatalogError, UsageError):
    """A neuron name that is not LAYER:CHANNEL: the input is at fault (exit 2)."""

    exit_code = 2


def split_neuron(name, what: str = "neuron") -> tuple[str, int]:
    """``'conv3:12'`` -> ``('conv3', 12)``; the layer may itself contain colons, the channel is last."""
    if not isinstance(name, str):
        raise CatalogError(f"{what} must be a 'LAYER:CHANNEL' string, got {name!r}.")
    layer, sep, channel = name.rpartition(":")
    if not sep or not layer or not channel.isdigit() or int(channel) >= 2**63:
        raise BadNeuronError(f"{what} {name!r} is not of the form LAYER:CHANNEL (for example 'conv3:12').")
    return layer, int(channel)


def _finite(value, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CatalogError(f"{what} must be a number, got {value!r}.")
    value = float(value)
    return value if math.isfinite(value) else None


def nodes_json(nodes, attributes: dict | None = None) -> str:
    """The ``circuits.nodes`` column: ``[{"depth": d, "id": "LAYER:CH", ...}, ...]`` in the order given (by
    id), each with the node's other attributes where ``attributes`` has them (labels live in ``neurons``)."""
    attributes = attributes or {}
    return canonical([{**attributes.get(node, {}), "depth": depth, "id": node} for node, _, _, depth in nodes])


# What the circuits and edges tables hold in columns of their own; everything else is kept as attributes.
_NODE_COLUMNS = frozenset({"id", "layer", "channel", "depth", "label"})
_EDGE_COLUMNS = frozenset({"source", "target", "weight", "kernel"})


@dataclass
class CircuitRows:
    """A circuit payload turned into the rows the catalog stores."""

    id: str
    target: str
    method: str
    parameters: str  # canonical JSON
    nodes: list[tuple[str, str, int, int]]  # (node, layer, channel, depth)
    labels: dict[str, str]  # node -> label proposed by the tool
    edges: list[tuple[str, str, float | None, str]]  # (source, target, weight, kernel JSON)
    node_attributes: dict[str, dict]  # node -> attributes beyond id, layer, channel, depth and label
    graph: str  # canonical JSON of the circuit's graph attributes ("{}" when the payload has none)
    edge_attributes: str  # canonical JSON [[source, target, {attributes}], ...] by (source, target)

    @property
    def nodes_json(self) -> str:
        return nodes_json(self.nodes, self.node_attributes)


def circuit_rows(model_id: str, payload) -> CircuitRows:
    """Validate a ``circuits extract --json`` object and compute its content hash."""
    if not isinstance(payload, dict):
        raise CatalogError(f"a circuit must be a JSON object as printed by `circuits extract --json`, got {type(payload).__name__}.")
    for key in ("target", "method", "nodes", "edges"):
        if key not in payload:
            raise CatalogError(f"the circuit has no {key!r} key; pass the object printed by `circuits extract --json`.")
    target, method = payload["target"], payload["method"]
    split_neuron(target, "the circuit's target")
    if not isinstance(method, str) or not method:
        raise CatalogError(f"the circuit's method must be a non-empty string, got {method!r}.")
    parameters, parameters_json = _json_object(payload, "parameters", "parameters")
    _, graph_json = _json_object(payload, "graph", "graph attributes")

    nodes, labels, seen, node_attributes = [], {}, set(), {}
    for node in payload["nodes"]:
        if not isinstance(node, dict) or "id" not in node:
            raise CatalogError(f"every node needs an 'id' of the form LAYER:CHANNEL, got {node!r}.")
        node_id = node["id"]
        layer, channel = split_neuron(node_id, "node id")
        if node_id in seen:
            raise CatalogError(f"node {node_id!r} appears twice in the circuit.")
        seen.add(node_id)
        depth = node.get("depth", 0)
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise CatalogError(f"node {node_id!r} has depth {depth!r}; it must be an integer.")
        nodes.append((node_id, layer, channel, depth))
        if node.get("label"):
            labels[node_id] = str(node["label"])
        extra = {k: v for k, v in node.items() if k not in _NODE_COLUMNS}
        if extra:
            node_attributes[node_id] = extra
    nodes.sort()
    try:
        canonical(node_attributes)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"the circuit's node attributes are not plain JSON ({exc}).") from None

    edges, edge_attributes = [], []
    for edge in payload["edges"]:
        try:
            source, tgt, kernel = edge["source"], edge["target"], edge.get("kernel", [])
        except (TypeError, KeyError):
            raise CatalogError(f"every edge needs 'source' and 'target', got {edge!r}.") from None
        if source not in seen or tgt not in seen:
            end = source if source not in seen else tgt
            split_neuron(end, "edge end")
            raise CatalogError(f"edge {source} -> {tgt} names {end!r}, which is not among the circuit's nodes.")
        try:
            kernel_json = _compact(kernel)
        except (TypeError, ValueError):
            raise CatalogError(f"edge {source} -> {tgt} has a kernel that is not a finite [[number]] list.") from None
        weight = edge.get("weight")
        if type(weight) is not float or weight - weight != 0:  # the fast path is a finite float
            weight = _finite(weight, f"edge {source} -> {tgt}'s weight")
        if edge.keys() - _EDGE_COLUMNS:  # attributes beyond source, target, weight and kernel
            edge_attributes.append([source, tgt, {k: v for k, v in edge.items() if k not in _EDGE_COLUMNS}])
        edges.append((source, tgt, weight, kernel_json))
    edges.sort(key=itemgetter(0, 1))
    edge_attributes.sort(key=itemgetter(0, 1))
    try:
        edge_attributes_json = canonical(edge_attributes)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"the circuit's edge attributes are not plain JSON ({exc}).") from None
    for previous, edge in zip(edges, edges[1:]):
        if previous[:2] == edge[:2]:
            raise CatalogError(f"edge {edge[0]} -> {edge[1]} appears twice in the circuit.")

    header = {"model": model_id, "target": target, "method": method, "parameters": parameters,
              "nodes": [[n, d] for n, _, _, d in nodes]}
    quoted = {node: _compact(node) for node in seen}
    lines = [canonical(header)]
    lines.extend(f"{quoted[s]},{quoted[t]},{w!r},{k}" for s, t, w, k in edges)
    digest = hashlib.sha256("\n".join(lines).encode())
    return CircuitRows(digest.hexdigest(), target, method, parameters_json, nodes, labels, edges, node_attributes,
                       graph_json, edge_attributes_json)


def _json_object(payload: dict, key: str, what: str) -> tuple[dict, str]:
    """``payload[key]`` (missing: ``{}``) checked to be a plain JSON object, and its canonical text."""
    value = payload.get(key) or {}
    if not isinstance(value, dict):
        raise CatalogError(f"the circuit's {what} must be a JSON object, got {value!r}.")
    try:
        return value, canonical(value)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"the circuit's {what} are not plain JSON ({exc}).") from None


@dataclass
class MotifRows:
    motif_id: str
    kind: str
    transform: str | None
    instance_id: str
    target: str | None
    members: str  # JSON
    score: float | None
    evidence: str  # canonical JSON


def motif_rows(model_id: str, payload, circuit_id: str | None) -> list[MotifRows]:
    """Validate a ``circuits motifs --json`` object; one row per motif instance, with content-hash ids."""
    if not isinstance(payload, dict) or not isinstance(payload.get("motifs"), list):
        raise CatalogError("motifs must be the JSON object printed by `circuits motifs --json` (with a 'motifs' list).")
    rows = []
    for motif in payload["motifs"]:
        if not isinstance(motif, dict) or not isinstance(motif.get("kind"), str) or not motif["kind"]:
            raise CatalogError(f"every motif needs a non-empty 'kind', got {motif!r}.")
        kind, transform = motif["kind"], motif.get("transform")
        if transform is not None and not isinstance(transform, str):
            raise CatalogError(f"a motif's transform must be a string or null, got {transform!r}.")
        target = motif.get("target")
        if target is not None:
            split_neuron(target, "the motif's target")
        members = motif.get("members") or []
        if not isinstance(members, list):
            raise CatalogError(f"a motif's members must be a list of LAYER:CHANNEL, got {members!r}.")
        for member in members:
            split_neuron(member, "motif member")
        evidence = motif.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise CatalogError(f"a motif's evidence must be a JSON object, got {evidence!r}.")
        score = _finite(motif.get("score"), "a motif's score")
        motif_id = kind if transform is None else f"{kind}/{transform}"
        try:
            evidence_json = canonical(evidence)
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"a motif's evidence is not plain JSON ({exc}).") from None
        content = {"motif": motif_id, "model": model_id, "circuit": circuit_id, "target": target,
                   "members": members, "score": score, "evidence": evidence}
        rows.append(MotifRows(motif_id, kind, transform, sha256(canonical(content)), target,
                              json.dumps(members), score, evidence_json))
    return rows
