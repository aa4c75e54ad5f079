"""The shared catalog: models, neurons, circuits, motifs and modules in one SQLite file.

Plain dicts in, plain dicts out; this package never imports torch, so notebooks, the CLI and datasette
can read a catalog on any machine. Every ``circuits catalog`` command is a thin skin over a method here.
Storage goes through sqlite-utils: ``Catalog.db`` is the ``sqlite_utils.Database`` on the catalog's own
connection, for anything not wrapped here (``cat.db["neurons"].search("curve")``).

Examples
--------
>>> import os, tempfile
>>> from circuits.catalog import Catalog
>>> circuit = {"target": "conv3:12", "method": "weights", "parameters": {"depth": 1, "top_k": 1},
...            "nodes": [{"id": "conv3:12", "depth": 0}, {"id": "conv2:4", "depth": 1}],
...            "edges": [{"source": "conv2:4", "target": "conv3:12", "weight": 0.8, "kernel": [[0.8]]}]}
>>> sha = "ab" * 32                                          # the model's weights sha256
>>> with Catalog(os.path.join(tempfile.mkdtemp(), "lab.db")) as cat:
...     with cat.transaction():                              # one extract run = one transaction
...         _ = cat.add_model(sha, "zoo:plain-cnn", architecture="PlainCNN")
...         cid = cat.add_circuit(sha, circuit)              # content-hash id; re-adding is a no-op
...     _ = cat.label("zoo:plain-cnn", "conv3:12", "curve detector")
...     [row["id"] for row in cat.search("curve")]
['zoo:plain-cnn/conv3:12']

See docs/catalog.md for the schema, the merge rule for labels, and the migration policy.
"""

from __future__ import annotations

from circuits.catalog import export as _export
from circuits.catalog import query as _query
from circuits.catalog import search as _search
from circuits.catalog.merge import merge as _merge
from circuits.catalog.payload import circuit_rows
from circuits.catalog.schema import current_version
from circuits.catalog.store import Store, check_writable, inspect_file
from circuits.errors import UsageError

SCHEMA_VERSION = current_version()
DEFAULT_PATH = "catalog.db"


class Catalog(Store):
    """A catalog file, opened for reading and writing (WAL, busy timeout, foreign keys on), or only for reading.

    Parameters
    ----------
    path : str or PathLike
        The SQLite file. A new path (or empty file) becomes a new catalog when ``create`` is true.
    create : bool
        If false, a missing catalog raises :class:`~circuits.errors.CatalogError`.
    readonly : bool
        Open by SQLite URI ``mode=ro`` (a shared file on a read-only mount, a downloaded file): nothing is
        created, migrated or switched to WAL, and a write raises :class:`~circuits.errors.CatalogReadOnlyError`.
        An older schema version is refused (open it once writable to upgrade it). Opened for writing, a file
        that cannot be written (or a new one in a folder that cannot) raises that error before anything else.

    A file that is not a circuits catalog (not SQLite, damaged, or another program's database) raises
    :class:`~circuits.errors.CatalogError` and is left byte-for-byte unchanged; a catalog from an older
    schema version is copied to ``PATH.bak-v<N>`` and upgraded in place.
    """

    def search(self, text: str, limit: int = 50) -> list[dict]:
        """Neurons (labels, notes), motifs (descriptions) and modules (code) matching every word of text."""
        return _search.search(self, text, limit)

    def stats(self) -> dict:
        """Row counts per table and the schema version."""
        return _query.stats(self)

    def list(self, kind: str = "circuits") -> list[dict]:
        """One summary row per entry of a kind: models, circuits, neurons, motifs, instances, modules, families."""
        return _query.list_entries(self, kind)

    def show(self, id: str) -> dict:
        """One entry in full: by id or unique prefix, model name, motif id, or ``MODEL/LAYER:CHANNEL``."""
        return _query.show(self, id)

    def circuit(self, ref: str) -> dict:
        """The circuit ``ref`` names (circuit or module id, or a unique prefix), whole: what
        ``circuits.Circuit.from_json`` rebuilds, so it can be emitted or drawn with no model at hand."""
        return _query.stored_circuit(self, ref)

    def neuron_pictures(self, model_ref: str, neuron: str, kind: str | None = None) -> list[dict]:
        """A neuron's pictures, with their PNG bytes (``png``), by kind then rank: ``kind="optimised"`` and
        the first row is the picture a diagram shows for it. ``[]`` for a neuron without pictures."""
        return _query.neuron_pictures(self, model_ref, neuron, kind)

    def merge(self, other_path) -> dict:
        """Merge another catalog file into this one (read-only on the other); returns rows added per table."""
        return _merge(self, other_path)

    def export(self, format: str = "json", table: str | None = None):
        """``json`` -> dict of all tables; ``csv`` -> text of one ``table``; ``sql`` -> a rebuild script."""
        if format == "json":
            return _export.export_json(self)
        if format == "csv":
            if table is None:
                raise UsageError("CSV holds one table: pass table=... (or, on the CLI, --table or --output DIR).")
            return _export.export_csv(self, table)
        if format == "sql":
            return _export.export_sql(self)
        raise UsageError(f"unknown export format {format!r}; choose one of {', '.join(_export.FORMATS)}.")


def circuit_id(model_id: str, circuit_payload: dict) -> str:
    """The id ``add_circuit`` would give this payload, without a catalog."""
    return circuit_rows(model_id, circuit_payload).id


__all__ = ["Catalog", "DEFAULT_PATH", "SCHEMA_VERSION", "check_writable", "circuit_id", "inspect_file"]
