"""Readability aids: families and unions collapse into shorter forms only when measurement allows it."""

import copy
import json
import py_compile
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from circuits import planted
from circuits.cli import main
from circuits.compile import emit, simplify, verify
from circuits.compile.collapse import circuit_motifs
from circuits.compile.faithfulness import load_module
from circuits.extraction import extract
from circuits.models import LoadedModel
from circuits.motifs import find

SCHEMA = Path(__file__).parent.parent / "docs" / "extract.schema.json"


def bright_images(shape, n=48, seed=0):
    """Random bright images: strong enough that the planted wedge and union neurons fire."""
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 3


def kernel_constants(code: str) -> int:
    return len(re.findall(r"^[A-Z0-9_]+_K\d+ = ", code, flags=re.M))


def program_lines(code: str) -> int:
    """Lines of the program itself, without the SIMPLIFICATIONS record of what was tried."""
    return len(re.sub(r"\nSIMPLIFICATIONS = \[.*?\n\]\n", "\n", code, flags=re.S).splitlines())


@pytest.fixture(scope="module")
def union_model():
    return planted.load("union")


@pytest.fixture(scope="module")
def union_motifs(union_model):
    return find(union_model, kind="equivariance", include_invariant=True) + find(union_model, kind="union")


@pytest.fixture(scope="module")
def lines_collapsed(union_model, union_motifs):
    """union:3 (a decoy) reads every wedge, so its circuit holds all eight line detectors."""
    circuit = extract(union_model, "union:3", depth=3, top_k=16)
    return circuit, simplify(circuit, union_motifs, union_model, bright_images(union_model.input_shape))


def test_line_family_collapses_into_one_parametrised_function(lines_collapsed, union_model, tmp_path):
    circuit, result = lines_collapsed
    kept = [s for s in result.kept if s["kind"] == "family" and s["members"][0].startswith("lines:")]
    assert {tuple(s["members"]) for s in kept} == {("lines:0", "lines:4"), ("lines:1", "lines:5"),
                                                  ("lines:2", "lines:6"), ("lines:3", "lines:7")}  # fmt: skip
    code = result.module.code
    assert "def line_0_family(acts, quarter_turns):" in code
    assert re.search(r"def line_90\(acts\):\n    .*\n    return line_0_family\(acts, quarter_turns=1\)\n", code)

    # every member, written from disk and run on the model's real activations
    path = result.module.write(tmp_path / "lines.py")
    report = verify(path, union_model, bright_images(union_model.input_shape, seed=1))
    for member in (f"lines:{c}" for c in range(8)):
        assert report["neurons"][member]["r2"] >= 0.9999, member

    # the canonical kernel is the spec's own line kernel; its quarter turn is the partner's
    module = load_module(path)
    weights = planted.effective_weights(union_model.module.spec.layer("lines"))
    assert np.allclose(module.LINE_0_FAMILY_K0, weights[0, 0], atol=1e-5)
    assert np.allclose(np.rot90(module.LINE_0_FAMILY_K0), weights[4, 0], atol=1e-5)

    # shorter than the literal form
    literal = emit(circuit).code
    assert kernel_constants(code) < kernel_constants(literal)
    assert program_lines(code) < program_lines(literal)


def test_interpolated_rotation_is_recorded_but_not_tried(lines_collapsed):
    _, result = lines_collapsed
    rotate = [s for s in result.simplifications if s["transform"] == "rotate"]
    assert rotate and not any(s["kept"] for s in rotate)
    assert all("interpolated" in s["reason"] and s["collapsed_r2"] is None for s in rotate)


def test_wedge_pair_collapses_with_its_inputs_mapped_by_the_reflection(lines_collapsed):
    _, result = lines_collapsed
    wedges = [s for s in result.kept if s["members"] == ["wedges:0", "wedges:1"]]
    assert wedges and wedges[0]["transform"] == "reflect"
    assert "return wedge_left_family(acts, mirrored=True)" in result.module.code
    assert result.report["neurons"]["wedges:1"]["r2"] >= 0.9999


