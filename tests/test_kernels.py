"""Direct and expanded weights (circuits.trace.kernels) against independent computations.

docs/neuron-graph.md, "How the definitions are checked":
- BN-folded weights applied to the source activations reproduce the pre-activation (|diff| < 1e-5);
- a direct weight equals a finite difference on the real model;
- expanded weights equal the autograd Jacobian of the linearised model.

The references never call the code under test: real activations come from running ``graph.gm`` (the
model's own modules) under a plain ``torch.fx.Interpreter``; finite differences re-run it with node values
overridden; the linearised model is a deep copy of the original ``nn.Module`` with its nonlinearities
swapped for taps by hand; folded weights are computed from BatchNorm's formula.

Tolerances: the reconstruction runs in float32, as the library does, and holds to |diff| < 1e-5 (the
pre-activations are O(1)). Finite differences and Jacobians run on float64 copies (the path is affine, so a
nudge of 1.0 is exact); the float32 kernels must agree to 1e-3 relative (finite differences, plus 1e-6
absolute for entries that are exactly zero) and 1e-4 of the largest Jacobian entry (expanded weights).
"""

import copy
import random
from unittest import mock

import nets
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from circuits.errors import UsageError
from circuits.graph import build_graph
from circuits.trace.kernels import compute_kernels

NETS = nets.ALL_NETS

# Targets whose path from a direct source passes max pooling: the weights read it as average pooling
# (Distill's convention), so the real model's pre-activation is not a linear function of the sources there.
MAXPOOLED = {
    nets.PlainCNN: {"conv3"},
    nets.InceptionNet: {"inc1.bp", "inc2.bp"},
    nets.ONetLike: {"prelu2"},
}
# Spatial targets whose kernels cannot be applied as a strided convolution over the whole map: ONetLike's
# prelu2 (3x3 map, the stride is not measurable) and EfficientNet's squeeze-excite layers (1x1 maps).
NO_STRIDE = {nets.ONetLike: {"prelu2"}, nets.EfficientNetLike: {"se.act", "se.gate"}}


@pytest.fixture(scope="module")
def graphs():
    return {cls: build_graph(cls()) for cls in NETS}


@pytest.fixture(scope="module")
def direct(graphs):
    """All direct kernel sets, per net: {(source, target): KernelSet}, each target's sources together."""
    found = {}
    for cls, graph in graphs.items():
        found[cls] = {}
        for target in graph.targets():
            for ks in compute_kernels(graph, target.sources, target.name):
                found[cls][ks.source, ks.target] = ks
    return found


def run_fx(gm, x, overrides=None):
    """Every node's value (cloned: in-place ReLUs overwrite their inputs), with some nodes' values forced."""
    overrides = overrides or {}
    values = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = overrides[n.name].clone() if n.name in overrides else super().run_node(n)
            if isinstance(out, torch.Tensor):
                values[n.name] = out.detach().clone()
            return out

    with torch.no_grad():
        Recorder(gm).run(x)
    return values


def seeded_input(shape, batch=2, seed=0, dtype=torch.float32):
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_every_target_source_pair_has_a_kernel_set(graphs, direct):
    for cls, graph in graphs.items():
        expected = {(s, t.name) for t in graph.targets() for s in t.sources}
        assert set(direct[cls]) == expected, cls.__name__


