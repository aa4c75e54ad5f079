"""Hostile catalogs: a downloaded catalog is data, and SQL in its schema never runs against the user's data.

Each row of ``HOSTILE`` is a real circuits catalog edited the way an attacker would (plain SQL, or
``writable_schema`` for what plain SQL refuses). Most payloads act through a trigger on a table our writes
touch: they empty the user's label history, overwrite labels and record themselves in a ``pwned`` table.
``test_the_payloads_run_when_the_schema_is_not_checked`` shows they fire through our own write path once the
check is switched off; the other tests show that every command, reading or writing, and ``merge`` from
either side, refuses the file in one ``Error:`` line (exit 1) naming the object, with both files unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from circuits.catalog import Catalog, store
from circuits.cli import main

SHA = hashlib.sha256(b"model A").hexdigest()
PAYLOAD = "INSERT INTO pwned VALUES ('ran'); DELETE FROM label_history; UPDATE neurons SET label = 'pwned';"


@dataclass(frozen=True)
class Hostile:
    id: str
    sql: str  # run on a copy of a genuine catalog, with writable_schema on
    names: str  # the object the refusal must name
    fires: bool = True  # the payload fires when circuits writes to it unchecked (the test shows it)


HOSTILE = [
    Hostile("trigger-after-insert-on-circuits", "CREATE TRIGGER evil AFTER INSERT ON circuits BEGIN " + PAYLOAD + " END;",
            "evil"),
    Hostile("trigger-on-labels", "CREATE TRIGGER evil_label BEFORE INSERT ON label_history BEGIN " + PAYLOAD + " END;",
            "evil_label"),
    # a trigger that keeps the name and the job of one of ours (the full-text index) and adds its payload
    Hostile("our-fts-trigger-rewritten", """DROP TRIGGER neurons_ai;
        CREATE TRIGGER "neurons_ai" AFTER INSERT ON "neurons" BEGIN
          INSERT INTO "neurons_fts" (rowid, "label", "notes") VALUES (new.rowid, new."label", new."notes");
          """ + PAYLOAD + " END;", "neurons_ai"),
    # a name SQLite reserves for itself, written straight into sqlite_master
    Hostile("trigger-named-like-sqlite-internals",
            "INSERT INTO sqlite_master VALUES ('trigger', 'sqlite_autoindex_evil', 'circuits', 0, "
            "'CREATE TRIGGER sqlite_autoindex_evil AFTER INSERT ON circuits BEGIN " + PAYLOAD.replace("'", "''") + " END');",
            "sqlite_autoindex_evil"),
    Hostile("trigger-calling-a-function",  # load_extension is off in Python's sqlite3, so it fails rather than runs
            "CREATE TRIGGER evil_call BEFORE INSERT ON layers BEGIN SELECT load_extension('./evil'); END;",
            "evil_call", fires=False),
    # a view answering in place of one of our tables: merge would copy what it makes up
    Hostile("view-in-place-of-a-table", """DROP TABLE motif_family_members;
        CREATE VIEW motif_family_members AS SELECT 'made up' AS family, id AS instance FROM motif_instances;""",
            "motif_family_members", fires=False),
    Hostile("extra-view", "CREATE VIEW evil_view AS SELECT load_extension('./evil') AS x;", "evil_view", fires=False),
    # our table with a generated column and a default expression added (virtual columns change no stored row)
    Hostile("generated-column-and-default", """UPDATE sqlite_master SET sql = replace(sql, 'created TEXT NOT NULL',
        'created TEXT NOT NULL DEFAULT (hex(randomblob(16))), pwn TEXT GENERATED ALWAYS AS (zeroblob(1000000000)) VIRTUAL')
        WHERE type = 'table' AND name = 'models';""", "models", fires=False),
    Hostile("extra-index-on-an-expression", "CREATE INDEX evil_index ON neurons(length(label) * 0 + channel);",
            "evil_index", fires=False),
    # the pictures' table (schema v4) with a default that fills the disk on the next insert
    Hostile("picture-table-with-a-default", """UPDATE sqlite_master SET sql = replace(sql, 'png BLOB NOT NULL',
        'png BLOB NOT NULL DEFAULT (zeroblob(1000000000))') WHERE type = 'table' AND name = 'images';""",
            "images", fires=False),
    Hostile("trigger-on-pictures", "CREATE TRIGGER evil_picture AFTER INSERT ON neuron_images BEGIN " + PAYLOAD + " END;",
            "evil_picture", fires=False),  # fires on add_pictures, which the payload test does not call
]


def catalog_with_labels(path: Path, target: str = "conv2:0") -> Path:
    with Catalog(path) as cat:
        cat.add_circuit(SHA, {"model": "planted:a", "target": target, "method": "weights", "parameters": {},
                              "nodes": [{"id": target, "depth": 0}, {"id": "conv1:1", "depth": 1}],
                              "edges": [{"source": "conv1:1", "target": target, "weight": 0.5, "kernel": [[0.5]]}]})
        cat.label("planted:a", target, f"the user's label for {target}")
        cat.add_motifs(SHA, {"model": "planted:a", "motifs": [{"kind": "union", "transform": None, "target": target,
                                                               "members": ["conv1:1"], "score": 0.5, "evidence": {}}]})
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def make_hostile(path: Path, case: Hostile, target: str = "conv2:7") -> Path:
    catalog_with_labels(path, target)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    conn.executescript(("CREATE TABLE pwned (what TEXT);" if case.fires else "") + case.sql)
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()
    conn = sqlite3.connect(path)  # a fresh connection reads the edited schema, as a victim's would
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def snapshot(path: Path) -> dict:
    """The file's bytes (with any -wal) and its rows: what must not change."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = list(conn.iterdump())
    conn.close()
    wal = Path(f"{path}-wal")
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "wal": wal.read_bytes() if wal.exists() else b"", "rows": rows}


