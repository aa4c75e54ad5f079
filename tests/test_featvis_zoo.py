"""Feature visualisation on the zoo's plain CNN (issue #20): the pictures of a mirror pair are mirror images.

The pairs come from the motif detector (`circuits.motifs.equivariance`, reflection), which reads the expanded
weights only, so it is independent of the picture optimiser. conv1 (3x3 grey kernels) is never assessed from
weights (docs/motifs.md, Limits); conv2 of plain-cnn-s0 holds three pairs: conv2:3/31 (score 0.901),
conv2:15/18 (0.884) and conv2:14/27 (0.848). The reference for "mirror image" is torch's flip of one
picture's receptive-field crop against the partner's crop (centred cosine), as in tests/test_featvis.py.

Measured (seed 0, 128 steps, Neuron() at the centre, each picture from its own start; seeds 1 and 2 in
brackets):

- pairs: 3/31 0.765 (0.730, 0.742), 14/27 0.628 (0.645, 0.659), 15/18 0.603 (0.700, 0.712);
- controls, a pair member against each of the 30 other neurons of conv2 (not itself, not its partner):
  mean 0.005 (0.004, 0.007), 95th percentile 0.472 (0.497, 0.467). The maximum is 0.75-0.77: conv2:3
  flipped against conv2:12, and conv2:31 against conv2:26, a near-copy the detector also relates (0.83);
- at 64 steps the pairs give 0.756, 0.613, 0.699; at 256 steps 0.725, 0.639, 0.699.

So only the strongest pair reaches 0.7. The others come close, and they are far above chance.
`test_every_mirror_pair_reaches_the_issue_bar` records that gap as a strict xfail. Two causes were measured:

- **The weights are only nearly mirrored.** The partners' expanded kernels agree after a flip at cos 0.83-0.90
  (8x8 crops), and their activations on toyworld images at 0.92-0.95. But a picture is pushed towards the sign
  pattern of its kernel (the best input in [0, 1] for a nearly linear neuron). Small weights near zero take
  either sign, so the sign patterns agree after a flip at only 0.59-0.83. The optimum is also flat: each
  partner's flipped picture drives the other neuron to 80-99% of what its own picture does.
- **The optimiser is not translation-equivariant.** On a 16-wide map the mirror of the centre (8, 8) is
  (8, 7). One neuron's pictures at (8, 8) and at (8, 7) agree at only median 0.89 (min 0.65). The likely
  cause is that Adam steps each Fourier coefficient's real and imaginary parts apart, while a shift rotates
  their phase. So even an exactly mirrored copy of the network gets pictures that agree at only median 0.87
  (min 0.71) under this protocol; for the pair members that is 0.79-0.98.

The start does not matter: a pair member's copies from different starts agree at 0.976-1.0. So mirrored starts
alone change nothing. Mirrored starts at the mirrored position do remove the optimiser's share:
`test_the_picture_optimiser_is_mirror_equivariant` gets 0.9997 there on an exact mirror. With that protocol
the zoo pairs reach 0.61-0.77 over seeds 0-2, and 14/27 stays below 0.7: what is left is in the weights.

A steeper spectrum only seems to help. With Fourier(decay=2), the pairs give 0.79, 0.81 and 0.90, but the
controls' 95th percentile goes from 0.47 to 0.66. Smooth pictures look alike, so the weakest pair's margin
over the controls stays at 0.13, and the pictures drive their neurons 8% less. decay=1.5 gives the pairs
0.68-0.87 and the controls 0.54.
"""

import copy
from dataclasses import dataclass

import pytest
import torch

from circuits import zoo
from circuits.featvis import Fourier, Neuron, visualise
from circuits.graph import build_graph
from circuits.motifs import equivariance
from circuits.trace.kernels import receptive_field

STEPS = 128
SEED = 0


def centred_cosine(a, b):
    a, b = (x.flatten(1) - x.flatten(1).mean(1, keepdim=True) for x in (a, b))
    return torch.nn.functional.cosine_similarity(a, b)


def crop(graph, layer, images, position=None):
    (y0, x0), (y1, x1), clipped = receptive_field(graph, layer, position)
    assert not clipped
    return images[:, :, y0:y1, x0:x1]


@pytest.fixture(scope="module")
def graph():
    return build_graph("zoo:plain-cnn")


@pytest.fixture(scope="module")
def mirror_pairs(graph):
    """``layer -> [(channel a, channel b, detector score)]`` from the weights-only reflection detector."""
    found = {}
    for layer in ("conv1", "conv2"):
        for motif in equivariance(graph, layer, transforms=["reflect"]):
            a, b = (int(m.split(":")[1]) for m in motif.members)
            found.setdefault(layer, []).append((a, b, motif.score))
    return found


