"""PNGs of pictures and contact sheets: numpy and Pillow only, so a catalog or a page can use them without torch.

A picture is saved at its own size (the model's input size for an optimised picture; the receptive field
for a dataset example's crop), grey for one channel and RGB for three. A contact sheet puts each neuron on
one row, its optimised pictures, negative picture and top examples side by side, each cell scaled up with
nearest-neighbour sampling so a 24-pixel picture stays sharp, with the neuron and its agreement written
above the row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

CELL = 72  # pixels per picture on a sheet
LABEL = 16  # height of a row's caption
FONT = 12
GAP = 4
PER_SHEET = 32  # neurons per sheet: a 960-channel layer makes 30 sheets, not one 70,000-pixel image


def to_array(image) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] (a tensor or an array) as ``uint8`` ``[H, W]`` (grey) or ``[H, W, 3]``."""
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float64)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"a picture is [C, H, W] with C = 1 or 3, got shape {tuple(array.shape)}")
    array = np.rint(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def png_bytes(image, size: int | None = None) -> bytes:
    """The picture as PNG bytes: the same picture always gives the same bytes (no time stamp, no metadata).
    ``size``: scale it up (nearest neighbour, by a whole factor) until its longer side is about that."""
    from PIL import Image

    picture = Image.fromarray(to_array(image))
    if size is not None and max(picture.size) < size:
        factor = max(1, round(size / max(picture.size)))
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@dataclass
class SheetRow:
    """One neuron's row: a caption and its pictures, each ``(image [C, H, W], caption)``."""

    title: str
    cells: list[tuple[object, str]] = field(default_factory=list)


def contact_sheet(rows: list[SheetRow], heading: str = "") -> bytes:
    """A PNG with one row per neuron: every cell ``CELL`` pixels square, the row's title above it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=FONT)
    columns = max((len(r.cells) for r in rows), default=1)
    width = GAP + columns * (CELL + GAP)
    top = LABEL + GAP if heading else 0
    row_height = LABEL + CELL + LABEL + GAP
    sheet = Image.new("RGB", (max(width, 200), top + len(rows) * row_height + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    if heading:
        draw.text((GAP, 1), heading, fill="black", font=font)
    for r, row in enumerate(rows):
        y = top + r * row_height
        draw.text((GAP, y + 1), row.title, fill="black", font=font)
        for c, (image, caption) in enumerate(row.cells):
            x = GAP + c * (CELL + GAP)
            picture = Image.fromarray(to_array(image)).convert("RGB")
            scale = CELL / max(picture.size)
            size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            sheet.paste(picture.resize(size, Image.NEAREST), (x, y + LABEL))
            draw.text((x, y + LABEL + CELL + 1), caption, fill=(90, 90, 90), font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
