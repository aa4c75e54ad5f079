"""Evaluate the linear path from some neuron layers to a node, as an ordinary differentiable function.

The tracing engine differentiates these functions: a direct weight is the Jacobian of a target's
pre-activation with respect to its direct sources. Only nodes that depend on the sources *and* feed the
target are computed. Tensors that do not depend on the sources are either structural zeros (``ZERO``:
additive constants drop out of a Jacobian of a linear map) or, for attribution on real data, their real
values from a forward pass (``context``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.func import functional_call

from circuits.errors import UnsupportedOpError
from circuits.graph import ops


class _Zero:
    """A tensor that does not depend on the sources, standing in as zero (its shape is in node.meta)."""

    def __init__(self, node: fx.Node):
        self.node = node

    def __repr__(self):
        return f"ZERO({self.node.name})"


_OUT_OF_PLACE = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                 operator.itruediv: operator.truediv}  # fmt: skip


def path_nodes(graph, source_nodes: list[str], target_node: str) -> list[fx.Node]:
    """Nodes that depend on a source and feed the target, in topological order (sources excluded)."""
    nodes = list(graph.gm.graph.nodes)
    target = graph.nodes[target_node]
    ancestors = {target.name}
    for n in reversed(nodes):  # stop at sources: what lies behind one is replaced by its value
        if n.name in ancestors and n.name not in source_nodes:
            ancestors.update(a.name for a in n.all_input_nodes)
    reached = set(source_nodes)
    for n in nodes:
        if n.name not in reached and any(a.name in reached for a in n.all_input_nodes):
            reached.add(n.name)
    return [n for n in nodes if n.name in reached and n.name in ancestors and n.name not in source_nodes]


def make_path_function(
    graph,
    sources: list[str],
    target_node: str,
    *,
    linearise: bool = False,
    context: dict[str, torch.Tensor] | None = None,
    positive: bool = False,
    valid: bool = False,
) -> Callable[..., torch.Tensor]:
    """A function ``f(*source_values) -> value of target_node`` over the model's own operations.

    sources: FX node names whose values are the function's arguments.
    linearise: replace every nonlinearity on the path by the identity (expanded weights); otherwise a
        nonlinearity on the path is evaluated for real (attribution) or, without ``context``, refused.
    context: real values of nodes off the path (from a forward pass on data); without it they are ZERO.
    positive: evaluate a surrogate with every parameter replaced by ``|p| + 1`` so no weight cancels; its
        Jacobian is nonzero exactly where the real one can be (the receptive field).
    valid: evaluate on a receptive-field crop: convolutions and pools without padding, padding ops
        skipped, branches centre-cropped to a common size. Only translation-equivariant ops are allowed
        (others raise ``NotTranslationEquivariant``); the caller checks the result against the full map.
    Max pooling is read as average pooling of the same window (Distill's convention for weights), except
    on data (``context`` without ``linearise``), where the path is the model's own: max pooling is real.
    """
    steps = path_nodes(graph, sources, target_node)
    modules = graph.modules
    if not any(s.name == target_node for s in steps) and target_node not in sources:
        raise UnsupportedOpError(f"node '{target_node}' does not depend on {sources}: there is no path")
    on_path = {n.name for n in steps} | set(sources)
    layer_of = {layer.node: layer.name for layer in graph.layers.values()}
    for n in steps:
        if n.name == target_node:
            break
        if ops.is_nonlinearity(n, modules) and not linearise and context is None:
            raise UnsupportedOpError(f"the path passes the nonlinearity '{layer_of.get(n.name, n.name)}'")
        gated = ops.is_scaling(n, modules) and sum(a.name in on_path for a in n.all_input_nodes) >= 2
        if gated and context is None:
            raise UnsupportedOpError(
                f"the path passes the multiplicative gate '{layer_of.get(n.name, n.name)}', which has no weights; "
                "trace from the gate's layer or after it, or use attribution on data"
            )

    real_pooling = context is not None and not linearise

    def run(*values):
        env: dict[str, object] = dict(zip(sources, values, strict=True))

        def value_of(a):
            if isinstance(a, fx.Node):
                if a.name in env:
                    return env[a.name]
                if a.op == "get_attr":
                    return _positive(_fetch_attr(graph.gm, a.target)) if positive else _fetch_attr(graph.gm, a.target)
                if context is not None and a.name in context:
                    return context[a.name]
                return _Zero(a)
            if isinstance(a, (list, tuple)):
                return type(a)(value_of(x) for x in a)
            if isinstance(a, dict):
                return {k: value_of(v) for k, v in a.items()}
            return a

        for n in steps:
            args, kwargs = value_of(n.args), value_of(n.kwargs)
            if valid:
                env[n.name] = _evaluate_valid(n, args, kwargs, modules, linearise)
            elif real_pooling and ops.is_maxpool(n, modules):  # on data: the real max, not the reading
                env[n.name] = _call(n, args, kwargs, modules)
            else:
                env[n.name] = _evaluate(n, args, kwargs, modules, linearise, positive)
            if n.name == target_node:
                break
        return env[target_node]

    return run


def path_inputs(graph, sources: list[str], target_node: str) -> set[str]:
    """Nodes off the path that the path reads: what ``context`` must hold to evaluate it on data."""
    steps = path_nodes(graph, sources, target_node)
    on_path = {n.name for n in steps} | set(sources)
    return {a.name for n in steps for a in n.all_input_nodes if a.name not in on_path and a.op != "get_attr"}


def _call(n: fx.Node, args, kwargs, modules):
    """Run a node's own op as the model does."""
    if n.op == "call_module":
        return modules[n.target](*args, **kwargs)
    if n.op == "call_method":
        return getattr(args[0], str(n.target))(*args[1:], **kwargs)
    return n.target(*args, **kwargs)


def _fetch_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _positive(t):
    return t.abs() + 1 if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def _evaluate(n: fx.Node, args, kwargs, modules, linearise: bool, positive: bool):
    if ops.is_nonlinearity(n, modules) and (linearise or positive):
        return args[0]
    if ops.is_maxpool(n, modules):
        return _as_average_pool(n, args, kwargs, modules)
    args, kwargs = _resolve_zeros(n, args, kwargs, modules)
    if isinstance(args, _Zero):
        return args
    if n.op == "call_module":
        module = modules[n.target]
        if positive:
            params = {k: _positive(v) for k, v in {**dict(module.named_parameters()), **dict(module.named_buffers())}.items()}
            return functional_call(module, params, args, kwargs)
        if getattr(module, "inplace", False):
            return _without_inplace(module)(*args, **kwargs)
        return module(*args, **kwargs)
    if n.op == "call_method":
        method = str(n.target)
        if method.endswith("_") and not method.endswith("__") and hasattr(torch.Tensor, method[:-1]):
            method = method[:-1]
        return getattr(args[0], method)(*args[1:], **kwargs)
    target = _OUT_OF_PLACE.get(n.target, n.target)
    if kwargs.get("inplace"):
        kwargs = {**kwargs, "inplace": False}
    return target(*args, **kwargs)


def _without_inplace(module: nn.Module) -> nn.Module:
    import copy

    clone = copy.copy(module)
    clone.inplace = False
    return clone


def _resolve_zeros(n: fx.Node, args, kwargs, modules):
    """Apply ZERO semantics: x + 0 = x, cat fills zeros, an op on ZERO alone stays ZERO."""
    flat = [a for a in _flatten(args) if isinstance(a, (_Zero, torch.Tensor))]
    zeros = [a for a in flat if isinstance(a, _Zero)]
    if not zeros:
        return args, kwargs
    live = [a for a in flat if isinstance(a, torch.Tensor)]
    if not live:
        return _Zero(n), kwargs
    name = ops.op_name(n, modules)
    if name in {"add", "add_", "iadd"} and len(args) >= 2:
        a, b = args[0], args[1]
        zero = torch.zeros((), dtype=live[0].dtype)
        return ((zero, b) if isinstance(a, _Zero) else (a, zero)), {}
    if name in {"sub", "sub_", "isub"} and len(args) >= 2:
        a, b = args[0], args[1]
        zero = torch.zeros((), dtype=live[0].dtype)
        return ((a, zero) if isinstance(b, _Zero) else (zero, b)), {}
    if ops.is_cat(n, modules):
        tensors = args[0]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        like = next(t for t in tensors if isinstance(t, torch.Tensor))
        filled = []
        for t in tensors:
            if isinstance(t, _Zero):
                shape = list(like.shape)
                shape[dim] = t.node.meta["shape"][dim]
                t = like.new_zeros(shape)
            filled.append(t)
        return (filled, *args[1:]), kwargs
    raise UnsupportedOpError(
        f"cannot evaluate '{n.name}' ({name}) on a linear path: one of its inputs does not depend on the "
        "source layer (a multiplicative gate?); trace from a layer after it, or give data for attribution"
    )


def _flatten(value):
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _flatten(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _flatten(v)
    else:
        yield value


def _as_average_pool(n: fx.Node, args, kwargs, modules):
    """Max pooling read as average pooling of the same window (padding never counted)."""
    x = args[0]
    if isinstance(x, _Zero):
        return x
    if n.op == "call_module":
        m = modules[n.target]
        if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
            return _adaptive_avg(x, m.output_size)
        kernel, stride, padding, dilation, ceil = m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    else:
        name = ops.op_name(n, modules)
        if name == "amax":  # a max over whole dimensions: their mean
            dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
            keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            return x.mean(dim=dims, keepdim=keepdim) if dims not in (None, (), []) else x.mean()
        params = _maxpool_args(name, args[1:], kwargs)
        if name.startswith("adaptive"):
            out = _adaptive_avg(x, params["output_size"])
            return (out, None) if _returns_pair(n) else out
        kernel, stride, padding, dilation, ceil = (
            params["kernel_size"], params.get("stride"), params.get("padding", 0), params.get("dilation", 1),
            params.get("ceil_mode", False),
        )  # fmt: skip
    if any(d != 1 for d in _tuple(dilation)):
        raise UnsupportedOpError(f"dilated max pooling at '{n.name}' has no average-pooling reading")
    stride = stride if stride not in (None, [], ()) else kernel
    pool = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}[x.dim()]
    out = pool(x, kernel, stride, padding, ceil, count_include_pad=False)
    return (out, None) if _returns_pair(n) else out


def _returns_pair(n: fx.Node) -> bool:
    return "with_indices" in str(n.target)  # aten's max_pool2d_with_indices returns (values, indices)


def _maxpool_args(name: str, args, kwargs) -> dict:
    if name.startswith("adaptive"):
        keys = ["output_size", "return_indices"]
    else:
        keys = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
    params = dict(zip(keys, args))
    params.update(kwargs)
    return params


def _adaptive_avg(x, output_size):
    pool = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}[x.dim()]
    return pool(x, output_size)


