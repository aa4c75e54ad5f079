"""One home per op family: what each op means to the neuron-graph IR, declared once.

Every FX node is reduced to an *op name* (``op_name``: the module class, or the function / method / aten
op name) and belongs to at most one *family*, a value declared in one module here:

=================  ==================================================================================
``nonlinear``      nonlinearities (they make neuron layers), their parameters and numpy sources
``linear``         convolutions, dense maps, pass-through ops (dropout, copies), padding
``normalisation``  BatchNorm (linear at eval: stored statistics)
``pooling``        average pooling; max pooling (read as average for weights, the real max on data)
``joins``          sums and differences (residuals), channel concats
``scaling``        products: a constant scale, or a gate (a neuron layer) when two operands are live
``shape``          view / permute / getitem / sums over dims, and meta ops (sizes, guards)
``resample``       upsampling by interpolation
=================  ==================================================================================

A family says how the IR classifies it (``kind``), how it is evaluated on a linear path, what it does
when some inputs do not depend on the source (``fill_zeros``), how it reads on a receptive-field crop
(``evaluate_valid``) and as a step of kernel contraction (``step``); see ``base.OpFamily``. Callers ask
``family(node, modules)`` and never match op names. To add an op, add it to its family, or declare a new
family in the module where it belongs (CONTRIBUTING.md, "Adding an op").
"""

from __future__ import annotations

from torch import fx, nn

from circuits.graph.ops import joins, linear, nonlinear, normalisation, pooling, resample, scaling, shape
from circuits.graph.ops.base import (
    LINEAR,
    MAXPOOL,
    META,
    NONLINEAR,
    SCALING,
    UNKNOWN,
    NotTranslationEquivariant,
    OpFamily,
    Uncomposable,
    Zero,
    op_name,
)

__all__ = [
    "FAMILIES", "LINEAR", "MAXPOOL", "META", "NONLINEAR", "SCALING", "UNKNOWN", "NotTranslationEquivariant",
    "OpFamily", "Uncomposable", "Zero", "family", "op_name",
]  # fmt: skip

FAMILIES: tuple[OpFamily, ...] = (
    *nonlinear.FAMILIES, *linear.FAMILIES, *normalisation.FAMILIES, *pooling.FAMILIES, *joins.FAMILIES,
    *scaling.FAMILIES, *shape.FAMILIES, *resample.FAMILIES,
)  # fmt: skip


class _Unknown(OpFamily):
    kind = UNKNOWN


UNKNOWN_OP = _Unknown("unknown")


def _by_name(families) -> dict[str, OpFamily]:
    table: dict[str, OpFamily] = {}
    for f in families:
        for name in f.functions:
            if name in table:
                raise RuntimeError(f"op '{name}' is declared by two families: {table[name]} and {f}")
            table[name] = f
    return table


_BY_NAME = _by_name(FAMILIES)


def family(node: fx.Node, modules: dict[str, nn.Module]) -> OpFamily:
    """The family of what ``node`` computes (module classes by isinstance: subclasses count);
    ``UNKNOWN_OP`` for an op no family declares."""
    if node.op == "call_module":
        module = modules[node.target]
        return next((f for f in FAMILIES if isinstance(module, f.modules)), UNKNOWN_OP)
    if node.op in ("call_function", "call_method"):
        return _BY_NAME.get(op_name(node, modules), UNKNOWN_OP)
    return UNKNOWN_OP
