"""Image parameterisations: what the optimiser moves, and how that becomes an image in [0, 1].

Optimising pixels directly gives high-frequency noise that drives a neuron without looking like anything.
Two remedies from the feature-visualisation literature, written here as values:

- :class:`Fourier` (Olah et al., "Feature Visualization", Distill 2017): the image is a spectrum whose
  coefficients are scaled by ``1 / frequency``, so every frequency moves at the pace natural images
  have, and colour is optimised in a decorrelated basis (the square root of the colour covariance of
  natural images, estimated here from the project's own procedural world).
- :class:`Phase` (Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude
  Constrained Optimization", 2023): only the phase is optimised; the magnitude spectrum is held at a
  natural ``1 / frequency`` fall-off, so the picture keeps natural-image statistics at any depth.

Each image starts from its own seeded draw, so a neuron's picture does not depend on which others share its
batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


def frequencies(h: int, w: int) -> torch.Tensor:
    """Radial frequency of each coefficient of an ``rfft2`` of an ``h x w`` image, in cycles per pixel."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay: float = 1.0) -> torch.Tensor:
    """``1 / frequency**decay``, the natural-image fall-off, with the DC term clamped to the lowest frequency."""
    f = frequencies(h, w).clamp(min=1.0 / max(h, w))
    return f.pow(-decay) / f.pow(-decay).max()


_WORLD_COLOURS: dict[int, torch.Tensor] = {}


def colour_basis(channels: int) -> torch.Tensor:
    """A ``channels x channels`` matrix mapping decorrelated colour to RGB: the square root of the pixel
    colour covariance of the procedural world (``toyworld``), so each decorrelated axis has unit variance.
    Grey images (one channel) need none: the identity."""
    if channels != 3:
        return torch.eye(channels)
    if 3 not in _WORLD_COLOURS:
        from circuits.data import toyworld

        images, _, _ = toyworld.generate(256, seed=0, size=32, rgb=True)
        pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double()
        cov = torch.cov(pixels)
        vals, vecs = torch.linalg.eigh(cov)
        root = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
        _WORLD_COLOURS[3] = (root / root.norm(dim=0).max()).float()
    return _WORLD_COLOURS[3]


@functools.lru_cache(maxsize=16)
def _constants(channels: int, h: int, w: int, decay: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectrum's scale and the colour basis where the parameters live: made once, not at every step."""
    return spectrum_scale(h, w, decay).to(device), colour_basis(channels).to(device)


@dataclass(frozen=True)
class Fourier:
    """A spectrum scaled by ``1 / frequency**decay``, in decorrelated colour, squashed by a sigmoid."""

    decay: float = 1.0
    init_scale: float = 0.01
    name = "fourier"

    def init(self, shape, generator: torch.Generator) -> list[torch.Tensor]:
        """One image's parameters (the caller stacks a batch)."""
        c, h, w = shape
        return [torch.randn(c, h, w // 2 + 1, 2, generator=generator) * self.init_scale]

    def image(self, params: list[torch.Tensor], shape) -> torch.Tensor:
        c, h, w = shape
        scale, basis = _constants(c, h, w, self.decay, params[0].device)
        spectrum = torch.view_as_complex(params[0]) * scale * (h * w) ** 0.5 / 4
        raw = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")
        raw = torch.einsum("ij,bjhw->bihw", basis, raw)
        return torch.sigmoid(raw)

    def to_dict(self) -> dict:
        return {"name": self.name, "decay": self.decay}


@dataclass(frozen=True)
class Phase:
    """MACO: a fixed natural magnitude spectrum (``1 / frequency**decay``), an optimised phase, and the
    result normalised to unit standard deviation before the sigmoid (the magnitude sets the contrast)."""

    decay: float = 1.0
    contrast: float = 2.0
    name = "phase"

    def init(self, shape, generator: torch.Generator) -> list[torch.Tensor]:
        c, h, w = shape
        return [(torch.rand(c, h, w // 2 + 1, generator=generator) * 2 - 1) * torch.pi]

    def image(self, params: list[torch.Tensor], shape) -> torch.Tensor:
        c, h, w = shape
        scale, basis = _constants(c, h, w, self.decay, params[0].device)
        spectrum = torch.polar(scale.expand_as(params[0]), params[0])
        raw = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")
        raw = raw - raw.mean(dim=(-2, -1), keepdim=True)
        raw = raw / (raw.flatten(1).std(dim=1)[:, None, None, None] + 1e-8)
        raw = torch.einsum("ij,bjhw->bihw", basis, raw)
        return torch.sigmoid(self.contrast * raw)

    def to_dict(self) -> dict:
        return {"name": self.name, "decay": self.decay, "contrast": self.contrast}

