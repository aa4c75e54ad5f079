"""Pruned circuits: the inputs top-k drops are replaced by their mean contribution on the probe data (issue #22),
and a model from outside the toy world is not measured on toy-world images unless asked."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from nets import EfficientNetLike, MobileNetLike, PlainCNN

from circuits.cli import main
from circuits.compile import emit, verify
from circuits.compile.dropped import DroppedMeans, dropped_means, read_dropped, resolve
from circuits.compile.faithfulness import DEFAULT_DATA, probe_spec, unrecorded
from circuits.data import load_data
from circuits.errors import UsageError
from circuits.extraction import extract
from circuits.graph import build_graph
from circuits.models import LoadedModel, load
from circuits.pipeline import compile_circuit

NETS = str(Path(__file__).parent / "nets.py")
PROBE = "toyworld:128:12345"


@pytest.fixture(scope="module")
def zoo():
    """zoo:plain-cnn-s0, its graph, probe images and an activation cache shared by the tests."""
    loaded = load("zoo:plain-cnn-s0")
    graph = build_graph(loaded)
    return loaded, graph, load_data(PROBE, graph.input_shape), {}


def _r2(graph, data, acts, target, k, rule, depth=1):
    circuit = extract(graph, target, depth=depth, top_k=k)
    return compile_circuit(circuit, graph, data, data_spec=PROBE, dropped=rule, activations=acts).r2


def _kept(circuit, node) -> set[int]:
    """The source channels ``node`` reads in the circuit (the others are dropped)."""
    return {int(s.rpartition(":")[2]) for s in circuit.predecessors(node)}


# -- the constant is the mean of the dropped inputs' contributions, computed by hand ----------------------


def test_the_constant_is_the_mean_of_the_dropped_inputs_convolved_by_hand(zoo):
    loaded, graph, data, acts = zoo
    circuit = extract(graph, "conv3:7", depth=1, top_k=4)
    module = compile_circuit(circuit, graph, data, data_spec=PROBE, dropped="mean", activations=acts).module.load()
    net = loaded.module
    dropped = [c for c in range(32) if c not in _kept(circuit, "conv3:7")]
    with torch.no_grad():
        x = net.conv3_input(data)  # conv2's ReLU and max pool: what conv3 reads
        by_hand = F.conv2d(x[:, dropped].double(), net.conv3.weight[7:8, dropped].double(), padding=1).mean(0)[0]
    constant = module.DROPPED["conv3:7"]
    assert constant.shape == (8, 8) and len(dropped) == 28
    np.testing.assert_allclose(constant, by_hand.numpy(), rtol=1e-5, atol=1e-5)


def test_a_dense_neurons_constant_is_one_number_the_mean_by_hand(zoo):
    loaded, graph, data, acts = zoo
    circuit = extract(graph, "fc:1", depth=1, top_k=4)
    module = compile_circuit(circuit, graph, data, data_spec=PROBE, dropped="mean", activations=acts).module.load()
    net = loaded.module
    dropped = [c for c in range(32) if c not in _kept(circuit, "fc:1")]
    with torch.no_grad():
        pooled = torch.amax(F.relu(net.conv3(net.conv3_input(data))), dim=(2, 3)).double()
        by_hand = float((pooled[:, dropped] @ net.fc.weight[1, dropped].double()).mean())
    assert isinstance(module.DROPPED["fc:1"], float)
    assert module.DROPPED["fc:1"] == pytest.approx(by_hand, rel=1e-5, abs=1e-6)


def test_the_constant_through_a_squeeze_excite_projection_is_the_mean_by_hand():
    """EfficientNetLike: head_act reads the gated map through the linear projection (BatchNorm folded) and
    the 1x1 head conv; each dropped channel's contribution is that linear path run on it alone."""
    net = EfficientNetLike()
    data = load_data(PROBE, net.input_shape)
    circuit = extract(net, "head_act:1", depth=1, top_k=2)
    module = compile_circuit(circuit, net, data, data_spec=PROBE, dropped="mean").module.load()
    gated = {}
    handle = net.se.register_forward_hook(lambda _m, _i, out: gated.setdefault("se", out.detach()))
    try:
        with torch.no_grad():
            net(data)
    finally:
        handle.remove()
    se = gated["se"].double()
    project, head = copy.deepcopy(net.project).double(), copy.deepcopy(net.head).double()
    with torch.no_grad():
        base = head(project(torch.zeros_like(se)))[:, 1]
        contributions = []
        for c in range(se.shape[1]):
            if f"se:{c}" not in circuit.predecessors("head_act:1"):
                alone = torch.zeros_like(se)
                alone[:, c] = se[:, c]
                contributions.append(head(project(alone))[:, 1] - base)
    by_hand = torch.stack(contributions).sum(0).mean(0)
    assert len(contributions) == 4
    np.testing.assert_allclose(module.DROPPED["head_act:1"], by_hand.numpy(), rtol=1e-5, atol=1e-5)


