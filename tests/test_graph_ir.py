"""The neuron-graph IR (docs/neuron-graph.md) on the architecture twins in tests/nets.py.

Every expected table below is worked out by hand from the nets' source code, not copied from the IR:
layer names are the qualified names of the producing modules (a functional nonlinearity such as
``F.relu(self.conv1(x))`` takes the name of the single-use module that feeds it), shapes are (C, H, W)
without the batch, and ``sources`` are the layers whose paths to the layer's pre-activation contain no
nonlinearity (concat aliases are walked through to the layers that compute their channels).
"""

import copy

import nets
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from circuits.errors import CircuitsError, UnknownNeuronError, UnsupportedOpError, UsageError
from circuits.graph import build_graph

# name: (kind, shape, sources)
EXPECTED = {
    nets.PlainCNN: {
        "input": ("input", (3, 16, 16), []),
        "conv1": ("activation", (6, 16, 16), ["input"]),
        "conv2": ("activation", (8, 16, 16), ["conv1"]),
        "conv3": ("activation", (10, 8, 8), ["conv2"]),  # MaxPool2d(2) halves 16 -> 8
        "fc": ("output", (5,), ["conv3"]),
    },
    nets.InceptionNet: {
        "input": ("input", (3, 16, 16), []),
        "stem": ("activation", (8, 16, 16), ["input"]),
        "inc1.b1": ("activation", (4, 16, 16), ["stem"]),
        "inc1.b3r": ("activation", (4, 16, 16), ["stem"]),
        "inc1.b3": ("activation", (6, 16, 16), ["inc1.b3r"]),
        "inc1.b5r": ("activation", (2, 16, 16), ["stem"]),
        "inc1.b5": ("activation", (3, 16, 16), ["inc1.b5r"]),
        "inc1.bp": ("activation", (3, 16, 16), ["stem"]),
        "inc1": ("concat", (16, 16, 16), ["inc1.b1", "inc1.b3", "inc1.b5", "inc1.bp"]),
        "inc2.b1": ("activation", (5, 16, 16), ["inc1.b1", "inc1.b3", "inc1.b5", "inc1.bp"]),
        "inc2.b3r": ("activation", (4, 16, 16), ["inc1.b1", "inc1.b3", "inc1.b5", "inc1.bp"]),
        "inc2.b3": ("activation", (6, 16, 16), ["inc2.b3r"]),
        "inc2.b5r": ("activation", (2, 16, 16), ["inc1.b1", "inc1.b3", "inc1.b5", "inc1.bp"]),
        "inc2.b5": ("activation", (3, 16, 16), ["inc2.b5r"]),
        "inc2.bp": ("activation", (2, 16, 16), ["inc1.b1", "inc1.b3", "inc1.b5", "inc1.bp"]),
        "inc2": ("concat", (16, 16, 16), ["inc2.b1", "inc2.b3", "inc2.b5", "inc2.bp"]),
        "fc": ("output", (4,), ["inc2.b1", "inc2.b3", "inc2.b5", "inc2.bp"]),
    },
    nets.ResNet: {
        "input": ("input", (3, 16, 16), []),
        "relu": ("activation", (8, 16, 16), ["input"]),
        # BasicBlock's one ReLU module is called twice: the first call keeps the module's name, the second
        # (after the residual add) is what the block returns, so it takes the block's name.
        "layer1.0.relu": ("activation", (8, 16, 16), ["relu"]),
        "layer1.0": ("activation", (8, 16, 16), ["relu", "layer1.0.relu"]),
        "layer1.1.relu": ("activation", (8, 16, 16), ["layer1.0"]),
        "layer1.1": ("activation", (8, 16, 16), ["layer1.0", "layer1.1.relu"]),
        "layer2.0.relu": ("activation", (12, 8, 8), ["layer1.1"]),  # stride 2
        "layer2.0": ("activation", (12, 8, 8), ["layer1.1", "layer2.0.relu"]),  # downsample skip
        "fc": ("output", (3,), ["layer2.0"]),
    },
    nets.ONetLike: {
        "input": ("input", (3, 12, 12), []),
        "prelu1": ("activation", (6, 10, 10), ["input"]),  # 3x3 conv, no padding
        "prelu2": ("activation", (8, 3, 3), ["prelu1"]),  # pool 10 -> 5, conv 5 -> 3
        "prelu3": ("activation", (16,), ["prelu2"]),  # through permute + view + Linear
        "dense4": ("activation", (2,), ["prelu3"]),  # softmax: an activation that is the model's output
    },
    nets.MLP: {
        "input": ("input", (1, 8, 8), []),
        "act1": ("activation", (12,), ["input"]),
        "act2": ("activation", (10,), ["act1"]),
        "fc3": ("output", (3,), ["act2"]),
    },
    nets.MobileNetLike: {
        "input": ("input", (3, 12, 12), []),
        "stem.2": ("activation", (4, 12, 12), ["input"]),
        "block1.expand.2": ("activation", (12, 12, 12), ["stem.2"]),
        "block1.depthwise.2": ("activation", (12, 12, 12), ["block1.expand.2"]),
        # block1 returns x + project(...): linear, so block2 reads the skip and the projection both
        "block2.expand.2": ("activation", (8, 12, 12), ["stem.2", "block1.depthwise.2"]),
        "block2.depthwise.2": ("activation", (8, 12, 12), ["block2.expand.2"]),
        "head.2": ("output", (3,), ["stem.2", "block1.depthwise.2", "block2.depthwise.2"]),
    },
    nets.DenseNetLike: {
        "input": ("input", (3, 10, 10), []),
        # conv0 has no nonlinearity: the input reaches every later pre-activation through the concats
        "dense1.relu": ("activation", (4, 10, 10), ["input"]),
        "dense2.relu": ("activation", (7, 10, 10), ["input", "dense1.relu"]),
        "norm": ("activation", (10, 10, 10), ["input", "dense1.relu", "dense2.relu"]),
        "fc": ("output", (2,), ["norm"]),
    },
    nets.EfficientNetLike: {
        "input": ("input", (3, 12, 12), []),
        "stem.2": ("activation", (6, 12, 12), ["input"]),
        "dw.2": ("activation", (6, 12, 12), ["stem.2"]),
        "se.act": ("activation", (2, 1, 1), ["dw.2"]),
        "se.gate": ("activation", (6, 1, 1), ["se.act"]),
        "se": ("gate", (6, 12, 12), ["dw.2", "se.gate"]),  # x * sigmoid(...): both factors depend on x
        "head_act": ("activation", (5, 12, 12), ["se"]),
        "fc": ("output", (3,), ["head_act"]),
    },
}

