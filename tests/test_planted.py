"""The planted-circuit compiler: exact weights, symmetric kernels, clear spec errors.

Compiled modules are checked against a numpy evaluation of the spec written here by hand (explicit
padding and shifted sums, no torch), and the ready specs' planted motifs are checked by transforming the
input image.
"""

import json
import math

import numpy as np
import pytest
import torch

from circuits.errors import BadSpecError
from circuits.planted import (
    BatchNorm,
    Input,
    InputSpec,
    Layer,
    Neuron,
    PlantedSpec,
    compile,
    effective_bias,
    effective_weights,
    get_spec,
    load,
    load_spec,
    names,
)
from circuits.planted import kernels as K

torch.set_num_threads(1)

READY = ["bn-union", "curves", "inception-union", "lines", "union", "wedges"]


# -- an independent numpy evaluation of a spec dict ------------------------------------------------------


def np_correlate(image, kernel, padding):
    """Cross-correlation of one [H, W] map with one [kh, kw] kernel, zero padding, by shifted sums."""
    ph, pw = padding
    padded = np.zeros((image.shape[0] + 2 * ph, image.shape[1] + 2 * pw))
    padded[ph : ph + image.shape[0], pw : pw + image.shape[1]] = image
    kh, kw = kernel.shape
    out_h, out_w = padded.shape[0] - kh + 1, padded.shape[1] - kw + 1
    out = np.zeros((out_h, out_w))
    for dy in range(kh):
        for dx in range(kw):
            out += kernel[dy, dx] * padded[dy : dy + out_h, dx : dx + out_w]
    return out


def np_act(name, x):
    return {
        "relu": lambda v: np.maximum(v, 0.0),
        "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v),
        "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
        "tanh": np.tanh,
    }[name](x)


