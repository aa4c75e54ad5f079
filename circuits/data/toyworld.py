"""The toy world: a seeded procedural image generator whose latent factors are known.

Every image is drawn in closed form from signed distance functions evaluated on a pixel grid, vectorised
over the batch with numpy, so a single core renders thousands of 32x32 images per second and the same
``(n, seed, size, rgb, task)`` always gives the same bytes.

Tasks (``TASKS``), each with its own labels:

- ``objects``    asymmetric objects that *face* left or right — fish (tail), bird head (beak), arrow —
                 at random positions, scales and small tilts, over mirror-symmetric distractors (ring,
                 plus, square) and noise.
                 Label: the object class, independent of facing.
- ``curves``     one arc of random radius, span, thickness and position. Label: which way the arc's convex
                 side points (0 right, 1 down, 2 left, 3 up in image coordinates), jittered up to ±35°
                 around the class direction so that the classes are separable.
- ``primitives`` one of: oriented line, oriented step edge, arc, high/low-frequency boundary, texture, at
                 any angle. Label: the primitive kind.
- ``strokes``    one thin mark: a line at any orientation or a wedge ``<`` / ``>`` (arms at ±45° to its axis)
                 — the parts the planted line and wedge nets (:mod:`circuits.planted`) detect, drawn so
                 their labels can be checked. Label: the mark's kind. Its ``angle`` is the planted kernels'
                 convention (degrees counter-clockwise from +x with y up): a line's orientation in
                 [0, 180), a wedge's small tilt (±8°); ``facing`` is -1 for ``<``, +1 for ``>``.

Latents (a dict of numpy arrays, one entry per image) keep every factor for analysis: ``facing`` (+1 right,
-1 left, 0 for unfaced), ``angle`` (degrees), ``x``/``y`` (centre in [-1, 1] image coordinates, y down),
``scale`` (fraction of the half-width), plus task-specific ones (``radius``, ``span``). With ``masks=True``
the latents also hold ``mask``, N x size x size booleans: the pixels of the labelled thing (the object, the
arc, the mark; a primitive's line, edge side or arc, and the whole image for a boundary or a texture), which
is what concept labels are scored against (Network Dissection's segmentation masks).

Example::

    images, labels, latents = generate(512, seed=0)              # 512x1x32x32 float32 in [0, 1]
    images, labels, latents = generate(64, seed=1, rgb=True, task="curves")
"""

from __future__ import annotations

import numpy as np

TASKS = {
    "objects": ("fish", "bird", "arrow"),
    "curves": ("arc-right", "arc-down", "arc-left", "arc-up"),
    "primitives": ("line", "edge", "curve", "frequency-boundary", "texture"),
    "strokes": ("line", "wedge"),
}
OBJECT_ANGLE_MAX = 25.0  # degrees: small tilts keep "facing left/right" meaningful
CURVE_JITTER = 35.0  # degrees around each curve class direction
OBJECT_SCALE = (0.22, 0.32)  # object half-length ~ 0.85 * scale * size / 2 pixels


def class_names(task: str = "objects") -> tuple[str, ...]:
    """The label names of ``task`` (index = label)."""
    _check_task(task)
    return TASKS[task]


def generate(n: int, seed: int = 0, size: int = 32, rgb: bool = False, task: str = "objects", masks: bool = False):
    """Render ``n`` images of ``task``; returns ``(images, labels, latents)``.

    Parameters
    ----------
    n : number of images.  seed : any int; the only source of randomness.
    size : image height and width in pixels.  rgb : 3 channels (coloured objects and backgrounds) or 1.
    task : one of ``TASKS``.  masks : also return each image's mask as ``latents["mask"]`` (the images and
    the other latents are the same either way).

    Returns
    -------
    images : ``torch.Tensor`` N x C x size x size, float32 in [0, 1].
    labels : ``torch.Tensor`` N, int64.
    latents : dict of numpy arrays of length N (see the module docstring).
    """
    import torch

    _check_task(task)
    if n < 0 or size < 8:
        raise ValueError(f"need n >= 0 and size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _TASK_SALT[task]])
    if n == 0:
        channels = 3 if rgb else 1
        return torch.zeros(0, channels, size, size), torch.zeros(0, dtype=torch.long), {}
    grid = _grid(size)
    alpha, labels, latents, background = _RENDER[task](rng, n, grid, size)
    mask = latents.pop("_mask")
    if masks:
        latents["mask"] = mask
    images = _compose(rng, alpha, rgb, background)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), latents


