"""Pictures on another device: every tensor of an optimisation step lives where the user asked.

Without a GPU the check runs on torch's ``meta`` device, which has shapes but no data and refuses to mix
with CPU tensors: a step that builds a tensor on the CPU (a spectrum's scale, the colour basis, a rotation's
sampling grid, the linearised path's weights) fails there exactly as it would on CUDA. With a GPU the
pictures are compared with the CPU's and with the planted detector's own kernel.
"""

import json

import pytest
import torch
from click.testing import CliRunner

import circuits.graph.run as run_module
from circuits.featvis import Channel, Negative, Neuron, Phase, visualise
from circuits.graph import build_graph

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")


@pytest.fixture
def meta_device(monkeypatch):
    """Let run() accept ``meta`` (it checks data values, which meta tensors do not have)."""
    monkeypatch.setattr(run_module, "resolve_device", lambda d: torch.device("cpu" if d is None else d))
    monkeypatch.setattr(run_module, "check_data", lambda graph, data: data.to(graph.dtype))


@pytest.mark.parametrize("spec, layer", [("zoo:plain-cnn", "conv2"), ("planted:lines", "lines")])
@pytest.mark.parametrize("param", [None, Phase()], ids=["fourier", "phase"])
@pytest.mark.parametrize("objective", [Channel(), Neuron(), Negative(Neuron())], ids=lambda o: o.name)
def test_every_step_runs_on_the_asked_device(meta_device, spec, layer, param, objective):
    graph = build_graph(spec)
    # warmup 0.5 of 4 steps: two on the linearised path, two on the network, with every default transform;
    # copies and diversity take the similarity term too. Only the final copy back to the CPU can fail on meta.
    with pytest.raises(NotImplementedError, match="meta tensor"):
        visualise(graph, layer, [0, 1], objective=objective, param=param, steps=4, warmup=0.5, copies=2,
                  diversity=0.5, device="meta")  # fmt: skip


def centred_cosine(a, b):
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return torch.nn.functional.cosine_similarity(a, b)


@CUDA
def test_cuda_pictures_are_the_cpu_pictures_and_the_planted_lines():
    from circuits import planted
    from circuits.trace.kernels import receptive_field

    lines = build_graph("planted:lines")
    cpu = visualise(lines, "lines", objective=Neuron(), steps=128)
    cuda = visualise(lines, "lines", objective=Neuron(), steps=128, device="cuda")
    assert cuda.images.device.type == "cpu" and cuda.activation.device.type == "cpu"
    print("cuda vs cpu picture cosine", centred_cosine(cuda.images, cpu.images).tolist())
    assert centred_cosine(cuda.images, cpu.images).min() >= 0.95
    (y0, x0), (y1, x1), _ = receptive_field(lines, "lines")
    ideal = torch.as_tensor(planted.effective_weights(planted.get_spec("lines").layers[0]))[:, 0]
    assert centred_cosine(cuda.images[:, 0, y0:y1, x0:x1], ideal).min() >= 0.8  # the acceptance bar, on the GPU
    torch.testing.assert_close(cuda.activation, cpu.activation, rtol=0.05, atol=0.05)


@CUDA
def test_pictures_command_on_cuda_keeps_the_fooling_verdict(tmp_path, monkeypatch):
    from circuits.cli import main

    monkeypatch.setitem(main.lazy, "pictures", "circuits.cli.pictures:pictures")
    result = CliRunner().invoke(main, ["pictures", "planted:fooling", "--layer", "readout", "--objective", "neuron",
                                       "--steps", "128", "--data", "toyworld:256", "--examples", "4", "-o",
                                       str(tmp_path / "pics"), "--device", "cuda", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    optimised = {p["neuron"]: p for p in json.loads(result.output)["pictures"] if p["kind"] == "optimised"}
    assert optimised["readout:0"]["agreement"] >= 0.9 and optimised["readout:1"]["agreement"] <= 0.2
    assert optimised["readout:1"]["activation"] > 10 * optimised["readout:0"]["activation"]
