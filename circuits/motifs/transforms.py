"""Spatial transforms as values: reflect, rotate (exact quarter turns or interpolated angles), scale.

A transform acts on the last two dimensions ``(H, W)`` of a tensor, about the centre, with ``y`` pointing up
the image (the planted kernels' convention, :mod:`circuits.planted.kernels`): ``Rotate(90)`` turns content
counter-clockwise exactly as ``torch.rot90(x, 1, dims=[-2, -1])`` does, and ``Reflect()`` mirrors left and
right (``torch.flip(x, dims=[-1])``).

The *same* operation acts on images, on activation maps and on kernels. Kernels live in the source's own
``(H, W)`` coordinates (docs/neuron-graph.md), so if neuron ``j``'s kernel is ``T`` of neuron ``i``'s, then
``act_j(T x) == T act_i(x)``: the network maps the transformed image to the transformed map (for exact
transforms, bit for bit up to summation order). That is the equivariance of Olah et al., "Naturally
Occurring Equivariance in Neural Networks" (Distill, 2020), and it is why weight evidence and activation
evidence can be stated with one transform value.

Transforms compose (``Reflect().then(Rotate(90))`` or ``compose(a, b)``) and invert (``t.inverse()``). Exact
ones (reflections, quarter turns on square maps) permute pixels; interpolated ones (other angles, scale)
resample bilinearly and are only meaningful inside :meth:`Transform.valid_mask`, the inscribed disc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class Transform:
    """A spatial transform of the last two dimensions. Subclasses define ``_apply`` and ``inverse``."""

    name: str = "transform"
    exact: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"a spatial transform needs a tensor [..., H, W], got shape {tuple(x.shape)}")
        return self._apply(x)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """Transform images ``[N, C, H, W]`` (or anything ``[..., H, W]``)."""
        return self(x)

    def kernel(self, k: torch.Tensor) -> torch.Tensor:
        """Transform kernels ``[..., kh, kw]`` about their centre: the same operation as on images."""
        return self(k)

    def inverse(self) -> Transform:  # pragma: no cover - abstract
        raise NotImplementedError

    def then(self, other: Transform) -> Transform:
        """``self`` first, then ``other``."""
        return compose(self, other)

    def exact_on(self, shape) -> bool:
        """True when this transform permutes the pixels of a map of ``shape`` (..., H, W) exactly."""
        return self.exact

    def valid_mask(self, h: int, w: int) -> torch.Tensor:
        """``[h, w]`` float mask of the positions where transformed values are defined: everything for exact
        transforms, the inscribed disc for interpolated ones (their corners come from outside the map)."""
        if self.exact_on((h, w)):
            return torch.ones(h, w)
        return disc(h, w)

    def to_dict(self) -> dict:
        return {"name": self.name}

    def __repr__(self):
        params = ", ".join(f"{k}={v}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({params})"


@dataclass(frozen=True, repr=False)
class Identity(Transform):
    """Leaves everything as it is (the unit of :func:`compose`)."""

    name = "identity"

    def _apply(self, x):
        return x

    def inverse(self):
        return self


@dataclass(frozen=True, repr=False)
class Reflect(Transform):
    """Horizontal reflection (left <-> right): a feature at angle θ becomes one at 180° - θ."""

    name = "reflect"

    def _apply(self, x):
        return torch.flip(x, dims=[-1])

    def inverse(self):
        return self


@dataclass(frozen=True, repr=False)
class Rotate(Transform):
    """Rotation by ``angle`` degrees counter-clockwise about the centre.

    Multiples of 90° on square maps are exact (``torch.rot90``); any other angle, or a quarter turn of a
    non-square map, is resampled bilinearly onto the same grid ("interpolated rotation"), so it keeps the
    shape and is valid inside the inscribed disc only.
    """

    angle: float = 90.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return "rotate90" if self.quarter_turns is not None else "rotate"

    @property
    def quarter_turns(self) -> int | None:
        turns = float(self.angle) / 90.0
        return int(round(turns)) % 4 if abs(turns - round(turns)) < 1e-9 else None

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return self.quarter_turns is not None

    def exact_on(self, shape) -> bool:
        return self.quarter_turns is not None and (self.quarter_turns % 2 == 0 or shape[-1] == shape[-2])

    def _apply(self, x):
        if self.exact_on(x.shape):
            return torch.rot90(x, self.quarter_turns, dims=[-2, -1])
        return _resample(x, _rotation(self.angle))

    def inverse(self):
        return Rotate(-float(self.angle))

    def to_dict(self):
        return {"name": self.name, "angle": float(self.angle)}


@dataclass(frozen=True, repr=False)
class Scale(Transform):
    """Magnification by ``factor`` about the centre (> 1 enlarges), resampled bilinearly."""

    factor: float = 2.0
    name = "scale"
    exact = False

    def exact_on(self, shape) -> bool:
        return self.factor == 1.0

    def _apply(self, x):
        if self.factor == 1.0:
            return x
        f = 1.0 / float(self.factor)
        return _resample(x, torch.tensor([[f, 0.0], [0.0, f]], dtype=torch.float64))

    def inverse(self):
        return Scale(1.0 / float(self.factor))

    def to_dict(self):
        return {"name": self.name, "factor": float(self.factor)}


@dataclass(frozen=True, repr=False)
class Compose(Transform):
    """Apply ``parts`` in order."""

    parts: tuple[Transform, ...] = ()
    name = "compose"

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return all(p.exact for p in self.parts)

    def exact_on(self, shape) -> bool:
        return all(p.exact_on(shape) for p in self.parts)

    def _apply(self, x):
        for part in self.parts:
            x = part(x)
        return x

    def inverse(self):
        return Compose(tuple(p.inverse() for p in reversed(self.parts)))

    def to_dict(self):
        return {"name": self.name, "parts": [p.to_dict() for p in self.parts]}


def compose(*parts: Transform) -> Transform:
    """``compose(a, b)(x) == b(a(x))``; nested compositions are flattened, identities dropped."""
    flat: list[Transform] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Compose) else [part])
    flat = [p for p in flat if not isinstance(p, Identity)]
    if not flat:
        return Identity()
    return flat[0] if len(flat) == 1 else Compose(tuple(flat))


def power(transform: Transform, n: int) -> Transform:
    """``transform`` applied ``n`` times (``n`` may be 0 or negative)."""
    step = transform if n >= 0 else transform.inverse()
    return compose(*([step] * abs(n)))


def disc(h: int, w: int, soft: float = 0.0) -> torch.Tensor:
    """``[h, w]`` mask of the disc inscribed in the map (1 inside). With ``soft`` > 0 the edge ramps over
    ``soft`` pixels, so the disc itself looks the same after any rotation (no aliased staircase)."""
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    radius = min(h, w) / 2.0
    rows = torch.arange(h, dtype=torch.float64)[:, None] - cy
    cols = torch.arange(w, dtype=torch.float64)[None, :] - cx
    dist = torch.sqrt(rows**2 + cols**2)
    if soft > 0:
        return ((radius - dist) / soft).clamp(0.0, 1.0).float()
    return (dist <= radius + 1e-9).float()


def _rotation(angle: float) -> torch.Tensor:
    """The matrix taking an output point (x, y up) to the input point it samples: R(-angle)."""
    t = math.radians(float(angle))
    c, s = math.cos(t), math.sin(t)
    return torch.tensor([[c, s], [-s, c]], dtype=torch.float64)


def _resample(x: torch.Tensor, inverse_map: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling on the same grid: output pixel p reads input at ``inverse_map @ p`` (centred,
    y up, in pixels). Values from outside the map are zero."""
    h, w = x.shape[-2:]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    ys = cy - torch.arange(h, dtype=torch.float64)  # y up
    xs = torch.arange(w, dtype=torch.float64) - cx
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    src_x = inverse_map[0, 0] * gx + inverse_map[0, 1] * gy
    src_y = inverse_map[1, 0] * gx + inverse_map[1, 1] * gy
    # grid_sample with align_corners=True: -1 and 1 are the centres of the first and last pixels
    norm_x = src_x / cx if cx > 0 else torch.zeros_like(src_x)
    norm_y = -src_y / cy if cy > 0 else torch.zeros_like(src_y)
    grid = torch.stack([norm_x, norm_y], dim=-1).to(x.device, x.dtype if x.is_floating_point() else torch.float32)
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w).to(grid.dtype)
    out = F.grid_sample(flat, grid[None].expand(flat.shape[0], h, w, 2), mode="bilinear",
                        padding_mode="zeros", align_corners=True)  # fmt: skip
    return out.reshape(*lead, h, w).to(x.dtype)


TRANSFORMS = ("reflect", "rotate90", "rotate")


def parse(name: str, angle: float | None = None) -> Transform:
    """A transform from its JSON name: ``reflect``, ``rotate90``, ``rotate`` (with ``angle``), ``identity``."""
    if name == "reflect":
        return Reflect()
    if name == "rotate90":
        return Rotate(90.0)
    if name == "rotate":
        return Rotate(45.0 if angle is None else float(angle))
    if name == "identity":
        return Identity()
    from circuits.errors import UsageError, close_matches_hint

    raise UsageError(f"unknown transform '{name}' (transforms: {', '.join(TRANSFORMS)}){close_matches_hint(name, TRANSFORMS)}")
