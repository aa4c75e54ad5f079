"""The CLI contract: JSON shapes, exit codes, one-line errors, torch-free start, rendering."""

import json
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import pytest
from click.testing import CliRunner

from circuits.cli import main
from circuits.errors import UsageError

NETS = str(Path(__file__).parent / "nets.py")


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_help_and_version_start_without_importing_torch():
    code = (
        "import sys; from click.testing import CliRunner; from circuits.cli import main\n"
        "for args in (['--help'], ['--version'], ['extract', '--help'], ['layers', '--help']):\n"
        "    r = CliRunner().invoke(main, args); assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_command_help_shows_an_example():
    for command in ("layers", "extract"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "circuits " + command in result.output


def test_layers_json_lists_layers_with_sources():
    result = run("layers", f"{NETS}:InceptionNet", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["schema_version"] == 1
    assert payload["provenance"]["weights_sha256"] and payload["provenance"]["arguments"]["model"]
    layers = {layer["name"]: layer for layer in payload["layers"]}
    assert layers["inc1"]["kind"] == "concat" and layers["inc1"]["channels"] == 16
    assert layers["inc2.b1"]["sources"] == ["inc1.b1", "inc1.b3", "inc1.b5", "inc1.bp"]
    assert layers["stem"]["spatial"] == [16, 16]


def test_extract_json_contract():
    result = run("extract", f"{NETS}:ResNet", "--neuron", "layer2.0:1", "--depth", "2", "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload) >= {"schema_version", "model", "target", "method", "nodes", "edges", "provenance"}
    assert payload["target"] == "layer2.0:1" and payload["method"] == "weights"
    assert payload["provenance"]["arguments"]["top_k"] == 3
    node_ids = {n["id"] for n in payload["nodes"]}
    for node in payload["nodes"]:
        assert set(node) >= {"id", "layer", "channel", "depth", "label"}
    for edge in payload["edges"]:
        assert set(edge) >= {"source", "target", "weight", "kernel"}
        assert edge["source"] in node_ids and edge["target"] in node_ids
        assert all(isinstance(v, float) for row in edge["kernel"] for v in row)
    assert sum(1 for e in payload["edges"] if e["target"] == "layer2.0:1") == 3


def test_extract_text_is_a_tree_with_signs():
    result = run("extract", f"{NETS}:ResNet", "--neuron", "layer2.0:1", "--top-k", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("layer2.0:1")
    assert any(line.lstrip("│ ").startswith(("├─ +", "└─ +", "├─ −", "└─ −")) for line in lines[1:])


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_render_writes_a_diagram_with_every_node(tmp_path, suffix):
    out = tmp_path / f"circuit.{suffix}"
    result = run("extract", f"{NETS}:PlainCNN", "--neuron", "conv3:2", "--top-k", "3", "--render", str(out), "--json")
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    if suffix == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        return
    xml.dom.minidom.parseString(data)  # valid XML
    text = data.decode()
    for node in json.loads(result.output)["nodes"]:
        assert f"<title>{node['id'].replace('.', '_').replace(':', '_')}</title>" in text or node["id"] in text
    assert "data:image/png;base64" in text  # kernel thumbnails embedded, the SVG travels alone


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["extract", "zoo:no-such-model", "--neuron", "a:0"], 2, "unknown zoo model"),
        (["extract", "nowhere/model.py:Net", "--neuron", "a:0"], 2, "does not exist"),
        (["extract", "weights.pt", "--neuron", "a:0"], 2, "--weights"),
        (["extract", f"{NETS}:PlainCNN", "--neuron", "conv4:0"], 2, "did you mean 'conv"),
        (["extract", f"{NETS}:PlainCNN", "--neuron", "conv3:10"], 2, "out of range"),
        (["extract", f"{NETS}:PlainCNN", "--neuron", "conv3:0", "--depth", "0"], 2, "depth"),
        (["extract", f"{NETS}:PlainCNN", "--neuron", "conv3:0", "--input-shape", "3,x"], 2, "input-shape"),
        (["extract", f"{NETS}:PlainCNN", "--neuron", "conv3:0", "--input-shape", "1,16,16"], 2, "does not accept an input"),
        (["extract", f"{NETS}:PlainCNN", "--neuron", "conv3:0", "--render", "out.gif"], 2, ".svg or .png"),
        (["layers", f"{NETS}:NoSuchNet"], 2, "has no attribute"),
        (["extract", "zoo:plain-cnn", "--neuron", "conv3:0", "--method", "attribution", "--data", "nowhere/"], 2,
         "does not exist"),
        (["extract", "zoo:plain-cnn", "--neuron", "conv3:0", "--method", "attribution", "--data", "noise:x"], 2,
         "noise"),
    ],
)
def test_bad_input_gives_one_line_and_the_right_exit_code(args, code, words):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and "\n" not in message, message
    assert words in message
    assert "Traceback" not in result.output


SCHEMA = Path(__file__).parent.parent / "docs" / "extract.schema.json"


@pytest.mark.parametrize(
    "args",
    [
        [f"{NETS}:InceptionNet", "--neuron", "inc2:7", "--depth", "2", "--top-k", "3"],
        [f"{NETS}:ONetLike", "--neuron", "dense4:1", "--depth", "3", "--top-k", "2"],
        ["planted:union", "--neuron", "union:1", "--depth", "3", "--top-k", "2", "--through", "lines"],
    ],
)
def test_extract_json_validates_against_the_documented_schema(args):
    jsonschema = pytest.importorskip("jsonschema")
    result = run("extract", *args, "--json")
    assert result.exit_code == 0, result.output
    jsonschema.validate(json.loads(result.output), json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("option, name", [("--emit", "out.py"), ("--render", "out.svg")])
def test_extract_refuses_an_output_in_a_missing_folder_before_any_work(tmp_path, option, name):
    target = tmp_path / "missing" / name
    result = run("extract", "planted:union", "--neuron", "union:0", option, str(target))
    message = result.output.strip()
    assert result.exit_code == 2 and message.startswith("Error: ") and "\n" not in message
    assert "does not exist" in message and option in message
    assert not target.parent.exists()


def test_the_top_level_api_names_functions_not_modules_and_imports_no_torch():
    code = ("import sys, circuits; assert 'torch' not in sys.modules; "
            "import circuits.extraction, circuits.compile.layout, circuits.compile.collapse; "
            "import inspect; names = [n for n in circuits.__all__ if n != '__version__']; "
            "bad = [n for n in names if inspect.ismodule(getattr(circuits, n))]; assert not bad, bad; "
            "assert circuits.compile.emit.__module__ == 'circuits.compile.layout'; "
            "assert circuits.compile.simplify.__module__ == 'circuits.compile.collapse'; print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 15


def test_weights_and_attribution_take_model_source_target_in_that_order():
    import circuits
    from circuits.data import load_data

    graph = circuits.layers(circuits.load("zoo:plain-cnn"))
    by_position = circuits.weights(graph, "conv2", "conv3")
    by_keyword = circuits.weights(graph, target="conv3", source="conv2")
    assert by_position.tensor.equal(by_keyword.tensor) and by_position.tensor.shape[:2] == (32, 32)
    data = load_data("toyworld:8:1", graph.input_shape)
    a = circuits.attribution(graph, "conv2", "conv3", data).tensor
    b = circuits.attribution(graph, source="conv2", target="conv3", data=data).tensor
    assert a.equal(b)
    with pytest.raises(UsageError, match="target"):
        circuits.weights(graph, "conv3")  # the old (model, target) order names a source, and says so
