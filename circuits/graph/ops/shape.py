"""Shape ops: they move, copy, select or sum values without weights (view, permute, flatten, getitem),
and meta ops whose results are not tensors at all (sizes, guards)."""

from __future__ import annotations

from torch import nn

from circuits.graph.ops.base import META, Identity, NoPath, OpFamily, Uncomposable, op_name
from circuits.graph.ops.pooling import returns_pair


class Selections(OpFamily):
    """``getitem`` and channel splits: they pick whole channels, so they commute with a spatial crop."""

    crop_commutes = True

    def step(self, n, modules, *, linearise):
        if op_name(n, modules) != "getitem" or not returns_pair(n.args[0]):
            raise Uncomposable(n.name)
        return Identity() if n.args[1] == 0 else NoPath()  # (values, indices) of a max pool


SHAPE = OpFamily(
    "shape",
    (nn.Flatten, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle),
    {"flatten", "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "squeeze", "unsqueeze",
     "expand", "expand_as", "narrow", "slice", "select", "unbind", "flip", "roll", "stack", "mean", "sum",
     "pixel_shuffle", "pixel_unshuffle", "channel_shuffle"},
)  # fmt: skip
SELECTIONS = Selections("selection", (), {"getitem", "chunk", "split", "split_with_sizes"})


class Meta(OpFamily):
    """Sizes, shapes and guards: never an activation."""

    kind = META


META_OPS = Meta(
    "meta",
    (),
    {"size", "dim", "numel", "getattr", "sym_size", "shape", "_assert", "eq", "floordiv", "_assert_async", "len",
     "_assert_tensor_metadata"},
)  # fmt: skip
FAMILIES = (SHAPE, SELECTIONS, META_OPS)
