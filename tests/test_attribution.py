"""Attribution checked against a per-pair autograd loop and against captum; ablation validates it.

The kernel route (one weight-gradient backward for every edge, where the path to T's pre-activation is
linear) is checked against the batched route on several architectures, and against per-pair loops on the
real model where it must not be taken (max pooling on the path).
"""

import pytest
import torch
import torch.nn.functional as F
from nets import MLP, EfficientNetLike, InceptionNet, MobileNetLike, PlainCNN, ResNet
from torch import nn

from circuits.errors import DataError, UsageError
from circuits.graph import build_graph
from circuits.graph.run import node_values
from circuits.trace import attribution
from circuits.trace.edges import ablate, attribute, kernel_route_applies, rank_correlation, validate


def images(shape, n=12, seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def test_attribution_equals_a_straightforward_per_pair_reference():
    model = MLP().eval()
    x = images(model.input_shape)
    # reference, one autograd call per (target, source) pair, straight from the module
    h = torch.tanh(model.fc1(x.flatten(1))).detach().requires_grad_(True)
    out = F.gelu(model.fc2(h))
    reference = torch.zeros(10, 12)
    for k in range(10):
        (grad,) = torch.autograd.grad(out[:, k].sum(), h, retain_graph=True)
        for c in range(12):
            reference[k, c] = (h[:, c] * grad[:, c]).mean()

    result = attribution(model, "act1", "act2", x)

    assert result.tensor.shape == (10, 12)
    assert torch.allclose(result.tensor, reference.detach(), atol=1e-5, rtol=1e-4)


def test_attribution_matches_captum_layer_gradient_x_activation_on_a_conv_net():
    captum_attr = pytest.importorskip("captum.attr")
    model = EfficientNetLike().eval()
    x = images(model.input_shape, n=6)
    captured = {}
    hook = model.dw.register_forward_hook(lambda m, i, o: captured.__setitem__("dw", o))

    def summed_dw(inp):
        model(inp)
        return captured["dw"].sum((2, 3))

    method = captum_attr.LayerGradientXActivation(summed_dw, model.stem[2])
    expected = torch.stack([method.attribute(x, target=k).sum((2, 3)).mean(0) for k in range(6)])
    hook.remove()

    result = attribution(model, "stem.2", "dw.2", x)

    assert torch.allclose(result.tensor, expected.detach(), atol=1e-4, rtol=1e-4)


def test_attribution_through_a_residual_block_ranks_edges_like_ablation():
    model = ResNet()
    graph = build_graph(model)
    x = images(model.input_shape, n=24)
    result = attribution(graph, "layer1.0", "layer1.1", x)
    report = validate(graph, result, x, mode="zero")
    assert report["ablation"].shape == result.tensor.shape
    assert report["rank_correlation"] >= 0.8


def test_zero_ablation_effect_is_measured_on_the_real_model():
    model = MLP().eval()
    x = images(model.input_shape)
    effect = ablate(build_graph(model), "act1", "act2", x)
    h = torch.tanh(model.fc1(x.flatten(1)))
    base = F.gelu(model.fc2(h))
    h2 = h.clone()
    h2[:, 3] = 0
    expected = (base - F.gelu(model.fc2(h2))).mean(0)
    assert torch.allclose(effect[:, 3], expected.detach(), atol=1e-5)


def test_rank_correlation_of_identical_and_reversed_orders():
    a = torch.tensor([0.1, 0.5, 0.3, 0.9])
    assert rank_correlation(a, a * 3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)


def test_data_of_the_wrong_shape_is_refused_clearly():
    with pytest.raises(DataError, match="shape"):
        attribution(MLP(), "act1", "act2", torch.zeros(4, 3, 8, 8))


# --- the kernel route ----------------------------------------------------------------------------------

KERNEL_ROUTE_PAIRS = [
    (ResNet, "relu", "layer1.0.relu"),  # conv + BN
    (ResNet, "layer1.0.relu", "layer1.0"),  # conv + BN + the residual skip (off the path: real values)
    (ResNet, "layer1.1", "layer2.0.relu"),  # stride 2
    (ResNet, "layer2.0", "fc"),  # average pool, flatten, dense output
    (InceptionNet, "inc1", "inc2.b1"),  # a concat source
    (InceptionNet, "inc2.b5r", "inc2.b5"),  # 5x5, padding 2
    (MobileNetLike, "block1.expand.2", "block1.depthwise.2"),  # depthwise, ReLU6
    (MobileNetLike, "block1.depthwise.2", "block2.expand.2"),  # project, add, expand
    (PlainCNN, "conv1", "conv2"),
    (PlainCNN, "conv3", "fc"),
    (MLP, "act1", "act2"),  # dense, GELU
]


@pytest.mark.parametrize("net, source, target", KERNEL_ROUTE_PAIRS, ids=lambda v: getattr(v, "__name__", v))
def test_kernel_route_equals_the_batched_route(net, source, target):
    model = net()
    graph = build_graph(model)
    x = images(model.input_shape, n=5, seed=3)
    assert kernel_route_applies(graph, source, target)
    fast = attribute(graph, source, target, x, batch_size=3)  # two batches
    general = attribute(graph, source, target, x, route="batched")
    assert fast.route == "kernel" and general.route == "batched"
    scale = float(general.tensor.abs().max())
    assert torch.allclose(fast.tensor, general.tensor, rtol=1e-4, atol=1e-5 * scale)


def per_pair_reference(s_act, head, n_targets):
    """attr[k, c] by one autograd call per target channel, on the real modules ``head`` (S -> T)."""
    s = s_act.detach().requires_grad_(True)
    out = head(s)
    reference = torch.zeros(n_targets, s.shape[1])
    for k in range(n_targets):
        (grad,) = torch.autograd.grad(out[:, k].sum(), s, retain_graph=True)
        reference[k] = (s * grad).flatten(2).sum(-1).mean(0)
    return reference


def test_max_pooling_on_the_path_falls_back_and_matches_the_real_model():
    model = PlainCNN().eval()
    graph = build_graph(model)
    x = images(model.input_shape, n=5)
    assert not kernel_route_applies(graph, "conv2", "conv3")
    result = attribute(graph, "conv2", "conv3", x)
    assert result.route == "batched"
    with torch.no_grad():
        s_act = F.relu(model.conv2(F.relu(model.conv1(x))))
    reference = per_pair_reference(s_act, lambda s: F.relu(model.conv3(model.pool(s))), 10)  # the real max
    assert torch.allclose(result.tensor, reference, atol=1e-5, rtol=1e-4)
    with pytest.raises(UsageError, match="not linear"):
        attribute(graph, "conv2", "conv3", x, route="kernel")


@pytest.mark.parametrize(
    "net, source, target",
    [(ResNet, "layer1.0", "layer1.1"), (InceptionNet, "stem", "inc1.bp"), (MobileNetLike, "stem.2", "block2.expand.2")],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_nonlinear_paths_take_the_batched_route(net, source, target):
    graph = build_graph(net())
    assert not kernel_route_applies(graph, source, target)


class _AvgPoolNet(nn.Module):
    """Average pooling that ignores its padding: not a convolution at the border, so no kernel route."""

    input_shape = (2, 7, 7)

    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv2(self.pool(F.relu(self.conv1(x)))))


def test_kernels_that_do_not_reproduce_the_path_are_not_used():
    model = _AvgPoolNet().eval()
    graph = build_graph(model)
    x = images(model.input_shape, n=4)
    assert not kernel_route_applies(graph, "conv1", "conv2")  # the probe check catches the border
    result = attribute(graph, "conv1", "conv2", x)
    with torch.no_grad():
        s_act = F.relu(model.conv1(x))
    reference = per_pair_reference(s_act, lambda s: torch.tanh(model.conv2(model.pool(s))), 4)
    assert result.route == "batched"
    assert torch.allclose(result.tensor, reference, atol=1e-5, rtol=1e-4)


def test_ablation_through_max_pooling_is_measured_on_the_real_model():
    model = PlainCNN().eval()
    x = images(model.input_shape, n=4)
    effect = ablate(build_graph(model), "conv2", "conv3", x)
    with torch.no_grad():
        h = F.relu(model.conv2(F.relu(model.conv1(x))))
        base = F.relu(model.conv3(model.pool(h))).sum((2, 3))
        h[:, 5] = 0
        expected = (base - F.relu(model.conv3(model.pool(h))).sum((2, 3))).mean(0)
    assert torch.allclose(effect[:, 5], expected, atol=1e-5)


# --- the forward pass behind both ---------------------------------------------------------------------


def test_node_values_runs_only_what_the_kept_nodes_need():
    model = InceptionNet()
    graph = build_graph(model)
    x = images(model.input_shape, n=3)
    full = node_values(graph, x)
    called = []
    hooks = [graph.modules[name].register_forward_hook(lambda *_, n=name: called.append(n))
             for name in ("inc1.b5.conv", "inc2.b1.conv", "fc")]  # fmt: skip
    keep = {graph.layer("inc1.b3").node, graph.layer("inc2.b3r").preact}
    kept = node_values(graph, x, keep=keep)
    for h in hooks:
        h.remove()
    assert set(kept) == keep
    assert called == ["inc1.b5.conv"]  # an input of inc1's concat; nothing after inc2.b3r's pre-activation
    for name in keep:
        assert torch.allclose(kept[name], full[name], atol=1e-5) and kept[name].is_contiguous()


def test_node_values_runs_nothing_after_stop_at():
    model = InceptionNet()
    graph = build_graph(model)
    called = []
    hook = graph.modules["fc"].register_forward_hook(lambda *_: called.append("fc"))
    stop = graph.layer("inc2.b3r").preact
    try:
        values = node_values(graph, images(model.input_shape, n=2), stop_at=stop)
    finally:
        hook.remove()
    assert called == [] and stop in values and graph.layer("fc").node not in values


class _ViewNet(nn.Module):
    input_shape = (2, 4, 4)

    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(48, 2)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))  # .view needs NCHW order: the channels-last run falls back


