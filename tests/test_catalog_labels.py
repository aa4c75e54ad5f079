"""Label provenance in the catalog (schema v5): automatic labels with their evidence, a person's label as the
stronger claim, history, merge, export, stats, the canned query, hostile text, and the v4 -> v5 upgrade.

Expected JSON is spelt here with ``json.dumps`` (not the catalog's ``canonical``), and expected winners follow
the rule written out in the test, so the checks do not lean on the code they check.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3

import pytest
from click.testing import CliRunner

from circuits.catalog import Catalog, schema
from circuits.catalog.labels import LabelError
from circuits.catalog.serve import CANNED_QUERIES
from circuits.cli import main
from circuits.errors import CatalogError, UsageError

SHA_A = hashlib.sha256(b"weights of model A").hexdigest()
MODEL = "zoo:plain-cnn"
LAYERS = ["conv1", "conv2"]
PROBE = {"method": "probe-auroc", "auroc": 0.93, "iou": 0.41, "control_score": 0.52,
         "data": "toyworld:256:seed=0", "tool_version": "0.9.0"}


def auto(neuron, text="curve detector", score=0.93, concept="curve", evidence=None) -> dict:
    return {"neuron": neuron, "label": text, "score": score, "concept": concept,
            "evidence": PROBE if evidence is None else evidence}


def spelt(concept, score, evidence) -> str:
    """What label_evidence holds, written independently: key-sorted compact JSON, non-ASCII kept."""
    return json.dumps({"concept": concept, "evidence": evidence, "score": float(score)}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def neuron_row(cat, neuron) -> dict:
    layer, channel = neuron.rsplit(":", 1)
    return cat.rows("SELECT label, label_source, label_evidence FROM neurons WHERE model = ? AND layer = ? "
                    "AND channel = ?", (SHA_A, layer, int(channel)))[0]


def history(cat, neuron) -> list[tuple]:
    layer, channel = neuron.rsplit(":", 1)
    return [tuple(r.values()) for r in cat.rows(
        "SELECT label, source, evidence FROM label_history WHERE model = ? AND layer = ? AND channel = ? "
        "ORDER BY created, label", (SHA_A, layer, int(channel)))]


def everything(path) -> dict:
    with Catalog(path, readonly=True) as cat:
        return cat.export("json")["tables"]


@pytest.fixture
def cat(tmp_path):
    with Catalog(tmp_path / "catalog.db") as catalog:
        catalog.add_model(SHA_A, MODEL, layers=LAYERS)
        yield catalog


# -- add_labels ------------------------------------------------------------------------------------------


def test_an_automatic_label_is_shown_with_its_evidence_and_kept_in_history(cat):
    counts = cat.add_labels(MODEL, [auto("conv1:1"), auto("conv2:7", "edge", 0.5, "edge", {"method": "iou"})])
    assert counts == {"written": 2, "kept_user": 0, "kept_newer": 0, "unchanged": 0}
    assert neuron_row(cat, "conv1:1") == {"label": "curve detector", "label_source": "circuits label",
                                          "label_evidence": spelt("curve", 0.93, PROBE)}
    assert history(cat, "conv2:7") == [("edge", "circuits label", spelt("edge", 0.5, {"method": "iou"}))]
    shown = cat.show(f"{MODEL}/conv1:1")  # decoded for readers
    assert shown["label_evidence"] == {"concept": "curve", "score": 0.93, "evidence": PROBE}
    assert shown["history"][0]["evidence"] == shown["label_evidence"]


def test_an_automatic_label_never_replaces_a_user_label_but_is_kept_in_history(cat):
    cat.label(MODEL, "conv1:1", "arc")
    counts = cat.add_labels(MODEL, [auto("conv1:1"), auto("conv1:2")])
    assert counts == {"written": 1, "kept_user": 1, "kept_newer": 0, "unchanged": 0}
    assert neuron_row(cat, "conv1:1") == {"label": "arc", "label_source": "user", "label_evidence": None}
    assert history(cat, "conv1:1") == [("arc", "user", None),
                                       ("curve detector", "circuits label", spelt("curve", 0.93, PROBE))]


def test_a_person_labelling_after_the_tool_wins_and_the_tools_evidence_goes_with_its_label(cat):
    cat.add_labels(MODEL, [auto("conv1:1")])
    row = cat.label(MODEL, "conv1:1", "arc", notes="checked by hand")
    assert (row["label"], row["label_source"], row["label_evidence"]) == ("arc", "user", None)
    assert [h[2] is None for h in history(cat, "conv1:1")] == [False, True]  # the person's row has no evidence
    assert cat.add_labels(MODEL, [auto("conv1:1", "circle")])["kept_user"] == 1  # a later tool label stays below


def test_a_newer_automatic_label_replaces_an_older_tool_label(cat):
    cat.add_labels(MODEL, [auto("conv1:1")], source="labeller-a")
    cat.add_labels(MODEL, [auto("conv1:1", "circle", 0.7, "circle")], source="labeller-b")
    assert neuron_row(cat, "conv1:1") == {"label": "circle", "label_source": "labeller-b",
                                          "label_evidence": spelt("circle", 0.7, PROBE)}
    assert [h[:2] for h in history(cat, "conv1:1")] == [("curve detector", "labeller-a"), ("circle", "labeller-b")]


def test_a_tool_label_written_later_elsewhere_is_kept_and_counted(cat):
    cat.add_labels(MODEL, [auto("conv1:1")], source="labeller-a")
    cat.conn.execute("UPDATE neurons SET label_created = '9999-01-01' WHERE layer = 'conv1'")  # a clock ahead
    assert cat.add_labels(MODEL, [auto("conv1:1", "circle")])["kept_newer"] == 1
    assert neuron_row(cat, "conv1:1")["label"] == "curve detector"


def test_re_adding_the_same_labels_writes_nothing_and_new_evidence_is_a_new_claim(cat):
    labels = [auto("conv1:1"), auto("conv1:2", "edge")]
    cat.label(MODEL, "conv1:2", "arc")
    cat.add_labels(MODEL, labels)
    before = everything(cat.path)
    assert cat.add_labels(MODEL, labels + labels[:1]) == {"written": 0, "kept_user": 0, "kept_newer": 0,
                                                          "unchanged": 3}
    assert everything(cat.path) == before  # not even label_created moves
    rerun = {**PROBE, "data": "toyworld:1024:seed=1"}
    assert cat.add_labels(MODEL, [auto("conv1:1", evidence=rerun)])["written"] == 1
    assert [h[2] for h in history(cat, "conv1:1")] == [spelt("curve", 0.93, PROBE), spelt("curve", 0.93, rerun)]
    assert cat.add_labels(MODEL, [auto("conv1:1", evidence=rerun)])["unchanged"] == 1
    # another source saying the same is its own claim
    assert cat.add_labels(MODEL, [auto("conv1:1", evidence=rerun)], source="other tool")["written"] == 1


def test_labels_make_their_neurons_and_register_an_unknown_model(tmp_path):
    with Catalog(tmp_path / "new.db") as cat:
        cat.add_labels("cd" * 32, [auto("features.4:3")], model_name="zoo:tiny")
        assert cat.rows("SELECT id, name FROM models") == [{"id": "cd" * 32, "name": "zoo:tiny"}]
        assert cat.show("zoo:tiny/features.4:3")["label"] == "curve detector"


def test_the_persons_label_writes_null_evidence_as_before(cat):
    cat.label(MODEL, "conv2:0", "blob")
    cat.label(MODEL, "conv2:0", "blob")  # the same label again: nothing new
    cat.label(MODEL, "conv2:0", "spot", source="alice")
    assert cat.rows("SELECT label, source, evidence FROM label_history ORDER BY created") == [
        {"label": "blob", "source": "user", "evidence": None}, {"label": "spot", "source": "alice", "evidence": None}]
    assert neuron_row(cat, "conv2:0")["label"] == "blob"


# -- refusals: one sentence, nothing written ---------------------------------------------------------------


class Unserialisable:
    pass


circular: dict = {"method": "probe"}
circular["self"] = circular

BAD = [
    ("malformed neuron", [auto("conv1:1"), auto("conv1")], r"labels\[1\]'s neuron 'conv1' is not of the form LAYER"),
    ("neuron not text", [auto(12)], r"labels\[0\]'s neuron must be a 'LAYER:CHANNEL' string"),
    ("negative channel", [auto("conv1:-1")], "not of the form LAYER:CHANNEL"),
    ("missing key", [{k: v for k, v in auto("conv1:1").items() if k != "concept"}], "lacks 'concept'"),
    ("misspelt key", [{**auto("conv1:1"), "scores": 1.0}], "unknown key 'scores'.*did you mean 'score'"),
    ("empty label", [auto("conv1:1", "  \n")], r"labels\[0\]'s label must be non-empty text"),
    ("label not text", [auto("conv1:1", 3)], r"labels\[0\]'s label must be non-empty text"),
    ("empty concept", [auto("conv1:1", concept="")], "concept must be non-empty text"),
    ("nan score", [auto("conv1:1", score=float("nan"))], "score must be a finite number"),
    ("infinite score", [auto("conv1:1", score=float("inf"))], "score must be a finite number"),
    ("huge score", [auto("conv1:1", score=10**400)], "score must be a finite number"),
    ("bool score", [auto("conv1:1", score=True)], "score must be a finite number"),
    ("text score", [auto("conv1:1", score="0.9")], "score must be a finite number"),
    ("evidence not a dict", [auto("conv1:1", evidence=[("method", "probe")])], "evidence must be a dict"),
    ("object in evidence", [auto("conv1:1", evidence={"model": Unserialisable()})], "evidence is not plain JSON"),
    ("set in evidence", [auto("conv1:1", evidence={"classes": {1, 2}})], "evidence is not plain JSON"),
    ("bytes in evidence", [auto("conv1:1", evidence={"png": b"\x89PNG"})], "evidence is not plain JSON"),
    ("nan in evidence", [auto("conv1:1", evidence={"auroc": float("nan")})], "evidence is not plain JSON"),
    ("circular evidence", [auto("conv1:1", evidence=circular)], "evidence is not plain JSON"),
    ("mixed keys", [auto("conv1:1", evidence={1: "a", "b": 2})], "evidence is not plain JSON"),
    ("number key", [auto("conv1:1", evidence={"per_class": {3: 0.9}})], "key int 3, which JSON would turn"),
    ("two labels for one neuron", [auto("conv1:1"), auto("conv2:0"), auto("conv1:1", "circle")],
     r"labels\[2\] and labels\[0\] both label conv1:1"),
    ("not a list", auto("conv1:1"), "labels must be a list of dicts"),
    ("not a dict", ["conv1:1 curve"], r"labels\[0\] must be a dict"),
]


@pytest.mark.parametrize("labels, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_label_anywhere_is_refused_in_one_sentence_and_nothing_is_written(cat, labels, message):
    cat.label(MODEL, "conv2:3", "arc")
    before = everything(cat.path)
    with pytest.raises(LabelError, match=message) as caught:
        cat.add_labels(MODEL, labels + [auto("conv2:3"), auto("conv2:4")] if isinstance(labels, list) else labels)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UsageError)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert everything(cat.path) == before


@pytest.mark.parametrize("source", ["user", " user ", "", None, 3])
def test_a_tool_cannot_write_as_the_user_or_as_nobody(cat, source):
    with pytest.raises(LabelError, match="source"):
        cat.add_labels(MODEL, [auto("conv1:1")], source=source)
    assert cat.value("SELECT count(*) FROM label_history") == 0


def test_a_failure_midway_undoes_every_label_of_the_call(cat, monkeypatch):
    """All or nothing even past the checks: the second label's write fails, the first is undone with it."""
    calls = []
    original = type(cat)._set_label

    def failing(self, *args):
        calls.append(args)
        if len(calls) == 2:
            raise sqlite3.OperationalError("the disk failed")
        return original(self, *args)

    monkeypatch.setattr(type(cat), "_set_label", failing)
    before = everything(cat.path)
    with pytest.raises(sqlite3.OperationalError, match="the disk failed"):
        cat.add_labels("ef" * 32, [auto("conv1:1"), auto("conv1:2")], model_name="zoo:new")
    assert len(calls) == 2 and everything(cat.path) == before  # the new model, its layer and neurons too