# --------------------------------------------------------------------------------------------------------
# a. Folded-BN weights reproduce the real pre-activation


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_folded_bn_weights_reproduce_preactivation(graphs, direct, cls):
    """sum over sources of KernelSet.apply(real source activation) + bias == the real pre-activation."""
    graph = graphs[cls]
    values = run_fx(graph.gm, seeded_input(graph.input_shape, batch=3, seed=1))
    checked = 0
    for target in graph.targets():
        if target.name in MAXPOOLED.get(cls, set()) | NO_STRIDE.get(cls, set()):
            continue
        sets = [direct[cls][s, target.name] for s in target.sources]
        if target.spatial:
            assert all(ks.stride is not None for ks in sets), target.name
        total = sum(
            ks.apply(values[graph.layer(ks.source).node], out_size=target.spatial or None) for ks in sets
        )
        bias = sets[0].bias.reshape(1, -1, *[1] * len(target.spatial))
        preact = values[target.preact]
        assert total.shape == preact.shape, target.name
        assert (total + bias - preact).abs().max() < 1e-5, target.name
        checked += 1
    assert checked == len(graph.targets()) - len(MAXPOOLED.get(cls, set()) | NO_STRIDE.get(cls, set()))


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_kernels_reproduce_preactivation_at_their_position(graphs, direct, cls):
    """At the kernel's own position, a dot product over the window at ``origin`` gives the pre-activation.

    This holds for every target without max pooling on its paths, average-pooled 1x1 maps included.
    """
    graph = graphs[cls]
    values = run_fx(graph.gm, seeded_input(graph.input_shape, batch=3, seed=2))
    for target in graph.targets():
        if target.name in MAXPOOLED.get(cls, set()):
            continue
        total = 0
        for source in target.sources:
            ks = direct[cls][source, target.name]
            act = values[graph.layer(source).node]
            if not graph.layer(source).spatial:
                window = act[:, :, None, None]
            else:
                box = [slice(o, o + k) for o, k in zip(ks.origin, ks.kernels.shape[2:])]
                window = act[(slice(None), slice(None), *box)]
            total = total + torch.einsum("tchw,nchw->nt", ks.kernels, window)
        preact = values[target.preact]
        at = preact[(slice(None), slice(None), *ks.position)] if ks.position else preact
        assert (total + ks.bias - at).abs().max() < 1e-5, target.name


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_apply_without_out_size_returns_the_whole_target_map(graphs, direct, cls):
    """Regression: apply() once lost the bottom/right padding (15x15 from a padded 3x3 conv over 16x16)."""
    graph = graphs[cls]
    for (source, target), ks in direct[cls].items():
        if ks.position is None or target in NO_STRIDE.get(cls, set()):
            continue
        out = ks.apply(torch.zeros(1, *graph.layer(source).shape))
        assert out.shape == (1, *graph.layer(target).shape), (source, target)


# --------------------------------------------------------------------------------------------------------
# b. Direct weights are finite differences on the real model


@pytest.fixture(scope="module")
def double_gms(graphs):
    return {cls: copy.deepcopy(graph.gm).double() for cls, graph in graphs.items()}


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_direct_weight_equals_finite_difference_on_real_model(graphs, direct, double_gms, cls):
    """Nudge S:c at one position by 1.0, every other direct source of T held at its real value."""
    skip = MAXPOOLED.get(cls, set())
    assert_direct_weights_are_finite_differences(graphs[cls], direct[cls], double_gms[cls], cls.__name__, skip)


def assert_direct_weights_are_finite_differences(graph, direct, gm, seed, skip=()):
    """Each direct kernel entry (the largest and four random ones) against a nudge of the float64 model."""
    rng = random.Random(seed)
    x = seeded_input(graph.input_shape, batch=1, seed=3, dtype=torch.float64)
    values = run_fx(gm, x)
    for target in graph.targets():
        if target.name in skip:
            continue
        held = {graph.layer(s).node: values[graph.layer(s).node] for s in target.sources}
        for source in target.sources:
            ks = direct[source, target.name]
            node = graph.layer(source).node
            k = ks.kernels
            biggest = tuple(int(i) for i in torch.unravel_index(k.abs().argmax(), k.shape))
            picks = [biggest] + [tuple(rng.randrange(d) for d in k.shape) for _ in range(4)]
            for t, c, *offset in picks:
                nudged = held[node].clone()
                where = (0, c, *[o + d for o, d in zip(ks.origin, offset)]) if ks.origin else (0, c)
                nudged[where] += 1.0
                after = run_fx(gm, x, {**held, node: nudged})
                before = values[target.preact]
                at = (0, t, *ks.position) if ks.position else (0, t)
                fd = (after[target.preact][at] - before[at]).item()
                entry = k[(t, c, *offset)].item()
                where_k = f"{source} -> {target.name} [{t}, {c}, {offset}]"
                assert abs(fd - entry) <= 1e-3 * abs(fd) + 1e-6, f"{where_k}: fd {fd}, kernel {entry}"


# --------------------------------------------------------------------------------------------------------
# c. Expanded weights are the Jacobian of the linearised model

