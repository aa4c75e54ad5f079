"""Feature visualisation (circuits.featvis) on planted nets, whose ideal pictures are known exactly.

The references are independent of the optimiser: a planted line detector's kernel (the spec's own
weights: a linear detector on images bounded in [0, 1] is driven hardest by its kernel's sign pattern),
torch's flip and rot90 of one picture against the picture of the mirrored or turned neuron, and a run of
one neuron alone against the same neuron's picture from a batched run of its whole layer.
"""

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