def test_union_collapses_into_cases_within_tolerance(union_model, union_motifs, tmp_path):
    circuit = extract(union_model, "union:0", depth=3, top_k=16)
    data = bright_images(union_model.input_shape)
    result = simplify(circuit, union_motifs, union_model, data)
    forms = {s["form"]: s for s in result.simplifications if s["kind"] == "union" and s["target"] == "union:0"}
    assert set(forms) == {"sum", "max"}
    kept = [s for s in forms.values() if s["kept"]]
    assert len(kept) == 1
    assert kept[0]["collapsed_r2"] >= kept[0]["literal_r2"] - 0.01
    for form in forms.values():  # each form's number is what verify says of that form alone
        assert form["collapsed_r2"] is not None
    body = re.search(r"def union\(acts\):.*?\n\n\n", result.module.code, flags=re.S).group(0)
    assert 'cases = [acts["wedges:0"], acts["wedges:1"]]' in body
    assert f"np.{'max' if kept[0]['form'] == 'max' else 'sum'}(cases, axis=0)" in body

    # the module as written is what the record says
    path = result.module.write(tmp_path / "union.py")
    report = verify(path, union_model, data)
    assert report["r2"] >= result.literal["r2"] - 0.01
    assert report["r2"] == pytest.approx(kept[0]["collapsed_r2"], abs=1e-6)


def test_a_costly_collapse_is_refused_and_recorded(union_model, union_motifs):
    """Perturb line_90 in a copy of the model: the (line_0, line_90) family is no longer a quarter turn."""
    module = copy.deepcopy(union_model.module)
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[4] += 0.5 * torch.randn(conv.weight[4].shape, generator=torch.Generator().manual_seed(0))
    perturbed = LoadedModel(module, spec="planted:union", input_shape=union_model.input_shape,
                            labels=union_model.labels)  # fmt: skip
    circuit = extract(perturbed, "union:3", depth=3, top_k=16)
    result = simplify(circuit, union_motifs, perturbed, bright_images(union_model.input_shape))
    pair = next(s for s in result.simplifications if s["members"] == ["lines:0", "lines:4"])
    assert pair["kept"] is False
    assert pair["collapsed_r2"] < pair["literal_r2"] - 0.01
    assert "costs more than the tolerance" in pair["reason"]
    assert "def line_0_family" not in result.module.code
    assert result.report["neurons"]["lines:4"]["r2"] >= 0.9999  # the literal form stayed
    assert any(s["kept"] for s in result.simplifications if s["members"] == ["lines:1", "lines:5"])


def test_a_collapse_that_wakes_a_silent_member_is_refused(union_model, union_motifs):
    """line_90's bias is set just below its largest drive on the data, so it never fires there and has no R²;
    the family's mean bias makes it fire, and the refusal must say so rather than pass for lack of a number."""
    module = copy.deepcopy(union_model.module)
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    data = bright_images(union_model.input_shape)
    with torch.no_grad():
        drive = torch.nn.functional.conv2d(data, conv.weight[4:5], None, conv.stride, conv.padding).max()
        conv.bias[4] = -(float(drive) + 0.01)
    silent = LoadedModel(module, spec="planted:union", input_shape=union_model.input_shape,
                         labels=union_model.labels)  # fmt: skip
    circuit = extract(silent, "union:3", depth=3, top_k=16)
    result = simplify(circuit, union_motifs, silent, data)
    pair = next(s for s in result.simplifications if s["members"] == ["lines:0", "lines:4"])
    assert pair["kept"] is False and "lines:4 is constant on the data" in pair["reason"]
    assert result.report["neurons"]["lines:4"]["max_abs_error"] < 1e-6  # the literal form stayed