EXPECTED_OUTPUTS = {
    nets.PlainCNN: ["fc"], nets.InceptionNet: ["fc"], nets.ResNet: ["fc"], nets.ONetLike: ["dense4"],
    nets.MLP: ["fc3"], nets.MobileNetLike: ["head.2"], nets.DenseNetLike: ["fc"], nets.EfficientNetLike: ["fc"],
}  # fmt: skip

NETS = list(EXPECTED)


@pytest.fixture(scope="module")
def graphs():
    return {cls: build_graph(cls()) for cls in NETS}


def test_every_architecture_twin_has_an_expected_table():
    assert set(NETS) == set(nets.ALL_NETS)


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_layers_names_kinds_shapes_and_sources_match_hand_tables(graphs, cls):
    graph = graphs[cls]
    got = {
        name: (layer.kind, tuple(layer.shape), list(layer.sources)) for name, layer in graph.layers.items()
    }
    assert got == EXPECTED[cls]
    assert list(graph.layers) == list(EXPECTED[cls]), "layers must be listed in topological order"


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_channels_and_spatial_follow_the_shape(graphs, cls):
    for name, (_, shape, _) in EXPECTED[cls].items():
        layer = graphs[cls].layer(name)
        assert layer.channels == shape[0]
        assert layer.spatial == shape[1:]


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_only_model_outputs_are_marked_output(graphs, cls):
    outputs = [name for name, layer in graphs[cls].layers.items() if layer.is_output]
    assert outputs == EXPECTED_OUTPUTS[cls]


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_layer_nodes_hold_the_activation_and_preact_the_nonlinearity_input(graphs, cls):
    """Run the real model with forward hooks and compare with the FX nodes the IR points at."""
    graph = graphs[cls]
    x = torch.randn(2, *cls.input_shape, generator=torch.Generator().manual_seed(11))
    values = _fx_values(graph.gm, x)
    model = cls().eval()
    with torch.no_grad():
        out = model(x)
    assert torch.allclose(values[graph.layer(EXPECTED_OUTPUTS[cls][0]).node], out, atol=1e-6)
    for layer in graph.layers.values():
        if layer.kind == "activation" and layer.nonlinearity not in ("softmax",):
            act, pre = values[layer.node], values[layer.preact]
            nonlin = _NONLINEARITY[cls](layer.name)
            assert torch.allclose(act, nonlin(pre), atol=1e-6), layer.name


