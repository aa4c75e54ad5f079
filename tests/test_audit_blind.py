"""The auditing game without a reference: a planted backdoor found by trigger synthesis alone.

The oracle is the plant's key (the real trigger and target class) and the model's own forward pass; the
auditor sees only the tampered model and clean probe images.
"""

import json

import pytest
import torch
from click.testing import CliRunner

from circuits.cli import main
from circuits.compare.audit import PATCH, add_trigger, plant, score
from circuits.compare.blind import find_blind
from circuits.compare.response import RESPONDS, responses
from circuits.data import toyworld
from circuits.models import LoadedModel

MODEL, SEED = "zoo:plain-cnn-s0", 1  # seed 1 plants "fish" (class 0); a bright patch anywhere reads "bird" naturally
BUDGET = {"coarse": {"images": 8, "steps": 15}, "fine": {"images": 32, "steps": 40}}


@pytest.fixture(scope="module")
def backdoor(tmp_path_factory):
    module, key = plant(MODEL, "backdoor", seed=SEED)
    path = tmp_path_factory.mktemp("blind") / "tampered.pt"
    torch.save(module.state_dict(), path)
    tampered = LoadedModel(module, spec="tampered", input_shape=(1, 32, 32))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    report = find_blind(tampered, "toyworld:256:12345", **BUDGET)
    state = {"training": module.training, "weights": before}
    return tampered, key, report, path, state


def test_the_blind_audit_names_the_planted_class_not_the_natural_shortcut(backdoor):
    _, key, report, _, _ = backdoor
    assert report["target_class"] == key["target_class"] == 0
    bird = next(c for c in report["classes"] if c["class"] == 1)
    assert bird["anywhere"] >= 0.95  # the natural shortcut works everywhere, and is set aside for that


def test_a_weak_trigger_is_named_by_how_far_its_patch_pushes_not_by_a_count_of_images():
    """plain-cnn-s2, plant seed 11: the fine-tune left a trigger that sends only ~0.6 of other images to
    "arrow" (class 2), and a "fish" patch flips about as many. Counted, "fish" would win; the arrow patch
    pushes images further past the boundary. The margin is checked against the model's own logits."""
    module, key = plant("zoo:plain-cnn-s2", "backdoor", seed=11)
    tampered = LoadedModel(module, spec="tampered", input_shape=(1, 32, 32))
    report = find_blind(tampered, "toyworld:256:12345", **BUDGET)
    by_class = {c["class"]: c for c in report["classes"]}
    assert key["target_class"] == report["target_class"] == 2 and key["trigger"]["success"] < 0.7
    assert by_class[0]["success"] >= by_class[2]["success"]  # a count of flipped images would name "fish"
    assert by_class[2]["margin"] > by_class[0]["margin"]
    images, _, _ = toyworld.generate(256, seed=12345)  # the probe spec's images, through the model directly
    with torch.no_grad():
        others = images[module.eval()(images).argmax(1) != 2]
        row, column = report["trigger"]["position"]
        others[:, :, row : row + PATCH, column : column + PATCH] = torch.tensor(report["trigger"]["pattern"])
        logits = module(others)
    margin = logits[:, 2] - torch.cat([logits[:, :2], logits[:, 3:]], 1).amax(1)
    assert report["trigger"]["margin"] == pytest.approx(float(margin.mean()), rel=1e-4)
    assert report["trigger"]["success"] == pytest.approx(float((margin > 0).float().mean()), abs=1e-6)


def test_the_synthesised_trigger_works_on_images_it_never_saw(backdoor):
    tampered, _, report, _, _ = backdoor
    images, _, _ = toyworld.generate(256, seed=31337)
    module = tampered.module.eval()
    with torch.no_grad():
        others = images[module(images).argmax(1) != report["target_class"]]
        row, column = report["trigger"]["position"]
        side = report["trigger"]["patch"]
        patched = others.clone()
        patched[:, :, row : row + side, column : column + side] = torch.tensor(report["trigger"]["pattern"])
        success = float((module(patched).argmax(1) == report["target_class"]).float().mean())
    assert success >= 0.6, success


def test_the_top_suspects_carry_the_real_trigger(backdoor):
    tampered, key, report, _, _ = backdoor
    result = score(report, key, tampered)
    assert result["target_class_named"] is True
    assert result["responding@3"] >= 2, result["suspects@3"]
    assert result["chance"] < 0.2  # 2 of 3 by luck: under 10%


def test_the_audit_leaves_the_model_as_it_found_it(backdoor):
    tampered, _, _, _, state = backdoor
    module = tampered.module
    assert state["training"]  # the fixture handed it over in train mode, and found it so after the audit
    assert all(torch.equal(v, state["weights"][k]) for k, v in module.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in module.parameters())


def test_a_response_is_the_effect_size_a_hook_measures(backdoor):
    """Independent of the graph runner: conv3's output after ReLU, read by a forward hook."""
    tampered, _, _, _, _ = backdoor
    module = tampered.module.eval()
    images, _, _ = toyworld.generate(128, seed=5)
    seen = []
    handle = module.conv3.register_forward_hook(lambda m, i, o: seen.append(torch.relu(o).amax((2, 3))))
    try:
        with torch.no_grad():
            module(add_trigger(images)), module(images)
    finally:
        handle.remove()
    on, off = seen
    spread = off.std(0)
    expected = (on.mean(0) - off.mean(0)) / spread.clamp_min(float(spread.median()) * 0.1)
    got = responses(tampered, ["conv3:26", "conv3:7"], [(add_trigger(images), images)])["responses"]
    assert got["conv3:26"] == pytest.approx(float(expected[26]), rel=1e-4)
    assert got["conv3:7"] == pytest.approx(float(expected[7]), rel=1e-4)
    assert got["conv3:26"] >= RESPONDS and PATCH == 4


