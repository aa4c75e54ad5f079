"""The model zoo: shipped weights load, classify fresh toy-world data, show the motifs their cards claim,
and retrain deterministically."""

import json

import numpy as np
import pytest
import torch

from circuits import zoo
from circuits.data import toyworld
from circuits.errors import BadSpecError
from circuits.models import load as load_spec
from circuits.models import weights_hash

FAMILIES = sorted(zoo.RECIPES)
SEEDED = [f"{family}-s{seed}" for family in FAMILIES for seed in zoo.SEEDS]
FRESH_SEED = 4242  # neither the training data nor the card's held-out data


def test_names_are_sorted_and_include_aliases():
    names = zoo.names()
    assert names == sorted(names)
    assert set(SEEDED) | set(FAMILIES) == set(names)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(BadSpecError, match="did you mean 'plain-cnn"):
        load_spec("zoo:plain-cn")


@pytest.mark.parametrize("name", SEEDED)
def test_shipped_model_is_accurate_on_fresh_held_out_data(name):
    loaded = load_spec(f"zoo:{name}")
    info = loaded.info
    assert loaded.spec == f"zoo:{name}" and not loaded.module.training
    assert loaded.input_shape == tuple(info["input_shape"])
    assert loaded.weights_hash == info["weights_sha256"]
    images, labels, _ = toyworld.generate(600, seed=FRESH_SEED, size=info["input_shape"][1], task=info["task"])
    with torch.no_grad():
        accuracy = float((loaded.module(images).argmax(1) == labels).float().mean())
    assert accuracy >= 0.95, f"{name}: {accuracy:.3f}"
    assert abs(accuracy - info["accuracy"]) < 0.03  # the card's number is the model's number


def test_alias_is_seed_zero():
    assert load_spec("zoo:plain-cnn").weights_hash == zoo.card("plain-cnn-s0")["weights_sha256"]
    assert zoo.card("plain-cnn")["alias_of"] == "plain-cnn-s0"


def test_shipped_weights_fit_the_size_budget():
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.glob("*.pt"))
    assert len(list(zoo.WEIGHTS_DIR.glob("*.pt"))) == len(SEEDED)
    assert total <= 20 * 2**20


def test_every_card_records_recipe_accuracy_and_seed():
    for name in SEEDED:
        info = zoo.card(name)
        family, seed = zoo.resolve(name)
        assert info["seed"] == seed and info["recipe_hash"] == zoo.RECIPES[family].hash
        assert f"{info['accuracy']:.4f}" in info["card_markdown"]


@pytest.mark.parametrize("name", SEEDED)
def test_zoo_models_trace_with_fx(name):
    graph_module = torch.fx.symbolic_trace(zoo.load(name).module)
    x = torch.rand(2, *zoo.card(name)["input_shape"])
    assert graph_module(x).shape[0] == 2


# --- union over reflection in the plain CNN, computed here from activations, independently of analysis.py --


def _pooled(module, images, layers=("conv1", "conv2", "conv3")):
    """{layer: N x C} ReLU(conv output) max-pooled over space, from one forward pass."""
    out, handles = {}, []
    modules = dict(module.named_modules())
    for name in layers:
        hook = (lambda n: lambda _m, _i, o: out.__setitem__(n, torch.relu(o).amax(dim=(2, 3)).numpy()))(name)
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(images)
    finally:
        for handle in handles:
            handle.remove()
    return {name: value.astype(np.float64) for name, value in out.items()}


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


@pytest.mark.parametrize("family", ["plain-cnn", "plain-cnn-sparse"])
@pytest.mark.parametrize("seed", zoo.SEEDS)
def test_union_neuron_has_mirror_pair_inputs(family, seed):
    module = zoo.load(f"{family}-s{seed}").module
    probe, _, _ = toyworld.generate(1000, seed=777)
    flipped = torch.flip(probe, dims=[3])
    acts, acts_flipped = _pooled(module, probe), _pooled(module, flipped)
    found = []
    for source, target in [("conv1", "conv2"), ("conv2", "conv3")]:
        t_x, t_f = acts[target], acts_flipped[target]
        s_x, s_f = acts[source], acts_flipped[source]
        strength = dict(module.named_modules())[target].weight.detach().sum(dim=(2, 3)).numpy()
        for k in range(t_x.shape[1]):
            if _corr(t_x[:, k], t_f[:, k]) < 0.9:
                continue
            top = [c for c in np.argsort(-strength[k])[:4] if strength[k, c] > 0]
            for i in top:
                for j in top:
                    if i != j and _corr(s_f[:, i], s_x[:, j]) >= 0.8 and _corr(s_f[:, i], s_x[:, i]) < 0.6:
                        found.append((target, k, i, j))
    assert found, f"{family}-s{seed} has no reflection-union neuron"
    card_best = zoo.card(f"{family}-s{seed}")["motifs"]["reflection_unions"]["neurons"][0]
    key = (card_best["layer"], card_best["channel"], *card_best["pair"])
    assert key in found  # the card's headline neuron is one this independent computation finds


