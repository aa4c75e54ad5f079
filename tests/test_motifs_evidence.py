"""Which evidence carries a motif: activation-led detection, weights that refute, bounded activations.

The oracles are independent of the detector: the planted complex cells' mirror relation is checked on the
model's own forward pass of flipped images, their expanded weights are traced to be zero, and a random-init
MobileNetV2 twin is the control that must stay empty.
"""

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from circuits import load, planted, trace
from circuits.cli import main
from circuits.graph import build_graph
from circuits.motifs import Context, find, shuffle_weights
from circuits.motifs.explain import explain
from circuits.motifs.families import active
from tests.nets import MobileNetV2Twin
from tests.test_motifs import reported_maps, spec_maps

STROKES = "toyworld:strokes:256"
DETECTORS = ("equivariance", "union", "inhibition")


def _motifs(model, data, kinds=DETECTORS):
    ctx = Context(model, data)
    return [m for kind in kinds for m in find(ctx, kind=kind)]


@pytest.fixture(scope="module")
def complex_motifs():
    return _motifs("planted:complex-union", STROKES)


def test_complex_cells_are_mirror_images_in_their_activations_but_not_their_weights():
    """The oracle itself: a flip of the image swaps the complex cells' maps (flipped), while their expanded
    weights are zero, so no weight cosine can show it."""
    loaded = load("planted:complex-union")
    graph = build_graph(loaded)
    images = Context(loaded, STROKES).data[:64]
    maps = graph.run(images, ["complex"])["complex"]
    flipped = graph.run(torch.flip(images, dims=[-1]), ["complex"])["complex"]
    assert torch.allclose(flipped[:, 1], torch.flip(maps[:, 0], dims=[-1]), atol=1e-5)
    assert maps[:, 0].amax() > 0.5  # the cells respond to the strokes
    kernels = trace.weights(graph, "input", "complex", expanded=True).kernel_sets[0].kernels
    assert kernels[:2].abs().max() < 1e-6


def test_weights_alone_cannot_see_the_complex_pair_or_its_union():
    found = find("planted:complex-union", kind="all")
    involved = {n for m in found if m.kind != "network" for n in (*m.members, m.target)}
    assert not involved & {"complex:0", "complex:1", "union:0"}


def test_with_data_the_complex_pair_and_its_union_are_found_and_activation_led(complex_motifs):
    pairs = [m for m in complex_motifs if m.kind == "equivariance" and m.transform == "reflect"]
    by_members = {m.members: m for m in pairs}
    cells = by_members[("complex:0", "complex:1")]
    assert cells.evidence["carried_by"] == "activations"
    assert cells.evidence["activations"] > 0.99 and abs(cells.evidence["weights"]) < 0.01
    assert all(by_members[p].evidence["carried_by"] == "weights+activations" for p in [("simple:0", "simple:2"),
                                                                                      ("simple:1", "simple:3")])
    unions = [m for m in complex_motifs if m.kind == "union"]
    assert [(m.target, m.transform, set(m.members)) for m in unions] == [("union:0", "reflect", {"complex:0", "complex:1"})]
    assert unions[0].evidence["carried_by"] == "activations" and unions[0].evidence["logic"] == "or"
    decoy = planted.get_spec("complex-union").neuron_id("complex", "decoy")
    assert not any(decoy in (*m.members, m.target) for m in complex_motifs)


def test_planted_oracles_are_recovered_with_data_including_activation_only_motifs():
    """With data, every planted mirror and quarter-turn map (the complex cells' too) and every planted OR
    union and opponent is found; the AND neuron is left out: strokes never show both wedges at one vertex."""
    for name in ("union", "inception-union", "complex-union", "lines", "curves"):
        spec = planted.get_spec(name)
        found = _motifs(f"planted:{name}", STROKES)
        assert reported_maps(found, "reflect") == spec_maps(spec, ("reflection", "reflection-pair"), "flip", True)
        assert reported_maps(found, "rotate90") == spec_maps(spec, ("rotation",), "rot90", True)
        expected = {m["neuron"] for m in spec.motifs if m["kind"] in ("union", "opponent")}
        assert {m.target for m in found if m.kind in ("union", "inhibition")} == expected


