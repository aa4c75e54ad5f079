"""Kernel generators: oriented line, edge, curve, blob, Gabor, seeded random.

Every generator is a deterministic function of its parameters and returns a ``size x size`` float64 array
indexed ``kernel[dy][dx]`` in the source's (H, W) coordinates, centred on ``size // 2`` (so sizes are odd).

Angles are in degrees, counter-clockwise from the +x axis (rightwards) with y pointing *up* the image, so
``np.rot90(image)`` / ``torch.rot90(x, 1, dims=[-2, -1])`` turns a feature at angle θ into one at θ + 90, and
a horizontal flip (``x[..., ::-1]``) turns θ into 180 - θ.

Exact symmetry. A generator evaluated naively at angle θ + 90 differs from ``rot90`` of the one at θ in
the last bits (``cos(90°)`` is not 0 in floating point). So oriented generators compute the kernel for a
canonical angle θ0 in [0°, 45°] only and reach every other angle by the square's symmetries (rotations by
90° and the horizontal flip): ``line(θ + 90) == rot90(line(θ))`` and ``line(180 - θ) == fliplr(line(θ))``
hold bit for bit, which is what makes the planted rotation and reflection motifs exact.
"""

from __future__ import annotations

import math

import numpy as np

from circuits.errors import BadSpecError, close_matches_hint


def _grid(size: int):
    """x rightwards, y upwards, both centred: x[dy][dx] = dx - c, y[dy][dx] = c - dy."""
    c = size // 2
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    return cols - c, c - rows


def _canonical(angle: float):
    """(θ0 in [0, 45], k quarter turns, flip) with angle == k*90 + (180 - θ0 if flip else θ0) (mod 360)."""
    a = float(angle) % 360.0
    for k in range(4):
        phi = (a - 90.0 * k) % 360.0
        for flip in (False, True):
            theta0 = (180.0 - phi) % 360.0 if flip else phi
            if 0.0 <= theta0 <= 45.0:
                return theta0, k, flip
    raise AssertionError(f"no canonical angle for {angle}")  # unreachable: the 8 cells cover the circle


def _cos_sin(theta0: float):
    """cos and sin of a canonical angle, exact at the symmetric ends (0° and 45°)."""
    if theta0 == 0.0:
        return 1.0, 0.0
    if theta0 == 45.0:
        c = math.sqrt(0.5)
        return c, c
    t = math.radians(theta0)
    return math.cos(t), math.sin(t)


def _oriented(base, size: int, angle: float) -> np.ndarray:
    """Evaluate ``base(x, y, c, s)`` at the canonical angle and move it to ``angle`` by symmetry."""
    theta0, k, flip = _canonical(angle)
    x, y = _grid(size)
    c, s = _cos_sin(theta0)
    kernel = base(x, y, c, s)
    if flip:
        kernel = kernel[:, ::-1]
    return np.ascontiguousarray(np.rot90(kernel, k))


def _zero_mean_unit_max(kernel: np.ndarray) -> np.ndarray:
    kernel = kernel - kernel.mean()
    peak = np.abs(kernel).max()
    return kernel / peak if peak > 0 else kernel


def line(size: int, angle: float, width: float = 0.8) -> np.ndarray:
    """A bright line through the centre at ``angle`` on a dark surround: zero mean, peak 1.

    A Gaussian ridge ``exp(-d² / 2 width²)`` of the distance ``d`` to the line; lines are orientations, so
    ``line(θ) == line(θ + 180)``.
    """

    def base(x, y, c, s):
        d = c * y - s * x
        return _zero_mean_unit_max(np.exp(-(d * d) / (2.0 * width * width)))

    return _oriented(base, size, angle)


def edge(size: int, angle: float, width: float = 1.0) -> np.ndarray:
    """A dark-to-bright edge through the centre, bright on the side ``angle`` points to; odd, peak 1."""

    def base(x, y, c, s):
        u = c * x + s * y
        return _zero_mean_unit_max(np.tanh(u / width))

    return _oriented(base, size, angle)


