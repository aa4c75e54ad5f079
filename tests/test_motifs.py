"""Motif detection on planted networks: the spec's ``motifs`` list is the oracle (recall 1.0, exact members
and transforms), and the shuffled-weights control must report nothing."""

import numpy as np
import pytest
import torch
from torch import nn

from circuits import planted
from circuits.models import load
from circuits.motifs import Context, find, inhibitions, shuffle_weights, unions
from circuits.motifs.polysemy import polysemantic
from circuits.motifs.transforms import Reflect, Rotate, Scale, compose, disc, power
from circuits.planted import kernels as K

# -- transforms, against torch's own ops and hand-computed coordinates ----------------------------------


def test_quarter_turn_and_reflection_are_torch_rot90_and_flip():
    x = torch.randn(2, 3, 7, 7)
    assert torch.equal(Rotate(90)(x), torch.rot90(x, 1, dims=[-2, -1]))
    assert torch.equal(Rotate(-90)(x), torch.rot90(x, -1, dims=[-2, -1]))
    assert torch.equal(Reflect()(x), torch.flip(x, dims=[-1]))
    assert torch.equal(compose(Reflect(), Rotate(90))(x), torch.rot90(torch.flip(x, dims=[-1]), 1, dims=[-2, -1]))
    assert torch.equal(power(Rotate(90), 4)(x), x)


def test_interpolated_rotation_agrees_with_the_exact_one_and_turns_counter_clockwise():
    from circuits.motifs.transforms import _resample, _rotation

    x = torch.randn(4, 9, 9)
    torch.testing.assert_close(_resample(x, _rotation(90)), torch.rot90(x, 1, dims=[-2, -1]), atol=1e-5, rtol=0)
    # a bright pixel at (row 4, col 8) of a 9x9 image (x = +4 right of the centre, y = 0) turned by 45°
    # counter-clockwise lands at x = y = 4/sqrt(2) ~ 2.83: row 4 - 2.83, col 4 + 2.83
    image = torch.zeros(9, 9)
    image[4, 8] = 1.0
    turned = Rotate(45)(image)
    rows, cols = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    mass = turned.sum()
    assert float((turned * rows).sum() / mass) == pytest.approx(4 - 4 / 2**0.5, abs=0.2)
    assert float((turned * cols).sum() / mass) == pytest.approx(4 + 4 / 2**0.5, abs=0.2)
    assert not Rotate(45).exact and Rotate(180).exact and Rotate(90).inverse() == Rotate(-90)
    assert Scale(2.0).inverse() == Scale(0.5)


def test_planted_line_kernels_rotate_onto_each_other_inside_the_disc():
    kernels = torch.tensor(np.stack([K.line(5, 22.5 * i) for i in range(8)])).float()
    moved = Rotate(22.5)(kernels) * disc(5, 5)
    target = kernels * disc(5, 5)
    cos = torch.nn.functional.cosine_similarity(moved.flatten(1)[:, None], target.flatten(1)[None], dim=-1)
    assert torch.equal(cos.argmax(1), (torch.arange(8) + 1) % 8)  # line θ turned by 22.5° is line θ + 22.5°


# -- the planted oracle -----------------------------------------------------------------------------------


def reported_maps(motifs, transform):
    """{neuron: its image} from the equivariance families reported for ``transform``."""
    out = {}
    for m in motifs:
        if m.kind == "equivariance" and m.transform == transform:
            members = list(m.members)
            steps = zip(members, members[1:] + members[:1]) if m.evidence["closed"] else zip(members, members[1:])
            out.update(dict(steps))
    return out


def spec_maps(spec, kinds, key, with_data=False):
    """The oracle map {neuron: image} of the spec's motifs of these kinds, fixed points left out (motifs
    only activations can show, ``"evidence": "activations"``, only ``with_data``)."""
    out = {}
    for motif in spec.motifs:
        if motif["kind"] in kinds and (with_data or motif.get("evidence") != "activations"):
            out.update({a: b for a, b in motif[key].items() if a != b})
    return out


