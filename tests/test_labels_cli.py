"""`circuits label` and `circuits find` as a user runs them: JSON contracts, one-line errors, the catalog."""

import json
import sqlite3

import pytest
from click.testing import CliRunner

from circuits.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_label_json_lists_each_labelled_neuron_with_its_concept_and_score():
    result = run("label", "planted:wedges", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schema_version"] and payload["provenance"]["arguments"]["data"] == "toyworld:strokes:2000:1"
    assert payload["coverage"]["lines"] == {"labelled": 8, "neurons": 8, "fraction": 1.0}
    by = {n["neuron"]: n for n in payload["neurons"]}
    assert by["wedges:0"]["concept"] == "facing=left" and by["wedges:0"]["label"] == "facing left"
    assert all({"neuron", "label", "score", "concept"} <= set(n) and n["score"] >= 0.9 for n in payload["neurons"])


def test_label_control_shows_the_shuffled_copy_beside_the_model():
    result = run("label", "planted:lines", "--control", "--json")
    payload = json.loads(result.stdout)
    assert set(payload["control_coverage"]) == {"lines"}
    assert payload["control_coverage"]["lines"]["labelled"] < payload["coverage"]["lines"]["labelled"]


def test_an_empty_result_is_an_empty_list():
    result = run("label", "planted:lines", "--bar", "1.0", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["neurons"] == []
    assert "no neuron reaches the bar" in run("label", "planted:lines", "--bar", "1.0").stdout


@pytest.mark.parametrize("args, words, code", [
    (["label", "planted:lines", "--data", "noise:10"], "no known concepts", 1),
    (["label", "planted:lines", "--layer", "nope"], "nope", 2),
    (["label", "planted:lines", "--bar", "0.2"], "0.2", 2),
    (["find", "planted:lines"], "--concept", 2),
    (["find", "planted:lines", "--concept", "dog", "--data", "toyworld:strokes:200:1"], "unknown class 'dog'", 2),
    (["find", "planted:lines", "--concept", "facing=left AND", "--data", "toyworld:strokes:200:1"], "concept", 2),
])  # fmt: skip
def test_bad_input_is_one_line_naming_the_fix(args, words, code):
    result = run(*args)
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.output


def test_labels_go_into_the_catalog_with_their_evidence_and_a_person_still_wins(tmp_path):
    db = str(tmp_path / "c.db")
    assert run("label", "planted:wedges", "--catalog", db).exit_code == 0
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT layer || ':' || channel, label FROM neurons WHERE label IS NOT NULL"))
        evidence = json.loads(conn.execute("SELECT label_evidence FROM neurons WHERE layer='wedges' AND channel=0")
                              .fetchone()[0])  # fmt: skip
    assert rows["wedges:0"] == "facing left" and evidence["concept"] == "facing=left"
    assert evidence["evidence"]["data"] == "toyworld:strokes:2000:1" and evidence["evidence"]["auroc"] >= 0.9
    model = json.loads(run("catalog", "list", "--kind", "models", "--json", "--catalog", db).stdout)
    assert model
    again = run("label", "planted:wedges", "--catalog", db)
    assert "0 labels shown" in again.stdout  # the same labels again: nothing new


def test_extract_names_nodes_from_the_catalog_a_persons_label_first(tmp_path):
    db = str(tmp_path / "c.db")
    assert run("label", "planted:wedges", "--catalog", db).exit_code == 0
    assert run("catalog", "label", "planted:wedges", "wedges:1", "my right wedge", "--catalog", db).exit_code == 0
    tree = run("extract", "planted:wedges", "--neuron", "wedges:1", "--top-k", "2", "--catalog", db).stdout
    assert "my right wedge" in tree.splitlines()[0]  # the person's label beats the planted name
    assert "line_45" in tree  # a tool's label does not replace a name the model already has
    out = json.loads(run("extract", "planted:wedges", "--neuron", "wedges:1", "--top-k", "2", "--json").stdout)
    assert {n["id"]: n.get("label") for n in out["nodes"]}["wedges:1"] == "wedge_right"
