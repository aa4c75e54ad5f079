"""Whole-model programs: complete ones reproduce the model's own forward, pruned ones are measured honestly,
and the package is plain, safe numpy."""

import ast
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from nets import ALL_NETS, MobileNetV2Twin, UpsamplingNet
from torch import nn

import circuits
from circuits.cli import main
from circuits.errors import UsageError
from circuits.graph import build_graph
from circuits.models import LoadedModel
from circuits.program import compile_program, verify_program
from circuits.program.package import import_package
from circuits.program.verify import load_verify_data

ZOO = ["plain-cnn", "plain-cnn-sparse", "facing-cnn", "curve-cnn", "inception-cnn", "resnet-cnn", "mlp"]
TWINS = [*ALL_NETS, UpsamplingNet, MobileNetV2Twin]


def model_logits(module, x):
    """The model's own forward, untouched by the tool: the reference a program must reproduce."""
    with torch.no_grad():
        out = module.eval()(x)
    return (out[0] if isinstance(out, tuple) else out).double().numpy()


def compiled(model, folder, **options):
    compile_program(model, **options).write(folder)
    return import_package(folder)


@pytest.mark.parametrize("net", TWINS, ids=lambda n: n.__name__)
def test_complete_program_reproduces_each_architecture_twin(net, tmp_path):
    module = net()
    program = compiled(module, tmp_path / "p")
    x = torch.rand(8, *module.input_shape, generator=torch.Generator().manual_seed(0)) * 2
    expected = model_logits(module, x)  # logits, or ONet's softmax of them
    emitted = program.run(x.numpy())[program.LOGITS]
    assert np.abs(emitted - expected).max() < 1e-4
    assert (program.predict(x.numpy()) == expected.argmax(1)).all()


@pytest.mark.parametrize("family", ZOO)
def test_complete_program_reproduces_each_zoo_model(family, tmp_path):
    loaded = circuits.load(f"zoo:{family}")
    program = compiled(loaded, tmp_path / "p")
    x = circuits.load_data("toyworld:64:3", loaded.input_shape)
    expected = model_logits(loaded.module, x)
    emitted = program.logits(x.numpy())
    assert np.abs(emitted - expected).max() < 1e-4
    assert (program.predict(x.numpy()) == expected.argmax(1)).all()


def test_every_layer_of_a_complete_program_matches_the_model(tmp_path):
    loaded = circuits.load("zoo:inception-cnn")  # concat, a pool after the concat, a pool of a pooled map
    program = compiled(loaded, tmp_path / "p")
    x = circuits.load_data("toyworld:16:4", loaded.input_shape)
    graph = build_graph(loaded)
    real = graph.run(x)
    acts = program.run(x.numpy())
    for name in program.LAYERS:
        assert np.abs(acts[name] - real[name].double().numpy()).max() < 1e-4, name