def test_node_values_of_a_model_that_needs_nchw_order():
    model = _ViewNet().eval()
    x = images(model.input_shape, n=2)
    values = node_values(build_graph(model), x)
    assert torch.allclose(values["fc"], model(x), atol=1e-6)


# --- direct attribution: the neuron graph's edges, the target's other direct sources held ----------------


class SkipAndBranch(nn.Module):
    """``t = relu(conv_t(a + conv_p(b)))`` with ``b = relu(conv_b(a))``: t's direct sources are a and b,
    and a also reaches t through b (the shape of a MobileNetV2 block: a skip and a nonlinear branch)."""

    input_shape = (2, 8, 8)

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.conv_a = nn.Conv2d(2, 3, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_p = nn.Conv2d(4, 3, 1)
        self.conv_t = nn.Conv2d(3, 5, 3, padding=1)
        self.relu_a, self.relu_b, self.relu_t = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        a = self.relu_a(self.conv_a(x))
        b = self.relu_b(self.conv_b(a))
        return self.relu_t(self.conv_t(a + self.conv_p(b)))


def _reference(model, x, hold_b: bool) -> torch.Tensor:
    """attr[k, c] = mean_N sum_pos a_c * d(sum t_k)/d a_c, by one autograd call per target channel."""
    a = model.relu_a(model.conv_a(x)).detach().requires_grad_(True)
    b = model.relu_b(model.conv_b(a.detach() if hold_b else a))
    t = model.relu_t(model.conv_t(a + model.conv_p(b))).sum((2, 3))
    rows = []
    for k in range(t.shape[1]):
        (grad,) = torch.autograd.grad(t[:, k].sum(), a, retain_graph=True)
        rows.append((grad * a).sum((2, 3)).mean(0))
    return torch.stack(rows).detach()


def test_direct_attribution_holds_the_other_direct_sources_and_takes_the_kernel_route():
    model = SkipAndBranch().eval()
    graph = build_graph(model)
    assert sorted(graph.layer("relu_t").sources) == ["relu_a", "relu_b"]
    x = images(model.input_shape, n=6, seed=4)
    direct = attribution(graph, "relu_a", "relu_t", x, direct=True)
    total = attribution(graph, "relu_a", "relu_t", x)
    torch.testing.assert_close(direct.tensor, _reference(model, x, hold_b=True), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(total.tensor, _reference(model, x, hold_b=False), atol=1e-4, rtol=1e-4)
    assert (direct.tensor - total.tensor).abs().max() > 0.05 * total.tensor.abs().max()  # the branch matters
    assert direct.route == "kernel" and total.route == "batched"  # only the direct path is linear
    forced = attribute(graph, "relu_a", "relu_t", x, route="batched", direct=True)
    torch.testing.assert_close(forced.tensor, direct.tensor, atol=1e-4, rtol=1e-4)


def test_direct_attribution_ranks_edges_like_direct_ablation():
    model = SkipAndBranch().eval()
    graph = build_graph(model)
    x = images(model.input_shape, n=16, seed=5)
    report = validate(graph, attribution(graph, "relu_a", "relu_t", x, direct=True), x)
    assert report["rank_correlation"] >= 0.8


def test_direct_attribution_needs_a_direct_source():
    graph = build_graph(SkipAndBranch().eval())
    x = images(graph.input_shape, n=2)
    with pytest.raises(UsageError, match="not a direct source of 'relu_t'.*direct=False"):
        attribution(graph, "input", "relu_t", x, direct=True)


def test_extract_ranks_a_circuits_edges_by_direct_attribution():
    from circuits.extraction import extract

    model = MobileNetLike().eval()
    graph = build_graph(model)
    x = images(model.input_shape, n=6, seed=6)
    circuit = extract(graph, "block2.expand.2:1", depth=1, top_k=100, method="attribution", data=x)
    sources = graph.layer("block2.expand.2").sources
    assert len(sources) == 2  # the previous block's branch and its skip
    for source in sources:
        expected = attribution(graph, source, "block2.expand.2", x, direct=True).tensor[1]
        for c in range(graph.layer(source).channels):
            edge = circuit.edges[f"{source}:{c}", "block2.expand.2:1"]
            assert edge["weight"] == pytest.approx(float(expected[c]), rel=1e-5, abs=1e-7)