def test_with_data_no_motif_comes_out_without_activation_evidence(complex_motifs):
    found = complex_motifs + _motifs("planted:union", STROKES) + _motifs("zoo:plain-cnn-s0", "toyworld:128")
    assert found
    for m in found:
        e = m.evidence
        steps = e.get("steps") or e.get("pair") if m.kind != "inhibition" else [e["pair"]]
        steps = steps if isinstance(steps, list) else [steps]
        assert all(s["activations"] is not None for s in steps), m
        if m.kind == "union":
            assert e["invariance"]["activations"] is not None
        assert e["carried_by"] in ("weights+activations", "activations")


def test_shuffled_complex_cells_with_data_report_nothing():
    control = shuffle_weights(load("planted:complex-union"), seed=0)
    assert _motifs(control, STROKES) == []


@pytest.mark.parametrize("seed,data", [(0, "toyworld:128"), (1, "toyworld:128"), (0, "photos:128"), (1, "photos:128")])
def test_a_random_init_mobilenetv2_twin_with_data_reports_nothing(seed, data):
    """The control for activation-led detection: untrained depthwise ReLU6 layers, whose expanded weights
    describe them poorly (low fidelity), so only the activation gates stand between noise and a report;
    on toy images and on real photos (ImageNet-normalised, as a real MobileNetV2 would see them)."""
    if data.startswith("photos"):
        pytest.importorskip("skimage")
    model = MobileNetV2Twin(seed)
    ctx = Context(model, data, normalize="imagenet" if data.startswith("photos") else None)
    assert float(ctx.fidelity(ctx.parts("features.5.conv.2")).nan_to_num(0).mean()) < 0.5  # weights cannot speak
    assert [m for kind in DETECTORS for m in find(ctx, kind=kind)] == []


class _Saturating(nn.Module):
    """A mirror pair of 5x5 detectors behind ReLU6 with a bias that saturates them somewhere in every image."""

    input_shape = (1, 24, 24)

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        kernel = torch.randn(1, 1, 5, 5, generator=g)
        self.conv = nn.Conv2d(1, 2, 5, padding=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([kernel, torch.flip(kernel, dims=[-1])]) * 3)
            self.conv.bias.fill_(4.0)
        self.act = nn.ReLU6()

    def forward(self, x):
        return self.act(self.conv(x))


