"""Normalisation of probe images: pixels in [0, 1] mapped to what a model was trained on, ``(x - mean) / std``
per input channel.

Every generated spec (toyworld, noise, photos) and every image file gives pixels in [0, 1]; a model trained on
normalised images (torchvision's ImageNet models, most checkpoints) must see them through its own mean and
std, or its activations mean nothing. A normalisation is written ``MEAN/STD``, each side one number for every
channel or one per channel, or by a preset name:

- ``0.5/0.5``                                  grey or RGB, every channel alike
- ``0.485,0.456,0.406/0.229,0.224,0.225``      per channel (the ``imagenet`` preset)
- ``imagenet``                                 torchvision's ImageNet mean and std
- ``none``                                     the pixels as they are, even for a model that declares its own

Examples
--------
>>> str(parse_normalize("0.5/0.25"))
'0.5/0.25'
>>> parse_normalize("imagenet").to_dict()
{'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from circuits.errors import BadSpecError, DataError, close_matches_hint

PRESETS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision's ImageNet models
    "none": ((0.0,), (1.0,)),
}
NORMALIZE_HELP = ("use MEAN/STD, each one number for every channel or one per channel (0.5/0.5, "
                  "0.485,0.456,0.406/0.229,0.224,0.225), or a preset: imagenet, none")  # fmt: skip


@dataclass(frozen=True)
class Normalization:
    """``(x - mean) / std`` per input channel; ``mean`` and ``std`` hold one value (every channel) or one per
    channel. ``name`` is the preset it came from, if any."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str | None = None

    def __str__(self) -> str:
        if self.name:
            return self.name
        return f"{','.join(map(repr, self.mean))}/{','.join(map(repr, self.std))}"

    @property
    def identity(self) -> bool:
        """True when it leaves every pixel as it is (``none``, ``0/1``)."""
        return all(m == 0 for m in self.mean) and all(s == 1 for s in self.std)

    def to_dict(self) -> dict:
        """``{"mean": [...], "std": [...]}``, the form a model's ``preprocess`` attribute takes."""
        return {"mean": list(self.mean), "std": list(self.std)}

    def apply(self, images):
        """``images`` (N x C x H x W, or any shape for a one-value normalisation) normalised, as a new tensor.

        Raises :class:`~circuits.errors.DataError` when a per-channel mean or std does not match the images'
        channels."""
        import torch

        if self.identity:
            return images
        if len(self.mean) == 1 and len(self.std) == 1:
            return (images - self.mean[0]) / self.std[0]
        channels = images.shape[1] if images.ndim == 4 else None
        count = max(len(self.mean), len(self.std))
        if channels != count:
            got = f"{channels} channels" if channels is not None else f"shape {tuple(images.shape)}"
            raise DataError(f"normalisation {self} has {count} values per side but the images have {got}; give one "
                            f"value per channel, or one for all: {NORMALIZE_HELP}")  # fmt: skip
        mean = torch.tensor(self.mean, dtype=images.dtype).expand(count).view(1, count, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).expand(count).view(1, count, 1, 1)
        return (images - mean) / std


def parse_normalize(value, what: str = "normalize") -> Normalization:
    """A :class:`Normalization` from ``MEAN/STD`` text, a preset name, a ``{"mean", "std"}`` dict (a model's
    ``preprocess``) or a Normalization. ``what`` names the value in errors (``--normalize`` on the command
    line). Anything else raises :class:`~circuits.errors.BadSpecError` with one sentence naming the fix."""
    if isinstance(value, Normalization):
        return value
    if isinstance(value, dict):
        if set(value) != {"mean", "std"}:
            raise BadSpecError(f"{what} {value!r}: a dict needs exactly the keys 'mean' and 'std'")
        return _checked(_numbers(value["mean"], what, "mean"), _numbers(value["std"], what, "std"), what, value)
    if not isinstance(value, str):
        raise BadSpecError(f"{what} is text or a {{'mean', 'std'}} dict, got {type(value).__name__}: {NORMALIZE_HELP}")
    text = value.strip()
    if text.lower() in PRESETS:
        mean, std = PRESETS[text.lower()]
        return Normalization(mean, std, text.lower())
    if "/" not in text:
        if "," in text and len(text.split(",")) == 2:
            mean, _, std = text.partition(",")
            raise BadSpecError(f"{what} '{value}': separate the mean from the std with '/': "
                               f"{mean.strip()}/{std.strip()}")  # fmt: skip
        hint = close_matches_hint(text.lower(), PRESETS)
        raise BadSpecError(f"{what} '{value}': unknown preset{hint}" if hint else f"{what} '{value}': {NORMALIZE_HELP}")
    if text.count("/") != 1:
        raise BadSpecError(f"{what} '{value}': one '/' between the mean and the std: {NORMALIZE_HELP}")
    mean, std = text.split("/")
    return _checked(_numbers(mean.split(","), what, "mean", value), _numbers(std.split(","), what, "std", value),
                    what, value)  # fmt: skip


def _numbers(values, what: str, side: str, shown=None) -> tuple[float, ...]:
    shown = values if shown is None else shown
    if isinstance(values, (int, float, str)):
        values = [values]
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise BadSpecError(f"{what} '{shown}': the {side} must be numbers separated by commas: "
                           f"{NORMALIZE_HELP}") from None  # fmt: skip
    if not numbers or not all(math.isfinite(n) for n in numbers):
        raise BadSpecError(f"{what} '{shown}': the {side} must be finite numbers: {NORMALIZE_HELP}")
    return numbers


def _checked(mean: tuple, std: tuple, what: str, shown) -> Normalization:
    if any(s <= 0 for s in std):
        raise BadSpecError(f"{what} '{shown}': every std must be positive (the images are divided by it)")
    if len(mean) > 1 and len(std) > 1 and len(mean) != len(std):
        raise BadSpecError(f"{what} '{shown}': {len(mean)} means but {len(std)} stds; give one of each per "
                           "channel, or one for all channels")  # fmt: skip
    return Normalization(mean, std)


def normalize(images, value):
    """``images`` normalised by ``value`` (anything :func:`parse_normalize` takes).

    Examples
    --------
    >>> import torch
    >>> normalize(torch.ones(1, 1, 2, 2), "0.5/0.25").flatten().tolist()
    [2.0, 2.0, 2.0, 2.0]
    """
    return parse_normalize(value).apply(images)
