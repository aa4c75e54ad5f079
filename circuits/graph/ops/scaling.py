"""Products and quotients: linear when at most one operand depends on the input (a scale, a layer-scale
parameter); when two do, the op is a multiplicative *gate* (squeeze-excite) and makes a neuron layer."""

from __future__ import annotations

import torch

from circuits.graph.ops.base import (
    SCALING,
    NotTranslationEquivariant,
    OpFamily,
    Scale,
    Uncomposable,
    op_name,
    tensor_nodes,
)


class Products(OpFamily):
    """Products of tensors: a gate where two operands are live."""

    kind = SCALING

    def gates(self, n, live) -> bool:
        return sum(a.name in live for a in tensor_nodes(n)) >= 2


class Scaling(Products):
    """Elementwise ``x * c``, ``x / c`` and ``-x``: commute with a crop when ``c`` is constant per channel."""

    crop_commutes = True

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        constants = [a for a in args[1:] if isinstance(a, torch.Tensor) and not a.requires_grad]
        if not all(a.dim() < 2 or all(d == 1 for d in a.shape[2:]) for a in constants):
            raise NotTranslationEquivariant(n.name)  # a factor that varies over positions
        return super().evaluate_valid(n, args, kwargs, modules, linearise=linearise)

    def step(self, n, modules, *, linearise):
        if len(n.args) != 2 or not isinstance(n.args[1], int | float):
            raise Uncomposable(n.name)
        name = op_name(n, modules)
        return Scale(n.args[1] if name.startswith(("mul", "imul")) else 1 / n.args[1])


SCALING_OPS = Scaling("scaling", (), {"mul", "mul_", "imul", "truediv", "div", "div_", "itruediv", "neg"})
MATRIX_PRODUCTS = Products("matrix product", (), {"matmul", "mm", "bmm", "einsum"})
FAMILIES = (SCALING_OPS, MATRIX_PRODUCTS)
