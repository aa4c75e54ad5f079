"""What changed from model A to model B, ranked above the drift every neuron shows.

Fine-tuning moves every weight a little, so "which weights changed" ranks everything. A change that
matters stands out from its own layer: after matching (:mod:`circuits.compare.match`), each neuron of B
gets two numbers against its partner in A —

- **function**: ``1 - corr`` of their activations on the same images (0 for a neuron silent in both),
  scaled down for a neuron that barely varies in either model (below ``PRESENT`` x its layer's median
  spread): the correlation of a nearly dead neuron swings under any fine-tune, yet it carries almost
  nothing downstream (measured: a clean fine-tune gave such a neuron of facing-cnn-s0 a z of 34);
- **input weights**: the relative change of its direct input kernels, read through the matching of the
  layers it reads (a permuted copy has none);

each turned into a robust z-score within its layer (distance from the layer's median in units of
1.4826 x its median absolute deviation, with a floor, so a layer where nothing moved does not blow up a
rounding error). A neuron's ``score`` is the larger z; ``reasons`` say which and by how much. Edges are
scored alike: the change of each direct strength against the spread of its layer's changes. Motifs
(unions, equivariant families) are found in both models from weights and compared through the matching.

The baseline every result is held against (:func:`naive_ranking`): neurons ranked by the relative change
of their input weights at the same index, with no matching and no normalisation.
"""

from __future__ import annotations

import torch

from circuits.compare.match import aligned, flat, match
from circuits.errors import UsageError

FLOOR = {"function": 0.01, "weights": 0.01}  # smallest spread a z-score divides by (correlation, relative change)
NOTABLE = 3.0  # a reason is given for a z-score at least this
TOP_EDGES = 20
SILENT = 1e-8  # a neuron whose activations vary less than this on the data computes nothing there
PRESENT = 0.05  # a neuron varying less than this share of its layer's median spread (in both) carries little


def diff(model_a, model_b, data="toyworld:256", *, layers: list[str] | None = None, motifs: bool = True,
         device=None) -> dict:  # fmt: skip
    """Match the two models' neurons and rank what changed from A to B.

    Parameters
    ----------
    model_a, model_b : two models of one architecture (specs, modules, LoadedModels or NeuronGraphs).
    data : probe images both models see (a spec or an ``N x C x H x W`` tensor).
    layers : the layers to compare (default: every layer with weights into it that both have).
    motifs : also compare their unions and equivariant families (found from weights).

    Returns
    -------
    ``{"model_a", "model_b", "data", "layers" (those compared), "matches": [{"layer", "a", "b", "similarity"}], "neurons": [{"neuron",
    "match", "score", "function", "weights", "reasons"}] (highest score first), "edges": [...],
    "motifs": {"gained": [...], "lost": [...]}, "baseline": [{"neuron", "score"}]}``.
    """
    from circuits.data import load_data
    from circuits.graph import build_graph

    graph_a, graph_b = build_graph(model_a), build_graph(model_b)
    layers = _layers(graph_a, graph_b, layers)
    images = load_data(data, graph_a.input_shape) if isinstance(data, str) else data
    acts_a = graph_a.run(images, layers, device=device)
    acts_b = graph_b.run(images, layers, device=device)
    kernels_a, kernels_b = _kernels(graph_a, layers), _kernels(graph_b, layers)
    _check_same(layers, graph_a, graph_b, kernels_a, kernels_b)
    parts = {name: info.parts for name, info in graph_b.layers.items() if info.parts}
    matchings = match(acts_a, acts_b, layers, kernels_a, kernels_b, parts)
    neurons, edges = [], []
    for layer in layers:
        neurons += _neurons(layer, matchings, acts_a[layer], acts_b[layer], kernels_a[layer], kernels_b[layer])
        edges += _edges(layer, matchings, kernels_a[layer], kernels_b[layer], graph_b)
    neurons.sort(key=lambda n: (-n["score"], n["neuron"]))
    edges.sort(key=lambda e: (-e["score"], e["target"], e["source"]))
    return {
        "model_a": _name(model_a, graph_a), "model_b": _name(model_b, graph_b),
        "data": data if isinstance(data, str) else f"a tensor of {len(images)} images",
        "layers": layers,
        "matches": [{"layer": layer, "a": f"{layer}:{a}", "b": f"{layer}:{b}", "similarity": s}
                    for layer, m in matchings.items() for b, (a, s) in enumerate(zip(m.b_to_a, m.similarity))],
        "neurons": neurons,
        "edges": edges[:TOP_EDGES],
        "motifs": _motifs(graph_a, graph_b, matchings) if motifs else {"gained": [], "lost": []},
        "baseline": naive_ranking(kernels_a, kernels_b),
    }  # fmt: skip