def curve(size: int, angle: float, radius: float = 4.0, width: float = 0.8) -> np.ndarray:
    """An arc of a circle of ``radius`` through the centre, bulging towards ``angle``; zero mean, peak 1.

    The circle's centre lies at distance ``radius`` from the kernel centre in direction ``angle + 180``, so
    the arc's tangent at the kernel centre is perpendicular to ``angle`` and its convex side faces it.
    """

    def base(x, y, c, s):
        cx, cy = -radius * c, -radius * s
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) - radius
        return _zero_mean_unit_max(np.exp(-(d * d) / (2.0 * width * width)))

    return _oriented(base, size, angle)


def gabor(size: int, angle: float, freq: float = 0.25, sigma: float = 1.5, phase: float = 0.0) -> np.ndarray:
    """``exp(-r² / 2σ²) · cos(2π freq u + phase)`` with ``u`` the coordinate along ``angle``; peak |1|.

    ``freq`` is in cycles per pixel, ``phase`` in degrees.
    """

    def base(x, y, c, s):
        u = c * x + s * y
        envelope = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
        kernel = envelope * np.cos(2.0 * math.pi * freq * u + math.radians(phase))
        peak = np.abs(kernel).max()
        return kernel / peak if peak > 0 else kernel

    return _oriented(base, size, angle)


def blob(size: int, sigma: float = 1.0) -> np.ndarray:
    """An isotropic Gaussian ``exp(-r² / 2σ²)``, peak 1 at the centre (invariant under every symmetry)."""
    x, y = _grid(size)
    return np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))


def random(size: int, seed: int = 0, scale: float = 0.5) -> np.ndarray:
    """Seeded Gaussian noise ``N(0, scale²)``: the weights of a decoy neuron, the same on every machine."""
    return np.random.default_rng(int(seed)).normal(0.0, float(scale), size=(size, size))


# name -> (function, required parameters, optional parameters)
GENERATORS = {
    "line": (line, ("angle",), ("width",)),
    "edge": (edge, ("angle",), ("width",)),
    "curve": (curve, ("angle",), ("radius", "width")),
    "gabor": (gabor, ("angle",), ("freq", "sigma", "phase")),
    "blob": (blob, (), ("sigma",)),
    "random": (random, (), ("seed", "scale")),
}


def generate(params: dict, size: int, where: str = "kernel") -> np.ndarray:
    """Build the kernel described by ``{"generator": NAME, "size": N?, ...parameters}``.

    ``size`` is the layer's kernel size; a ``size`` in ``params`` must agree with it. ``where`` names the
    spec location for error messages. Raises :class:`BadSpecError` for an unknown generator or parameter.
    """
    params = dict(params)
    name = params.pop("generator", None)
    if name not in GENERATORS:
        known = ", ".join(sorted(GENERATORS))
        hint = close_matches_hint(str(name), GENERATORS) if name is not None else ""
        raise BadSpecError(f"{where}: unknown kernel generator {name!r}{hint} (known: {known})")
    func, required, optional = GENERATORS[name]
    given = params.pop("size", size)
    if given != size:
        raise BadSpecError(
            f"{where}: {name} kernel size {given} does not match the layer's kernel_size {size}; "
            f"drop 'size' or set the layer's kernel_size to {given}"
        )
    unknown = sorted(set(params) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join((*required, *optional)) or "none"
        raise BadSpecError(
            f"{where}: unknown parameter '{unknown[0]}' for generator '{name}'"
            f"{close_matches_hint(unknown[0], (*required, *optional))} (parameters: {allowed})"
        )
    missing = [p for p in required if p not in params]
    if missing:
        raise BadSpecError(f"{where}: generator '{name}' needs '{missing[0]}' (e.g. {{generator: {name}, "
                           f"{missing[0]}: 45}})")
    if size % 2 == 0:
        raise BadSpecError(
            f"{where}: generator '{name}' needs an odd kernel size to have a centre, got {size}; "
            "use an odd kernel_size or give the kernel as an array"
        )
    try:
        values = {k: float(v) if k != "seed" else int(v) for k, v in params.items()}
    except (TypeError, ValueError):
        raise BadSpecError(f"{where}: generator '{name}' parameters must be numbers, got {params}") from None
    return func(size, **values)