_TASK_SALT = {"objects": 11, "curves": 13, "primitives": 17, "strokes": 19}


def _check_task(task: str) -> None:
    if task not in TASKS:
        from circuits.errors import UsageError, close_matches_hint

        raise UsageError(f"unknown toy-world task '{task}'{close_matches_hint(task, TASKS)}; use one of {', '.join(TASKS)}")


def _grid(size: int):
    """Pixel-centre coordinates in [-1, 1], shape (1, size, size) each; y grows downwards."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    return axis[None, None, :], axis[None, :, None]


def _col(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _coverage(dist_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - dist_px, 0.0, 1.0)


def _frame(grid, cx, cy, angle_deg, scale, facing=None):
    """Coordinates in an object's frame: centred, rotated by ``angle``, scaled, mirrored if facing left."""
    gx, gy = grid
    dx, dy = gx - _col(cx), gy - _col(cy)
    theta = np.deg2rad(angle_deg).astype(np.float32)
    c, s = _col(np.cos(theta)), _col(np.sin(theta))
    sc = _col(scale)
    u = (c * dx + s * dy) / sc
    v = (-s * dx + c * dy) / sc
    if facing is not None:
        u = u * _col(facing)
    return u, v


# --- signed distance pieces, in object units ------------------------------------------------------------


def _ellipse(u, v, cu, cv, a, b):
    return (np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2) - 1.0) * min(a, b)


def _circle(u, v, cu, cv, r):
    return np.sqrt((u - cu) ** 2 + (v - cv) ** 2) - r


def _box(u, v, cu, cv, hu, hv):
    return np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv)


def _triangle(u, v, p0, p1, p2):
    """Intersection of three half-planes (exact inside, a close bound outside)."""
    pts = [p0, p1, p2]
    area = (p1[0] - p0[0]) * (p2[1] - p0[1]) - (p1[1] - p0[1]) * (p2[0] - p0[0])
    sign = 1.0 if area > 0 else -1.0
    dist = None
    for i in range(3):
        (ax, ay), (bx, by) = pts[i], pts[(i + 1) % 3]
        ex, ey = bx - ax, by - ay
        norm = float(np.hypot(ex, ey))
        # outward normal of a counter-clockwise edge is (ey, -ex)
        d = sign * ((u - ax) * ey - (v - ay) * ex) / norm
        dist = d if dist is None else np.maximum(dist, d)
    return dist


def _fish(u, v):
    body = _ellipse(u, v, 0.12, 0.0, 0.58, 0.32)
    tail = _triangle(u, v, (-0.30, 0.0), (-0.88, -0.40), (-0.88, 0.40))
    fin = _triangle(u, v, (0.05, -0.25), (-0.25, -0.25), (-0.20, -0.45))
    return np.minimum(np.minimum(body, tail), fin), _circle(u, v, 0.42, -0.08, 0.08)


def _bird(u, v):
    head = _circle(u, v, -0.15, -0.05, 0.40)
    beak = _triangle(u, v, (0.18, -0.18), (0.18, 0.10), (0.85, 0.02))
    neck = _box(u, v, -0.30, 0.45, 0.20, 0.30)
    return np.minimum(np.minimum(head, beak), neck), _circle(u, v, 0.02, -0.15, 0.08)


def _arrow(u, v):
    shaft = _box(u, v, -0.30, 0.0, 0.55, 0.10)
    head = _triangle(u, v, (0.20, -0.42), (0.20, 0.42), (0.85, 0.0))
    return np.minimum(shaft, head), None


_OBJECTS = (_fish, _bird, _arrow)


def _ring(u, v):
    return np.abs(np.sqrt(u * u + v * v) - 0.75) - 0.22


