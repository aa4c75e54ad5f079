"""Pictures of neurons: check what ``add_pictures`` is given, read each PNG's header, and name it by content.

A picture is a PNG that feature visualisation made (an optimised, diverse or negative picture of a neuron)
or a dataset example's crop. Its bytes are stored once, in ``images``, keyed by their sha256, however many
neurons or runs show them; each showing is a ``neuron_images`` row, keyed by the sha256 of the canonical
JSON of (model, neuron, kind, rank, image, method). ``activation`` and ``agreement`` are what was measured
on that picture: they follow from the same picture, model and method, so they are not hashed and the first
copy stored is kept, as with a circuit's attributes. Pillow reads the header (it comes with matplotlib);
it is imported only when pictures are added, so opening a catalog stays fast.
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
from dataclasses import dataclass

from circuits.catalog.payload import canonical, sha256, split_neuron
from circuits.errors import UsageError, close_matches_hint

KINDS = ("optimised", "diverse", "negative", "example")
KEYS = ("neuron", "kind", "rank", "png", "method", "activation", "agreement")
MODES = ("L", "RGB")  # grey or colour, as circuits.featvis saves them
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SHAPE = "{" + ", ".join(KEYS) + "}"


def kind_order(column: str = "kind") -> str:
    """SQL that sorts pictures the way a reader wants them: the picture, its other starts, the negative, then
    the examples (``KINDS`` order, not the alphabet's)."""
    return f"CASE {column} " + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(KINDS)) + " END"


@dataclass(frozen=True)
class Picture:
    """One checked picture: the neuron it shows and the row values, before the model is known."""

    layer: str
    channel: int
    kind: str
    rank: int
    image: str  # sha256 of png
    png: bytes
    width: int
    height: int
    mode: str
    method: dict
    method_json: str  # canonical
    activation: float | None
    agreement: float | None

    def id(self, model_id: str) -> str:
        """The ``neuron_images`` id: what the picture is and how it was made, never when."""
        return sha256(canonical({"model": model_id, "neuron": f"{self.layer}:{self.channel}", "kind": self.kind,
                                 "rank": self.rank, "image": self.image, "method": self.method}))


def check_pictures(pictures) -> list[Picture]:
    """Every picture dict checked (exactly the keys of ``KEYS``) and its PNG header read, in input order.

    Bad input raises :class:`UsageError` naming the picture (``pictures[i]``), what is wrong, and the fix.
    """
    if not isinstance(pictures, (list, tuple)):
        raise UsageError(f"pictures must be a list of dicts {_SHAPE}, got {type(pictures).__name__}.")
    checked, seen = [], {}
    for index, picture in enumerate(pictures):
        one = _check(index, picture)
        key = (one.layer, one.channel, one.kind, one.rank, one.method_json)
        first = seen.setdefault(key, (index, one))
        if first[1] != one:
            raise UsageError(
                f"pictures[{index}] and pictures[{first[0]}] are both the {one.kind} picture of "
                f"{one.layer}:{one.channel} with rank {one.rank}, made the same way, but differ; give each its own rank."
            )
        checked.append(one)
    return checked


def _check(index: int, picture) -> Picture:
    where = f"pictures[{index}]"
    if not isinstance(picture, dict):
        raise UsageError(f"{where} must be a dict {_SHAPE}, got {type(picture).__name__}.")
    missing = [k for k in KEYS if k not in picture]
    extra = sorted(str(k) for k in picture if k not in KEYS)
    if extra:  # first: a misspelt key is also a missing one
        raise UsageError(f"{where} has an unknown key {extra[0]!r}; each picture is a dict of exactly {_SHAPE}"
                         f"{close_matches_hint(extra[0], KEYS) or '.'}")  # fmt: skip
    if missing:
        raise UsageError(f"{where} lacks {missing[0]!r}; each picture is a dict of exactly {_SHAPE} (activation and "
                         "agreement may be None).")  # fmt: skip
    neuron = picture["neuron"]
    if not isinstance(neuron, str):
        raise UsageError(f"{where}'s neuron must be a 'LAYER:CHANNEL' string (for example 'conv3:12'), got {neuron!r}.")
    layer, channel = split_neuron(neuron, f"{where}'s neuron")
    kind = picture["kind"]
    if kind not in KINDS:
        raise UsageError(f"{where} has kind {kind!r}; use one of {', '.join(KINDS)}"
                         f"{close_matches_hint(kind, KINDS) or '.'}")  # fmt: skip
    rank = picture["rank"]
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < 2**63:
        raise UsageError(f"{where}'s rank must be a whole number from 0 (the copy, or the example's rank), got {rank!r}.")
    png = picture["png"]
    if not isinstance(png, (bytes, bytearray, memoryview)):
        raise UsageError(f"{where}'s png must be the PNG file's bytes, got {type(png).__name__}; read the file in "
                         "binary mode (open(path, 'rb').read()).")  # fmt: skip
    png = bytes(png)
    width, height, mode = read_png(png, where)
    method = picture["method"]
    if not isinstance(method, dict):
        raise UsageError(f"{where}'s method must be a dict saying how the picture was made (objective, steps, "
                         f"seed, data, ...), got {type(method).__name__}.")  # fmt: skip
    try:
        method_json = canonical(method)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}'s method is not plain JSON ({exc}); give numbers, strings, lists and dicts only.") from None
    return Picture(layer, channel, kind, int(rank), hashlib.sha256(png).hexdigest(), png, width, height, mode,
                   method, method_json, _number(picture["activation"], f"{where}'s activation"),
                   _number(picture["agreement"], f"{where}'s agreement"))  # fmt: skip


def read_png(png: bytes, where: str = "the picture") -> tuple[int, int, str]:
    """(width, height, mode) from a PNG's header, after checking every chunk's checksum through to its end."""
    if not png.startswith(PNG_SIGNATURE):
        raise UsageError(f"{where}'s png is not a PNG file (it does not start with the PNG signature); save the "
                         "picture as PNG (circuits.featvis.sheets.png_bytes, or PIL's image.save(buffer, 'PNG')).")  # fmt: skip
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            (width, height), mode = image.size, image.mode
            image.verify()  # chunk checksums through IEND: a cut or damaged file is refused here
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{where}'s png is damaged or cut short ({exc}); save the picture again.") from None
    if mode not in MODES:
        raise UsageError(f"{where}'s png has mode {mode!r}; the catalog keeps grey ('L') or colour ('RGB') pictures: "
                         "convert it first (image.convert('RGB')).")  # fmt: skip
    return width, height, mode


def _number(value, what: str) -> float | None:
    """A finite float, or ``None`` for None, NaN and infinities (SQLite has no NaN: a NaN would read back NULL)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{what} must be a number or None, got {value!r}.")
    try:
        value = float(value)
    except OverflowError:  # an integer past the float range: as infinite as it gets
        return None
    return value if math.isfinite(value) else None
