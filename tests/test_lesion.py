"""Lesions silence neurons for the rest of the forward pass: checked against the arithmetic of a linear
read-out, and against the caller's model, which must not change."""

import pytest
import torch

import circuits
from circuits.errors import UnknownNeuronError, UsageError


@pytest.fixture(scope="module")
def plain():
    model = circuits.load("zoo:plain-cnn")
    return model, circuits.load_data("toyworld:64:5", model.input_shape)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_a_lesioned_neuron_changes_the_logits_by_exactly_its_readout(plain, mode):
    """fc reads conv3 through a global max: silencing conv3:c moves logit k by W[k, c] times the change of
    conv3:c's peak, and nothing else moves."""
    model, images = plain
    result = circuits.lesion(model, "conv3:7", images, mode=mode)
    conv3 = circuits.layers(model).run(images, ["conv3"])["conv3"][:, 7]
    replaced = torch.zeros_like(conv3) if mode == "zero" else conv3.mean(0, keepdim=True).expand_as(conv3)
    change = replaced.amax((1, 2)) - conv3.amax((1, 2))
    expected = change[:, None] * model.module.fc.weight[:, 7].detach()[None, :]
    assert torch.allclose(result.logits - result.baseline, expected, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(result.baseline, model.module.eval()(images), atol=1e-5)


def test_lesions_add_up_and_report_what_changed(plain):
    model, images = plain
    both = circuits.lesion(model, ["conv3:7", "conv3:9"], images)
    one, other = circuits.lesion(model, "conv3:7", images), circuits.lesion(model, "conv3:9", images)
    # through a linear read-out of separate channels, two lesions are the sum of each
    assert torch.allclose(both.logits - both.baseline, (one.logits - one.baseline) + (other.logits - other.baseline),
                          atol=1e-5)  # fmt: skip
    assert 0.0 <= both.changed <= 1.0 and both.effect.shape == (3,)
    assert "conv3:7, conv3:9" in repr(both)


def test_a_lesion_reaches_every_later_layer():
    model = circuits.load("zoo:resnet-cnn")
    images = circuits.load_data("toyworld:32:6", model.input_shape)
    silenced = circuits.lesion(model, [f"stem:{c}" for c in range(12)], images)  # the whole first layer
    assert not torch.allclose(silenced.logits, silenced.baseline)
    # with nothing left of the image after the stem, every image gets the same logits
    assert torch.allclose(silenced.logits, silenced.logits[:1].expand_as(silenced.logits), atol=1e-5)


def test_the_callers_model_is_left_as_it_was(plain):
    model, images = plain
    model.module.train()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    circuits.lesion(model, "conv2:3", images)
    assert model.module.training
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())
    model.module.eval()


def test_bad_lesions_are_refused_with_the_fix(plain):
    model, images = plain
    with pytest.raises(UsageError, match="mode"):
        circuits.lesion(model, "conv3:7", images, mode="half")
    with pytest.raises(UsageError, match="input channel"):
        circuits.lesion(model, "input:0", images)
    with pytest.raises(UnknownNeuronError, match="out of range"):
        circuits.lesion(model, "conv3:99", images)
    with pytest.raises(UsageError, match="at least one"):
        circuits.lesion(model, [], images)


def test_the_lesion_command_reports_what_the_library_measures():
    import json

    from click.testing import CliRunner

    from circuits.cli import main

    result = CliRunner().invoke(main, ["lesion", "zoo:plain-cnn", "--neurons", "conv3:7,conv3:9", "--data",
                                       "toyworld:64:5", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    model = circuits.load("zoo:plain-cnn")
    expected = circuits.lesion(model, ["conv3:7", "conv3:9"], circuits.load_labelled("toyworld:64:5", model.input_shape).images)
    assert payload["neurons"] == ["conv3:7", "conv3:9"] and payload["images"] == 64
    assert payload["changed"] == pytest.approx(expected.changed)
    assert list(payload["effect"]) == ["fish", "bird", "arrow"]
    assert payload["accuracy"]["intact"] >= payload["accuracy"]["lesioned"] - 0.05
    assert payload["schema_version"] and payload["provenance"]["weights_sha256"] == model.weights_hash
    bad = CliRunner().invoke(main, ["lesion", "zoo:plain-cnn", "--neurons", "conv9:1"])
    assert bad.exit_code == 2 and "unknown layer" in bad.output and "Traceback" not in bad.output
