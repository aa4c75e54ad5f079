"""What a layer's nonlinearity computes, as plain data: ``{"name": "leaky_relu", "negative_slope": 0.1}``.

Reverse compilation needs the exact function (slopes, clip bounds, a PReLU's per-channel weight), not
only its name; the nonlinearity's family (``circuits/graph/ops/nonlinear.py``) reads them from the module
or from the functional call's arguments.
"""

from __future__ import annotations

from circuits.graph import ops


def describe(graph, layer_name: str, channel: int) -> dict | None:
    """The nonlinearity of ``layer_name`` as seen by one channel, or None for a linear layer."""
    layer = graph.layers[layer_name]
    if layer.kind != "activation":
        return None
    node = graph.nodes[layer.node]
    return ops.family(node, graph.modules).describe(node, graph.modules, channel)
