"""From one target neuron to its circuit: a pruned neuron-to-neuron subgraph, as a :class:`Circuit`
(a networkx DiGraph whose node, edge and graph attributes are documented in :mod:`circuits.circuit`).
"""

from __future__ import annotations

from circuits import arguments
from circuits.circuit import Circuit, as_circuit
from circuits.errors import UsageError
from circuits.graph import NeuronGraph, build_graph
from circuits.graph.nonlinearity import describe as describe_nonlinearity
from circuits.graph.paths import pooled_entry

METHODS = ("weights", "attribution")


def extract(
    model,
    target: str,
    depth: int = 2,
    top_k: int = 8,
    method: str = "weights",
    data=None,
    threshold: float | None = None,
    through: str | None = None,
    input_shape=None,
    progress=None,
    device=None,
) -> Circuit:
    """Walk back from ``target`` (``LAYER:CH``): the ``top_k`` strongest inputs of each neuron, ``depth``
    layers deep, following concat and residual paths. ``through=LAYER`` makes the first step jump straight
    to an earlier layer with expanded weights. ``threshold`` drops edges with |weight| below it.
    ``device`` is where the activations on ``data`` are computed (weights and attributions: on the CPU).
    """
    depth = arguments.integer(depth, "--depth", minimum=1)
    top_k = arguments.integer(top_k, "--top-k", minimum=1)
    if threshold is not None:
        threshold = arguments.number(threshold, "--threshold")
    if through is not None:
        arguments.text(through, "--through")
    if arguments.text(method, "method") not in METHODS:
        raise UsageError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    if method == "attribution" and data is None:
        raise UsageError("method 'attribution' needs probe images: pass --data (e.g. toyworld:256)")
    graph = build_graph(model, input_shape)
    layer, channel = graph.neuron(target)
    if through is not None and graph.layers[layer].preact is not None:
        if not _feeds(graph, graph.layer(through).name, layer):
            raise UsageError(f"--through {through}: layer '{through}' does not feed '{layer}'; pick a layer before it "
                             "(`circuits layers MODEL` shows what feeds what)")  # fmt: skip
    circuit = Circuit(
        model=graph.spec, target=f"{layer}:{channel}", method=method, depth=depth, top_k=top_k,
        threshold=threshold, through=through, weights_sha256=graph.weights_hash,
    )  # fmt: skip
    tracer = _Tracer(graph, method, data)
    _add_node(circuit, graph, f"{layer}:{channel}", 0)
    frontier = [f"{layer}:{channel}"]
    for step in range(1, depth + 1):
        if not frontier:
            break  # every branch reached the input: a larger --depth adds nothing
        next_frontier = []
        for node in frontier:
            t_layer, t_ch = node.rpartition(":")[0], int(node.rpartition(":")[2])
            if graph.layers[t_layer].preact is None:
                continue  # the input, or a gate: nothing to walk through
            jump = through if (step == 1 and through) else None
            edges, geometry, bias, total = tracer.inputs(t_layer, t_ch, jump)
            # an all-zero kernel is no connection at all, whatever top_k asks for
            live = [e for e in edges if e["magnitude"] > 0 or e["weight"] != 0]
            kept = [e for e in live if threshold is None or abs(e["weight"]) >= threshold][:top_k]
            circuit.nodes[node].update(bias=bias, inputs=geometry)
            kept_mass = sum(abs(e["weight"]) for e in kept)
            circuit.nodes[node]["pruned_share"] = 0.0 if total == 0 else max(0.0, 1 - kept_mass / total)
            for e in kept:
                if e["source"] not in circuit:
                    _add_node(circuit, graph, e["source"], step)
                    next_frontier.append(e["source"])
                circuit.add_edge(e["source"], node, **{k: v for k, v in e.items() if k != "source"})
            if progress:
                progress()
        frontier = next_frontier
    if data is not None:
        _activation_stats(circuit, graph, data, device)
    return circuit


def _feeds(graph: NeuronGraph, source: str, target: str) -> bool:
    """Whether layer ``source`` lies upstream of layer ``target`` (through any chain of ``sources``)."""
    seen, todo = set(), list(graph.layers[target].sources)
    while todo:
        name = todo.pop()
        if name == source:
            return True
        if name not in seen and name in graph.layers:
            seen.add(name)
            todo += graph.layers[name].sources
    return False


