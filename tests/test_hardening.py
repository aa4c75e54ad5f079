"""Careless and hostile input (issue 19): one line naming the problem and the fix, the right exit code, no
traceback, nothing allocated before a size is checked, nothing half-written."""

import html
import re
import sqlite3

import pytest
from click.testing import CliRunner

import circuits
from circuits.catalog import Catalog
from circuits.cli import main

FACTORY = "def factory():\n    raise ValueError('factory boom')\n"
NAN_MODEL = """import torch
from torch import nn


class M(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)
        with torch.no_grad():
            self.c2.weight[0, 0, 0, 0] = float("nan")

    def forward(self, x):
        return torch.relu(self.c2(torch.relu(self.c1(x))))
"""


def fails(args, code, *words):
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_factory_that_raises_is_reported_as_the_users_code(tmp_path):
    (tmp_path / "f.py").write_text(FACTORY)
    fails(["layers", f"{tmp_path}/f.py:factory"], 1, "factory boom", "raised ValueError")


@pytest.mark.parametrize(("args", "words"), [
    (["layers", "zoo:plain-cnn", "--input-shape", "1,60000,60000"], ("CIRCUITS_MAX_INPUT_ELEMENTS",)),
    (["extract", "zoo:plain-cnn", "--neuron", "conv3:1", "--data", "toyworld:2000000000"], ("CIRCUITS_MAX_DATA_BYTES",)),
    (["extract", "zoo:plain-cnn", "--neuron", "conv3:1", "--data", "noise:2000000000"], ("GiB",)),
    (["extract", "zoo:plain-cnn", "--neuron", "conv3:1", "--data", "noise:4:-1"], ("seed",)),
    (["extract", "zoo:plain-cnn", "--neuron", "conv3:1", "--data", "toyworld:4:99999999999999999999999"], ("2^63",)),
    (["zoo", "train", "plain-cnn", "--seed", "99999999999999999999999", "--fast"], ("--seed",)),
])
def test_sizes_and_seeds_are_refused_before_anything_is_allocated(args, words):
    fails(args, 2, *words)


def test_a_size_limit_can_be_raised_with_its_variable(monkeypatch):
    monkeypatch.setenv("CIRCUITS_MAX_DATA_BYTES", str(10**12))
    from circuits.data import load_data

    with pytest.raises(circuits.errors.UsageError):  # 1 TB asked: still over
        load_data("noise:300000000", (3, 32, 32))
    assert load_data("noise:2", (1, 4, 4)).shape == (2, 1, 4, 4)


def test_nan_weights_are_refused_naming_the_tensor(tmp_path):
    (tmp_path / "nan.py").write_text(NAN_MODEL)
    fails(["extract", f"{tmp_path}/nan.py:M", "--neuron", "c2:0"], 1, "c2.weight", "NaN")


def test_a_huge_depth_stops_when_the_walk_reaches_the_input():
    result = CliRunner().invoke(main, ["extract", "planted:union", "--neuron", "union:0", "--top-k", "1", "--json",
                                       "--depth", "99999999999999999999"])
    assert result.exit_code == 0 and '"union:0"' in result.output


@pytest.mark.parametrize("neuron", ["conv3:x", "conv3:999999999999999999999999", "conv3:-1"])
def test_a_malformed_neuron_to_label_is_a_usage_error(tmp_path, neuron):
    path = tmp_path / "cat.db"
    with Catalog(path) as cat:
        cat.add_model("ab" * 32, "zoo:plain-cnn", layers=["conv3"])
    fails(["catalog", "label", "zoo:plain-cnn", neuron, "x", "--catalog", str(path)], 2, "LAYER:CHANNEL")


def test_outputs_that_cannot_be_written_are_refused_before_the_work(tmp_path, monkeypatch):
    path = tmp_path / "cat.db"
    with Catalog(path) as cat:
        cat.add_model("ab" * 32, "m")
    fails(["catalog", "export", "--format", "sql", "-o", str(tmp_path / "missing" / "x.sql"), "--catalog", str(path)],
          2, "does not exist")
    fails(["catalog", "export", "--format", "sql", "-o", str(tmp_path), "--catalog", str(path)], 2, "folder")
    fails(["catalog", "export", "--format", "csv", "-o", str(path), "--catalog", str(path)], 2, "folder")
    import circuits.cli.zoo as zoo_cli

    monkeypatch.setattr(zoo_cli, "_train_with_progress", lambda *a: pytest.fail("trained before checking -o"))
    fails(["zoo", "train", "plain-cnn", "--seed", "1", "--fast", "-o", str(tmp_path / "missing" / "m.pt")], 2, "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.db"]


@pytest.mark.parametrize("label", ["ends in \\", 'quote " and \\"', "\\N\\G\\l", "<b>bold</b> & {x}", "a\\\\b"])
def test_labels_reach_diagrams_as_text(tmp_path, label):
    from circuits.render import render_circuit

    circuit = circuits.extract("planted:union", "union:0", depth=1, top_k=2)
    circuit.nodes["wedges:0"]["label"] = label
    svg = render_circuit(circuit, tmp_path / "c.svg").read_text()
    assert label in [html.unescape(t) for t in re.findall(r">([^<]*)</text>", svg)]


def test_an_sql_export_keeps_labels_with_control_characters(tmp_path):
    labels = ["ctrl\x01x", "nul\x00y", "cr\rz", "tab\tq", "sep\u2028w", "it's", "'); DROP TABLE neurons; --"]
    with Catalog(tmp_path / "a.db") as cat:
        cat.add_model("ab" * 32, "m", layers=["conv3"])
        for channel, text in enumerate(labels):
            cat.label("m", f"conv3:{channel}", text)
        script = cat.export("sql")
    copy = sqlite3.connect(tmp_path / "b.db")
    copy.executescript(script)
    assert [r[0] for r in copy.execute("SELECT label FROM neurons ORDER BY channel")] == labels


def test_a_device_given_as_output_is_written_through_not_replaced(tmp_path):
    import os
    import stat

    path = tmp_path / "cat.db"
    with Catalog(path) as cat:
        cat.add_model("ab" * 32, "m")
    result = CliRunner().invoke(main, ["catalog", "export", "--format", "sql", "-o", os.devnull, "--catalog", str(path)])
    assert result.exit_code == 0 and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    if os.path.exists("/dev/full"):  # a full disk: one line, exit 1, and the device is still a device
        fails(["catalog", "export", "--format", "sql", "-o", "/dev/full", "--catalog", str(path)], 1, "space")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
