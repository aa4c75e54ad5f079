"""Arguments checked at the library's front door, so a notebook's wrong type is one sentence, not a TypeError.

The CLI's options are parsed by click; a notebook passes Python values straight to ``circuits.extract``,
``circuits.load`` and the rest. Each function here returns the value in the type the library uses, or raises
:class:`~circuits.errors.UsageError` naming the argument, what it got and what to give.

Examples
--------
>>> integer(3, "top_k", minimum=1)
3
>>> integer(1.5, "top_k", minimum=1)
Traceback (most recent call last):
...
circuits.errors.UsageError: top_k must be an integer, got float 1.5
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from circuits.errors import UsageError


def shown(value) -> str:
    """``float 1.5``: the type and a short one-line repr, for messages."""
    text = repr(value)
    if len(text) > 40 or "\n" in text:
        text = text.splitlines()[0][:37] + "..."
    return f"{type(value).__name__} {text}"


def quoted(value: str) -> str:
    """``'name'`` for a message; with Python's escapes where the text has line breaks or control characters."""
    return f"'{value}'" if value.isprintable() else repr(value)


def integer(value, what: str, minimum: int | None = None) -> int:
    """``value`` as an int (bools and floats refused), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{what} must be an integer, got {shown(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise UsageError(f"{what} must be at least {minimum} (got {value})")
    return value


def number(value, what: str) -> float:
    """``value`` as a float; NaN refused (infinities are numbers a threshold may use)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{what} must be a number, got {shown(value)}")
    value = float(value)
    if math.isnan(value):
        raise UsageError(f"{what} nan is not a number: give a magnitude such as 0.1")
    return value


def flag(value, what: str) -> bool:
    """A switch: ``True`` or ``False`` (not 1, "yes" or None, which would read as one by accident)."""
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be True or False, got {shown(value)}")
    return value


def text(value, what: str) -> str:
    """A name such as a layer: a string."""
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a string, got {shown(value)}")
    return value


def path(value, what: str) -> Path:
    """A file path: a string or ``os.PathLike``, not empty, without NUL."""
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"{what} must be a path (a string or pathlib.Path), got {shown(value)}")
    raw = os.fspath(value)
    if isinstance(raw, bytes) or not raw or "\0" in raw:
        raise UsageError(f"{what} must be a non-empty path without NUL characters, got {shown(value)}")
    return Path(raw)


def shape(value, what: str = "input_shape") -> tuple[int, ...]:
    """An input shape without the batch dimension: ``"3,32,32"`` or a sequence of positive ints."""
    if isinstance(value, str):
        from circuits.models.spec import parse_input_shape

        return parse_input_shape(value)
    if isinstance(value, (bytes, dict)) or not hasattr(value, "__iter__") or hasattr(value, "shape"):
        raise UsageError(f"{what} must be a sequence of positive integers such as (3, 32, 32), got {shown(value)}")
    dims = tuple(value)
    if not dims or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d <= 0 for d in dims):
        raise UsageError(f"{what} must be a sequence of positive integers such as (3, 32, 32), got {shown(dims)}")
    return tuple(int(d) for d in dims)