def test_a_read_only_catalog_refuses_labels(cat):
    with Catalog(cat.path, readonly=True) as shared:
        with pytest.raises(CatalogError, match="read-only"):
            shared.add_labels(MODEL, [auto("conv1:1")])


# -- hostile text ------------------------------------------------------------------------------------------

HOSTILE = {
    "quotes": "it's a \"curve\" `detector`",
    "newlines": "curve\ndetector\r\nline two\tand a tab",
    "sql": "x'); DROP TABLE neurons; -- curve",
    "html": "<script>alert('curve')</script><img src=x onerror=alert(1)>",
    "long": "curve " + "x" * 10_000,
    "unicode": "Kurve 曲线 منحنى \u202eevil\u202c e\u0301 🌀 \U0001f9ea",
    "nul": "curve\x00detector",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_text_is_stored_and_read_back_exactly(tmp_path, name):
    text = HOSTILE[name]
    evidence = {"method": text, text: [text, {"note": text}], "tool_version": "0.9.0"}
    path = tmp_path / "catalog.db"
    with Catalog(path) as cat:
        cat.add_model(SHA_A, MODEL, layers=LAYERS)
        assert cat.add_labels(MODEL, [auto("conv1:1", text, 0.5, text, evidence)])["written"] == 1
        shown = cat.show(f"{MODEL}/conv1:1")
        assert shown["label"] == text and shown["label_evidence"] == {"concept": text, "score": 0.5,
                                                                      "evidence": evidence}
        assert shown["history"][0]["label"] == text
        assert cat.add_labels(MODEL, [auto("conv1:1", text, 0.5, text, evidence)])["unchanged"] == 1
        assert set(cat.db.table_names()) >= set(schema.TABLES)  # the SQL was only text
        assert cat.value("PRAGMA integrity_check") == "ok"
        word = "Kurve" if name == "unicode" else "curve"
        assert [r["id"] for r in cat.search(word)] == [f"{MODEL}/conv1:1"]  # the full-text index has it
    rows = sqlite3.connect(path).execute(CANNED_QUERIES["labelled_neurons"]["sql"]).fetchall()
    # SQLite's json_extract ends its text at a NUL (the stored JSON spells it \u0000 and exports give it back)
    assert rows == [(MODEL, "conv1:1", text, "circuits label", text.split("\x00")[0], 0.5, None)]
    tables = everything(path)
    assert tables["neurons"][0]["label_evidence"]["evidence"] == evidence
    copy = tmp_path / "copy.db"  # the SQL dump rebuilds it exactly
    with Catalog(path, readonly=True) as cat:
        script = cat.export("sql")
    conn = sqlite3.connect(copy)
    conn.executescript(script)
    conn.close()
    assert everything(copy) == tables


def test_hostile_labels_through_the_cli_print_json_that_reads_back(tmp_path):
    path = tmp_path / "catalog.db"
    with Catalog(path) as cat:
        cat.add_model(SHA_A, MODEL, layers=LAYERS)
        cat.add_labels(MODEL, [auto(f"conv1:{i}", t, 0.5, t, {"method": t}) for i, t in enumerate(HOSTILE.values())])
    runner = CliRunner()
    for i, text in enumerate(HOSTILE.values()):
        result = runner.invoke(main, ["catalog", "show", f"{MODEL}/conv1:{i}", "--json", "--catalog", str(path)])
        assert result.exit_code == 0, result.output
        item = json.loads(result.output)["item"]
        assert item["label"] == text and item["label_evidence"]["evidence"] == {"method": text}
    listed = runner.invoke(main, ["catalog", "list", "--kind", "neurons", "--json", "--catalog", str(path)])
    assert [r["label"] for r in json.loads(listed.output)["items"]] == list(HOSTILE.values())


# -- merge, export, stats, canned query ----------------------------------------------------------------------


def _alice(cat):
    cat.add_model(SHA_A, MODEL, layers=LAYERS)
    cat.add_labels(MODEL, [auto("conv1:1"), auto("conv1:2", "edge", 0.6, "edge")], source="labeller-a")


def _bob(cat):
    cat.add_model(SHA_A, MODEL, layers=LAYERS)
    cat.add_labels(MODEL, [auto("conv1:1", "circle", 0.8, "circle"), auto("conv1:2", "bar", 0.9, "bar")],
                   source="labeller-b")
    cat.label(MODEL, "conv1:1", "arc")  # a person's, on one of them


def test_merge_keeps_every_label_with_its_evidence_and_the_user_label_wins(tmp_path):
    paths = {n: tmp_path / f"{n}.db" for n in ("a", "b", "a_then_b", "b_then_a")}
    with Catalog(paths["a"]) as cat:
        _alice(cat)
    with Catalog(paths["b"]) as cat:  # written after Alice's: Bob's tool labels are newer
        _bob(cat)
    for name, order in (("a_then_b", "ab"), ("b_then_a", "ba")):
        with Catalog(paths[name]) as cat:
            for other in order:
                cat.merge(paths[other])
    with Catalog(paths["a"]) as cat:
        cat.merge(paths["b"])
    merged = [everything(paths[n]) for n in ("a", "a_then_b", "b_then_a")]
    for table in ("neurons", "label_history"):
        assert merged[0][table] == merged[1][table] == merged[2][table]
    with Catalog(paths["a"], readonly=True) as cat:
        assert neuron_row(cat, "conv1:1") == {"label": "arc", "label_source": "user", "label_evidence": None}
        assert neuron_row(cat, "conv1:2") == {"label": "bar", "label_source": "labeller-b",
                                              "label_evidence": spelt("bar", 0.9, PROBE)}  # newest tool label
        assert sorted(history(cat, "conv1:1")) == sorted([
            ("curve detector", "labeller-a", spelt("curve", 0.93, PROBE)),
            ("circle", "labeller-b", spelt("circle", 0.8, PROBE)), ("arc", "user", None)])
        assert len(history(cat, "conv1:2")) == 2


def test_merge_of_two_tools_labels_keeps_the_newer_with_its_evidence_in_either_order(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Catalog(a) as cat:
        cat.add_model(SHA_A, MODEL, layers=LAYERS)
        cat.add_labels(MODEL, [auto("conv2:5", "old", 0.1, "old")], source="labeller-a")
    with Catalog(b) as cat:
        cat.add_model(SHA_A, MODEL, layers=LAYERS)
        cat.add_labels(MODEL, [auto("conv2:5", "new", 0.2, "new")], source="labeller-b")
    for into, other in ((a, b), (b, a)):
        with Catalog(into) as cat:
            cat.merge(other)
            assert neuron_row(cat, "conv2:5")["label_evidence"] == spelt("new", 0.2, PROBE)
            assert cat.merge(other) == dict.fromkeys(schema.TABLES, 0)  # again: nothing
    assert everything(a)["neurons"] == everything(b)["neurons"]


def test_exports_carry_the_evidence(cat, tmp_path):
    cat.add_labels(MODEL, [auto("conv1:1")])
    tables = cat.export("json")["tables"]
    assert tables["neurons"][0]["label_evidence"] == {"concept": "curve", "evidence": PROBE, "score": 0.93}
    assert tables["label_history"][0]["evidence"] == tables["neurons"][0]["label_evidence"]
    csv_text = cat.export("csv", "label_history")
    assert csv_text.splitlines()[0] == "model,layer,channel,label,source,created,evidence"
    assert '"{""concept"":""curve""' in csv_text


def test_stats_count_user_and_automatic_labels_beside_the_old_keys(cat):
    cat.add_circuit(SHA_A, {"model": MODEL, "target": "conv2:0", "method": "direct",
                            "nodes": [{"id": "conv2:0", "depth": 0, "label": "from the spec"},
                                      {"id": "conv1:9", "depth": 1}],
                            "edges": [{"source": "conv1:9", "target": "conv2:0", "weight": 1.0, "kernel": [[1.0]]}]})
    cat.label(MODEL, "conv1:1", "arc")
    cat.add_labels(MODEL, [auto("conv1:1"), auto("conv1:2"), auto("conv1:3")])
    stats = cat.stats()
    assert (stats["labelled_neurons"], stats["user_labelled_neurons"], stats["auto_labelled_neurons"]) == (4, 1, 2)
    assert stats["counts"]["label_history"] == 5 and stats["catalog_schema_version"] == schema.current_version()
    result = CliRunner().invoke(main, ["catalog", "stats", "--catalog", cat.path])
    assert result.exit_code == 0
    assert re.search(r"^  by a person \(user\) +1$", result.output, re.M)
    assert re.search(r"^  automatic +2$", result.output, re.M)


def test_the_canned_query_shows_source_concept_and_score(cat):
    cat.label(MODEL, "conv1:1", "arc", notes="by hand")
    cat.add_labels(MODEL, [auto("conv1:1"), auto("conv2:0", "edge", 0.25, "edge")])
    cursor = sqlite3.connect(cat.path).execute(CANNED_QUERIES["labelled_neurons"]["sql"])
    assert [c[0] for c in cursor.description] == ["model", "neuron", "label", "source", "concept", "score", "notes"]
    assert cursor.fetchall() == [(MODEL, "conv1:1", "arc", "user", None, None, "by hand"),
                                 (MODEL, "conv2:0", "edge", "circuits label", "edge", 0.25, None)]


# -- the upgrade ---------------------------------------------------------------------------------------------


V4_TIME = "2026-06-01T00:00:00.000000+00:00"


def write_v4_catalog(path, monkeypatch):
    """A version-4 catalog: this code's schema as it was at version 4 (the first four migrations), then labels
    written as version 4 wrote them (its ``label_history`` had no evidence column), with plain sqlite3."""
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:4])
        with Catalog(path) as cat:
            cat.add_model(SHA_A, MODEL, layers=LAYERS)
            assert "label_evidence" not in cat.db["neurons"].columns_dict
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for channel, label, source, notes in ((1, "vertical edge", "user", "by hand"), (2, "bar", "extract", None)):
        conn.execute("INSERT INTO neurons VALUES (?, 'conv1', ?, ?, ?, ?, ?)", (SHA_A, channel, label, source, V4_TIME,
                                                                             notes))
        conn.execute("INSERT INTO label_history VALUES (?, 'conv1', ?, ?, ?, ?)", (SHA_A, channel, label, source,
                                                                                  V4_TIME))
    conn.execute("COMMIT")
    conn.close()