def _prelu_of(model, name):
    module = dict(model.named_modules())[name]
    return lambda t: F.prelu(t, module.weight.detach())


_NONLINEARITY = {
    nets.PlainCNN: lambda name: torch.relu,
    nets.InceptionNet: lambda name: torch.relu,
    nets.ResNet: lambda name: torch.relu,
    nets.ONetLike: lambda name: _prelu_of(nets.ONetLike(), name),
    nets.MLP: lambda name: {"act1": torch.tanh, "act2": F.gelu}[name],
    nets.MobileNetLike: lambda name: F.relu6,
    nets.DenseNetLike: lambda name: torch.relu,
    nets.EfficientNetLike: lambda name: torch.sigmoid if name == "se.gate" else F.silu,
}


def _fx_values(gm, x):
    values = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                values[n.name] = out.detach().clone()  # clone: in-place ReLUs overwrite their input later
            return out

    with torch.no_grad():
        Recorder(gm).run(x)
    return values


def test_concat_layers_list_their_parts_with_channel_ranges(graphs):
    graph = graphs[nets.InceptionNet]
    # Inception(8, 4, 4, 6, 2, 3, 3): b1 4, b3 6, b5 3, pool branch 3
    assert graph.layer("inc1").parts == [
        ("inc1.b1", 0, 4),
        ("inc1.b3", 4, 10),
        ("inc1.b5", 10, 13),
        ("inc1.bp", 13, 16),
    ]
    # Inception(16, 5, 4, 6, 2, 3, 2): b1 5, b3 6, b5 3, pool branch 2
    assert graph.layer("inc2").parts == [
        ("inc2.b1", 0, 5),
        ("inc2.b3", 5, 11),
        ("inc2.b5", 11, 14),
        ("inc2.bp", 14, 16),
    ]
    assert graph.layer("inc1").preact is None, "a concat alias has no weights of its own"


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("inc1:0", ("inc1.b1", 0)),
        ("inc1:3", ("inc1.b1", 3)),
        ("inc1:4", ("inc1.b3", 0)),
        ("inc1:5", ("inc1.b3", 1)),
        ("inc1:12", ("inc1.b5", 2)),
        ("inc1:13", ("inc1.bp", 0)),
        ("inc1:15", ("inc1.bp", 2)),
        ("inc2:14", ("inc2.bp", 0)),
        ("inc1.b3:1", ("inc1.b3", 1)),
        ("fc:3", ("fc", 3)),
    ],
)
def test_neuron_resolves_concat_channels_to_the_branch_that_computes_them(graphs, spec, expected):
    assert graphs[nets.InceptionNet].neuron(spec) == expected


