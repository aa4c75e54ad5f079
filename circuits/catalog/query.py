"""Read the catalog: counts, listings, and one entry in full."""

from __future__ import annotations

import json
import re

from circuits.catalog import schema
from circuits.catalog.payload import canonical, split_neuron
from circuits.catalog.pictures import KINDS, kind_order
from circuits.catalog.store import decode
from circuits.errors import UsageError, close_matches_hint

LISTS = {
    "models": """SELECT id, name, architecture, spec, parameters,
                   (SELECT count(*) FROM circuits c WHERE c.model = models.id) AS circuits, created
                 FROM models ORDER BY name, id""",
    "circuits": """SELECT c.id, m.name AS model, c.target, c.method,
                     json_array_length(c.nodes) AS nodes,
                     (SELECT count(*) FROM edges e WHERE e.circuit = c.id) AS edges, c.created
                   FROM circuits c JOIN models m ON m.id = c.model ORDER BY m.name, c.target, c.id""",
    "neurons": """SELECT m.name AS model, n.layer || ':' || n.channel AS neuron, n.label, n.label_source, n.notes
                  FROM neurons n JOIN models m ON m.id = n.model
                  WHERE n.label IS NOT NULL OR n.notes IS NOT NULL ORDER BY m.name, n.layer, n.channel""",
    "motifs": """SELECT mo.id, mo.kind, mo.transform, count(i.id) AS instances, count(DISTINCT i.model) AS models,
                   mo.description
                 FROM motifs mo LEFT JOIN motif_instances i ON i.motif = mo.id GROUP BY mo.id ORDER BY mo.id""",
    "instances": """SELECT i.id, i.motif, m.name AS model, i.circuit, i.target, i.score, i.members
                    FROM motif_instances i JOIN models m ON m.id = i.model ORDER BY i.motif, m.name, i.id""",
    "modules": """SELECT md.id, md.circuit, c.target, m.name AS model, md.faithfulness, md.created
                  FROM modules md JOIN circuits c ON c.id = md.circuit JOIN models m ON m.id = c.model
                  ORDER BY m.name, c.target, md.id""",
    "families": """SELECT f.id, f.motif, f.name, count(fm.instance) AS instances, f.description
                   FROM motif_families f LEFT JOIN motif_family_members fm ON fm.family = f.id
                   GROUP BY f.id ORDER BY f.motif, f.name, f.id""",
}


def stats(store) -> dict:
    counts = {table: store.table(table).count for table in schema.TABLES}
    return {
        "path": store.path,
        "catalog_schema_version": store.value("SELECT max(version) FROM schema_version"),
        "counts": counts,
        "labelled_neurons": store.value("SELECT count(*) FROM neurons WHERE label IS NOT NULL"),
        # shown labels by who made them: a person, or an automatic labeller (with its evidence); the labels
        # other tools carry without evidence (extract's names from the model) count in neither
        "user_labelled_neurons": store.value("SELECT count(*) FROM neurons WHERE label IS NOT NULL AND label_source = 'user'"),
        "auto_labelled_neurons": store.value(
            "SELECT count(*) FROM neurons WHERE label IS NOT NULL AND label_evidence IS NOT NULL"),
    }


def list_entries(store, kind: str = "circuits") -> list[dict]:
    if kind not in LISTS:
        raise UsageError(f"unknown kind {kind!r}; choose one of {', '.join(LISTS)}{close_matches_hint(kind, LISTS)}")
    return [decode(row) for row in store.rows(LISTS[kind])]


