"""Motif collapses across a whole program (`circuits compile --simplify`): a family written as one function
and a union's cases through one kernel, kept only where measured faithful, and the package still exact
where the planted motifs are exact."""

import copy
import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from circuits import planted
from circuits.cli import main
from circuits.graph import build_graph
from circuits.program import compile_program, verify_program
from circuits.program.package import import_package
from circuits.program.prune import kept_inputs
from circuits.program.simplify import CaseForm, _Probe, rewrite
from circuits.program.terms import network_terms
from circuits.program.writer import package_files


class TurnedNet(torch.nn.Module):
    """Two exactly rotation-equivariant conv layers (channel j the quarter turn of channel 0, conv2 reading
    conv1's channels turned along with it), then a dense read-out: conv2's family is one function only if
    the transform's map of conv1's channels is known too, and no motif says it (3x3 grey kernels cannot
    show a quarter turn beyond chance from weights alone)."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 16 * 16, 3)
        base1, base2 = torch.randn(1, 3, 3, generator=g), torch.randn(4, 3, 3, generator=g)
        with torch.no_grad():
            for j in range(4):
                self.conv1.weight[j] = torch.rot90(base1, j, dims=(1, 2))
                for i in range(4):
                    self.conv2.weight[j, (i + j) % 4] = torch.rot90(base2[i], j, dims=(0, 1))
            self.conv1.bias.fill_(-0.1)
            self.conv2.bias.fill_(0.05)
            self.fc.weight.copy_(torch.randn(3, 4 * 16 * 16, generator=g) * 0.05)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


def bright(shape, n=48, seed=0):
    """Random bright images: strong enough that the planted wedges and unions fire."""
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 3


def model_logits(module, x):
    with torch.no_grad():
        return module.eval()(x).double().numpy()


@pytest.fixture(scope="module")
def union_model():
    return planted.load("union")


@pytest.fixture(scope="module")
def simplified(union_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("simplified") / "p"
    program = compile_program(union_model, data=bright(union_model.input_shape), simplify=True)
    program.write(folder)
    return program, import_package(folder), folder


def test_exact_planted_families_and_unions_collapse_and_the_program_stays_exact(union_model, simplified, tmp_path):
    program, package, folder = simplified
    kept = {(r["kind"], tuple(r["members"]), r["target"], r["form"]) for r in program.manifest["simplifications"] if r["kept"]}
    pairs = {("lines:0", "lines:4"), ("lines:1", "lines:5"), ("lines:2", "lines:6"), ("lines:3", "lines:7")}
    assert {m for kind, m, _, _ in kept if kind == "family" and m[0].startswith("lines")} == pairs
    assert ("family", ("wedges:0", "wedges:1"), None, "parametrised") in kept
    assert ("union", ("wedges:0", "wedges:1"), "union:0", "sum") in kept

    # the whole package, run on images alone, against the model's own forward
    x = bright(union_model.input_shape, n=32, seed=5)
    assert np.abs(package.logits(x.numpy()) - model_logits(union_model.module, x)).max() < 1e-4

    # one function per family: the canonical kernel is the spec's line kernel, its quarter turn the partner's
    lines = package.LAYERS["lines"]
    family = [name for name in dir(lines) if name.endswith("_family") and not name.isupper()]
    assert len(family) == 4
    weights = planted.effective_weights(union_model.module.spec.layer("lines"))
    canonical = getattr(lines, family[0].upper() + "_K0")
    assert np.allclose(canonical[0], weights[0, 0], atol=1e-6)
    assert np.allclose(np.rot90(canonical[0]), weights[4, 0], atol=1e-6)

    # fewer numbers stored than the literal program
    literal = compile_program(union_model, data=bright(union_model.input_shape))
    assert program.manifest["numbers"] < literal.manifest["numbers"]


def test_a_family_reading_a_family_maps_its_inputs_and_stays_exact(tmp_path):
    from circuits.models import LoadedModel

    model = LoadedModel(TurnedNet(), spec="turned", input_shape=(1, 16, 16))
    x = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    program = compile_program(model, data=x, simplify=True)
    family = next(r for r in program.manifest["simplifications"] if r["members"] == [f"conv2:{j}" for j in range(4)])
    assert family["kept"], family["reason"]
    program.write(tmp_path / "p")
    package = import_package(tmp_path / "p")
    conv2 = package.LAYERS["conv2"]
    table = next(getattr(conv2, n) for n in dir(conv2) if n.endswith("_IN0"))
    assert [list(row) for row in table] == [[(i + j) % 4 for i in range(4)] for j in range(4)]  # the turn's map
    test = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert np.abs(package.logits(test.numpy()) - model_logits(model.module, test)).max() < 1e-4


def test_a_union_that_is_a_sum_is_not_written_as_a_max(simplified):
    """The planted unions are relu(left + right): on images where both fire, a max is not the same neuron."""
    program, _, _ = simplified
    maxed = [r for r in program.manifest["simplifications"] if r["form"] == "max" and r["target"] == "union:0"]
    assert maxed and not maxed[0]["kept"] and "costs more than the tolerance" in maxed[0]["reason"]
    assert maxed[0]["collapsed_r2"] < maxed[0]["literal_r2"] - 0.01


def test_a_broken_copy_is_refused_and_stays_literal(union_model):
    """lines:4 no longer the quarter turn of lines:0: its family must not be kept; the others still are."""
    broken = copy.deepcopy(union_model)
    conv = broken.module.lines if hasattr(broken.module, "lines") else None
    conv = conv if isinstance(conv, torch.nn.Conv2d) else next(m for m in broken.module.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[4] += torch.randn(conv.weight[4].shape, generator=torch.Generator().manual_seed(3)) * 0.5
    images = bright(union_model.input_shape)
    program = compile_program(broken, data=images, simplify=True)
    pair = next(r for r in program.manifest["simplifications"] if r["members"] == ["lines:0", "lines:4"])
    assert not pair["kept"] and "costs more than the tolerance" in pair["reason"]
    assert any(r["kept"] for r in program.manifest["simplifications"] if r["members"] == ["lines:1", "lines:5"])
    rows = {n["neuron"]: n for layer in program.manifest["layers"] for n in layer["neurons"]}
    assert "form" not in rows["lines:4"] and rows["lines:5"]["form"]["copy"] == 1


def test_the_max_form_is_written_as_it_was_measured(union_model, tmp_path):
    """A union's max form written into a package computes what the measurement computed, and both are
    max(case terms) through the shared kernel, checked against numpy on the model's own activations."""
    graph = build_graph(union_model)
    network = network_terms(graph)
    kept = [kept_inputs(lt) for lt in network]
    i = [lt.layer for lt in network].index("union")
    lt = network[i]
    term = next(j for j, t in enumerate(lt.terms) if t.source == "wedges")
    form = CaseForm("union", 0, term, "reflect", [0, 1], lt.terms[term].kernels[0, 0].copy(), "max")
    network[i], kept[i] = rewrite(lt, kept[i], [form])
    meta = {"model": "planted:union", "weights_sha256": graph.weights_hash, "tool_version": "test", "input": graph.input_layer,
            "input_shape": list(graph.input_shape), "logits": "union", "pruning": "test", "labels": {}}  # fmt: skip
    files, _ = package_files(network, kept, {}, meta, forms={"union": [form]})
    folder = tmp_path / "p"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    package = import_package(folder)
    x = bright(union_model.input_shape, n=16, seed=2)
    acts = {k: v.double().numpy() for k, v in graph.run(x, ["input", "wedges", "union"]).items()}
    written = package.LAYERS["union"].run(acts)[:, 0]
    w = float(lt.terms[term].kernels[0, 0].reshape(-1)[0])
    expected = np.maximum(np.maximum(w * acts["wedges"][:, 0], w * acts["wedges"][:, 1]) + lt.bias[0], 0)
    assert np.abs(written - expected).max() < 1e-9
    probe = _Probe(graph, network[i], x)
    measured = probe.fit(network[i], kept[i], [form], False, [0])[0]
    truth = acts["union"][:, 0]
    r2 = 1 - ((truth - written) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert measured["r2"] == pytest.approx(r2, abs=1e-9)


def test_pruned_zoo_program_keeps_only_measured_collapses(tmp_path):
    """A trained net's unions are approximate: whatever is kept was within the tolerance, and the program,
    measured end to end on other images, agrees with the model as well as the literal one to within 1%."""
    import circuits

    model = circuits.load("zoo:plain-cnn")
    probe = circuits.load_data("toyworld:128:12345", model.input_shape)
    held = circuits.load_data("toyworld:256:10000", model.input_shape)
    literal = compile_program(model, top_k=8, data=probe)
    program = compile_program(model, top_k=8, data=probe, simplify=True)
    records = program.manifest["simplifications"]
    assert records and all(r["reason"] for r in records)
    for r in records:
        if r["kept"]:
            assert r["collapsed_r2"] >= r["literal_r2"] - 0.01
    literal.write(tmp_path / "literal")
    program.write(tmp_path / "simplified")
    before = verify_program(tmp_path / "literal", model, held)
    after = verify_program(tmp_path / "simplified", model, held)
    assert after["agreement"] >= before["agreement"] - 0.01
    if shutil.which("ruff"):
        result = subprocess.run(["ruff", "check", "--isolated", "--select", "E,W,F,I", str(tmp_path / "simplified")],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stdout


def test_simplified_planted_package_passes_ruff(simplified):
    if not shutil.which("ruff"):
        pytest.skip("ruff is a test extra")
    _, _, folder = simplified
    result = subprocess.run(["ruff", "check", "--isolated", "--select", "E,W,F,I", str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_cli_simplify_reports_what_it_kept(tmp_path):
    import json

    out = tmp_path / "p"
    result = CliRunner().invoke(main, ["compile", "planted:union", "-o", str(out), "--simplify", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["provenance"]["arguments"]["simplify"] is True
    assert sum(r["kept"] for r in payload["simplifications"]) >= 6
    assert payload["faithfulness"]["agreement"] == 1.0
    assert "Simplifications" in (out / "PROGRAM.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--tolerance", "0.1"], "pass --simplify"),
    (["--simplify", "--tolerance", "nan"], "tolerance"),
])  # fmt: skip
def test_bad_simplify_options_are_one_line_and_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(main, ["compile", "planted:union", "-o", str(tmp_path / "p"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "p").exists()


def test_simplify_needs_probe_images():
    from circuits.errors import UsageError

    with pytest.raises(UsageError, match="pass --data"):
        compile_program(planted.load("union"), simplify=True)


HOSTILE = ['quote " and \' and """ triple """', "__import__('pathlib').Path('MARKER').touch()",
           '"""\nimport pathlib; pathlib.Path("MARKER").touch()\n"""', "new\nline | `md` \\ back", "run", "np"]  # fmt: skip


def test_labels_cannot_become_code_in_family_and_case_forms(union_model, tmp_path, monkeypatch):
    from circuits.models import LoadedModel

    monkeypatch.chdir(tmp_path)
    names = [f"lines:{c}" for c in range(8)] + ["wedges:0", "wedges:1", "union:0", "union:2"]
    labels = {n: HOSTILE[i % len(HOSTILE)] for i, n in enumerate(names)}
    hostile = LoadedModel(union_model.module, spec="planted:union", input_shape=union_model.input_shape, labels=labels)
    program = compile_program(hostile, data=bright(union_model.input_shape), simplify=True)
    assert sum(r["kept"] for r in program.manifest["simplifications"]) >= 6
    program.write(tmp_path / "p")
    package = import_package(tmp_path / "p")
    assert not (tmp_path / "MARKER").exists()
    x = bright(union_model.input_shape, n=8, seed=4)
    assert np.abs(package.logits(x.numpy()) - model_logits(union_model.module, x)).max() < 1e-4
    assert not (tmp_path / "MARKER").exists()
    if shutil.which("ruff"):
        result = subprocess.run(["ruff", "check", "--isolated", "--select", "E,W,F,I", str(tmp_path / "p")],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stdout
