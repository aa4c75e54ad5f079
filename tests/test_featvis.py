"""Feature visualisation (circuits.featvis) on planted nets, whose ideal pictures are known exactly.

The references are independent of the optimiser: a planted line detector's kernel (the spec's own
weights: a linear detector on images bounded in [0, 1] is driven hardest by its kernel's sign pattern),
torch's flip and rot90 of one picture against the picture of the mirrored or turned neuron, and a run of
one neuron alone against the same neuron's picture from a batched run of its whole layer.
"""

import dataclasses

import pytest
import torch

from circuits.errors import UsageError
from circuits.featvis import Negative, Neuron, Phase, visualise
from circuits.graph import build_graph
from circuits.planted.library import LINE_ANGLES, line_name
from circuits.trace.kernels import receptive_field

STEPS = 128


def centred_cosine(a, b):
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return torch.nn.functional.cosine_similarity(a, b)


@pytest.fixture(scope="module")
def lines():
    return build_graph("planted:lines")


def crops(graph, layer, images):
    (y0, x0), (y1, x1), _ = receptive_field(graph, layer)
    return images[:, 0, y0:y1, x0:x1]


# Phase-only pictures keep a natural 1/f magnitude spectrum, which a 5-pixel line's sharp edges exceed: they
# reach 0.77-0.84 over seeds where the free spectrum reaches 0.83-0.94.
@pytest.mark.parametrize("param, bar", [(None, 0.8), (Phase(), 0.7)], ids=["fourier", "phase"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_line_detectors_picture_is_its_line(lines, param, bar, seed):
    from circuits import planted

    pictures = visualise(lines, "lines", objective=Neuron(), param=param, steps=STEPS, seed=seed)
    spec = planted.get_spec("lines")
    ideal = torch.as_tensor(planted.effective_weights(spec.layers[0]))[:, 0]
    agreement = centred_cosine(crops(lines, "lines", pictures.images), ideal)
    assert agreement.min() >= bar, agreement
    assert pictures.images.shape == (8, 1, 24, 24) and 0 <= pictures.images.min() and pictures.images.max() <= 1
    assert pictures.neurons == [f"lines:{c}" for c in range(8)]
    assert (pictures.activation > 1.0).all()  # the bias is -1.5: these images switch the detectors well on


def test_mirror_and_quarter_turn_neurons_get_mirrored_and_turned_pictures(lines):
    pictures = visualise(lines, "lines", objective=Neuron(), steps=STEPS)
    crop = crops(lines, "lines", pictures.images)
    index = {line_name(a): i for i, a in enumerate(LINE_ANGLES)}
    turned = [(index[line_name(a)], index[line_name((a + 90) % 180)]) for a in LINE_ANGLES]
    mirrored = [(index[line_name(a)], index[line_name((180 - a) % 180)]) for a in LINE_ANGLES]
    for pairs, move in [(turned, lambda x: torch.rot90(x, 1, dims=[-2, -1])), (mirrored, lambda x: x.flip(-1))]:
        moved = torch.stack([move(crop[a]) for a, _ in pairs])
        assert centred_cosine(moved, torch.stack([crop[b] for _, b in pairs])).min() >= 0.7

    wedges = build_graph("planted:wedges")
    left, right = crops(wedges, "wedges", visualise(wedges, "wedges", objective=Neuron(), steps=STEPS).images)
    assert float(centred_cosine(left.flip(-1)[None], right[None])) >= 0.7


def test_a_neurons_picture_does_not_depend_on_the_batch_it_shares(lines):
    whole = visualise(lines, "lines", steps=24, seed=3)
    alone = visualise(lines, "lines", [5], steps=24, seed=3)
    split = visualise(lines, "lines", steps=24, seed=3, batch_size=3)
    assert torch.allclose(alone.images[0], whole.images[5], atol=1e-5)
    assert torch.allclose(split.images, whole.images, atol=1e-5)
    again = visualise(lines, "lines", steps=24, seed=3)
    assert torch.equal(again.images, whole.images)  # deterministic on the CPU
    assert not torch.equal(visualise(lines, "lines", steps=24, seed=4).images, whole.images)


def test_the_negative_picture_suppresses_the_neuron(lines):
    positive = visualise(lines, "lines", [0], objective=Neuron(), steps=STEPS)
    negative = visualise(lines, "lines", [0], objective=Negative(Neuron()), steps=STEPS)
    pre = {name: lines.run(p.images, ["lines"], preact=True)["lines"][0, 0, 12, 12]
           for name, p in [("positive", positive), ("negative", negative)]}  # fmt: skip
    grey = lines.run(torch.full((1, 1, 24, 24), 0.5), ["lines"], preact=True)["lines"][0, 0, 12, 12]
    assert pre["negative"] < grey - 1.0 < pre["positive"] - 2.0
    assert float(negative.activation[0]) == 0.0  # the activation reported is the neuron's own: switched off


def test_bad_channels_and_steps_are_refused_in_one_line(lines):
    with pytest.raises(UsageError, match="channels 0..7; 8 is not"):
        visualise(lines, "lines", [8])
    with pytest.raises(UsageError, match="at least 1"):
        visualise(lines, "lines", steps=0)


def test_the_receptive_field_is_the_sum_of_the_kernels_and_cut_at_the_border():
    wedges = build_graph("planted:wedges")  # 5x5 lines, then 5x5 wedges: a 9x9 field around the centre
    assert receptive_field(wedges, "lines") == ((10, 10), (15, 15), False)
    assert receptive_field(wedges, "wedges") == ((8, 8), (17, 17), False)
    assert receptive_field(wedges, "wedges", (0, 23)) == ((0, 19), (5, 24), True)


def test_dataset_examples_are_the_top_and_bottom_images_with_the_crop_each_neuron_sees():
    """Against the planted layer's pre-activation computed by hand: conv2d(image, spec kernels) + bias, padding 2."""
    from circuits import planted
    from circuits.featvis.examples import dataset_examples

    spec = planted.get_spec("lines")
    kernels = torch.as_tensor(planted.effective_weights(spec.layers[0])).float()
    bias = torch.as_tensor(planted.effective_bias(spec.layers[0])).float()
    images = torch.rand(40, 1, 24, 24, generator=torch.Generator().manual_seed(5))
    acts = torch.nn.functional.conv2d(images, kernels, bias, padding=2)
    best, where = acts.flatten(2).max(2)  # [N, C]
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for bottom in (False, True):
        found = dataset_examples("planted:lines", "lines", images, k=4, bottom=bottom, batch_size=7)
        order = (-best if not bottom else best).T.sort(dim=1, stable=True).indices[:, :4]
        assert torch.equal(found.index, order)
        assert torch.allclose(found.value, best.T.gather(1, order), atol=1e-5)
        for c in range(8):
            for j in range(4):
                n = int(order[c, j])
                y, x = divmod(int(where[n, c]), 24)
                assert tuple(found.position[c, j].tolist()) == (y, x)
                assert torch.equal(found.crops[c, j], padded[n, :, y : y + 5, x : x + 5])  # rows y-2..y+2


def test_crops_follow_the_receptive_field_of_a_strided_layer():
    """Each crop is the image inside its position's own receptive field (measured there, not by the stride)."""
    from circuits.featvis.examples import dataset_examples

    graph = build_graph("zoo:plain-cnn")
    layer = "conv2"
    assert graph.input_shape[-1] // graph.layer(layer).shape[-1] > 1  # the map is smaller: strided or pooled
    images = torch.rand(20, *graph.input_shape, generator=torch.Generator().manual_seed(2))
    found = dataset_examples(graph, layer, images, k=5)
    checked = 0
    for c in range(len(found.channels)):
        for j in range(5):
            (y0, x0), (y1, x1), clipped = receptive_field(graph, layer, tuple(found.position[c, j].tolist()))
            if clipped:
                continue
            assert found.crops.shape[-2:] == (y1 - y0, x1 - x0)
            assert torch.equal(found.crops[c, j], images[found.index[c, j], :, y0:y1, x0:x1])
            checked += 1
    assert checked >= 10


# ---------------------------------------------------------------------------------------------------------
# Circuit agreement: the planted fooling circuit (docs/planted.md) is the reference. Its two readouts are the
# same function on natural images (checked below on the data, not assumed), so only the path a picture takes
# can tell them apart.


@pytest.fixture(scope="module")
def fooling_readout():
    from circuits.featvis.agreement import circuit_agreement

    graph = build_graph("planted:fooling")
    pictures = visualise(graph, "readout", objective=Neuron(), steps=STEPS)
    return graph, pictures, circuit_agreement(graph, pictures, "toyworld:512")


def test_the_fooling_circuits_readouts_are_one_function_on_natural_images(fooling_readout):
    from circuits.data.spec import load_data

    graph, _, _ = fooling_readout
    for task in ("objects", "primitives", "curves"):
        acts = graph.run(load_data(f"toyworld:{task}:512", graph.input_shape), ["readout"])["readout"]
        assert torch.equal(acts[:, 0], acts[:, 1]) and acts[:, 0].max() > 1.0


def test_a_fooled_neurons_picture_gets_low_agreement_and_the_honest_twins_high(fooling_readout):
    graph, pictures, found = fooling_readout
    honest, fooled = found.to_dicts()
    assert honest["neuron"] == "readout:0" and honest["agreement"] >= 0.9
    assert fooled["agreement"] <= 0.2 and fooled["relative_activation"] >= 10  # far above any natural image
    assert 0.5 <= honest["relative_activation"] <= 5
    assert found.inputs == ["features:0", "features:1", "features:2"]
    assert float(found.picture[1, 2]) > 10 * float(found.picture[1, :2].abs().max())  # through the checkerboard
    assert float(found.natural[:, 2].abs().max()) == 0.0  # which no natural image switches on


def test_attributions_add_up_to_the_pre_activation():
    """Gradient x input over the direct inputs is exact on the linear path: the parts plus the bias are the
    pre-activation the model computes (through max pooling on the zoo CNN, and a concat's parts)."""
    from circuits.featvis.agreement import attributions

    images = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    graph = build_graph("zoo:plain-cnn")
    channels = [0, 3, 5, 7, 9, 11]
    vectors, read, names = attributions(graph, "conv2", images, channels)
    pre = graph.run(images, ["conv2"], preact=True)["conv2"][torch.arange(6), torch.tensor(channels)]
    assert torch.allclose(read, pre.flatten(1).max(1).values, atol=1e-5)
    bias = graph.modules["conv2"].bias.detach()[channels]
    assert torch.allclose(vectors.sum(1) + bias, read, atol=1e-4)
    assert names == [f"conv1:{i}" for i in range(graph.layer("conv1").channels)]

    inception = build_graph("planted:inception-union")
    small = torch.rand(4, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    vectors, read, names = attributions(inception, "union", small, [0, 1, 2, 3])
    assert names == ["mixed.left:0", "mixed.right:0", "mixed.decoys:0", "mixed.decoys:1"]
    from circuits import planted

    bias = torch.tensor(planted.effective_bias(planted.get_spec("inception-union").layer("union"))).float()
    assert torch.allclose(vectors.sum(1) + bias, read, atol=1e-4)


def test_first_layer_agreement_is_over_the_pixels_of_the_field(lines):
    from circuits.featvis.agreement import circuit_agreement

    pictures = visualise(lines, "lines", objective=Neuron(), steps=STEPS)
    found = circuit_agreement(lines, pictures, "toyworld:512")
    assert len(found.inputs) == 25 and found.inputs[0] == "pixel:0,0,0"
    assert found.agreement.min() >= 0.8, found.agreement
    # a line detector's picture of the wrong orientation drives it through other pixels
    turned = dataclasses.replace(pictures, images=pictures.images.roll(4, 0))  # each gets the 90°-off line's
    wrong = circuit_agreement(lines, turned, "toyworld:512").agreement  # measured 0.25-0.67, against 0.84-0.99
    assert wrong.max() < 0.75 and (wrong < found.agreement - 0.15).all(), (wrong, found.agreement)


def test_agreement_is_undefined_where_no_natural_image_reaches_the_neuron():
    from circuits.featvis.agreement import circuit_agreement

    pictures = visualise("planted:union", "union", [0], objective=Neuron(), steps=16)  # wedges: off on the toy world
    found = circuit_agreement("planted:union", pictures, "toyworld:128")
    assert found.to_dicts() == [{"neuron": "union:0", "agreement": None, "relative_activation": None}]


def test_diversity_pushes_a_neurons_copies_apart_and_keeps_them_driving_it():
    """Without it, copies from different starts converge to one picture (cosine ~1); with weight 0.1 they
    differ within the receptive field and still reach most of the activation (measured 0.93-1.0)."""
    graph = build_graph("zoo:plain-cnn")
    (y0, x0), (y1, x1), _ = receptive_field(graph, "conv2")
    found = {}
    for weight in (0.0, 0.1):
        pictures = visualise(graph, "conv2", [1, 3, 5], objective=Neuron(), copies=3, steps=STEPS, diversity=weight)
        crops = pictures.images[:, :, y0:y1, x0:x1].flatten(1)
        crops = torch.nn.functional.normalize(crops - crops.mean(1, keepdim=True), dim=1).view(3, 3, -1)
        similarity = ((crops @ crops.transpose(1, 2)).sum((1, 2)) - 3) / 6  # mean over a neuron's copy pairs
        found[weight] = similarity, pictures.activation.view(3, 3)
        assert pictures.settings["diversity"] == weight
    assert found[0.0][0].min() >= 0.95 and found[0.1][0].mean() <= 0.7, found
    assert (found[0.1][1] >= 0.8 * found[0.0][1]).all(), found