def test_concat_channel_is_the_branch_channel_in_the_real_model(graphs):
    """inc1:5 resolves to inc1.b3:1: check on real activations that they are the same numbers."""
    graph = graphs[nets.InceptionNet]
    values = _fx_values(graph.gm, torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    layer, channel = graph.neuron("inc1:5")
    assert torch.equal(values[graph.layer("inc1").node][:, 5], values[graph.layer(layer).node][:, channel])


def test_unknown_layer_suggests_close_names(graphs):
    with pytest.raises(UnknownNeuronError) as info:
        graphs[nets.InceptionNet].neuron("inc1.b4:0")
    message = str(info.value)
    assert "unknown layer 'inc1.b4'" in message
    assert "did you mean" in message and "'inc1.b5'" in message and "'inc1.bp'" in message


def test_unknown_layer_far_from_every_name_suggests_nothing(graphs):
    with pytest.raises(UnknownNeuronError) as info:
        graphs[nets.ResNet].layer("zzzzzzzz")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("spec", ["inc1:16", "inc1:-1", "inc1.b5:3"])
def test_channel_out_of_range_names_the_valid_range(graphs, spec):
    layer = spec.split(":")[0]
    channels = EXPECTED[nets.InceptionNet][layer][1][0]
    with pytest.raises(UnknownNeuronError) as info:
        graphs[nets.InceptionNet].neuron(spec)
    message = str(info.value)
    assert f"'{layer}'" in message and f"{channels} channels" in message and f"0..{channels - 1}" in message


@pytest.mark.parametrize(
    "spec, hint",
    [
        ("conv1", "LAYER:CHANNEL"),
        (":3", "LAYER:CHANNEL"),
        ("conv1:x", "'x' is not an integer"),
        ("conv1:1.5", "not an integer"),
    ],
)
def test_malformed_neuron_spec_is_a_usage_error_saying_what_to_write(graphs, spec, hint):
    with pytest.raises(UsageError) as info:
        graphs[nets.PlainCNN].neuron(spec)
    assert hint in str(info.value)
    assert spec in str(info.value)


# --------------------------------------------------------------------------------------------------------
# The caller's model is left alone


def test_build_graph_leaves_a_train_mode_model_in_train_mode_and_unchanged():
    model = nets.ResNet().train()
    model.layer1[1].eval()  # mixed modes must survive as they are
    modes = {name: m.training for name, m in model.named_modules()}
    before = copy.deepcopy(model.state_dict())
    grads = {name: p.requires_grad for name, p in model.named_parameters()}

    graph = build_graph(model)

    assert {name: m.training for name, m in model.named_modules()} == modes
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:  # BN running stats and num_batches_tracked included
        assert torch.equal(before[key], after[key]), key
    assert {name: p.requires_grad for name, p in model.named_parameters()} == grads
    # fx rebuilds container modules afresh; what computes (BN, dropout, ...) must be in eval mode
    leaves = [name for name, m in graph.gm.named_modules() if not list(m.children())]
    assert "layer1.0.bn1" in leaves
    assert [name for name in leaves if dict(graph.gm.named_modules())[name].training] == []


def test_graph_copy_uses_eval_statistics_even_when_the_model_is_in_train_mode():
    model = nets.ResNet().train()
    graph = build_graph(model)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        assert torch.allclose(graph.gm(x), reference(x), atol=1e-6)
    assert model.training


# --------------------------------------------------------------------------------------------------------
# Ops the IR cannot read, and bad input shapes


class _Stem(nn.Module):
    input_shape = (3, 8, 8)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)


class WithLayerNorm(_Stem):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm([4, 6, 6])

    def forward(self, x):
        return torch.relu(self.ln(self.conv(x)))


class WithAbs(_Stem):
    def forward(self, x):
        return torch.relu(torch.abs(self.conv(x)))


class WithSort(_Stem):
    def forward(self, x):
        return torch.relu(torch.sort(self.conv(x), dim=1).values)


class WithChannelMax(_Stem):
    def forward(self, x):
        return torch.relu(torch.max(self.conv(x), dim=1, keepdim=True)[0])


@pytest.mark.parametrize(
    "cls, op, node", [(WithLayerNorm, "LayerNorm", "ln"), (WithAbs, "abs", "abs_1")], ids=["LayerNorm", "abs"]
)
def test_unsupported_op_names_the_op_and_the_node(cls, op, node):
    with pytest.raises(UnsupportedOpError) as info:
        build_graph(cls())
    message = str(info.value)
    assert f"'{op}'" in message and f"'{node}'" in message
    assert "circuits/graph/ops/" in message