def test_a_family_listed_against_the_emit_order_still_collapses(union_model, union_motifs, tmp_path):
    """The detector may list a family's members in any order (conv2:17, conv2:15, ...): emit must not
    depend on meeting the first-listed member first."""
    reversed_motifs = [dict(m, members=list(reversed(m["members"]))) if m["kind"] == "equivariance"
                       and list(m["members"]) == ["wedges:0", "wedges:1"] else m
                       for m in (x.to_dict() for x in union_motifs)]  # fmt: skip
    assert any(m["members"] == ["wedges:1", "wedges:0"] for m in reversed_motifs)
    circuit = extract(union_model, "union:0", depth=3, top_k=16)
    data = bright_images(union_model.input_shape)
    result = simplify(circuit, reversed_motifs, union_model, data)
    assert any(s["kept"] and s["members"] == ["wedges:1", "wedges:0"] for s in result.simplifications)
    report = verify(result.module.write(tmp_path / "reversed.py"), union_model, data)
    for wedge in ("wedges:0", "wedges:1"):
        assert report["neurons"][wedge]["r2"] >= 0.9999


HOSTILE = [
    'quote " and \' and """ triple """',
    "__import__('pathlib').Path('MARKER').touch()",
    "'''); __import__('pathlib').Path('MARKER').touch(); ('''",
    '"""\nimport pathlib; pathlib.Path("MARKER").touch()\n"""',
]


def test_simplified_modules_are_clean_and_labels_cannot_inject_code(union_model, union_motifs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    neurons = ["union:0", "wedges:0", "wedges:1", "lines:2", "lines:6", "input:0"]
    labels = {n: HOSTILE[i % len(HOSTILE)] for i, n in enumerate(neurons)}
    hostile = LoadedModel(union_model.module, spec="planted:union", input_shape=union_model.input_shape,
                          labels=labels)  # fmt: skip
    data = bright_images(union_model.input_shape)
    paths = []
    for target in ("union:0", "union:3"):
        result = simplify(extract(hostile, target, depth=3, top_k=16), union_motifs, hostile, data)
        assert result.kept
        paths.append(result.module.write(tmp_path / f"{target.replace(':', '_')}.py"))
    for path in paths:
        py_compile.compile(str(path), doraise=True)
        module = load_module(path)
        assert isinstance(module.SIMPLIFICATIONS, list) and module.SIMPLIFICATIONS
        scores = [n["r2"] for n in verify(path, hostile, data)["neurons"].values() if n["r2"] is not None]
        assert scores and min(scores) >= 0.99
    assert not (tmp_path / "MARKER").exists()
    if shutil.which("ruff"):
        result = subprocess.run(["ruff", "check", "--isolated", "--select", "E,W,F,I", *map(str, paths)],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stdout


def test_circuit_motifs_find_the_planted_union_and_its_families(union_model):
    circuit = extract(union_model, "union:0", depth=3, top_k=16)
    motifs = circuit_motifs(union_model, circuit)
    assert any(m.kind == "union" and m.target == "union:0" for m in motifs)
    assert any(m.kind == "equivariance" and m.members == ("wedges:0", "wedges:1") for m in motifs)


def test_cli_extract_emit_simplify_reports_what_was_kept(tmp_path):
    out, images = tmp_path / "u.py", tmp_path / "bright.pt"
    torch.save(bright_images((1, 24, 24)), images)  # the toy world rarely shows a planted wedge
    args = ["extract", "planted:union", "--neuron", "union:0", "--depth", "3", "--emit", str(out), "--simplify",
            "--data", str(images), "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    tried = payload["emitted"]["simplifications"]
    assert any(s["kept"] and s["kind"] == "union" for s in tried)
    assert any(s["kept"] and s["members"] == ["wedges:0", "wedges:1"] for s in tried)
    module = load_module(out)
    assert module.SIMPLIFICATIONS == tried and module.FAITHFULNESS["r2"] is not None
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(payload, json.loads(SCHEMA.read_text()))


def test_cli_simplify_needs_emit():
    result = CliRunner().invoke(main, ["extract", "planted:union", "--neuron", "union:0", "--simplify"])
    message = result.output.strip()
    assert result.exit_code == 2 and message.startswith("Error: ") and "\n" not in message
    assert "--simplify" in message and "--emit" in message