def np_kernel(item, kh, kw):
    kernel = item.get("kernel")
    if kernel is None:
        kernel = np.zeros((kh, kw))
        kernel[kh // 2, kw // 2] = 1.0
    elif isinstance(kernel, dict):
        kernel = K.generate(kernel, kh)
    return item.get("weight", 1.0) * np.asarray(kernel, dtype=np.float64)


def np_layer(layer, maps):
    """maps: {source name: [H, W]} -> (pre-activations, activations) as {neuron name: [H', W']}."""
    ks = layer.get("kernel_size", 1)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    pad = layer.get("padding", [kh // 2, kw // 2])
    pad = (pad, pad) if isinstance(pad, int) else pad
    pre, post = {}, {}
    for neuron in layer["neurons"]:
        some = next(iter(maps.values()))
        total = np.full(np_correlate(some, np.zeros((kh, kw)), pad).shape, float(neuron.get("bias", 0.0)))
        for item in neuron["inputs"]:
            total = total + np_correlate(maps[item["source"]], np_kernel(item, kh, kw), pad)
        pre[neuron["name"]] = total
        post[neuron["name"]] = np_act(layer.get("act", "relu"), total)
    return pre, post


def np_forward(spec_dict, image):
    """image [C, H, W] -> {qualified layer name: {neuron name: activation map}}, BN ignored (the spec's
    weights are the effective ones)."""
    maps = {c: image[i] for i, c in enumerate(spec_dict["input"]["channels"])}
    out = {}
    for layer in spec_dict["layers"]:
        if "branches" in layer:
            merged = {}
            for branch in layer["branches"]:
                _, post = np_layer(branch, maps)
                out[f"{layer['name']}.{branch['name']}"] = post
                merged.update(post)
            maps = merged
        else:
            _, maps = np_layer(layer, maps)
            out[layer["name"]] = maps
    return out


def torch_layers(model, x):
    """{qualified layer name: activations [C, H, W]} for every neuron layer, via forward hooks."""
    acts, handles = {}, []
    for name, module in model.named_modules():
        if type(module).__name__ == "PlantedLayer":
            handles.append(module.register_forward_hook(lambda m, i, o, n=name: acts.__setitem__(n, o[0])))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return acts


def random_image(shape, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape)


def mixed_spec():
    """Exercises what the ready specs do not: 3 input channels, rectangular and explicit kernels, padding
    0, every activation, explicit BN statistics, a concat with branches of different kernel sizes."""
    rng = np.random.default_rng(5)
    return PlantedSpec(
        "mixed-test",
        InputSpec(channels=["r", "g", "b"], height=12, width=10),
        [
            Layer("a", [
                Neuron("a0", [Input("r", 0.5, rng.normal(size=(3, 5)).tolist()), Input("b", -1.0)], bias=0.1),
                Neuron("a1", [Input("g", 2.0, rng.normal(size=(3, 5)))], bias=-0.2),
            ], kernel_size=(3, 5), act="leaky_relu"),
            Layer("b", [
                Neuron("b0", [Input("a0", 1.0, {"generator": "gabor", "angle": 30, "freq": 0.3})], bias=0.3),
                Neuron("b1", [Input("a1", -0.7, {"generator": "edge", "angle": 120}), Input("a0")]),
            ], kernel_size=3, padding=0, act="tanh",
                bn=BatchNorm(gamma=[1.5, -0.5], mean=[0.3, -0.2], var=[2.0, 0.25])),
            Layer("cat", branches=[
                Layer("wide", [Neuron("w0", [Input("b0", 1.0, {"generator": "blob", "sigma": 1.2})])],
                      kernel_size=5, bn=BatchNorm()),
                Layer("narrow", [Neuron("n0", [Input("b1")], bias=0.5), Neuron("n1", [Input("b0", -1.0)])],
                      act="sigmoid"),
            ]),
            Layer("top", [Neuron("t0", [Input("w0"), Input("n1", 2.0), Input("n0", -1.0)], bias=-0.1)],
                  kernel_size=3),
        ],
    )


SPECS = {name: (lambda name=name: get_spec(name)) for name in READY} | {"mixed-test": mixed_spec}


# -- compiled activations equal the spec ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPECS))
def test_compiled_activations_match_numpy_evaluation_of_spec(name):
    spec = SPECS[name]()
    model = compile(spec)
    for seed in (0, 1):
        image = random_image(spec.input_shape, seed)
        expected = np_forward(spec.to_dict(), image)
        got = torch_layers(model, torch.tensor(image[None], dtype=torch.float32))
        assert sorted(got) == sorted(expected)
        for layer, maps in expected.items():
            want = np.stack([maps[n] for n in maps])
            np.testing.assert_allclose(got[layer].numpy(), want, atol=2e-5, rtol=1e-5, err_msg=layer)
        assert float(np.abs(want).max()) > 1e-3  # the last layer is not dead, so the comparison means something


def test_spec_weight_lands_in_conv_weight_at_target_and_source_channel():
    model = compile(get_spec("union"))
    arm_up_right = np.zeros((5, 5))
    arm_up_right[1, 3] = arm_up_right[0, 4] = 1.0  # wedge_left's upper arm: steps up and to the right
    w = model.wedges.conv.weight.detach().numpy()
    np.testing.assert_array_equal(w[0, 2], arm_up_right)  # wedges:0 = wedge_left, lines:2 = line_45
    np.testing.assert_array_equal(w[1, 6], arm_up_right[:, ::-1])  # wedge_right reads line_135, mirrored
    assert np.count_nonzero(w[0]) == 4 and np.count_nonzero(w[1]) == 4
    np.testing.assert_array_equal(model.union.conv.weight.detach().numpy()[:3, :2, 0, 0], [[1, 1], [1, -1], [1, 1]])
    np.testing.assert_array_equal(model.union.conv.bias.detach().numpy()[:3], [0.0, 0.0, -5.0])


def test_effective_weights_equal_conv_weights_without_bn():
    spec = get_spec("union")
    model = compile(spec)
    for name in ("lines", "wedges", "union"):
        layer = getattr(model, name)
        np.testing.assert_array_equal(
            effective_weights(spec.layer(name)).astype(np.float32), layer.conv.weight.detach().numpy()
        )
        np.testing.assert_array_equal(effective_bias(spec.layer(name)).astype(np.float32), layer.conv.bias.detach())


@pytest.mark.parametrize("name", ["bn-union", "mixed-test"])
def test_folding_bn_by_hand_recovers_effective_weights(name):
    spec = SPECS[name]()
    model = compile(spec)
    checked = 0
    for qualified, layer in spec.neuron_layers():
        if layer.bn is None:
            continue
        block = model.get_submodule(qualified)
        bn = block.bn
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy().astype(np.float64)
        raw = block.conv.weight.detach().numpy().astype(np.float64)
        folded = raw * scale[:, None, None, None]
        folded_bias = bn.bias.detach().numpy() - scale * bn.running_mean.detach().numpy()
        assert block.conv.bias is None
        np.testing.assert_allclose(folded, effective_weights(layer), atol=1e-5)
        np.testing.assert_allclose(folded_bias, effective_bias(layer), atol=1e-5)
        assert np.abs(raw - effective_weights(layer)).max() > 0.05  # folding matters
        checked += 1
    assert checked >= 2


def test_bn_union_has_union_effective_weights_but_different_raw_weights():
    plain, with_bn = compile(get_spec("union")), compile(get_spec("bn-union"))
    a, b = get_spec("union"), get_spec("bn-union")
    for name in ("lines", "wedges", "union"):
        np.testing.assert_array_equal(effective_weights(a.layer(name)), effective_weights(b.layer(name)))
        assert not torch.allclose(getattr(plain, name).conv.weight, getattr(with_bn, name).conv.weight)
    x = torch.tensor(random_image((1, 1, 24, 24), 3), dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), with_bn(x), atol=1e-4, rtol=1e-4)


def test_effective_weights_of_concat_reader_index_concat_channels():
    spec = get_spec("inception-union")
    assert spec.layer("union").sources == ("wedge_left", "wedge_right", "decoy_0", "decoy_1")
    w = effective_weights(spec.layer("union"))
    np.testing.assert_array_equal(w[:3, :2, 0, 0], [[1, 1], [1, -1], [1, 1]])
    np.testing.assert_array_equal(w[:3, 2:], 0.0)
    with pytest.raises(BadSpecError, match="concat"):
        effective_weights(spec.layer("mixed"))
    assert effective_weights("mixed.left", spec).shape == (1, 8, 5, 5)


# -- module structure the neuron-graph IR relies on --------------------------------------------------------


def test_module_children_are_named_after_spec_layers():
    model = compile(get_spec("inception-union"))
    assert model.input_shape == (1, 24, 24) and model.spec.name == "inception-union"
    assert not model.training
    assert [n for n, _ in model.named_children()] == ["lines", "mixed", "union"]
    assert [n for n, _ in model.mixed.named_children()] == ["left", "right", "decoys"]
    assert not isinstance(model.lines, torch.nn.Sequential)
    assert isinstance(model.lines.conv, torch.nn.Conv2d) and isinstance(model.lines.act, torch.nn.ReLU)
    assert model.mixed.decoys.conv.kernel_size == (3, 3)
    bn = compile(get_spec("bn-union"))
    assert [n for n, _ in bn.wedges.named_children()] == ["conv", "bn", "act"]
    assert not hasattr(model.lines, "bn")
    assert compile("union").spec.to_dict() == get_spec("union").to_dict()


def test_compiled_model_traces_with_torch_fx():
    model = compile(get_spec("inception-union"))
    graph = torch.fx.symbolic_trace(model)
    x = torch.tensor(random_image((2, 1, 24, 24), 4), dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x))
    assert any(node.op == "call_function" and node.target is torch.cat for node in graph.graph.nodes)


def test_load_returns_labels_and_spec_as_planted_models_load():
    from circuits.models import load as load_model

    loaded = load_model("planted:inception-union")
    assert loaded.spec == "planted:inception-union" and loaded.input_shape == (1, 24, 24)
    assert loaded.labels["mixed.left:0"] == "wedge_left" and loaded.labels["union:2"] == "cross"
    assert loaded.info["planted_spec"]["name"] == "inception-union"
    assert load("union").labels == {
        **{f"lines:{i}": f"line_{int(22.5 * i)}" for i in range(8)},
        "wedges:0": "wedge_left", "wedges:1": "wedge_right", "wedges:2": "decoy_0", "wedges:3": "decoy_1",
        "union:0": "union", "union:1": "opponent", "union:2": "cross", "union:3": "decoy_2",
    }
    with pytest.raises(BadSpecError, match="did you mean 'union'"):
        load_model("planted:unoin")


def test_names_are_sorted_and_include_required_specs():
    assert names() == sorted(names())
    assert set(READY) <= set(names())
    for name in names():
        spec = get_spec(name)
        assert spec.description and spec.motifs and spec.name == name
        assert 1 <= spec.input_shape[0] <= 3 and 16 <= spec.input_shape[1] <= 32


# -- spec files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_round_trips_through_json(name, tmp_path):
    spec = SPECS[name]()
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec.to_dict()))
    again = load_spec(str(path))
    assert again.to_dict() == spec.to_dict()
    a, b = compile(spec).state_dict(), compile(again).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_spec_loads_from_yaml_text():
    spec = load_spec(
        """
name: tiny
input: {channels: [gray], height: 16, width: 16}
layers:
  - name: edges
    kernel_size: 3
    neurons:
      - name: vertical
        bias: -0.25
        inputs: [{source: gray, kernel: {generator: edge, angle: 0}}]
      - name: bright
        inputs: [{source: gray, weight: 2.0}]
"""
    )
    w = effective_weights(spec.layer("edges"))
    np.testing.assert_allclose(w[0, 0], K.edge(3, 0))
    np.testing.assert_array_equal(w[1, 0], [[0, 0, 0], [0, 2, 0], [0, 0, 0]])
    assert compile(spec).edges.conv.bias.tolist() == [-0.25, 0.0]


