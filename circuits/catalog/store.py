"""Open, validate, migrate and write a catalog file, through sqlite-utils.

Several processes may write one catalog at once: the file is in WAL mode, every write transaction starts
with ``BEGIN IMMEDIATE`` (so writers queue on the busy timeout instead of deadlocking), and each library
call is one transaction. ``Catalog.transaction()`` groups calls, so that one ``extract`` or ``motifs`` run
lands whole or not at all.

A catalog opened with ``readonly=True`` is opened by SQLite URI ``mode=ro`` (or ``immutable=1`` where a
WAL-mode file sits on a read-only mount, which ``mode=ro`` cannot open): it is never switched to WAL, never
migrated, never created, and a write through it raises :class:`CatalogReadOnlyError`.

We open the ``sqlite3`` connection ourselves (URI, busy timeout, autocommit mode) and wrap it in a
``sqlite_utils.Database``: every sqlite-utils call then runs inside our transaction (its own ``atomic()``
blocks become savepoints), and nothing commits behind our back.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import sqlite3
from datetime import UTC, datetime

from sqlite_utils import Database
from sqlite_utils.db import Table

from circuits import arguments
from circuits.catalog import schema
from circuits.catalog.payload import canonical, circuit_rows, motif_rows, sha256, split_neuron
from circuits.errors import (
    CatalogError,
    CatalogReadOnlyError,
    UnknownNeuronError,
    UsageError,
    close_matches_hint,
)

BUSY_TIMEOUT_MS = 60_000
SQLITE_MAGIC = b"SQLite format 3\x00"
BATCH_SIZE = 999  # rows per multi-row INSERT; sqlite-utils caps a statement at 999 values (199 edges)

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


def database(conn: sqlite3.Connection) -> Database:
    """sqlite-utils over one of our connections.

    Plugins are not loaded: scanning entry points costs ~0.2 s per process, and a plugin's
    ``prepare_connection`` hook could change a shared catalog's connection behind our back.
    """
    if not hasattr(Database, "atomic"):  # 3.x wraps each insert in ``with conn:``, committing our transaction
        raise CatalogError("the catalog needs sqlite-utils 4 or later; install it with `pip install 'sqlite-utils>=4,<5'`.")
    return Database(conn, execute_plugins=False)


def _uri(path: str, mode: str) -> str:
    return pathlib.Path(path).absolute().as_uri() + f"?mode={mode}"


def _enable_wal(db) -> None:
    """Switch to WAL (a no-op when the file already is). Several processes creating one catalog at once can
    get SQLITE_BUSY here without SQLite calling the busy handler (a journal-mode change that would
    deadlock), so it is retried for as long as the busy timeout allows."""
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_uri(path: str) -> str:
    """The URI that opens ``path`` for reading only: ``mode=ro``, or ``immutable=1`` where that cannot open it.

    ``mode=ro`` cannot open a WAL-mode file whose folder is not writable (SQLite wants to create PATH-shm), as
    on a read-only mount; such a file is opened ``immutable=1``, unless a non-empty PATH-wal holds
    transactions that ``immutable`` would not see.
    """
    uri = _uri(path, "ro")
    probe = sqlite3.connect(uri, uri=True)
    try:
        probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return uri
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", None) != "SQLITE_CANTOPEN":
            return uri  # not SQLite, or damaged: the caller's first query says so
    finally:
        probe.close()
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal):
        raise CatalogError(
            f"{path} has unfinished transactions in {wal} and its folder is not writable, so SQLite cannot "
            "read them; copy the catalog with its -wal and -shm files somewhere writable."
        )
    return uri + "&immutable=1"


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    """Our connection to ``path``: autocommit mode, busy timeout, and read-only by URI when asked.

    A read-only connection also sets ``PRAGMA trusted_schema = OFF``: SQL in the file's schema may then call
    only functions SQLite marks harmless. A writable one cannot: SQLite counts FTS5 tables as unsafe inside
    triggers, and the catalog's own full-text triggers write to them; what guards writes is ``check_schema``,
    which every open runs first (``inspect_file``).
    """
    try:
        uri = read_uri(path) if readonly else _uri(path, "rwc")
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        if readonly:
            conn.execute("PRAGMA trusted_schema = OFF")
        return conn
    except sqlite3.Error as exc:
        raise storage_error(exc, path) or CatalogError(
            f"cannot open {path} ({exc}); check the path and its permissions.") from None


def storage_error(exc: BaseException, path: str, writing: bool = True) -> CatalogError | None:
    """A full disk (or a failed write) under an SQLite call, as one sentence naming the file and the fix.

    SQLite undoes the whole transaction when a write fails, so the sentence can say nothing was saved. Reading
    fails too where the disk is full and the catalog's PATH-shm (which SQLite reads a WAL-mode file through)
    is not there yet. ``None`` for any other error.
    """
    name = getattr(exc, "sqlite_errorname", None) or ""
    undone = "this write to the catalog was undone and nothing of it was saved" if writing else "nothing was written"
    if name == "SQLITE_FULL":
        return CatalogError(
            f"the disk holding {path} is full, so {undone}; free some space on that disk (or move the catalog, "
            "with its -wal and -shm files, to one with room) and run the command again."
        )
    if name in ("SQLITE_IOERR_SHMOPEN", "SQLITE_IOERR_SHMSIZE"):
        return CatalogError(
            f"SQLite cannot make room for {path}-shm, which it needs to open the catalog: the disk holding it is "
            f"full (or the file size limit, ulimit -f, is reached), and {undone}; free some space on that disk "
            "and run the command again."
        )
    if name.startswith("SQLITE_IOERR") and writing:
        return CatalogError(
            f"writing {path} failed ({exc}, {name}), so {undone}; check the free space, the file size limit "
            "(ulimit -f) and the disk, then run the command again."
        )
    return None


def why_unwritable(path: str) -> str | None:
    """Why ``path`` (an existing file, or a new one in its folder) cannot be written; ``None`` if it can.

    Opening for writing changes neither the bytes nor the mtime; ``os.access`` alone would miss nothing as a
    user, but root passes every permission check and is stopped only by read-only mounts and immutable files,
    which opening reports too.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY))
        except OSError as exc:
            return f"the file cannot be written ({exc.strerror.lower()})"
    elif not os.path.isdir(folder):
        return f"its folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable, and SQLite writes its journal (PATH-wal, PATH-shm) there"
    return None


