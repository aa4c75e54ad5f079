"""Real photos as probe data (photos:N:SEED, augment:N:SEED:PATH) and normalisation (--normalize, a model's own
preprocess): shapes, range, determinism, mirrors, numbers checked against an independent computation."""

import doctest
import importlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

import circuits
from circuits.cli import main
from circuits.data import load_data, model_data, model_labelled, normalize, parse_normalize
from circuits.data.photos import SAMPLE_PHOTOS, sample_photo_paths
from circuits.errors import BadSpecError, DataError

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TINY_NET = """
import torch
from torch import nn


class Net(nn.Module):
    input_shape = (3, 16, 16)
    preprocess = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.relu1 = nn.Conv2d(3, 4, 3), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(4, 4, 3), nn.ReLU()

    def forward(self, x):
        return self.relu2(self.conv2(self.relu1(self.conv1(x))))
"""


def run(*args):
    return CliRunner().invoke(main, list(args))


class Declared(nn.Module):
    """A grey model that says how its images are normalised."""

    input_shape = (1, 12, 12)
    preprocess = {"mean": [0.25], "std": [0.5]}

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.relu(self.conv(x))


@pytest.fixture
def ramp_folder(tmp_path):
    """One RGB image whose brightness rises from left to right: every crop of it does too, every mirror falls."""
    ramp = np.tile(np.linspace(0, 255, 200).astype(np.uint8)[None, :, None], (120, 1, 3))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    return tmp_path


@pytest.fixture
def tiny_net_spec(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(TINY_NET)
    return f"{path}:Net"


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 32, 32), (3, 24, 40), (1, 40, 18), (3, 7, 5)])
def test_photos_fit_any_grey_or_rgb_input_shape_in_zero_one(shape):
    images = load_data("photos:10:3", input_shape=shape)
    assert images.shape == (10, *shape) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert float(images.std()) > 0.05  # photos, not a constant


def test_photos_default_count_and_shape_follow_the_other_specs():
    assert load_data("photos", default_n=6).shape == (6, 1, 32, 32)


def test_the_same_spec_gives_the_same_tensor_and_another_seed_another():
    a = load_data("photos:24:5", input_shape=(3, 20, 28))
    assert torch.equal(a, load_data("photos:24:5", input_shape=(3, 20, 28)))
    assert not torch.equal(a, load_data("photos:24:6", input_shape=(3, 20, 28)))
    assert torch.equal(load_data("photos:10:5", input_shape=(3, 20, 28)), a[:10])  # more images extend the set


def test_every_crop_comes_with_its_mirror_so_the_set_is_closed_under_reflection():
    images = load_data("photos:32:1", input_shape=(3, 16, 24))
    assert torch.equal(images[1::2], images[0::2].flip(-1))
    assert not torch.equal(images[0], images[1])  # a crop is not its own mirror
    keys = {image.numpy().tobytes() for image in images}
    assert len(keys) == 32 and {image.flip(-1).numpy().tobytes() for image in images} == keys


def test_crops_keep_left_to_right_order_and_mirrors_reverse_it(ramp_folder):
    images = load_data(f"augment:12:4:{ramp_folder}", input_shape=(1, 8, 16))
    columns = images.mean(dim=(1, 2))  # [N, W]
    steps = columns[:, 1:] - columns[:, :-1]
    assert (steps[0::2] > 0).all() and (steps[1::2] < 0).all()
    assert len({c.numpy().tobytes() for c in columns[0::2]}) == 6  # six different crops