NONLINEAR = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU)


class Linearised:
    """A float64 copy of a model with every nonlinearity an identity that records its input ("tap").

    MaxPool2d becomes AvgPool2d of the same window (padding not counted); ``F.relu`` and ``F.softmax`` are
    patched to taps while it runs. ``bump=(i, delta)`` adds ``delta`` at tap ``i``, so a Jacobian with
    respect to ``delta`` is one with respect to that layer's activation.
    """

    def __init__(self, model):
        self.model = copy.deepcopy(model).double().eval()
        self.taps, self.bump = [], None
        for parent in list(self.model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, NONLINEAR):
                    setattr(parent, name, _TapModule(self))
                elif isinstance(child, nn.MaxPool2d):
                    k, stride, pad, ceil = child.kernel_size, child.stride, child.padding, child.ceil_mode
                    setattr(
                        parent, name, nn.AvgPool2d(k, stride, pad, ceil_mode=ceil, count_include_pad=False)
                    )
        assert not any(isinstance(m, (*NONLINEAR, nn.MaxPool2d)) for m in self.model.modules())

    def tap(self, x, *args, **kwargs):
        if self.bump is not None and self.bump[0] == len(self.taps):
            x = x + self.bump[1]
        self.taps.append(x)
        return x

    def __call__(self, x, bump=None):
        self.taps, self.bump = [], bump
        with (
            mock.patch("torch.nn.functional.relu", self.tap),
            mock.patch("torch.nn.functional.softmax", self.tap),
        ):
            out = self.model(x)
        return self.taps, out


class _TapModule(nn.Module):
    def __init__(self, owner):
        super().__init__()
        self.owner = [owner]  # a list: not registered as a submodule

    def forward(self, x):
        return self.owner[0].tap(x)


# Layer -> index of its nonlinearity call in the forward pass, worked out from the nets' source
# ("out" = the model's output, which is the pre-activation of a linear output layer).
TAPS = {
    nets.PlainCNN: {"conv1": 0, "conv2": 1, "conv3": 2, "fc": "out"},
    nets.InceptionNet: {
        "stem": 0,
        "inc1.b1": 1,
        "inc1.b3r": 2,
        "inc1.b3": 3,
        "inc1.b5r": 4,
        "inc1.b5": 5,
        "inc1.bp": 6,
        "inc2.b1": 7,
        "inc2.b3r": 8,
        "inc2.b3": 9,
        "inc2.b5r": 10,
        "inc2.b5": 11,
        "inc2.bp": 12,
        "fc": "out",
    },
    nets.ResNet: {
        "relu": 0,
        "layer1.0.relu": 1,
        "layer1.0": 2,
        "layer1.1.relu": 3,
        "layer1.1": 4,
        "layer2.0.relu": 5,
        "layer2.0": 6,
        "fc": "out",
    },
    nets.ONetLike: {"prelu1": 0, "prelu2": 1, "prelu3": 2, "dense4": 3},
}

EXPANDED_PAIRS = [
    (nets.PlainCNN, "input", "conv2"),
    (nets.PlainCNN, "input", "conv3"),
    (nets.PlainCNN, "input", "fc"),
    (nets.PlainCNN, "conv1", "conv3"),
    (nets.InceptionNet, "input", "inc1.b3"),
    (nets.InceptionNet, "input", "inc2.b5"),
    (nets.InceptionNet, "input", "inc2.bp"),
    (nets.InceptionNet, "input", "fc"),
    (nets.InceptionNet, "stem", "inc2.b3"),
    (nets.ResNet, "input", "layer1.0"),
    (nets.ResNet, "input", "layer2.0"),
    (nets.ResNet, "input", "fc"),
    (nets.ResNet, "relu", "layer2.0"),
    (nets.ONetLike, "input", "prelu2"),
    (nets.ONetLike, "input", "prelu3"),
    (nets.ONetLike, "input", "dense4"),
    (nets.ONetLike, "prelu1", "prelu3"),
]