# -- kernel generators ------------------------------------------------------------------------------------


ANGLES = [0, 10, 22.5, 30, 45, 60, 67.5, 90, 100, 135, 157.5, 200, 300, 337.5]
ORIENTED = {
    "line": lambda a: K.line(7, a),
    "edge": lambda a: K.edge(7, a),
    "curve": lambda a: K.curve(7, a, radius=3.0),
    "gabor": lambda a: K.gabor(7, a, freq=0.2, phase=30),
}


@pytest.mark.parametrize("gen", sorted(ORIENTED))
def test_generators_rotate_and_reflect_exactly(gen):
    make = ORIENTED[gen]
    for a in ANGLES:
        np.testing.assert_array_equal(make(a + 90), np.rot90(make(a)), err_msg=f"{gen} rot90 at {a}")
        np.testing.assert_array_equal(make(180 - a), make(a)[:, ::-1], err_msg=f"{gen} flip at {a}")


def naive(gen, size, angle):
    """The same formulas evaluated directly at ``angle`` (x right, y up), without the symmetry trick."""
    c = size // 2
    t = math.radians(angle)
    k = np.zeros((size, size))
    for row in range(size):
        for col in range(size):
            x, y = col - c, c - row
            if gen == "line":
                d = -math.sin(t) * x + math.cos(t) * y
                k[row, col] = math.exp(-d * d / (2 * 0.8**2))
            elif gen == "edge":
                k[row, col] = math.tanh(math.cos(t) * x + math.sin(t) * y)
            elif gen == "curve":
                cx, cy = -3.0 * math.cos(t), -3.0 * math.sin(t)
                d = math.hypot(x - cx, y - cy) - 3.0
                k[row, col] = math.exp(-d * d / (2 * 0.8**2))
            else:
                u = math.cos(t) * x + math.sin(t) * y
                k[row, col] = math.exp(-(x * x + y * y) / (2 * 1.5**2)) * math.cos(
                    2 * math.pi * 0.2 * u + math.radians(30)
                )
    if gen != "gabor":
        k -= k.mean()
    return k / np.abs(k).max()


