"""JSON envelopes: every JSON output carries a schema version and where its numbers came from."""

from __future__ import annotations

import json
import math

SCHEMA_VERSION = 1


def provenance(arguments: dict, weights_sha256: str | None = None) -> dict:
    """Tool version, model weights hash and the arguments that produced a result."""
    from circuits import __version__

    return {
        "tool": "circuits",
        "version": __version__,
        "weights_sha256": weights_sha256,
        "arguments": {k: _plain(v) for k, v in sorted(arguments.items())},
    }


def envelope(payload: dict, arguments: dict, weights_sha256: str | None = None) -> dict:
    """``{"schema_version": ..., <payload keys>, "provenance": {...}}`` with stable key order."""
    return {"schema_version": SCHEMA_VERSION, **payload, "provenance": provenance(arguments, weights_sha256)}


def dumps(obj: dict) -> str:
    """Deterministic JSON: NaN/inf become null, so every consumer can parse it."""
    return json.dumps(_plain(obj), indent=2, allow_nan=False)


def _plain(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _plain(value.item())
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)
