"""A circuit is a value: a networkx DiGraph of neurons that survives JSON, the catalog and a worker.

:class:`Circuit` is a plain ``nx.DiGraph`` (every networkx algorithm works on it) whose node, edge and
graph attributes are documented below, plus a lossless JSON form modelled on networkx's
``node_link_data``/``node_link_graph``: ``Circuit.from_json(c.to_json())`` carries every attribute that
emit, verify, render and diff read, so a stored circuit can be emitted or drawn again with no model.

Node ``"LAYER:CHANNEL"`` attributes:
    layer, channel, depth (0 for the target), label, kind (input/activation/gate/concat/output),
    nonlinearity (its name), activation (the nonlinearity with its exact parameters, or None),
    shape ([C, H, W] or [C]), bias (pre-activation bias, BatchNorm folded), pruned_share (share of the
    input |strength| not kept), inputs ({source layer: geometry}: where the kernels sit on the source
    map — origin, position, stride, clipped, expanded, and ``entry`` where the path starts with max
    pooling), and with data act_mean / act_max (over images, of each image's peak).
Edge ``source -> target`` attributes:
    weight (signed strength, or mean attribution), strength (the kernel's sum), magnitude (its L2 norm),
    sign, kernel ([dy][dx] in the source's own coordinates), method, expanded, and entry_kernel (the
    kernel taken at the pooled map) where the path starts with max pooling.
Graph attributes: model, target, method, depth, top_k, threshold, through, weights_sha256.

This module imports networkx only (no torch), so the catalog and workers can rebuild circuits cheaply.
"""

from __future__ import annotations

import copy

import networkx as nx

from circuits.errors import CircuitsError, UsageError

# Keys that the ``circuits extract --json`` contract (schema_version 1) names, in the order it prints them.
NODE_KEYS = ("layer", "channel", "depth", "label", "kind", "nonlinearity", "bias", "pruned_share")
EDGE_KEYS = ("weight", "strength", "sign", "kernel", "expanded")
PARAMETER_KEYS = ("depth", "top_k", "threshold", "through")