def check_writable(path, fix: str = "copy it somewhere writable or pass another --catalog") -> None:
    """Raise :class:`CatalogReadOnlyError` naming the file and why, unless the catalog at ``path`` (or a new
    one there) can be written. Commands that write call this before doing any work."""
    path = os.fspath(path)
    reason = why_unwritable(path)
    if reason is not None:
        raise CatalogReadOnlyError(f"{path} is read-only: {reason}; {fix}.")


def inspect_file(path: str) -> int | None:
    """The schema version of the catalog at ``path``; ``None`` for a new (absent or empty) file.

    Reads only: a file that is not a circuits catalog raises :class:`CatalogError` and is left untouched.
    """
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise CatalogError(f"{path} is a directory, not a catalog file; pass a path like {path}/catalog.db.")
    if not os.path.isfile(path):  # SQLite fails on a device with a bare "disk I/O error"
        raise CatalogError(f"{path} is not a regular file (a device or a pipe), not a catalog; pass a path like "
                           "catalog.db.")  # fmt: skip
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise CatalogError(f"cannot read {path} ({exc.strerror.lower()}); check its permissions.") from None
    if not header:
        return None
    if header != SQLITE_MAGIC:
        raise CatalogError(f"{path} is not an SQLite database, so not a circuits catalog; pass a catalog file or a new path.")
    conn = connect(path, readonly=True)
    try:
        return _version_of(database(conn), path)
    finally:
        conn.close()


