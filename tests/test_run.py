"""graph.run: activations keyed by layer name, on the graph's private copy, with nothing left behind."""

import copy

import pytest
import torch
import torch.nn.functional as F
from nets import PlainCNN
from torch import nn

from circuits.errors import DataError, UnknownNeuronError, UsageError
from circuits.graph import build_graph
from circuits.graph.run import resolve_device


class InplaceNet(nn.Module):
    """conv -> ReLU(inplace) twice, then a dense head: every pre-activation is overwritten by its ReLU."""

    input_shape = (2, 6, 6)

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(5 * 6 * 6, 3)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))


def images(shape, n=4, seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def by_hand(model: InplaceNet, x):
    """An independent forward, out of place, on a copy of the weights."""
    with torch.no_grad():
        z1 = F.conv2d(x, model.conv1.weight, model.conv1.bias, padding=1)
        a1 = z1.clamp(min=0)
        z2 = F.conv2d(a1, model.conv2.weight, model.conv2.bias, padding=1)
        a2 = z2.clamp(min=0)
        out = F.linear(a2.flatten(1), model.fc.weight, model.fc.bias)
    return {"z1": z1, "a1": a1, "z2": z2, "a2": a2, "out": out}


def test_run_keys_activations_by_layer_name():
    model = InplaceNet()
    graph = build_graph(model)
    x = images(model.input_shape)
    acts = graph.run(x, ["relu2", "relu1"])
    assert list(acts) == ["relu2", "relu1"]
    assert set(graph.run(x)) == set(graph.layers)  # no layers asked: every layer
    assert list(graph.run(x, "relu1")) == ["relu1"]  # one name


def test_captured_values_are_clones_under_inplace_relu():
    model = InplaceNet()
    graph = build_graph(model)
    x = images(model.input_shape)
    expected = by_hand(model, x)
    post = graph.run(x, ["relu1", "relu2", "fc"])
    pre = graph.run(x, ["relu1", "relu2"], preact=True)
    assert (pre["relu2"] < 0).any()  # the ReLU would have zeroed these in place
    for name, mine in [("z1", pre["relu1"]), ("z2", pre["relu2"]), ("a1", post["relu1"]), ("a2", post["relu2"]),
                       ("out", post["fc"])]:  # fmt: skip
        torch.testing.assert_close(mine, expected[name], rtol=1e-5, atol=1e-5)


def test_run_batches_give_the_same_values():
    model = PlainCNN()
    graph = build_graph(model)
    x = images(model.input_shape, n=7)
    whole = graph.run(x, ["conv2", "fc"])
    batched = graph.run(x, ["conv2", "fc"], batch_size=3)
    for name in whole:
        torch.testing.assert_close(batched[name], whole[name], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(whole["fc"], model.eval()(x), rtol=1e-5, atol=1e-5)


def test_run_never_touches_the_users_model_or_its_mode():
    model = PlainCNN().train()
    before = copy.deepcopy(model.state_dict())
    graph = build_graph(model)
    graph.gm.train()  # even the graph's own copy gets its mode back
    graph.run(images(model.input_shape), ["conv3"])
    assert model.training and all(m.training for m in model.modules())
    assert graph.gm.training
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_no_hooks_and_mode_restored_when_the_forward_raises():
    model = PlainCNN()
    graph = build_graph(model)
    graph.gm.train()

    def broken(*_):
        raise RuntimeError("boom")

    graph.modules["conv2"].forward = broken
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in graph.gm.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        graph.run(images(model.input_shape), ["conv3"])
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in graph.gm.modules()] == hooks
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert graph.gm.training and all(m.training for m in graph.gm.modules())


def test_grad_true_gives_the_gradient_of_an_independent_copy():
    model = InplaceNet()
    graph = build_graph(model)
    x = images(model.input_shape, n=2).double()
    ours = x.clone().requires_grad_(True)
    graph.dtype = torch.float64
    graph.gm.double()
    acts = graph.run(ours, ["relu2"], grad=True)
    acts["relu2"][:, 3].sum().backward()

    twin = copy.deepcopy(model).double()
    theirs = x.clone().requires_grad_(True)
    a2 = F.relu(twin.conv2(F.relu(twin.conv1(theirs))))
    a2[:, 3].sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad)

    def f(inp):  # central finite difference of the same scalar
        return float(graph.run(inp, ["relu2"])["relu2"][:, 3].sum())

    eps = 1e-6
    for index in [(0, 0, 2, 3), (1, 1, 4, 1)]:
        bump = torch.zeros_like(x)
        bump[index] = eps
        fd = (f(x + bump) - f(x - bump)) / (2 * eps)
        assert abs(fd - float(ours.grad[index])) < 1e-6


def test_grad_false_results_are_detached():
    model = PlainCNN()
    x = images(model.input_shape).requires_grad_(True)
    acts = build_graph(model).run(x, ["conv1"])
    assert not acts["conv1"].requires_grad


def test_run_refuses_unknown_layers_and_bad_data():
    model = PlainCNN()
    graph = build_graph(model)
    with pytest.raises(UnknownNeuronError, match="did you mean 'conv2'"):
        graph.run(images(model.input_shape), ["conv22"])
    with pytest.raises(DataError, match="shape"):
        graph.run(torch.zeros(2, 3, 5, 5), ["conv1"])
    with pytest.raises(UsageError, match="no pre-activation"):
        graph.run(images(model.input_shape), ["input"], preact=True)


def test_unavailable_or_unknown_devices_are_usage_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match=r"torch sees no CUDA device .*use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu")


def test_cpu_device_gives_identical_values():
    model = PlainCNN()
    graph = build_graph(model)
    x = images(model.input_shape)
    default, cpu = graph.run(x, ["conv3"]), graph.run(x, ["conv3"], device="cpu")
    assert torch.equal(default["conv3"], cpu["conv3"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_run_matches_the_cpu_numbers():
    model = PlainCNN()
    graph = build_graph(model)
    x = images(model.input_shape, n=300)  # more than one batch
    cpu = graph.run(x, ["conv1", "conv3", "fc"])
    cuda = graph.run(x, ["conv1", "conv3", "fc"], device="cuda")
    for name in cpu:
        assert cuda[name].device.type == "cpu"  # results come back on the CPU
        torch.testing.assert_close(cuda[name], cpu[name], rtol=1e-4, atol=1e-4)
    assert all(p.device.type == "cpu" for p in graph.gm.parameters())  # the graph itself stayed put
    x = x[:2].clone().requires_grad_(True)
    kept = graph.run(x, ["conv3"], grad=True, device="cuda")["conv3"]
    assert kept.device.type == "cuda"
    kept.sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    graph.run(reference, ["conv3"], grad=True)["conv3"].sum().backward()
    torch.testing.assert_close(x.grad, reference.grad, rtol=1e-4, atol=1e-4)


def test_an_empty_batch_is_refused_in_one_line():
    import circuits
    from circuits.errors import DataError

    graph = circuits.layers(circuits.load("planted:union"))
    with pytest.raises(DataError, match="empty batch"):
        graph.run(torch.zeros(0, *graph.input_shape), ["union"])


def test_an_output_written_atomically_is_whole_or_absent(tmp_path, monkeypatch):
    import os

    from circuits.pyfiles import write_atomic

    target = tmp_path / "out.py"
    write_atomic(target, b"old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_atomic(target, b"new and longer")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.py"]