# -- a complete circuit drops nothing and gets nothing ------------------------------------------------------


@pytest.mark.parametrize(
    "net, target",
    [(PlainCNN, "conv3:3"), (PlainCNN, "fc:1"), (EfficientNetLike, "head_act:1"), (MobileNetLike, "block2.expand.2:3")],
)
def test_a_complete_circuit_is_unchanged_and_exact(net, target):
    model = net()
    circuit = extract(model, target, depth=1, top_k=10_000)
    data = torch.randn(16, *model.input_shape, generator=torch.Generator().manual_seed(3))
    mean = compile_circuit(circuit, model, data, data_spec="randn", dropped="mean")
    zero = compile_circuit(circuit, model, data, data_spec="randn", dropped="zero")
    assert mean.module.code == zero.module.code and "DROPPED" not in mean.module.code
    assert mean.report["r2"] >= 0.99999 and mean.report["max_abs_error"] < 1e-4, mean.report


def test_zero_fill_is_the_module_emit_writes_without_data(zoo):
    _, graph, data, acts = zoo
    circuit = extract(graph, "conv3:7", depth=2, top_k=4)
    compiled = compile_circuit(circuit, graph, data, data_spec=PROBE, dropped="zero", activations=acts)
    assert unrecorded(compiled.module.code) == emit(circuit).code


# -- what mean fill measures --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["fc:0", "fc:1", "fc:2"])
def test_on_a_linear_neuron_mean_fill_is_never_worse_and_rises_with_k(zoo, target):
    """Without a nonlinearity the mean is the least-squares constant on the probe data: R² >= zero fill at
    every k. Measured (no tolerance needed): each fc neuron's R² also rises with k."""
    _, graph, data, acts = zoo
    ks = (1, 2, 4, 8, 16, 32)
    mean = [_r2(graph, data, acts, target, k, "mean") for k in ks]
    zero = [_r2(graph, data, acts, target, k, "zero") for k in ks]
    assert all(m >= z - 1e-9 for m, z in zip(mean, zero)), (mean, zero)
    assert all(b >= a for a, b in zip(mean, mean[1:])), mean
    assert mean[-1] > 0.9999  # k=32: the complete circuit


def test_on_the_efficientnet_twin_mean_fill_wins_at_every_k_and_rises_with_k():
    """Zero fill leaves the SiLU head far off (R² ~ -5000 at top-1); the mean map brings it to ~0.6. R² rises
    with k within 0.005: measured, head_act:4 goes 0.7152 -> 0.7134 from top-1 to top-2, because
    silu(x + mean) is not the mean of silu(x + dropped)."""
    net = EfficientNetLike()
    graph = build_graph(net)
    data, acts = load_data(PROBE, net.input_shape), {}
    for channel in range(5):
        ks = (1, 2, 4, 6)
        mean = [_r2(graph, data, acts, f"head_act:{channel}", k, "mean") for k in ks]
        zero = [_r2(graph, data, acts, f"head_act:{channel}", k, "zero") for k in ks]
        assert all(m >= z for m, z in zip(mean, zero)), (channel, mean, zero)
        assert all(b >= a - 0.005 for a, b in zip(mean, mean[1:])), (channel, mean)
        assert mean[0] > 0.5 and zero[0] < -100


