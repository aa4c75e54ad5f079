"""Real photographs as probe data: the photos scikit-image ships, or a folder of your own, augmented to any
number of images of the model's size.

Each image is a seeded random crop of one photo (a side of 25-100% of the largest crop of the model's aspect
that fits, at a random place), resized to the model's height and width, in grey (luminance) or RGB; images
come in pairs, a crop and its horizontal mirror, so the set is closed under reflection: a motif detector that
compares a neuron's maps on flipped images finds every flipped image in the set too. Photos are taken in a
seeded order, each used once before any is used again.

- :func:`photo_set` makes ``photos[:N][:SEED]``, from :data:`SAMPLE_PHOTOS` (read from the files inside the
  installed scikit-image package: nothing is downloaded).
- :func:`augment` makes ``augment:N[:SEED]:PATH`` the same way from the images of a folder (or one image).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from circuits.errors import DataError

# Photographs inside the scikit-image wheel (skimage/data/): scenes, a face, an animal, objects, textures. Files
# scikit-image downloads on demand, microscopy, drawings and synthetic images are left out.
SAMPLE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
                 "gravel.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "rocket.jpg")  # fmt: skip
MIN_SIDE = 0.25  # the smallest crop, as a fraction of the largest one of the model's aspect
INSTALL = "pip install scikit-image (or pip install 'circuits[photos]')"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def photo_set(n: int, seed: int = 0, shape: tuple[int, int, int] = (3, 32, 32)) -> torch.Tensor:
    """``n`` augmented crops of :data:`SAMPLE_PHOTOS` as an ``n x C x H x W`` float32 tensor in [0, 1].

    Examples
    --------
    >>> photo_set(4, seed=1, shape=(3, 24, 32)).shape
    torch.Size([4, 3, 24, 32])
    """
    return augment_sources([functools.partial(_sample_photo, p) for p in sample_photo_paths()], n, seed, shape)


def sample_photo_paths() -> list[Path]:
    """The files of :data:`SAMPLE_PHOTOS` in the installed scikit-image, found without importing it."""
    found = importlib.util.find_spec("skimage")
    if found is None or not found.submodule_search_locations:
        raise DataError(f"the photos data spec reads the sample photos scikit-image ships: {INSTALL}")
    folder = Path(list(found.submodule_search_locations)[0]) / "data"
    paths = [folder / name for name in SAMPLE_PHOTOS if (folder / name).is_file()]
    if not paths:
        raise DataError(f"no sample photos in '{folder}': reinstall scikit-image ({INSTALL})")
    return paths


def augment(path, n: int, seed: int = 0, shape: tuple[int, int, int] = (3, 32, 32)) -> torch.Tensor:
    """``n`` augmented crops of the PNG/JPG images in folder ``path`` (sorted by name; or of one image file),
    as :func:`photo_set` makes them. The images may have any sizes and modes."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"folder '{path}' holds no .png/.jpg images to augment")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"'{path}' does not exist: augment:N[:SEED]:PATH takes a folder of PNG/JPG images or one image")
    return augment_sources([functools.partial(_open, f) for f in files], n, seed, shape)


def augment_sources(sources: list[Callable], n: int, seed: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """The augmentation itself: ``sources`` are callables returning a PIL image, each opened only when its
    crops are made (one at a time, so a folder of large photos is never all in memory)."""
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"  # L: ITU-R 601-2 luminance
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sources))
    pairs = (n + 1) // 2
    draws = rng.random((pairs, 3))  # side, left, top of each pair's crop: a prefix of a longer set's draws
    out = np.empty((n, channels, height, width), np.float32)
    used = order[np.arange(pairs) % len(sources)]
    for source in np.unique(used):
        image = sources[source]().convert(mode)
        for pair in np.flatnonzero(used == source):
            crop = _crop(image, draws[pair], height, width)
            out[2 * pair] = crop
            if 2 * pair + 1 < n:
                out[2 * pair + 1] = crop[:, :, ::-1]
    return torch.from_numpy(out)


def _crop(image, draw: np.ndarray, height: int, width: int) -> np.ndarray:
    """The crop ``draw`` = (side, left, top) in [0, 1) picks, resized to ``height x width``, as C x H x W."""
    from PIL import Image

    side, left, top = draw
    pw, ph = image.size
    aspect = width / height
    full_w, full_h = (ph * aspect, ph) if pw / ph > aspect else (pw, pw / aspect)
    scale = MIN_SIDE + (1 - MIN_SIDE) * side
    w, h = full_w * scale, full_h * scale
    x, y = left * (pw - w), top * (ph - h)
    resized = image.resize((width, height), Image.BILINEAR, box=(x, y, x + w, y + h))
    array = np.asarray(resized, dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@functools.lru_cache(maxsize=len(SAMPLE_PHOTOS))
def _sample_photo(path: Path):
    """A sample photo, decoded once per process (a dozen photos, about 10 MB)."""
    return _open(path)


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image '{path}': {exc}") from None