@pytest.mark.parametrize("gen", sorted(ORIENTED))
def test_generators_match_their_formula_at_every_angle(gen):
    for a in ANGLES:
        np.testing.assert_allclose(ORIENTED[gen](a), naive(gen, 7, a), atol=1e-12, err_msg=f"{gen} at {a}")


def test_line_kernel_is_brightest_along_its_orientation():
    horizontal, diagonal = K.line(5, 0), K.line(5, 45)
    assert np.all(horizontal[2] == horizontal.max())  # the middle row
    assert np.all(np.diag(diagonal[::-1]) == diagonal.max())  # bottom-left to top-right
    assert abs(horizontal.sum()) < 1e-12


def test_blob_and_random_are_deterministic():
    np.testing.assert_array_equal(K.blob(5, 1.0), np.rot90(K.blob(5, 1.0)))
    assert K.blob(5, 1.0)[2, 2] == 1.0
    np.testing.assert_array_equal(K.random(3, seed=4), K.random(3, seed=4))
    assert not np.array_equal(K.random(3, seed=4), K.random(3, seed=5))


# -- the planted motifs -----------------------------------------------------------------------------------


def images(n, seed, size=24):
    return torch.tensor(random_image((n, 1, size, size), seed), dtype=torch.float32)


def rot90(x):
    return torch.rot90(x, 1, dims=[-2, -1])


def flip(x):
    return torch.flip(x, dims=[-1])


def angle_of(name):
    return float(name.split("_")[1])


