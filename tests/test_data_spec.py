"""The probe-data spec: toyworld, noise and files, adapted to the model's input shape, with clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from circuits.data import load_data, toyworld
from circuits.errors import BadSpecError, DataError, UsageError


def test_toyworld_spec_equals_the_generator_output():
    expected, _, _ = toyworld.generate(20, seed=5)
    assert torch.equal(load_data("toyworld:20:5"), expected)


def test_toyworld_defaults_and_task_word():
    assert load_data("toyworld", default_n=7).shape == (7, 1, 32, 32)
    curves, _, _ = toyworld.generate(6, seed=2, task="curves")
    assert torch.equal(load_data("toyworld:curves:6:2"), curves)


def test_toyworld_adapts_to_channels_and_size():
    data = load_data("toyworld:5:1", input_shape=(3, 24, 24))
    assert data.shape == (5, 3, 24, 24)
    with pytest.raises(DataError, match=r"\(2, 32, 32\)"):
        load_data("toyworld:5", input_shape=(2, 32, 32))


def test_noise_spec_is_seeded_and_shaped():
    a = load_data("noise:4", input_shape=(3, 8, 8))
    assert a.shape == (4, 3, 8, 8) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, load_data("noise:4:0", input_shape=(3, 8, 8)))
    assert not torch.equal(load_data("noise:4:1"), load_data("noise:4:2"))


@pytest.mark.parametrize("spec", ["noise", "noise:x", "toyworld:ten", "toyworld:0", "toyworld:1:2:3"])
def test_malformed_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        load_data(spec)


def test_misspelled_scheme_suggests_the_right_one():
    with pytest.raises(BadSpecError, match="did you mean 'toyworld'"):
        load_data("toyworl:10")


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(BadSpecError, match="does not exist"):
        load_data(str(tmp_path / "nothing-here"))


def test_npy_and_pt_tensors_round_trip(tmp_path):
    array = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", array)
    torch.save(torch.from_numpy(array), tmp_path / "x.pt")
    assert torch.equal(load_data(str(tmp_path / "x.npy"), input_shape=(1, 32, 32)), torch.from_numpy(array))
    assert torch.equal(load_data(str(tmp_path / "x.pt")), torch.from_numpy(array))


def test_wrong_tensor_shapes_are_data_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((3, 32, 32), np.float32))
    with pytest.raises(DataError, match="N x C x H x W"):
        load_data(str(tmp_path / "flat.npy"))
    np.save(tmp_path / "big.npy", np.zeros((2, 1, 64, 64), np.float32))
    with pytest.raises(DataError, match=r"\(1, 64, 64\).*\(1, 32, 32\)"):
        load_data(str(tmp_path / "big.npy"), input_shape=(1, 32, 32))


def test_pickled_objects_in_pt_are_refused(tmp_path):
    torch.save({"not": "a tensor", "f": print}, tmp_path / "evil.pt")
    with pytest.raises(DataError):
        load_data(str(tmp_path / "evil.pt"))


def test_image_folder_is_read_sorted_and_resized_to_the_model(tmp_path):
    for i, value in enumerate([0, 128, 255]):
        Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_data(str(tmp_path), input_shape=(1, 32, 32))
    assert data.shape == (3, 1, 32, 32)
    assert data[:, 0, 5, 5].tolist() == pytest.approx([0.0, 128 / 255, 1.0], abs=1e-6)
    assert load_data(str(tmp_path)).shape == (3, 3, 40, 40)


def test_empty_folder_and_unreadable_image_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no .png/.jpg"):
        load_data(str(tmp_path))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_data(str(tmp_path))


@pytest.mark.parametrize("spec", ["photos:x", "photos:0", "photos:1:2:3", "photos:4:-1", "augment", "augment:8",
                                  "augment:x:somewhere", "augment:0:somewhere", "augment:8:"])  # fmt: skip
def test_malformed_photo_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        load_data(spec)


def test_augment_of_a_missing_path_names_the_path(tmp_path):
    with pytest.raises(BadSpecError, match="nothing.*does not exist"):
        load_data(f"augment:8:1:{tmp_path / 'nothing'}")


def test_misspelled_photo_scheme_suggests_it():
    with pytest.raises(BadSpecError, match="did you mean 'photos'"):
        load_data("photo:10")


def test_a_folder_named_photos_is_not_silently_taken_for_the_photo_set(tmp_path, monkeypatch):
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadSpecError, match=r"\./photos"):
        load_data("photos")


def test_photos_refuse_shapes_that_are_not_grey_or_rgb_images():
    with pytest.raises(DataError, match=r"\(2, 32, 32\)"):
        load_data("photos:4", input_shape=(2, 32, 32))
    with pytest.raises(DataError, match=r"\(784,\)"):
        load_data("photos:4", input_shape=(784,))


def test_data_help_names_every_scheme():
    from circuits.data.spec import DATA_HELP, SCHEMES

    assert all(scheme in DATA_HELP for scheme in SCHEMES)


def test_labelled_data_passes_through_load_labelled_once_it_fits():
    from circuits.data.spec import load_labelled

    labelled = load_labelled("toyworld:30:1", input_shape=(1, 32, 32))
    assert load_labelled(labelled, input_shape=(1, 32, 32)) is labelled
    with pytest.raises(DataError, match=r"\(1, 32, 32\).*\(1, 24, 24\)"):
        load_labelled(labelled, input_shape=(1, 24, 24))
    with pytest.raises(DataError, match="masks"):
        load_labelled(labelled, masks=True)
