"""Where a transformed map lands: the sub-pixel offset between a layer's map on a flipped image and the
flipped map.

A neuron at map position ``x`` looks at input pixels centred on ``c(x) = c0 + s x`` (``s`` the layer's
stride in input pixels, ``c0`` the centre of position 0). Flipping an image of width ``W`` moves the
centre to ``W - 1 - c(x)``, which is map position ``(W - 1 - 2 c0) / s - x``; flipping the map array puts
it at ``(w - 1) - x``. The two differ by

    delta = (W - 1 - 2 c0) / s - (w - 1)

map pixels. It is 0 wherever padding is symmetric (a stride-1 conv with ``k // 2`` padding, a 2x2 pool on
an even map) and not otherwise: a 3x3 stride-2 conv with padding 1 on a 32-pixel image gives 0.5, so the
real MobileNetV2's maps on flipped images land half a pixel (and deeper, up to a pixel) from their flips.
Comparing them position by position would then underrate every mirror pair of such a layer; the offset
is corrected by interpolating the expected map by ``delta`` before the correlation.
"""

from __future__ import annotations

import math

import torch


def centres(graph, layer: str) -> list[tuple[float, float]] | None:
    """``[(c0, s)]`` per spatial axis of ``layer``'s map, in input pixels, or ``None`` when it cannot be
    measured (a path with no positive linearisation, a map too small).

    Measured on an input enlarged by a margin on every side, so two positions near the middle see whole,
    unclipped receptive fields: the geometry of a chain of convolutions and pools does not depend on
    the input's size, and ``c0`` stays the centre of position 0 of the real map.
    """
    from circuits.graph.paths import make_path_function

    info = graph.layer(layer)
    if len(info.shape) != 3:
        return None
    c, h, w = graph.layers[graph.input_layer].shape
    margin = max(h, w)
    try:
        fn = make_path_function(graph, [graph.layers[graph.input_layer].node], info.preact or info.node,
                                linearise=True, positive=True)  # fmt: skip
        x = torch.ones(1, c, h + 2 * margin, w + 2 * margin, dtype=graph.dtype, requires_grad=True)
        out = fn(x)
        out = getattr(out, "value", out)
        big = out.shape[-2:]
        result = []
        for axis in (0, 1):
            p = big[axis] // 2
            found = []
            for q in (p, p + 1):
                position = [big[0] // 2, big[1] // 2]
                position[axis] = q
                (grad,) = torch.autograd.grad(out[0, :, position[0], position[1]].sum(), x, retain_graph=True)
                hits = (grad[0] != 0).any(0).any(1 - axis).nonzero().flatten()
                found.append((float(hits.min()) + float(hits.max())) / 2)
            stride = found[1] - found[0]
            if stride <= 0:
                return None
            result.append((found[0] - stride * p, stride))
        return result
    except Exception:  # any op the enlarged input or the surrogate cannot pass: no correction
        return None


def flip_offsets(graph, layer: str) -> tuple[float, float]:
    """``(delta_y, delta_x)``: how far the map of ``layer`` on a vertically / horizontally flipped image
    lands from the flipped map (0.0 where it cannot be measured)."""
    found = centres(graph, layer)
    if found is None:
        return 0.0, 0.0
    size = graph.layers[graph.input_layer].shape[1:]
    spatial = graph.layer(layer).shape[1:]
    deltas = []
    for (c0, s), full, n in zip(found, size, spatial):
        delta = (full - 1 - 2 * c0) / s - (n - 1)
        deltas.append(0.0 if abs(delta) < 1e-6 or not math.isfinite(delta) else float(delta))
    return deltas[0], deltas[1]


def shift(maps: torch.Tensor, delta: float, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``maps`` moved by ``delta`` pixels along ``dim`` (``out[p] = maps[p - delta]``, linear between
    pixels) and a bool mask of the positions that had both neighbours inside the map."""
    n = maps.shape[dim]
    base = math.floor(delta)
    frac = delta - base
    index = torch.arange(n) - base
    lower, upper = index, index - 1  # maps[p - base] and maps[p - base - 1]
    valid = (lower >= 0) & (lower < n) & ((upper >= 0) & (upper < n) if frac > 1e-9 else True)
    a = maps.index_select(dim, lower.clamp(0, n - 1))
    b = maps.index_select(dim, upper.clamp(0, n - 1))
    moved = (1 - frac) * a + frac * b if frac > 1e-9 else a
    return moved, valid
