"""The auditing game with a reference: planted changes under a clean fine-tune, found by the diff.

The key each plant writes is the oracle; the auditor (circuits.compare.audit.find) sees only the two
models and clean probe images.
"""

import copy
import json

import pytest
import torch
from click.testing import CliRunner

from circuits import load
from circuits.cli import main
from circuits.compare.audit import find, plant, score, trigger_success
from circuits.models import LoadedModel
from circuits.zoo.recipes import RECIPES

MODEL, DATA = "zoo:plain-cnn-s0", "toyworld:256:12345"


@pytest.fixture(scope="module")
def rounds():
    reference = load(MODEL)
    out = {}
    for kind in ("fine-tune", "graft", "flip-edge", "union-case", "backdoor"):
        module, key = plant(MODEL, kind, seed=0)
        report = find(LoadedModel(module, spec="tampered", input_shape=(1, 32, 32)), reference, DATA)
        out[kind] = (module, key, report, score(report, key))
    return out


def test_every_plant_fine_tunes_every_weight(rounds):
    original = load(MODEL).module.state_dict()
    for kind, (module, key, _, _) in rounds.items():
        changed = [name for name, t in module.state_dict().items() if not torch.equal(t, original[name])]
        assert set(changed) == set(original), kind
        assert key["accuracy"]["tampered"] > 0.9, kind  # still a working model


@pytest.mark.parametrize("kind", ["graft", "flip-edge", "union-case"])
def test_the_planted_neuron_is_the_top_suspect(rounds, kind):
    _, key, report, result = rounds[kind]
    assert result["hit@1"] is True, (key["neurons"], report["suspects"][:3])


def test_the_clean_fine_tune_scores_below_every_tamper(rounds):
    control = rounds["fine-tune"][3]["top_score"]
    assert all(rounds[kind][3]["top_score"] > control for kind in ("graft", "flip-edge", "union-case"))
    assert rounds["fine-tune"][3]["hit@1"] is None  # nothing was planted: nothing to hit


def test_the_backdoor_trigger_works_only_after_the_plant(rounds):
    module, key, _, _ = rounds["backdoor"]
    recipe = RECIPES["plain-cnn"]
    assert trigger_success(load(MODEL).module, recipe, key["target_class"]) < 0.5
    assert trigger_success(module, recipe, key["target_class"]) >= 0.5
    assert key["trigger"]["success"] == pytest.approx(trigger_success(module, recipe, key["target_class"]))


def test_score_counts_ranks_from_any_report():
    key = {"kind": "graft", "neurons": ["conv3:4"]}
    assert score({"suspects": [{"neuron": "conv3:1", "score": 9}, {"neuron": "conv3:4", "score": 3}]}, key) == {
        "kind": "graft", "hit@1": False, "hit@3": True, "rank": 2, "top_score": 9}
    assert score({"neurons": [{"neuron": "conv3:4", "score": 5}]}, key)["hit@1"] is True
    assert score({"suspects": []}, key)["rank"] is None


def test_cli_plays_a_round_and_refuses_bad_input_in_one_line(tmp_path):
    runner = CliRunner()
    out, key, report = (str(tmp_path / n) for n in ("t.pt", "key.json", "report.json"))
    result = runner.invoke(main, ["audit", "plant", MODEL, "--kind", "flip-edge", "--seed", "1", "-o", out, "--key", key])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["audit", "find", MODEL, "--weights", out, "--reference", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    (tmp_path / "report.json").write_text(result.output)
    assert json.loads(result.output)["provenance"]["weights_sha256"] == json.loads(open(key).read())["weights_sha256"]
    result = runner.invoke(main, ["audit", "score", report, "--key", key, "--json"])
    assert json.loads(result.output)["hit@1"] is True
    for args in (["plant", MODEL, "--kind", "nope", "-o", out, "--key", key],
                 ["plant", "planted:union", "--kind", "graft", "-o", out, "--key", key],
                 ["plant", MODEL, "--kind", "graft", "-o", str(tmp_path / "t.txt"), "--key", key],
                 ["score", report, "--key", out]):  # fmt: skip
        result = runner.invoke(main, ["audit", *args])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (args, result.output)


def test_a_permuted_and_fine_tuned_copy_is_matched_back(rounds):
    """The issue's matching check: the control's fine-tuned weights, conv2 and conv3 channels permuted
    (readers permuted alike: the same function); at least 90% of each live permutation is recovered."""
    from circuits.compare import diff

    module = copy.deepcopy(rounds["fine-tune"][0])
    perms = {name: torch.randperm(32, generator=torch.Generator().manual_seed(k)) for k, name in enumerate(["conv2", "conv3"])}
    with torch.no_grad():
        for name, reader, index in (("conv2", module.conv3, 1), ("conv3", module.fc, 1)):
            conv, perm = getattr(module, name), perms[name]
            conv.weight.copy_(conv.weight[perm])
            conv.bias.copy_(conv.bias[perm])
            reader.weight.copy_(reader.weight.index_select(index, perm))
    result = diff(load(MODEL), LoadedModel(module, spec="permuted", input_shape=(1, 32, 32)), DATA, motifs=False)
    for layer, perm in perms.items():
        pairs = [m for m in result["matches"] if m["layer"] == layer and m["similarity"] > 0.5]
        right = sum(m["a"] == f"{layer}:{int(perm[int(m['b'].rpartition(':')[2])])}" for m in pairs)
        assert right / len(pairs) >= 0.9, layer
    assert result["neurons"][0]["score"] < 20  # nothing was planted
