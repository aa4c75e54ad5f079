"""Open, validate, migrate and write a catalog file.

Several processes may write one catalog at once: the file is in WAL mode, every write transaction starts
with ``BEGIN IMMEDIATE`` (so writers queue on the busy timeout instead of deadlocking), and each library
call is one transaction. ``Catalog.transaction()`` groups calls, so that one ``extract`` or ``motifs`` run
lands whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import sqlite3
from datetime import UTC, datetime

from circuits.catalog import schema
from circuits.catalog.payload import canonical, circuit_rows, motif_rows, sha256, split_neuron
from circuits.errors import CatalogError, UnknownNeuronError, UsageError, close_matches_hint

BUSY_TIMEOUT_MS = 60_000
SQLITE_MAGIC = b"SQLite format 3\x00"

MOTIF_DESCRIPTIONS = {
    "equivariance": "Neurons that are transformed copies of one another (rotated, reflected, scaled), "
    "whose weights are transformed the same way.",
    "union": "A neuron that fires for the union of its inputs' features, typically mirror-image or "
    "rotated pairs, making it invariant to the transform.",
    "inhibition": "Negative weights by which one feature suppresses another (mutual or one-way inhibition).",
    "polysemantic": "A neuron that responds to several unrelated features.",
    "network": "A small subgraph of neurons that recurs within the network.",
    "universality": "The same feature or circuit found again in a different model.",
}


def now() -> str:
    """UTC time with microseconds: used only in ``created`` columns, never in content hashes."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def tool_version() -> str:
    from circuits import __version__

    return __version__