def test_grey_photos_are_the_luminance_of_the_rgb_ones():
    rgb = load_data("photos:8:2", input_shape=(3, 24, 24)).numpy()
    grey = load_data("photos:8:2", input_shape=(1, 24, 24)).numpy()[:, 0]
    luminance = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert np.abs(grey - luminance).max() < 3 / 255


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_photos_are_drawn_from_every_sample_photo_before_any_repeats(seed):
    colour_files = sum(Image.open(path).mode != "L" for path in sample_photo_paths())
    images = load_data(f"photos:{2 * len(SAMPLE_PHOTOS)}:{seed}", input_shape=(3, 32, 32))[0::2]
    colour = (images.amax(dim=1) - images.amin(dim=1)).amax(dim=(1, 2)) > 0.02
    assert 0 < colour_files < len(SAMPLE_PHOTOS) and int(colour.sum()) == colour_files  # each photo once


def test_photos_read_the_package_files_without_importing_scikit_image():
    code = ("import sys; from circuits.data import load_data; load_data('photos:4'); "
            "print('skimage' in sys.modules, 'pooch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_photos_without_scikit_image_say_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    with pytest.raises(DataError, match=r"pip install scikit-image .*circuits\[photos\]"):
        load_data("photos:4")


def test_augment_takes_a_folder_of_mixed_sizes_and_modes_and_paths_with_colons(tmp_path):
    folder = tmp_path / "my:photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (90, 40), dtype=np.uint8)).save(folder / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), "RGBA").save(folder / "c.png")
    images = load_data(f"augment:9:{folder}", input_shape=(3, 16, 16))
    assert images.shape == (9, 3, 16, 16) and torch.equal(images, load_data(f"augment:9:0:{folder}", (3, 16, 16)))
    assert torch.equal(images[1:8:2], images[0:8:2].flip(-1))
    assert load_data(f"augment:3:7:{folder / 'a.png'}", input_shape=(1, 10, 12)).shape == (3, 1, 10, 12)


def test_normalize_is_x_minus_mean_over_std_per_channel():
    images = load_data("photos:6:1", input_shape=(3, 8, 8))
    expected = (images.numpy() - np.array(IMAGENET_MEAN)[None, :, None, None]) / np.array(IMAGENET_STD)[None, :, None, None]
    for spec in ["imagenet", "0.485,0.456,0.406/0.229,0.224,0.225", " 0.485, 0.456, 0.406 / 0.229,0.224,0.225 "]:
        assert np.allclose(normalize(images, spec).numpy(), expected, atol=1e-6)
    assert np.allclose(normalize(images, "0.5/0.25").numpy(), (images.numpy() - 0.5) / 0.25, atol=1e-6)
    assert torch.equal(normalize(images, "none"), images)


def test_the_models_own_preprocess_applies_when_no_normalisation_is_asked():
    loaded = circuits.load(Declared())
    raw = load_data("noise:5:3", input_shape=(1, 12, 12))
    assert loaded.preprocess == {"mean": [0.25], "std": [0.5]}
    assert np.allclose(model_data("noise:5:3", loaded).numpy(), (raw.numpy() - 0.25) / 0.5, atol=1e-6)
    assert np.allclose(model_data("noise:5:3", loaded, "0.5/0.1").numpy(), (raw.numpy() - 0.5) / 0.1, atol=1e-5)
    assert torch.equal(model_data("noise:5:3", loaded, "none"), raw)
    assert torch.equal(model_data("noise:5:3", circuits.load(nn.Conv2d(1, 2, 3), input_shape=(1, 12, 12))), raw)


def test_labelled_data_is_normalised_with_its_latents_untouched():
    loaded = circuits.load(Declared())
    labelled = model_labelled("toyworld:30:2", loaded, masks=True)
    raw = load_data("toyworld:30:2", input_shape=(1, 12, 12))
    assert np.allclose(labelled.images.numpy(), (raw.numpy() - 0.25) / 0.5, atol=1e-6)
    assert labelled.latents["mask"].shape[0] == 30 and str(labelled) == "toyworld:30:2"


@pytest.mark.parametrize("text, words", [
    ("0.5,0.5", "0.5/0.5"), ("0.5/0", "positive"), ("0.5/-1", "positive"), ("a/b", "numbers"), ("1/2/3", "one '/'"),
    ("imagnet", "did you mean 'imagenet'"), ("", "MEAN/STD"), ("0.1,0.2/0.1,0.2,0.3", "2 means but 3 stds"),
    ("nan/1", "finite"), ("0.5/", "numbers"),
])  # fmt: skip
def test_bad_normalisation_is_one_line_naming_the_fix(text, words):
    with pytest.raises(BadSpecError, match="normalize") as caught:
        parse_normalize(text)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_normalisation_for_other_channels_and_a_broken_preprocess_are_refused():
    with pytest.raises(DataError, match="3 values per side but the images have 1 channels"):
        model_data("noise:2", circuits.load(Declared()), "imagenet")
    broken = Declared()
    broken.preprocess = {"mean": [0.5], "std": [0.0]}
    with pytest.raises(BadSpecError, match="preprocess of model Declared.*positive"):
        model_data("noise:2", circuits.load(broken))


def test_a_tensor_file_already_normalised_is_not_normalised_again(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(4, 1, 12, 12)).astype(np.float32))
    with pytest.raises(DataError, match="normalised already.*--normalize none"):
        model_data(str(tmp_path / "x.npy"), circuits.load(Declared()))
    assert model_data(str(tmp_path / "x.npy"), circuits.load(Declared()), "none").shape == (4, 1, 12, 12)


