"""Reverse compilation: emitted modules reproduce their neurons, round-trip planted specs, and are safe."""

import importlib.util
import py_compile
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from nets import MLP, DenseNetLike, EfficientNetLike, InceptionNet, MobileNetLike, ONetLike, PlainCNN, ResNet

from circuits import planted
from circuits.compile import emit, record_faithfulness, verify
from circuits.compile.faithfulness import load_module
from circuits.extraction import extract
from circuits.graph import build_graph
from circuits.models import LoadedModel

PLANTED_TARGETS = [
    ("union", "union:0"), ("union", "union:1"), ("bn-union", "union:0"), ("inception-union", "union:0"),
    ("wedges", "wedges:1"), ("curves", "curves:3"), ("lines", "lines:5"),
]  # fmt: skip


def bright_images(shape, n=48, seed=0):
    """Random bright images: strong enough that the planted wedge and union neurons fire."""
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 3


def import_file(path):
    spec = importlib.util.spec_from_file_location(f"emitted_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, target", PLANTED_TARGETS)
def test_planted_round_trip_reproduces_spec_and_model(name, target, tmp_path):
    loaded = planted.load(name)
    graph = build_graph(loaded)
    circuit = extract(graph, target, depth=3, top_k=16)
    path = emit(circuit).write(tmp_path / "circuit.py")
    module = import_file(path)

    # same neurons and edges as the circuit, kernels equal to the spec's effective weights
    assert set(module.NEURONS) | set(module.LEAVES) == set(circuit.nodes)
    wired = {(s, t) for t, inputs in module.WIRING.items() for s, _ in inputs}
    assert wired == set(circuit.edges)
    spec = loaded.module.spec
    for t, inputs in module.WIRING.items():
        layer, ch = t.rsplit(":", 1)
        weights = planted.effective_weights(spec.layer(layer))
        for source, kernel in inputs:
            s_layer, s_ch = source.rsplit(":", 1)
            column = _spec_column(spec, graph, layer, s_layer, int(s_ch))
            assert np.allclose(kernel, weights[int(ch), column], atol=1e-5), (source, t)

    report = verify(path, loaded, bright_images(loaded.input_shape))
    assert report["end_to_end"] is True
    assert report["r2"] is not None and report["r2"] >= 0.9999, report
    assert report["max_abs_error"] < 1e-4


def _spec_column(spec, graph, layer, source_layer, source_channel):
    """Index of a source neuron among the channels the spec layer reads (concats flattened)."""
    previous = "input"
    for top in spec.layers:
        names = [top.name] + [f"{top.name}.{b.name}" for b in top.branches]
        if layer in names:
            break
        previous = top.name
    for offset in range(graph.layers[previous].channels):
        if graph.resolve(previous, offset) == (source_layer, source_channel):
            return offset
    raise AssertionError(f"{source_layer}:{source_channel} does not feed {layer}")


@pytest.mark.parametrize(
    "net, target",
    [
        (ResNet, "layer2.0:4"),  # strided conv + BN + residual downsample
        (MobileNetLike, "block2.expand.2:3"),  # ReLU6, linear bottleneck residual sum
        (EfficientNetLike, "head_act:1"),  # SiLU, reading a squeeze-excite gate
        (ONetLike, "prelu3:5"),  # PReLU, dense layer over a permuted conv map
        (MLP, "act2:2"),  # GELU over Tanh
        (DenseNetLike, "norm:8"),  # concat of earlier layers
        (PlainCNN, "conv3:3"),  # the real max pool, then the conv: not the average-pool reading
        (PlainCNN, "fc:1"),  # dense output over a max-pooled, flattened map
        (InceptionNet, "inc1.bp:1"),  # Inception's pooling branch (3x3 max pool, stride 1, padding 1)
        (ONetLike, "prelu2:2"),  # ceil-mode max pooling
    ],
)
def test_emitted_neuron_reproduces_real_architectures_exactly(net, target, tmp_path):
    model = net()
    circuit = extract(model, target, depth=1, top_k=10_000)
    path = emit(circuit).write(tmp_path / "circuit.py")
    data = torch.randn(16, *model.input_shape, generator=torch.Generator().manual_seed(3))
    report = verify(path, model, data)
    assert report["r2"] >= 0.99999, report
    assert report["max_abs_error"] < 1e-4