def _version_of(db: Database, path: str) -> int | None:
    try:
        tables = db.table_names()
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        if not tables and application_id == 0:
            return None
        if application_id != schema.APPLICATION_ID or "schema_version" not in tables:
            raise CatalogError(
                f"{path} is an SQLite database but not a circuits catalog; pass a catalog file or a new path."
            )
        version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        if not version:
            raise CatalogError(f"{path} records no schema version, so it is damaged; restore it from a backup.")
        if version <= schema.current_version():
            check_schema(db.conn, path, version)
        return version
    except sqlite3.DatabaseError as exc:
        raise storage_error(exc, path, writing=False) or CatalogError(
            f"{path} is a damaged or unreadable SQLite file ({exc}); restore it from a backup.") from None


def check_schema(conn: sqlite3.Connection, path: str, version: int) -> None:
    """Refuse a catalog whose schema is not exactly the one circuits creates for ``version``.

    A catalog is data that people download and merge, but SQLite runs what a file's schema says: a trigger
    fires on our inserts (deleting labels, writing elsewhere in the file), a view or an altered table answers
    in place of ours, and defaults, generated columns and index expressions run on every write. So every
    trigger, view, table and index must be one that the migrations create (``schema.expected_objects``),
    with the same SQL, apart from SQLite's own statistics tables and constraint indexes.
    """
    expected = schema.expected_objects(version)
    seen = set()
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                        " ORDER BY type NOT IN ('trigger', 'view'), type DESC, name").fetchall()  # code first
    for kind, name, table, sql in rows:
        if (kind == "index" and sql is None and name.startswith("sqlite_autoindex_")) or (
                kind == "table" and name in schema.SQLITE_TABLES):
            continue
        want = expected.get((kind, name))
        if want is None:
            raise CatalogError(
                f"{path} holds a {kind} {name!r} that circuits does not create, and SQL in a catalog's schema runs "
                "against your data when it is read or written, so the catalog is not opened; delete the file, or "
                f"if you trust its maker drop the {kind} (sqlite3 {path} 'DROP {kind.upper()} \"{name}\"') and "
                "run the command again."
            )
        if want != (table, schema.normal_sql(sql)):
            raise CatalogError(
                f"{path}'s {kind} {name!r} is not the one circuits creates (its SQL was changed), and SQL in a "
                "catalog's schema runs against your data when it is read or written, so the catalog is not opened; "
                "ask its maker for a catalog written by circuits, or restore yours from a backup."
            )
        seen.add((kind, name))
    missing = sorted(expected.keys() - seen)
    if missing:
        kind, name = missing[0]
        raise CatalogError(
            f"{path} lacks the {kind} {name!r} that circuits creates, so it was edited or damaged; restore it "
            "from a backup."
        )


def backup_path(path: str, version: int) -> str:
    candidate, n = f"{path}.bak-v{version}", 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}.bak-v{version}.{n}"
    return candidate


