"""The catalog library: content-hash ids, idempotent writes, labels, search, merge, export, file checks."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

import circuits
from circuits.catalog import Catalog, circuit_id, schema
from circuits.errors import CatalogError, UsageError

SHA_A = hashlib.sha256(b"weights of model A").hexdigest()
SHA_B = hashlib.sha256(b"weights of model B").hexdigest()
TIME_COLUMNS = {"created", "label_created", "applied"}


def make_circuit(model: str, target: str, sources: list[str], labels=None, scale=1.0, method="direct"):
    """An ``extract --json``-shaped circuit: target fed by each source with a 3x3 kernel."""
    labels = labels or {}
    nodes = [{"id": target, "layer": target.split(":")[0], "channel": int(target.split(":")[1]), "depth": 0,
              "label": labels.get(target)}]
    edges = []
    for k, source in enumerate(sources):
        layer, channel = source.split(":")
        nodes.append({"id": source, "layer": layer, "channel": int(channel), "depth": 1, "label": labels.get(source)})
        kernel = [[scale * (k + 1) * (i - j) / 10 for j in range(3)] for i in range(3)]
        edges.append({"source": source, "target": target, "weight": sum(map(sum, kernel)) + 0.5 * k, "kernel": kernel})
    return {"model": model, "target": target, "method": method, "nodes": nodes, "edges": edges,
            "parameters": {"top_k": len(sources)}}


def make_motifs(model, kind, target, members, transform=None, score=0.9):
    return {"model": model, "motifs": [{"kind": kind, "transform": transform, "target": target, "members": members,
                                        "score": score, "evidence": {"pairs": [members]}}]}


def timeless(path) -> dict:
    """Every row of every table, minus the columns that record when it was written."""
    with Catalog(path, create=False) as cat:
        tables = cat.export("json")["tables"]
    out = {}
    for name, rows in tables.items():
        cleaned = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows]
        out[name] = sorted(cleaned, key=lambda r: json.dumps(r, sort_keys=True))
    return out


def file_bytes(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


@pytest.fixture
def cat(tmp_path):
    with Catalog(tmp_path / "catalog.db") as catalog:
        catalog.add_model(SHA_A, "zoo:plain-cnn", architecture="PlainCNN", parameters=1234)
        yield catalog


def test_new_catalog_is_wal_with_foreign_keys_and_marked_as_ours(cat):
    assert cat.value("PRAGMA journal_mode") == "wal"
    assert cat.value("PRAGMA foreign_keys") == 1
    assert cat.value("PRAGMA busy_timeout") >= 1000
    assert cat.value("PRAGMA application_id") == schema.APPLICATION_ID
    assert cat.value("SELECT max(version) FROM schema_version") == schema.current_version()


def test_memory_is_refused_instead_of_creating_a_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="':memory:' would create one"):
        Catalog(":memory:")
    assert list(tmp_path.iterdir()) == []


def test_circuit_round_trips_through_show(cat):
    payload = make_circuit("zoo:plain-cnn", "conv2:3", ["conv1:0", "conv1:5"], labels={"conv2:3": "curve"})
    cid = cat.add_circuit(SHA_A, payload)
    shown = cat.show(cid)
    assert shown["model"] == SHA_A and shown["target"] == "conv2:3" and shown["method"] == "direct"
    assert shown["parameters"] == {"top_k": 2}
    expected_nodes = sorted(({k: n[k] for k in ("id", "layer", "channel", "depth", "label")} for n in payload["nodes"]),
                            key=lambda n: n["id"])
    assert shown["nodes"] == expected_nodes
    assert shown["edges"] == sorted(payload["edges"], key=lambda e: (e["source"], e["target"]))


def test_readding_a_circuit_is_a_noop_and_the_id_ignores_order_and_labels(cat):
    payload = make_circuit("zoo:plain-cnn", "conv2:3", ["conv1:0", "conv1:5", "conv1:7"])
    cid = cat.add_circuit(SHA_A, payload)
    shuffled = dict(payload, nodes=payload["nodes"][::-1], edges=payload["edges"][::-1])
    relabelled = dict(payload, nodes=[dict(n, label="something") for n in payload["nodes"]])
    assert cat.add_circuit(SHA_A, shuffled) == cid
    assert circuit_id(SHA_A, relabelled) == cid
    assert cat.value("SELECT count(*) FROM circuits") == 1
    assert cat.value("SELECT count(*) FROM edges") == 3


def test_circuit_id_changes_with_content_and_model(cat):
    payload = make_circuit("m", "conv2:3", ["conv1:0"])
    nudged = json.loads(json.dumps(payload))
    nudged["edges"][0]["kernel"][0][0] += 1e-9
    ids = {circuit_id(SHA_A, payload), circuit_id(SHA_A, nudged), circuit_id(SHA_B, payload),
           circuit_id(SHA_A, dict(payload, method="expanded")), circuit_id(SHA_A, dict(payload, parameters={"top_k": 9}))}
    assert len(ids) == 5
    assert all(len(i) == 64 for i in ids)


def test_same_inputs_give_the_same_rows(tmp_path):
    for name in ("one.db", "two.db"):
        with Catalog(tmp_path / name) as cat:
            cat.add_model(SHA_A, "zoo:plain-cnn")
            cid = cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"], labels={"conv1:1": "edge"}))
            cat.add_motifs(SHA_A, make_motifs("zoo:plain-cnn", "union", "conv2:0", ["conv1:1"], "reflect"), circuit_id=cid)
            cat.add_module(cid, "def circuit(x):\n    return relu(x)\n", {"r2": 0.98})
    assert timeless(tmp_path / "one.db") == timeless(tmp_path / "two.db")


def test_unknown_model_id_is_registered_with_the_payload_name(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        cat.add_circuit(SHA_B, make_circuit("zoo:other", "fc:1", ["conv:2"]))
        assert cat.rows("SELECT id, name FROM models") == [{"id": SHA_B, "name": "zoo:other"}]
        cid = cat.add_circuit("zoo:other", make_circuit("zoo:other", "fc:2", ["conv:2"]))
        assert cat.value("SELECT model FROM circuits WHERE id = ?", (cid,)) == SHA_B


def test_a_failed_transaction_leaves_nothing_behind(cat):
    good = make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"])
    bad = make_circuit("zoo:plain-cnn", "conv2:1", ["conv1:1"])
    bad["edges"].append({"source": "conv1:9", "target": "conv2:1", "weight": 1.0, "kernel": [[1.0]]})
    with pytest.raises(CatalogError, match="not among the circuit's nodes"):
        with cat.transaction():
            cat.add_circuit(SHA_A, good)
            cat.add_circuit(SHA_A, bad)
    assert cat.stats()["counts"]["circuits"] == 0
    assert cat.stats()["counts"]["edges"] == 0
    assert cat.stats()["counts"]["neurons"] == 0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p.pop("target"), "no 'target'"),
        (lambda p: p.update(target="conv2"), "LAYER:CHANNEL"),
        (lambda p: p["edges"].append(dict(p["edges"][0])), "appears twice"),
        (lambda p: p["edges"][0].update(kernel=[[float("nan")]]), "kernel"),
        (lambda p: p["nodes"][0].update(depth="deep"), "depth"),
    ],
)
def test_malformed_circuits_are_refused_with_one_sentence(cat, mutate, message):
    payload = make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"])
    mutate(payload)
    with pytest.raises(CatalogError, match=message):
        cat.add_circuit(SHA_A, payload)
    assert cat.value("SELECT count(*) FROM circuits") == 0


def test_motifs_and_modules_are_idempotent_and_linked(cat):
    cid = cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"]))
    motifs = make_motifs("zoo:plain-cnn", "equivariance", "conv2:0", ["conv1:1", "conv1:2"], "rotate90")
    first = cat.add_motifs(SHA_A, motifs, circuit_id=cid[:10])
    assert cat.add_motifs(SHA_A, motifs, circuit_id=cid) == first
    module = cat.add_module(cid, "def circuit(x):\n    return x\n", {"r2": 0.5})
    assert cat.add_module(cid, "def circuit(x):\n    return x\n", {"r2": 0.5}) == module
    shown = cat.show(cid)
    assert shown["motif_instances"] == first and shown["modules"] == [module]
    assert cat.show("equivariance/rotate90")["instances"][0]["members"] == ["conv1:1", "conv1:2"]
    with pytest.raises(UsageError, match="unknown circuit"):
        cat.add_module("ffff" * 16, "x = 1", {})


def test_search_finds_neurons_by_label_words_motifs_and_module_code(cat):
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"]))
    cat.label("zoo:plain-cnn", "conv2:0", "Curve detector, 45 degrees")
    cat.label("zoo:plain-cnn", "conv1:1", "high-low frequency detector", notes="fires on textured edges")
    cat.add_motifs(SHA_A, make_motifs("zoo:plain-cnn", "union", "conv2:0", ["conv1:1", "conv1:2"], "reflect"))
    cid = cat.list("circuits")[0]["id"]
    cat.add_module(cid, "def circuit(x):\n    return torch.relu(gabor_bank(x))\n", {"r2": 0.9})

    assert [r["id"] for r in cat.search("curve")] == ["zoo:plain-cnn/conv2:0"]
    assert {r["id"] for r in cat.search("detector")} == {"zoo:plain-cnn/conv2:0", "zoo:plain-cnn/conv1:1"}
    assert [r["id"] for r in cat.search("textured")] == ["zoo:plain-cnn/conv1:1"]  # notes
    assert [r["id"] for r in cat.search("curve frequency")] == []  # every word must match
    assert [r["kind"] for r in cat.search("mirror")] == ["motif"]
    assert [r["kind"] for r in cat.search("gabor_bank")] == ["module"]
    assert cat.search('"curve* ) (') == cat.search("curve")  # user text is never FTS syntax
    with pytest.raises(UsageError, match="no words"):
        cat.search("  ()  ")


def test_search_follows_relabelling(cat):
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"]))
    cat.label("zoo:plain-cnn", "conv2:0", "curve detector")
    cat.label("zoo:plain-cnn", "conv2:0", "circle detector")
    assert cat.search("curve") == []
    assert [r["text"] for r in cat.search("circle")] == ["circle detector"]


def test_user_labels_beat_tool_labels_and_history_keeps_both(cat):
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"]))
    cat.label("zoo:plain-cnn", "conv1:1", "edge", source="user")
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:1", ["conv1:1"], labels={"conv1:1": "blob"}))
    neuron = cat.show("zoo:plain-cnn/conv1:1")
    assert (neuron["label"], neuron["label_source"]) == ("edge", "user")
    assert sorted((h["label"], h["source"]) for h in neuron["history"]) == [("blob", "extract"), ("edge", "user")]


def test_label_rejects_unknown_models_and_layers_with_suggestions(cat):
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"]))
    with pytest.raises(UsageError, match="did you mean 'zoo:plain-cnn'"):
        cat.label("zoo:plain-cn", "conv1:1", "x")
    with pytest.raises(UsageError, match="did you mean 'conv1'"):
        cat.label("zoo:plain-cnn", "conv11:1", "x")
    with pytest.raises(UsageError, match="LAYER:CHANNEL"):
        cat.label("zoo:plain-cnn", "conv1", "x")


def _run_a(cat):
    cat.add_model(SHA_A, "zoo:plain-cnn", architecture="PlainCNN")
    with cat.transaction():
        cid = cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"],
                                                  labels={"conv2:0": "curve"}))
        cat.add_motifs(SHA_A, make_motifs("zoo:plain-cnn", "union", "conv2:0", ["conv1:1", "conv1:2"], "reflect"),
                       circuit_id=cid)
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:5", ["conv1:3"]))
    cat.label("zoo:plain-cnn", "conv1:1", "vertical edge", notes="from Alice's notebook")
    cat.label("zoo:plain-cnn", "conv1:2", "horizontal edge")


def _run_b(cat):
    cat.add_model(SHA_A, "zoo:plain-cnn", spec="zoo:plain-cnn")
    cat.add_model(SHA_B, "zoo:resnet-tiny", architecture="ResNet")
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:5", ["conv1:3"]))  # same circuit as run A
    with cat.transaction():
        cid = cat.add_circuit(SHA_B, make_circuit("zoo:resnet-tiny", "layer1.relu:4", ["stem:0", "stem:1"], scale=2))
        cat.add_motifs(SHA_B, make_motifs("zoo:resnet-tiny", "union", "layer1.relu:4", ["stem:0", "stem:1"], "reflect"),
                       circuit_id=cid)
    cat.label("zoo:plain-cnn", "conv1:1", "diagonal edge")  # later than run A's label: wins
    cat.label("zoo:resnet-tiny", "stem:0", "colour contrast")


def test_merge_equals_a_catalog_built_from_both_runs_in_either_order(tmp_path):
    paths = {name: tmp_path / f"{name}.db" for name in ("a", "b", "both", "b_then_a")}
    with Catalog(paths["a"]) as cat:
        _run_a(cat)
    with Catalog(paths["b"]) as cat:
        _run_b(cat)
    with Catalog(paths["both"]) as cat:
        _run_a(cat)
        _run_b(cat)
    b_bytes = file_bytes(paths["b"])
    with Catalog(paths["a"]) as cat:
        added = cat.merge(paths["b"])
        assert added["circuits"] == 1 and added["models"] == 1  # the shared circuit is not duplicated
        assert cat.merge(paths["b"]) == dict.fromkeys(schema.TABLES, 0)  # merging again changes nothing
    assert file_bytes(paths["b"]) == b_bytes  # the colleague's file is only read
    with Catalog(paths["b_then_a"]) as cat:
        cat.merge(paths["b"])
        cat.merge(paths["a"])

    expected = timeless(paths["both"])
    assert timeless(paths["a"]) == expected
    merged_other_way = timeless(paths["b_then_a"])
    assert merged_other_way["neurons"] == expected["neurons"]
    assert merged_other_way["circuits"] == expected["circuits"] and merged_other_way["edges"] == expected["edges"]
    with Catalog(paths["a"]) as cat:
        neuron = cat.show("zoo:plain-cnn/conv1:1")
        assert (neuron["label"], neuron["notes"]) == ("diagonal edge", "from Alice's notebook")
        assert len(neuron["history"]) == 2
        assert [r["id"] for r in cat.search("diagonal")] == ["zoo:plain-cnn/conv1:1"]
        assert cat.search("vertical") == []  # the FTS index follows the merged label


def test_merge_refuses_itself_and_foreign_files_without_touching_either(tmp_path, cat):
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"]))
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE circuits (id TEXT)")
    conn.commit()
    conn.close()
    before, ours = file_bytes(foreign), timeless(cat.path)
    with pytest.raises(CatalogError, match="not a circuits catalog"):
        cat.merge(foreign)
    with pytest.raises(UsageError, match="into itself"):
        cat.merge(cat.path)
    assert file_bytes(foreign) == before
    assert timeless(cat.path) == ours


@pytest.mark.parametrize(
    "content, message",
    [
        (b"model,layer\nzoo,conv1\n", "not an SQLite database"),
        (b"SQLite format 3\x00" + bytes(range(256)) * 16, "damaged or unreadable"),
    ],
)
def test_non_catalog_files_raise_and_are_not_modified(tmp_path, content, message):
    path = tmp_path / "catalog.db"
    path.write_bytes(content)
    with pytest.raises(CatalogError, match=message):
        Catalog(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.db"]


def test_a_foreign_sqlite_database_raises_and_is_not_modified(tmp_path):
    path = tmp_path / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE neurons (model TEXT, label TEXT)")
    conn.execute("INSERT INTO neurons VALUES ('x', 'y')")
    conn.commit()
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CatalogError, match="SQLite database but not a circuits catalog"):
        Catalog(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_missing_catalog_is_not_created_when_create_is_false(tmp_path):
    with pytest.raises(CatalogError, match="no catalog at"):
        Catalog(tmp_path / "absent.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_a_newer_catalog_is_refused(tmp_path):
    path = tmp_path / "c.db"
    with Catalog(path) as cat:
        cat.conn.execute("INSERT INTO schema_version VALUES (99, 'later', '9.9')")
    before = file_bytes(path)
    with pytest.raises(CatalogError, match="newer"):
        Catalog(path)
    assert file_bytes(path) == before


def test_an_older_catalog_is_backed_up_then_upgraded_in_place(tmp_path, monkeypatch):
    path, version = tmp_path / "c.db", schema.current_version()
    with Catalog(path) as cat:
        _run_a(cat)
    old_rows = timeless(path)
    migration = "ALTER TABLE models ADD COLUMN license TEXT;\nUPDATE models SET license = 'unknown';"
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, migration])
    with Catalog(path) as cat:
        assert cat.value("SELECT max(version) FROM schema_version") == version + 1
        assert cat.value("SELECT license FROM models") == "unknown"
        assert cat.search("vertical")[0]["id"] == "zoo:plain-cnn/conv1:1"
    backup = tmp_path / f"c.db.bak-v{version}"
    conn = sqlite3.connect(backup)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == version
    assert conn.execute("SELECT count(*) FROM edges").fetchone()[0] == len(old_rows["edges"])
    conn.close()
    with Catalog(path) as cat:  # opening again neither migrates nor backs up again
        assert cat.value("SELECT count(*) FROM schema_version") == version + 1
    assert sorted(p.name for p in tmp_path.iterdir() if ".bak" in p.name) == [backup.name]


V1_CODE = "def circuit(x):\n    return relu(gabor_bank(x))\n"


def write_v1_catalog(path, payload):
    """A version-1 catalog written by hand: the released V1 script, then rows with plain sqlite3 (one row per
    circuit node), holding one circuit, a user label on conv1:1 and one module."""
    cid, t = circuit_id(SHA_A, payload), "2026-01-01T00:00:00.000000+00:00"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0])
    conn.execute("INSERT INTO schema_version VALUES (1, ?, '0.1.0')", (t,))
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO models (id, name, created, tool_version) VALUES (?, 'zoo:plain-cnn', ?, ?)",
                 (SHA_A, t, circuits.__version__))
    conn.execute("INSERT INTO circuits VALUES (?, ?, ?, 'direct', ?, ?)",
                 (cid, SHA_A, payload["target"], json.dumps(payload["parameters"], separators=(",", ":")), t))
    for node in payload["nodes"]:
        conn.execute("INSERT OR IGNORE INTO layers VALUES (?, ?)", (SHA_A, node["layer"]))
        conn.execute("INSERT INTO neurons (model, layer, channel) VALUES (?, ?, ?)", (SHA_A, node["layer"], node["channel"]))
        conn.execute("INSERT INTO circuit_nodes VALUES (?, ?, ?, ?, ?)",
                     (cid, node["id"], node["layer"], node["channel"], node["depth"]))
    for edge in payload["edges"]:
        conn.execute("INSERT INTO edges VALUES (?, ?, ?, ?, ?)", (cid, edge["source"], edge["target"], edge["weight"],
                                                                  json.dumps(edge["kernel"], separators=(",", ":"))))
    conn.execute("UPDATE neurons SET label = 'vertical edge', label_source = 'user', label_created = ? "
                 "WHERE layer = 'conv1' AND channel = 1", (t,))
    conn.execute("INSERT INTO label_history VALUES (?, 'conv1', 1, 'vertical edge', 'user', ?)", (SHA_A, t))
    faithfulness = {"r2": 0.9}
    content = json.dumps({"circuit": cid, "code": V1_CODE, "faithfulness": faithfulness}, sort_keys=True,
                         separators=(",", ":"))
    conn.execute("INSERT INTO modules VALUES (?, ?, ?, ?, ?)",
                 (hashlib.sha256(content.encode()).hexdigest(), cid, V1_CODE, json.dumps(faithfulness), t))
    conn.execute("COMMIT")
    conn.close()
    return cid


def test_a_version_1_catalog_moves_circuit_nodes_into_a_json_column(tmp_path):
    payload = make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:2", "conv1:1", "conv1:10"])
    path = tmp_path / "v1.db"
    cid = write_v1_catalog(path, payload)
    with Catalog(path) as cat:
        assert cat.value("SELECT max(version) FROM schema_version") == schema.current_version()
        assert "circuit_nodes" not in cat.db.table_names()
        assert json.loads(cat.value("SELECT nodes FROM circuits")) == [
            {"depth": 1, "id": "conv1:1"}, {"depth": 1, "id": "conv1:10"}, {"depth": 1, "id": "conv1:2"},
            {"depth": 0, "id": "conv2:0"}]
        assert [(n["id"], n["label"]) for n in cat.show(cid)["nodes"]] == [
            ("conv1:1", "vertical edge"), ("conv1:10", None), ("conv1:2", None), ("conv2:0", None)]
        assert [r["id"] for r in cat.search("vertical")] == ["zoo:plain-cnn/conv1:1"]  # indexes rebuilt
        assert [r["kind"] for r in cat.search("gabor_bank")] == ["module"]
        cat.label("zoo:plain-cnn", "conv1:1", "diagonal edge")  # and kept in step afterwards
        assert cat.search("vertical") == [] and len(cat.search("diagonal")) == 1
        assert cat.rows("SELECT count(*) AS n FROM images, neuron_images") == [{"n": 0}]  # v4's tables, empty
    backup = sqlite3.connect(tmp_path / "v1.db.bak-v1")
    assert backup.execute("SELECT count(*) FROM circuit_nodes").fetchone() == (4,)
    backup.close()

    with Catalog(tmp_path / "fresh.db") as fresh:  # the same content, written by this version
        fresh.add_model(SHA_A, "zoo:plain-cnn")
        assert fresh.add_circuit(SHA_A, payload) == cid
        fresh.label("zoo:plain-cnn", "conv1:1", "vertical edge")
        fresh.add_module(cid, V1_CODE, {"r2": 0.9})
        fresh.label("zoo:plain-cnn", "conv1:1", "diagonal edge")
    assert timeless(path) == timeless(tmp_path / "fresh.db")


def test_show_neuron_lists_the_circuits_it_is_in(cat):
    a = cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"]))
    b = cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:1", ["conv1:1"]))
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:2", ["conv1:10"]))  # conv1:1 is a prefix of it
    cat.add_circuit(SHA_B, make_circuit("zoo:other", "conv2:3", ["conv1:1"]))  # another model
    shown = cat.show("zoo:plain-cnn/conv1:1")
    assert (shown["circuits"], shown["target_of"]) == (sorted([a, b]), [])
    shown = cat.show("zoo:plain-cnn/conv2:1")
    assert (shown["circuits"], shown["target_of"]) == ([b], [b])


def test_full_text_indexes_are_found_by_sqlite_utils_and_datasette(cat):
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1"]))
    cat.label("zoo:plain-cnn", "conv1:1", "curve detector")
    assert {t: cat.table(t).detect_fts() for t in ("neurons", "motifs", "modules")} == {
        "neurons": "neurons_fts", "motifs": "motifs_fts", "modules": "modules_fts"}
    assert [r["label"] for r in cat.table("neurons").search("curve")] == ["curve detector"]
    datasette_utils = pytest.importorskip("datasette.utils")
    sql, params = datasette_utils.detect_fts_sql("neurons")
    assert cat.rows(sql, params) == [{"name": "neurons_fts"}]


def test_sql_export_rebuilds_an_identical_catalog(tmp_path):
    with Catalog(tmp_path / "a.db") as cat:
        _run_a(cat)
        _run_b(cat)
        script = cat.export("sql")
        original = cat.export("json")
    conn = sqlite3.connect(tmp_path / "copy.db")
    conn.executescript(script)
    conn.close()
    with Catalog(tmp_path / "copy.db", create=False) as copy:
        assert copy.export("json") == original
        assert [r["id"] for r in copy.search("diagonal")] == ["zoo:plain-cnn/conv1:1"]


def test_csv_export_has_one_row_per_table_row(cat):
    cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"]))
    lines = cat.export("csv", "edges").splitlines()
    assert lines[0] == "circuit,source,target,weight,kernel"
    assert len(lines) == 3
    with pytest.raises(UsageError, match="one table"):
        cat.export("csv")


def test_lists_and_families(cat):
    assert cat.list("circuits") == []
    cid = cat.add_circuit(SHA_A, make_circuit("zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"]))
    cat.add_model(SHA_B, "zoo:resnet-tiny")
    a = cat.add_motifs(SHA_A, make_motifs("zoo:plain-cnn", "union", "conv2:0", ["conv1:1", "conv1:2"], "reflect"))
    b = cat.add_motifs(SHA_B, make_motifs("zoo:resnet-tiny", "union", "l1:0", ["stem:1", "stem:2"], "reflect"))
    family = cat.add_family("union/reflect", [*a, *b], "mirror unions")
    assert cat.add_family("union/reflect", [*b, *a], "mirror unions") == family
    assert cat.list("circuits")[0]["id"] == cid and cat.list("circuits")[0]["edges"] == 2
    assert cat.list("motifs") == [{"id": "union/reflect", "kind": "union", "transform": "reflect", "instances": 2,
                                   "models": 2, "description": cat.show("union/reflect")["description"]}]
    assert cat.list("families")[0]["instances"] == 2
    assert cat.show(family[:8])["instances"] == sorted([*a, *b])
    with pytest.raises(UsageError, match="unknown kind"):
        cat.list("motif")


def test_re_adding_overlapping_circuits_of_one_model_ignores_existing_layers_and_neurons(tmp_path):
    """Regression: sqlite-utils' insert_all(ignore=True) looked up a rowid in WITHOUT ROWID tables."""
    from circuits.catalog import Catalog

    def payload(target, sources):
        def node(n, depth):
            return {"id": n, "layer": n.split(":")[0], "channel": int(n.split(":")[1]), "depth": depth, "label": None}

        return {"model": "m", "target": target, "method": "weights",
                "nodes": [node(target, 0), *(node(s, 1) for s in sources)],
                "edges": [{"source": s, "target": target, "weight": 0.5, "kernel": [[0.5]]} for s in sources]}  # fmt: skip

    with Catalog(tmp_path / "c.db") as cat, cat.transaction():
        cat.add_model("a" * 64, "m", layers=["input", "conv1", "conv2", "conv3", "fc"])
        cat.add_circuit("a" * 64, payload("conv3:1", ["conv2:4", "conv2:5"]))
        cat.add_circuit("a" * 64, payload("conv3:2", ["conv2:4"]))  # a neuron already there
        cat.add_circuit("a" * 64, payload("fc:2", ["conv3:6", "conv3:16"]))
    with Catalog(tmp_path / "c.db") as cat:
        assert cat.stats()["counts"]["circuits"] == 3


