"""Compile a :class:`PlantedSpec` into an ``nn.Module`` whose weights are exactly the spec's.

The module's structure is what the neuron-graph IR expects, so its layer names are the spec's:

- :class:`PlantedNet` has ``spec``, ``input_shape`` and one child per spec layer, named after it;
- :class:`PlantedLayer` (a neuron layer) has children ``conv``, optional ``bn``, and ``act``, and returns
  ``act(bn(conv(x)))``; channel ``k`` is the spec layer's ``k``-th neuron;
- :class:`PlantedConcat` (an Inception-style block) has one :class:`PlantedLayer` per branch, each reading
  the block's input, and returns their outputs concatenated along channels in branch order.

Models come back in eval mode (BatchNorm uses its running statistics).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from circuits.planted.spec import (
    LEAKY_SLOPE,
    Layer,
    PlantedSpec,
    effective_bias,
    effective_weights,
    load_spec,
)


class PlantedLayer(nn.Module):
    """One neuron layer: ``act(bn(conv(x)))`` (``bn`` only when the spec layer has one)."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module, bn: nn.BatchNorm2d | None = None):
        super().__init__()
        self.conv = conv
        if bn is not None:
            self.bn = bn
        self.act = act

    def forward(self, x):
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.act(x)


class PlantedConcat(nn.Module):
    """Inception-style routing: every branch reads the same input; outputs are concatenated on channels."""

    def __init__(self, branches: dict[str, PlantedLayer]):
        super().__init__()
        self.branch_names = list(branches)
        for name, branch in branches.items():
            setattr(self, name, branch)

    def forward(self, x):
        return torch.cat([getattr(self, name)(x) for name in self.branch_names], dim=1)


class PlantedNet(nn.Module):
    """A compiled planted spec: children named after the spec's layers, applied in order."""

    def __init__(self, spec: PlantedSpec, layers: dict[str, nn.Module]):
        super().__init__()
        self.spec = spec
        self.input_shape = spec.input_shape
        self.layer_names = list(layers)
        for name, layer in layers.items():
            setattr(self, name, layer)

    def forward(self, x):
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x


def _activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
    }[name]()


def _compile_layer(layer: Layer) -> PlantedLayer:
    weights, bias = effective_weights(layer), effective_bias(layer)
    out_ch, in_ch, kh, kw = weights.shape
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), padding=layer.padding_hw, bias=layer.bn is None)
    bn = None
    if layer.bn is None:
        conv.bias.data = torch.from_numpy(bias).float()
    else:
        # Spec weights are the folded ones: BN(conv(x)) = scale * (W_raw x - mean) + beta must equal W x + b,
        # so W_raw = W / scale and beta = b + scale * mean (the conv has no bias, as in real networks).
        stats, scale = layer.bn.resolved(out_ch), layer.bn.scale(out_ch)
        weights = weights / scale[:, None, None, None]
        bn = nn.BatchNorm2d(out_ch, eps=layer.bn.eps)
        bn.weight.data = torch.from_numpy(stats["gamma"]).float()
        bn.bias.data = torch.from_numpy(bias + scale * stats["mean"]).float()
        bn.running_mean.data = torch.from_numpy(stats["mean"]).float()
        bn.running_var.data = torch.from_numpy(stats["var"]).float()
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(weights)).float()
    return PlantedLayer(conv, _activation(layer.act), bn)


def compile(spec) -> PlantedNet:  # noqa: A001 - the issue's name for it; shadows the builtin only here
    """Build the ``nn.Module`` a spec describes, with exactly its weights, in eval mode.

    ``spec`` is a :class:`PlantedSpec`, a ready spec's name, a dict, or a YAML/JSON file path or text. The module keeps the spec
    as ``module.spec``; the neuron names are the channel labels (``spec.labels()``).

    Examples
    --------
    >>> from circuits.planted import compile, get_spec
    >>> net = compile(get_spec("union"))
    >>> net.union.conv.weight.shape
    torch.Size([4, 4, 1, 1])
    """
    from circuits.planted.library import LIBRARY

    spec = LIBRARY[spec]() if isinstance(spec, str) and spec in LIBRARY else load_spec(spec)
    layers: dict[str, nn.Module] = {}
    for layer in spec.layers:
        if layer.is_concat:
            layers[layer.name] = PlantedConcat({b.name: _compile_layer(b) for b in layer.branches})
        else:
            layers[layer.name] = _compile_layer(layer)
    return PlantedNet(spec, layers).eval()