def test_sparse_zoo_program_at_top8_keeps_95_percent_agreement(tmp_path):
    result = CliRunner().invoke(main, ["compile", "zoo:plain-cnn-sparse", "-o", str(tmp_path / "p"), "--top-k", "8",
                                       "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["schema_version"] and payload["provenance"]["weights_sha256"]
    faithfulness = payload["faithfulness"]
    assert faithfulness["images"] == 2000 and faithfulness["data"] == "toyworld:objects:2000:10000"
    assert faithfulness["agreement"] >= 0.95
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert max(n["kept"] for layer in manifest["layers"] for n in layer["neurons"]) == 8
    stored = json.loads((tmp_path / "p" / "FAITHFULNESS.json").read_text())
    assert stored["agreement"] == faithfulness["agreement"]
    assert "R²" in (tmp_path / "p" / "PROGRAM.md").read_text()


def test_ranking_by_data_beats_ranking_by_weight_at_the_same_size(tmp_path):
    loaded = circuits.load("zoo:plain-cnn-sparse")
    probe = circuits.load_data("toyworld:256:12345", loaded.input_shape)
    test = load_verify_data("toyworld:objects:600:10000", loaded)
    scores = {}
    for rank in ("data", "weight"):
        compile_program(loaded, top_k=4, data=probe, rank=rank).write(tmp_path / rank)
        scores[rank] = verify_program(tmp_path / rank, loaded, test)["agreement"]
    assert scores["data"] > scores["weight"] + 0.1


def test_a_linear_layers_dropped_inputs_are_replaced_by_their_exact_mean(tmp_path):
    """fc has no nonlinearity: on the probe images themselves, kept inputs plus the dropped ones' mean must
    give the model's mean logit exactly (run on the model's own inputs to fc)."""
    loaded = circuits.load("zoo:plain-cnn")
    probe = circuits.load_data("toyworld:64:12345", loaded.input_shape)
    program = compiled(loaded, tmp_path / "p", top_k=2, data=probe, rank="weight")
    real = {k: v.double().numpy() for k, v in build_graph(loaded).run(probe).items()}
    emitted = program.LAYERS["fc"].run(real)
    assert np.abs(emitted.mean(0) - real["fc"].mean(0)).max() < 1e-5
    assert np.abs(emitted - real["fc"]).max() > 0.01  # and it is a pruned layer, not the exact one
    zero = compiled(loaded, tmp_path / "z", top_k=2, dropped="zero", rank="weight")
    assert np.abs(zero.LAYERS["fc"].run(real).mean(0) - real["fc"].mean(0)).max() > 0.01


def test_keep_strength_one_is_the_complete_program(tmp_path):
    loaded = circuits.load("zoo:curve-cnn")
    probe = circuits.load_data("toyworld:curves:32:1", loaded.input_shape)
    complete, whole = compile_program(loaded), compile_program(loaded, keep_strength=1.0, data=probe)
    assert whole.terms == complete.terms
    half = compile_program(loaded, keep_strength=0.5, data=probe)
    assert 0 < half.terms < complete.terms


def test_package_imports_only_numpy_and_runs_without_circuits(tmp_path):
    compile_program(circuits.load("zoo:resnet-cnn")).write(tmp_path / "resnet_program")
    imported = set()
    for path in (tmp_path / "resnet_program").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module)
    assert imported <= {"numpy", "json", "pathlib"}
    code = ("import sys, numpy as np, resnet_program as p\n"
            "print(p.predict(np.zeros((2, 1, 32, 32))).shape, 'torch' in sys.modules, 'circuits' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(2,)", "False", "False"]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is a test extra")
def test_packages_pass_ruff(tmp_path):
    from nets import EfficientNetLike, ONetLike

    folders = []
    for i, model in enumerate([circuits.load("zoo:inception-cnn"), EfficientNetLike(), ONetLike(), UpsamplingNet()]):
        compile_program(model).write(tmp_path / f"p{i}")
        folders.append(str(tmp_path / f"p{i}"))
    probe = circuits.load_data("toyworld:32:1", (1, 32, 32))
    compile_program(circuits.load("zoo:plain-cnn"), top_k=3, data=probe).write(tmp_path / "pruned")
    result = subprocess.run(["ruff", "check", "--isolated", "--select", "E,W,F,I", *folders, str(tmp_path / "pruned")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout


HOSTILE = ['quote " and \' and """ triple """', "__import__('pathlib').Path('MARKER').touch()",
           '"""\nimport pathlib; pathlib.Path("MARKER").touch()\n"""', "new\nline | `md` \\ back", "run", "np"]  # fmt: skip


def test_labels_cannot_become_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = circuits.load("zoo:plain-cnn")
    labels = {f"conv2:{c}": HOSTILE[c % len(HOSTILE)] for c in range(12)} | {"fc:0": HOSTILE[2]}
    hostile = LoadedModel(loaded.module, spec="zoo:plain-cnn", input_shape=loaded.input_shape, labels=labels)
    program = compiled(hostile, tmp_path / "p")
    assert not (tmp_path / "MARKER").exists()
    names = list(program.LAYERS["conv2"].NEURONS.values())
    assert all(f.__name__.isidentifier() and f.__name__.isascii() for f in names)
    assert program.LAYERS["conv2"].NEURONS["conv2:4"].__name__ != "run"
    x = circuits.load_data("toyworld:8:2", loaded.input_shape)
    assert np.abs(program.logits(x.numpy()) - model_logits(loaded.module, x)).max() < 1e-4
    assert not (tmp_path / "MARKER").exists()


def test_a_max_pool_inside_a_path_is_flagged_not_exact(tmp_path):
    class PoolBeforeReLU(nn.Module):
        input_shape = (1, 8, 8)

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(torch.relu(nn.functional.max_pool2d(self.conv(x), 2)).flatten(1))

    program = compile_program(PoolBeforeReLU())
    layer = next(entry for entry in program.manifest["layers"] if entry["layer"] != "fc")
    assert not layer["exact"] and "average" in layer["notes"][0]
    program.write(tmp_path / "p")
    assert "Not exact" in (tmp_path / "p" / f"{layer['module']}.py").read_text()
    report = verify_program(tmp_path / "p", PoolBeforeReLU(), torch.rand(32, 1, 8, 8))
    assert next(r for r in report["layers"] if r["layer"] == layer["layer"])["r2"] < 0.9999


def test_verify_refuses_another_models_program(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["compile", "zoo:plain-cnn", "-o", str(tmp_path / "p"), "--no-verify"]).exit_code == 0
    result = runner.invoke(main, ["verify", str(tmp_path / "p"), "--model", "zoo:plain-cnn-s1"])
    assert result.exit_code == 2 and "compiled from weights" in result.output
    result = runner.invoke(main, ["verify", str(tmp_path / "p"), "--model", "zoo:plain-cnn", "--data", "toyworld:200:3",
                                  "--json"])  # fmt: skip
    assert result.exit_code == 0 and json.loads(result.output)["agreement"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--top-k", "4", "--keep-strength", "0.5"], "not both"),
    (["--keep-strength", "1.5"], "(0, 1]"),
    (["--top-k", "0"], "--top-k"),
])  # fmt: skip
def test_bad_pruning_is_one_line_and_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(main, ["compile", "zoo:plain-cnn", "-o", str(tmp_path / "p"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_output_folder_is_replaced_only_when_it_is_a_program(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["compile", "zoo:plain-cnn", "-o", str(tmp_path / "notes"), "--no-verify"])
    assert result.exit_code == 2 and "not a program package" in result.output
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    runner = CliRunner()
    for k in ("2", "3"):
        probe = ["--data", "toyworld:16:1"]
        assert runner.invoke(main, ["compile", "zoo:plain-cnn", "-o", str(tmp_path / "p"), "--top-k", k, *probe,
                                    "--no-verify"]).exit_code == 0  # fmt: skip
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["top_k"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "p"]  # no scratch folder left behind


def test_a_failed_write_leaves_the_earlier_program_whole(tmp_path, monkeypatch):
    from pathlib import Path

    program = compile_program(circuits.load("zoo:plain-cnn"))
    program.write(tmp_path / "p")
    before = {p.name: p.read_bytes() for p in (tmp_path / "p").iterdir()}
    real = Path.write_bytes

    def failing(self, data):
        if self.name.startswith("conv3"):
            raise OSError(28, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError):
        compile_program(circuits.load("zoo:plain-cnn"), top_k=2, dropped="zero", rank="weight").write(tmp_path / "p")
    assert {p.name: p.read_bytes() for p in (tmp_path / "p").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_compile_needs_data_for_a_model_outside_the_toy_world(tmp_path):
    result = CliRunner().invoke(main, ["compile", "tests/nets.py:ResNet", "-o", str(tmp_path / "p"), "--top-k", "2"])
    assert result.exit_code == 2 and "--data" in result.output
    result = CliRunner().invoke(main, ["compile", "tests/nets.py:ResNet", "-o", str(tmp_path / "p")])
    assert result.exit_code == 0 and "not measured" in result.output


def test_compile_program_checks_its_arguments():
    with pytest.raises(UsageError, match="rank"):
        compile_program(circuits.load("zoo:plain-cnn"), top_k=2, rank="votes", data=torch.rand(4, 1, 32, 32))
    for missing in ({"dropped": "mean"}, {"rank": "data", "dropped": "zero"}):
        with pytest.raises(UsageError, match="--data"):
            compile_program(circuits.load("zoo:plain-cnn"), top_k=2, **missing)
    # without images a pruned program is the weights' own reading: strongest inputs, the rest zero
    program = compile_program(circuits.load("zoo:plain-cnn"), top_k=2)
    assert (program.manifest["rank"], program.manifest["dropped"]) == ("weight", "zero")


class TwoPadded(nn.Module):
    """Two padded convolutions with no nonlinearity between, then a padded average pool that does not
    count the padding: each op's zero padding is of its own input, not of the source."""

    input_shape = (1, 10, 10)

    def __init__(self, pool):
        super().__init__()
        torch.manual_seed(1)
        self.c1, self.c2, self.c3 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.pool = pool
        self.fc = nn.Linear(4 * 25, 2)

    def forward(self, x):
        x = self.pool(self.c3(self.c2(torch.relu(self.c1(x)))))
        return self.fc(torch.relu(x).flatten(1))


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                                  nn.AvgPool2d(3, 2, 0, ceil_mode=True)], ids=["plain", "no-pad-count", "ceil"])  # fmt: skip
def test_padding_inside_a_path_is_exact_at_the_border(pool, tmp_path):
    module = TwoPadded(pool)
    program = compiled(module, tmp_path / "p")
    x = torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert np.abs(program.run(x.numpy())[program.LOGITS] - model_logits(module, x)).max() < 1e-5


class PooledConcat(nn.Module):
    """maxpool(cat[A, B]) feeds the target, and B feeds it directly too: the pool is not the start of
    every path, so it cannot be applied first."""

    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1)
        self.t, self.direct = nn.Conv2d(4, 3, 1), nn.Conv2d(2, 3, 2, stride=2)
        self.fc = nn.Linear(3 * 16, 2)

    def forward(self, x):
        a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
        t = torch.relu(self.t(nn.functional.max_pool2d(torch.cat([a, b], 1), 2)) + self.direct(b))
        return self.fc(t.flatten(1))


def test_a_pool_after_a_concat_that_is_not_every_path_is_flagged_not_exact():
    program = compile_program(PooledConcat())
    target = next(layer for layer in program.manifest["layers"] if layer["layer"] not in ("a", "b", "fc"))
    assert not target["exact"]


def test_softmax_modules_and_a_layer_named_json(tmp_path):
    class Net(nn.Module):
        input_shape = (1, 6, 6)

        def __init__(self):
            super().__init__()
            torch.manual_seed(4)
            self.conv, self.json, self.fc, self.out = nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Linear(48, 4), nn.Softmax(dim=1)

        def forward(self, x):
            return self.out(self.fc(self.json(self.conv(x)).flatten(1)))

    program = compiled(Net(), tmp_path / "p")
    x = torch.rand(5, 1, 6, 6)
    probabilities = program.run(x.numpy())[program.LOGITS]
    assert np.abs(probabilities - model_logits(Net(), x)).max() < 1e-6
    assert program.faithfulness() is None  # the package's own json, not the layer named json


def test_zero_fill_keeps_a_large_constant_input(tmp_path):
    class Net(nn.Module):
        input_shape = (1, 6, 6)

        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.c1, self.c2, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 2, 1), nn.Linear(72, 2)
            with torch.no_grad():
                self.c1.weight[0] = 0
                self.c1.bias[0] = 5.0  # channel 0 is a constant 5: it barely varies, but it is large

        def forward(self, x):
            return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).flatten(1))

    probe = torch.rand(32, 1, 6, 6)
    program = compiled(Net(), tmp_path / "p", top_k=4, data=probe, dropped="zero")  # 4: every input of c2
    real = build_graph(Net()).run(probe, ["c2"])["c2"].double().numpy()
    assert np.abs(program.run(probe.numpy())["c2"] - real).max() < 1e-5


