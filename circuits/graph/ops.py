"""Which operations are nonlinearities (they make neuron layers) and which are linear (they join layers).

Every FX node is reduced to an *op name*: the module class for ``call_module`` (checked with isinstance, so
subclasses count), the function name for ``call_function`` (``torch.relu``, ``F.relu``, ``operator.add`` and
``aten.relu.default`` all reduce to ``relu``/``add``), the method name for ``call_method``. To teach the IR a
new op, add its name to one of the tables below (see CONTRIBUTING.md, "Adding an op").
"""

from __future__ import annotations

from torch import fx, nn

NONLINEAR_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Softmax, nn.LogSoftmax, nn.Softmax2d,
)  # fmt: skip
OUTPUT_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Softmax2d)

NONLINEAR_FUNCS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "prelu", "_prelu_kernel",
    "rrelu", "elu", "elu_", "selu", "celu", "gelu", "silu", "silu_", "mish", "hardswish", "hardsigmoid",
    "sigmoid", "sigmoid_", "tanh", "tanh_", "softplus", "softsign", "tanhshrink", "threshold", "logsigmoid",
    "log_sigmoid", "clamp", "clamp_", "clamp_min", "clamp_max", "clip",
    "softmax", "log_softmax", "_softmax", "_log_softmax",
}  # fmt: skip
OUTPUT_FUNCS = {"softmax", "log_softmax", "_softmax", "_log_softmax"}

LINEAR_MODULES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.ZeroPad1d, nn.ZeroPad2d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
    nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle,
)  # fmt: skip
MAXPOOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip

LINEAR_FUNCS = {
    "conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d", "linear", "addmm", "t",
    "batch_norm", "_native_batch_norm_legit_no_training", "dropout", "dropout_", "feature_dropout",
    "alpha_dropout", "pad", "constant_pad_nd", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "interpolate", "upsample_nearest2d", "upsample_bilinear2d",
    "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "cat", "concat", "concatenate", "stack",
    "add", "add_", "iadd", "sub", "sub_", "isub", "neg", "getitem", "flatten", "view", "_unsafe_view",
    "reshape", "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "mean", "sum", "chunk", "split",
    "split_with_sizes", "expand", "expand_as", "clone", "alias", "detach", "to", "float", "type_as",
    "narrow", "slice", "select", "unbind", "flip", "roll", "_assert_tensor_metadata",
}  # fmt: skip
# Products and quotients: linear when at most one operand depends on the input (a scale, a layer-scale
# parameter); when two do, the op is a multiplicative *gate* (squeeze-excite) and makes a neuron layer.
SCALING_FUNCS = {"mul", "mul_", "imul", "truediv", "div", "div_", "itruediv", "matmul", "mm", "bmm", "einsum"}
MAXPOOL_FUNCS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "amax",
}  # fmt: skip
# Ops whose results are not tensors (shapes, sizes): they never carry activations.
META_FUNCS = {
    "size", "dim", "numel", "getattr", "sym_size", "shape", "_assert", "eq", "floordiv", "_assert_async", "len",
}  # fmt: skip
CAT_FUNCS = {"cat", "concat", "concatenate"}


def op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A short, stable name for what ``node`` computes (``Conv2d``, ``relu``, ``add``, ``view``)."""
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_method":
        return str(node.target)
    if node.op == "call_function":
        target = node.target
        name = getattr(target, "_opname", None) or getattr(target, "__name__", None) or str(target)
        return name.split(".")[0]
    return node.op


def is_nonlinearity(node: fx.Node, modules) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], NONLINEAR_MODULES)
    return node.op in ("call_function", "call_method") and op_name(node, modules) in NONLINEAR_FUNCS


def is_output_marker(node: fx.Node, modules) -> bool:
    """Softmax-like ops: a nonlinearity over all channels that marks the model's output."""
    if node.op == "call_module":
        return isinstance(modules[node.target], OUTPUT_MODULES)
    return op_name(node, modules) in OUTPUT_FUNCS


def is_maxpool(node: fx.Node, modules) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], MAXPOOL_MODULES)
    return op_name(node, modules) in MAXPOOL_FUNCS


def is_linear(node: fx.Node, modules) -> bool:
    """Linear in its input-dependent tensor arguments (scaling ops are checked by the caller)."""
    if node.op == "call_module":
        return isinstance(modules[node.target], LINEAR_MODULES) or is_maxpool(node, modules)
    name = op_name(node, modules)
    return name in LINEAR_FUNCS or name in MAXPOOL_FUNCS or name in SCALING_FUNCS or name in META_FUNCS


def is_scaling(node: fx.Node, modules) -> bool:
    return node.op in ("call_function", "call_method") and op_name(node, modules) in SCALING_FUNCS


def is_cat(node: fx.Node, modules) -> bool:
    return node.op in ("call_function", "call_method") and op_name(node, modules) in CAT_FUNCS