def statements(script: str):
    """Split a DDL script into statements (triggers contain ``;``), so it runs inside our transaction."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def _uri(path: str, mode: str) -> str:
    return pathlib.Path(path).absolute().as_uri() + f"?mode={mode}"


def inspect_file(path: str) -> int | None:
    """The schema version of the catalog at ``path``; ``None`` for a new (absent or empty) file.

    Reads only: a file that is not a circuits catalog raises :class:`CatalogError` and is left untouched.
    """
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise CatalogError(f"{path} is a directory, not a catalog file; pass a path like {path}/catalog.db.")
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_MAGIC))
    if not header:
        return None
    if header != SQLITE_MAGIC:
        raise CatalogError(f"{path} is not an SQLite database, so not a circuits catalog; pass a catalog file or a new path.")
    conn = sqlite3.connect(_uri(path, "ro"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        return _version_of(conn, path)
    finally:
        conn.close()


def _version_of(conn: sqlite3.Connection, path: str) -> int | None:
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if not tables and application_id == 0:
            return None
        if application_id != schema.APPLICATION_ID or "schema_version" not in tables:
            raise CatalogError(
                f"{path} is an SQLite database but not a circuits catalog; pass a catalog file or a new path."
            )
        return conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"{path} is a damaged or unreadable SQLite file ({exc}); restore it from a backup.") from None


def backup_path(path: str, version: int) -> str:
    candidate, n = f"{path}.bak-v{version}", 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}.bak-v{version}.{n}"
    return candidate


class Store:
    """The connection, its transactions, and the writes. :class:`circuits.catalog.Catalog` adds reads."""

    def __init__(self, path, create: bool = True):
        self.path = os.fspath(path)
        self._depth = 0
        self._known = set()  # (model, layer, channel) and (model, layer) rows known to exist; cleared on rollback
        version = inspect_file(self.path)
        if version is None and not create:
            raise CatalogError(
                f"there is no catalog at {self.path}; pass --catalog PATH (or set CIRCUITS_CATALOG), "
                "or create one with `circuits extract ... --catalog PATH`."
            )
        if version is not None and version > schema.current_version():
            raise CatalogError(
                f"{self.path} has catalog schema version {version}, newer than this circuits "
                f"({tool_version()}) understands ({schema.current_version()}); upgrade circuits."
            )
        try:
            self.conn = sqlite3.connect(_uri(self.path, "rwc"), uri=True, isolation_level=None,
                                        timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open {self.path} ({exc}); check the path and its permissions.") from None
        self.conn.row_factory = sqlite3.Row
        try:
            self._setup(version)
        except BaseException:
            self.conn.close()
            raise

    def _setup(self, version):
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if version is not None and version < schema.current_version():
            backup = sqlite3.connect(backup_path(self.path, version))
            with backup:
                conn.backup(backup)
            backup.close()
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes; WAL keeps it consistent
        conn.execute("PRAGMA foreign_keys = ON")
        if version == schema.current_version():
            return
        with self.transaction():  # re-read under the write lock: another process may have just migrated
            current = _version_of(conn, self.path) or 0
            for number in range(current + 1, schema.current_version() + 1):
                for statement in statements(schema.MIGRATIONS[number - 1]):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (number, now(), tool_version()))
            conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")

    # -- connection ------------------------------------------------------------------------------------

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        """One all-or-nothing write: the outermost call holds the write lock; nested calls are savepoints."""
        if self._depth:
            name = f"s{self._depth}"
            self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._known.clear()
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._known.clear()
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    def rows(self, sql: str, params=()) -> list[dict]:
        return [dict(row) for row in self.conn.execute(sql, params)]

    def value(self, sql: str, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- models ----------------------------------------------------------------------------------------

    def add_model(self, id: str, name: str, architecture=None, spec=None, parameters=None, info=None,
                  layers=None) -> str:
        """Record a model by the sha256 of its weights; re-adding fills in missing fields, never overwrites.

        ``layers`` (names, in order) lets neurons be labelled before any circuit names them.
        """
        if not isinstance(id, str) or not id.strip() or not isinstance(name, str) or not name.strip():
            raise UsageError("a model needs a non-empty id (the sha256 of its weights) and a non-empty name.")
        if parameters is not None and (isinstance(parameters, bool) or not isinstance(parameters, int)):
            raise UsageError(f"parameters is the model's parameter count, an integer; got {parameters!r}.")
        info_json = None if info is None else canonical(info)
        with self.transaction():
            self.conn.execute(
                """INSERT INTO models (id, name, architecture, spec, parameters, info, created, tool_version)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET
                     architecture = coalesce(models.architecture, excluded.architecture),
                     spec = coalesce(models.spec, excluded.spec),
                     parameters = coalesce(models.parameters, excluded.parameters),
                     info = coalesce(models.info, excluded.info)""",
                (id, name, architecture, spec, parameters, info_json, now(), tool_version()),
            )
            if layers:
                self.conn.executemany("INSERT OR IGNORE INTO layers VALUES (?, ?)", [(id, str(n)) for n in layers])
        return id

    def model_id(self, ref: str) -> str:
        """A model's id from its id, its name, or a unique id prefix (at least 4 characters)."""
        found = self._find_model(ref)
        if found is None:
            names = [r[0] for r in self.conn.execute("SELECT name FROM models ORDER BY name")]
            raise UsageError(f"unknown model {ref!r} in {self.path}{close_matches_hint(str(ref), names)}")
        return found

    def _find_model(self, ref) -> str | None:
        if not isinstance(ref, str) or not ref:
            return None
        if self.value("SELECT 1 FROM models WHERE id = ?", (ref,)):
            return ref
        ids = [r[0] for r in self.conn.execute("SELECT id FROM models WHERE name = ? ORDER BY id", (ref,))]
        if not ids and len(ref) >= 4 and re.fullmatch(r"[0-9a-fA-F]+", ref):
            ids = [r[0] for r in self.conn.execute("SELECT id FROM models WHERE id LIKE ? || '%' ORDER BY id", (ref.lower(),))]
        if len(ids) > 1:
            raise UsageError(f"model {ref!r} is ambiguous: it matches {', '.join(i[:12] for i in ids)}; pass the full id.")
        return ids[0] if ids else None

    def _ensure_model(self, ref: str, name) -> str:
        found = self._find_model(ref)
        if found is not None:
            return found
        return self.add_model(ref, name if isinstance(name, str) and name else ref)

    # -- circuits, motifs, modules ---------------------------------------------------------------------

    def add_circuit(self, model_id: str, circuit_payload: dict) -> str:
        """Store a ``circuits extract --json`` object; returns its content-hash id (re-adding is a no-op).

        An unknown ``model_id`` is registered with the payload's ``model`` string as its name.
        """
        with self.transaction():
            model = self._ensure_model(model_id, (circuit_payload or {}).get("model") if isinstance(circuit_payload, dict) else None)
            rows = circuit_rows(model, circuit_payload)
            if self.value("SELECT 1 FROM circuits WHERE id = ?", (rows.id,)):
                return rows.id
            conn = self.conn
            conn.execute("INSERT INTO circuits VALUES (?, ?, ?, ?, ?, ?)",
                         (rows.id, model, rows.target, rows.method, rows.parameters, now()))
            self._add_neurons(model, [(n[1], n[2]) for n in rows.nodes])
            conn.executemany("INSERT INTO circuit_nodes VALUES (?, ?, ?, ?, ?)", [(rows.id, *n) for n in rows.nodes])
            conn.executemany("INSERT INTO edges VALUES (?, ?, ?, ?, ?)", [(rows.id, *e) for e in rows.edges])
            for node, text in sorted(rows.labels.items()):
                layer, channel = split_neuron(node)
                self._set_label(model, layer, channel, text, "extract", None)
        return rows.id

    def _add_neurons(self, model, neurons):
        """Make sure layer and neuron rows exist (nothing deletes them, so what we saw committed stays true)."""
        known = self._known
        layers = sorted({(model, layer) for layer, _ in neurons} - known)
        fresh = [(model, layer, channel) for layer, channel in neurons if (model, layer, channel) not in known]
        self.conn.executemany("INSERT OR IGNORE INTO layers VALUES (?, ?)", layers)
        self.conn.executemany("INSERT OR IGNORE INTO neurons (model, layer, channel) VALUES (?, ?, ?)", fresh)
        known.update(layers)
        known.update(fresh)

    def add_motifs(self, model_id: str, motifs_payload: dict, circuit_id: str | None = None) -> list[str]:
        """Store a ``circuits motifs --json`` object; returns the instance ids, in payload order."""
        with self.transaction():
            name = motifs_payload.get("model") if isinstance(motifs_payload, dict) else None
            model = self._ensure_model(model_id, name)
            if circuit_id is not None:
                circuit_id = self._full_id("circuits", circuit_id, "circuit")
            rows = motif_rows(model, motifs_payload, circuit_id)
            for row in rows:
                description = MOTIF_DESCRIPTIONS.get(row.kind, f"A {row.kind} motif.")
                if row.transform:
                    description += f" Transform: {row.transform}."
                self.conn.execute("INSERT OR IGNORE INTO motifs VALUES (?, ?, ?, ?)",
                                  (row.motif_id, row.kind, row.transform, description))
                self.conn.execute(
                    "INSERT OR IGNORE INTO motif_instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.instance_id, row.motif_id, model, circuit_id, row.target, row.members, row.score,
                     row.evidence, now()),
                )
        return [row.instance_id for row in rows]

    def add_module(self, circuit_id: str, code: str, faithfulness: dict) -> str:
        """Store emitted code for a circuit with its measured faithfulness; the id hashes all three."""
        if not isinstance(code, str) or not code.strip():
            raise UsageError("a module needs its code as a non-empty string.")
        if not isinstance(faithfulness, dict):
            raise UsageError(f"faithfulness must be a dict of measurements, got {type(faithfulness).__name__}.")
        with self.transaction():
            circuit_id = self._full_id("circuits", circuit_id, "circuit")
            faithfulness_json = canonical(faithfulness)
            module_id = sha256(canonical({"circuit": circuit_id, "code": code, "faithfulness": faithfulness}))
            self.conn.execute("INSERT OR IGNORE INTO modules VALUES (?, ?, ?, ?, ?)",
                              (module_id, circuit_id, code, faithfulness_json, now()))
        return module_id

    def add_family(self, motif_id: str, instance_ids, name: str, description: str | None = None) -> str:
        """Group motif instances (usually from different models) into one cross-model family."""
        instance_ids = sorted({self._full_id("motif_instances", i, "motif instance") for i in instance_ids})
        if not instance_ids:
            raise UsageError("a motif family needs at least one motif instance.")
        with self.transaction():
            if not self.value("SELECT 1 FROM motifs WHERE id = ?", (motif_id,)):
                known = [r[0] for r in self.conn.execute("SELECT id FROM motifs")]
                raise UsageError(f"unknown motif {motif_id!r}{close_matches_hint(motif_id, known)}")
            family_id = sha256(canonical({"motif": motif_id, "instances": instance_ids}))
            self.conn.execute("INSERT OR IGNORE INTO motif_families VALUES (?, ?, ?, ?, ?)",
                              (family_id, motif_id, name, description, now()))
            self.conn.executemany("INSERT OR IGNORE INTO motif_family_members VALUES (?, ?)",
                                  [(family_id, i) for i in instance_ids])
        return family_id

    def _full_id(self, table: str, ref, what: str) -> str:
        if not isinstance(ref, str) or not ref:
            raise UsageError(f"a {what} id must be a non-empty string, got {ref!r}.")
        if self.value(f"SELECT 1 FROM {table} WHERE id = ?", (ref,)):
            return ref
        ids = [r[0] for r in self.conn.execute(f"SELECT id FROM {table} WHERE id LIKE ? || '%' LIMIT 3", (ref,))]
        if len(ids) == 1 and len(ref) >= 4:
            return ids[0]
        if len(ids) > 1:
            raise UsageError(f"{what} id {ref!r} is ambiguous; give more characters.")
        raise UsageError(f"unknown {what} {ref!r} in {self.path}.")

    # -- labels ----------------------------------------------------------------------------------------

    def label(self, model: str, neuron: str, text: str, source: str = "user", notes: str | None = None) -> dict:
        """Label a neuron ``LAYER:CHANNEL`` of a model (id or name); every label is kept in label_history.

        The label shown is the winner by (user over tools, newest, text): the same rule ``merge`` uses, so a
        merged catalog agrees with one that saw both sets of labels.
        """
        if not isinstance(text, str) or not text.strip():
            raise UsageError("a label needs non-empty text.")
        layer, channel = split_neuron(neuron) if isinstance(neuron, str) and ":" in neuron else (None, None)
        if layer is None:
            raise UsageError(f"neuron {neuron!r} is not of the form LAYER:CHANNEL (for example 'conv3:12').")
        with self.transaction():
            model_id = self.model_id(model)
            if not self.value("SELECT 1 FROM layers WHERE model = ? AND name = ?", (model_id, layer)):
                known = [r[0] for r in self.conn.execute("SELECT name FROM layers WHERE model = ?", (model_id,))]
                raise UnknownNeuronError(
                    f"model {model} has no layer {layer!r} in this catalog{close_matches_hint(layer, known)}"
                    " (layers come from added circuits or add_model(layers=...))"
                )
            self.conn.execute("INSERT OR IGNORE INTO neurons (model, layer, channel) VALUES (?, ?, ?)",
                              (model_id, layer, channel))
            self._set_label(model_id, layer, channel, text.strip(), source, notes)
            return self.rows("SELECT * FROM neurons WHERE model = ? AND layer = ? AND channel = ?",
                             (model_id, layer, channel))[0]

    def _set_label(self, model, layer, channel, text, source, notes):
        key = (model, layer, channel)
        current = self.conn.execute(
            "SELECT label, label_source, label_created FROM neurons WHERE model = ? AND layer = ? AND channel = ?", key
        ).fetchone()
        if current["label"] == text and current["label_source"] == source and notes is None:
            return  # re-adding the same circuit, or echoing the catalog's own label back, changes nothing
        created = now()
        self.conn.execute("INSERT OR IGNORE INTO label_history VALUES (?, ?, ?, ?, ?, ?)", (*key, text, source, created))
        new, old = (source == "user", created, text), (current["label_source"] == "user", current["label_created"], current["label"])
        if current["label"] is None or new > old:
            self.conn.execute(
                """UPDATE neurons SET label = ?, label_source = ?, label_created = ?, notes = coalesce(?, notes)
                   WHERE model = ? AND layer = ? AND channel = ?""",
                (text, source, created, notes, *key),
            )
        elif notes is not None:
            self.conn.execute("UPDATE neurons SET notes = coalesce(notes, ?) WHERE model = ? AND layer = ? AND channel = ?",
                              (notes, *key))


def decode(row: dict, columns=("parameters", "info", "members", "evidence", "faithfulness", "kernel")) -> dict:
    """Turn the JSON-text columns of a row back into values."""
    for column in columns:
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row
