"""Pooling. Average pooling is linear. Max pooling is read as average pooling of the same window for
weights (Distill's convention), and is the real max on data; faithful code applies the real max first and
then the linear part, so a max pool also describes itself (``describe``) for emitted modules."""

from __future__ import annotations

import torch.nn.functional as F
from torch import fx, nn

from circuits.errors import UnsupportedOpError
from circuits.graph.ops.base import (
    MAXPOOL,
    Box,
    NotTranslationEquivariant,
    OpFamily,
    Uncomposable,
    Zero,
    as_pair,
    as_tuple,
    call,
    op_name,
)

_ADAPTIVE_MAX = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_AVG_POOLS = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}
_ADAPTIVE_AVG_POOLS = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}
_MAX_KEYS = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
_AVG_KEYS = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]


def returns_pair(n: fx.Node) -> bool:
    """aten's ``max_pool2d_with_indices`` returns (values, indices)."""
    return "with_indices" in str(n.target)


def window(n: fx.Node, args, kwargs, modules) -> dict | None:
    """The pooling window ``{kernel_size, stride, padding, dilation, ceil_mode, ...}`` (stride defaulted
    to the kernel), or None for an adaptive pool or a max over whole dimensions (``amax``)."""
    if n.op == "call_module":
        m = modules[n.target]
        if "Adaptive" in type(m).__name__:
            return None
        params = {k: getattr(m, k) for k in [*_MAX_KEYS, *_AVG_KEYS] if hasattr(m, k)}
    else:
        name = op_name(n, modules)
        if name.startswith("adaptive") or name == "amax":
            return None
        params = dict(zip(_AVG_KEYS if name.startswith("avg") else _MAX_KEYS, args[1:]))
        params.update(kwargs)
    if params.get("stride") in (None, [], ()):
        params["stride"] = params["kernel_size"]
    return params


class AveragePooling(OpFamily):
    """Average pooling: linear; a fixed window commutes with a crop and contracts as a box convolution."""

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        return _valid_pool(n, args, kwargs, modules)

    def step(self, n, modules, *, linearise):
        params = window(n, n.args, n.kwargs, modules)
        if params is None or params.get("divisor_override") is not None or params.get("ceil_mode"):
            raise Uncomposable(n.name)  # a ceil-mode window hangs over the border: not a plain box there
        padded = any(as_pair(params.get("padding", 0)))
        if padded and params.get("count_include_pad", True) is False:
            raise Uncomposable(n.name)  # the divisor shrinks at the border
        return _box(n, params)


class MaxPooling(OpFamily):
    """Max pooling: read as average pooling of the same window (padding never counted), except on data."""

    kind = MAXPOOL

    def label(self, n, modules) -> str:
        return f"{op_name(n, modules)} (read as average pooling)"

    def evaluate(self, n, args, kwargs, modules, *, linearise, positive, on_data):
        if on_data:  # on data: the real max, not the reading
            return call(n, args, kwargs, modules)
        out = _as_average(n, args, kwargs, modules)
        return (out, None) if returns_pair(n) and not isinstance(out, Zero) else out

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        return _valid_pool(n, args, kwargs, modules)

    def step(self, n, modules, *, linearise):
        params = window(n, n.args, n.kwargs, modules)
        if params is None or as_pair(params.get("dilation", 1)) != (1, 1):
            raise Uncomposable(n.name)
        return _box(n, params)

    def describe(self, n: fx.Node, modules) -> dict | None:
        """The pool as emitted modules apply it (``max_pool2d`` or a global ``amax``), or None."""
        if op_name(n, modules) == "amax":
            dims = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
            keepdim = n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)
            rank = len(n.args[0].meta.get("shape") or ())
            dims = sorted(d % rank for d in as_tuple(dims)) if dims is not None else None
            return {"op": "amax", "dims": dims, "keepdim": bool(keepdim)} if dims == [2, 3] else None
        if n.op == "call_module" and isinstance(modules[n.target], nn.AdaptiveMaxPool2d):
            global_max = as_pair(modules[n.target].output_size) == (1, 1)
            return {"op": "amax", "dims": [2, 3], "keepdim": True} if global_max else None
        two_d = isinstance(modules[n.target], nn.MaxPool2d) if n.op == "call_module" else (
            op_name(n, modules) in ("max_pool2d", "max_pool2d_with_indices"))  # fmt: skip
        params = window(n, n.args, n.kwargs, modules) if two_d else None
        if params is None or as_pair(params.get("dilation", 1)) != (1, 1):
            return None
        return {"op": "max_pool2d", "kernel_size": list(as_pair(params["kernel_size"])),
                "stride": list(as_pair(params["stride"])), "padding": list(as_pair(params.get("padding", 0))),
                "ceil_mode": bool(params.get("ceil_mode", False))}  # fmt: skip


def _as_average(n: fx.Node, args, kwargs, modules):
    x = args[0]
    if isinstance(x, Zero):
        return x
    if n.op == "call_module" and isinstance(modules[n.target], _ADAPTIVE_MAX):
        return _ADAPTIVE_AVG_POOLS[x.dim()](x, modules[n.target].output_size)
    name = op_name(n, modules)
    if name == "amax":  # a max over whole dimensions: their mean
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        return x.mean(dim=dims, keepdim=keepdim) if dims not in (None, (), []) else x.mean()
    if name.startswith("adaptive"):
        params = dict(zip(["output_size", "return_indices"], args[1:]))
        params.update(kwargs)
        return _ADAPTIVE_AVG_POOLS[x.dim()](x, params["output_size"])
    params = window(n, args, kwargs, modules)
    if any(d != 1 for d in as_tuple(params.get("dilation", 1))):
        raise UnsupportedOpError(f"dilated max pooling at '{n.name}' has no average-pooling reading")
    return _AVG_POOLS[x.dim()](x, params["kernel_size"], params["stride"], params.get("padding", 0),
                               params.get("ceil_mode", False), count_include_pad=False)  # fmt: skip


def _valid_pool(n: fx.Node, args, kwargs, modules):
    """A fixed window on a crop: no padding (the crop never reaches it)."""
    params = window(n, args, kwargs, modules)
    if params is None or any(d != 1 for d in as_tuple(params.get("dilation", 1))):
        raise NotTranslationEquivariant(n.name)
    x = args[0]
    out = _AVG_POOLS[x.dim()](x, params["kernel_size"], params["stride"], 0)
    return (out, None) if returns_pair(n) else out


def _box(n: fx.Node, params: dict) -> Box:
    return Box(as_pair(params["kernel_size"]), as_pair(params["stride"]), as_pair(params.get("padding", 0)))


AVERAGE_POOLING = AveragePooling(
    "average pooling",
    (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
    {"avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d"},
)
MAX_POOLING = MaxPooling(
    "max pooling",
    (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, *_ADAPTIVE_MAX),
    {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "adaptive_max_pool1d",
     "adaptive_max_pool2d", "amax"},
)  # fmt: skip
FAMILIES = (AVERAGE_POOLING, MAX_POOLING)