@pytest.mark.parametrize("name,layer,period", [("lines", "lines", 180), ("curves", "curves", 360)])
def test_rotating_image_by_90_permutes_detectors_as_their_names_say(name, layer, period):
    spec = get_spec(name)
    model = compile(spec)
    neurons = spec.layer(layer).channel_names
    # Names carry the angle (line_22 is 22.5°): the detector at θ must become the one at θ + 90.
    angles = [22.5 * round(angle_of(n) / 22.5) for n in neurons]
    perm = [angles.index((a + 90) % period) for a in angles]
    assert sorted(perm) == list(range(len(neurons)))
    motif = next(m for m in spec.motifs if m["kind"] == "rotation")["rot90"]
    assert motif == {f"{layer}:{i}": f"{layer}:{j}" for i, j in enumerate(perm)}
    x = images(3, 11)
    with torch.no_grad():
        plain, turned = model(x), model(rot90(x))
    assert plain.abs().max() > 0.5
    for i, j in enumerate(perm):
        torch.testing.assert_close(turned[:, j], rot90(plain[:, i]), atol=1e-5, rtol=0)
    # ...and not to any other detector: the permutation is the only one that fits
    assert not torch.allclose(turned[:, perm[0]], rot90(plain[:, perm[0]]), atol=1e-3)


@pytest.mark.parametrize("name", ["wedges", "union", "bn-union", "inception-union"])
def test_reflecting_image_swaps_left_and_right_wedges(name):
    spec = get_spec(name)
    model = compile(spec)
    left = spec.neuron_id("wedges" if "wedges" in [x.name for x in spec.layers] else "mixed", "wedge_left")
    right = spec.neuron_id("wedges" if "wedges" in [x.name for x in spec.layers] else "mixed", "wedge_right")
    x = images(3, 12)
    acts, mirrored = torch_layers(model, x), torch_layers(model, flip(x))
    (l_layer, l_ch), (r_layer, r_ch) = (left.split(":")), (right.split(":"))
    L, R = acts[l_layer][int(l_ch)], acts[r_layer][int(r_ch)]  # the first image of the batch
    assert L.abs().max() > 0.1 and R.abs().max() > 0.1
    torch.testing.assert_close(mirrored[l_layer][int(l_ch)], flip(R), atol=1e-4, rtol=0)
    torch.testing.assert_close(mirrored[r_layer][int(r_ch)], flip(L), atol=1e-4, rtol=0)
    assert not torch.allclose(L, flip(L), atol=1e-2)  # a wedge alone is not mirror-symmetric


@pytest.mark.parametrize("name", ["union", "bn-union", "inception-union"])
def test_union_is_reflection_invariant_and_opponent_pre_activation_flips_sign(name):
    model = compile(get_spec(name))
    pre = {}
    handle = model.union.act.register_forward_hook(lambda m, i, o: pre.__setitem__("x", i[0].clone()))
    x = images(4, 13)
    try:
        with torch.no_grad():
            plain = model(x)
            plain_pre = pre["x"]
            mirrored = model(flip(x))
            mirrored_pre = pre["x"]
    finally:
        handle.remove()
    assert plain[:, 0].max() > 0.5
    torch.testing.assert_close(mirrored[:, 0], flip(plain[:, 0]), atol=1e-4, rtol=0)  # union
    torch.testing.assert_close(mirrored_pre[:, 1], -flip(plain_pre[:, 1]), atol=1e-4, rtol=0)  # opponent
    assert not torch.allclose(mirrored[:, 1], flip(plain[:, 1]), atol=1e-2)


def draw(points, size=24):
    image = torch.zeros(1, 1, size, size)
    for row, col in points:
        image[0, 0, row, col] = 1.0
    return image


C = 12
LT = [(C - t, C + t) for t in range(7)] + [(C + t, C + t) for t in range(7)]  # '<' with its vertex at C, C
GT = [(C - t, C - t) for t in range(7)] + [(C + t, C - t) for t in range(7)]  # '>'
SLASH = [(C - t, C + t) for t in range(-7, 7)]  # '/'


def test_wedge_detectors_fire_on_their_wedge_and_not_on_a_straight_line():
    model = compile(get_spec("wedges"))
    with torch.no_grad():
        lt, gt, slash = model(draw(LT)), model(draw(GT)), model(draw(SLASH))
    assert lt[0, 0, C, C] > 1.0 and lt[0, 1].max() == 0
    assert gt[0, 1, C, C] > 1.0 and gt[0, 0].max() == 0
    assert slash.max() == 0


