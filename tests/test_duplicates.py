"""Copied neurons found without a reference: a planted graft, and none in any trained zoo network.

The oracles: the plant's key (which neuron was grafted from which), copies made by hand in small
random-weight twins of real structures, and the zoo's own trained weights (which were never copied).
"""

import copy

import pytest
import torch
from nets import DenseNetLike, MobileNetV2Twin
from torch import nn

from circuits import load
from circuits.compare.audit import plant, score
from circuits.compare.blind import find_blind
from circuits.compare.duplicates import DUPLICATE, duplicates
from circuits.compare.response import pixel_layers, suspect_layers
from circuits.graph import build_graph
from circuits.models import LoadedModel
from circuits.zoo.recipes import RECIPES, SEEDS

TINY = {"coarse": {"images": 4, "steps": 2}, "fine": {"images": 8, "steps": 2}}  # the trigger part is not under test


@pytest.mark.parametrize("family", sorted(RECIPES))
def test_no_trained_zoo_network_has_a_copied_neuron(family):
    for seed in SEEDS:
        found = duplicates(load(f"zoo:{family}-s{seed}"))
        assert found == [], (family, seed, found[:2])
        closest = duplicates(load(f"zoo:{family}-s{seed}"), threshold=-1.0)
        assert closest[0]["cosine"] < 0.9  # the margin circuits.compare.duplicates states (0.88 at most)


def test_a_planted_graft_is_named_by_the_blind_audit():
    module, key = plant("zoo:plain-cnn-s0", "graft", seed=0)
    tampered = LoadedModel(module, spec="tampered", input_shape=(1, 32, 32))
    found = duplicates(tampered)
    assert {d["neuron"] for d in found} == {key["neurons"][0], key["donor"]}
    assert all(d["cosine"] >= 0.999 for d in found)  # a gentle fine-tune leaves the copy almost exact
    report = find_blind(tampered, "toyworld:256:12345", **TINY)
    assert {s["neuron"] for s in report["suspects"][:2]} == {key["neurons"][0], key["donor"]}
    assert "a copy of" in report["suspects"][0]["evidence"][0]
    assert report["duplicates"][0]["twin"] in (key["neurons"][0], key["donor"])
    assert score(report, key)["hit@3"] is True
    names = [s["neuron"] for s in report["suspects"]]
    assert len(names) == len(set(names))  # a copied neuron is not listed twice


class _Block(nn.Module):
    """A residual block as ResNet writes it: the copied conv feeds BatchNorm, the add, then the ReLU."""

    def __init__(self, channels):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class _Twin(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)  # reads the image: pixel filters are alike by nature
        self.block = _Block(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # one input channel each: not ordinary
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.depthwise(self.block(torch.relu(self.stem(x))))
        return self.head(torch.relu(x).mean((2, 3)))


def test_a_hand_made_copy_in_a_residual_block_is_named_by_its_neuron_layer():
    torch.manual_seed(0)
    model = _Twin().eval()
    with torch.no_grad():
        model.block.conv2.weight[5] = model.block.conv2.weight[2] + 0.01 * torch.randn_like(model.block.conv2.weight[2])
        model.block.conv2.bias[5] = model.block.conv2.bias[2]
        model.stem.weight[1] = model.stem.weight[0]  # an exact copy, but in the first hidden layer
        model.depthwise.weight[4] = model.depthwise.weight[3]
    before = copy.deepcopy(model.state_dict())
    found = duplicates(LoadedModel(model, spec="twin", input_shape=(1, 16, 16)))
    layers = {d["module"] for d in found}
    assert layers == {"block.conv2"}, found
    assert {(d["neuron"], d["twin"]) for d in found} == {("block:5", "block:2"), ("block:2", "block:5")}
    assert all(DUPLICATE <= d["cosine"] < 1.0 for d in found)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # read, never changed


def test_a_densenet_layer_that_reads_the_image_beside_features_is_searched_and_its_pixel_layer_is_not():
    # DenseNet concatenates the image's own features into every later layer: `dense2.conv` computes the
    # `norm` layer, which reads the image beside `dense1`'s features, so it is not a pixel filter.
    model = DenseNetLike().eval()
    with torch.no_grad():
        model.dense2.conv.weight[2] = model.dense2.conv.weight[0] + 0.01 * torch.randn_like(model.dense2.conv.weight[0])
        model.conv0.weight[3] = model.conv0.weight[1]  # an exact copy among pixel filters: not evidence
    loaded = LoadedModel(model, spec="twin", input_shape=model.input_shape)
    graph = build_graph(loaded)
    assert pixel_layers(graph) == ["dense1.relu"]
    assert suspect_layers(graph) == ["dense2.relu", "norm"]
    found = duplicates(loaded)
    assert {(d["module"], d["neuron"], d["twin"]) for d in found} == {("dense2.conv", "norm:9", "norm:7"),
                                                                     ("dense2.conv", "norm:7", "norm:9")}, found


def test_a_copy_in_a_linear_bottleneck_is_not_named_as_a_neuron_of_the_next_layer():
    # MobileNetV2's projection conv has no nonlinearity after it: its channels reach a neuron layer only
    # through the next block's expand conv, whose channels they are not. The expand conv's copy is a neuron.
    model = MobileNetV2Twin(0).eval()
    with torch.no_grad():
        for conv in (model.features[3].conv[6], model.features[4].conv[0]):  # project, then the next expand
            conv.weight[3] = conv.weight[1] + 0.01 * torch.randn_like(conv.weight[1])  # no bias: a BatchNorm follows
    found = duplicates(LoadedModel(model, spec="twin", input_shape=model.input_shape))
    assert {(d["module"], d["neuron"], d["twin"]) for d in found} == {
        ("features.4.conv.0", "features.4.conv.2:3", "features.4.conv.2:1"),
        ("features.4.conv.0", "features.4.conv.2:1", "features.4.conv.2:3")}, found