def test_ops_a_program_cannot_write_are_refused_up_front():
    class Divides(nn.Module):
        input_shape = (1, 4, 4)

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return (2.0 / (torch.relu(self.conv(x)) + 1.0)).flatten(1)

    class GatedConcat(nn.Module):
        input_shape = (1, 4, 4)

        def __init__(self):
            super().__init__()
            self.a, self.b, self.se = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            cat = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
            return (cat * torch.sigmoid(self.se(cat.mean((2, 3), keepdim=True)))).sum((2, 3))

    from circuits.errors import UnsupportedOpError

    for net, words in ((Divides, "divides by a value computed from the input"), (GatedConcat, "concat")):
        with pytest.raises(UnsupportedOpError, match=words):
            compile_program(net())


@pytest.mark.parametrize("args, message", [
    (["--rank", "data"], "pass --top-k"),
    (["--dropped", "zero"], "pass --top-k or --keep-strength"),
    (["--verify-data", "toyworld:8", "--no-verify"], "contradict"),
    (["--verify-data", "nowhere:spec"], "nowhere"),
])  # fmt: skip
def test_contradictory_or_bad_options_fail_before_anything_is_written(args, message, tmp_path):
    result = CliRunner().invoke(main, ["compile", "zoo:plain-cnn", "-o", str(tmp_path / "p"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "p").exists()


def test_compile_into_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for k in ("2", "3"):  # a new package, then one replacing it: the folder the shell is in stays that folder
        result = CliRunner().invoke(main, ["compile", "zoo:plain-cnn", "-o", ".", "--no-verify", "--top-k", k])
        assert result.exit_code == 0, result.output
        assert json.loads(open("manifest.json").read())["top_k"] == int(k)  # read through the current directory
    assert (tmp_path / "here" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]  # no scratch folder left beside it


def test_the_data_ranking_is_the_same_computed_a_target_channel_at_a_time(monkeypatch):
    """contribution_spread bounds its memory by slicing target channels; the slices must add up exactly,
    and on a linear read-out the variance of one input's contribution is W² times its source's variance."""
    from circuits.program import prune
    from circuits.program.terms import network_terms

    loaded = circuits.load("zoo:plain-cnn")
    graph = build_graph(loaded)
    network = network_terms(graph)
    images = circuits.load_data("toyworld:24:9", loaded.input_shape)
    whole = prune.contribution_spread(graph, network, images)
    monkeypatch.setattr(prune, "CHUNK_BYTES", 1)
    sliced = prune.contribution_spread(graph, network, images)
    for a, b in zip(whole, sliced):
        for x, y in zip(a, b):
            assert np.allclose(x, y, rtol=1e-10, atol=1e-12)
    peaks = graph.run(images, ["conv3"])["conv3"].amax((2, 3)).double()  # fc reads conv3's global max
    weight = loaded.module.fc.weight.detach().double()
    expected = weight**2 * peaks.var(0, unbiased=False)[None, :]
    assert np.allclose(whole[-1][0], expected.numpy(), rtol=1e-6)
