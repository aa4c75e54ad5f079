"""Transformation robustness: the picture must drive the neuron after being shifted, scaled and turned.

An image that excites a neuron only at one exact pixel alignment is an adversarial pattern, not a feature;
drawing a small random transform before every step (Olah et al. 2017; Lucid's ``pad``, ``jitter``,
``random_scale``, ``random_rotate``) leaves only what survives them. The rotations and scalings are the
project's own :mod:`circuits.motifs.transforms`, so the same resampling is used everywhere. Shifts are in
fractions of the neuron's receptive field (``size``, in input pixels), not of the image: a 2-pixel jitter
is nothing to a 200-pixel field and smears a 5-pixel line detector's picture into a blur (the reason small
inputs come out blurry in tools that jitter by a fixed number of pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from circuits.motifs.transforms import Rotate, Scale


def _draw(generator: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


@dataclass(frozen=True)
class Jitter:
    """Shift by up to ``fraction`` of the receptive field in each direction (whole pixels, reflect-padded,
    then cropped back); none for a field under ``1 / fraction`` pixels."""

    fraction: float = 1 / 16

    def __call__(self, x: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        py = px = min(int(size * self.fraction), h - 1, w - 1)
        if py < 1:
            return x
        padded = F.pad(x, (px, px, py, py), mode="reflect")
        dy = int(torch.randint(0, 2 * py + 1, (), generator=generator))
        dx = int(torch.randint(0, 2 * px + 1, (), generator=generator))
        return padded[..., dy : dy + h, dx : dx + w]


@dataclass(frozen=True)
class RandomScale:
    """Magnify by a factor drawn from ``[low, high]``."""

    low: float = 0.9
    high: float = 1.1

    def __call__(self, x, generator, size):
        return Scale(_draw(generator, self.low, self.high))(x)


@dataclass(frozen=True)
class RandomRotate:
    """Turn by an angle drawn from ``[-degrees, degrees]``."""

    degrees: float = 10.0

    def __call__(self, x, generator, size):
        return Rotate(_draw(generator, -self.degrees, self.degrees))(x)


DEFAULT = (Jitter(1 / 16), RandomScale(), RandomRotate(), Jitter(1 / 32))


def apply(transforms, x: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    """``x`` through each of ``transforms`` in turn, ``size`` the receptive field's extent in pixels."""
    for transform in transforms:
        x = transform(x, generator, size)
    return x