def naive_ranking(kernels_a: dict, kernels_b: dict) -> list[dict]:
    """Every neuron by the relative change of its input weights at the same index (no matching)."""
    rows = []
    for layer, by_source in kernels_b.items():
        a, b = flat(kernels_a[layer]), flat(by_source)
        change = (b - a).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)
        rows += [{"neuron": f"{layer}:{c}", "score": float(v)} for c, v in enumerate(change)]
    return sorted(rows, key=lambda r: (-r["score"], r["neuron"]))


def _layers(graph_a, graph_b, layers) -> list[str]:
    if layers:
        for name in layers:  # unknown names fail here, with suggestions
            graph_a.layer(name)
            graph_b.layer(name)
        return list(layers)
    found = [name for name, info in graph_a.layers.items()
             if info.preact is not None and info.sources and name in graph_b.layers
             and graph_b.layers[name].preact is not None]  # fmt: skip
    if not found:
        raise UsageError("the two models share no layer with weights into it: diff compares models of one "
                         "architecture (`circuits layers MODEL` lists each one's layers)")  # fmt: skip
    return found


def _check_same(layers, graph_a, graph_b, kernels_a, kernels_b) -> None:
    """Refuse two models whose compared layers differ in shape or wiring: there is nothing to match."""
    for layer in layers:
        shape_a, shape_b = graph_a.layers[layer].shape, graph_b.layers[layer].shape
        wiring_a = [(s, tuple(k.shape)) for s, k in kernels_a[layer]]
        wiring_b = [(s, tuple(k.shape)) for s, k in kernels_b[layer]]
        if shape_a != shape_b or wiring_a != wiring_b:
            raise UsageError(f"layer '{layer}' differs between the models (shape {tuple(shape_a)} reading "
                             f"{[s for s, _ in wiring_a]} in A, {tuple(shape_b)} reading {[s for s, _ in wiring_b]} "
                             "in B): diff compares models of one architecture")  # fmt: skip


def _kernels(graph, layers) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """``{layer: [(source layer, direct kernels [C_target, C_source, ...])]}``."""
    from circuits import trace

    out = {}
    for layer in layers:
        sets = trace.weights(graph, target=layer).kernel_sets
        out[layer] = [(ks.source, ks.kernels.float()) for ks in sorted(sets, key=lambda k: k.source)]
    return out


