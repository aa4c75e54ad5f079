"""``circuits planted list`` and ``circuits planted build``, driven through click's CliRunner."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from circuits.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def test_planted_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from circuits.cli import main\n"
        "r = CliRunner().invoke(main, ['planted', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'circuits planted build' in r.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1]
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", [["list"], ["build"]])
def test_every_planted_command_help_gives_an_example(runner, command):
    result = runner.invoke(main, ["planted", *command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "circuits planted" in result.output


def test_list_json_names_every_ready_spec_with_its_neurons(runner):
    from circuits.planted import get_spec, names

    result = runner.invoke(main, ["planted", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema_version"] == 1 and data["provenance"]["tool"] == "circuits"
    assert [row["name"] for row in data["planted"]] == names()
    union = next(row for row in data["planted"] if row["name"] == "inception-union")
    assert union["input_shape"] == [1, 24, 24]
    assert union["layers"]["mixed.left"] == ["wedge_left"]
    assert union["layers"]["union"] == ["union", "opponent", "cross", "decoy_2"]
    assert all(row["description"] == get_spec(row["name"]).description for row in data["planted"])


def test_list_prints_one_line_per_spec(runner):
    from circuits.planted import names

    result = runner.invoke(main, ["planted", "list"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.strip().splitlines()] == names()


def test_build_writes_state_dict_and_spec_sidecar(runner, tmp_path):
    import torch

    from circuits.models import load
    from circuits.models.loaded import weights_hash
    from circuits.planted import compile, effective_weights, load_spec

    path = tmp_path / "union.pt"
    result = runner.invoke(main, ["planted", "build", "bn-union", "-o", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["state_dict"] == str(path) and data["spec"] == f"{path}.spec.json"
    assert data["labels"]["wedges:1"] == "wedge_right" and data["input_shape"] == [1, 24, 24]

    state = torch.load(path, weights_only=True)
    assert "wedges.bn.running_var" in state and "mixed.left.conv.weight" not in state
    spec = load_spec(f"{path}.spec.json")
    assert spec.name == "bn-union"
    rebuilt = compile(spec)
    assert all(torch.equal(state[k], v) for k, v in rebuilt.state_dict().items())
    assert data["provenance"]["weights_sha256"] == weights_hash(rebuilt)
    # the spec sidecar states the effective weights: conv weights times BN scale
    bn = state["wedges.bn.weight"] / torch.sqrt(state["wedges.bn.running_var"] + 1e-5)
    folded = (state["wedges.conv.weight"] * bn[:, None, None, None]).numpy()
    np.testing.assert_allclose(folded, effective_weights(spec.layer("wedges")), atol=1e-5)
    # and the weights load back through the model spec, as other commands will load them
    loaded = load("planted:bn-union", weights=str(path))
    assert loaded.weights_hash == data["provenance"]["weights_sha256"]


def test_build_accepts_a_spec_file(runner, tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(
        "name: tiny\ninput: {channels: [gray], height: 16, width: 16}\n"
        "layers:\n  - name: edges\n    kernel_size: 3\n    neurons:\n"
        "      - {name: vertical, inputs: [{source: gray, kernel: {generator: edge, angle: 0}}]}\n"
    )
    out = tmp_path / "tiny.pt"
    result = runner.invoke(main, ["planted", "build", str(spec_file), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["labels"] == {"edges:0": "vertical"}
    assert json.loads((tmp_path / "tiny.pt.spec.json").read_text())["name"] == "tiny"


def test_build_unknown_name_is_a_usage_error_with_a_suggestion(runner, tmp_path):
    result = runner.invoke(main, ["planted", "build", "unoin", "-o", str(tmp_path / "x.pt")])
    assert result.exit_code == 2
    assert "did you mean 'union'" in result.output
    assert not (tmp_path / "x.pt").exists()


def test_build_bad_spec_file_is_a_usage_error(runner, tmp_path):
    spec_file = tmp_path / "bad.json"
    spec_file.write_text(json.dumps({"name": "bad", "layers": [
        {"name": "a", "neurons": [{"name": "n", "inputs": [{"source": "grey"}]}]}
    ]}))
    result = runner.invoke(main, ["planted", "build", str(spec_file), "-o", str(tmp_path / "x.pt")])
    assert result.exit_code == 2
    assert "unknown neuron 'grey'; did you mean 'gray'?" in result.output


def test_build_requires_output(runner):
    result = runner.invoke(main, ["planted", "build", "union"])
    assert result.exit_code == 2


def test_a_built_model_runs_through_the_other_commands_by_its_spec_file(tmp_path):
    out = tmp_path / "u.pt"
    assert CliRunner().invoke(main, ["planted", "build", "union", "-o", str(out)]).exit_code == 0
    result = CliRunner().invoke(main, ["extract", f"planted:{out}.spec.json", "--weights", str(out),
                                       "--neuron", "union:1", "--depth", "1", "--top-k", "2", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    signs = {e["source"]: e["sign"] for e in payload["edges"]}
    assert signs == {"wedges:0": 1, "wedges:1": -1}  # the opponent: left excites, right inhibits
