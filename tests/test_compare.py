"""Model diffing: planted edits on a zoo model, hidden under clean drift, found by circuits.compare.diff.

The oracle is the edit itself: which neuron was grafted, which edge flipped, which permutation applied. Every
tampered copy also gets 1% Gaussian noise on every weight (relative to each tensor's spread), so that every
neuron moved and the planted change is not the only difference.
"""

import copy
import json

import torch
from click.testing import CliRunner

from circuits import load
from circuits.cli import main
from circuits.compare import diff
from circuits.models import LoadedModel

DATA = "toyworld:256:3"


def _drifted(seed=0, scale=0.01):
    loaded = load("zoo:plain-cnn-s0")
    module = copy.deepcopy(loaded.module)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * float(p.std()))
    return loaded, module


def _model(module, name):
    return LoadedModel(module, spec=name, input_shape=(1, 32, 32))


def test_a_permuted_drifted_copy_is_matched_back_and_nothing_stands_out():
    reference, module = _drifted(seed=1)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():  # conv2's channels reordered, and conv3 reads them in the new order: the same function
        module.conv2.weight.copy_(module.conv2.weight[perm])
        module.conv2.bias.copy_(module.conv2.bias[perm])
        module.conv3.weight.copy_(module.conv3.weight[:, perm])
    result = diff(reference, _model(module, "permuted"), DATA, motifs=False)
    matched = {m["b"]: m["a"] for m in result["matches"] if m["layer"] == "conv2"}
    live = [j for j in range(32) if result["matches"][16 + j]["similarity"] > 0.5]
    recovered = sum(matched[f"conv2:{j}"] == f"conv2:{int(perm[j])}" for j in live) / len(live)
    assert recovered >= 0.9
    assert all(n["score"] < 10 for n in result["neurons"])  # drift alone: no neuron far outside its layer


def test_a_grafted_neuron_tops_the_diff():
    reference, module = _drifted(seed=2)
    with torch.no_grad():  # conv3:5 now computes what conv3:12 computes
        module.conv3.weight[5] = module.conv3.weight[12]
        module.conv3.bias[5] = module.conv3.bias[12]
    result = diff(reference, _model(module, "grafted"), DATA, motifs=False)
    assert result["neurons"][0]["neuron"] == "conv3:5"
    assert any(r.startswith("function") for r in result["neurons"][0]["reasons"])


def test_a_flipped_strong_edge_tops_the_edges_and_its_neuron_the_diff():
    reference, module = _drifted(seed=3)
    strength = reference.module.conv3.weight[9].sum((1, 2))
    source = int(strength.abs().argmax())
    with torch.no_grad():
        module.conv3.weight[9, source] *= -1
    result = diff(reference, _model(module, "flipped"), DATA, motifs=False)
    assert [n["neuron"] for n in result["neurons"][:3]].count("conv3:9") == 1
    top = result["edges"][0]
    assert (top["source"], top["target"]) == (f"conv2:{source}", "conv3:9")
    assert top["weight_a"] * top["weight_b"] < 0


def test_the_naive_baseline_cannot_see_through_a_permutation():
    reference, module = _drifted(seed=4)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        module.conv2.weight.copy_(module.conv2.weight[perm])
        module.conv2.bias.copy_(module.conv2.bias[perm])
        module.conv3.weight.copy_(module.conv3.weight[:, perm])
        module.conv3.weight[5] = module.conv3.weight[12]
    result = diff(reference, _model(module, "both"), DATA, motifs=False)
    assert result["neurons"][0]["neuron"] == "conv3:5"
    naive_top = [n["neuron"] for n in result["baseline"][:3]]
    assert "conv3:5" not in naive_top  # every permuted neuron looks changed to it


def test_cli_diff_json_keeps_the_contract_and_refuses_other_architectures(tmp_path):
    reference, module = _drifted(seed=5)
    with torch.no_grad():
        module.conv3.weight[5] = module.conv3.weight[12]
    path = tmp_path / "tampered.pt"
    torch.save(module.state_dict(), path)
    runner = CliRunner()
    result = runner.invoke(main, ["diff", "zoo:plain-cnn-s0", "zoo:plain-cnn-s0", "--weights-b", str(path),
                                  "--data", "toyworld:128:3", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert {"schema_version", "model_a", "model_b", "matches", "neurons", "edges", "motifs", "provenance"} <= set(payload)
    assert set(payload["matches"][0]) == {"layer", "a", "b", "similarity"}
    assert {"neuron", "match", "score", "reasons"} <= set(payload["neurons"][0])
    assert set(payload["motifs"]) == {"gained", "lost"}
    assert payload["neurons"][0]["neuron"] == "conv3:5"
    scores = [n["score"] for n in payload["neurons"]]
    assert scores == sorted(scores, reverse=True)
    assert payload["provenance"]["weights_sha256"]["b"] != payload["provenance"]["weights_sha256"]["a"]
    result = runner.invoke(main, ["diff", "zoo:plain-cnn-s0", "zoo:resnet-cnn-s0", "--data", "toyworld:32"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_a_graft_in_a_drifted_mobilenetv2_twin_tops_the_diff():
    """Real architectures: an expand conv of an inverted residual (BatchNorm folded, ReLU6), 1% noise on
    every weight, one neuron grafted; its depthwise reader, which sees only that channel, follows it."""
    from tests.nets import MobileNetV2Twin

    original = MobileNetV2Twin(0)
    module = copy.deepcopy(original)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01 * float(p.std()))
        module.features[3].conv[0].weight[5] = module.features[3].conv[0].weight[12]
    result = diff(original, module, "toyworld:128", motifs=False)
    top = [n["neuron"] for n in result["neurons"][:3]]
    assert top[0] == "features.3.conv.2:5" and "features.3.conv.5:5" in top


def test_a_swapped_pair_in_a_small_layer_is_not_mistaken_for_a_permutation():
    """inc1.b5 has 6 channels: a swap of two leaves only 4 of 6 on their own index, under the identity
    share, so the activations alone would call it a permutation. Its readers (inc2's convs, through the
    concat inc1, channels 12-17) were not permuted, and they decide: the pair is flagged. Permuting the
    channels and the readers alike (the same function) is still matched as a permutation."""


    reference = load("zoo:inception-cnn-s0")
    swapped = copy.deepcopy(reference.module)
    permuted = copy.deepcopy(reference.module)
    perm = torch.tensor([3, 5, 0, 1, 4, 2])
    with torch.no_grad():
        conv = swapped.inc1.b5.conv
        for t in (conv.weight, conv.bias):
            t[[0, 1]] = t[[1, 0]]
        conv = permuted.inc1.b5.conv
        conv.weight.copy_(conv.weight[perm])
        conv.bias.copy_(conv.bias[perm])
        for branch in (permuted.inc2.b1, permuted.inc2.b3, permuted.inc2.b5, permuted.inc2.bp):
            w = branch.conv.weight
            w[:, 12:18] = w[:, 12:18][:, perm]
    shape = reference.input_shape
    result = diff(reference, LoadedModel(swapped, spec="swapped", input_shape=shape), "toyworld:256:12345", motifs=False)
    assert {n["neuron"] for n in result["neurons"][:2]} == {"inc1.b5:0", "inc1.b5:1"}
    result = diff(reference, LoadedModel(permuted, spec="permuted", input_shape=shape), "toyworld:256:12345", motifs=False)
    pairs = {m["b"]: m["a"] for m in result["matches"] if m["layer"] == "inc1.b5"}
    assert pairs == {f"inc1.b5:{j}": f"inc1.b5:{int(perm[j])}" for j in range(6)}
    assert result["neurons"][0]["score"] < 10