def test_and_neuron_needs_both_wedges():
    model = compile(get_spec("union"))
    with torch.no_grad():
        outs = {k: model(draw(p))[0] for k, p in {"<": LT, ">": GT, "x": LT + GT}.items()}
    assert outs["x"][2, C, C] > 1.0  # cross fires where both meet
    assert outs["<"][2].max() == 0 and outs[">"][2].max() == 0  # never for one alone
    assert outs["<"][0].max() > 1.0 and outs[">"][0].max() > 1.0  # while union fires for either
    assert outs["<"][1].max() > 1.0 and outs[">"][1].max() == 0  # and opponent only for '<'


# -- bad specs -------------------------------------------------------------------------------------------


def one_layer(neurons, **layer):
    return PlantedSpec("bad", InputSpec(), [Layer("layer1", neurons, **layer)])


@pytest.mark.parametrize(
    "build,expected",
    [
        (lambda: one_layer([Neuron("n", [Input("grey")])]),
         r"layer 'layer1' neuron 'n' reads unknown neuron 'grey'; did you mean 'gray'\?"),
        (lambda: PlantedSpec("bad", InputSpec(), [
            Layer("a", [Neuron("line_45", [Input("gray")])]),
            Layer("b", [Neuron("n", [Input("line_54")])]),
        ]), r"unknown neuron 'line_54'; did you mean 'line_45'\? \(inputs must name a neuron of layer 'a'\)"),
        (lambda: one_layer([Neuron("n", [Input("gray", kernel=np.ones((3, 3)))])], kernel_size=5),
         r"kernel shape 3x3 does not match the layer's kernel_size 5x5; give a 5x5 array"),
        (lambda: one_layer([Neuron("n", [Input("gray", kernel={"generator": "line", "angle": 0, "size": 3})])],
                           kernel_size=5),
         r"line kernel size 3 does not match the layer's kernel_size 5"),
        (lambda: one_layer([Neuron("n", [Input("gray", kernel={"generator": "lines", "angle": 0})])], kernel_size=3),
         r"unknown kernel generator 'lines'; did you mean 'line'\? \(known: blob, curve, edge, gabor, line, random\)"),
        (lambda: one_layer([Neuron("n", [Input("gray", kernel={"generator": "line", "angel": 0})])], kernel_size=3),
         r"unknown parameter 'angel' for generator 'line'; did you mean 'angle'\?"),
        (lambda: one_layer([Neuron("n", [Input("gray", kernel={"generator": "curve"})])], kernel_size=3),
         r"generator 'curve' needs 'angle'"),
        (lambda: one_layer([Neuron("n", [Input("gray")])], act="identity"),
         r"unknown act 'identity'.*every planted layer must be a neuron layer"),
        (lambda: one_layer([Neuron("n", [Input("gray")]), Neuron("n", [Input("gray")])]),
         r"two neurons named 'n'"),
        (lambda: one_layer([Neuron("n", [Input("gray")])], bn=BatchNorm(gamma=[1.0, 2.0])),
         r"bn gamma has 2 values for 1 neurons"),
        (lambda: one_layer([Neuron("n", [Input("gray")])], kernel_size=4),
         r"even kernel_size 4x4 has no centre"),
        (lambda: PlantedSpec("bad", InputSpec(), [Layer("my-layer", [Neuron("n", [Input("gray")])])]),
         r"layer name 'my-layer' is not a Python identifier"),
        (lambda: PlantedSpec("bad", InputSpec(), [Layer("forward", [Neuron("n", [Input("gray")])])]),
         r"layer name 'forward' is reserved"),
        (lambda: PlantedSpec("bad", InputSpec(), [Layer("cat", branches=[
            Layer("a", [Neuron("n", [Input("gray")])], kernel_size=3),
            Layer("b", [Neuron("m", [Input("gray")])], kernel_size=3, padding=0),
        ])]), r"concat layer 'cat': branches give different output sizes"),
        (lambda: load_spec({"name": "x", "layers": [{"name": "a", "nerons": []}]}),
         r"layer 'a': unknown key 'nerons'; did you mean 'neurons'\?"),
    ],
)
def test_bad_spec_gives_one_line_error_naming_problem_and_fix(build, expected):
    with pytest.raises(BadSpecError, match=expected) as info:
        build()
    assert "\n" not in str(info.value)


def test_unknown_ready_spec_suggests_close_names():
    with pytest.raises(BadSpecError, match=r"unknown planted model 'wedge'; did you mean 'wedges'"):
        get_spec("wedge")
