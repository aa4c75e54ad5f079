"""--device: one option on every command that runs a model on data; the output does not depend on it."""

import json

import pytest
import torch
from click.testing import CliRunner

from circuits.cli import main

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
COMMANDS = [  # every command that runs a model on probe data
    ["extract", "planted:union", "--neuron", "union:0", "--data", "noise:8"],
    ["verify", "unused.py", "--model", "planted:union"],
    ["motifs", "planted:union", "--kind", "union"],
    ["universality", "planted:union", "planted:union"],
    ["zoo", "catalog", "-o", "unused.db"],
    ["compile", "planted:union", "-o", "unused_program"],
]


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_computing_command_takes_device(command):
    result = run(*command[:1 + (command[0] == "zoo")], "--help")
    assert result.exit_code == 0 and "--device DEVICE" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_cuda_without_a_gpu_is_a_one_line_usage_error(command, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run(*command, "--device", "cuda")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: --device cuda: torch sees no CUDA device (torch.cuda.is_available() is False); use --device cpu"
    )


def test_an_unparsable_device_is_a_usage_error():
    result = run(*COMMANDS[0], "--device", "gpu-please")
    assert result.exit_code == 2
    assert result.output.strip() == "Error: unknown device 'gpu-please': use cpu, cuda or cuda:N"


def _extract(tmp_path, name, *device):
    out = tmp_path / f"{name}.py"
    result = run("extract", "planted:union", "--neuron", "union:0", "--data", "toyworld:16", "--emit", str(out),
                 "--json", *device)  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    payload["emitted"].pop("path")
    return payload, out.read_text()


def test_device_cpu_gives_identical_output(tmp_path):
    default_payload, default_module = _extract(tmp_path, "default")
    cpu_payload, cpu_module = _extract(tmp_path, "cpu", "--device", "cpu")
    assert cpu_payload == default_payload  # the device is not an argument of the result
    assert cpu_module == default_module
    motifs = [run("motifs", "planted:union", "--data", "toyworld:16", "--json", *d).stdout for d in ([], ["--device", "cpu"])]
    assert motifs[0] == motifs[1]


def _close(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-3, abs=1e-4)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


@CUDA
def test_cuda_gives_the_cpu_numbers(tmp_path):
    cpu_payload, _ = _extract(tmp_path, "cpu", "--device", "cpu")
    cuda_payload, _ = _extract(tmp_path, "cuda", "--device", "cuda")
    assert _close(cuda_payload, cpu_payload)
    motifs = [json.loads(run("motifs", "planted:union", "--data", "toyworld:16", "--json", "--device", d).stdout)
              for d in ("cpu", "cuda")]  # fmt: skip
    assert _close(motifs[1], motifs[0])