def test_on_relu_conv3_mean_fill_raises_the_layer_average_at_every_k(zoo):
    """Per ReLU neuron neither constant always wins (relu(x + mean) is not the mean of relu(x + dropped)), but
    over the layer the mean map is the better default at every k."""
    _, graph, data, acts = zoo
    channels = range(0, 32, 3)
    for k in (1, 4, 8):
        mean = [_r2(graph, data, acts, f"conv3:{c}", k, "mean") for c in channels]
        zero = [_r2(graph, data, acts, f"conv3:{c}", k, "zero") for c in channels]
        live = [(m, z) for m, z in zip(mean, zero) if m is not None]
        assert np.mean([m for m, _ in live]) > np.mean([z for _, z in live]) + 0.05, (k, live)


# -- the module says what it added, runs alone, and can be emitted again from its circuit ------------------


def test_the_module_says_what_it_added_and_runs_alone_with_numpy(zoo, tmp_path):
    _, graph, data, acts = zoo
    circuit = extract(graph, "conv3:7", depth=2, top_k=4)
    compiled = compile_circuit(circuit, graph, data, data_spec=PROBE, dropped="mean", activations=acts)
    path = compiled.write(tmp_path / "c.py")
    code = path.read_text()
    assert f"Dropped inputs replaced by their mean contribution on {PROBE}:" in code
    assert f"DROPPED_DATA = {PROBE!r}" in code
    assert set(compiled.module.load().DROPPED) == set(circuit) - set(compiled.module.load().LEAVES)
    script = (
        "import sys, numpy as np, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('c', {str(path)!r}); m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "out = m.target({leaf: np.ones((2, 16, 16)) for leaf in m.LEAVES})\n"
        "print(out.shape, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(2, 8, 8) False"
    again = verify(path, graph, data, activations=acts)  # verify re-measures the module as written
    assert again["r2"] == pytest.approx(compiled.r2, abs=1e-9)


def test_a_module_read_back_emits_again_identically(zoo):
    """The catalog keeps code: a self-contained module's constants come back from its text, so its circuit
    emits the same module again with no model (circuits.pipeline.emit_stored)."""
    _, graph, data, acts = zoo
    circuit = extract(graph, "conv3:7", depth=2, top_k=4)
    code = compile_circuit(circuit, graph, data, data_spec=PROBE, dropped="mean", activations=acts, inline_limit=10**9).module.code
    back = read_dropped(code)
    assert back.data == PROBE and len(back.fixed) == 5
    assert emit(circuit, dropped=back, inline_limit=10**9).code == unrecorded(code)
    assert emit(circuit, dropped=back).code == unrecorded(code)  # read back as literals, they stay literals
    assert read_dropped(emit(circuit).code) is None


def test_a_collapsed_family_passes_each_member_its_own_constant():
    """A family function takes ``fill``; each member passes its own DROPPED constant, so the collapsed form
    computes what the literal form computes with the same constants (the planted family is exact)."""
    from circuits import planted
    from circuits.compile.collapse import circuit_motifs, proposals

    loaded = planted.load("union")
    circuit = extract(loaded, "union:0", depth=3, top_k=16)
    motifs = [m.to_dict() for m in circuit_motifs(loaded, circuit)]
    family = next(p.form for p in proposals(circuit, motifs)
                  if p.form is not None and p.record["members"] == ["wedges:0", "wedges:1"])  # fmt: skip
    a_map = np.linspace(-1, 1, 24 * 24).reshape(24, 24)
    constants = DroppedMeans("made up", fixed={"wedges:0": 0.5, "wedges:1": a_map})
    collapsed, literal = emit(circuit, forms=[family], dropped=constants), emit(circuit, dropped=constants)
    assert "def wedge_left_family(acts, mirrored, fill=0.0):" in collapsed.code
    assert "fill=WEDGE_RIGHT_DROPPED" in collapsed.code
    data = torch.rand(8, *loaded.input_shape, generator=torch.Generator().manual_seed(0)) * 3
    leaves = {"input:0": data[:, 0].double().numpy()}
    a, b = collapsed.load().run(leaves), literal.load().run(leaves)
    for neuron in ("wedges:0", "wedges:1", "union:0"):
        np.testing.assert_allclose(a[neuron], b[neuron], atol=1e-5)


def test_the_dropped_rule_is_checked():
    circuit = extract(PlainCNN(), "conv3:3", depth=1, top_k=2)
    with pytest.raises(UsageError, match="dropped must be 'best'"):
        resolve("median", circuit, PlainCNN(), None)
    with pytest.raises(UsageError, match="no probe data"):
        emit(circuit, dropped="mean")
    assert resolve("zero", circuit, PlainCNN(), None) is None
    means = dropped_means(circuit, PlainCNN(), torch.rand(4, 3, 16, 16))
    assert means.fill("conv3:3", list(circuit.predecessors("conv3:3"))) is not None
    assert means.fill("conv3:3", [f"conv2:{c}" for c in range(8)]) is None  # reads every input: nothing to add


# -- the CLI: --dropped, and a foreign model is not measured on toy-world images by default ----------------


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_extract_dropped_zero_writes_the_old_module_and_verify_re_measures_the_new(tmp_path):
    base = ["extract", "zoo:plain-cnn-s0", "--neuron", "conv3:7", "--depth", "1", "--top-k", "8", "--data", PROBE]
    mean, zero = tmp_path / "mean.py", tmp_path / "zero.py"
    assert _cli(*base, "--emit", mean, "--dropped", "mean").exit_code == 0
    result = _cli(*base, "--emit", zero, "--dropped", "zero")
    assert result.exit_code == 0, result.output
    assert "DROPPED" in mean.read_text() and "DROPPED" not in zero.read_text()
    result = _cli("verify", mean, "--model", "zoo:plain-cnn-s0", "--data", "toyworld:64:7")
    assert result.exit_code == 0, result.output
    assert "'data': 'toyworld:64:7'" in mean.read_text()
    assert "--dropped [best|mean|zero]" in _cli("extract", "--help").output


def test_a_foreign_model_is_refused_toy_world_images_unless_asked(tmp_path):
    out = tmp_path / "c.py"
    emit_args = ["extract", f"{NETS}:PlainCNN", "--neuron", "conv3:1", "--top-k", "2", "--emit", out]
    for args in (emit_args, ["verify", out, "--model", f"{NETS}:PlainCNN"]):
        result = _cli(*args)
        message = result.output.strip()
        assert result.exit_code == 2, result.output
        assert message.startswith("Error: ") and "\n" not in message, message
        assert "not made for toy-world images" in message and "--data" in message
    assert not out.exists()
    assert _cli(*emit_args, "--data", "toyworld:64").exit_code == 0
    result = _cli("verify", out, "--model", f"{NETS}:PlainCNN", "--data", "toyworld:64")
    assert result.exit_code == 0, result.output
    assert _cli("extract", f"{NETS}:PlainCNN", "--neuron", "conv3:1").exit_code == 0  # nothing measured


def test_a_toy_world_model_is_measured_on_the_held_out_default(tmp_path):
    out = tmp_path / "c.py"
    assert _cli("extract", "planted:union", "--neuron", "union:0", "--top-k", "2", "--emit", out).exit_code == 0
    assert f"'data': {DEFAULT_DATA!r}" in out.read_text()
    result = _cli("verify", out, "--model", "planted:union", "--no-record")
    assert result.exit_code == 0, result.output


def test_probe_spec_decides_where_a_model_is_measured():
    foreign = LoadedModel(PlainCNN(), spec="tests.nets:PlainCNN", input_shape=(3, 16, 16))
    with pytest.raises(UsageError, match="tests.nets:PlainCNN was not made for toy-world images"):
        probe_spec(foreign, None)
    assert probe_spec(foreign, "toyworld:64") == "toyworld:64"
    assert probe_spec(load("zoo:plain-cnn-s0"), None) == DEFAULT_DATA
    assert DEFAULT_DATA in " ".join(_cli("verify", "--help").output.split())  # --help spells the default out


def test_a_hostile_data_spec_stays_data(tmp_path, monkeypatch):
    """The probe-data spec reaches the module as a repr'd constant and escaped comment text, never as code."""
    from circuits import planted

    monkeypatch.chdir(tmp_path)
    circuit = extract(planted.load("union"), "union:0", depth=3, top_k=1)
    hostile = '"""\nimport pathlib; pathlib.Path("MARKER").touch()\n""" \\ \u2028'
    constants = DroppedMeans(hostile, fixed={"wedges:0": 0.5, "union:0": np.zeros((24, 24))})
    module = emit(circuit, dropped=constants).load()
    assert module.DROPPED_DATA == hostile and set(module.DROPPED) == {"wedges:0", "union:0"}
    assert not (tmp_path / "MARKER").exists()


def test_best_fill_keeps_each_neurons_better_rule_and_says_so():
    """``dropped="best"`` (the default) judges each neuron in the whole circuit: its R² is the better of the
    two rules' on the probe data, and held-out images agree on the documented example (conv3:7, depth 2,
    top 8: mean alone 0.25, zero alone 0.70, best 0.71 on toyworld:512:7)."""
    graph = build_graph(load("zoo:plain-cnn-s0"))
    data, held = load_data(PROBE, (1, 32, 32)), load_data("toyworld:512:7", (1, 32, 32))
    circuit = extract(graph, "conv3:7", depth=2, top_k=8)
    acts = {}
    rules = {r: compile_circuit(circuit, graph, data, data_spec=PROBE, dropped=r, activations=acts)
             for r in ("best", "mean", "zero")}  # fmt: skip
    for node, numbers in rules["best"].report["neurons"].items():
        if numbers["r2"] is not None and circuit.in_degree(node):
            others = [rules[r].report["neurons"][node]["r2"] for r in ("mean", "zero")]
            assert numbers["r2"] >= min(o for o in others if o is not None) - 1e-9, node
    held_r2 = {r: verify(c.module, graph, held)["r2"] for r, c in rules.items()}
    assert held_r2["best"] >= max(held_r2["mean"], held_r2["zero"]) - 0.01
    code = rules["best"].module.code
    assert "Dropped inputs left out: without them the neuron fits better" in code
    assert "Dropped inputs replaced by their mean contribution" in code


def test_a_best_fill_module_read_back_emits_again_identically():
    """A module whose neurons mix the two rules holds both tables (DROPPED, DROPPED_LEFT_OUT), so the
    shared catalog can emit it again from its circuit alone."""
    graph = build_graph(load("zoo:plain-cnn-s0"))
    circuit = extract(graph, "conv3:7", depth=2, top_k=8)
    code = compile_circuit(circuit, graph, load_data(PROBE, (1, 32, 32)), data_spec=PROBE,
                           inline_limit=10**9).module.code  # fmt: skip
    back = read_dropped(code)
    assert back.left_out and back.fixed  # both rules are used in this circuit
    assert emit(circuit, dropped=back, inline_limit=10**9).code == unrecorded(code)


def test_extract_and_verify_feed_the_model_normalised_images(tmp_path):
    out = str(tmp_path / "n.py")
    base = ["extract", "zoo:plain-cnn-s0", "--neuron", "conv3:7", "--top-k", "4", "--emit", out, "--json"]
    raw, scaled = (json.loads(_cli(*base, *extra).output) for extra in ([], ["--normalize", "0.5/0.5"]))
    assert scaled["provenance"]["arguments"]["normalize"] == "0.5/0.5"
    assert raw["emitted"]["faithfulness"]["r2"] != pytest.approx(scaled["emitted"]["faithfulness"]["r2"], abs=1e-3)
    again = json.loads(_cli("verify", out, "--model", "zoo:plain-cnn-s0", "--normalize", "0.5/0.5", "--json").output)
    assert again["r2"] == pytest.approx(scaled["emitted"]["faithfulness"]["r2"], abs=1e-9)  # same images, same numbers
    assert _cli("verify", out, "--model", "zoo:plain-cnn-s0", "--normalize", "0.5").exit_code == 2
