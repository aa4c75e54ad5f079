"""Numpy source for each nonlinearity, emitted only when a circuit uses it.

The sources are declared with their nonlinearities (``circuits/graph/ops/nonlinear.py``), so a new one
is one row there.
"""

from __future__ import annotations

from circuits.graph.ops.nonlinear import ROWS, SOFTMAX_ROWS

SOURCE = {row.name: row.numpy for row in ROWS if row.numpy}
CHANNEL_WIDE = {row.name for row in SOFTMAX_ROWS if row.name}  # softmax mixes every channel


def call(activation: dict | None, expression: str) -> tuple[str, str | None]:
    """``(code applying the nonlinearity to expression, name of the helper it needs)``."""
    if activation is None:
        return expression, None
    name = activation["name"]
    if name in CHANNEL_WIDE:
        return expression, None  # a softmax mixes every channel: the circuit stops at the logit
    if name not in SOURCE:
        raise KeyError(name)
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(activation.items()) if k != "name")
    return f"{name}({expression}{', ' + params if params else ''})", name
