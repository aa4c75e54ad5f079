"""`circuits pictures`: the JSON contract, the files it lists, the catalog rows, and bad input.

The files are checked against the computation, not against the command's own claims: each PNG decodes to the
picture the library makes with the same seed (to the 1/255 of an 8-bit pixel), an example's PNG is the
crop of the image the hand-ranked top example names, and the catalog's images are the files' own bytes.
"""

import hashlib
import json
import sqlite3

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from circuits.cli import main

STEPS = 48


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setitem(main.lazy, "pictures", "circuits.cli.pictures:pictures")

    def invoke(*args):
        return CliRunner().invoke(main, list(args))

    return invoke


@pytest.fixture(scope="module")
def fooling_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("pictures")
    catalog = out / "catalog.db"
    result = CliRunner().invoke(main, ["pictures", "planted:fooling", "--layer", "readout", "--objective", "neuron",
                                       "--steps", "128", "--data", "toyworld:256", "--examples", "4", "--negative",
                                       "-o", str(out / "pics"), "--catalog", str(catalog), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output), out, catalog


def test_the_json_lists_every_file_with_its_neuron_kind_activation_and_agreement(fooling_json):
    payload, out, _ = fooling_json
    assert list(payload) == ["schema_version", "model", "pictures", "sheets", "provenance"]
    assert payload["model"] == "planted:fooling" and payload["provenance"]["weights_sha256"]
    assert payload["provenance"]["arguments"]["layer"] == "readout"
    kinds = [(p["neuron"], p["kind"]) for p in payload["pictures"]]
    assert kinds == [(n, k) for n in ("readout:0", "readout:1") for k in ["optimised", "negative", *["example"] * 4]]
    for p in payload["pictures"]:
        assert set(p) == {"neuron", "kind", "path", "activation", "agreement"}
        assert Image.open(p["path"]).mode == "L"  # a grey model's pictures are grey
    optimised = {p["neuron"]: p for p in payload["pictures"] if p["kind"] == "optimised"}
    assert Image.open(optimised["readout:0"]["path"]).size == (24, 24)  # at the model's input size
    assert optimised["readout:0"]["agreement"] >= 0.9 and optimised["readout:1"]["agreement"] <= 0.2
    assert optimised["readout:1"]["activation"] > 10 * optimised["readout:0"]["activation"]
    assert all(p["agreement"] is None for p in payload["pictures"] if p["kind"] != "optimised")
    assert [Image.open(s).size[0] > 200 for s in payload["sheets"]] == [True]


def test_the_saved_picture_is_the_librarys_picture_and_the_examples_are_the_top_images(fooling_json):
    from circuits.data.spec import load_data
    from circuits.featvis import Neuron, visualise
    from circuits.graph import build_graph

    payload, _, _ = fooling_json
    graph = build_graph("planted:fooling")
    pictures = visualise(graph, "readout", objective=Neuron(), steps=128)
    saved = np.asarray(Image.open(payload["pictures"][0]["path"]), dtype=np.float64) / 255
    assert np.abs(saved - pictures.images[0, 0].numpy()).max() <= 0.5 / 255 + 1e-6

    images = load_data("toyworld:256", graph.input_shape)
    pre = graph.run(images, ["readout"], preact=True)["readout"][:, 0].flatten(1)
    best = pre.max(1).values.argsort(descending=True, stable=True)[0]
    where = int(pre[best].argmax())
    y, x = divmod(where, 24)
    crop = torch.nn.functional.pad(images[best, 0], (2, 2, 2, 2))[y : y + 5, x : x + 5]  # a 5x5 field
    example = [p for p in payload["pictures"] if p["neuron"] == "readout:0" and p["kind"] == "example"][0]
    assert np.array_equal(np.asarray(Image.open(example["path"])), np.rint(crop.numpy() * 255).astype(np.uint8))
    assert example["activation"] == pytest.approx(float(pre[best].max()), abs=1e-5)


def test_the_catalog_holds_each_file_once_by_content_hash(fooling_json, run):
    payload, out, catalog = fooling_json
    with sqlite3.connect(catalog) as db:
        stored = dict(db.execute("SELECT id, png FROM images").fetchall())
        rows = db.execute("SELECT layer, channel, kind, rank, image, agreement FROM neuron_images").fetchall()
    files = {hashlib.sha256(open(p["path"], "rb").read()).hexdigest() for p in payload["pictures"]}
    assert set(stored) == files and all(hashlib.sha256(png).hexdigest() == i for i, png in stored.items())
    assert len(rows) == len(payload["pictures"])
    again = run("pictures", "planted:fooling", "--layer", "readout", "--objective", "neuron", "--steps", "128",
                "--data", "toyworld:256", "--examples", "4", "--negative", "-o", str(out / "again"),
                "--catalog", str(catalog))  # fmt: skip
    assert again.exit_code == 0, again.output
    with sqlite3.connect(catalog) as db:  # the same inputs give the same rows: nothing new
        assert db.execute("SELECT count(*) FROM neuron_images").fetchone()[0] == len(rows)


def test_without_data_there_are_pictures_and_no_agreement(run, tmp_path):
    result = run("pictures", "planted:lines", "--layer", "lines", "--neuron", "2", "--steps", str(STEPS),
                 "--data", "none", "--copies", "2", "-o", str(tmp_path), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    pictures = json.loads(result.output)["pictures"]
    assert [(p["neuron"], p["kind"], p["agreement"]) for p in pictures] == [
        ("lines:2", "optimised", None), ("lines:2", "diverse", None)]  # fmt: skip
    assert pictures[0]["path"].endswith("lines/2.png") and pictures[1]["path"].endswith("lines/2.diverse-1.png")


@pytest.mark.parametrize("args, message", [
    (["--layer", "nope"], "unknown layer 'nope'"),
    (["--layer", "lines", "--neuron", "8"], "channels 0..7; 8 is not"),
    (["--layer", "lines", "--steps", "0"], "0 is not in the range"),
    (["--layer", "lines", "--data", "nosuch:3"], "nosuch"),
    (["--layer", "input"], "no inputs"),
])  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, args, message):
    out = tmp_path / "out"
    result = run("pictures", "planted:lines", "--steps", "2", *args, "-o", str(out))
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output and [ln.startswith("Error: ") for ln in result.output.splitlines()].count(True) == 1
    assert not out.exists() or not any(out.rglob("*.png"))


def test_an_output_that_is_a_file_or_under_a_missing_folder_is_refused(run, tmp_path):
    file = tmp_path / "file.png"
    file.write_bytes(b"x")
    for out, message in [(file, "is a file"), (tmp_path / "missing" / "out", "does not exist")]:
        result = run("pictures", "planted:lines", "--layer", "lines", "-o", str(out))
        assert result.exit_code == 2 and message in result.output, result.output


def test_extract_render_pictures_draws_each_neurons_field_picture_inside_its_node(tmp_path, monkeypatch):
    """The SVG embeds one picture per neuron; a line detector's is its line (cosine with the spec's kernel)."""
    import base64
    import re

    from circuits import planted
    from circuits.featvis.gallery import node_pictures

    monkeypatch.setitem(main.lazy, "extract", "circuits.cli.extract:extract")
    out = tmp_path / "union.svg"
    result = CliRunner().invoke(main, ["extract", "planted:union", "--neuron", "union:0", "--top-k", "2",
                                       "--render", str(out), "--pictures"])  # fmt: skip
    assert result.exit_code == 0, result.output
    embedded = {base64.b64decode(m) for m in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', out.read_text())}
    nodes = ["union:0", "wedges:0", "wedges:1", "lines:2", "lines:6"]
    expected = node_pictures("planted:union", nodes)
    assert set(expected) == set(nodes) and set(expected.values()) <= embedded
    picture = np.asarray(Image.open(__import__("io").BytesIO(expected["lines:2"])), dtype=np.float64)[::10, ::10]
    assert picture.shape == (5, 5)  # the 5x5 field, scaled up 10x for the diagram
    kernel = np.asarray(planted.effective_weights(planted.get_spec("union").layer("lines")))[2, 0]
    a, b = picture - picture.mean(), kernel - kernel.mean()
    assert float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())) >= 0.8

    refused = CliRunner().invoke(main, ["extract", "planted:union", "--neuron", "union:0", "--pictures"])
    assert refused.exit_code == 2 and "pass --render" in refused.output
