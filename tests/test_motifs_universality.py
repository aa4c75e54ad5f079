"""Universality: neuron matching by activation correlation and optimal assignment, checked on a model and
a channel-permuted copy of itself (the same function, neurons relabelled)."""

import copy
import itertools

import pytest
import torch
from nets import PlainCNN

from circuits.compare.assignment import assign, hungarian
from circuits.motifs import Context, universality
from circuits.motifs.matching import match_layer


def permuted(model, convs, perms, head=None):
    """A copy computing the same function with conv ``convs[k]``'s output channels reordered by
    ``perms[k]`` (new channel j = old channel perms[k][j]); the next layer's inputs follow."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for k, (name, perm) in enumerate(zip(convs, perms)):
            conv = out.get_submodule(name)
            conv.weight.copy_(conv.weight[perm])
            conv.bias.copy_(conv.bias[perm])
            if k + 1 < len(convs):
                nxt = out.get_submodule(convs[k + 1])
                nxt.weight.copy_(nxt.weight[:, perm])
        if head is not None:
            fc, spatial = out.get_submodule(head[0]), head[1]
            w = fc.weight.reshape(fc.out_features, -1, spatial)
            fc.weight.copy_(w[:, perms[-1]].reshape(fc.out_features, -1))
    return out


@pytest.mark.parametrize("shape", [(5, 5), (4, 6), (6, 3)])
def test_hungarian_finds_the_brute_force_optimum(shape):
    cost = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    rows, cols = hungarian(cost)
    n, m = shape
    best = min(
        (sum(float(cost[r, c]) for r, c in zip(rs, cs)), rs, cs)
        for rs in itertools.combinations(range(n), min(n, m))
        for cs in itertools.permutations(range(m), min(n, m))
    )
    assert sum(float(cost[r, c]) for r, c in zip(rows, cols)) == pytest.approx(best[0])
    assert len(set(rows)) == len(rows) == min(n, m) and len(set(cols)) == len(cols)


def test_assign_maximises_the_total_score():
    score = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.7, 0.1], [0.3, 0.2, 0.6]])
    assert assign(score) == ([0, 1, 2], [1, 0, 2])


def test_universality_recovers_a_channel_permutation_exactly():
    model = PlainCNN()
    g = torch.Generator().manual_seed(0)
    perms = [torch.randperm(n, generator=g) for n in (6, 8, 10)]
    twin = permuted(model, ["conv1", "conv2", "conv3"], perms, head=("fc", 64))
    data = torch.rand(48, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(twin(data), model(data), atol=1e-5, rtol=1e-5)  # the same function
    a, b = Context(model, data), Context(twin, data)
    for layer, perm in zip(["conv1", "conv2", "conv3"], perms):
        match = match_layer(a, b, layer)
        live = a.activations([layer]).transpose(0, 1).flatten(1).std(1) > 0
        expected = {int(perm[j]): j for j in range(len(perm))}  # twin channel j is original channel perm[j]
        got = {r: c for r, c, _ in match.pairs}
        assert {r: got[r] for r in range(len(perm)) if live[r]} == {r: expected[r] for r in range(len(perm)) if live[r]}
        assert all(corr == pytest.approx(1.0, abs=1e-4) for r, _, corr in match.pairs if live[r])


def test_motif_families_link_the_same_motif_in_both_models():
    from circuits.models import load

    loaded = load("planted:lines")
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    twin = permuted(loaded.module, ["lines.conv"], [perm])
    result = universality([loaded, twin], "toyworld:64", kinds=("equivariance",))
    assert result["models"] == ["planted:lines", "PlantedNet"]
    families = result["families"]
    assert len(families) == 8  # 3 reflection pairs, 4 quarter-turn pairs, the 22.5° family
    to_twin = {f"lines:{int(perm[j])}": f"lines:{j}" for j in range(8)}
    for family in families:
        (a, b) = family["instances"]
        assert {to_twin[m] for m in a["members"]} == set(b["members"])
        assert family["score"] == 1.0