def test_re_adding_one_row_to_a_without_rowid_table_is_a_noop(cat):
    """sqlite-utils looks up the rowid of a single ignored row; layers and family members have none."""
    cat.add_model(SHA_A, "zoo:plain-cnn", layers=["conv1"])
    cat.add_model(SHA_A, "zoo:plain-cnn", layers=["conv1"])
    [instance] = cat.add_motifs(SHA_A, make_motifs("zoo:plain-cnn", "union", None, ["conv1:1"], "reflect"))
    family = cat.add_family("union/reflect", [instance], "one member")
    assert cat.add_family("union/reflect", [instance], "one member") == family
    assert cat.rows("SELECT name FROM layers") == [{"name": "conv1"}]
    assert cat.value("SELECT count(*) FROM motif_family_members") == 1


def test_a_circuit_stored_before_v3_is_filled_in_when_added_again_and_then_emits_as_extracted(tmp_path):
    from circuits.compile import emit
    from circuits.extraction import extract
    from circuits.pipeline import emit_stored

    circuit = extract("planted:union", "union:0", depth=2, top_k=3)
    payload = circuit.to_json()
    path = tmp_path / "old.db"
    cid = write_v1_catalog(path, payload)  # the old schema keeps only ids, depths, weights and kernels
    with Catalog(path) as cat:
        assert cat.value("SELECT graph FROM circuits WHERE id = ?", (cid,)) == "{}"
        with pytest.raises(UsageError, match="re-extract"):
            emit_stored(cat, cid)
        assert cat.add_circuit(SHA_A, payload) == cid  # same content, same id: now with its attributes
        assert emit_stored(cat, cid)[0].code == emit(circuit).code
    assert (tmp_path / "old.db.bak-v1").exists()
