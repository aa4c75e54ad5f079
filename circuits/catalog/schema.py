"""The catalog's tables, as numbered forward migrations.

A new catalog runs every migration in order; an older one is backed up and runs the ones it lacks. Add a
schema change by appending a migration (never edit a released one) and documenting it in docs/catalog.md.
Version 1 is the SQL script it was released as; later versions are functions over a ``sqlite_utils.Database``.

The file is marked as ours in two places, so a foreign SQLite database is never mistaken for a catalog:
``PRAGMA application_id`` (in the file header) and the ``schema_version`` table.
"""

from __future__ import annotations

import functools
import re
from itertools import groupby

from circuits.catalog.payload import nodes_json

APPLICATION_ID = 0x43495243  # "CIRC"

# Searchable text lives in external-content FTS5 tables, kept in step by triggers.
_FTS = {
    # fts table: (content table, indexed columns)
    "neurons_fts": ("neurons", ("label", "notes")),
    "motifs_fts": ("motifs", ("description",)),
    "modules_fts": ("modules", ("code",)),
}


def _fts_ddl() -> str:
    parts = []
    for fts, (table, columns) in _FTS.items():
        cols = ", ".join(columns)
        new = ", ".join(f"new.{c}" for c in columns)
        old = ", ".join(f"old.{c}" for c in columns)
        parts.append(
            f"""
CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{table}', content_rowid='rowid');
CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN
  INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new});
END;
CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN
  INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old});
END;
CREATE TRIGGER {table}_au AFTER UPDATE OF {cols} ON {table} BEGIN
  INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old});
  INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new});
END;"""
        )
    return "\n".join(parts)


