"""Kernel thumbnails: a spatial kernel as a small diverging heatmap (red negative, blue positive)."""

from __future__ import annotations

import base64
import io

import numpy as np


def kernel_png(kernel, size: int = 36) -> bytes:
    """PNG bytes of ``kernel`` ([h][w]) scaled symmetrically around zero, nearest-neighbour upscaled."""
    from matplotlib import colormaps
    from PIL import Image

    k = np.asarray(kernel, dtype=float)
    if k.ndim != 2:
        k = k.reshape(1, -1)
    scale = float(np.abs(k).max()) or 1.0
    rgba = colormaps["RdBu"]((k / scale + 1) / 2)
    image = Image.fromarray((rgba[..., :3] * 255).astype(np.uint8))
    factor = max(1, size // max(k.shape))
    image = image.resize((k.shape[1] * factor, k.shape[0] * factor), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