class _Tracer:
    """Computes (and remembers) the inputs of a whole layer at once, then serves one channel at a time."""

    def __init__(self, graph: NeuronGraph, method: str, data):
        self.graph, self.method, self.data = graph, method, data
        self.memo = {}

    def inputs(self, layer: str, channel: int, through: str | None):
        from circuits import trace

        key = (layer, through)
        if key not in self.memo:
            if through:
                weights = trace.weights(self.graph, through, layer, expanded=True)
            else:
                weights = trace.weights(self.graph, target=layer)
            attributions = None
            if self.method == "attribution":
                attributions = {s: trace.attribution(self.graph, s, layer, self.data, direct=not through)
                                for s in weights.sources}  # fmt: skip
            pooled = None
            if not through and any(pooled_entry(self.graph, s, layer) for s in weights.sources):
                pooled = {k.source: k for k in trace.weights(self.graph, target=layer, at_entry=True).kernel_sets}
            self.memo[key] = (weights, attributions, pooled)
        weights, attributions, pooled = self.memo[key]
        edges, geometry = [], {}
        for ks in weights.kernel_sets:
            geometry[ks.source] = {
                "origin": list(ks.origin), "position": None if ks.position is None else list(ks.position),
                "stride": None if ks.stride is None else list(ks.stride), "clipped": ks.clipped,
                "expanded": ks.expanded,
            }  # fmt: skip
            entry = pooled.get(ks.source) if pooled else None
            if entry is not None and entry.entry is not None:
                geometry[ks.source]["entry"] = {
                    "pool": entry.entry, "origin": list(entry.origin), "stride": None if entry.stride is None
                    else list(entry.stride), "position": None if entry.position is None else list(entry.position),
                }  # fmt: skip
            else:
                entry = None
            kernels = ks.kernels[channel]
            strengths = kernels.flatten(1).sum(-1)
            scores = attributions[ks.source].tensor[channel] if attributions else strengths
            for c in range(kernels.shape[0]):
                source = self.graph.resolve(ks.source, c)
                edges.append({
                    "source": f"{source[0]}:{source[1]}", "weight": float(scores[c]),
                    "strength": float(strengths[c]), "magnitude": float(kernels[c].norm()),
                    "sign": 1 if float(scores[c]) >= 0 else -1, "kernel": kernels[c].tolist(),
                    "method": self.method, "expanded": ks.expanded,
                    **({"entry_kernel": entry.kernels[channel][c].tolist()} if entry is not None else {}),
                })  # fmt: skip
        # |strength| ranks; ties (zero-sum kernels such as edge detectors) go to the larger kernel
        edges.sort(key=lambda e: (-abs(e["weight"]), -e["magnitude"], e["source"]))
        bias = None if weights.kernel_sets[0].bias is None else float(weights.kernel_sets[0].bias[channel])
        total = sum(abs(e["weight"]) for e in edges)
        return edges, geometry, bias, total


def _add_node(circuit: Circuit, graph: NeuronGraph, node: str, depth: int):
    layer, _, ch = node.rpartition(":")
    info = graph.layers[layer]
    circuit.add_node(
        node, layer=layer, channel=int(ch), depth=depth, label=graph.labels.get(node), kind=info.kind,
        nonlinearity=info.nonlinearity, activation=describe_nonlinearity(graph, layer, int(ch)),
        shape=list(info.shape), bias=None, pruned_share=None,  # set when the walk reaches its inputs
    )  # fmt: skip


def _activation_stats(circuit: Circuit, graph: NeuronGraph, data, device=None):
    layers = sorted({d["layer"] for _, d in circuit.nodes(data=True)})
    acts = graph.run(data, layers, device=device)
    for _, attrs in circuit.nodes(data=True):
        a = acts[attrs["layer"]][:, attrs["channel"]]
        peak = a.flatten(1).amax(1) if a.dim() > 1 else a
        attrs["act_mean"] = float(peak.mean())
        attrs["act_max"] = float(peak.max())


def to_json(circuit) -> dict:
    """The ``circuits extract --json`` payload (documented in the README): nodes, then edges, sorted, with
    every attribute kept (:meth:`Circuit.to_json`)."""
    return as_circuit(circuit).to_json()