def show(store, ref: str) -> dict:
    """One entry in full, found by id, unique id prefix, model name, motif id, or MODEL/LAYER:CHANNEL."""
    if not isinstance(ref, str) or not ref:
        raise UsageError("show needs an id.")
    if store.value("SELECT 1 FROM motifs WHERE id = ?", (ref,)):
        return _motif(store, ref)
    model, slash, neuron = ref.rpartition("/")
    if slash and re.fullmatch(r".+:\d+", neuron):
        return _neuron(store, store.model_id(model), neuron)
    matches = []
    for table, kind in (("circuits", "circuit"), ("models", "model"), ("motif_instances", "instance"),
                        ("modules", "module"), ("motif_families", "family")):
        if len(ref) >= 4 or store.value(f"SELECT 1 FROM {table} WHERE id = ?", (ref,)):
            for row in store.db.execute(f"SELECT id FROM {table} WHERE id LIKE ? || '%' LIMIT 3", (ref,)):
                matches.append((kind, row[0]))
    if not matches:
        matches = [("model", r[0]) for r in store.db.execute("SELECT id FROM models WHERE name = ?", (ref,))]
    if len(matches) > 1:
        listed = ", ".join(f"{k} {i[:12]}" for k, i in matches)
        raise UsageError(f"{ref!r} is ambiguous: it matches {listed}; give more characters.")
    if not matches:
        names = [r[0] for r in store.db.execute("SELECT name FROM models UNION SELECT id FROM motifs")]
        raise UsageError(f"nothing in {store.path} has id {ref!r}{close_matches_hint(ref, names)}")
    kind, full = matches[0]
    return {"circuit": circuit, "model": _model, "instance": _instance, "module": _module,
            "family": _family}[kind](store, full)


def stored_circuit(store, ref: str) -> dict:
    """The circuit that ``ref`` names (a circuit, or a module, by id or unique prefix), whole."""
    item = show(store, ref)
    if item["kind"] == "module":
        item = circuit(store, item["circuit"])
    if item["kind"] != "circuit":
        raise UsageError(f"{ref!r} is a {item['kind']}, not a circuit or module: pass a circuit or module id "
                         "(`circuits catalog list --kind circuits`)")  # fmt: skip
    return item


def circuit(store, circuit_id: str) -> dict:
    """A circuit as the ``extract --json`` object it came from, with the catalog's current labels."""
    row = decode(store.table("circuits").get(circuit_id))
    keys = [split_neuron(node["id"]) for node in row["nodes"]]
    labels = {(n["layer"], n["channel"]): n["label"] for n in store.table("neurons").rows_where(
        "model = ? AND (layer, channel) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
        [row["model"], json.dumps(keys)], select="layer, channel, label")}
    nodes = [{**node, "layer": layer, "channel": channel, "label": labels.get((layer, channel))}
             for node, (layer, channel) in zip(row["nodes"], keys)]  # fmt: skip
    attributes = {(s, t): a for s, t, a in row.pop("edge_attributes")}
    edges = [{**decode(e), **attributes.get((e["source"], e["target"]), {})} for e in store.rows(
        "SELECT source, target, weight, kernel FROM edges WHERE circuit = ? ORDER BY source, target", (circuit_id,))]
    return {
        "kind": "circuit", **row,
        "model_name": store.value("SELECT name FROM models WHERE id = ?", (row["model"],)),
        "nodes": nodes, "edges": edges,
        "motif_instances": [r[0] for r in store.db.execute(
            "SELECT id FROM motif_instances WHERE circuit = ? ORDER BY id", (circuit_id,))],
        "modules": [r[0] for r in store.db.execute("SELECT id FROM modules WHERE circuit = ? ORDER BY id", (circuit_id,))],
    }


def _model(store, model_id):
    row = decode(store.table("models").get(model_id))
    return {"kind": "model", **row,
            "layers": [r[0] for r in store.db.execute("SELECT name FROM layers WHERE model = ? ORDER BY name", (model_id,))],
            "circuits": store.value("SELECT count(*) FROM circuits WHERE model = ?", (model_id,)),
            "labelled_neurons": store.value(
                "SELECT count(*) FROM neurons WHERE model = ? AND label IS NOT NULL", (model_id,)),
            "motif_instances": store.value("SELECT count(*) FROM motif_instances WHERE model = ?", (model_id,))}


