"""Write a shard's results into the catalog: the one writer of a scan, touching only the catalog (no torch).

A shard lands whole or not at all: its model, every part's rows and the part's ``scan_shards`` row are one
transaction, so a writer killed half way leaves the shard undone, and the next run redoes it. Every row a
scan writes is keyed by its content (circuits, motif instances, pictures) or by its neuron (labels, and a
shard's labels are its own layer's), so the rows do not depend on the order shards complete in.
"""

from __future__ import annotations

import base64
import json

from circuits.errors import CatalogError


def record(catalog, shard, result: str) -> int:
    """Record ``result`` (the JSON text :func:`circuits.scanning.shard.run_shard` returned for ``shard``);
    returns the rows written (circuits, motif instances, labels and pictures)."""
    found = json.loads(result)
    keys = [p.key for p in shard.parts]
    if found.get("model") != shard.model.id or [p["key"] for p in found.get("parts", [])] != keys:
        raise CatalogError(f"a result for {shard.model.text} {shard.layer} does not match its shard; nothing of it "
                           "was recorded (a worker of another circuits version?)")  # fmt: skip
    model = shard.model
    total = 0
    with catalog.transaction():
        catalog.add_model(model.id, model.name, architecture=model.architecture, spec=model.spec,
                          parameters=model.parameters, layers=list(model.layers))  # fmt: skip
        for part, done in zip(shard.parts, found["parts"]):
            rows = WRITERS[part.what](catalog, model, done["rows"])
            total += rows
            catalog.add_scan_shard({"id": part.key, "model": model.id, "layer": shard.layer, "what": part.what,
                                    "arguments": part.arguments, "tool_version": _version(), "layer_kind": shard.kind,
                                    "channels": shard.channels, "rows": rows, "seconds": done["seconds"]})  # fmt: skip
    return total


def done_keys(catalog) -> set[str]:
    return {row["id"] for row in catalog.rows("SELECT id FROM scan_shards")}


def _version() -> str:
    from circuits import __version__

    return __version__


def _circuits(catalog, model, payloads) -> int:
    for payload in payloads:
        catalog.add_circuit(model.id, payload)
    return len(payloads)


def _motifs(catalog, model, motifs) -> int:
    if motifs:
        catalog.add_motifs(model.id, {"model": model.name, "motifs": motifs})
    return len(motifs)


def _labels(catalog, model, labels) -> int:
    if labels:
        catalog.add_labels(model.id, labels, model_name=model.name)
    return len(labels)


def _pictures(catalog, model, pictures) -> int:
    rows = [{**p, "png": base64.b64decode(p["png"])} for p in pictures]
    if rows:
        catalog.add_pictures(model.id, rows, model.name)
    return len(rows)


WRITERS = {"circuits": _circuits, "motifs": _motifs, "labels": _labels, "pictures": _pictures}