def _tuple(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


class NotTranslationEquivariant(Exception):
    """The path has an op that a receptive-field crop cannot evaluate (dense, adaptive, resampling)."""


_VALID_PASSTHROUGH = {
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
    "Identity", "batch_norm", "_native_batch_norm_legit_no_training", "dropout", "dropout_", "feature_dropout",
    "alpha_dropout", "contiguous", "clone", "alias", "detach", "to", "float", "type_as", "getitem", "neg",
    "chunk", "split", "split_with_sizes", "mul", "mul_", "imul", "truediv", "div", "div_", "itruediv",
}  # fmt: skip
_PADS = {"ZeroPad1d", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "pad", "constant_pad_nd"}
_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FUNCS = {"conv1d": F.conv1d, "conv2d": F.conv2d, "conv3d": F.conv3d}


def _evaluate_valid(n: fx.Node, args, kwargs, modules, linearise: bool):
    """Evaluate ``n`` on a receptive-field crop (see ``make_path_function(valid=True)``)."""
    if ops.is_nonlinearity(n, modules):
        if not linearise:
            raise NotTranslationEquivariant(n.name)
        return args[0]
    name = ops.op_name(n, modules)
    if name in _PADS:
        return args[0]
    if ops.is_cat(n, modules) or name in {"add", "add_", "iadd", "sub", "sub_", "isub"}:
        args = _centre_crop_operands(n, args, modules)
    if n.op == "call_module" and isinstance(modules[n.target], _CONV_MODULES):
        m = modules[n.target]
        if m.padding_mode != "zeros" and m.padding != 0:
            pass  # the crop never reaches the padding: the mode does not matter
        conv = _CONV_FUNCS[f"conv{m.weight.dim() - 2}d"]
        return conv(args[0], m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
    if name in _CONV_FUNCS:
        params = dict(zip(["input", "weight", "bias", "stride", "padding", "dilation", "groups"], args))
        params.update(kwargs)
        params["padding"] = 0
        return _CONV_FUNCS[name](**params)
    if ops.is_maxpool(n, modules) or name in {"AvgPool1d", "AvgPool2d", "AvgPool3d", "avg_pool1d", "avg_pool2d"}:
        return _valid_pool(n, args, kwargs, modules)
    if name in _VALID_PASSTHROUGH or ops.is_cat(n, modules) or name in {"add", "add_", "iadd", "sub", "sub_", "isub"}:
        if name in SCALE_NAMES and not _is_channelwise_constant(args):
            raise NotTranslationEquivariant(n.name)
        return _evaluate(n, args, kwargs, modules, linearise, False)
    raise NotTranslationEquivariant(n.name)


SCALE_NAMES = {"mul", "mul_", "imul", "truediv", "div", "div_", "itruediv"}


def _is_channelwise_constant(args) -> bool:
    constants = [a for a in args[1:] if isinstance(a, torch.Tensor) and not a.requires_grad]
    return all(a.dim() < 2 or all(d == 1 for d in a.shape[2:]) for a in constants)


def _centre_crop_operands(n, args, modules):
    tensors = [a for a in _flatten(args) if isinstance(a, torch.Tensor) and a.dim() >= 3]
    if len({tuple(t.shape[2:]) for t in tensors}) <= 1:
        return args
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

    if ops.is_cat(n, modules):
        return (type(args[0])(crop(t) for t in args[0]), *args[1:])
    return tuple(crop(a) for a in args)


def _valid_pool(n, args, kwargs, modules):
    x = args[0]
    if n.op == "call_module":
        m = modules[n.target]
        if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
            raise NotTranslationEquivariant(n.name)
        kernel, stride, dilation = m.kernel_size, m.stride, getattr(m, "dilation", 1)
    else:
        name = ops.op_name(n, modules)
        if name.startswith("adaptive") or name == "amax":
            raise NotTranslationEquivariant(n.name)
        params = _maxpool_args(name, args[1:], kwargs)
        kernel, stride, dilation = params["kernel_size"], params.get("stride"), params.get("dilation", 1)
    if any(d != 1 for d in _tuple(dilation)):
        raise NotTranslationEquivariant(n.name)
    stride = stride if stride not in (None, [], ()) else kernel
    pool = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}[x.dim()]
    out = pool(x, kernel, stride, 0)
    return (out, None) if _returns_pair(n) else out


def pooled_entry(graph, source: str, target: str) -> tuple[str, dict] | None:
    """The max pool that every path from layer ``source`` to ``target``'s pre-activation starts with.

    Returns ``(node name of the pooled map, pool description)`` or None. Faithful code applies the real
    max pool to the source and then the linear part, whose kernels are taken at the pooled map.
    """
    t_layer, s_layer = graph.layers[target], graph.layers[source]
    bounds = [graph.layers[x].node for x in t_layer.sources]
    on_path = {n.name for n in path_nodes(graph, bounds, t_layer.preact)}
    users = [u for u in graph.nodes[s_layer.node].users if u.name in on_path]
    if len(users) != 1 or not ops.is_maxpool(users[0], graph.modules):
        return None
    pool = users[0]
    spec = _pool_description(pool, graph.modules)
    if spec is None:
        return None
    if _returns_pair(pool):  # aten's (values, indices): the entry is the values
        values = [u for u in pool.users if u.target is operator.getitem and u.args[1] == 0]
        if len(values) != 1:
            return None
        return values[0].name, spec
    return pool.name, spec


def _pool_description(n: fx.Node, modules) -> dict | None:
    if n.op == "call_module":
        m = modules[n.target]
        if isinstance(m, nn.AdaptiveMaxPool2d):
            return {"op": "amax", "dims": [2, 3], "keepdim": True} if as_pair(m.output_size) == (1, 1) else None
        if not isinstance(m, nn.MaxPool2d):
            return None
        params = {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding, "dilation": m.dilation,
                  "ceil_mode": m.ceil_mode}  # fmt: skip
    else:
        name = ops.op_name(n, modules)
        if name == "amax":
            dims = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
            keepdim = n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)
            rank = len(n.args[0].meta.get("shape") or ())
            dims = sorted(d % rank for d in _tuple(dims)) if dims is not None else None
            return {"op": "amax", "dims": dims, "keepdim": bool(keepdim)} if dims == [2, 3] else None
        if name not in ("max_pool2d", "max_pool2d_with_indices"):
            return None
        params = _maxpool_args(name, n.args[1:], n.kwargs)
    stride = params.get("stride")
    stride = stride if stride not in (None, [], ()) else params["kernel_size"]
    if as_pair(params.get("dilation", 1)) != (1, 1):
        return None
    return {"op": "max_pool2d", "kernel_size": list(as_pair(params["kernel_size"])), "stride": list(as_pair(stride)),
            "padding": list(as_pair(params.get("padding", 0))), "ceil_mode": bool(params.get("ceil_mode", False))}  # fmt: skip


def as_pair(v) -> tuple[int, int]:
    """A 2-D size or stride as a pair: ``3`` -> ``(3, 3)``, ``[2]`` -> ``(2, 2)``."""
    v = _tuple(v)
    return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))