def _neuron(store, model_id, neuron):
    layer, _, channel = neuron.rpartition(":")
    rows = store.rows("SELECT * FROM neurons WHERE model = ? AND layer = ? AND channel = ?", (model_id, layer, int(channel)))
    if not rows:
        raise UsageError(f"the catalog has no neuron {neuron} for model {model_id[:12]}.")
    key = (model_id, layer, int(channel))
    return {"kind": "neuron", **decode(rows[0], ("label_evidence",)),
            "history": [decode(r, ("evidence",)) for r in store.rows(
                """SELECT label, source, created, evidence FROM label_history
                   WHERE model = ? AND layer = ? AND channel = ? ORDER BY created, label""", key)],
            # targets come from an index; membership reads the nodes of every circuit of the model
            "target_of": [r[0] for r in store.db.execute(
                "SELECT id FROM circuits WHERE model = ? AND target = ? ORDER BY id", (model_id, neuron))],
            "circuits": circuits_containing(store, model_id, neuron)}


def circuits_containing(store, model_id: str, neuron: str) -> list[str]:
    """Ids of the model's circuits with ``neuron`` among their nodes (as written, or as ``LAYER:CHANNEL``).

    ``instr`` on the JSON text skips most circuits before ``json_each`` parses the rest: a node's id appears
    in ``circuits.nodes`` exactly as ``canonical`` spells it.
    """
    layer, channel = split_neuron(neuron)
    spellings = sorted({neuron, f"{layer}:{channel}"})
    found = set()
    for spelling in spellings:
        found.update(r[0] for r in store.db.execute(
            """SELECT c.id FROM circuits c WHERE c.model = ? AND instr(c.nodes, ?) > 0
                 AND EXISTS (SELECT 1 FROM json_each(c.nodes) j WHERE json_extract(j.value, '$.id') = ?)""",
            (model_id, canonical(spelling), spelling)))
    return sorted(found)


def _motif(store, motif_id):
    row = store.table("motifs").get(motif_id)
    instances = [decode(r) for r in store.rows(
        """SELECT i.id, m.name AS model, i.circuit, i.target, i.score, i.members FROM motif_instances i
           JOIN models m ON m.id = i.model WHERE i.motif = ? ORDER BY m.name, i.id""", (motif_id,))]
    return {"kind": "motif", **row, "instances": instances}


def _instance(store, instance_id):
    return {"kind": "instance", **decode(store.table("motif_instances").get(instance_id))}


def _module(store, module_id):
    return {"kind": "module", **decode(store.table("modules").get(module_id))}


def _family(store, family_id):
    row = store.table("motif_families").get(family_id)
    members = [r[0] for r in store.db.execute(
        "SELECT instance FROM motif_family_members WHERE family = ? ORDER BY instance", (family_id,))]
    return {"kind": "family", **row, "instances": members}


def neuron_pictures(store, model_ref: str, neuron: str, kind: str | None = None) -> list[dict]:
    """A neuron's pictures (of one ``kind``, or all), each with its PNG bytes, by kind (optimised, diverse,
    negative, example), then rank, the newest first among pictures of one rank, then id. ``[]`` if it has none."""
    model_id = store.model_id(model_ref)
    if not isinstance(neuron, str):
        raise UsageError(f"neuron must be a 'LAYER:CHANNEL' string (for example 'conv3:12'), got {neuron!r}.")
    layer, channel = split_neuron(neuron)
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown picture kind {kind!r}; use one of {', '.join(KINDS)}, or None for all"
                         f"{close_matches_hint(kind, KINDS)}")  # fmt: skip
    rows = store.rows(
        f"""SELECT p.id, p.model, p.layer || ':' || p.channel AS neuron, p.kind, p.rank, p.image, i.png, i.width,
                   i.height, i.mode, p.method, p.activation, p.agreement, p.created
            FROM neuron_images p JOIN images i ON i.id = p.image
            WHERE p.model = ? AND p.layer = ? AND p.channel = ? AND (? IS NULL OR p.kind = ?)
            ORDER BY {kind_order("p.kind")}, p.rank, p.created DESC, p.id""",
        (model_id, layer, channel, kind, kind))
    return [decode(row, ("method",)) for row in rows]
