"""``circuits catalog``: driven with CliRunner against temporary catalogs, asserting on rows."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from serving import fetch_json, free_port, start_serve, stop_group

from circuits.catalog import Catalog
from circuits.catalog.serve import CANNED_QUERIES
from circuits.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHA_A = hashlib.sha256(b"model A").hexdigest()
SHA_B = hashlib.sha256(b"model B").hexdigest()


def circuit(model, target, sources):
    layer, channel = target.split(":")
    nodes = [{"id": target, "layer": layer, "channel": int(channel), "depth": 0, "label": None}]
    nodes += [{"id": s, "layer": s.split(":")[0], "channel": int(s.split(":")[1]), "depth": 1, "label": None}
              for s in sources]
    edges = [{"source": s, "target": target, "weight": 0.25 * (k + 1), "kernel": [[0.25 * (k + 1)]]}
             for k, s in enumerate(sources)]
    return {"model": model, "target": target, "method": "direct", "nodes": nodes, "edges": edges}


@pytest.fixture
def catalog_path(tmp_path):
    path = tmp_path / "lab.db"
    with Catalog(path) as cat:
        cat.add_model(SHA_A, "zoo:plain-cnn")
        cat.add_model(SHA_B, "zoo:resnet-tiny")
        cid = cat.add_circuit(SHA_A, circuit("zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"]))
        cat.add_circuit(SHA_B, circuit("zoo:resnet-tiny", "l1:3", ["stem:0"]))
        for sha, name, target, members in ((SHA_A, "zoo:plain-cnn", "conv2:0", ["conv1:1", "conv1:2"]),
                                           (SHA_B, "zoo:resnet-tiny", "l1:3", ["stem:0"])):
            cat.add_motifs(sha, {"model": name, "motifs": [{"kind": "union", "transform": "reflect", "target": target,
                                                           "members": members, "score": 0.8, "evidence": {}}]})
        cat.add_motifs(SHA_A, {"model": "zoo:plain-cnn", "motifs": [
            {"kind": "inhibition", "transform": None, "target": "conv2:0", "members": ["conv1:2"], "score": 0.3,
             "evidence": {}}]}, circuit_id=cid)
    return str(path)


def invoke(*args, env=None):
    return CliRunner().invoke(main, ["catalog", *args], env=env)


def data(result):
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["schema_version"] == 1 and payload["provenance"]["tool"] == "circuits"
    return payload


def test_stats_counts_rows(catalog_path):
    counts = data(invoke("stats", "--json", "--catalog", catalog_path))["counts"]
    assert counts["models"] == 2 and counts["circuits"] == 2 and counts["edges"] == 3
    assert counts["motif_instances"] == 3


def test_catalog_path_comes_from_the_environment(catalog_path):
    result = invoke("stats", "--json", env={"CIRCUITS_CATALOG": catalog_path})
    assert data(result)["path"] == catalog_path


def test_list_kinds(catalog_path):
    circuits = data(invoke("list", "--json", "--catalog", catalog_path))["items"]
    assert [(c["model"], c["target"], c["edges"]) for c in circuits] == [("zoo:plain-cnn", "conv2:0", 2),
                                                                         ("zoo:resnet-tiny", "l1:3", 1)]
    motifs = data(invoke("list", "--kind", "motifs", "--json", "--catalog", catalog_path))["items"]
    assert [(m["id"], m["models"]) for m in motifs] == [("inhibition", 1), ("union/reflect", 2)]
    assert data(invoke("list", "--kind", "neurons", "--json", "--catalog", catalog_path))["items"] == []


def test_label_then_show_and_search(catalog_path):
    result = invoke("label", "zoo:plain-cnn", "conv1:1", "vertical edge", "--notes", "dark left", "--json",
                    "--catalog", catalog_path)
    assert data(result)["neuron"]["label"] == "vertical edge"
    neuron = data(invoke("show", "zoo:plain-cnn/conv1:1", "--json", "--catalog", catalog_path))["item"]
    assert (neuron["label"], neuron["notes"], neuron["label_source"]) == ("vertical edge", "dark left", "user")
    hits = data(invoke("search", "vertical", "--json", "--catalog", catalog_path))["results"]
    assert [h["id"] for h in hits] == ["zoo:plain-cnn/conv1:1"]
    assert data(invoke("search", "nothing-like-this", "--json", "--catalog", catalog_path))["results"] == []
    with sqlite3.connect(catalog_path) as conn:
        assert conn.execute("SELECT label FROM neurons WHERE layer = 'conv1' AND channel = 1").fetchone() == ("vertical edge",)


def test_show_circuit_by_prefix(catalog_path):
    cid = data(invoke("list", "--json", "--catalog", catalog_path))["items"][0]["id"]
    item = data(invoke("show", cid[:8], "--json", "--catalog", catalog_path))["item"]
    assert item["id"] == cid and [e["source"] for e in item["edges"]] == ["conv1:1", "conv1:2"]
    plain = invoke("show", cid[:8], "--catalog", catalog_path)
    assert json.loads(plain.output)["id"] == cid


def test_merge_and_export(tmp_path, catalog_path):
    other = tmp_path / "other.db"
    with Catalog(other) as cat:
        cat.add_circuit(SHA_A, circuit("zoo:plain-cnn", "conv2:9", ["conv1:4"]))
        cat.label(SHA_A, "conv1:4", "blob")
    added = data(invoke("merge", str(other), "--json", "--catalog", catalog_path))["added"]
    assert added["circuits"] == 1 and added["edges"] == 1 and added["models"] == 0
    dump = data(invoke("export", "--format", "json", "--catalog", catalog_path))
    assert len(dump["tables"]["circuits"]) == 3
    result = invoke("export", "--format", "csv", "--table", "neurons", "--catalog", catalog_path)
    assert result.exit_code == 0
    assert [line.split(",")[3] for line in result.output.splitlines()[1:]].count("blob") == 1
    out = tmp_path / "csv"
    assert invoke("export", "--format", "csv", "--output", str(out), "--catalog", catalog_path).exit_code == 0
    assert len((out / "edges.csv").read_text().splitlines()) == 1 + 4
    sql = tmp_path / "dump.sql"
    assert invoke("export", "--format", "sql", "-o", str(sql), "--catalog", catalog_path).exit_code == 0
    conn = sqlite3.connect(tmp_path / "rebuilt.db")
    conn.executescript(sql.read_text())
    assert conn.execute("SELECT count(*) FROM edges").fetchone() == (4,)
    conn.close()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["label", "zoo:plain-cn", "conv1:1", "x"], 2, "did you mean 'zoo:plain-cnn'"),
        (["label", "zoo:plain-cnn", "conv9:1", "x"], 2, "no layer 'conv9'"),
        (["show", "ffffffffff"], 2, "nothing in"),
        (["search", "()"], 2, "no words"),
        (["export", "--format", "csv"], 2, "one table"),
        (["merge", "/nonexistent/other.db"], 2, "no catalog at"),
    ],
)
def test_bad_input_is_one_line_with_an_exit_code(catalog_path, args, code, message):
    before = Path(catalog_path).read_bytes()
    result = invoke(*args, "--catalog", catalog_path)
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output
    assert Path(catalog_path).read_bytes() == before


def test_foreign_and_malformed_files_are_refused_and_untouched(tmp_path, catalog_path):
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    for path in (foreign, text):
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        for args in (["stats"], ["list"], ["label", "m", "a:1", "x"]):
            result = invoke(*args, "--catalog", str(path))
            assert result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output
        result = invoke("merge", str(path), "--catalog", catalog_path)
        assert result.exit_code == 1 and "not" in result.output
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_stats_on_a_missing_catalog_does_not_create_it(tmp_path):
    result = invoke("stats", "--catalog", str(tmp_path / "missing.db"))
    assert result.exit_code == 1 and "no catalog at" in result.output
    assert not (tmp_path / "missing.db").exists()


def test_every_command_has_help_with_an_example():
    for command in ("stats", "list", "show", "search", "label", "merge", "export", "serve", "upgrade"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "circuits catalog " + command in result.output
        assert "--catalog" in result.output


def test_catalog_commands_never_import_torch(catalog_path):
    script = f"""
