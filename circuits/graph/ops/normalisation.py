"""Normalisations. BatchNorm in eval mode divides by *stored* statistics: a per-channel affine map, linear.
LayerNorm, GroupNorm and the like divide by the input's *own* statistics: neither linear nor elementwise,
so reading them as either would be silently wrong; the IR refuses them and says why."""

from __future__ import annotations

import torch
from torch import nn

from circuits.graph.ops.base import UNKNOWN, OpFamily, Scale, Uncomposable


class BatchNorm(OpFamily):
    """Eval-mode BatchNorm: ``(x - mean) / sqrt(var + eps) * weight + bias``, one scale per channel."""

    crop_commutes = True

    def step(self, n, modules, *, linearise):
        m = modules.get(n.target) if n.op == "call_module" else None
        if not isinstance(m, nn.BatchNorm2d):
            raise Uncomposable(n.name)
        std = torch.sqrt(m.running_var + m.eps)
        return Scale(m.weight.detach() / std if m.affine else 1 / std)


class ByInputStatistics(OpFamily):
    """Normalisation by the input's own mean and variance: refused, with the reason."""

    kind = UNKNOWN
    why_unsupported = (
        "it normalises by its input's own statistics, so it is neither linear (it has no weights) nor "
        "elementwise (it makes no neuron layer); circuits/graph/ops/normalisation.py refuses it: trace the "
        "layers before or after it"
    )


BATCH_NORM = BatchNorm(
    "batch norm",
    (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
    {"batch_norm", "_native_batch_norm_legit_no_training"},
)
BY_INPUT_STATISTICS = ByInputStatistics(
    "normalisation by input statistics",
    (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm),
    {"layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "instance_norm", "local_response_norm"},
)
FAMILIES = (BATCH_NORM, BY_INPUT_STATISTICS)
