"""Automatic labels and concept queries, checked against the planted nets (whose names are known) and against
scores computed the slow, obvious way."""

import numpy as np
import pytest
import torch

from circuits.data import toyworld
from circuits.data.spec import load_labelled
from circuits.errors import CircuitsError, UsageError
from circuits.labels import find_neurons, label_neurons
from circuits.labels.concepts import candidates, factors, parse
from circuits.labels.selectivity import OverlapCounts, auroc
from circuits.planted import load as load_planted

STROKES = "toyworld:strokes:2000:1"


def pairwise_auroc(score, positive):
    """P(a positive outranks a negative), ties a half: the definition, by brute force."""
    pos, neg = score[positive], score[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_auroc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(300, 4)).astype(float)  # many ties
    positives = rng.random((300, 3)) < [0.1, 0.5, 0.8]
    grid = auroc(scores, positives)
    for k in range(3):
        for c in range(4):
            assert grid[k, c] == pytest.approx(pairwise_auroc(scores[:, c], positives[:, k]))


def test_iou_matches_a_direct_count():
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(rng.normal(size=(12, 3, 4, 4)).astype(np.float32))
    masks = rng.random((12, 8, 8)) < 0.3
    positives = rng.random((12, 2)) < 0.5
    counts = OverlapCounts(np.array([0.5, 1.0, 1.5]))
    counts.add(maps[:5], masks[:5])
    counts.add(maps[5:], masks[5:])
    up = torch.nn.functional.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False).numpy()
    for k in range(2):
        for c, t in enumerate([0.5, 1.0, 1.5]):
            on = up[:, c] > t
            concept = masks & positives[:, k][:, None, None]
            expected = (on & concept).sum() / (on | concept).sum()
            assert counts.iou(positives)[k, c] == pytest.approx(expected)


def test_toyworld_masks_cover_the_thing_and_leave_the_images_unchanged():
    for task in toyworld.TASKS:
        plain, labels, latents = toyworld.generate(64, seed=3, size=24, task=task)
        masked, labels2, latents2 = toyworld.generate(64, seed=3, size=24, task=task, masks=True)
        assert torch.equal(plain, masked) and torch.equal(labels, labels2)
        assert set(latents2) - set(latents) == {"mask"}
        mask = latents2["mask"]
        assert mask.shape == (64, 24, 24) and mask.dtype == bool and mask.any(axis=(1, 2)).all()
        bright = masked[:, 0].numpy()  # the thing is drawn brighter than the background
        assert bright[mask].mean() > bright[~mask].mean() + 0.2


def test_strokes_latents_follow_the_planted_convention():
    images, labels, latents = toyworld.generate(400, seed=5, size=24, task="strokes", masks=True)
    line, wedge = labels.numpy() == 0, labels.numpy() == 1
    assert line.sum() > 100 and wedge.sum() > 100
    assert set(latents["facing"][wedge]) == {-1, 1} and set(latents["facing"][line]) == {0}
    assert (0 <= latents["angle"][line]).all() and (latents["angle"][line] < 180).all()
    # a '<' has its vertex on the left: more ink right of its centre column than left of it; '>' the reverse
    cols = np.arange(24)[None, :] + 0.5 - (latents["x"][:, None] * 12 + 12)
    ink = latents["mask"].sum(axis=1)  # N x columns
    right_heavy = (ink * (cols > 0)).sum(1) > (ink * (cols < 0)).sum(1)
    assert right_heavy[wedge & (latents["facing"] < 0)].mean() > 0.9
    assert (~right_heavy)[wedge & (latents["facing"] > 0)].mean() > 0.9


def test_concepts_parse_print_and_refuse_in_one_line():
    data = load_labelled("toyworld:600:2")
    table = factors(data.task, data.labels, data.latents)
    concept = parse("fish and (facing=left OR facing=right)", table)
    assert concept.text() == "fish AND (facing=left OR facing=right)"
    assert parse(concept.text(), table) == concept
    assert (concept.positives(table) == (data.labels == 0)).all()
    assert concept.words() == "fish facing left or right"
    for bad, words in [("dog", "unknown class 'dog'"), ("colour=red", "unknown factor 'colour'"),
                       ("fish OR facing=left", "one factor"), ("", "empty"), ("facing=left AND facing=right", "twice")]:
        with pytest.raises(UsageError, match=words):
            parse(bad, table)
    texts = [c.text() for c in candidates(table)]
    assert len(texts) == len(set(texts)) and "facing=left" in texts and "fish AND facing=left" in texts


