"""Normalisations. BatchNorm in eval mode divides by *stored* statistics: a per-channel affine map, linear."""

from __future__ import annotations

import torch
from torch import nn

from circuits.graph.ops.base import OpFamily, Scale, Uncomposable


class BatchNorm(OpFamily):
    """Eval-mode BatchNorm: ``(x - mean) / sqrt(var + eps) * weight + bias``, one scale per channel."""

    crop_commutes = True

    def step(self, n, modules, *, linearise):
        m = modules.get(n.target) if n.op == "call_module" else None
        if not isinstance(m, nn.BatchNorm2d):
            raise Uncomposable(n.name)
        std = torch.sqrt(m.running_var + m.eps)
        return Scale(m.weight.detach() / std if m.affine else 1 / std)


BATCH_NORM = BatchNorm(
    "batch norm",
    (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
    {"batch_norm", "_native_batch_norm_legit_no_training"},
)
FAMILIES = (BATCH_NORM,)