V1 = (
    """
CREATE TABLE schema_version (
  version INTEGER PRIMARY KEY,
  applied TEXT NOT NULL,          -- UTC time the migration ran
  tool_version TEXT NOT NULL
);
CREATE TABLE models (
  id TEXT PRIMARY KEY,            -- sha256 of the weights
  name TEXT NOT NULL,
  architecture TEXT,
  spec TEXT,
  parameters INTEGER,             -- parameter count
  info TEXT,                      -- JSON object
  created TEXT NOT NULL,
  tool_version TEXT NOT NULL
);
CREATE INDEX models_name ON models(name);
CREATE TABLE layers (
  model TEXT NOT NULL REFERENCES models(id),
  name TEXT NOT NULL,
  PRIMARY KEY (model, name)
) WITHOUT ROWID;
CREATE TABLE neurons (
  model TEXT NOT NULL,
  layer TEXT NOT NULL,
  channel INTEGER NOT NULL,
  label TEXT,
  label_source TEXT,              -- 'user', or the tool that proposed it ('extract', ...)
  label_created TEXT,             -- when the label was written; merge keeps the newest (user beats tools)
  notes TEXT,
  PRIMARY KEY (model, layer, channel),
  FOREIGN KEY (model, layer) REFERENCES layers(model, name)
);
CREATE TABLE label_history (
  model TEXT NOT NULL,
  layer TEXT NOT NULL,
  channel INTEGER NOT NULL,
  label TEXT NOT NULL,
  source TEXT NOT NULL,
  created TEXT NOT NULL,
  PRIMARY KEY (model, layer, channel, label, source, created),
  FOREIGN KEY (model, layer, channel) REFERENCES neurons(model, layer, channel)
) WITHOUT ROWID;
CREATE TABLE circuits (
  id TEXT PRIMARY KEY,            -- sha256 of the canonical circuit (see circuits.catalog.payload)
  model TEXT NOT NULL REFERENCES models(id),
  target TEXT NOT NULL,           -- LAYER:CHANNEL
  method TEXT NOT NULL,
  parameters TEXT NOT NULL,       -- JSON object
  created TEXT NOT NULL
);
CREATE INDEX circuits_model_target ON circuits(model, target);
CREATE TABLE circuit_nodes (
  circuit TEXT NOT NULL REFERENCES circuits(id),
  node TEXT NOT NULL,             -- LAYER:CHANNEL
  layer TEXT NOT NULL,
  channel INTEGER NOT NULL,
  depth INTEGER NOT NULL,
  PRIMARY KEY (circuit, node)
) WITHOUT ROWID;
CREATE TABLE edges (
  circuit TEXT NOT NULL REFERENCES circuits(id),
  source TEXT NOT NULL,           -- LAYER:CHANNEL
  target TEXT NOT NULL,           -- LAYER:CHANNEL
  weight REAL,                    -- strength: signed sum of the kernel
  kernel TEXT NOT NULL,           -- JSON [[dy][dx]]
  PRIMARY KEY (circuit, source, target)
) WITHOUT ROWID;
CREATE TABLE motifs (
  id TEXT PRIMARY KEY,            -- KIND or KIND/TRANSFORM
  kind TEXT NOT NULL,
  transform TEXT,
  description TEXT NOT NULL
);
CREATE TABLE motif_instances (
  id TEXT PRIMARY KEY,            -- sha256 of the canonical instance
  motif TEXT NOT NULL REFERENCES motifs(id),
  model TEXT NOT NULL REFERENCES models(id),
  circuit TEXT REFERENCES circuits(id),
  target TEXT,
  members TEXT NOT NULL,          -- JSON list of LAYER:CHANNEL
  score REAL,
  evidence TEXT NOT NULL,         -- JSON object
  created TEXT NOT NULL
);
CREATE INDEX motif_instances_motif_model ON motif_instances(motif, model);
CREATE INDEX motif_instances_model ON motif_instances(model);
CREATE INDEX motif_instances_circuit ON motif_instances(circuit);
CREATE TABLE modules (
  id TEXT PRIMARY KEY,            -- sha256 of circuit id + code
  circuit TEXT NOT NULL REFERENCES circuits(id),
  code TEXT NOT NULL,
  faithfulness TEXT NOT NULL,     -- JSON object
  created TEXT NOT NULL
);
CREATE INDEX modules_circuit ON modules(circuit);
CREATE TABLE motif_families (
  id TEXT PRIMARY KEY,            -- sha256 of the sorted member instance ids
  motif TEXT NOT NULL REFERENCES motifs(id),
  name TEXT NOT NULL,
  description TEXT,
  created TEXT NOT NULL
);
CREATE TABLE motif_family_members (
  family TEXT NOT NULL REFERENCES motif_families(id),
  instance TEXT NOT NULL REFERENCES motif_instances(id),
  PRIMARY KEY (family, instance)
) WITHOUT ROWID;
CREATE INDEX motif_family_members_instance ON motif_family_members(instance);
"""
    + _fts_ddl()
)


def v2(db) -> None:
    """Circuit nodes move from one ``circuit_nodes`` row each into a JSON column ``circuits.nodes``.

    One row per node cost a quarter of ingest time, for one lookup ("circuits containing neuron X") that was a
    scan either way, and is faster over the JSON. The full-text indexes are rebuilt by sqlite-utils' ``enable_fts``, whose
    ``content="table"`` spelling datasette and ``Table.search()`` recognise (version 1's is not).
    """
    db["circuits"].add_column("nodes", str, not_null_default="[]")  # JSON [{"depth": d, "id": "LAYER:CH"}]
    rows = db.execute("SELECT circuit, node, layer, channel, depth FROM circuit_nodes ORDER BY circuit, node")
    for circuit, nodes in groupby(rows, key=lambda row: row[0]):
        db.execute("UPDATE circuits SET nodes = ? WHERE id = ?", (nodes_json([n[1:] for n in nodes]), circuit))
    db["circuit_nodes"].drop()
    for fts, (table, columns) in _FTS.items():
        db[fts].drop()
        for suffix in ("_ai", "_ad", "_au"):
            db.execute(f"DROP TRIGGER {table}{suffix}")
        db[table].enable_fts(columns, create_triggers=True)  # indexes the existing rows


