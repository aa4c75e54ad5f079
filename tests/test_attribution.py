"""Attribution checked against a per-pair autograd loop and against captum; ablation validates it."""

import pytest
import torch
import torch.nn.functional as F
from nets import MLP, EfficientNetLike, ResNet

from circuits.errors import DataError
from circuits.graph import build_graph
from circuits.trace import attribution
from circuits.trace.edges import ablate, rank_correlation, validate


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