def _plus(u, v):
    return np.minimum(_box(u, v, 0, 0, 0.9, 0.22), _box(u, v, 0, 0, 0.22, 0.9))


def _square(u, v):
    return np.abs(_box(u, v, 0, 0, 0.7, 0.7)) - 0.18


def _body(u, v):
    return _ellipse(u, v, 0.0, 0.0, 0.58, 0.32)


def _disk(u, v):
    return _circle(u, v, 0.0, 0.0, 0.40)


def _bar(u, v):
    return _box(u, v, 0.0, 0.0, 0.70, 0.10)


# Mirror-symmetric clutter: small marks, and optionally the objects' own symmetric parts (body, head, shaft)
# without the part that makes them face a way. Part distractors are off in the shipped recipes: with them the
# small CNNs lost 2 points of accuracy and many neurons died, and the reflection motif was no clearer.
_DISTRACTORS = (_ring, _plus, _square, _body, _disk, _bar)
_PART_DISTRACTORS = 3  # kinds from this index on are object parts, drawn at object scale
PART_DISTRACTORS = False
_N_KINDS = len(_DISTRACTORS) if PART_DISTRACTORS else _PART_DISTRACTORS


# --- tasks ----------------------------------------------------------------------------------------------


def _render_objects(rng, n, grid, size):
    labels = rng.integers(0, 3, n)
    facing = rng.choice(np.array([1, -1], dtype=np.int64), n)
    angle = rng.uniform(-OBJECT_ANGLE_MAX, OBJECT_ANGLE_MAX, n).astype(np.float32)
    scale = rng.uniform(OBJECT_SCALE[0], OBJECT_SCALE[1], n).astype(np.float32)
    cx = rng.uniform(-0.4, 0.4, n).astype(np.float32)
    cy = rng.uniform(-0.4, 0.4, n).astype(np.float32)
    px = size / 2.0
    layers = []  # (coverage, level) painted back to front
    for slot in range(2):  # symmetric distractors behind the object
        present = rng.random(n) < (0.8 if slot == 0 else 0.5)
        kind = rng.integers(0, _N_KINDS, n)
        part = kind >= _PART_DISTRACTORS
        d_scale = np.where(part, rng.uniform(0.3, 0.55, n), rng.uniform(0.08, 0.14, n)).astype(np.float32)
        d_angle = np.where(part, rng.uniform(-OBJECT_ANGLE_MAX, OBJECT_ANGLE_MAX, n), 0.0).astype(np.float32)
        d_x = rng.uniform(-0.8, 0.8, n).astype(np.float32)
        d_y = rng.uniform(-0.8, 0.8, n).astype(np.float32)
        u, v = _frame(grid, d_x, d_y, d_angle, d_scale)
        dist = np.full((n, size, size), 1e3, np.float32)
        for k, shape in enumerate(_DISTRACTORS):
            dist = np.where((kind == k)[:, None, None], shape(u, v), dist)
        cov = _coverage(dist * _col(d_scale) * px) * _col(present)
        layers.append((cov, rng.uniform(0.3, 0.8, n).astype(np.float32)))
    u, v = _frame(grid, cx, cy, angle, scale, facing)
    body = np.empty((n, size, size), np.float32)
    eye = np.zeros((n, size, size), np.float32)
    for k, shape in enumerate(_OBJECTS):
        idx = labels == k
        if not idx.any():
            continue
        d_body, d_eye = shape(u[idx], v[idx])
        body[idx] = _coverage(d_body * _col(scale[idx]) * px)
        if d_eye is not None:
            eye[idx] = _coverage(d_eye * _col(scale[idx]) * px)
    layers.append((body * (1 - eye), rng.uniform(0.95, 1.0, n).astype(np.float32)))
    latents = {"facing": facing, "angle": angle, "x": cx, "y": cy, "scale": scale,
               "_mask": body >= 0.5}  # the eye is a hole in the paint, not in the object
    return layers, labels, latents, (0.05, 0.1)