def test_pruning_lowers_faithfulness_and_says_so(tmp_path):
    model = ResNet()
    data = torch.randn(32, *model.input_shape, generator=torch.Generator().manual_seed(4))
    scores = []
    for k in (1, 4, 10_000):
        circuit = extract(model, "layer2.0:4", depth=1, top_k=k)
        path = emit(circuit).write(tmp_path / f"k{k}.py")
        scores.append(verify(path, model, data)["r2"])
        if k == 1:
            assert "Pruned inputs carry" in path.read_text()
    assert scores[0] < scores[1] < scores[2]


def test_large_kernels_go_to_a_content_hashed_npz_beside_the_module(tmp_path):
    model = ONetLike()  # prelu3 reads whole 3x3 maps of prelu2's 8 channels
    circuit = extract(model, "prelu3:0", depth=1, top_k=10_000)
    emitted = emit(circuit, inline_limit=4)
    path = emitted.write(tmp_path / "m.py")
    assert emitted.npz_name and (tmp_path / emitted.npz_name).is_file()
    assert emitted.npz_name in path.read_text()
    again = emit(circuit, inline_limit=4)
    assert again.npz_name == emitted.npz_name and again.code == emitted.code  # deterministic
    data = torch.randn(8, *model.input_shape, generator=torch.Generator().manual_seed(5))
    assert verify(path, model, data)["max_abs_error"] < 1e-4


def test_verify_records_the_numbers_in_the_module_header(tmp_path):
    loaded = planted.load("union")
    path = emit(extract(loaded, "union:0", depth=3, top_k=4)).write(tmp_path / "u.py")
    report = verify(path, loaded, bright_images(loaded.input_shape))
    record_faithfulness(path, report, "bright")
    module = load_module(path)
    assert module.FAITHFULNESS["r2"] == pytest.approx(report["r2"], abs=1e-6)
    assert module.FAITHFULNESS["data"] == "bright"


HOSTILE = [
    'quote " and \' and """ triple """',
    "new\nline\r\nand \\ backslash",
    "__import__('pathlib').Path('MARKER').touch()",
    "'''); __import__('pathlib').Path('MARKER').touch(); ('''",
    '"""\nimport pathlib; pathlib.Path("MARKER").touch()\n"""',
    "def f(): pass  # \u2028 \x0c \x00",
]


def test_labels_cannot_inject_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = planted.load("union")
    neurons = ["union:0", "wedges:0", "wedges:1", "lines:2", "lines:6", "input:0"]
    labels = {n: HOSTILE[i % len(HOSTILE)] for i, n in enumerate(neurons)}
    hostile = LoadedModel(loaded.module, spec="planted:union", input_shape=loaded.input_shape, labels=labels)
    path = emit(extract(hostile, "union:0", depth=3, top_k=2)).write(tmp_path / "hostile.py")

    py_compile.compile(str(path), doraise=True)
    module = import_file(path)
    assert not (tmp_path / "MARKER").exists()
    assert set(module.NEURONS) == {"union:0", "wedges:0", "wedges:1", "lines:2", "lines:6"}
    functions = [name for name, value in vars(module).items() if callable(value) and not name.startswith("_")]
    assert all(name.isidentifier() and name.isascii() for name in functions)
    data = bright_images(loaded.input_shape)
    assert verify(path, loaded, data)["r2"] >= 0.9999
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is a test extra")
def test_emitted_modules_pass_ruff_and_py_compile(tmp_path):
    paths = [emit(extract(planted.load(n), t, depth=3, top_k=4)).write(tmp_path / f"{n}.py") for n, t in PLANTED_TARGETS[:4]]
    paths.append(emit(extract(ONetLike(), "prelu3:0", depth=2, top_k=3), inline_limit=4).write(tmp_path / "onet.py"))
    for path in paths:
        py_compile.compile(str(path), doraise=True)
    result = subprocess.run(["ruff", "check", "--isolated", "--select", "E,W,F,I", *map(str, paths)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_emitted_module_runs_alone_with_only_numpy(tmp_path):
    loaded = planted.load("wedges")
    path = emit(extract(loaded, "wedges:0", depth=2, top_k=4)).write(tmp_path / "w.py")
    code = (
        "import sys, numpy as np, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('w', {str(path)!r}); m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "out = m.target({'input:0': np.ones((2, 24, 24))})\n"
        "print(out.shape, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(2, 24, 24) False"
