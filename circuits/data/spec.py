"""Probe-data specs: one parser, used by every command that needs images.

Accepted specs (see :func:`load_data`; docs/data.md has them all, with examples):

- ``toyworld[:TASK][:N][:SEED]``  rendered toy-world images (task ``objects`` by default; N defaults to
                                  ``default_n``, SEED to 0), adapted to the model's channels and size
- ``noise:N[:SEED]``              uniform noise in [0, 1]
- ``photos[:N][:SEED]``           seeded crops of the photos scikit-image ships, with their mirror images,
                                  resized to the model's input (:mod:`circuits.data.photos`)
- ``augment:N[:SEED]:PATH``       the same crops and mirrors of a folder of your own PNG/JPG images (PATH
                                  last, so it may hold colons)
- ``PATH``                        a folder of PNG/JPG images, or a ``.npy`` / ``.pt`` tensor N x C x H x W

Every spec gives pixels in [0, 1]; :func:`circuits.data.probe.model_data` loads a spec for a model and
normalises it the way the model expects (``--normalize``, else the model's own ``preprocess``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from circuits import arguments
from circuits.errors import BadSpecError, DataError, close_matches_hint
from circuits.limits import GIB, check_seed, check_size

DATA_HELP = ("use toyworld[:TASK][:N][:SEED], noise:N[:SEED], photos[:N][:SEED], augment:N[:SEED]:FOLDER, a folder "
             "of PNG/JPG images, or a .npy/.pt file")  # fmt: skip
SCHEMES = ("toyworld", "noise", "photos", "augment")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
DEFAULT_SHAPE = (1, 32, 32)


def load_data(spec: str, input_shape: tuple[int, ...] | None = None, default_n: int = 256) -> torch.Tensor:
    """Turn a data spec into an N x C x H x W float32 tensor, the same tensor every time.

    ``input_shape`` (C, H, W), when given, is what the model expects: generated data is made to fit it,
    and a file or folder that does not fit raises :class:`~circuits.errors.DataError` naming both shapes.

    Examples
    --------
    >>> load_data("toyworld:64:1").shape
    torch.Size([64, 1, 32, 32])
    >>> load_data("noise:8", input_shape=(3, 16, 16)).shape
    torch.Size([8, 3, 16, 16])
    >>> load_data("photos:6:1", input_shape=(1, 24, 32)).shape
    torch.Size([6, 1, 24, 32])
    """
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(spec, str):
        raise BadSpecError(f"a data spec is a string or a path, got {arguments.shown(spec)}: {DATA_HELP}")
    spec = spec.strip()
    if not spec:
        raise BadSpecError(f"empty data spec: {DATA_HELP}")
    if input_shape is not None:
        input_shape = arguments.shape(input_shape)
    default_n = arguments.integer(default_n, "default_n", minimum=1)
    scheme, _, rest = spec.partition(":")
    if scheme == "toyworld":
        return _toyworld(rest, spec, input_shape, default_n)
    if scheme == "noise":
        return _noise(rest, spec, input_shape)
    if scheme == "photos":
        return _photos(rest, spec, input_shape, default_n)
    if scheme == "augment":
        return _augment(rest, spec, input_shape)
    path = Path(spec)
    if path.exists():
        data = _read_path(path, input_shape)
        if input_shape is not None:
            _check_fits(data, input_shape, spec)
        return data
    if close_matches_hint(scheme, SCHEMES):
        raise BadSpecError(f"unknown data spec '{spec}'{close_matches_hint(scheme, SCHEMES)}")
    raise BadSpecError(f"data path {arguments.quoted(spec)} does not exist: {DATA_HELP}")


def _image_geometry(input_shape, spec: str) -> tuple[int, int]:
    """(channels, size) to generate for a model expecting ``input_shape``."""
    if input_shape is None:
        return DEFAULT_SHAPE[0], DEFAULT_SHAPE[1]
    if len(input_shape) != 3:
        raise DataError(
            f"'{spec}' makes images (C, H, W) but the model expects input shape {input_shape}; "
            "pass a .npy/.pt tensor of that shape instead"
        )
    channels, height, width = input_shape
    if channels not in (1, 3) or height != width:
        raise DataError(
            f"'{spec}' renders square grey (1) or RGB (3) images, not shape {input_shape}; "
            "pass a .npy/.pt tensor of that shape instead"
        )
    return channels, height


def _ints(parts: list[str], spec: str, names: list[str]) -> list[int]:
    values = []
    for part, name in zip(parts, names):
        try:
            values.append(int(part))
        except ValueError:
            raise BadSpecError(f"bad data spec '{spec}': {name} must be an integer, got '{part}'") from None
    return values


def _count_and_seed(parts: list[str], spec: str, default_n: int | None = None) -> tuple[int, int]:
    """``(N, SEED)`` from a spec's ``[N][:SEED]`` parts: N defaults to ``default_n`` (callers without a
    default have checked it is there), SEED to 0; N must be positive and SEED a valid seed."""
    values = _ints(parts, spec, ["N", "SEED"])
    n = values[0] if values else default_n
    seed = check_seed(values[1] if len(values) > 1 else 0, f"the seed of '{spec}'")
    if n <= 0:
        raise BadSpecError(f"bad data spec '{spec}': N must be positive")
    return n, seed


@dataclass
class Labelled:
    """Toy-world images with everything the generator knows about them: class labels, latents (with
    ``mask`` when asked) and the task, so concepts can be scored on them."""

    images: torch.Tensor
    labels: np.ndarray
    latents: dict
    task: str
    spec: str

    def __str__(self) -> str:  # where a message names the data, the spec it came from
        return self.spec


def load_labelled(spec: str, input_shape: tuple[int, ...] | None = None, default_n: int = 2000,
                  masks: bool = False) -> Labelled:  # fmt: skip
    """Like :func:`load_data` for a ``toyworld[:TASK][:N][:SEED]`` spec, keeping the latents; any other spec
    raises :class:`~circuits.errors.DataError` (its images have no known concepts).

    A :class:`Labelled` given as ``spec`` (one :func:`circuits.data.probe.model_labelled` normalised for a
    model) is returned as it is, once its images fit ``input_shape`` and it has the masks asked for."""
    if isinstance(spec, Labelled):
        if input_shape is not None:
            _check_fits(spec.images, arguments.shape(input_shape), spec.spec)
        if masks and "mask" not in spec.latents:
            raise DataError(f"data '{spec.spec}' was loaded without masks; load it with masks=True")
        return spec
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(text, str) or text.strip().partition(":")[0] != "toyworld":
        raise DataError(f"data {arguments.quoted(str(spec))} has no known concepts: concept labels need toy-world images "
                        "(--data toyworld:TASK:N:SEED), or pass your own examples with --examples DIR")
    text = text.strip()
    if input_shape is not None:
        input_shape = arguments.shape(input_shape)
    default_n = arguments.integer(default_n, "default_n", minimum=1)
    return _toyworld(text.partition(":")[2], text, input_shape, default_n, keep=True, masks=masks)


def _toyworld(rest: str, spec: str, input_shape, default_n: int, keep: bool = False, masks: bool = False):
    from circuits.data import toyworld

    parts = [p for p in rest.split(":")] if rest else []
    task = "objects"
    if parts and not parts[0].lstrip("-").isdigit():
        task = parts.pop(0)
        toyworld._check_task(task)
    if len(parts) > 2:
        raise BadSpecError(f"bad data spec '{spec}': use toyworld[:TASK][:N][:SEED]")
    n, seed = _count_and_seed(parts, spec, default_n)
    channels, size = _image_geometry(input_shape, spec)
    if size < 8:
        raise DataError(f"'{spec}' renders images of at least 8x8 pixels, but the model expects {size}x{size}; "
                        "pass a .npy/.pt tensor of that shape instead")
    _check_bytes(spec, n, (channels, size, size))
    images, labels, latents = toyworld.generate(n, seed=seed, size=size, rgb=channels == 3, task=task, masks=masks)
    return Labelled(images, labels.numpy(), latents, task, spec) if keep else images


def _noise(rest: str, spec: str, input_shape) -> torch.Tensor:
    parts = rest.split(":") if rest else []
    if not parts or len(parts) > 2:
        raise BadSpecError(f"bad data spec '{spec}': use noise:N or noise:N:SEED")
    n, seed = _count_and_seed(parts, spec)
    shape = tuple(input_shape) if input_shape is not None else DEFAULT_SHAPE
    _check_bytes(spec, n, shape)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((n, *shape), dtype=np.float32))


def _photos(rest: str, spec: str, input_shape, default_n: int) -> torch.Tensor:
    from circuits.data.photos import photo_set

    if not rest and Path(spec).exists():
        raise BadSpecError(f"'{spec}' is both the sample photo set and a path here: write photos:{default_n} for "
                           f"the photos, ./{spec} for the folder")  # fmt: skip
    parts = rest.split(":") if rest else []
    if len(parts) > 2:
        raise BadSpecError(f"bad data spec '{spec}': use photos[:N][:SEED]")
    n, seed = _count_and_seed(parts, spec, default_n)
    shape = _photo_geometry(input_shape, spec)
    _check_bytes(spec, n, shape)
    return photo_set(n, seed, shape)


def split_augment(spec: str) -> tuple[list[str], Path]:
    """``augment:N[:SEED]:PATH`` -> (``[N]`` or ``[N, SEED]`` as written, the existing PATH): an integer after N
    is the seed when more follows, so PATH may hold colons (a path that starts with digits and a colon needs
    the seed written out)."""
    rest = spec.partition(":")[2]
    parts = rest.split(":", 2) if rest else []
    if len(parts) < 2 or not parts[-1]:
        raise BadSpecError(f"bad data spec '{spec}': use augment:N[:SEED]:PATH, e.g. augment:256:0:my_photos/")
    if len(parts) == 3 and not parts[1].strip().lstrip("-").isdigit():
        parts = [parts[0], f"{parts[1]}:{parts[2]}"]
    path = Path(parts[-1]).expanduser()  # the shell leaves a ~ inside a word alone
    if not path.exists():
        raise BadSpecError(f"data path {arguments.quoted(parts[-1])} in '{spec}' does not exist: augment:N[:SEED]:PATH "
                           "takes a folder of PNG/JPG images or one image")  # fmt: skip
    return parts[:-1], path


def _augment(rest: str, spec: str, input_shape) -> torch.Tensor:
    """``augment:N[:SEED]:PATH`` (:func:`split_augment`)."""
    from circuits.data.photos import augment

    head, path = split_augment(spec)
    n, seed = _count_and_seed(head, spec)
    shape = _photo_geometry(input_shape, spec)
    _check_bytes(spec, n, shape)
    return augment(path, n, seed, shape)


def _photo_geometry(input_shape, spec: str) -> tuple[int, int, int]:
    """(C, H, W) of crops for a model expecting ``input_shape``: grey or RGB, any height and width."""
    if input_shape is None:
        return DEFAULT_SHAPE
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise DataError(f"'{spec}' makes grey (1, H, W) or RGB (3, H, W) images, not shape {tuple(input_shape)}; "
                        "pass a .npy/.pt tensor of that shape instead")  # fmt: skip
    return tuple(input_shape)


def _check_bytes(spec: str, n: int, shape) -> None:
    """Generated images are float32: refuse a batch over the limit before making it."""
    import math

    check_size(f"'{spec}' ({n:,} images of {tuple(shape)})", 4 * n * math.prod(shape), "MAX_DATA_BYTES", 4 * GIB)


def _read_path(path: Path, input_shape) -> torch.Tensor:
    if path.is_dir():
        return _read_folder(path, input_shape)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"cannot read '{path}' as a .npy array: {exc}") from None
        return _as_batch(torch.from_numpy(np.asarray(array)), path)
    if suffix in {".pt", ".pth"}:
        try:
            tensor = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise DataError(f"cannot read '{path}': not a tensor saved with torch.save (or it holds pickled code)") from None
        if not isinstance(tensor, torch.Tensor):
            raise DataError(f"'{path}' holds a {type(tensor).__name__}, not a tensor N x C x H x W")
        return _as_batch(tensor, path)
    if suffix in IMAGE_SUFFIXES:
        return _read_images([path], input_shape)
    raise DataError(f"cannot read '{path}' as probe data: {DATA_HELP}")


def _as_batch(tensor: torch.Tensor, path: Path) -> torch.Tensor:
    if tensor.ndim != 4:
        raise DataError(f"'{path}' has shape {tuple(tensor.shape)}; expected N x C x H x W (4 dimensions)")
    if not (tensor.is_floating_point() or tensor.dtype == torch.uint8):
        raise DataError(f"'{path}' holds {tensor.dtype} values; expected floats (or uint8 pixels)")
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    return tensor.detach().to(torch.float32).contiguous()


def _read_folder(path: Path, input_shape) -> torch.Tensor:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"folder '{path}' holds no .png/.jpg images")
    return _read_images(files, input_shape)


def _read_images(files: list[Path], input_shape) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    channels, size = None, None
    if input_shape is not None and len(input_shape) == 3 and input_shape[0] in (1, 3):
        channels, size = input_shape[0], (input_shape[2], input_shape[1])
    arrays = []
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                if channels is None:
                    channels = 1 if image.mode in ("L", "1", "I", "I;16", "F") else 3
                image = image.convert("L" if channels == 1 else "RGB")
                if size is not None and image.size != size:
                    image = image.resize(size, Image.BILINEAR)
                array = np.asarray(image, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image '{file}': {exc}") from None
        arrays.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(
            f"images in '{files[0].parent}' have different sizes {sorted(shapes)}; resize them, or load them "
            "for a model with a known input shape"
        )
    return torch.from_numpy(np.stack(arrays))


def _check_fits(data: torch.Tensor, input_shape, spec: str) -> None:
    got = tuple(data.shape[1:])
    if got != tuple(input_shape):
        raise DataError(f"data '{spec}' has images of shape {got} but the model expects {tuple(input_shape)}")