def _arc_distance(grid, cx, cy, orient_deg, radius, span_deg, thickness_px, size):
    """Distance (pixels) to an arc whose convex side faces ``orient``, midpoint at (cx, cy)."""
    theta = np.deg2rad(orient_deg).astype(np.float32)
    # the circle's centre sits one radius behind the arc's midpoint
    ox = _col(cx - radius * np.cos(theta))
    oy = _col(cy - radius * np.sin(theta))
    gx, gy = grid
    dx, dy = gx - ox, gy - oy
    rho = np.sqrt(dx * dx + dy * dy)
    phi = np.arctan2(dy, dx) - _col(theta)
    phi = np.abs((phi + np.pi) % (2 * np.pi) - np.pi)
    px = size / 2.0
    d_ring = np.abs(rho - _col(radius)) * px - _col(thickness_px) / 2
    d_ang = (phi - _col(np.deg2rad(span_deg) / 2)) * _col(radius) * px
    return np.maximum(d_ring, d_ang)


def _render_curves(rng, n, grid, size):
    labels = rng.integers(0, 4, n)
    orient = (labels * 90.0 + rng.uniform(-CURVE_JITTER, CURVE_JITTER, n)).astype(np.float32) % 360.0
    radius = rng.uniform(0.25, 0.6, n).astype(np.float32)
    span = rng.uniform(100.0, 160.0, n).astype(np.float32)
    thick = rng.uniform(1.2, 2.4, n).astype(np.float32)
    cx = rng.uniform(-0.35, 0.35, n).astype(np.float32)
    cy = rng.uniform(-0.35, 0.35, n).astype(np.float32)
    cov = _coverage(_arc_distance(grid, cx, cy, orient, radius, span, thick, size))
    latents = {
        "facing": np.zeros(n, np.int64), "angle": orient, "x": cx, "y": cy, "scale": radius,
        "radius": radius, "span": span, "_mask": cov >= 0.5,
    }
    return [(cov, rng.uniform(0.7, 1.0, n).astype(np.float32))], labels, latents, (0.0, 0.2)


def _render_primitives(rng, n, grid, size):
    labels = rng.integers(0, 5, n)
    angle = rng.uniform(0, 360, n).astype(np.float32)
    cx = rng.uniform(-0.4, 0.4, n).astype(np.float32)
    cy = rng.uniform(-0.4, 0.4, n).astype(np.float32)
    scale = rng.uniform(0.3, 0.6, n).astype(np.float32)
    thick = rng.uniform(1.2, 2.4, n).astype(np.float32)
    period_hi = rng.uniform(2.5, 4.0, n).astype(np.float32)
    period_lo = rng.uniform(10.0, 16.0, n).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    px = size / 2.0
    u, v = _frame(grid, cx, cy, angle, np.ones(n, np.float32))
    along, across = u * px, v * px  # pixels along / across the primitive's axis
    line = _coverage(np.maximum(np.abs(along) - _col(scale) * size, np.abs(across) - _col(thick) / 2))
    edge = _coverage(across)
    curve = _coverage(_arc_distance(grid, cx, cy, angle, scale, np.full(n, 140.0, np.float32), thick, size))
    hi = 0.5 + 0.5 * np.sin(2 * np.pi * along / _col(period_hi) + _col(phase))
    lo = 0.5 + 0.5 * np.sin(2 * np.pi * along / _col(period_lo) + _col(phase))
    boundary = np.where(across < 0, hi, lo)
    texture = (0.5 + 0.25 * np.sin(2 * np.pi * along / _col(period_hi) + _col(phase))
               + 0.25 * np.sin(2 * np.pi * across / _col(period_hi * 1.7)))
    cov = np.empty((n, size, size), np.float32)
    for k, image in enumerate((line, edge, curve, boundary, texture)):
        idx = labels == k
        cov[idx] = image[idx]
    mask = np.where((labels >= 3)[:, None, None], True, cov >= 0.5)  # a boundary or a texture fills the image
    latents = {"facing": np.zeros(n, np.int64), "angle": angle, "x": cx, "y": cy, "scale": scale, "_mask": mask}
    return [(cov, rng.uniform(0.7, 1.0, n).astype(np.float32))], labels, latents, (0.0, 0.2)


