"""Sizes refused before they are allocated, so a typo never takes the machine's memory.

Each limit is a number of bytes or elements with an environment variable that raises it; the error says both.

- ``CIRCUITS_MAX_INPUT_ELEMENTS`` (50 M): the elements of one example input (``--input-shape``);
- ``CIRCUITS_MAX_DATA_BYTES`` (4 GiB): generated probe data;
- ``CIRCUITS_MAX_WEIGHTS_BYTES`` (4 GiB): a ``--weights`` file or ``.pt2`` archive, its unpacked members, and
  the bytes its tensors declare (read from the pickle before torch allocates them, so a file of a few bytes
  that declares a terabyte is refused; see :mod:`circuits.models.checkpoint`);
- ``CIRCUITS_MAX_MOTIF_BYTES`` (8 GiB): what one layer of a motif scan needs at once, estimated before the
  scan starts (:mod:`circuits.motifs.budget`, which also reads ``CIRCUITS_MOTIF_CACHE_BYTES``, 512 MiB: each cache a
  scan keeps from layer to layer).
"""

from __future__ import annotations

import os

from circuits.errors import UsageError

GIB = 1 << 30


def limit(name: str, default: int) -> int:
    """``$CIRCUITS_<NAME>`` when set (a positive integer), else ``default``."""
    raw = os.environ.get(f"CIRCUITS_{name}")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise UsageError(f"CIRCUITS_{name}={raw!r} is not an integer") from None
    return value if value > 0 else default


def check_size(what: str, count: int, name: str, default: int, unit: str = "bytes",
               advice: str = "ask for less") -> None:
    """Refuse ``count`` (of ``unit``) above the limit ``name``, naming the figure and how to raise it."""
    cap = limit(name, default)
    if count > cap:
        shown = _bytes(count) if unit == "bytes" else f"{count:,} {unit}"
        allowed = _bytes(cap) if unit == "bytes" else f"{cap:,} {unit}"
        raise UsageError(f"{what} needs {shown}, over the limit of {allowed}: {advice}, or raise it with "
                         f"CIRCUITS_{name}={count}")


def _bytes(count: int) -> str:
    if count >= GIB // 10:
        return f"{count / GIB:.1f} GiB"
    return f"{count / (1 << 20):.1f} MiB" if count >= 1 << 20 else f"{count:,} bytes"


def check_seed(seed: int, what: str = "seed") -> int:
    """Seeds are non-negative and fit 64 bits (numpy and torch refuse the rest with their own errors)."""
    if not 0 <= seed < 2**63:
        raise UsageError(f"{what} must be an integer from 0 to 2^63 - 1, got {seed}")
    return seed
