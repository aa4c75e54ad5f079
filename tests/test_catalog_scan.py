"""The catalog's scan table (schema v6): a done part of a shard, its merge, and the v5 -> v6 upgrade."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from circuits.catalog import Catalog, schema
from circuits.errors import CatalogError

SHA = hashlib.sha256(b"weights of a scanned model").hexdigest()


def part(key="a" * 64, layer="conv1", seconds=0.25) -> dict:
    return {"id": key, "model": SHA, "layer": layer, "what": "circuits", "arguments": {"top_k": 8, "depth": 1},
            "tool_version": "0.1.0", "layer_kind": "activation", "channels": 16, "rows": 16, "seconds": seconds}


def test_a_done_part_is_recorded_once_with_its_arguments_as_json(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        cat.add_model(SHA, "zoo:x", layers=["conv1"])
        cat.add_scan_shard(part())
        cat.add_scan_shard(part(seconds=9.0))  # the same part again: a no-op, the first measurement stays
        assert cat.scan_shards() == [{**part(), "arguments": {"depth": 1, "top_k": 8}}]
        raw = cat.value("SELECT arguments FROM scan_shards")
    assert raw == '{"depth":1,"top_k":8}'


def test_merge_unions_the_scan_shards_of_two_catalogs(tmp_path):
    for name, key in (("a.db", "a" * 64), ("b.db", "b" * 64)):
        with Catalog(tmp_path / name) as cat:
            cat.add_model(SHA, "zoo:x")
            cat.add_scan_shard(part(key))
    with Catalog(tmp_path / "a.db") as cat:
        assert cat.merge(tmp_path / "b.db")["scan_shards"] == 1
        assert [r["id"] for r in cat.scan_shards()] == ["a" * 64, "b" * 64]
        assert cat.merge(tmp_path / "b.db")["scan_shards"] == 0


def test_a_version_5_catalog_is_backed_up_and_gains_the_scan_table(tmp_path, monkeypatch):
    path = tmp_path / "v5.db"
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
        with Catalog(path) as cat:
            cat.add_model(SHA, "zoo:x", layers=["conv1"])
            assert "scan_shards" not in cat.db.table_names()
    with pytest.raises(CatalogError, match="older than this circuits"):  # a read never upgrades
        Catalog(path, readonly=True)
    with Catalog(path) as cat:
        assert cat.value("SELECT max(version) FROM schema_version") == 6
        assert cat.scan_shards() == []
        assert cat.value("SELECT name FROM models") == "zoo:x"
        cat.add_scan_shard(part())
    with Catalog(path, readonly=True) as cat:  # the upgraded schema passes the check against a new catalog's
        assert len(cat.scan_shards()) == 1
    backup = sqlite3.connect(tmp_path / "v5.db.bak-v5")
    assert backup.execute("SELECT max(version) FROM schema_version").fetchone() == (5,)
    assert "scan_shards" not in [r[0] for r in backup.execute("SELECT name FROM sqlite_master")]
    backup.close()
