"""Joins: sums and differences of branches (residual connections) and channel concats (Inception).

A join is where a path meets tensors that do not depend on the source: they are ZERO there, and
``x + ZERO`` is ``x``, a concat fills a ZERO part with zeros. On a receptive-field crop, branches of
different sizes are centre-cropped to the smallest.
"""

from __future__ import annotations

import torch
from torch import fx

from circuits.graph.ops.base import (
    Concat,
    NotTranslationEquivariant,
    OpFamily,
    Sum,
    Uncomposable,
    Zero,
    flatten,
    op_name,
)

_DIFFERENCES = {"sub", "sub_", "isub"}


class Sums(OpFamily):
    """``a + b`` and ``a - b``: linear in both operands."""

    crop_commutes = True

    def fill_zeros(self, n, args, kwargs, like, modules):
        if len(args) < 2:
            return super().fill_zeros(n, args, kwargs, like, modules)
        a, b = args[0], args[1]
        zero = torch.zeros((), dtype=like.dtype)
        if op_name(n, modules) in _DIFFERENCES:
            return ((a, zero) if isinstance(b, Zero) else (zero, b)), {}
        return ((zero, b) if isinstance(a, Zero) else (a, zero)), {}

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        cropped = _centre_cropped(n, args, args)
        return super().evaluate_valid(n, cropped, kwargs, modules, linearise=linearise)

    def step(self, n, modules, *, linearise):
        if any(isinstance(a, int | float) and a != 0 for a in n.args[:2]) or "alpha" in n.kwargs:
            raise Uncomposable(n.name)
        return Sum(negate_second=op_name(n, modules) in _DIFFERENCES)


class Concats(OpFamily):
    """``torch.cat``: a ZERO part is filled with zeros of its own size."""

    crop_commutes = True

    def concat_dim(self, n: fx.Node) -> int:
        dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
        shape = n.meta.get("shape") or ()
        return dim + len(shape) if isinstance(dim, int) and dim < 0 else dim

    def fill_zeros(self, n, args, kwargs, like, modules):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        filled = []
        for t in args[0]:
            if isinstance(t, Zero):
                shape = list(like.shape)
                shape[dim] = t.node.meta["shape"][dim]
                t = like.new_zeros(shape)
            filled.append(t)
        return (filled, *args[1:]), kwargs

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        cropped = (type(args[0])(_centre_cropped(n, args, args[0])), *args[1:])
        return super().evaluate_valid(n, cropped, kwargs, modules, linearise=linearise)

    def step(self, n, modules, *, linearise):
        return Concat()


def _centre_cropped(n: fx.Node, args, operands):
    """``operands`` cropped to the smallest spatial size among the maps in ``args`` (unchanged if equal)."""
    tensors = [a for a in flatten(args) if isinstance(a, torch.Tensor) and a.dim() >= 3]
    if len({tuple(t.shape[2:]) for t in tensors}) <= 1:
        return operands
    smallest = [min(t.shape[d] for t in tensors) for d in range(2, tensors[0].dim())]

    def crop(t):
        if not isinstance(t, torch.Tensor) or t.dim() < 3:
            return t
        index = [slice(None), slice(None)]
        for d, size in zip(range(2, t.dim()), smallest):
            extra = t.shape[d] - size
            if extra % 2:
                raise NotTranslationEquivariant(n.name)  # no common centre
            index.append(slice(extra // 2, extra // 2 + size))
        return t[tuple(index)]

    return tuple(crop(t) for t in operands)


SUMS = Sums("sum", (), {"add", "add_", "iadd", "sub", "sub_", "isub"})
CONCATS = Concats("concat", (), {"cat", "concat", "concatenate"})
FAMILIES = (SUMS, CONCATS)