def pwned(path: Path) -> int:
    """How often a payload ran (its table exists only in the rows whose payload writes it)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM pwned").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def assert_refused(result, case: Hostile):
    lines = result.output.strip().splitlines()
    assert result.exit_code in (1, 2), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert repr(case.names) in lines[0] and "internal error" not in lines[0], result.output


@pytest.fixture
def user_catalog(tmp_path):
    return catalog_with_labels(tmp_path / "lab.db")


@pytest.mark.parametrize("case", [c for c in HOSTILE if c.fires], ids=lambda c: c.id)
def test_the_payloads_run_when_the_schema_is_not_checked(tmp_path, case, monkeypatch):
    """Without check_schema the payload fires on a plain add_circuit: the user's labels are gone."""
    path = make_hostile(tmp_path / "alice.db", case)
    monkeypatch.setattr(store, "check_schema", lambda *args: None)
    with Catalog(path) as cat:
        cat.add_circuit(SHA, {"model": "planted:a", "target": "conv3:0", "method": "weights", "parameters": {},
                              "nodes": [{"id": "conv3:0", "depth": 0}, {"id": "conv2:7", "depth": 1}],
                              "edges": [{"source": "conv2:7", "target": "conv3:0", "weight": 1.0, "kernel": [[1.0]]}],
                              })  # fmt: skip
        cat.label("planted:a", "conv3:0", "a new label")
    assert pwned(path) > 0


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.id)
def test_every_command_refuses_a_hostile_catalog_and_changes_nothing(tmp_path, user_catalog, case):
    hostile = make_hostile(tmp_path / "alice.db", case)
    before, ours = snapshot(hostile), snapshot(user_catalog)
    cid = hashlib.sha256(b"x").hexdigest()[:8]
    commands = [
        ["catalog", "stats"], ["catalog", "list"], ["catalog", "show", cid], ["catalog", "search", "label"],
        ["catalog", "export", "--format", "json"], ["catalog", "label", "planted:a", "conv2:7", "overwritten"],
        ["catalog", "merge", str(user_catalog)],  # the hostile file as the catalog written to
    ]  # fmt: skip
    for argv in commands:
        assert_refused(CliRunner().invoke(main, [*argv, "--catalog", str(hostile)]), case)
    # the hostile file as the colleague's catalog merged into the user's
    assert_refused(CliRunner().invoke(main, ["catalog", "merge", str(hostile), "--catalog", str(user_catalog)]), case)
    assert snapshot(hostile) == before and pwned(hostile) == 0
    assert snapshot(user_catalog) == ours


@pytest.mark.parametrize("case", HOSTILE[:1] + HOSTILE[5:6], ids=lambda c: c.id)
def test_extract_refuses_to_record_into_a_hostile_catalog(tmp_path, case):
    hostile = make_hostile(tmp_path / "alice.db", case)
    before = snapshot(hostile)
    result = CliRunner().invoke(main, ["extract", "planted:union", "--neuron", "union:0", "--catalog", str(hostile)])
    assert_refused(result, case)
    assert snapshot(hostile) == before and pwned(hostile) == 0


def test_the_library_refuses_too_and_names_the_fix(tmp_path):
    from circuits.errors import CatalogError

    hostile = make_hostile(tmp_path / "alice.db", HOSTILE[0])
    for readonly in (False, True):
        with pytest.raises(CatalogError, match=r"holds a trigger 'evil' that circuits does not create.*DROP TRIGGER"):
            Catalog(hostile, readonly=readonly)


def test_what_sqlite_and_the_user_add_harmlessly_is_accepted(tmp_path, user_catalog):
    """ANALYZE's statistics tables and a copy re-indented by another tool are not refused."""
    conn = sqlite3.connect(user_catalog)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    copy = tmp_path / "reindented.db"
    shutil.copy(user_catalog, copy)
    conn = sqlite3.connect(copy, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, '  ', char(9)) WHERE type = 'table'")
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()
    for path in (user_catalog, copy):
        with Catalog(path) as cat:
            assert cat.label("planted:a", "conv2:0", "still writable")["label"] == "still writable"
        with Catalog(path, readonly=True) as cat:
            assert cat.stats()["counts"]["circuits"] == 1


def test_read_only_connections_distrust_the_schema(user_catalog):
    """trusted_schema=OFF: SQL in a file's schema may call only functions SQLite marks harmless. Writable
    connections keep it on (SQLite counts our own FTS5 triggers unsafe otherwise); check_schema guards them."""
    with Catalog(user_catalog, readonly=True) as cat:
        assert cat.value("PRAGMA trusted_schema") == 0
