"""Model specs and weights files (circuits.models): what loads, what is refused, and what the user is told."""

import pathlib
import pickle
import sys
import textwrap

import nets
import pytest
import torch
from fuzz_tally import tally
from torch import nn

from circuits.errors import BadSpecError, ModelLoadError, UsageError
from circuits.graph import build_graph
from circuits.models import LoadedModel, load, weights_hash

MODEL_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        input_shape = (3, 8, 8)

        def __init__(self, seed=0):
            super().__init__()
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(3, 4, 3)
            self.act = nn.ReLU()
            self.fc = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).flatten(1))


    def make_net():
        return Net(seed=1)


    net_instance = Net(seed=2)
    NOT_A_MODEL = 3


    def needs_args(width):
        return Net()


    def returns_a_tensor():
        return torch.zeros(3)
    """
)


def _net(seed=0):
    """The same architecture as the file's Net, built here (not imported from the file)."""
    torch.manual_seed(seed)
    model = nn.Module()
    model.conv = nn.Conv2d(3, 4, 3)
    model.act = nn.ReLU()
    model.fc = nn.Linear(4 * 6 * 6, 2)
    return model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "mynets.py"
    path.write_text(MODEL_SOURCE)
    return path


@pytest.fixture
def importable_package(tmp_path, monkeypatch):
    """A package ``circuits_testpkg_models`` on sys.path, removed from sys.modules afterwards."""
    package = tmp_path / "pkgroot" / "circuits_testpkg_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "arch.py").write_text(MODEL_SOURCE)
    monkeypatch.syspath_prepend(str(package.parent))
    yield "circuits_testpkg_models"
    for name in [m for m in sys.modules if m.startswith("circuits_testpkg_models")]:
        del sys.modules[name]


def _same_state(a: nn.Module, b_state: dict) -> bool:
    a_state = a.state_dict()
    return a_state.keys() == b_state.keys() and all(torch.equal(a_state[k], b_state[k]) for k in a_state)


# --------------------------------------------------------------------------------------------------------
# Specs that load


@pytest.mark.parametrize("attr, seed", [("Net", 0), ("make_net", 1), ("net_instance", 2)])
def test_file_spec_loads_a_class_a_factory_or_an_instance(model_file, attr, seed):
    spec = f"{model_file}:{attr}"
    loaded = load(spec)
    assert isinstance(loaded, LoadedModel) and loaded.spec == spec
    assert type(loaded.module).__name__ == "Net"
    assert loaded.input_shape == (3, 8, 8)
    assert _same_state(loaded.module, _net(seed).state_dict())


def test_module_spec_loads_from_an_importable_package(importable_package):
    loaded = load(f"{importable_package}.arch:make_net")
    assert type(loaded.module).__name__ == "Net"
    assert _same_state(loaded.module, _net(1).state_dict())
    graph = build_graph(loaded)
    assert [(name, layer.kind, layer.shape) for name, layer in graph.layers.items()] == [
        ("input", "input", (3, 8, 8)),
        ("act", "activation", (4, 6, 6)),
        ("fc", "output", (2,)),
    ]
    assert graph.spec == f"{importable_package}.arch:make_net"


def test_input_shape_argument_overrides_the_model_attribute(model_file):
    assert load(f"{model_file}:Net", input_shape="3,10,10").input_shape == (3, 10, 10)
    assert load(f"{model_file}:Net", input_shape=(3, 12, 12)).input_shape == (3, 12, 12)


def test_nn_module_passes_through_with_its_input_shape():
    model = nets.PlainCNN()
    loaded = load(model)
    assert loaded.module is model and loaded.input_shape == (3, 16, 16)


# --------------------------------------------------------------------------------------------------------
# --weights


@pytest.mark.parametrize(
    "wrap", [lambda sd: sd, lambda sd: {"state_dict": sd, "epoch": 7}, lambda sd: {"model": sd, "optimizer": {"lr": 0.1}}],
    ids=["state_dict", "checkpoint-state_dict", "checkpoint-model"],
)  # fmt: skip
def test_weights_file_replaces_the_factory_weights(model_file, tmp_path, wrap):
    trained = _net(seed=42).state_dict()
    path = tmp_path / "weights.pt"
    torch.save(wrap(trained), path)
    loaded = load(f"{model_file}:Net", weights=path)
    assert _same_state(loaded.module, trained)
    assert not _same_state(loaded.module, _net(seed=0).state_dict())