@pytest.mark.parametrize(
    "cls, source, target", EXPANDED_PAIRS, ids=[f"{c.__name__}-{s}-{t}" for c, s, t in EXPANDED_PAIRS]
)
def test_expanded_weights_equal_jacobian_of_linearised_model(graphs, cls, source, target):
    graph = graphs[cls]
    (ks,) = compute_kernels(graph, [source], target, expanded=True)
    assert ks.expanded and ks.source == source and ks.target == target
    linear = Linearised(cls())
    x = seeded_input(graph.input_shape, batch=1, seed=4, dtype=torch.float64)

    def read_target(taps, out):
        value = out if TAPS[cls][target] == "out" else taps[TAPS[cls][target]]
        return value[(0, slice(None), *ks.position)] if ks.position else value[0]

    if source == "input":
        jac = torch.autograd.functional.jacobian(lambda inp: read_target(*linear(inp)), x)[:, 0]
    else:
        s_shape = graph.layer(source).shape
        zero = torch.zeros(1, *s_shape, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(
            lambda d: read_target(*linear(x, (TAPS[cls][source], d))), zero
        )
        jac = jac[:, 0]
    placed = torch.zeros_like(jac)
    window = tuple(slice(o, o + k) for o, k in zip(ks.origin, ks.kernels.shape[2:]))
    placed[(slice(None), slice(None), *window)] = ks.kernels.double()
    assert (jac - placed).abs().max() <= 1e-4 * jac.abs().max()
    assert jac.abs().max() > 0


# Direct pairs joined by more than one path (a skip beside a branch through another source of the target):
# there the expanded weight also counts the branch, so it differs from the direct weight.
MULTI_PATH = {
    nets.ResNet: {("relu", "layer1.0"), ("layer1.0", "layer1.1"), ("layer1.1", "layer2.0")},
    nets.MobileNetLike: {
        ("stem.2", "block2.expand.2"),
        ("stem.2", "head.2"),
        ("block1.depthwise.2", "head.2"),
    },
    nets.DenseNetLike: {("input", "dense2.relu"), ("input", "norm"), ("dense1.relu", "norm")},
}


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_adjacent_expanded_weights_equal_direct_weights_where_one_path_joins_them(graphs, direct, cls):
    graph = graphs[cls]
    multi = MULTI_PATH.get(cls, set())
    assert multi <= set(direct[cls])
    for (source, target), d in direct[cls].items():
        (e,) = compute_kernels(graph, [source], target, expanded=True)
        same = (
            e.kernels.shape == d.kernels.shape
            and e.origin == d.origin
            and torch.allclose(e.kernels, d.kernels, atol=1e-6)
        )
        assert same == ((source, target) not in multi), (source, target)


# --------------------------------------------------------------------------------------------------------
# Weights checked entry by entry against the modules' parameters


def bn_fold(bn):
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias.detach() - bn.running_mean * scale


def test_first_conv_kernels_are_the_conv_weights(direct):
    model = nets.PlainCNN()
    ks = direct[nets.PlainCNN]["input", "conv1"]
    assert torch.equal(ks.kernels, model.conv1.weight.detach())  # cross-correlation: no flip
    assert torch.allclose(ks.bias, model.conv1.bias.detach())


def test_resnet_skip_and_downsample_kernels_are_identity_and_folded_conv(direct):
    model = nets.ResNet().eval()
    kernels = direct[nets.ResNet]
    skip = kernels["relu", "layer1.0"]
    assert skip.kernels.shape == (8, 8, 1, 1) and torch.equal(skip.kernels[:, :, 0, 0], torch.eye(8))

    block = model.layer2[0]
    down_scale, down_shift = bn_fold(block.downsample[1])
    branch_scale, branch_shift = bn_fold(block.bn2)
    down = kernels["layer1.1", "layer2.0"]
    expected = block.downsample[0].weight.detach() * down_scale[:, None, None, None]
    assert down.kernels.shape == (12, 8, 1, 1) and torch.allclose(down.kernels, expected, atol=1e-6)
    assert down.origin == (8, 8) and down.position == (4, 4)  # a stride-2 1x1 conv reads pixel 2 * position
    branch = kernels["layer2.0.relu", "layer2.0"]
    assert torch.allclose(
        branch.kernels, block.conv2.weight.detach() * branch_scale[:, None, None, None], atol=1e-6
    )
    assert torch.allclose(branch.bias, down_shift + branch_shift, atol=1e-6)


# (net, source, target): (kernel window, origin, position, stride), from each layer's padding and stride
GEOMETRY = {
    (nets.PlainCNN, "input", "conv1"): ((3, 3), (7, 7), (8, 8), (1, 1)),
    (nets.PlainCNN, "conv2", "conv3"): ((6, 6), (6, 6), (4, 4), (2, 2)),  # pool 2, then 3x3 conv pad 1
    (nets.PlainCNN, "conv3", "fc"): ((8, 8), (0, 0), None, None),
    (nets.InceptionNet, "inc1.b5r", "inc1.b5"): ((5, 5), (6, 6), (8, 8), (1, 1)),
    (nets.InceptionNet, "inc1.bp", "inc2.b1"): ((1, 1), (8, 8), (8, 8), (1, 1)),
    (nets.InceptionNet, "inc1.b1", "inc2.bp"): ((3, 3), (7, 7), (8, 8), (1, 1)),  # pool 3 stride 1 pad 1
    (nets.ResNet, "layer1.1", "layer2.0.relu"): ((3, 3), (7, 7), (4, 4), (2, 2)),
    (nets.ResNet, "relu", "layer1.0"): ((1, 1), (8, 8), (8, 8), (1, 1)),
    (nets.ONetLike, "prelu1", "prelu2"): ((6, 6), (2, 2), (1, 1), (2, 2)),  # 2x2 ceil-mode pool, then conv
    (nets.DenseNetLike, "input", "norm"): ((3, 3), (4, 4), (5, 5), (1, 1)),
    (nets.EfficientNetLike, "dw.2", "se.act"): ((12, 12), (0, 0), (0, 0), None),  # global pooling
}


@pytest.mark.parametrize("key", list(GEOMETRY), ids=[f"{c.__name__}-{s}-{t}" for c, s, t in GEOMETRY])
def test_kernel_window_origin_and_stride_follow_padding_and_stride(direct, key):
    cls, source, target = key
    ks = direct[cls][source, target]
    window, origin, position, stride = GEOMETRY[key]
    got = (tuple(ks.kernels.shape[2:]), ks.origin, ks.position, ks.stride)
    assert got == (window, origin, position, stride)


def test_dense_kernel_from_permuted_source_is_in_source_hw_order(direct):
    """ONetLike: x.permute(0, 3, 2, 1) -> (N, W, H, C), then view: feature index w*H*C + h*C + c."""
    ks = direct[nets.ONetLike]["prelu2", "prelu3"]
    weight = nets.ONetLike().dense3.weight.detach()
    C, H, W = 8, 3, 3
    assert ks.kernels.shape == (16, C, H, W) and ks.position is None
    for t in range(16):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    assert ks.kernels[t, c, h, w] == weight[t, w * H * C + h * C + c], (t, c, h, w)
    assert torch.allclose(ks.bias, nets.ONetLike().dense3.bias.detach())


def test_depthwise_conv_kernels_are_diagonal_across_channels(direct):
    ks = direct[nets.MobileNetLike]["block1.expand.2", "block1.depthwise.2"]
    depthwise = nets.MobileNetLike().eval().block1.depthwise
    scale, shift = bn_fold(depthwise[1])
    assert ks.kernels.shape == (12, 12, 3, 3)
    off_diagonal = ~torch.eye(12, dtype=torch.bool)
    assert torch.count_nonzero(ks.kernels[off_diagonal]) == 0
    diagonal = ks.kernels[torch.arange(12), torch.arange(12)]
    assert torch.allclose(diagonal, depthwise[0].weight.detach()[:, 0] * scale[:, None, None], atol=1e-6)
    assert torch.allclose(ks.bias, shift, atol=1e-6)


def test_subset_of_direct_sources_gives_the_same_kernels(graphs, direct):
    """Regression: asking for 'relu' alone once walked through the omitted source 'layer1.0.relu' and failed."""
    (ks,) = compute_kernels(graphs[nets.ResNet], ["relu"], "layer1.0")
    full = direct[nets.ResNet]["relu", "layer1.0"]
    assert torch.equal(ks.kernels, full.kernels) and ks.origin == full.origin
    assert torch.allclose(ks.bias, full.bias)


def test_subset_of_independent_direct_sources_gives_the_same_kernels(graphs, direct):
    (ks,) = compute_kernels(graphs[nets.InceptionNet], ["inc1.b3"], "inc2.b1")
    assert torch.equal(ks.kernels, direct[nets.InceptionNet]["inc1.b3", "inc2.b1"].kernels)


def test_direct_weights_refuse_a_source_that_is_not_direct(graphs):
    """EfficientNet: head_act's only direct source is the gate 'se'; dw.2 reaches it through the SE MLP."""
    with pytest.raises(UsageError) as info:
        compute_kernels(graphs[nets.EfficientNetLike], ["dw.2"], "head_act")
    message = str(info.value)
    assert "'dw.2' is not a direct source of 'head_act'" in message and "expanded" in message


def test_float64_model_gives_float64_kernels_equal_to_its_weights():
    model = nets.PlainCNN().double()
    (ks,) = compute_kernels(build_graph(model), ["input"], "conv1")
    assert ks.kernels.dtype == torch.float64
    assert torch.equal(ks.kernels, model.conv1.weight.detach())


def test_functional_relu_patch_reaches_the_nets():
    """Guard for the linearised reference: the nets call F.relu through the module attribute."""
    calls = []
    with mock.patch("torch.nn.functional.relu", lambda x, *a, **k: calls.append(1) or x):
        nets.PlainCNN()(torch.zeros(1, 3, 16, 16))
    assert len(calls) == 3
    assert F.relu is torch.nn.functional.relu


def test_upsampling_paths_are_linear_and_their_weights_are_finite_differences():
    """nn.Upsample, bilinear F.interpolate and repeat_interleave (circuits/graph/ops/resample.py) each join
    two conv layers by a linear path; its kernels are nudges of the real model."""
    graph = build_graph(nets.UpsamplingNet())
    assert {name: layer.sources for name, layer in graph.layers.items() if layer.sources} == {
        "conv1": ["input"], "conv2": ["conv1"], "conv3": ["conv2"], "conv4": ["conv3"],
    }  # fmt: skip
    assert "Upsample" in graph.layers["conv2"].path_ops and "repeat_interleave" in graph.layers["conv4"].path_ops
    direct = {}
    for target in graph.targets():
        for ks in compute_kernels(graph, target.sources, target.name):
            direct[ks.source, ks.target] = ks
    assert direct["conv3", "conv4"].kernels.shape[-2:] == (2, 2)  # 3x3 taps over a map repeated 2x2
    assert_direct_weights_are_finite_differences(graph, direct, copy.deepcopy(graph.gm).double(), "upsampling")


def test_a_receptive_field_cut_by_the_border_is_not_contracted_and_still_equals_the_jacobian():
    """Contracting kernels wider than the map is wasted work (on a 224-pixel MobileNetV2, gigabytes held
    beside a motif scan's canvas): the engine goes straight to the Jacobian, whose crop is exact."""
    torch.manual_seed(0)
    convs = [nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(5)]  # field 11x11 on an 8x8 map
    model = nn.Sequential(*[m for c in convs for m in (c, nn.ReLU())]).eval()
    graph = build_graph(model, (3, 8, 8))
    target, inside = graph.targets()[-1].name, graph.targets()[1].name
    calls = []
    real = compute_kernels.__globals__["compose"]
    with mock.patch("circuits.trace.kernels.compose", side_effect=lambda *a, **k: calls.append(a) or real(*a, **k)):
        (cut,) = compute_kernels(graph, ["input"], target, expanded=True)
        assert calls == [] and cut.clipped
        (whole,) = compute_kernels(graph, ["input"], inside, expanded=True)  # a 5x5 field inside the map
        assert len(calls) == 1 and not whole.clipped
    linear = nn.Sequential(*convs).double()
    x = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda inp: linear(inp)[0, :, 4, 4], x)[:, 0]
    placed = torch.zeros_like(jac)
    placed[(slice(None), slice(None), *[slice(o, o + k) for o, k in zip(cut.origin, cut.kernels.shape[2:])])] = (
        cut.kernels.double())  # fmt: skip
    assert (jac - placed).abs().max() <= 1e-4 * jac.abs().max()