def v3(db) -> None:
    """Circuits are stored whole, so a stored circuit can be emitted and drawn again with no model at hand.

    ``circuits.graph`` holds the graph attributes (how the circuit was made, the weights hash), each node in
    ``circuits.nodes`` keeps all its attributes (nonlinearity with its parameters, bias, shape, input
    geometry), and ``circuits.edge_attributes`` holds each edge's attributes beyond weight and kernel
    (strength, magnitude, sign, the kernel at a pooled map) as one JSON list per circuit: per edge row they
    would spill every row onto an overflow page (tripling the file). Circuits stored before version 3 keep
    ``{}`` / ``[]`` there: they can be listed and drawn, and re-adding the same circuit fills them in.
    """
    db["circuits"].add_column("graph", str, not_null_default="{}")
    db["circuits"].add_column("edge_attributes", str, not_null_default="[]")


V4 = (
    """
CREATE TABLE images (
  id TEXT PRIMARY KEY,            -- sha256 of the PNG bytes
  png BLOB NOT NULL,              -- the PNG file, byte for byte
  width INTEGER,
  height INTEGER,
  mode TEXT                       -- 'L' (grey) or 'RGB'
)""",
    """
CREATE TABLE neuron_images (
  id TEXT PRIMARY KEY,            -- sha256 of the canonical JSON of model, neuron, kind, rank, image, method
  model TEXT NOT NULL REFERENCES models(id),
  layer TEXT NOT NULL,
  channel INTEGER NOT NULL,
  kind TEXT NOT NULL,             -- 'optimised', 'diverse', 'negative' or 'example'
  rank INTEGER NOT NULL,          -- the copy (optimised 0, diverse 1, ...) or the example's rank, from 0
  image TEXT NOT NULL REFERENCES images(id),
  method TEXT NOT NULL,           -- JSON object: how the picture was made (objective, steps, seed, data, ...)
  activation REAL,                -- the neuron's value on the picture, where it was read
  agreement REAL,                 -- circuit agreement with the neuron's top examples (NULL where none)
  created TEXT NOT NULL,
  FOREIGN KEY (model, layer, channel) REFERENCES neurons(model, layer, channel)
)""",
    "CREATE INDEX neuron_images_neuron ON neuron_images(model, layer, channel)",
)


def v4(db) -> None:
    """Pictures of neurons: each PNG once in ``images`` (keyed by its sha256, however many neurons show it) and
    one ``neuron_images`` row per picture of a neuron (feature visualisation or a dataset example), saying how
    it was made and what it measured.

    Written as SQL, not ``db[t].create(...)``: ``check_schema`` compares the text SQLite keeps, and this text
    does not change with the installed sqlite-utils' spelling of a CREATE TABLE. A picture's neuron must exist
    (the foreign key to ``neurons``, as ``label_history`` has), so the neuron page and its pictures agree.
    """
    for statement in V4:
        db.execute(statement)


# No comments in these statements: SQLite splices an added column's text into the table's CREATE TABLE, where
# a ``--`` comment would swallow the closing parenthesis.
V5 = (
    "ALTER TABLE neurons ADD COLUMN label_evidence TEXT",
    "ALTER TABLE label_history ADD COLUMN evidence TEXT",
)


def v5(db) -> None:
    """Label provenance: what backs an automatic label, beside the label itself.

    ``neurons.label_evidence`` holds the shown label's evidence and ``label_history.evidence`` each recorded
    label's, as JSON ``{"concept": ..., "score": ..., "evidence": {...}}`` (``Catalog.add_labels``: the method,
    its measurements, the probe data, the tool version); NULL for a label a person wrote (``Catalog.label``)
    and for the labels other tools carry (``extract``'s). Older rows keep NULL. Written as SQL for the reason
    version 4 is: the text SQLite keeps does not depend on the installed sqlite-utils.
    """
    for statement in V5:
        db.execute(statement)


