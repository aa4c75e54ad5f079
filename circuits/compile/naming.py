"""Safe names and text for emitted code: labels are user data and must never become code."""

from __future__ import annotations

import json
import keyword
import re


def identifier(text: str | None, fallback: str, taken: set[str]) -> str:
    """A fresh, readable Python identifier from a label (ASCII only, no dunders, no keywords)."""
    base = re.sub(r"[^0-9A-Za-z]+", "_", text or "").strip("_").lower()
    if not base or base[0].isdigit() or keyword.iskeyword(base) or base in _RESERVED:
        base = re.sub(r"[^0-9A-Za-z]+", "_", fallback).strip("_").lower()
        base = base if base and not base[0].isdigit() else f"n_{base}"
    base = base[:60]
    name, k = base, 2
    while name in taken or keyword.iskeyword(name) or name in _RESERVED:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def text(value) -> str:
    """Text that is safe inside a docstring or comment: one line, quotes and backslashes escaped."""
    return json.dumps(str(value), ensure_ascii=True)[1:-1]


_RESERVED = {
    "np", "run", "target", "acts", "total", "inputs", "relu", "hardtanh", "leaky_relu", "elu", "celu", "selu", "gelu",
    "silu", "sigmoid", "tanh", "softplus", "softsign", "mish", "hardswish", "hardsigmoid", "logsigmoid", "identity",
    "clamp", "softmax", "log_softmax",
}  # fmt: skip
