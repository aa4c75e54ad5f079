"""Linear maps with weights (convolutions, dense layers) and ops that pass their input on (dropout, copies,
padding): between two neuron layers, each is part of a linear path."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from circuits.graph.ops.base import Conv, Identity, OpFamily, Uncomposable, op_name

_CONV_FUNCS = {"conv1d": F.conv1d, "conv2d": F.conv2d, "conv3d": F.conv3d}


class Convolutions(OpFamily):
    """Convolutions: translation-equivariant, so a receptive-field crop evaluates them without padding."""

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        if n.op == "call_module":  # the crop never reaches the padding: its mode does not matter
            m = modules[n.target]
            conv = _CONV_FUNCS[f"conv{m.weight.dim() - 2}d"]
            return conv(args[0], m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
        params = dict(zip(["input", "weight", "bias", "stride", "padding", "dilation", "groups"], args))
        params.update(kwargs)
        params["padding"] = 0
        return _CONV_FUNCS[op_name(n, modules)](**params)

    def step(self, n, modules, *, linearise):
        m = modules.get(n.target) if n.op == "call_module" else None
        if not isinstance(m, nn.Conv2d) or m.padding_mode != "zeros" or m.dilation != (1, 1) or isinstance(m.padding, str):
            raise Uncomposable(n.name)
        return Conv(m.weight.detach(), m.stride, m.padding, m.groups)


class PassThrough(OpFamily):
    """Ops that return their input in eval mode (dropout, identity, copies, casts)."""

    crop_commutes = True

    def step(self, n, modules, *, linearise):
        return Identity()


class Padding(OpFamily):
    """Padding: a receptive-field crop never reaches it, so the crop skips it."""

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        return args[0]


CONVOLUTIONS = Convolutions("convolution", (nn.Conv1d, nn.Conv2d, nn.Conv3d), _CONV_FUNCS)
DENSE = OpFamily(
    "dense linear map",
    (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear),
    {"conv_transpose1d", "conv_transpose2d", "convolution", "linear", "addmm"},
)
PASS_THROUGH = PassThrough(
    "pass-through",
    (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity),
    {"dropout", "dropout_", "feature_dropout", "alpha_dropout", "contiguous", "clone", "alias", "detach", "to",
     "float", "type_as"},
)  # fmt: skip
PADDING = Padding(
    "padding",
    (nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d,
     nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d),
    {"pad", "constant_pad_nd"},
)  # fmt: skip
FAMILIES = (CONVOLUTIONS, DENSE, PASS_THROUGH, PADDING)