def test_a_relu6_neuron_that_saturates_in_every_image_is_not_silent():
    model = _Saturating().eval()
    images = torch.rand(64, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    acts = model(images)
    assert (acts.flatten(2).amax(-1) == 6.0).all()  # the old per-image-peak test saw both as silent
    assert active(acts).all()
    assert not active(torch.full((64, 2, 4, 4), 6.0)).any()  # a constant map is silent
    pairs = [m for m in find(model, kind="equivariance", data=images) if m.transform == "reflect"]
    assert [m.members for m in pairs] == [("act:0", "act:1")] or [m.members for m in pairs] == [("conv:0", "conv:1")]
    assert pairs[0].evidence["activations"] > 0.99


def test_explain_says_why_each_pair_was_or_was_not_reported():
    report = explain("planted:complex-union", "complex:0", "complex:1", data=STROKES)
    by_name = {t["transform"]: t for t in report["transforms"] if t["transform"] != "rotate"}
    assert by_name["reflect"]["reported"] and by_name["reflect"]["carried_by"] == "activations"
    assert not by_name["reflect"]["weights"]["speak"]
    assert not by_name["rotate90"]["reported"]
    # a pair the weights refute: a line detector and an unrelated one, weights only
    refuted = explain("planted:lines", "lines:0", "lines:1")
    reflect = next(t for t in refuted["transforms"] if t["transform"] == "reflect")
    assert not reflect["passes"] and "below" in reflect["reason"]


def test_cli_explain_prints_each_gate_and_refuses_neurons_of_two_layers():
    runner = CliRunner()
    result = runner.invoke(main, ["motifs", "planted:union", "--explain", "wedges:0,wedges:1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "reflect: reported, carried by weights"
    result = runner.invoke(main, ["motifs", "planted:union", "--explain", "wedges:0,wedges:1", "--json"])
    payload = json.loads(result.output)
    assert payload["schema_version"] and payload["provenance"]["weights_sha256"]
    assert payload["transforms"][0]["weights"]["cosine"] == pytest.approx(1.0, abs=1e-4)
    for bad in ("wedges:0,lines:1", "wedges:0", "wedges:0,wedges:9"):
        result = runner.invoke(main, ["motifs", "planted:union", "--explain", bad])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


class _StridedPair(nn.Module):
    """A 5x5 edge detector and its mirror image at stride 2 on a 32-pixel image (padding 2): the map on a
    flipped image lands half a pixel from the flipped map."""

    input_shape = (1, 32, 32)

    def __init__(self, stride=2):
        super().__init__()
        from circuits.planted.kernels import edge

        k = torch.tensor(edge(5, 60.0)).float()
        self.conv = nn.Conv2d(1, 2, 5, stride=stride, padding=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([k, torch.flip(k, dims=[-1])])[:, None])
            self.conv.bias.fill_(-0.2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


def test_flip_offsets_follow_the_padding_geometry():
    """By hand: position x of a stride-2, padding-2 5x5 conv is centred on input pixel 2x; a flip of 32
    pixels moves it to 31 - 2x, map position 15.5 - x, while the flipped array puts it at 15 - x."""
    from circuits.motifs.geometry import flip_offsets

    assert flip_offsets(build_graph(_StridedPair()), "act") == (0.5, 0.5)
    assert flip_offsets(build_graph(_StridedPair(stride=1)), "act") == (0.0, 0.0)
    graph = build_graph(MobileNetV2Twin(0))
    assert flip_offsets(graph, "features.0.2") == (0.5, 0.5)  # 3x3, stride 2, padding 1: centre 2x
    assert flip_offsets(graph, "features.2.conv.5") == (0.75, 0.75)  # stride 4 after two of them: centre 4x
    assert flip_offsets(build_graph(load("zoo:plain-cnn-s0")), "conv3") == (0.0, 0.0)  # 2x2 pools on even maps


def test_a_strided_mirror_pair_is_compared_where_its_maps_really_land():
    from circuits.motifs.families import activation_similarity
    from circuits.motifs.transforms import Reflect

    ctx = Context(_StridedPair(), "toyworld:256")
    acts, moved = ctx.activations(["act"]), ctx.activations(["act"], Reflect())
    raw = float(activation_similarity(acts, moved, Reflect())[0, 1])
    aligned = float(activation_similarity(acts, moved, Reflect(), offsets=(0.5, 0.5))[0, 1])
    assert aligned > 0.95 and aligned > raw + 0.05
    pairs = [m.members for m in find(ctx, kind="equivariance") if m.transform == "reflect"]
    assert pairs == [("act:0", "act:1")]


def test_cli_set_tunes_a_gate_and_refuses_unknown_names():
    runner = CliRunner()
    loose = runner.invoke(main, ["motifs", "planted:lines", "--kind", "equivariance", "--set", "threshold=0.5", "--json"])
    strict = runner.invoke(main, ["motifs", "planted:lines", "--kind", "equivariance", "--set", "threshold=0.999",
                                  "--json"])  # fmt: skip
    assert loose.exit_code == strict.exit_code == 0, loose.output + strict.output
    n_loose, n_strict = (len(json.loads(r.output)["motifs"]) for r in (loose, strict))
    assert n_strict < n_loose  # the interpolated 22.5° family scores 0.98: only exact copies reach 0.999
    assert json.loads(strict.output)["provenance"]["arguments"]["settings"] == {"threshold": 0.999}
    for bad in ("treshold=0.7", "threshold", "threshold=abc"):
        result = runner.invoke(main, ["motifs", "planted:lines", "--set", bad])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


class _TwoLayers(nn.Module):
    input_shape = (1, 16, 16)

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1, self.act1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(4, 3, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x))))


def test_fidelity_is_the_correlation_of_the_linearised_and_real_pre_activation_by_hand():
    """The linearised response computed with torch alone: conv2 applied to conv1 with the ReLU left out."""
    model = _TwoLayers().eval()
    images = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = Context(model, images)
    layer = next(name for name in ctx.analysable() if ctx.graph.layers[name].channels == 3)
    with torch.no_grad():
        real = model.conv2(model.act1(model.conv1(images)))
        linear = model.conv2(model.conv1(images))
    by_hand = [float(torch.corrcoef(torch.stack([real[:, c].flatten(), linear[:, c].flatten()]))[0, 1])
               for c in range(3)]
    assert ctx.fidelity([layer]).tolist() == pytest.approx(by_hand, abs=1e-5)
    first = next(name for name in ctx.analysable() if ctx.graph.layers[name].channels == 4)
    assert ctx.fidelity([first]).tolist() == pytest.approx([1.0] * 4, abs=1e-6)  # nothing nonlinear before it
