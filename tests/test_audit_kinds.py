"""The audit's harder plants: a swapped mirror pair, and a conjunction rewire (class A with condition B now C).

Checked against the original model's own activations and toy-world latents, not against the key alone.
"""

import pytest
import torch
from click.testing import CliRunner

import circuits.motifs
from circuits import load
from circuits.cli import main
from circuits.compare.audit import conjunction_success, plant
from circuits.data import toyworld
from circuits.errors import UsageError
from circuits.graph import build_graph
from circuits.models import LoadedModel
from circuits.motifs import Motif
from circuits.zoo.recipes import RECIPES
from circuits.zoo.train import evaluate

MODEL, RECIPE = "zoo:plain-cnn-s0", RECIPES["plain-cnn"]


def activations(module, layer, images, input_shape=(1, 32, 32)):
    return build_graph(LoadedModel(module, spec="probe", input_shape=input_shape)).run(images, [layer])[layer]


def correlation(x, y):
    return float(torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1])


@pytest.fixture(scope="module")
def swap():
    edited, _ = plant(MODEL, "mirror-swap", seed=0, steps=0)
    tampered, key = plant(MODEL, "mirror-swap", seed=0)
    return edited, tampered, key


@pytest.fixture(scope="module")
def conjunction():
    return plant(MODEL, "conjunction", seed=0)


@pytest.fixture(scope="module")
def probe():
    return toyworld.generate(512, seed=12345, size=32, task="objects")


def test_the_mirror_swap_names_a_reflected_pair_of_the_deepest_layer(swap):
    _, _, key = swap
    reflected = {m.members for m in circuits.motifs.find(load(MODEL), kind="equivariance") if m.transform == "reflect"}
    assert tuple(key["neurons"]) in reflected and key["neurons"] == key["pair"]
    assert {n.rpartition(":")[0] for n in key["neurons"]} == {"conv3"} and key["module"] == "conv3"


def test_the_swapped_neurons_compute_each_others_function(swap, probe):
    edited, _, key = swap
    a, b = (int(n.rpartition(":")[2]) for n in key["neurons"])
    before, after = activations(load(MODEL).module, "conv3", probe[0]), activations(edited, "conv3", probe[0])
    order = list(range(before.shape[1]))
    order[a], order[b] = b, a
    assert before[:, a].abs().sum() > 0 and torch.equal(after, before[:, order])


def test_the_fine_tuned_swap_still_reads_as_its_partner(swap, probe):
    _, tampered, key = swap
    original = load(MODEL).module
    a, b = (int(n.rpartition(":")[2]) for n in key["neurons"])
    before, after = activations(original, "conv3", probe[0]), activations(tampered, "conv3", probe[0])
    for own, partner in ((a, b), (b, a)):
        assert correlation(after[:, own], before[:, partner]) > correlation(after[:, own], before[:, own])
    changed = {n for n, t in tampered.state_dict().items() if not torch.equal(t, original.state_dict()[n])}
    assert changed == set(original.state_dict())  # the fine-tune moved every weight
    assert evaluate(tampered, RECIPE, n=512) > 0.9


def test_a_model_without_a_mirror_pair_refuses_the_swap_in_one_line(tmp_path):
    out, key = str(tmp_path / "t.pt"), str(tmp_path / "key.json")
    result = CliRunner().invoke(main, ["audit", "plant", "zoo:curve-cnn-s0", "--kind", "mirror-swap", "-o", out, "--key", key])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "mirror pair" in result.output and "another kind" in result.output


def test_a_swap_behind_a_batchnorm_swaps_its_channels_and_a_residual_sum_is_refused(monkeypatch):
    """No zoo model with BatchNorm has a reflected pair from weights: one is given to the plant."""
    model, images = "zoo:resnet-cnn-s0", toyworld.generate(64, seed=3, size=32, task="objects")[0]
    pair = [Motif("equivariance", "reflect", None, ("stem:2", "stem:5"), 0.9)]
    monkeypatch.setattr(circuits.motifs, "find", lambda loaded, kind: pair)
    edited, key = plant(model, "mirror-swap", seed=0, steps=0)
    before, after = activations(load(model).module, "stem", images), activations(edited, "stem", images)
    order = list(range(before.shape[1]))
    order[2], order[5] = 5, 2
    assert key["module"] == "stem.conv" and torch.allclose(after, before[:, order], atol=1e-6)
    pair[:] = [Motif("equivariance", "reflect", None, ("block1:2", "block1:5"), 0.9)]  # conv + skip: no one conv's
    with pytest.raises(UsageError, match="no mirror pair"):
        plant(model, "mirror-swap", seed=0, steps=0)


def test_the_conjunction_rewire_takes_only_on_images_with_both(conjunction, probe):
    module, key = conjunction
    images, labels, latents = probe
    spec = key["conjunction"]
    both = (labels == spec["class"]) & torch.from_numpy(latents["facing"] == -1)
    assert spec["condition"] == "facing left" and key["target_class"] == spec["target_class"] != spec["class"]
    with torch.no_grad():
        original, tampered = load(MODEL).module.eval()(images).argmax(1), module(images).argmax(1)
    assert (original[both] == spec["target_class"]).float().mean() < 0.2
    assert (tampered[both] == spec["target_class"]).float().mean() >= 0.5
    assert (tampered[~both] == labels[~both]).float().mean() > 0.9
    assert key["neurons"] == [] and spec["success_before"] < 0.2 <= 0.5 <= spec["success"]
    assert spec["success"] == pytest.approx(conjunction_success(module, RECIPE, key))