@pytest.fixture(scope="module")
def pictures(graph, mirror_pairs):
    """Per layer with pairs, the flip cosine of every picture against every other (``M[i, j]``: flip i, j).

    The whole layer is made, so that every neuron can serve as a control (a neuron's picture does not depend
    on its batch, tests/test_featvis.py).
    """
    out = {}
    for layer in mirror_pairs:
        crops = crop(graph, layer, visualise(graph, layer, objective=Neuron(), steps=STEPS, seed=SEED).images)
        n = len(crops)
        flipped = crops.flip(-1)[:, None].expand(n, n, *crops.shape[1:]).reshape(n * n, -1)
        plain = crops[None].expand(n, n, *crops.shape[1:]).reshape(n * n, -1)
        out[layer] = centred_cosine(flipped, plain).reshape(n, n)
    return out


def test_mirror_pair_pictures_are_mirror_images_and_non_pairs_are_not(mirror_pairs, pictures):
    pairs = [(layer, a, b, score) for layer, found in mirror_pairs.items() for a, b, score in found]
    assert len(pairs) >= 2, mirror_pairs  # three in conv2 as shipped: the test must have something to check
    pair_cos, control_cos = [], []
    for layer, a, b, _ in pairs:
        m = pictures[layer]
        pair_cos.append(float(m[a, b]))
        for i, partner in ((a, b), (b, a)):
            others = [j for j in range(len(m)) if j not in (i, partner)]
            control_cos.append(m[i, others])
    controls = torch.cat(control_cos)
    strongest = max(range(len(pairs)), key=lambda k: pairs[k][3])
    assert pair_cos[strongest] >= 0.7, (pairs[strongest], pair_cos)  # 3/31: 0.765 (0.730-0.742 on seeds 1-2)
    assert min(pair_cos) >= 0.55, (pairs, pair_cos)  # 0.603 (15/18)
    # Every pair beats 95% of the controls (0.472); the pairs' mean beats the controls' (0.005) by >= 0.5.
    assert min(pair_cos) > float(controls.quantile(0.95)), (pair_cos, float(controls.quantile(0.95)))
    assert sum(pair_cos) / len(pair_cos) - float(controls.mean()) >= 0.5, (pair_cos, float(controls.mean()))


@pytest.mark.xfail(strict=True, reason="issue #20's bar (>= 0.7 for every mirror pair) is not met on "
                   "the zoo plain CNN: 14/27 reaches 0.63, 15/18 0.60 (the module docstring says why)")
def test_every_mirror_pair_reaches_the_issue_bar(mirror_pairs, pictures):
    found = [(layer, a, b) for layer, pairs in mirror_pairs.items() for a, b, _ in pairs]
    cos = {pair: float(pictures[pair[0]][pair[1:]]) for pair in found}
    assert min(cos.values()) >= 0.7, cos


@dataclass(frozen=True)
class SharedStart:
    """The default Fourier picture, but every channel starts from one draw; ``flip`` shows it mirrored, so a
    neuron optimised with ``flip=True`` starts from the mirror image of one optimised without."""

    flip: bool = False
    start_seed: int = 0
    name = "shared-start"

    def init(self, shape, generator):
        return Fourier().init(shape, torch.Generator().manual_seed(self.start_seed))

    def image(self, params, shape):
        image = Fourier().image(params, shape)
        return image.flip(-1) if self.flip else image

    def to_dict(self):
        return {"name": self.name, "flip": self.flip}


def test_the_picture_optimiser_is_mirror_equivariant(graph):
    """On an exact mirror of the zoo CNN, each neuron's picture is the flip of its original's. Both start
    from mirrored starts at the mirrored position, and the random transforms are left out: both pictures
    draw the same scales and angles, and those are not mirrored.

    The mirror flips the conv kernels. With symmetric padding and 2x2 pooling of even maps, it computes
    flip(net(flip x)) to float rounding, and 64 steps of gradient ascent can grow that rounding: measured,
    the minimum over conv2's 32 neurons is 0.9997 on one CPU and 0.9857 on another (AVX2; every other neuron
    above 0.9997 there), the median 1.0000 on both. With the default transforms, the minimum is 0.80 and the
    median 0.97. For an 8-pixel field these are only scale and rotation: the shifts round to 0 pixels. With
    each picture's own start at the centre, the minimum is 0.71 and the median 0.87.
    """
    module = copy.deepcopy(zoo.load("plain-cnn").module)
    with torch.no_grad():
        for conv in (m for m in module.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.copy_(conv.weight.flip(-1))
    mirrored = build_graph(module)
    layer = "conv2"
    x = torch.rand(4, *graph.input_shape, generator=torch.Generator().manual_seed(1))
    ours, theirs = graph.run(x.flip(-1), [layer])[layer].flip(-1), mirrored.run(x, [layer])[layer]
    assert torch.allclose(ours, theirs, atol=1e-4)  # the mirror is exact
    h, w = graph.layer(layer).shape[1:]
    centre, mirror = (h // 2, w // 2), (h // 2, w - 1 - w // 2)
    options = dict(steps=64, seed=SEED, transforms=())
    original = visualise(graph, layer, objective=Neuron(mirror), param=SharedStart(), **options)
    copied = visualise(mirrored, layer, objective=Neuron(centre), param=SharedStart(flip=True), **options)
    flipped = crop(graph, layer, original.images, mirror).flip(-1)
    agreement = centred_cosine(flipped, crop(graph, layer, copied.images))
    assert agreement.median() >= 0.999 and agreement.min() >= 0.95, agreement
