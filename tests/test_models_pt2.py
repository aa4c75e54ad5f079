"""torch.export archives (FILE.pt2) are read as data: crafted archives run nothing, broken ones are one line.

Each hostile archive is a real ``torch.export.save`` archive with one member replaced by a payload that
would create a marker file; where plain ``torch.export.load`` runs the payload, the test shows it does,
so the refusal is checked against a live attack, not a made-up one.
"""

import io
import json
import os
import zipfile

import nets
import pytest
import torch
from click.testing import CliRunner
from fuzz_tally import tally

from circuits.cli import main
from circuits.errors import BadSpecError, ModelLoadError
from circuits.graph import build_graph
from circuits.models import load


class Payload:
    """Unpickling this runs code that creates MARKER (what a hostile pickle inside an archive does); it
    calls no external program, so it proves the same on a machine whose PATH holds none."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def torch_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def plain_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt2") / "plain.pt2"
    torch.export.save(torch.export.export(nets.PlainCNN().eval(), (torch.randn(1, 3, 16, 16),)), str(path))
    return path


def craft(source, target, change):
    """Copy the archive ``source`` to ``target`` with ``change(members)`` applied (names without the top folder)."""
    with zipfile.ZipFile(source) as archive:
        top = archive.namelist()[0].partition("/")[0]
        members = {name.partition("/")[2]: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(target, "w") as archive:
        for name, blob in members.items():
            archive.writestr(f"{top}/{name}", blob)
    return target


def pickled_sample_inputs(members, marker):
    members["data/sample_inputs/model.pt"] = torch_pickle(((Payload(marker),), {}))


def pickled_weight(members, marker):
    config = json.loads(members["data/weights/model_weights_config.json"])
    config["config"]["conv1.weight"]["use_pickle"] = True
    members["data/weights/model_weights_config.json"] = json.dumps(config).encode()
    members["data/weights/weight_0"] = torch_pickle(Payload(marker))


def pickled_opaque_constant(members, marker):
    config = {"config": {"hostile": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True}}}
    members["data/constants/model_constants_config.json"] = json.dumps(config).encode()
    members["data/constants/opaque_obj_0"] = torch_pickle(Payload(marker))


def symbolic_shape_that_evals(members, marker):
    program = json.loads(members["models/model.json"])
    tensor = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
    tensor["sizes"][0] = {"as_expr": {"expr_str": f"__import__('pathlib').Path({str(marker)!r}).touch()", "hint": {"as_int": 1}}}  # fmt: skip
    members["models/model.json"] = json.dumps(program).encode()


def operator_outside_torch_ops(members, marker):
    text = members["models/model.json"].decode()
    members["models/model.json"] = text.replace('"torch.ops.aten.relu.default"', '"torch.os.system"', 1).encode()


def compiled_code(members, marker):
    members["data/aotinductor/model/model.so"] = b"\x7fELF"


def legacy_pickled_weights(members, marker):
    members["data/weights/model.pt"] = torch_pickle({"w": Payload(marker)})


HOSTILE = {
    "pickled sample inputs": (pickled_sample_inputs, True),
    "pickled weight": (pickled_weight, True),
    "symbolic shape that evals": (symbolic_shape_that_evals, True),
    "pickled opaque constant": (pickled_opaque_constant, False),
    "operator outside torch.ops": (operator_outside_torch_ops, False),
    "compiled code": (compiled_code, False),
    "legacy pickled weights": (legacy_pickled_weights, False),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_archive_is_refused_in_one_line_and_its_payload_never_runs(plain_archive, tmp_path, name):
    change, torch_runs_it = HOSTILE[name]
    marker = tmp_path / "marker"
    path = craft(plain_archive, tmp_path / "hostile.pt2", lambda members: change(members, marker))
    if torch_runs_it:  # the attack is real: torch's own loader runs it
        try:
            torch.export.load(str(path))
        except Exception:
            pass
        assert marker.exists(), "the crafted payload no longer runs in torch.export.load; update the test"
        marker.unlink()

    with pytest.raises(ModelLoadError) as info:
        load(str(path))
    assert "refused to load" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()

    result = CliRunner().invoke(main, ["layers", str(path)])
    tally.hostile(refused=result.exit_code != 0, ran=marker.exists())
    assert result.exit_code == 1 and not marker.exists()
    assert _one_error_line(result).startswith(f"Error: refused to load '{path}'")


@pytest.mark.parametrize("name", ["InceptionNet", "ResNet", "MobileNetLike", "EfficientNetLike"])
def test_plain_archive_of_a_twin_loads_with_the_fx_versions_layers(tmp_path, name):
    model = getattr(nets, name)().eval()
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, *model.input_shape),)), str(path))
    graph, fx_graph = build_graph(load(str(path))), build_graph(model)
    assert list(graph.layers) == list(fx_graph.layers)
    assert [layer.sources for layer in graph.layers.values()] == [layer.sources for layer in fx_graph.layers.values()]


def test_archive_with_a_dynamic_batch_and_lifted_constants_loads(tmp_path):
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.scale = torch.full((4, 1, 1), 2.0)  # a lifted tensor constant, stored raw

        def forward(self, x):
            return torch.relu(self.conv(x) * self.scale)

    model, path = Scaled().eval(), tmp_path / "dynamic.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.randn(2, 3, 8, 8),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    loaded = load(str(path))
    x = torch.randn(5, 3, 8, 8)
    assert loaded.input_shape == (3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), model(x), atol=1e-6)


def _one_error_line(result) -> str:
    text = result.output
    assert "Traceback" not in text and "internal error" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), text
    return lines[0]


def _truncated(plain, path):
    path.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])


def _no_program(plain, path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/data/notes.txt", "no program here")


def _damaged_program(plain, path):
    craft(plain, path, lambda members: members.update({"models/model.json": b'{"graph_module": 7}'}))


BROKEN = {
    "empty": (lambda plain, path: path.write_bytes(b""), "is empty"),
    "random bytes": (lambda plain, path: path.write_bytes(os.urandom(4096)), "not a readable torch.export archive"),
    "truncated zip": (_truncated, "not a readable torch.export archive"),
    "zip without the members": (_no_program, "not a torch.export archive (no archive_version)"),
    "damaged program": (_damaged_program, "damaged torch.export archive"),
    "directory": (lambda plain, path: path.mkdir(), "is a directory"),
    "missing": (lambda plain, path: None, "does not exist"),
}


@pytest.mark.parametrize("command", [["layers"], ["extract", "--neuron", "conv1:0"]])
@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_archive_is_one_line_usage_error(plain_archive, tmp_path, name, command):
    make, words = BROKEN[name]
    path = tmp_path / "model.pt2"
    make(plain_archive, path)
    with pytest.raises(BadSpecError, match="pt2|archive|directory|empty|exist"):
        load(str(path))
    result = CliRunner().invoke(main, [command[0], str(path), *command[1:]])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert words in line and str(path) in line
