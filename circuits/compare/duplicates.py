"""Neurons that compute another neuron's function: a sign of a graft that needs no reference model.

Two neurons of a trained layer rarely share their input weights. Over the zoo's 21 trained networks,
the closest pair of output channels of any module past the first hidden layer reaches a cosine of 0.88
(the MLP's hidden layer; 0.83 in the CNNs). A neuron made to compute another's (the auditing game's
``graft``) keeps a near copy of its donor's kernels through a gentle fine-tune (0.999 to 1.0 on the
zoo's plants). :func:`duplicates` lists the channels of every ordinary conv and linear layer whose
closest twin in the same module sits above ``DUPLICATE``, named as neurons. Left out: the modules of the
layers that read only the image (:func:`~circuits.compare.response.pixel_layers`; pixel filters are
alike by nature: a first layer's 3 x 3 filters reach 0.95), the
output's (two classes read alike are not a copy), modules that compute no neuron layer of their own (a
linear bottleneck's projection: its channels are not neurons) and modules with fewer than ``MIN_FAN_IN``
weights a channel (where close kernels happen by chance).

Both members of a pair are listed: without a reference nothing says which one was changed.
"""

from __future__ import annotations

import torch

DUPLICATE = 0.97  # cosine of two channels' input weights (kernels and bias) above which they are a copy
MIN_FAN_IN = 8  # weights per output channel below which close kernels happen by chance


def duplicates(model, threshold: float = DUPLICATE) -> list[dict]:
    """``[{"neuron", "twin", "cosine", "module"}]``: every output channel of an ordinary conv (``groups ==
    1``) or linear layer (outside the pixel layers, not the output, fan-in >= ``MIN_FAN_IN``) whose
    input weights have a cosine >= ``threshold`` with another channel of the same module, closest first;
    ``neuron`` and ``twin`` are ``LAYER:CHANNEL`` as `circuits layers` names them."""
    from circuits.compare.response import pixel_layers
    from circuits.graph import build_graph

    graph = build_graph(model)
    pixels = set(pixel_layers(graph))
    found = []
    for name, conv in graph.gm.named_modules():
        ordinary = isinstance(conv, torch.nn.Linear) or (isinstance(conv, torch.nn.Conv2d) and conv.groups == 1)
        if not ordinary or conv.weight.shape[0] < 2 or conv.weight[0].numel() < MIN_FAN_IN:
            continue
        layer, offset = module_channels(graph, name)
        info = graph.layers.get(layer)
        if info is None or info.is_output or layer in pixels:
            continue  # no neuron layer of its own; two classes read alike, or two pixel filters alike
        weights = conv.weight.detach().flatten(1)
        if conv.bias is not None:
            weights = torch.cat([weights, conv.bias.detach()[:, None]], 1)
        unit = torch.nn.functional.normalize(weights, dim=1)
        cosine = unit @ unit.T
        cosine.fill_diagonal_(-2.0)
        best, twin = cosine.max(1)
        for channel in torch.nonzero(best >= threshold).flatten().tolist():
            found.append({"neuron": f"{layer}:{channel + offset}", "twin": f"{layer}:{int(twin[channel]) + offset}",
                          "cosine": float(best[channel]), "module": name})  # fmt: skip
    return sorted(found, key=lambda d: (-d["cosine"], d["neuron"]))


def layer_of_module(graph, module_name: str) -> str:
    """The neuron layer whose channels a conv module computes (see :func:`module_channels`)."""
    return module_channels(graph, module_name)[0]


def module_channels(graph, module_name: str) -> tuple[str, int]:
    """``(layer, offset)``: the neuron layer whose channels a conv module computes, and where its channel
    0 sits in that layer. The layer is the first reached from the module's output through per-channel
    steps (BatchNorm, the nonlinearity, a residual add) and channel concats, each of which moves the
    channels up by its earlier parts' (a DenseNet layer reads the image's features beside its own), but
    never through another map with weights; ``(module name, 0)`` when none is (a linear bottleneck's
    projection, whose channels reach a neuron layer only through the next conv)."""
    from circuits.graph import ops
    from circuits.graph.ir import concat_offset
    from circuits.graph.ops.linear import CONVOLUTIONS, DENSE

    by_node = {}
    for name, info in graph.layers.items():
        for node in (info.preact, info.node):
            if node is not None:
                by_node.setdefault(node, name)
    start = next((n for n in graph.gm.graph.nodes if n.op == "call_module" and n.target == module_name), None)
    frontier = [(start, 0)] if start is not None else []
    while frontier:
        node, offset = frontier.pop(0)
        if node.name in by_node:
            return by_node[node.name], offset
        for user in node.users:
            family = ops.family(user, graph.modules)
            if family in (CONVOLUTIONS, DENSE):
                continue  # a map with weights computes channels of its own: not this module's
            shift = concat_offset(user, node) if family.concat_dim(user) == 1 else 0
            frontier.append((user, offset + shift))
    return module_name, 0