def _segment_distance(grid, x0, y0, angle_ccw, length_px, size):
    """Distance (pixels) to the segment from (x0, y0) going ``length_px`` at ``angle_ccw`` (y up)."""
    gx, gy = grid
    px = size / 2.0
    theta = np.deg2rad(angle_ccw).astype(np.float32)
    dx, dy = (gx - _col(x0)) * px, (gy - _col(y0)) * px
    ux, uy = _col(np.cos(theta)), -_col(np.sin(theta))  # image rows grow downwards
    t = np.clip(dx * ux + dy * uy, 0.0, _col(length_px))
    return np.sqrt((dx - t * ux) ** 2 + (dy - t * uy) ** 2)


def _render_strokes(rng, n, grid, size):
    labels = rng.integers(0, 2, n)  # line, wedge
    line_angle = rng.uniform(0.0, 180.0, n).astype(np.float32)
    tilt = rng.uniform(-8.0, 8.0, n).astype(np.float32)
    facing = rng.choice(np.array([1, -1], dtype=np.int64), n)
    half = rng.uniform(0.22, 0.35, n).astype(np.float32) * size  # a line's half-length, a wedge arm's length
    thick = rng.uniform(1.5, 2.2, n).astype(np.float32)
    cx = rng.uniform(-0.35, 0.35, n).astype(np.float32)
    cy = rng.uniform(-0.35, 0.35, n).astype(np.float32)
    px = size / 2.0
    # a line through the centre: two segments going out both ways
    forward = _segment_distance(grid, cx, cy, line_angle, half, size)
    backward = _segment_distance(grid, cx, cy, line_angle + 180.0, half, size)
    line = np.minimum(forward, backward)
    # '<' opens to the right (arms at +-45 degrees), '>' to the left; the vertex sits at the centre
    opening = np.where(facing < 0, 0.0, 180.0).astype(np.float32) + tilt
    wedge = np.minimum(_segment_distance(grid, cx, cy, opening + 45.0, half, size),
                       _segment_distance(grid, cx, cy, opening - 45.0, half, size))
    dist = np.where((labels == 0)[:, None, None], line, wedge)
    cov = _coverage(dist - _col(thick) / 2)
    latents = {
        "facing": np.where(labels == 1, facing, 0), "angle": np.where(labels == 0, line_angle, tilt).astype(np.float32),
        "x": cx, "y": cy, "scale": (half / px).astype(np.float32), "_mask": cov >= 0.5,
    }
    contrast = rng.uniform(0.9, 1.0, n).astype(np.float32)  # bold marks: the planted thresholds expect them
    return [(cov, contrast)], labels, latents, (0.0, 0.2)


_RENDER = {
    "objects": _render_objects, "curves": _render_curves, "primitives": _render_primitives,
    "strokes": _render_strokes,
}


def _compose(rng, layers, rgb: bool, background_range=(0.0, 0.2)) -> np.ndarray:
    """Paint coverage layers over a background, in grey or colour, then add sensor noise.

    Objects are drawn at nearly constant contrast (bright on a dark background): a contrast that varies
    by a factor of two scales every activation alike and hides how differently neurons respond to an
    object and to its mirror image, which is what the reflection measurements look at.
    """
    n, size, _ = layers[0][0].shape
    background = rng.uniform(*background_range, n).astype(np.float32)
    noise_sigma = rng.uniform(0.01, 0.06, n).astype(np.float32)
    if rgb:
        bg_colour = rng.uniform(0.0, 0.35, (n, 3)).astype(np.float32)
        image = np.broadcast_to(bg_colour[:, :, None, None], (n, 3, size, size)).copy()
        for cov, level in layers:
            hue = rng.uniform(0.3, 1.0, (n, 3)).astype(np.float32)
            colour = hue / hue.max(axis=1, keepdims=True) * level[:, None]
            image += cov[:, None] * (colour[:, :, None, None] - image)
    else:
        image = np.broadcast_to(background[:, None, None, None], (n, 1, size, size)).copy()
        for cov, level in layers:
            image += cov[:, None] * (level[:, None, None, None] - image)
    image += rng.standard_normal(image.shape, dtype=np.float32) * noise_sigma[:, None, None, None]
    return np.clip(image, 0.0, 1.0, out=image)