V6 = (
    """
CREATE TABLE scan_shards (
  id TEXT PRIMARY KEY,            -- sha256 of (weights sha256, layer, what, arguments, tool version)
  model TEXT NOT NULL REFERENCES models(id),
  layer TEXT NOT NULL,
  what TEXT NOT NULL,             -- 'circuits', 'motifs', 'labels' or 'pictures'
  arguments TEXT NOT NULL,        -- JSON object: the arguments this part of the shard ran with
  tool_version TEXT NOT NULL,
  layer_kind TEXT,                -- the layer's kind and size, what the cost estimate groups by
  channels INTEGER,
  rows INTEGER NOT NULL,          -- rows it recorded (circuits, motif instances, labels or pictures)
  seconds REAL NOT NULL,          -- measured on the worker that ran it
  created TEXT NOT NULL
)""",
    "CREATE INDEX scan_shards_model ON scan_shards(model, layer)",
)


def v6(db) -> None:
    """Scans (``circuits scan``): one ``scan_shards`` row per part of a shard that is recorded, written in the
    same transaction as the part's rows, so a rerun skips what is done and a killed writer never leaves half a
    shard. ``seconds`` (measured where the shard ran) feeds ``--dry-run``'s estimate. Written as SQL for the
    reason version 4 is.
    """
    for statement in V6:
        db.execute(statement)


# MIGRATIONS[n - 1] takes a catalog from version n - 1 to version n: an SQL script, or a function of a
# sqlite_utils.Database. Both run inside the caller's transaction.
MIGRATIONS: list = [V1, v2, v3, v4, v5, v6]

# Content tables in dependency order, with the columns that order their rows (for export and comparison).
TABLES: dict[str, tuple[str, ...]] = {
    "models": ("id",),
    "layers": ("model", "name"),
    "neurons": ("model", "layer", "channel"),
    "label_history": ("model", "layer", "channel", "label", "source", "created"),
    "circuits": ("id",),
    "edges": ("circuit", "source", "target"),
    "motifs": ("id",),
    "motif_instances": ("id",),
    "modules": ("id",),
    "motif_families": ("id",),
    "motif_family_members": ("family", "instance"),
    "images": ("id",),
    "neuron_images": ("id",),
    "scan_shards": ("id",),
}

FTS_TABLES = tuple(_FTS)


def current_version() -> int:
    return len(MIGRATIONS)


# Objects SQLite itself may add to a catalog: ANALYZE's statistics, AUTOINCREMENT's counters, and the indexes
# behind PRIMARY KEY and UNIQUE constraints (which have no SQL of their own).
SQLITE_TABLES = ("sqlite_stat1", "sqlite_stat4", "sqlite_sequence")


@functools.lru_cache
def expected_objects(version: int) -> dict[tuple[str, str], tuple[str, str]]:
    """What a catalog of ``version`` holds in ``sqlite_master``: ``{(type, name): (table, sql)}``.

    Built by running the migrations on an empty in-memory database, so it is exactly what this code (and
    the installed sqlite-utils, whose ``enable_fts`` writes the full-text triggers) creates; a downloaded
    catalog holding anything else is refused (``store.check_schema``).
    """
    import sqlite3

    from sqlite_utils import Database

    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db = Database(conn, execute_plugins=False)
        for number in range(1, version + 1):
            migrate(db, number)
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    finally:
        conn.close()
    return {(kind, name): (table, normal_sql(sql)) for kind, name, table, sql in rows}


def normal_sql(sql: str | None) -> str:
    """SQL text with runs of spaces and tabs made one space and blank lines dropped, so a catalog re-indented
    by another tool still matches; tokens and line breaks (which end ``--`` comments) are kept."""
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in (sql or "").splitlines())
    return "\n".join(line for line in lines if line)


def migrate(db, number: int) -> None:
    """Run migration ``number`` (1-based) on a ``sqlite_utils.Database``, inside the open transaction."""
    migration = MIGRATIONS[number - 1]
    if callable(migration):
        migration(db)
    else:
        db.executescript(migration)  # statement by statement: in a transaction it never commits