def test_a_spec_without_concepts_is_refused():
    with pytest.raises(CircuitsError, match="no known concepts"):
        load_labelled("noise:10")


PLANTED_NAMES = {  # planted neuron name -> the concept it was built to detect, on the strokes data
    **{f"line_{a}": f"angle={a}" for a in (0, 22, 45, 67, 90, 112, 135, 157)},
    "wedge_left": "facing=left", "wedge_right": "facing=right",
    "union": "wedge AND (facing=left OR facing=right)", "opponent": "facing=left",
}


@pytest.mark.parametrize("name", ["lines", "wedges", "union", "bn-union", "inception-union"])
def test_labels_recover_the_planted_names(name):
    loaded = load_planted(name)
    labels = label_neurons(loaded.module, data=STROKES)
    data = load_labelled(STROKES, (1, 24, 24))
    table = factors(data.task, data.labels, data.latents)
    by_id = {n.neuron: n for n in labels.neurons}
    planted = [(ident, n) for ident, n in loaded.labels.items() if n in PLANTED_NAMES]
    assert planted
    recovered = [by_id[ident].labelled and (parse(by_id[ident].concept, table).positives(table)
                                            == parse(PLANTED_NAMES[n], table).positives(table)).all()
                 for ident, n in planted]  # fmt: skip
    assert np.mean(recovered) >= 0.95, [(i, by_id[i].concept) for (i, _), ok in zip(planted, recovered) if not ok]
    union = [by_id[i] for i, n in planted if n == "union"]
    for entry in union:  # the union's two cases each clear the bar and it cannot tell them apart
        assert set(entry.cases) == {"left", "right"} and min(entry.cases.values()) >= 0.9
        assert abs(entry.between - 0.5) <= 0.1


def test_the_shuffled_label_control_stays_at_chance():
    labels = label_neurons(load_planted("union").module, data=STROKES)
    controls = np.array([n.control for n in labels.neurons])
    assert controls.max() < 0.65 < labels.bar  # many concepts, shuffled factors: nothing near the bar


def test_find_by_concept_ranks_the_planted_detector_first():
    model = load_planted("wedges").module
    found = find_neurons(model, concept="facing=right", data=STROKES, top=3)
    assert found.neurons[0]["neuron"] == "wedges:1" and found.neurons[0]["score"] > 0.95


def test_find_by_examples_ranks_the_planted_detector_first():
    model = load_planted("wedges").module
    images, labels, latents = toyworld.generate(400, seed=8, size=24, task="strokes")
    left = images[latents["facing"] < 0]
    found = find_neurons(model, examples=left, data=STROKES, top=3)
    assert found.neurons[0]["neuron"] == "wedges:0"
    assert [n["score"] for n in found.neurons] == sorted((n["score"] for n in found.neurons), reverse=True)


@pytest.mark.parametrize("net", __import__("nets").ALL_NETS, ids=lambda n: n.__name__)
def test_labels_and_find_run_on_every_architecture_twin_and_leave_the_model_as_it_was(net):
    """Concat, residual, depthwise, dense and squeeze-excite structure: every target layer is scored, each score
    is an AUROC, and the model is untouched (its mode and weights)."""
    from circuits.graph import build_graph
    from circuits.models.loaded import weights_hash

    model = net().train()
    before = weights_hash(model)
    data = "toyworld:objects:200:3" if net.input_shape[-1] >= 8 else "noise:8"
    labels = label_neurons(model, data=data)
    graph = build_graph(model)
    assert labels.layers == [layer.name for layer in graph.targets()]
    assert len(labels.neurons) == sum(graph.layer(name).channels for name in labels.layers)
    assert all(0.0 <= n.score <= 1.0 and 0.0 <= n.control <= 1.0 for n in labels.neurons)
    examples = toyworld.generate(30, seed=4, size=net.input_shape[-1], rgb=net.input_shape[0] == 3)[0]
    found = find_neurons(model, examples=examples, data=data, top=None)
    assert len(found.neurons) == len(labels.neurons)
    assert model.training and weights_hash(model) == before