class Circuit(nx.DiGraph):
    """A neuron's circuit: neurons ``"LAYER:CHANNEL"``, edges source -> target (see the module docstring).

    Examples
    --------
    >>> c = Circuit(model="demo", target="b:0", method="weights", depth=1, top_k=1)
    >>> c.add_node("b:0", layer="b", channel=0, depth=0)
    >>> c.add_node("a:3", layer="a", channel=3, depth=1)
    >>> c.add_edge("a:3", "b:0", weight=-0.5, kernel=[[-0.5]])
    >>> Circuit.from_json(c.to_json()).edges["a:3", "b:0"]["weight"]
    -0.5
    >>> print(c.tree())
    b:0
    └─ −0.500  a:3
    """

    @property
    def target(self) -> str:
        return self.graph["target"]

    def __repr__(self) -> str:
        return (f"<Circuit of {self.graph.get('target')} in {self.graph.get('model')}: "
                f"{self.number_of_nodes()} neurons, {self.number_of_edges()} edges>")  # fmt: skip

    # -- order ---------------------------------------------------------------------------------------

    def sorted_nodes(self) -> list[tuple[str, dict]]:
        """Nodes by (depth, layer, channel): the one order JSON, diagrams and the catalog use."""
        return sorted(self.nodes(data=True), key=lambda item: (item[1]["depth"], item[1]["layer"], item[1]["channel"]))

    def sorted_edges(self) -> list[tuple[str, str, dict]]:
        """Edges by target (nearest the target first), then strongest |weight| first, then source."""
        return sorted(self.edges(data=True), key=lambda e: (self.nodes[e[1]]["depth"], e[1], -abs(e[2]["weight"] or 0.0), e[0]))

    # -- JSON ----------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The lossless JSON object (``circuits extract --json`` without its envelope).

        The keys the extract contract documents come first, with the same meaning; every other attribute
        follows in each node and edge, and ``graph`` holds the graph attributes, so nothing is lost.
        """
        g = self.graph
        nodes = []
        for node, attrs in self.sorted_nodes():
            item = {"id": node, **{k: _plain(attrs.get(k)) for k in NODE_KEYS}}
            item.update({k: _plain(v) for k, v in sorted(attrs.items()) if k not in item})
            nodes.append(item)
        edges = []
        for source, target, attrs in self.sorted_edges():
            item = {"source": source, "target": target, **{k: _plain(attrs[k]) for k in EDGE_KEYS if k in attrs}}
            item.update({k: _plain(v) for k, v in sorted(attrs.items()) if k not in item})
            edges.append(item)
        return {
            "model": g.get("model"),
            "target": g["target"],
            "method": g.get("method"),
            "parameters": {k: g.get(k) for k in PARAMETER_KEYS},
            "graph": {k: _plain(v) for k, v in sorted(g.items())},
            "nodes": nodes,
            "edges": edges,
        }

    @classmethod
    def from_json(cls, payload: dict) -> Circuit:
        """Rebuild a circuit from :meth:`to_json`'s object (or ``circuits extract --json`` output, or a
        catalog's ``circuit``). A payload without ``graph`` (older output) rebuilds what it holds; emit then
        says which attribute is missing."""
        nodes, edges, graph = _checked(payload)
        circuit = cls(**copy.deepcopy(graph))
        for node in nodes:
            circuit.add_node(node["id"], **copy.deepcopy({k: v for k, v in node.items() if k != "id"}))
        for edge in edges:
            attrs = copy.deepcopy({k: v for k, v in edge.items() if k not in ("source", "target")})
            circuit.add_edge(edge["source"], edge["target"], **attrs)
        return circuit

    # -- views ---------------------------------------------------------------------------------------

    def tree(self) -> str:
        """The circuit as an indented tree, strongest inputs first, + / − for the sign."""
        from circuits.formatting import circuit_tree

        return circuit_tree(self.to_json())

    def _repr_svg_(self):
        """Jupyter shows the diagram when a Graphviz renderer is available, else the tree."""
        from circuits.render import circuit_svg

        try:
            return circuit_svg(self)
        except CircuitsError:  # no renderer here: a notebook falls back to _repr_html_
            return None

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(repr(self))}\n\n{html.escape(self.tree())}</pre>"


def as_circuit(value) -> Circuit:
    """A :class:`Circuit` from a Circuit, a plain DiGraph with circuit attributes, or its JSON object."""
    if isinstance(value, Circuit):
        return value
    if isinstance(value, nx.DiGraph):
        circuit = Circuit(**value.graph)
        circuit.add_nodes_from(value.nodes(data=True))
        circuit.add_edges_from(value.edges(data=True))
        return circuit
    return Circuit.from_json(value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Node attributes that emit, verify and the catalog read, and what each must be when present (not None).
NODE_TYPES = {
    "shape": lambda v: isinstance(v, (list, tuple)) and len(v) >= 1 and all(isinstance(d, int) and d > 0 for d in v),
    "bias": lambda v: v is None or _number(v),
    "inputs": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(g, dict) for k, g in v.items()),
    "activation": lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("name"), str)),
    "label": lambda v: v is None or isinstance(v, str),
    "kind": lambda v: isinstance(v, str),
    "layer": lambda v: isinstance(v, str),
}


def _checked(payload) -> tuple[list[dict], list[dict], dict]:
    """The payload's nodes, edges and graph attributes, each checked, or one UsageError naming what is wrong."""

    def refuse(what):
        raise UsageError(f"not a circuit: {what} (pass the JSON object printed by `circuits extract --json`)")

    if not isinstance(payload, dict) or not {"target", "nodes", "edges"} <= payload.keys():
        refuse("it needs 'target', 'nodes' and 'edges'")
    if not isinstance(payload["nodes"], list) or not isinstance(payload["edges"], list):
        refuse("'nodes' and 'edges' must be lists")
    graph = payload.get("graph")
    if graph is not None and not isinstance(graph, dict):
        refuse("'graph' must be an object naming the 'target'")
    graph = graph or {"model": payload.get("model"), "target": payload["target"],
                                     "method": payload.get("method"), **(payload.get("parameters") or {})}
    if not isinstance(graph, dict) or not isinstance(graph.get("target"), str):
        refuse("'graph' must be an object naming the 'target'")
    wrong = [key for key in ("model", "method", "weights_sha256") if not isinstance(graph.get(key), (str, type(None)))]
    if wrong:
        refuse(f"the graph's '{wrong[0]}' must be a string")
    nodes, ids = [], set()
    for node in payload["nodes"]:
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or ":" not in node["id"]:
            refuse(f"every node needs an 'id' LAYER:CHANNEL, got {node!r:.80}")
        layer, _, channel = node["id"].rpartition(":")
        node = {"layer": layer, **({"channel": int(channel)} if channel.isdigit() else {}), **node}
        if not isinstance(node.get("channel"), int) or not isinstance(node.get("depth"), int):
            refuse(f"node {node['id']} needs an integer 'channel' and 'depth'")
        wrong = [key for key, ok in NODE_TYPES.items() if node.get(key) is not None and not ok(node[key])]
        if wrong:
            refuse(f"node {node['id']} has a malformed '{wrong[0]}'")
        ids.add(node["id"])
        nodes.append(node)
    edges = []
    for edge in payload["edges"]:
        if not isinstance(edge, dict) or not all(isinstance(edge.get(end), str) and edge[end] in ids
                                                 for end in ("source", "target")):
            refuse(f"every edge needs a 'source' and 'target' among the nodes, got {edge!r:.80}")
        if isinstance(edge.get("weight"), bool) or not isinstance(edge.get("weight"), (int, float)):
            refuse(f"edge {edge['source']} -> {edge['target']} has a weight that is not a number")
        edges.append(edge)
    return nodes, edges, graph


def _plain(value):
    """JSON-ready copies: tuples become lists (as JSON would make them), numbers stay exact."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