@pytest.mark.parametrize("name", ["circuits.data.normalize", "circuits.data.photos", "circuits.data.probe"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def test_find_on_photos_uses_the_models_preprocess_unless_told_otherwise(tiny_net_spec, tmp_path):
    examples = tmp_path / "examples"
    examples.mkdir()
    for i, image in enumerate(load_data("photos:6:9", input_shape=(3, 16, 16)).numpy()):
        Image.fromarray(np.rint(image.transpose(1, 2, 0) * 255).astype(np.uint8)).save(examples / f"{i}.png")

    def scores(*extra):
        result = run("find", tiny_net_spec, "--examples", str(examples), "--data", "photos:16", "--top", "8", "--json",
                     *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["query"] == f"examples {examples}" and payload["negatives"] == 16
        return {n["neuron"]: n["score"] for n in payload["neurons"]}

    own = scores()
    assert own == scores("--normalize", "0.5,0.4,0.3/0.2,0.25,0.3")
    assert own != scores("--normalize", "none")


def test_label_runs_with_an_explicit_normalisation():
    result = run("label", "planted:lines", "--data", "toyworld:strokes:400:1", "--normalize", "0.5/0.5", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["provenance"]["arguments"]["normalize"] == "0.5/0.5" and payload["data"] == "toyworld:strokes:400:1"
    assert payload["coverage"]["lines"]["labelled"] >= 6


@pytest.mark.parametrize("args, words, code", [
    (["label", "planted:lines", "--normalize", "0.5,0.5"], "0.5/0.5", 2),
    (["find", "planted:lines", "--concept", "line", "--normalize", "0/0"], "positive", 2),
    (["find", "planted:lines", "--concept", "line", "--data", "toyworld:strokes:100", "--normalize", "imagenet"],
     "channels", 1),
    (["label", "planted:lines", "--data", "photos:16"], "no known concepts", 1),
])  # fmt: skip
def test_bad_normalisation_on_the_command_line_is_one_line(args, words, code):
    result = run(*args)
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.output


def test_the_data_doc_python_example_runs():
    text = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    start = text.index("```python\n") + len("```python\n")
    exec(compile(text[start : text.index("```\n", start)], "docs/data.md", "exec"), {})


def test_the_data_doc_console_examples_are_what_the_commands_print():
    text = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```console\n")[1:]]
    assert len(blocks) == 2
    for block in blocks:
        command, _, shown = block.partition("\n")
        result = CliRunner().invoke(main, shlex.split(command.removeprefix("$ circuits ")))
        assert result.output.strip() == shown.strip()