@pytest.fixture(scope="module")
def wedge_images():
    """'<', '>', 'X' (both wedges at one vertex) and '/' drawn at seeded positions: the cases of the union."""
    g = torch.Generator().manual_seed(0)
    images = []
    for kind in ("<", ">", "x", "/"):
        for _ in range(12):
            r, c = (int(v) for v in torch.randint(8, 16, (2,), generator=g))
            arm = int(torch.randint(4, 7, (1,), generator=g))
            image = torch.zeros(1, 24, 24)
            points = []
            if kind in "<x":
                points += [(r - t, c + t) for t in range(arm)] + [(r + t, c + t) for t in range(arm)]
            if kind in ">x":
                points += [(r - t, c - t) for t in range(arm)] + [(r + t, c - t) for t in range(arm)]
            if kind == "/":
                points += [(r - t, c + t) for t in range(-arm, arm)]
            for y, x in points:
                if 0 <= y < 24 and 0 <= x < 24:
                    image[0, y, x] = 1.0
            images.append(image)
    return torch.stack(images)


@pytest.mark.parametrize("name", planted.names())
def test_every_planted_motif_is_found_with_its_members_and_transform(name):
    spec = planted.get_spec(name)
    motifs = find(f"planted:{name}")
    by_kind = {}
    for m in motifs:
        by_kind.setdefault(m.kind, []).append(m)

    assert reported_maps(motifs, "rotate90") == spec_maps(spec, ("rotation",), "rot90")
    assert reported_maps(motifs, "reflect") == spec_maps(spec, ("reflection", "reflection-pair"), "flip")
    for motif in (m for m in spec.motifs if m.get("evidence") != "activations"):
        if motif["kind"] in ("union", "and"):  # weights alone cannot tell OR from AND: both are unions
            hits = [m for m in by_kind.get("union", []) if m.target == motif["neuron"]]
            assert [(m.transform, set(m.members)) for m in hits] == [(motif.get("transform", "reflect"), set(motif["of"]))]
        if motif["kind"] == "opponent":
            hits = [m for m in by_kind.get("inhibition", []) if m.target == motif["neuron"]]
            assert [(m.transform, m.members) for m in hits] == [("reflect", (motif["excite"], motif["inhibit"]))]
        if motif["kind"] == "decoy":
            involved = {n for m in motifs for n in (*m.members, m.target)}
            assert not involved & set(motif["neurons"])
    # nothing but the planted unions and opponents, and every reported score is in [0, 1]
    planted_targets = {m["neuron"] for m in spec.motifs
                       if m["kind"] in ("union", "and", "opponent") and m.get("evidence") != "activations"}
    assert {m.target for m in motifs if m.kind in ("union", "inhibition")} == planted_targets
    assert all(0.0 <= m.score <= 1.0 for m in motifs)


@pytest.mark.parametrize("name,layer,step", [("lines", "lines", 22.5), ("curves", "curves", 45.0)])
def test_rotation_family_at_the_planted_angle_is_reported_in_rotation_order(name, layer, step):
    motifs = find(f"planted:{name}", kind="equivariance")
    families = [m for m in motifs if m.transform == "rotate"]
    assert [m.members for m in families] == [tuple(f"{layer}:{i}" for i in range(8))]
    assert families[0].evidence["angle"] == step and families[0].evidence["closed"]
    assert families[0].score > 0.95


def test_activation_evidence_agrees_on_the_line_family():
    motifs = find("planted:lines", kind="equivariance", data="toyworld:64")
    for m in motifs:
        assert m.evidence["activations"] is not None
        assert m.evidence["activations"] > (0.99 if m.transform in ("reflect", "rotate90") else 0.9)


