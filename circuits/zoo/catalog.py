"""The repository's shared catalog (``catalog.db``): every zoo model's automatic labels, its unions over cases, the circuit of
each union neuron, and that circuit reverse-compiled with its measured faithfulness; for the wiring-sparse
plain CNN, every ``conv3`` neuron's top-8 circuit reverse-compiled (the readable reverse compilation).

Rebuilt by ``circuits zoo catalog -o catalog.db`` (deterministic: same weights and data, same rows).
"""

from __future__ import annotations

DEFAULT_DATA = "toyworld:256:12345"  # held out: the zoo trains on other seeds
TOP_K = 8
COMPILED_LAYERS = {"plain-cnn-sparse": "conv3"}  # family -> layer whose every neuron is reverse-compiled


def build_catalog(path, names: list[str] | None = None, data_spec: str = DEFAULT_DATA, top_k: int = TOP_K,
                  progress=None, device=None) -> list[dict]:  # fmt: skip
    """Record each zoo model (seeded names; aliases skipped) with its union motifs and emitted circuits.

    Returns one summary row per model: name, motifs found, modules written and their median R².
    ``device`` is where the models run on the probe data (rows are identical on any device, up to rounding).
    """
    from circuits import zoo
    from circuits.catalog import Catalog
    from circuits.data import load_data
    from circuits.graph import build_graph
    from circuits.models import load
    from circuits.motifs.context import Context
    from circuits.motifs.union import unions

    summary = []
    for name in names or [n for n in zoo.names() if n not in zoo.RECIPES]:
        loaded = load(f"zoo:{name}")
        graph = build_graph(loaded)
        data = load_data(data_spec, loaded.input_shape)
        motifs = [m.to_dict() for m in unions(Context(graph, data, device=device))]
        card = zoo.card(name)
        layer = COMPILED_LAYERS.get(card["family"])
        rows, acts = [], {}  # acts: {layer: activations on data}, shared by every circuit of the model
        with Catalog(path) as catalog, catalog.transaction():
            catalog.add_model(graph.weights_hash, f"zoo:{name}", architecture=card.get("architecture"),
                              spec=f"zoo:{name}", parameters=sum(p.numel() for p in loaded.module.parameters()),
                              layers=list(graph.layers))  # fmt: skip
            shipped = card.get("labels")
            if shipped and shipped["neurons"]:  # the card's automatic labels, with what backs each
                catalog.add_labels(graph.weights_hash, [_label_row(n, shipped) for n in shipped["neurons"]],
                                   model_name=f"zoo:{name}")  # fmt: skip
            for motif in motifs:
                circuit_id, r2 = _record_circuit(catalog, graph, name, motif["target"], data, data_spec, top_k,
                                                 [motif], acts, card.get("architecture"), device)  # fmt: skip
                catalog.add_motifs(graph.weights_hash, {"model": f"zoo:{name}", "motifs": [motif]},
                                   circuit_id=circuit_id)  # fmt: skip
                rows.append(r2)
            if layer:
                done = {m["target"] for m in motifs}  # union neurons are recorded above, with their role
                for channel in range(graph.layers[layer].channels):
                    if f"{layer}:{channel}" in done:
                        continue
                    rows.append(_record_circuit(catalog, graph, name, f"{layer}:{channel}", data, data_spec, top_k,
                                                motifs, acts, card.get("architecture"), device)[1])  # fmt: skip
        live = sorted(r for r in rows if r is not None)
        summary.append({"model": name, "unions": len(motifs), "modules": len(rows),
                        "median_r2": live[len(live) // 2] if live else None})  # fmt: skip
        if progress:
            progress()
    return summary


def _label_row(neuron: dict, shipped: dict) -> dict:
    """A card's label as ``Catalog.add_labels`` takes it (``circuits label`` wrote it at build time)."""
    from circuits.labels.label import METHOD

    evidence = {"method": METHOD, "auroc": neuron["score"], "bar": shipped["bar"], "data": shipped["data"],
                "cases": neuron.get("cases", {}), "measured": "at zoo build time (circuits/zoo/build.py)"}  # fmt: skip
    return {"neuron": neuron["neuron"], "label": neuron["label"], "score": neuron["score"],
            "concept": neuron["concept"], "evidence": evidence}


def _record_circuit(catalog, graph, name, target, data, data_spec, top_k, motifs, acts: dict,
                    architecture, device=None) -> tuple[str, float | None]:  # fmt: skip
    """Extract ``target``'s depth-1 top-k circuit, emit it self-contained, verify it on ``data``; record circuit
    and module. ``acts`` caches the model's activations on ``data`` by layer (filled here as needed).

    Returns the circuit's id and the target's R² (None for a neuron that never fires on the data).
    """
    from circuits.pipeline import compile_neuron, record

    compiled = compile_neuron(graph, target, data, depth=1, top_k=top_k, data_spec=data_spec, motifs=motifs,
                              inline_limit=10**9, activations=acts, device=device)  # fmt: skip
    ids = record(catalog, graph, compiled.circuit, compiled, architecture=architecture,
                 parameters={"depth": 1, "top_k": top_k, "method": "weights"})  # fmt: skip
    return ids["circuit"], compiled.r2
