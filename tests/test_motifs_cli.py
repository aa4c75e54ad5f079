"""`circuits motifs` and `circuits universality`: the JSON contract, bad input, and catalog recording."""

import json

import pytest
from click.testing import CliRunner

from circuits.cli import main


@pytest.fixture
def run(monkeypatch):
    # the commands as the registry in circuits/cli/__init__.py names them
    monkeypatch.setitem(main.lazy, "motifs", "circuits.cli.motifs:motifs")
    monkeypatch.setitem(main.lazy, "universality", "circuits.cli.motifs:universality")

    def invoke(*args):
        return CliRunner().invoke(main, list(args))

    return invoke


def test_motifs_json_contract(run):
    result = run("motifs", "planted:union", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert list(payload)[:3] == ["schema_version", "model", "motifs"] and "provenance" in payload
    assert payload["model"] == "planted:union"
    assert payload["provenance"]["arguments"]["kind"] == "all"
    for m in payload["motifs"]:
        assert set(m) == {"kind", "transform", "target", "members", "score", "evidence"}
        assert m["transform"] in ("reflect", "rotate90", "rotate", None)
        assert m["target"] is None or m["target"].count(":") == 1
        assert isinstance(m["members"], list) and 0.0 <= m["score"] <= 1.0 and isinstance(m["evidence"], dict)
    unions = [(m["target"], m["members"]) for m in payload["motifs"] if m["kind"] == "union"]
    assert ("union:0", ["wedges:0", "wedges:1"]) in unions
    families = [m["members"] for m in payload["motifs"] if m["kind"] == "equivariance" and m["transform"] == "reflect"]
    assert ["wedges:0", "wedges:1"] in families


def test_empty_result_is_an_empty_list(run):
    result = run("motifs", "planted:union", "--kind", "equivariance", "--layer", "union", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["motifs"] == []
    assert "no motifs" in run("motifs", "planted:union", "--kind", "union", "--layer", "lines").output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--kind", "unoin"], "unknown motif kind 'unoin'"),
        (["--layer", "wedgez"], "unknown layer 'wedgez'; did you mean 'wedges'?"),
        (["--data", "toyworld:1:2:3"], "bad data spec"),
    ],
)
def test_bad_input_exits_2_with_one_line(run, args, message):
    result = run("motifs", "planted:union", *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


def test_motifs_are_recorded_in_the_catalog(run, tmp_path):
    from circuits.catalog import Catalog

    db = tmp_path / "c.db"
    result = run("motifs", "planted:union", "--kind", "union", "--catalog", str(db), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    with Catalog(db) as catalog:
        instances = catalog.list("instances")
        models = catalog.list("models")
    assert len(instances) == len(payload["motifs"]) == 2
    assert {(i["motif"], i["target"]) for i in instances} == {("union/reflect", "union:0"), ("union/reflect", "union:2")}
    assert [m["name"] for m in models] == ["planted:union"]


def test_universality_json(run):
    result = run("universality", "planted:lines", "planted:curves", "--data", "toyworld:32", "--json")
    assert result.exit_code == 2 and "share no layer" in result.output
    result = run("universality", "planted:union", "planted:bn-union", "--data", "toyworld:32", "--layer", "lines", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["models"] == ["planted:union", "planted:bn-union"]
    (match,) = payload["matches"]
    pairs = {p["a"]: p["b"] for p in match["layers"][0]["pairs"]}
    assert pairs == {f"lines:{i}": f"lines:{i}" for i in range(8)}  # the same line detectors, BN folded
    assert run("universality", "planted:union").exit_code == 2