def test_weights_hash_follows_the_loaded_weights(model_file, tmp_path):
    trained = _net(seed=42)
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    plain = load(f"{model_file}:Net")
    plain_hash = plain.weights_hash
    loaded = load(plain, weights=path)  # the same LoadedModel, whose hash was already computed
    assert loaded.weights_hash == weights_hash(trained) != plain_hash


def test_missing_weights_file_is_a_usage_error_naming_the_path(model_file, tmp_path):
    with pytest.raises(BadSpecError) as info:
        load(f"{model_file}:Net", weights=tmp_path / "nope.pt")
    assert "nope.pt" in str(info.value) and "does not exist" in str(info.value)


def test_state_dict_key_mismatch_names_missing_and_unexpected_keys(model_file, tmp_path):
    state = dict(_net(seed=42).state_dict())
    del state["fc.bias"]
    state["head.weight"] = torch.zeros(1)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    loaded = load(f"{model_file}:Net")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    with pytest.raises(UsageError) as info:
        load(loaded, weights=path)
    message = str(info.value)
    assert "missing 'fc.bias'" in message and "unexpected 'head.weight'" in message
    assert _same_state(loaded.module, before), "a refused file must leave the model's weights alone"


def test_state_dict_shape_mismatch_names_the_key_and_both_shapes(model_file, tmp_path):
    state = dict(_net(seed=42).state_dict())
    state["fc.weight"] = torch.zeros(2, 10)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    loaded = load(f"{model_file}:Net")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    with pytest.raises(UsageError) as info:
        load(loaded, weights=path)
    message = str(info.value)
    assert "'fc.weight'" in message and "(2, 10)" in message and "(2, 144)" in message
    assert _same_state(loaded.module, before)


@pytest.mark.parametrize(
    "content",
    [b"", "truncated"],
    ids=["empty", "truncated-zip"],
)
def test_corrupt_weights_file_is_a_model_load_error_saying_corrupt(model_file, tmp_path, content):
    path = tmp_path / "broken.pt"
    if content == "truncated":
        torch.save(_net().state_dict(), path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        load(f"{model_file}:Net", weights=path)
    assert "corrupt" in str(info.value) and "broken.pt" in str(info.value)


def test_garbage_bytes_weights_file_is_reported_corrupt_not_pickled_code(model_file, tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 4)
    with pytest.raises(ModelLoadError) as info:
        load(f"{model_file}:Net", weights=path)
    assert "corrupt" in str(info.value)
    assert "pickled Python objects" not in str(info.value)


def test_file_without_a_state_dict_is_a_model_load_error(model_file, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ModelLoadError, match="no state_dict"):
        load(f"{model_file}:Net", weights=path)


# --------------------------------------------------------------------------------------------------------
# Pickled code in a checkpoint is refused, never executed


class _TouchOnUnpickle:
    """Unpickling this calls Path.touch(marker): proof that pickled code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_the_payload_really_executes_when_unpickled(tmp_path):
    """Control for the refusal tests below: a plain unpickle of the payload does create its marker."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_TouchOnUnpickle(marker)))
    assert marker.exists()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd, evil: evil,
        lambda sd, evil: {"state_dict": sd, "callback": evil},
        lambda sd, evil: {"model": evil},
    ],
    ids=["bare", "beside-state_dict", "as-model"],
)
def test_checkpoint_with_pickled_callable_is_refused_and_never_executed(model_file, tmp_path, wrap):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save(wrap(_net().state_dict(), _TouchOnUnpickle(marker)), path)
    assert not marker.exists()
    with pytest.raises(ModelLoadError) as info:
        load(f"{model_file}:Net", weights=path)
    tally.hostile(refused=True, ran=marker.exists())
    assert not marker.exists(), "the checkpoint's pickled code ran"
    message = str(info.value)
    assert "refused" in message and "evil.pt" in message and "state_dict" in message