class Store:
    """The connection, its transactions, and the writes. :class:`circuits.catalog.Catalog` adds reads."""

    conn: sqlite3.Connection | None = None
    db: Database | None = None

    def __init__(self, path, create: bool = True, readonly: bool = False):
        self.path = os.fspath(arguments.path(path, "the catalog path"))
        if self.path == ":memory:":  # sqlite3's name for an in-memory database would be a file of that name here
            raise UsageError("a catalog is a file, and ':memory:' would create one named ':memory:'; pass a path "
                             "(a temporary directory's catalog.db for a throwaway one)")  # fmt: skip
        self.readonly = readonly
        self._depth = 0
        self._tables: dict[str, Table] = {}
        self._known = set()  # (model, layer, channel) and (model, layer) rows known to exist; cleared on rollback
        version = inspect_file(self.path)
        if version is None and (readonly or not create):
            raise CatalogError(
                f"there is no catalog at {self.path}; pass --catalog PATH (or set CIRCUITS_CATALOG), "
                "or create one with `circuits extract ... --catalog PATH`."
            )
        if version is not None and version > schema.current_version():
            raise CatalogError(
                f"{self.path} has catalog schema version {version}, newer than this circuits "
                f"({tool_version()}) understands ({schema.current_version()}); upgrade circuits."
            )
        if readonly and version < schema.current_version():
            raise CatalogError(
                f"{self.path} has catalog schema version {version}, older than this circuits' "
                f"({schema.current_version()}); open it once writable to upgrade it "
                f"(`circuits catalog upgrade --catalog {self.path}` backs it up first)."
            )
        if not readonly:
            check_writable(self.path, "copy it somewhere writable, or open it with readonly=True to only read it")
        self.conn = connect(self.path, readonly)
        try:
            self.db = database(self.conn)
            self._setup(version)
        except BaseException as exc:
            self.conn.close()
            error = storage_error(exc, self.path)
            if error is not None:
                raise error from None
            raise

    def _setup(self, version):
        db = self.db
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self.readonly:
            db.execute("PRAGMA query_only = ON")  # a write through cat.db fails too, even if the file could take it
            return
        if version is not None and version < schema.current_version():
            backup = sqlite3.connect(backup_path(self.path, version))  # sqlite-utils has no backup API
            with backup:
                self.conn.backup(backup)
            backup.close()
        _enable_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes; WAL keeps it consistent
        db.execute("PRAGMA foreign_keys = ON")
        if version == schema.current_version():
            return
        with self.transaction():  # re-read under the write lock: another process may have just migrated
            current = _version_of(db, self.path) or 0
            for number in range(current + 1, schema.current_version() + 1):
                schema.migrate(db, number)
                self.table("schema_version").insert({"version": number, "applied": now(), "tool_version": tool_version()})
            db.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")

    # -- connection ------------------------------------------------------------------------------------

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = self.db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        """One all-or-nothing write: the outermost call holds the write lock; nested calls are savepoints.

        sqlite-utils' ``atomic()`` would open the outer transaction with a plain (deferred) ``BEGIN``, which
        lets two writers deadlock on the upgrade to a write lock; so the outer level is ours, and nested
        levels are ``atomic()`` savepoints. A write that fails for want of space undoes the whole transaction
        and raises :class:`CatalogError` saying so (``storage_error``).
        """
        self.check_writable()
        if self._depth:
            self._depth += 1
            try:
                with self.db.atomic():
                    yield self
            except BaseException:
                self._known.clear()
                raise
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
            self.db.execute("COMMIT")
        except BaseException as exc:
            self._known.clear()
            with contextlib.suppress(sqlite3.Error):  # a failed write may have undone it already
                self.db.rollback()
            error = storage_error(exc, self.path)
            if error is not None:
                raise error from None
            raise
        finally:
            self._depth = 0

    def check_writable(self):
        """Raise :class:`CatalogReadOnlyError` if this catalog was opened read-only."""
        if self.readonly:
            raise CatalogReadOnlyError(
                f"{self.path} is open read-only, so nothing can be written to it; open it with Catalog(path) to write."
            )

    def table(self, name: str) -> Table:
        """The sqlite-utils table (cached: ``db[name]`` reads ``sqlite_master`` on every call)."""
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = self.db.table(name)
        return table

    def rows(self, sql: str, params=()) -> list[dict]:
        return list(self.db.query(sql, params))

    def value(self, sql: str, params=()):
        row = self.db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _insert(self, table: str, columns: tuple[str, ...], rows, ignore: bool = False):
        """``insert_all`` in list mode (a header row of column names, then value tuples): no dict per row."""
        if rows:
            self.table(table).insert_all([columns, *rows], batch_size=BATCH_SIZE, ignore=ignore)

    def _add_keys(self, table: str, columns: tuple[str, ...], rows):
        """Make sure rows with these primary keys exist: ``INSERT ... ON CONFLICT DO NOTHING``.

        An upsert of key columns only, rather than ``insert_all(ignore=True)``: when sqlite-utils 4.2 ignores a
        single row it looks up that row's rowid, which the WITHOUT ROWID tables (layers, label_history,
        motif_family_members) do not have.
        """
        if rows:
            self.table(table).upsert_all([columns, *rows], pk=columns, batch_size=BATCH_SIZE)

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
        fields = {"architecture": architecture, "spec": spec, "parameters": parameters,
                  "info": None if info is None else canonical(info)}
        with self.transaction():
            models = self.table("models")
            models.insert({"id": id, "name": name, **fields, "created": now(), "tool_version": tool_version()},
                          ignore=True)
            models.update(id, fields, conversions={c: f"coalesce({c}, ?)" for c in fields})  # fill gaps only
            if layers:
                self._add_keys("layers", ("model", "name"), [(id, str(n)) for n in layers])
        return id

    def neuron_labels(self, model: str) -> dict[str, tuple[str, str]]:
        """``{"LAYER:CHANNEL": (label, source)}`` for every labelled neuron of a model (by id or name): the
        label each neuron shows (a person's, source ``"user"``, wins over a tool's). An unknown model has none."""
        found = self._find_model(model)
        if found is None:
            return {}
        rows = self.conn.execute("SELECT layer, channel, label, label_source FROM neurons WHERE model = ? "
                                 "AND label IS NOT NULL ORDER BY layer, channel", [found]).fetchall()  # fmt: skip
        return {f"{layer}:{channel}": (label, source) for layer, channel, label, source in rows}

    def model_id(self, ref: str) -> str:
        """A model's id from its id, its name, or a unique id prefix (at least 4 characters)."""
        found = self._find_model(ref)
        if found is None:
            names = [r["name"] for r in self.table("models").rows_where(select="name", order_by="name")]
            raise UsageError(f"unknown model {ref!r} in {self.path}{close_matches_hint(str(ref), names)}")
        return found

    def _find_model(self, ref) -> str | None:
        if not isinstance(ref, str) or not ref:
            return None
        models = self.table("models")
        if models.count_where("id = ?", [ref]):
            return ref
        ids = [r["id"] for r in models.rows_where("name = ?", [ref], select="id", order_by="id")]
        if not ids and len(ref) >= 4 and re.fullmatch(r"[0-9a-fA-F]+", ref):
            ids = [r["id"] for r in models.rows_where("id LIKE ? || '%'", [ref.lower()], select="id", order_by="id")]
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
            circuits = self.table("circuits")
            stored = self.value("SELECT graph FROM circuits WHERE id = ?", (rows.id,))
            if stored is not None and (stored != "{}" or rows.graph == "{}"):
                return rows.id
            if stored is not None:
                self._fill_in(rows)  # stored before schema v3: keep the id, add what was left out
            else:
                circuits.insert({"id": rows.id, "model": model, "target": rows.target, "method": rows.method,
                                 "parameters": rows.parameters, "created": now(), "nodes": rows.nodes_json,
                                 "graph": rows.graph, "edge_attributes": rows.edge_attributes})  # fmt: skip
                self._add_neurons(model, [(n[1], n[2]) for n in rows.nodes])
                # the one hot bulk path: a plain executemany on sqlite-utils' own connection, inside our
                # transaction (insert_all's per-batch schema look-up and savepoint cost ~20% of an ingest)
                self.conn.executemany(
                    'INSERT INTO "edges" ("circuit", "source", "target", "weight", "kernel") VALUES (?, ?, ?, ?, ?)',
                    [(rows.id, *e) for e in rows.edges],
                )
            for node, text in sorted(rows.labels.items()):
                layer, channel = split_neuron(node)
                self._set_label(model, layer, channel, text, "extract", None)
        return rows.id

    def _fill_in(self, rows):
        """Give a circuit stored without attributes (schema < 3) the ones a re-added copy carries."""
        self.conn.execute("UPDATE circuits SET graph = ?, nodes = ?, edge_attributes = ? WHERE id = ?",
                          (rows.graph, rows.nodes_json, rows.edge_attributes, rows.id))

    def _add_neurons(self, model, neurons):
        """Make sure layer and neuron rows exist (nothing deletes them, so what we saw committed stays true)."""
        known = self._known
        layers = sorted({(model, layer) for layer, _ in neurons} - known)
        fresh = [(model, layer, channel) for layer, channel in neurons if (model, layer, channel) not in known]
        self._add_keys("layers", ("model", "name"), layers)
        self._add_keys("neurons", ("model", "layer", "channel"), fresh)
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
            motifs, instances = [], []
            for row in rows:
                description = MOTIF_DESCRIPTIONS.get(row.kind, f"A {row.kind} motif.")
                if row.transform:
                    description += f" Transform: {row.transform}."
                motifs.append((row.motif_id, row.kind, row.transform, description))
                instances.append((row.instance_id, row.motif_id, model, circuit_id, row.target, row.members,
                                  row.score, row.evidence, now()))
            self._insert("motifs", ("id", "kind", "transform", "description"), motifs, ignore=True)
            self._insert("motif_instances", ("id", "motif", "model", "circuit", "target", "members", "score",
                                             "evidence", "created"), instances, ignore=True)
        return [row.instance_id for row in rows]

    def add_module(self, circuit_id: str, code: str, faithfulness: dict) -> str:
        """Store emitted code for a circuit with its measured faithfulness; the id hashes all three."""
        if not isinstance(code, str) or not code.strip():
            raise UsageError("a module needs its code as a non-empty string.")
        if not isinstance(faithfulness, dict):
            raise UsageError(f"faithfulness must be a dict of measurements, got {type(faithfulness).__name__}.")
        with self.transaction():
            circuit_id = self._full_id("circuits", circuit_id, "circuit")
            module_id = sha256(canonical({"circuit": circuit_id, "code": code, "faithfulness": faithfulness}))
            self.table("modules").insert({"id": module_id, "circuit": circuit_id, "code": code,
                                          "faithfulness": canonical(faithfulness), "created": now()}, ignore=True)
        return module_id

    def add_pictures(self, model_id: str, pictures: list[dict], model_name: str | None = None) -> list[str]:
        """Store pictures of a model's neurons; returns their ``neuron_images`` ids, in input order.

        Each picture is ``{"neuron": "LAYER:CHANNEL", "kind": "optimised" | "diverse" | "negative" |
        "example", "rank": int, "png": bytes, "method": dict, "activation": float | None, "agreement":
        float | None}``: ``rank`` is the copy (optimised 0, diverse 1, ...) or the example's rank, from 0;
        ``method`` says how it was made (objective, parameterisation, steps, seed, data). Each PNG is stored
        once (``images``, by sha256); the picture's layer and neuron rows are made if new, and an unknown
        ``model_id`` is registered with ``model_name``. One transaction; adding the same pictures again is a
        no-op. A NaN or infinite activation or agreement is stored as NULL.
        """
        from circuits.catalog.pictures import check_pictures

        checked = check_pictures(pictures)  # Pillow reads the headers before the write lock is taken
        with self.transaction():
            model = self._ensure_model(model_id, model_name)
            ids = [p.id(model) for p in checked]
            self._add_neurons(model, [(p.layer, p.channel) for p in checked])
            images = {p.image: (p.image, p.png, p.width, p.height, p.mode) for p in checked}
            self.conn.executemany('INSERT OR IGNORE INTO "images" ("id", "png", "width", "height", "mode") '
                                  "VALUES (?, ?, ?, ?, ?)", sorted(images.values()))  # fmt: skip
            created = now()
            self.conn.executemany(
                'INSERT OR IGNORE INTO "neuron_images" ("id", "model", "layer", "channel", "kind", "rank", "image", '
                '"method", "activation", "agreement", "created") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                [(i, model, p.layer, p.channel, p.kind, p.rank, p.image, p.method_json, p.activation, p.agreement,
                  created) for i, p in zip(ids, checked)])  # fmt: skip
        return ids

    def add_family(self, motif_id: str, instance_ids, name: str, description: str | None = None) -> str:
        """Group motif instances (usually from different models) into one cross-model family."""
        instance_ids = sorted({self._full_id("motif_instances", i, "motif instance") for i in instance_ids})
        if not instance_ids:
            raise UsageError("a motif family needs at least one motif instance.")
        with self.transaction():
            if not self.table("motifs").count_where("id = ?", [motif_id]):
                known = [r["id"] for r in self.table("motifs").rows_where(select="id")]
                raise UsageError(f"unknown motif {motif_id!r}{close_matches_hint(motif_id, known)}")
            family_id = sha256(canonical({"motif": motif_id, "instances": instance_ids}))
            self.table("motif_families").insert({"id": family_id, "motif": motif_id, "name": name,
                                                 "description": description, "created": now()}, ignore=True)
            self._add_keys("motif_family_members", ("family", "instance"), [(family_id, i) for i in instance_ids])
        return family_id

    def _full_id(self, table: str, ref, what: str) -> str:
        if not isinstance(ref, str) or not ref:
            raise UsageError(f"a {what} id must be a non-empty string, got {ref!r}.")
        rows = self.table(table)
        if rows.count_where("id = ?", [ref]):
            return ref
        ids = [r["id"] for r in rows.rows_where("id LIKE ? || '%'", [ref], select="id", limit=3)]
        if len(ids) == 1 and len(ref) >= 4:
            return ids[0]
        if len(ids) > 1:
            raise UsageError(f"{what} id {ref!r} is ambiguous; give more characters.")
        raise UsageError(f"unknown {what} {ref!r} in {self.path}.")

    # -- scans -----------------------------------------------------------------------------------------

    SCAN_COLUMNS = ("id", "model", "layer", "what", "arguments", "tool_version", "layer_kind", "channels", "rows",
                    "seconds")  # fmt: skip

    def add_scan_shard(self, row: dict) -> None:
        """Mark one part of a scan's shard done (``circuits scan``): call it in the transaction that wrote the
        part's rows. ``row`` has :attr:`SCAN_COLUMNS` (``arguments`` a dict); adding a done part again is a no-op."""
        values = [canonical(row["arguments"]) if c == "arguments" else row[c] for c in self.SCAN_COLUMNS]
        with self.transaction():
            self.conn.execute(f"INSERT OR IGNORE INTO scan_shards ({', '.join(self.SCAN_COLUMNS)}, created) "
                              f"VALUES ({', '.join('?' * (len(values) + 1))})", [*values, now()])  # fmt: skip

    def scan_shards(self) -> list[dict]:
        """Every recorded part of every scan, by id, with its measured ``seconds`` and ``arguments`` decoded."""
        rows = self.rows(f"SELECT {', '.join(self.SCAN_COLUMNS)} FROM scan_shards ORDER BY id")
        return [decode(row, ("arguments",)) for row in rows]

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
            layers = self.table("layers")
            if not layers.count_where("model = ? AND name = ?", [model_id, layer]):
                known = [r["name"] for r in layers.rows_where("model = ?", [model_id], select="name")]
                raise UnknownNeuronError(
                    f"model {model} has no layer {layer!r} in this catalog{close_matches_hint(layer, known)}"
                    " (layers come from added circuits or add_model(layers=...))"
                )
            self._add_keys("neurons", ("model", "layer", "channel"), [(model_id, layer, channel)])
            self._set_label(model_id, layer, channel, text.strip(), source, notes)
            return decode(self.rows("SELECT * FROM neurons WHERE model = ? AND layer = ? AND channel = ?",
                                    (model_id, layer, channel))[0], ("label_evidence",))

    def add_labels(self, model: str, labels: list[dict], source: str = "circuits label",
                   model_name: str | None = None) -> dict:
        """Store automatic labels of a model's neurons, each with what backs it; returns how many fared how.

        Each label is ``{"neuron": "LAYER:CHANNEL", "label": str, "score": float, "concept": str, "evidence":
        dict}``: ``evidence`` says how the label was reached (method, auroc, iou, the control's score, the probe
        data's spec, the tool's version) and must be plain JSON. Every label is kept in ``label_history`` with
        its evidence; the neuron shows it unless a person's label (source ``"user"``, ``Catalog.label``) is
        there, which an automatic label never replaces, or a newer one. One transaction: a bad label anywhere
        raises :class:`~circuits.catalog.labels.LabelError` naming ``labels[i]`` and nothing is written. Adding
        what this ``source`` last said of a neuron again (same text, score, concept and evidence) writes nothing.
        The layer and neuron rows are made if new, and an unknown ``model`` is registered with ``model_name``,
        as ``add_pictures`` does.

        Returns ``{"written": n, "kept_user": n, "kept_newer": n, "unchanged": n}``, one count per label:
        shown now; recorded while the neuron keeps its user label; recorded while it keeps a tool's label
        written later (a merged catalog's clock ahead of this one's); and nothing to write.
        """
        from circuits.catalog.labels import check_labels, check_source

        source, checked = check_source(source), check_labels(labels)
        counts = dict.fromkeys(("written", "kept_user", "kept_newer", "unchanged"), 0)
        counts["unchanged"] = checked.count(None)  # exact repeats within this call
        checked = [one for one in checked if one is not None]
        with self.transaction():
            model_id = self._ensure_model(model, model_name)
            self._add_neurons(model_id, [(one.layer, one.channel) for one in checked])
            created = now()
            for one in checked:
                key = (model_id, one.layer, one.channel)
                last = self.db.execute("""SELECT label, evidence FROM label_history
                                          WHERE model = ? AND layer = ? AND channel = ? AND source = ?
                                          ORDER BY created DESC, label DESC LIMIT 1""", (*key, source)).fetchone()
                if last == (one.text, one.evidence_json):
                    counts["unchanged"] += 1
                else:
                    counts[self._set_label(*key, one.text, source, None, one.evidence_json, created)] += 1
        return counts

    def _set_label(self, model, layer, channel, text, source, notes, evidence=None, created=None) -> str:
        """Record a label in the history and show it if it wins by (user over tools, newest, text).

        ``evidence`` is the canonical JSON of what backs an automatic label (``None`` for a person's or
        extract's). Returns ``"written"`` (shown now), ``"kept_user"`` / ``"kept_newer"`` (recorded only), or
        ``"unchanged"``.
        """
        key = (model, layer, channel)
        label, label_source, label_created = self.db.execute(
            "SELECT label, label_source, label_created FROM neurons WHERE model = ? AND layer = ? AND channel = ?", key
        ).fetchone()
        if evidence is None and label == text and label_source == source and notes is None:
            return "unchanged"  # re-adding the same circuit, or echoing the catalog's own label back, changes nothing
        created = created or now()
        self.db.execute("""INSERT INTO label_history (model, layer, channel, label, source, created, evidence)
                           VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""", (*key, text, source, created, evidence))
        # plain UPDATEs: Table.update() re-reads the table's schema twice per call, tripling the cost of a label
        if label is None or (source == "user", created, text) > (label_source == "user", label_created, label):
            self.db.execute("""UPDATE neurons SET label = ?, label_source = ?, label_created = ?, label_evidence = ?,
                                 notes = coalesce(?, notes)
                               WHERE model = ? AND layer = ? AND channel = ?""",
                            (text, source, created, evidence, notes, *key))
            return "written"
        if notes is not None:
            self.db.execute("UPDATE neurons SET notes = coalesce(notes, ?) WHERE model = ? AND layer = ? AND channel = ?",
                            (notes, *key))
        return "kept_user" if label_source == "user" else "kept_newer"


def decode(row: dict, columns=("parameters", "nodes", "info", "members", "evidence", "faithfulness", "kernel",
                               "graph", "edge_attributes", "label_evidence")) -> dict:
    """Turn the JSON-text columns of a row back into values."""
    for column in columns:
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row