@pytest.mark.parametrize("name", ["union", "inception-union", "curves", "lines"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_weights_control_reports_nothing(name, seed):
    control = shuffle_weights(load(f"planted:{name}"), seed=seed)
    for kind in ("equivariance", "union", "inhibition"):
        assert find(control, kind=kind) == []


def test_shuffled_control_with_probe_data_reports_nothing():
    control = shuffle_weights(load("planted:union"), seed=0)
    assert find(control, kind="all", data="toyworld:64", n_random=20) == []


def test_control_keeps_each_layers_weights_and_destroys_their_arrangement():
    loaded = load("planted:union")
    control = shuffle_weights(loaded, seed=3)
    for (name, a), (_, b) in zip(loaded.module.state_dict().items(), control.module.state_dict().items()):
        if name.endswith("weight"):
            assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
            assert not torch.equal(a, b)


# -- unions and opponents --------------------------------------------------------------------------------


def test_union_neuron_has_mirror_pair_inputs():
    (union,) = [m for m in unions("planted:union") if m.target == "union:0"]
    spec = planted.get_spec("union")
    left, right = (int(n.split(":")[1]) for n in union.members)
    # independently of the detector: the union reads both with equal positive weight ...
    readout = planted.effective_weights(spec.layer("union"))[0, :, 0, 0]
    assert readout[left] == readout[right] > 0
    # ... and wedge_right's kernels over the lines are wedge_left's, mirrored, read from the mirrored lines
    wedges = planted.effective_weights(spec.layer("wedges"))
    mirror_line = [(8 - i) % 8 for i in range(8)]  # a flip maps line θ to line 180° - θ
    assert np.allclose(wedges[right][mirror_line], wedges[left][:, :, ::-1])
    assert union.evidence["invariance"]["weights"] == pytest.approx(1.0, abs=1e-5)
    assert union.evidence["balance"] == pytest.approx(1.0)


def test_opponent_is_detected_as_inhibition():
    (opponent,) = inhibitions("planted:union")
    assert opponent.target == "union:1" and opponent.members == ("wedges:0", "wedges:1")
    assert opponent.transform == "reflect"
    assert opponent.evidence["strengths"] == {"wedges:0": pytest.approx(1.0), "wedges:1": pytest.approx(-1.0)}
    assert opponent.evidence["anti_invariance"]["weights"] == pytest.approx(-1.0, abs=1e-5)


def test_probe_data_tells_the_union_from_the_and(wedge_images):
    found = {m.target: m for m in unions("planted:union", data=wedge_images)}
    assert found["union:0"].evidence["logic"] == "or"
    assert found["union:2"].evidence["logic"] == "and"
    # the logic agrees with a direct look at the planted model on the drawn cases
    model = planted.compile("union")
    with torch.no_grad():
        out = model(wedge_images)
    lone = out[:24]  # '<' and '>' alone
    assert lone[:, 2].max() == 0 and (lone[:, 0].flatten(1).amax(1) > 0).all()
    (opponent,) = inhibitions("planted:union", data=wedge_images)
    assert opponent.evidence["activations"]["alone"][0] > opponent.evidence["activations"]["alone"][1]


# -- polysemantic ----------------------------------------------------------------------------------------


class TwoMinds(nn.Module):
    """Neuron 0 reads a vertical line *and* a blob (balanced so both fire it alike); neuron 1 the line only."""

    input_shape = (1, 24, 24)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 7, padding=3)
        line, blob = torch.tensor(K.line(7, 90)).float(), torch.tensor(K.blob(7, 1.2)).float()
        bar = torch.zeros(7, 7)
        bar[:, 3] = 1
        rows, cols = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
        disk = (((rows - 3) ** 2 + (cols - 3) ** 2) <= 6).float()
        a = float((line * bar).sum() - (line * disk).sum()) / float((blob * disk).sum() - (blob * bar).sum())
        with torch.no_grad():
            self.conv.weight[0, 0] = line + a * blob
            self.conv.weight[1, 0] = line
            self.conv.bias.fill_(-0.5)

    def forward(self, x):
        return torch.relu(self.conv(x))


def shapes(n=120, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = np.zeros((n, 1, 24, 24), np.float32), rng.integers(0, 3, n)
    rows, cols = np.mgrid[0:24, 0:24]
    for i, label in enumerate(labels):
        cy, cx = rng.integers(6, 18, 2)
        if label == 0:
            images[i, 0, cy - 5 : cy + 6, cx] = 1
        elif label == 1:
            images[i, 0] = (rows - cy) ** 2 + (cols - cx) ** 2 <= 6
        else:
            images[i, 0, cy, cx - 5 : cx + 6] = 1
        images[i] *= rng.uniform(0.6, 1.0)
    return torch.from_numpy(images), {"label": labels, "label_names": ["vertical", "disk", "horizontal"]}


def test_polysemantic_neuron_splits_into_clusters_that_differ_in_content():
    images, factors = shapes()
    found = polysemantic(TwoMinds(), data=images, factors=factors)
    assert [m.target for m in found] == ["conv:0"]
    clusters = found[0].evidence["clusters"]
    assert sorted(tuple(c["label"]) for c in clusters) == [("disk",), ("vertical",)]
    assert found[0].score == pytest.approx(1.0) and found[0].evidence["p_value"] < 0.01


def test_polysemantic_needs_latent_factors():
    images, _ = shapes()
    assert polysemantic(TwoMinds(), data=images) == []
    assert polysemantic(TwoMinds()) == []


# -- the report ------------------------------------------------------------------------------------------


def test_motif_json_is_plain_and_stably_ordered():
    import json

    from circuits.motifs import to_json

    motifs = find(Context("planted:wedges"))
    payload = to_json("planted:wedges", list(reversed(motifs)))
    assert payload == to_json("planted:wedges", motifs)
    text = json.dumps(payload, allow_nan=False)
    for m in json.loads(text)["motifs"]:
        assert set(m) == {"kind", "transform", "target", "members", "score", "evidence"}
        assert m["transform"] in ("reflect", "rotate90", "rotate", None)
        assert all(":" in n for n in m["members"])


# -- the zoo ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zoo_plain_cnn_has_a_union_over_reflection(seed):
    """Found from weights; checked here by hand on the module: the union neuron's cases are among its
    strongest positive conv weights, and its response to flipped images is its response, flipped."""
    from circuits.errors import ModelLoadError

    try:
        loaded = load(f"zoo:plain-cnn-s{seed}")
    except ModelLoadError:
        pytest.skip("zoo weights not shipped")
    found = [m for m in unions(loaded) if m.transform == "reflect"]
    assert found
    module = loaded.module
    for m in found:
        layer, channel = m.target.split(":")
        weight = module.get_submodule(layer).weight.detach()
        strength = weight[int(channel)].reshape(weight.shape[1], -1).sum(1) if weight.dim() == 4 else weight[int(channel)]
        top = [int(c) for c in torch.argsort(strength, descending=True)[:4]]
        assert {int(n.split(":")[1]) for n in m.members} <= set(top)
    conv_unions = [m for m in found if m.target.startswith("conv")]
    from circuits.data import load_data

    images = load_data("toyworld:64:3", loaded.input_shape)
    for m in conv_unions:
        layer, channel = m.target.split(":")
        maps = {}
        hook = module.get_submodule(layer).register_forward_hook(lambda _m, _i, out, maps=maps: maps.setdefault("x", out))
        with torch.no_grad():
            module(images)
            first = torch.relu(maps.pop("x"))[:, int(channel)]
            module(torch.flip(images, dims=[-1]))
            mirrored = torch.relu(maps.pop("x"))[:, int(channel)]
        hook.remove()
        corr = torch.corrcoef(torch.stack([mirrored.flatten(), torch.flip(first, dims=[-1]).flatten()]))[0, 1]
        assert corr > 0.8