def _neurons(layer, matchings, acts_a, acts_b, kernels_a, kernels_b) -> list[dict]:
    m = matchings[layer]
    a, b = flat(kernels_a), aligned(kernels_b, matchings)
    partner = torch.tensor(m.b_to_a)
    weights = ((b - a[partner]).norm(dim=1) / a[partner].norm(dim=1).clamp_min(1e-12)).tolist()
    spread_a = acts_a.transpose(0, 1).flatten(1).std(1)
    spread_b = acts_b.transpose(0, 1).flatten(1).std(1)
    typical = max(float(spread_a.median()), SILENT)
    function, silence = [], []
    for j, i in enumerate(m.b_to_a):
        silent_a, silent_b = float(spread_a[i]) < SILENT, float(spread_b[j]) < SILENT
        presence = min(1.0, max(float(spread_a[i]), float(spread_b[j])) / (PRESENT * typical))
        function.append(0.0 if silent_a and silent_b else (1.0 - m.similarity[j]) * presence)
        silence.append(" (silent in A)" if silent_a and not silent_b else " (silent in B)" if silent_b and not silent_a
                       else "")  # fmt: skip
    z_f, z_w = _robust_z(function, FLOOR["function"]), _robust_z(weights, FLOOR["weights"])
    med_f, med_w = _median(function), _median(weights)
    out = []
    for j, i in enumerate(m.b_to_a):
        reasons = []
        if z_f[j] >= NOTABLE:
            reasons.append(f"function: activation correlation {m.similarity[j]:.2f} with A's {layer}:{i}"
                           f"{silence[j]} (layer median {1 - med_f:.2f})")  # fmt: skip
        if z_w[j] >= NOTABLE:
            reasons.append(f"input weights: {weights[j]:.0%} relative change (layer median {med_w:.1%})")
        out.append({"neuron": f"{layer}:{j}", "match": f"{layer}:{i}", "score": max(z_f[j], z_w[j]),
                    "function": function[j], "weights": weights[j], "reasons": reasons})  # fmt: skip
    return out


def _edges(layer, matchings, kernels_a, kernels_b, graph_b) -> list[dict]:
    m = matchings[layer]
    rows = []
    for (source, ka), (_, kb) in zip(kernels_a, kernels_b):
        strength_a = ka.flatten(2).sum(-1)  # [C_t, C_s]
        strength_b = aligned([(source, kb)], matchings).reshape(kb.shape[0], kb.shape[1], -1).sum(-1)
        delta = strength_b - strength_a[torch.tensor(m.b_to_a)]
        floor = FLOOR["weights"] * float(strength_a.abs().median())  # 1% of a typical strength
        scale = _robust_scale(delta, max(floor, 1e-12))
        src = matchings.get(source)
        for j, s in torch.nonzero(delta.abs() / scale >= NOTABLE).tolist():
            s_b = src.a_to_b[s] if src is not None else s
            rows.append({"source": "{}:{}".format(*graph_b.resolve(source, s_b)), "target": f"{layer}:{j}",
                         "weight_a": float(strength_a[m.b_to_a[j], s]), "weight_b": float(strength_b[j, s]),
                         "score": float(delta[j, s].abs() / scale)})  # fmt: skip
    return rows


def _motifs(graph_a, graph_b, matchings) -> dict:
    """Unions and equivariant families (weights only) of A mapped into B's names, against B's own."""
    from circuits.motifs import find

    def key(motif, rename):
        return (motif.kind, motif.transform, rename(motif.target), frozenset(rename(x) for x in motif.members))

    def to_b(neuron):
        if neuron is None:
            return None
        layer, _, c = neuron.rpartition(":")
        m = matchings.get(layer)
        return f"{layer}:{m.a_to_b[int(c)]}" if m is not None else neuron

    found_a = [m for kind in ("union", "equivariance") for m in find(graph_a, kind=kind)]
    found_b = [m for kind in ("union", "equivariance") for m in find(graph_b, kind=kind)]
    keys_a = {key(m, to_b): m for m in found_a}
    keys_b = {key(m, lambda n: n): m for m in found_b}
    def shown(m):
        return {"kind": m.kind, "transform": m.transform, "target": m.target, "members": list(m.members),
                "score": m.score}  # fmt: skip

    return {"gained": [shown(keys_b[k]) for k in keys_b if k not in keys_a],
            "lost": [shown(keys_a[k]) for k in keys_a if k not in keys_b]}


def _robust_z(values: list[float], floor: float) -> list[float]:
    x = torch.tensor(values, dtype=torch.float64)
    return ((x - x.median()) / _robust_scale(x, floor)).tolist()


def _robust_scale(x: torch.Tensor, floor: float) -> float:
    """1.4826 x the median absolute deviation (the standard deviation, for normal data), at least ``floor``."""
    return max(1.4826 * float((x - x.median()).abs().median()), floor)


def _median(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).median())


def _name(model, graph) -> str:
    if isinstance(model, str):
        return model
    return getattr(model, "spec", None) or graph.spec or type(model).__name__
