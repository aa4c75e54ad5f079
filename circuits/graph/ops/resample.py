"""Resampling: upsampling by interpolation or by repeating pixels. Linear in the input (fixed weights),
but not a stride of the source map, so neither a receptive-field crop nor kernel contraction reads it:
the Jacobian engine does."""

from __future__ import annotations

from torch import nn

from circuits.graph.ops.base import OpFamily

RESAMPLING = OpFamily(
    "resampling",
    (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d),
    {"interpolate", "upsample_nearest2d", "upsample_bilinear2d", "repeat_interleave"},  # nearest, by repetition
)
FAMILIES = (RESAMPLING,)