def test_a_version_4_catalog_is_backed_up_and_gains_the_evidence_columns(tmp_path, monkeypatch):
    path = tmp_path / "v4.db"
    write_v4_catalog(path, monkeypatch)
    with pytest.raises(CatalogError, match="older than this circuits"):  # a read never upgrades
        Catalog(path, readonly=True)
    with Catalog(path) as cat:
        assert cat.value("SELECT max(version) FROM schema_version") == schema.current_version()
        assert [tuple(r.values()) for r in cat.rows("SELECT * FROM neurons ORDER BY channel")] == [
            (SHA_A, "conv1", 1, "vertical edge", "user", V4_TIME, "by hand", None),
            (SHA_A, "conv1", 2, "bar", "extract", V4_TIME, None, None)]  # every old value kept, no evidence
        assert [tuple(r.values()) for r in cat.rows("SELECT * FROM label_history ORDER BY channel")] == [
            (SHA_A, "conv1", 1, "vertical edge", "user", V4_TIME, None),
            (SHA_A, "conv1", 2, "bar", "extract", V4_TIME, None)]
        assert cat.add_labels(MODEL, [auto("conv1:1"), auto("conv1:2")]) == {"written": 1, "kept_user": 1,
                                                                              "kept_newer": 0, "unchanged": 0}
        assert neuron_row(cat, "conv1:2")["label_evidence"] == spelt("curve", 0.93, PROBE)
        assert cat.search("vertical")[0]["id"] == f"{MODEL}/conv1:1"  # the full-text triggers still fire
    with Catalog(path, readonly=True) as cat:  # the upgraded schema passes the check against a new v5 catalog's
        assert cat.stats()["auto_labelled_neurons"] == 1
    backup = sqlite3.connect(tmp_path / "v4.db.bak-v4")
    assert backup.execute("SELECT max(version) FROM schema_version").fetchone() == (4,)
    assert "label_evidence" not in [r[1] for r in backup.execute("PRAGMA table_info(neurons)")]
    backup.close()


def test_a_version_4_catalog_is_refused_by_merge_until_upgraded(tmp_path, monkeypatch):
    old, ours = tmp_path / "old.db", tmp_path / "ours.db"
    write_v4_catalog(old, monkeypatch)
    with Catalog(ours) as cat:
        with pytest.raises(CatalogError, match=f"schema version 4 but this catalog has {schema.current_version()}"):
            cat.merge(old)
    with Catalog(old):
        pass  # upgraded
    with Catalog(ours) as cat:
        cat.merge(old)
        assert neuron_row(cat, "conv1:1") == {"label": "vertical edge", "label_source": "user", "label_evidence": None}
