"""Merge a colleague's catalog into this one, deterministically.

Everything keyed by a content hash (circuits, edges, motif instances, modules, families, images and the
neurons' pictures) is simply unioned: equal ids mean equal content. Models keep this catalog's values and
fill in fields it lacks. A neuron's label is the winner by (user label over tool labels, newest, text) — the
rule ``Catalog.label`` and ``Catalog.add_labels`` apply when labels arrive one after another — and carries the
winner's evidence (``label_evidence``, NULL for a person's label); every label, with its source, time and
evidence, is kept in ``label_history``. So merging B into A gives the rows of a catalog that saw both runs,
whichever order you merge in.
"""

from __future__ import annotations

import os

from circuits.catalog import schema
from circuits.catalog.store import inspect_file, read_uri
from circuits.errors import CatalogError, UsageError

_UNION = [
    "INSERT OR IGNORE INTO main.layers SELECT model, name FROM other.layers",
    "INSERT OR IGNORE INTO main.neurons (model, layer, channel) SELECT model, layer, channel FROM other.neurons",
    """INSERT OR IGNORE INTO main.label_history (model, layer, channel, label, source, created, evidence)
       SELECT model, layer, channel, label, source, created, evidence FROM other.label_history""",
    """INSERT OR IGNORE INTO main.circuits (id, model, target, method, parameters, created, nodes, graph,
                                            edge_attributes)
       SELECT id, model, target, method, parameters, created, nodes, graph, edge_attributes FROM other.circuits""",
    """INSERT OR IGNORE INTO main.edges (circuit, source, target, weight, kernel)
       SELECT circuit, source, target, weight, kernel FROM other.edges""",
    # a circuit that this catalog holds without attributes (stored before schema v3) takes the other's
    """UPDATE main.circuits AS c SET graph = o.graph, nodes = o.nodes, edge_attributes = o.edge_attributes
       FROM other.circuits AS o WHERE o.id = c.id AND c.graph = '{}' AND o.graph != '{}'""",
    "INSERT OR IGNORE INTO main.motifs (id, kind, transform, description) SELECT id, kind, transform, description FROM other.motifs",
    """INSERT OR IGNORE INTO main.motif_instances (id, motif, model, circuit, target, members, score, evidence, created)
       SELECT id, motif, model, circuit, target, members, score, evidence, created FROM other.motif_instances""",
    """INSERT OR IGNORE INTO main.modules (id, circuit, code, faithfulness, created)
       SELECT id, circuit, code, faithfulness, created FROM other.modules""",
    """INSERT OR IGNORE INTO main.motif_families (id, motif, name, description, created)
       SELECT id, motif, name, description, created FROM other.motif_families""",
    "INSERT OR IGNORE INTO main.motif_family_members (family, instance) SELECT family, instance FROM other.motif_family_members",
    # pictures: an image's id is the sha256 of its bytes, a neuron's picture's the hash of what it shows and how
    "INSERT OR IGNORE INTO main.images (id, png, width, height, mode) SELECT id, png, width, height, mode FROM other.images",
    """INSERT OR IGNORE INTO main.neuron_images (id, model, layer, channel, kind, rank, image, method, activation,
                                                 agreement, created)
       SELECT id, model, layer, channel, kind, rank, image, method, activation, agreement, created
       FROM other.neuron_images""",
    # scans: a shard's id hashes what it ran on and with, so a merged catalog skips what either scan did
    """INSERT OR IGNORE INTO main.scan_shards (id, model, layer, what, arguments, tool_version, layer_kind, channels,
                                               rows, seconds, created)
       SELECT id, model, layer, what, arguments, tool_version, layer_kind, channels, rows, seconds, created
       FROM other.scan_shards""",
]

_MODELS = """
INSERT INTO main.models (id, name, architecture, spec, parameters, info, created, tool_version)
SELECT id, name, architecture, spec, parameters, info, created, tool_version FROM other.models WHERE true
ON CONFLICT(id) DO UPDATE SET
  architecture = coalesce(models.architecture, excluded.architecture),
  spec = coalesce(models.spec, excluded.spec),
  parameters = coalesce(models.parameters, excluded.parameters),
  info = coalesce(models.info, excluded.info)"""

_LABELS = """
UPDATE main.neurons AS n
SET label = o.label, label_source = o.label_source, label_created = o.label_created,
    label_evidence = o.label_evidence, notes = coalesce(o.notes, n.notes)
FROM other.neurons AS o
WHERE o.model = n.model AND o.layer = n.layer AND o.channel = n.channel AND o.label IS NOT NULL
  AND (n.label IS NULL OR (o.label_source = 'user', o.label_created, o.label)
                          > (n.label_source = 'user', n.label_created, n.label))"""

_NOTES = """
UPDATE main.neurons AS n SET notes = o.notes FROM other.neurons AS o
WHERE o.model = n.model AND o.layer = n.layer AND o.channel = n.channel AND n.notes IS NULL AND o.notes IS NOT NULL"""


def merge(store, other_path) -> dict:
    """Merge the catalog at ``other_path`` into ``store`` in one transaction; returns rows added per table.

    The other file is only read (attached read-only), never changed.
    """
    store.check_writable()
    other_path = os.fspath(other_path)
    if not os.path.exists(other_path):
        raise UsageError(f"there is no catalog at {other_path} to merge.")
    if os.path.abspath(other_path) == os.path.abspath(store.path) or os.path.samefile(other_path, store.path):
        raise UsageError("cannot merge a catalog into itself; pass a colleague's catalog file.")
    version = inspect_file(other_path)
    if version is None:
        raise CatalogError(f"{other_path} is empty, not a circuits catalog.")
    if version != schema.current_version():
        raise CatalogError(
            f"{other_path} has catalog schema version {version} but this catalog has {schema.current_version()}; "
            "upgrade the older one first (`circuits catalog upgrade --catalog PATH`)."
        )
    before = {t: store.table(t).count for t in schema.TABLES}
    # read-only by URI: sqlite-utils' Database.attach() would open the colleague's file for writing
    store.db.execute("ATTACH DATABASE ? AS other", (read_uri(other_path),))
    try:
        with store.transaction():
            for statement in (_MODELS, *_UNION, _LABELS, _NOTES):
                store.db.execute(statement)
    finally:
        store.db.execute("DETACH DATABASE other")
    return {t: store.table(t).count - before[t] for t in schema.TABLES}