def test_curve_card_reports_families_with_numbers():
    for seed in zoo.SEEDS:
        report = zoo.card(f"curve-cnn-s{seed}")["motifs"]["curve_families"]
        assert set(report) == {"conv1", "conv2", "conv3"}
        for layer in report.values():
            assert 0.0 <= layer["mean_selectivity"] <= 1.0
            for family in layer["families"]:
                assert len(family["members"]) >= 2 and family["mean_shift_corr"] >= 0.8


# --- deterministic training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_training_is_deterministic(family):
    from circuits.zoo.train import train

    first = train(family, seed=1, fast=True)
    second = train(family, seed=1, fast=True)
    other = train(family, seed=2, fast=True)
    assert first.weights_hash == second.weights_hash == weights_hash(second.module)
    assert first.weights_hash != other.weights_hash
    assert first.steps == zoo.RECIPES[family].fast_steps


@pytest.mark.slow
@pytest.mark.parametrize("family", ["plain-cnn", "plain-cnn-sparse"])
def test_full_training_reproduces_the_shipped_weights(family):
    from circuits.zoo.train import train

    result = train(family, seed=0)
    assert result.weights_hash == zoo.card(f"{family}-s0")["weights_sha256"]


# --- CLI -----------------------------------------------------------------------------------------------------


def _run(args):
    from click.testing import CliRunner

    from circuits.cli import main

    return CliRunner().invoke(main, args)


def test_cli_list_json_has_every_model_with_card_numbers():
    result = _run(["zoo", "list", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["schema_version"] == 1 and "provenance" in payload
    rows = {row["name"]: row for row in payload["models"]}
    assert set(rows) == set(SEEDED)
    assert rows["mlp-s1"]["accuracy"] == zoo.card("mlp-s1")["accuracy"]
    assert rows["resnet-cnn-s2"]["params"] == sum(p.numel() for p in zoo.load("resnet-cnn-s2").module.parameters())


def test_cli_show_json_and_unknown_name_exit_code():
    result = _run(["zoo", "show", "curve-cnn-s1", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["card"]["seed"] == 1
    assert _run(["zoo", "show", "curve-cnn-s7"]).exit_code == 2


def test_cli_train_fast_twice_gives_the_same_hash(tmp_path):
    outputs = []
    for i in range(2):
        path = tmp_path / f"w{i}.pt"
        result = _run(["zoo", "train", "plain-cnn", "--seed", "1", "--fast", "--json", "-o", str(path)])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        state = torch.load(path, weights_only=True)
        module = zoo.load("plain-cnn-s1").module
        module.load_state_dict(state)
        assert weights_hash(module) == payload["weights_sha256"]
        outputs.append(payload["weights_sha256"])
    assert outputs[0] == outputs[1]
    assert payload["matches_shipped"] is None and payload["fast"] is True


def test_cli_train_needs_a_seed_and_refuses_conflicts(tmp_path):
    assert _run(["zoo", "train", "mlp", "-o", str(tmp_path / "x.pt")]).exit_code == 2
    assert _run(["zoo", "train", "mlp-s1", "--seed", "2", "-o", str(tmp_path / "x.pt")]).exit_code == 2


def test_cli_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, circuits.cli.zoo, circuits.zoo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_wiring_cost_is_one_for_a_single_input_and_sqrt_fan_in_for_equal_inputs():
    """Per neuron L1/L2 of its input-kernel norms, averaged, times the recipe's weight; zero when off."""
    from dataclasses import replace

    from torch import nn

    from circuits.zoo.train import wiring_cost

    recipe = replace(zoo.RECIPES["plain-cnn-sparse"], wiring_penalty=2.0, wiring_layers=("conv",))
    module = nn.Module()
    module.conv = nn.Conv2d(9, 2, 3)
    with torch.no_grad():
        module.conv.weight.zero_()
        module.conv.weight[0, 4] = torch.randn(3, 3)  # one input left: L1/L2 = 1
        module.conv.weight[1] = 0.3  # nine equal inputs: L1/L2 = 3
    assert float(wiring_cost(module, recipe)) == pytest.approx(2.0 * (1 + 3) / 2, rel=1e-5)
    assert wiring_cost(module, zoo.RECIPES["plain-cnn"]) == 0.0
    scaled = nn.Module()
    scaled.conv = nn.Conv2d(9, 2, 3)
    with torch.no_grad():
        scaled.conv.weight.copy_(10 * module.conv.weight)
    assert float(wiring_cost(scaled, recipe)) == pytest.approx(float(wiring_cost(module, recipe)), rel=1e-5)  # scale-free
