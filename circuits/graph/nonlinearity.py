"""What a layer's nonlinearity computes, as plain data: ``{"name": "leaky_relu", "negative_slope": 0.1}``.

Reverse compilation needs the exact function (slopes, clip bounds, a PReLU's per-channel weight), not
only its name; this reads them from the module or from the functional call's arguments.
"""

from __future__ import annotations

from torch import nn

from circuits.graph import ops

# Functional calls: name -> (canonical name, positional parameter names after the input)
_FUNCTIONAL = {
    "relu": ("relu", []), "relu_": ("relu", []), "relu6": ("hardtanh", []), "hardtanh": ("hardtanh", ["min_val", "max_val"]),
    "hardtanh_": ("hardtanh", ["min_val", "max_val"]), "leaky_relu": ("leaky_relu", ["negative_slope"]),
    "leaky_relu_": ("leaky_relu", ["negative_slope"]), "elu": ("elu", ["alpha"]), "elu_": ("elu", ["alpha"]),
    "selu": ("selu", []), "celu": ("celu", ["alpha"]), "gelu": ("gelu", []), "silu": ("silu", []), "silu_": ("silu", []),
    "mish": ("mish", []), "hardswish": ("hardswish", []), "hardsigmoid": ("hardsigmoid", []),
    "sigmoid": ("sigmoid", []), "sigmoid_": ("sigmoid", []), "tanh": ("tanh", []), "tanh_": ("tanh", []),
    "softplus": ("softplus", ["beta", "threshold"]), "softsign": ("softsign", []), "logsigmoid": ("logsigmoid", []),
    "clamp": ("clamp", ["min_val", "max_val"]), "clamp_": ("clamp", ["min_val", "max_val"]),
    "clip": ("clamp", ["min_val", "max_val"]), "clamp_min": ("clamp", ["min_val"]), "clamp_max": ("clamp", ["max_val"]),
    "softmax": ("softmax", []), "log_softmax": ("log_softmax", []), "_softmax": ("softmax", []),
    "_log_softmax": ("log_softmax", []),
}  # fmt: skip
_DEFAULTS = {
    "hardtanh": {"min_val": -1.0, "max_val": 1.0}, "leaky_relu": {"negative_slope": 0.01}, "elu": {"alpha": 1.0},
    "celu": {"alpha": 1.0}, "softplus": {"beta": 1.0, "threshold": 20.0},
}  # fmt: skip


def describe(graph, layer_name: str, channel: int) -> dict | None:
    """The nonlinearity of ``layer_name`` as seen by one channel, or None for a linear layer."""
    layer = graph.layers[layer_name]
    if layer.kind != "activation":
        return None
    node = graph.nodes[layer.node]
    if node.op == "call_module":
        return _from_module(graph.modules[node.target], channel)
    name, positional = _FUNCTIONAL.get(ops.op_name(node, graph.modules), (layer.nonlinearity, []))
    params = dict(_DEFAULTS.get(name, {}))
    if ops.op_name(node, graph.modules) == "relu6":
        params = {"min_val": 0.0, "max_val": 6.0}
    for key, value in zip(positional, node.args[1:]):
        params[key] = value
    for key in ("negative_slope", "alpha", "beta", "threshold", "approximate"):
        if key in node.kwargs:
            params[key] = node.kwargs[key]
    for key, alias in (("min", "min_val"), ("max", "max_val"), ("min_val", "min_val"), ("max_val", "max_val")):
        if key in node.kwargs:
            params[alias] = node.kwargs[key]
    if name == "gelu":
        params.setdefault("approximate", "none")
    return {"name": name, **{k: float(v) if isinstance(v, int | float) else v for k, v in params.items() if v is not None}}


def _from_module(m: nn.Module, channel: int) -> dict:
    if isinstance(m, nn.ReLU6):
        return {"name": "hardtanh", "min_val": 0.0, "max_val": 6.0}
    if isinstance(m, nn.Hardtanh):
        return {"name": "hardtanh", "min_val": float(m.min_val), "max_val": float(m.max_val)}
    if isinstance(m, nn.ReLU):
        return {"name": "relu"}
    if isinstance(m, nn.LeakyReLU):
        return {"name": "leaky_relu", "negative_slope": float(m.negative_slope)}
    if isinstance(m, nn.PReLU):
        w = m.weight.detach().flatten()
        return {"name": "leaky_relu", "negative_slope": float(w[channel] if w.numel() > 1 else w[0])}
    if isinstance(m, nn.ELU | nn.CELU):
        return {"name": "elu" if isinstance(m, nn.ELU) else "celu", "alpha": float(m.alpha)}
    if isinstance(m, nn.GELU):
        return {"name": "gelu", "approximate": m.approximate}
    if isinstance(m, nn.Softplus):
        return {"name": "softplus", "beta": float(m.beta), "threshold": float(m.threshold)}
    simple = {nn.SiLU: "silu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SELU: "selu", nn.Mish: "mish",
              nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid", nn.Softsign: "softsign",
              nn.LogSigmoid: "logsigmoid", nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax"}  # fmt: skip
    for cls, name in simple.items():
        if isinstance(m, cls):
            return {"name": name}
    return {"name": type(m).__name__.lower()}