import sys
import circuits.catalog
from click.testing import CliRunner
from circuits.cli import main
path = {catalog_path!r}
for args in (["stats"], ["list", "--kind", "motifs"], ["search", "union"], ["show", "union/reflect"],
             ["label", "zoo:plain-cnn", "conv1:2", "edge"], ["export", "--format", "sql"], ["--help"]):
    result = CliRunner().invoke(main, ["catalog", *args, "--catalog", path] if args != ["--help"] else args)
    assert result.exit_code == 0, (args, result.output)
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_only_commands_that_open_a_catalog_import_sqlite_utils(catalog_path):
    script = f"""
import sys
from click.testing import CliRunner
from circuits.cli import main
for args in (["--help"], ["catalog", "--help"], ["catalog", "stats", "--help"]):
    assert CliRunner().invoke(main, args).exit_code == 0, args
before = "sqlite_utils" in sys.modules
assert CliRunner().invoke(main, ["catalog", "stats", "--catalog", {catalog_path!r}]).exit_code == 0
print(before, "sqlite_utils" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_canned_query_finds_motifs_in_more_than_one_model(catalog_path):
    conn = sqlite3.connect(catalog_path)
    rows = conn.execute(CANNED_QUERIES["motifs_in_several_models"]["sql"]).fetchall()
    conn.close()
    assert [(r[0], r[2], r[3]) for r in rows] == [("union/reflect", 2, 2)]


def test_serve_runs_datasette_on_loopback_with_canned_queries(catalog_path):
    pytest.importorskip("datasette")
    port = free_port()
    proc = start_serve(catalog_path, port)
    try:
        rows = fetch_json(f"http://127.0.0.1:{port}/lab/motifs_in_several_models.json?_shape=array", proc)
        assert rows is not None, "datasette did not answer"
        assert [(r["motif"], r["models"]) for r in rows] == [("union/reflect", 2)]
    finally:
        stop_group(proc)

def test_show_emit_refuses_a_path_that_is_not_python_or_is_the_catalog_itself(tmp_path):
    from circuits.catalog import Catalog
    from circuits.extraction import extract
    from circuits.pipeline import record

    path = tmp_path / "cat.db"
    with Catalog(path) as cat:
        cid = record(cat, "planted:union", extract("planted:union", "union:0", depth=1, top_k=2))["circuit"]
    before = path.read_bytes()
    for target, option in ((str(path), "--emit"), (str(tmp_path / "out.txt"), "--emit"), (str(path), "--render")):
        result = CliRunner().invoke(main, ["catalog", "show", cid[:8], option, target, "--catalog", str(path)])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert path.read_bytes() == before and not (tmp_path / "out.txt").exists()
    result = CliRunner().invoke(main, ["catalog", "show", cid[:8], "--emit", str(tmp_path / "u.py"), "--catalog", str(path)])
    assert result.exit_code == 0 and "literal form" in result.output


def test_show_emit_of_a_simplified_module_gives_that_module(tmp_path):
    out, db = tmp_path / "s.py", tmp_path / "cat.db"
    result = CliRunner().invoke(main, ["extract", "planted:union", "--neuron", "union:0", "--depth", "2", "--top-k", "3",
                                       "--emit", str(out), "--simplify", "--catalog", str(db)])
    assert result.exit_code == 0, result.output
    from circuits.catalog import Catalog

    with Catalog(db) as cat:
        (module_id,) = [row["id"] for row in cat.list("modules")]
    again = tmp_path / "again.py"
    result = CliRunner().invoke(main, ["catalog", "show", module_id, "--emit", str(again), "--catalog", str(db)])
    assert result.exit_code == 0, result.output
    assert again.read_text() == out.read_text() and "SIMPLIFICATIONS" in again.read_text()


def test_serve_on_a_taken_port_says_so_and_exits_2(catalog_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["catalog", "serve", "--port", str(port), "--catalog", catalog_path])
    assert result.exit_code == 2 and f"port {port}" in result.output and "serving" not in result.output


def test_sigterm_to_serve_stops_datasette_too(catalog_path):
    pytest.importorskip("datasette")
    port = free_port()
    proc = start_serve(catalog_path, port, own_group=False)
    try:
        assert fetch_json(f"http://127.0.0.1:{port}/-/versions.json", proc) is not None
        proc.send_signal(15)  # to circuits only, not its process group
        proc.wait(timeout=15)
        time.sleep(0.5)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "datasette outlived `circuits catalog serve`"
    finally:
        if proc.poll() is None:
            proc.kill()