class WithGroupNorm(_Stem):
    def __init__(self):
        super().__init__()
        self.gn = nn.GroupNorm(2, 4)

    def forward(self, x):
        return torch.relu(self.gn(self.conv(x)))


class WithFunctionalLayerNorm(_Stem):
    def forward(self, x):
        return torch.relu(F.layer_norm(self.conv(x), [4, 6, 6]))


@pytest.mark.parametrize("cls", [WithGroupNorm, WithFunctionalLayerNorm], ids=["GroupNorm", "F.layer_norm"])
def test_normalisation_by_input_statistics_is_refused_with_the_reason(cls):
    """Not linear (it divides by the input's own spread) and not elementwise: neither reading is honest."""
    with pytest.raises(UnsupportedOpError) as info:
        build_graph(cls())
    assert "own statistics" in str(info.value) and "circuits/graph/ops/normalisation.py" in str(info.value)


@pytest.mark.parametrize("cls, op", [(WithSort, "sort"), (WithChannelMax, "max")], ids=["sort", "max-dim"])
def test_unsupported_tuple_returning_op_is_refused(cls, op):
    """Regression: ops returning a tuple had no node shape and were silently read as linear."""
    with pytest.raises(UnsupportedOpError) as info:
        build_graph(cls())
    assert f"'{op}'" in str(info.value)


class ValueDependentBranch(_Stem):
    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent: neither fx nor torch.export can capture this
            return torch.relu(y)
        return torch.tanh(y)


class ShapeDependentBranch(_Stem):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        y = self.act(self.conv(x))
        if y.shape[-1] > 4:  # fx cannot branch on a traced shape; torch.export specialises it
            y = torch.tanh(y)
        return self.fc(y.flatten(1))


def test_shape_dependent_control_flow_falls_back_to_torch_export():
    graph = build_graph(ShapeDependentBranch())
    assert graph.capture_method == "export"
    got = {
        name: (layer.kind, tuple(layer.shape), list(layer.sources)) for name, layer in graph.layers.items()
    }
    # the tanh is a functional call with no module of its own: its name is the FX node name
    assert got == {
        "input": ("input", (3, 8, 8), []),
        "act": ("activation", (4, 6, 6), ["input"]),
        "tanh": ("activation", (4, 6, 6), ["act"]),
        "fc": ("output", (2,), ["tanh"]),
    }


def test_value_dependent_control_flow_is_an_unsupported_op_error_not_a_traceback():
    with pytest.raises(CircuitsError) as info:
        build_graph(ValueDependentBranch())
    assert type(info.value) is UnsupportedOpError
    message = str(info.value)
    assert "ValueDependentBranch" in message and "control flow" in message
    assert "\n" not in message, "one sentence, not a traceback"


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 16, 16)])
def test_wrong_input_shape_is_a_usage_error_mentioning_input_shape(shape):
    with pytest.raises(UsageError) as info:
        build_graph(nets.PlainCNN(), input_shape=shape)
    message = str(info.value)
    assert "--input-shape" in message and str(shape) in message


def test_missing_input_shape_asks_for_input_shape():
    with pytest.raises(UsageError, match="--input-shape"):
        build_graph(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))


def test_explicit_input_shape_overrides_the_model_attribute():
    graph = build_graph(nets.ResNet(), input_shape=(3, 32, 32))  # adaptive pooling: any size fits
    assert graph.input_shape == (3, 32, 32)
    assert graph.layer("layer1.1").shape == (8, 32, 32)
    assert graph.layer("layer2.0").shape == (12, 16, 16)


def test_float64_model_builds_the_same_graph():
    """Regression: a float64 model once failed with a UsageError blaming the input shape."""
    graph = build_graph(nets.PlainCNN().double())
    got = {
        name: (layer.kind, tuple(layer.shape), list(layer.sources)) for name, layer in graph.layers.items()
    }
    assert got == EXPECTED[nets.PlainCNN]