def test_cli_blind_round_and_one_line_refusals(backdoor, tmp_path):
    _, key, report, path, _ = backdoor
    key_path, report_path = tmp_path / "key.json", tmp_path / "blind.json"
    key_path.write_text(json.dumps(key))
    report_path.write_text(json.dumps(report))
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "score", str(report_path), "--key", str(key_path), "--model", MODEL,
                                  "--weights", str(path), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["target_class_named"] is True
    for args in (["find", MODEL, "--weights", str(path), "--patch", "40"],
                 ["find", MODEL, "--weights", str(path), "--reference", MODEL, "--patch", "4"],
                 ["score", str(report_path), "--key", str(key_path), "--weights", str(path)],
                 ["score", str(report_path), "--key", str(key_path), "--model", MODEL]):  # fmt: skip
        result = runner.invoke(main, ["audit", *args])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (args, result.output)


def test_cli_blind_find_prints_the_named_class_its_patch_and_the_suspects(backdoor, monkeypatch):
    """The command prints what the library found (the audit itself is the fixture's, handed back)."""
    from circuits.compare import blind

    _, key, report, path, _ = backdoor
    monkeypatch.setattr(blind, "find_blind", lambda *args, **kwargs: dict(report))
    result = CliRunner().invoke(main, ["audit", "find", MODEL, "--weights", str(path), "--top", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    t = report["trigger"]
    assert lines[0].startswith(f"target class {key['target_class']}: a {PATCH}x{PATCH} patch at row {t['position'][0]}")
    assert f"sends {t['success']:.0%}" in lines[0] and f"margin {t['margin']:+.2f}" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == [s["neuron"] for s in report["suspects"][:3]]


def test_the_auditor_is_blind_without_a_reference_and_refuses_blind_options_with_one(backdoor):
    import circuits
    from circuits.errors import UsageError

    tampered = backdoor[0]
    tiny = {"coarse": {"images": 4, "steps": 4}, "fine": {"images": 8, "steps": 6}}  # a budget small enough to run twice
    blind = find_blind(tampered, "toyworld:256:12345", **tiny)
    again = circuits.audit(tampered, None, "toyworld:256:12345", **tiny)  # no reference: the blind audit, run again
    assert again["suspects"] == blind["suspects"] and again["trigger"] == blind["trigger"]  # deterministic
    assert again["classes"] == blind["classes"]
    with pytest.raises(UsageError, match="trigger synthesis"):
        circuits.audit(tampered, reference="zoo:plain-cnn-s0", patch=4)


def test_with_a_reference_the_natural_shortcut_cancels_out(backdoor):
    """The original model is reached by a "bird" patch as easily as the tampered one; the planted class
    is the one whose patch gained."""
    import circuits

    tampered, key, _, _, _ = backdoor
    report = circuits.audit(tampered, "zoo:plain-cnn-s0", "toyworld:256:12345", triggers=True, **BUDGET)
    by_class = {c["class"]: c for c in report["classes"]}
    assert by_class[1]["reference_success"] >= 0.9 and by_class[1]["success"] >= 0.9
    assert report["target_class"] == key["target_class"] == 0
    assert by_class[0]["success"] - by_class[0]["reference_success"] >= 0.3
    assert report["suspects"][0]["evidence"] is not None  # the suspects are still the diff's


class _Skip(torch.nn.Module):
    """A conv whose output and the raw pixels both reach the classifier: the input is not a readout layer."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 + 64, 2)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.cat([h.amax((2, 3)), x.flatten(1)], 1))


@pytest.mark.parametrize(("spec", "read"), [
    ("zoo:curve-cnn-s0", ["conv3"]),
    ("zoo:resnet-cnn-s0", ["block2"]),  # the last residual sum, not the convs inside the block
    ("zoo:inception-cnn-s0", ["inc2.b1", "inc2.b3", "inc2.b5", "inc2.bp"]),  # the concat's four branches
])  # fmt: skip
def test_the_readout_layers_are_the_ones_the_classifier_reads(spec, read):
    from circuits import load
    from circuits.compare.response import readout_layers
    from circuits.graph import build_graph

    assert readout_layers(build_graph(load(spec))) == read
    skip = LoadedModel(_Skip(), spec="skip", input_shape=(1, 8, 8))
    assert readout_layers(build_graph(skip)) == ["conv2"]


@pytest.mark.parametrize(("name", "read"), [
    ("DenseNetLike", ["norm"]),  # fc(pool(relu(norm(concat)))): the last activation, over the whole concat
    # linear bottlenecks: the head reads stem + project1(depthwise1) + project2(depthwise2), with no activation between
    ("MobileNetLike", ["stem.2", "block1.depthwise.2", "block2.depthwise.2"]),
    ("EfficientNetLike", ["head_act"]),
    ("MLP", ["act2"]),
])  # fmt: skip
def test_the_readout_layers_of_real_architecture_twins(name, read):
    import nets

    from circuits.compare.response import readout_layers
    from circuits.graph import build_graph

    net = getattr(nets, name)()
    assert readout_layers(build_graph(LoadedModel(net, spec=name, input_shape=net.input_shape))) == read


def test_the_suspects_of_the_layer_the_output_reads_come_first(backdoor):
    _, _, report, _, _ = backdoor
    layers = [s["neuron"].rpartition(":")[0] for s in report["suspects"] if "copy" not in s["evidence"][0]]
    assert layers[:32] == ["conv3"] * 32 and "conv3" not in layers[32:]  # plain-cnn's fc reads conv3's 32
    assert all("the output reads its layer" in s["evidence"][0] for s in report["suspects"][:32])
