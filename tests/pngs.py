"""Test pictures made with numpy and Pillow, shared by the catalog's picture tests (in-process and in a browser)."""

import io

import numpy as np
from PIL import Image


def png_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def checkerboard(size=48, cell=8) -> np.ndarray:
    """RGB, red and blue squares."""
    y, x = np.mgrid[0:size, 0:size]
    return np.where(((y // cell + x // cell) % 2 == 0)[..., None], [255, 0, 0], [0, 0, 255]).astype(np.uint8)


def gradient(width=64, height=32) -> np.ndarray:
    """Grey (mode L), dark to light from left to right."""
    return np.tile((np.arange(width) * 255 // (width - 1)).astype(np.uint8), (height, 1))


CHECKER, GRADIENT = png_of(checkerboard()), png_of(gradient())