def test_pickled_whole_model_is_refused(model_file, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(nets.PlainCNN(), path)
    with pytest.raises(ModelLoadError, match="refused"):
        load(nets.PlainCNN(), weights=path)


# --------------------------------------------------------------------------------------------------------
# Specs that do not load


@pytest.mark.parametrize(
    "spec, words",
    [
        ("garbage", ["cannot read model spec 'garbage'", "package.module:attr", "path/to/file.py:attr"]),
        ("", ["cannot read model spec"]),
        ("model.pt", ["weights file, not a model", "--weights"]),
        ("circuits_no_such_module_xyz:Net", ["cannot import module 'circuits_no_such_module_xyz'"]),
        ("torch.nn:NoSuchLayer", ["has no attribute 'NoSuchLayer'"]),
    ],
)
def test_unknown_spec_is_a_bad_spec_error_saying_what_to_write(spec, words):
    with pytest.raises(BadSpecError) as info:
        load(spec)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    for word in words:
        assert word in str(info.value)


def test_missing_model_file_is_a_bad_spec_error(tmp_path):
    with pytest.raises(BadSpecError) as info:
        load(f"{tmp_path / 'absent.py'}:Net")
    assert "absent.py" in str(info.value) and "does not exist" in str(info.value)


def test_missing_pt2_file_is_a_bad_spec_error(tmp_path):
    with pytest.raises(BadSpecError, match="does not exist"):
        load(str(tmp_path / "absent.pt2"))


def test_misspelt_attribute_suggests_the_close_name(model_file):
    with pytest.raises(BadSpecError) as info:
        load(f"{model_file}:Nett")
    assert "did you mean 'Net'" in str(info.value)


@pytest.mark.parametrize(
    "attr, words",
    [("NOT_A_MODEL", ["is a int", "not an nn.Module"]), ("needs_args", ["zero-argument"]), ("returns_a_tensor", ["returned Tensor"])],
)  # fmt: skip
def test_attribute_that_is_not_a_model_is_a_bad_spec_error(model_file, attr, words):
    with pytest.raises(BadSpecError) as info:
        load(f"{model_file}:{attr}")
    for word in words:
        assert word in str(info.value)


def test_model_file_that_fails_to_import_is_a_model_load_error(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\nraise ValueError('boom in user code')\n")
    with pytest.raises(ModelLoadError) as info:
        load(f"{path}:Net")
    assert "boom in user code" in str(info.value) and "broken.py" in str(info.value)


# --------------------------------------------------------------------------------------------------------
# torch.export archives


@pytest.fixture
def pt2_file(tmp_path):
    model = nets.PlainCNN().eval()
    path = tmp_path / "plain.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 16, 16),)), str(path))
    return path


def test_pt2_archive_loads_with_its_example_input_shape(pt2_file):
    loaded = load(str(pt2_file))
    assert loaded.input_shape == (3, 16, 16)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(loaded.module(x[:1]), nets.PlainCNN().eval()(x[:1]), atol=1e-6)


def test_pt2_archive_builds_a_graph_with_the_fx_versions_layers(pt2_file):
    graph = build_graph(load(str(pt2_file)))
    fx_graph = build_graph(nets.PlainCNN())
    assert graph.capture_method == "export"
    shapes = [(layer.kind, layer.shape) for layer in graph.layers.values()]
    assert shapes == [(layer.kind, layer.shape) for layer in fx_graph.layers.values()]
    # names come from nn_module_stack: F.relu(self.conv1(x)) is conv1 whichever way the model was captured
    assert list(graph.layers) == list(fx_graph.layers) == ["input", "conv1", "conv2", "conv3", "fc"]
    assert [layer.sources for layer in graph.layers.values()] == [layer.sources for layer in fx_graph.layers.values()]


# --------------------------------------------------------------------------------------------------------
# weights_hash


def test_weights_hash_is_deterministic_and_follows_every_weight():
    first, second = nets.ResNet(), nets.ResNet()
    assert weights_hash(first) == weights_hash(first) == weights_hash(second)
    assert len(weights_hash(first)) == 64 and int(weights_hash(first), 16) >= 0

    with torch.no_grad():
        second.layer1[1].conv2.weight[3, 2, 1, 0] += 1e-6
    assert weights_hash(second) != weights_hash(first)

    third = nets.ResNet()
    third.layer2[0].downsample[1].running_mean[0] += 1.0  # a buffer, not a parameter
    assert weights_hash(third) != weights_hash(first)


def test_weights_hash_ignores_the_mode_and_the_object():
    model = nets.MLP()
    before = weights_hash(model)
    model.train()
    assert weights_hash(model) == before
    copy_ = nets.MLP()
    copy_.load_state_dict(model.state_dict())
    assert weights_hash(copy_) == before
