"""Labels and concept queries on the shipped zoo, measured on fresh toy-world images."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from circuits.cli import main
from circuits.data import toyworld
from circuits.graph import build_graph
from circuits.labels.responses import responses
from circuits.labels.selectivity import auroc_between
from circuits.models import load

FRESH_SEED = 5151  # not training (1234), eval (10000), probe (777) or label (4242) data


def facing_truth(module, n=3000):
    """Every neuron's AUROC for left- against right-facing objects, on fresh images: the independent answer."""
    images, _, latents = toyworld.generate(n, seed=FRESH_SEED, size=32, task="objects")
    graph = build_graph(module)
    layers = [layer.name for layer in graph.targets()]
    scores, _ = responses(graph, images, layers)
    truth = {}
    for layer in layers:
        for channel, value in enumerate(auroc_between(scores[layer], latents["facing"] < 0, latents["facing"] > 0)):
            truth[f"{layer}:{channel}"] = float(value)
    return truth


@pytest.fixture(scope="module")
def left_folder(tmp_path_factory):
    """400 left-facing toy-world objects as PNG files: a user's own folder of examples."""
    folder = tmp_path_factory.mktemp("left")
    images, _, latents = toyworld.generate(1000, seed=99, size=32, task="objects")
    for i, image in enumerate(images[latents["facing"] < 0][:400]):
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_find_examples_ranks_the_best_left_facing_neuron_first(seed, left_folder):
    module = load(f"zoo:plain-cnn-s{seed}").module
    truth = facing_truth(module)
    result = CliRunner().invoke(main, ["find", f"zoo:plain-cnn-s{seed}", "--examples", str(left_folder), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schema_version"] and payload["provenance"]["weights_sha256"]
    first = payload["neurons"][0]["neuron"]
    assert truth[first] >= max(truth.values()) - 0.05, (first, truth[first], max(truth, key=truth.get))


def test_find_says_when_the_best_match_is_weak(left_folder):
    result = CliRunner().invoke(main, ["find", "zoo:plain-cnn-s1", "--examples", str(left_folder), "--top", "3"])
    assert result.exit_code == 0 and "no neuron separates these images well" in result.stdout


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_facing_cnn_union_is_labelled_as_a_union_over_facing_detectors(seed):
    """The facing family's class neurons OR a left- and a right-facing detector: on some class of every
    seed, the shipped labels name the union with both facings and each case with its facing, and the
    cases are facing-selective on fresh images."""
    loaded = load(f"zoo:facing-cnn-s{seed}")
    truth = facing_truth(loaded.module)
    images, labels, latents = toyworld.generate(3000, seed=FRESH_SEED, size=32, task="objects")
    graph = build_graph(loaded.module)
    scores, _ = responses(graph, images, ["conv3", "fc"])
    good = []
    for k, name in enumerate(toyworld.class_names("objects")):
        union, left, right = f"fc:{k}", f"conv3:{2 * k}", f"conv3:{2 * k + 1}"
        inside = labels.numpy() == k
        facing = latents["facing"][inside]
        within = [auroc_between(scores["conv3"][inside][:, [c]], facing < 0, facing > 0)[0] for c in (2 * k, 2 * k + 1)]
        invariant = abs(auroc_between(scores["fc"][inside][:, [k]], facing < 0, facing > 0)[0] - 0.5) <= 0.1
        named = (loaded.labels.get(union) == f"{name} facing left or right"
                 and loaded.labels.get(left) == f"{name} facing left"
                 and loaded.labels.get(right) == f"{name} facing right")  # fmt: skip
        ors = (loaded.module.fc.weight[k, 2 * k] > 0.05 and loaded.module.fc.weight[k, 2 * k + 1] > 0.05)  # reads both
        if within[0] >= 0.9 and 1 - within[1] >= 0.9 and invariant and named and ors:
            good.append(name)
    assert good, {n: loaded.labels.get(n) for n in loaded.labels if n.startswith(("fc", "conv3:0", "conv3:1"))}
    assert truth  # computed on fresh images, independent of the shipped labels


def test_an_emitted_union_module_reads_with_its_labels(tmp_path):
    out = tmp_path / "fc0.py"
    result = CliRunner().invoke(main, ["extract", "zoo:facing-cnn-s0", "--neuron", "fc:0", "--depth", "1",
                                       "--top-k", "4", "--emit", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    code = out.read_text()
    assert "def fish_facing_left_or_right(acts):" in code
    namespace = {}
    exec(compile(code, str(out), "exec"), namespace)  # the module runs: names from labels are valid Python
    assert callable(namespace["fish_facing_left_or_right"]) and callable(namespace["target"])
