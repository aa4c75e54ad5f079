"""Every neuron of a network as its bias plus one term per input layer: the exact linear maps the program
is written from.

Between two neuron layers the model computes a linear map (docs/neuron-graph.md), so a neuron's
pre-activation is a constant (its bias, a map where zero padding makes it one) plus, per source layer, that
layer's map, max-pooled first where every path starts with a max pool, read through a kernel per input
channel. Each term is one of two kinds:

- ``conv``: a strided cross-correlation with zero padding, the kernels composed along the path without
  autograd (:func:`circuits.trace.compose.compose`) and never cut at the border: exact at every position;
- ``linear``: any other linear path (a flatten into a dense layer, a permute, an upsampling), written as
  the dense Jacobian from the source map to the target map: exact, and as large as that says.

A max pool inside a path (not at its start) would be read as average pooling; such a term is kept but
marked inexact, and ``circuits verify`` measures what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from circuits.compile.nonlinearities import SOURCE
from circuits.errors import UnsupportedOpError
from circuits.graph import ops
from circuits.graph.nonlinearity import describe
from circuits.graph.ops import MAXPOOL
from circuits.graph.paths import entry_pool, make_path_function, path_nodes
from circuits.trace.compose import NO_PATH, compose

LINEAR_LIMIT = 2**26  # numbers in one layer's dense Jacobian (512 MiB of float64): larger is refused, not written


@dataclass
class Term:
    """One source layer's contribution to every neuron of a target layer.

    kernels: ``conv``: [C_target, C_source, kh, kw]; ``linear``: [C_target, C_source, *source map, *target
        map] (dense layers have no map). The source map is the pooled one where ``pool`` is set.
    stride, pad: ``conv`` only: source pixels per target pixel, and zero rows/columns before the map (top,
        left; negative crops), as :func:`circuits.compile.source.input_term` places them.
    """

    source: str
    kind: str  # "conv" | "linear"
    kernels: np.ndarray
    stride: tuple[int, int] | None = None
    pad: tuple[int, int] | None = None
    pools: list[dict] = field(default_factory=list)  # max pools applied to the source first, in order
    start: str | None = None  # the FX node whose values the term reads (the pooled map, where there is one)
    offset: int = 0  # the source's first channel in that node (a concat pooled as one map)
    source_map: tuple[int, ...] = ()  # the spatial size of what the term reads (after the pool)
    exact: bool = True
    note: str | None = None

    @cached_property
    def strength(self) -> np.ndarray:
        """Signed sum of each kernel, [C_target, C_source]: how ``circuits extract`` ranks inputs."""
        return self.kernels.reshape(*self.kernels.shape[:2], -1).sum(-1)

    @cached_property
    def magnitude(self) -> np.ndarray:
        return np.sqrt((self.kernels.reshape(*self.kernels.shape[:2], -1) ** 2).sum(-1))


@dataclass
class LayerTerms:
    """What the program computes for one layer: terms, bias and nonlinearity (``gate``: a product)."""

    layer: str
    kind: str  # "activation" | "output" | "gate"
    shape: tuple[int, ...]
    terms: list[Term] = field(default_factory=list)
    bias: np.ndarray | None = None  # [C, *map]: the pre-activation with every source at zero
    activations: list[dict | None] = field(default_factory=list)  # per channel (circuits.graph.nonlinearity)
    channel_wide: str | None = None  # "softmax" / "log_softmax": applied across channels after the neurons
    factors: list[str] = field(default_factory=list)  # gate: the layers multiplied, channel by channel


def network_terms(graph, progress=None) -> list[LayerTerms]:
    """:func:`layer_terms` of every layer the program computes, in the model's order."""
    inputs = [layer for layer in graph.layers.values() if layer.kind == "input"]
    if len(inputs) != 1:
        raise UnsupportedOpError(f"the model takes {len(inputs)} inputs; a program is written for a model of one image")
    out = []
    for layer in graph.layers.values():
        if layer.kind in ("input", "concat"):
            continue
        out.append(layer_terms(graph, layer.name))
        if progress:
            progress()
    return out


def layer_terms(graph, name: str) -> LayerTerms:
    """The terms, bias and nonlinearity of layer ``name``: everything its neurons compute."""
    layer = graph.layer(name)
    if layer.kind == "gate":
        return _gate(graph, layer)
    entries = {s: entry_pool(graph, s, name) for s in layer.sources}
    starts = list(dict.fromkeys(found[0] if found else graph.layers[s].node for s, found in entries.items()))
    fn = make_path_function(graph, starts, layer.preact)
    with torch.no_grad():
        zero = fn(*[torch.zeros(1, *graph.nodes[s].meta["shape"][1:], dtype=graph.dtype) for s in starts])
    terms = [_term(graph, layer, s, entries[s], starts, fn) for s in layer.sources]
    first = describe(graph, name, 0)
    channel_wide = first["name"] if first and first["name"] in _CHANNEL_WIDE else None
    if channel_wide and _softmax_dim(graph, layer) != 1:
        raise UnsupportedOpError(f"layer '{name}' applies {channel_wide} over a dimension other than the channels; "
                                 "a program writes it only across channels")  # fmt: skip
    activations = [None if channel_wide else describe(graph, name, c) for c in range(layer.channels)]
    unknown = next((a["name"] for a in activations if a and a["name"] not in SOURCE), None)
    if unknown:
        raise UnsupportedOpError(f"layer '{name}' applies {unknown}, which a program cannot write in numpy yet "
                                 "(circuits/graph/ops/nonlinear.py: give its row a numpy source)")  # fmt: skip
    return LayerTerms(
        layer=name, kind=layer.kind, shape=tuple(layer.shape), terms=[t for t in terms if t is not None],
        bias=zero[0].detach().double().numpy(), channel_wide=channel_wide, activations=activations,
    )  # fmt: skip


_CHANNEL_WIDE = ("softmax", "log_softmax")


def _softmax_dim(graph, layer) -> int:
    node = graph.nodes[layer.node]
    if node.op == "call_module":
        dim = getattr(graph.modules[node.target], "dim", None)
    else:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    rank = len(layer.shape) + 1
    if dim is None:  # torch's implicit choice (nn.Softmax() without dim)
        return 0 if rank in (0, 1, 3) else 1
    return dim % rank


def _term(graph, layer, source: str, entry, starts: list[str], fn) -> Term | None:
    start, pools, offset = entry if entry else (graph.layers[source].node, [], 0)
    channels = graph.layers[source].channels
    source_map = tuple(graph.nodes[start].meta["shape"][2:])
    inexact = [n for n in path_nodes(graph, starts, layer.preact) if ops.family(n, graph.modules).kind == MAXPOOL]
    note = (f"a max pool inside the path ({inexact[0].name}) is read as average pooling: not exact"
            if inexact else None)  # fmt: skip
    if len(layer.shape) == 3:
        found = compose(graph, starts, start, layer.preact, linearise=False, uncut=True)
        if found is NO_PATH:
            return None
        if found is not None:
            kernels = found.kernel[:, offset : offset + channels].detach().double().numpy()
            return Term(source, "conv", kernels, tuple(found.stride), (-found.offset[0], -found.offset[1]), pools,
                        start, offset, source_map, exact=not inexact, note=note)  # fmt: skip
    kernels = _jacobian(graph, layer, starts, start, fn)
    if kernels is None:
        return None
    return Term(source, "linear", kernels[:, offset : offset + channels], pools=pools, start=start, offset=offset,
                source_map=source_map, exact=not inexact, note=note)  # fmt: skip


def _jacobian(graph, layer, starts, start, fn) -> np.ndarray | None:
    """[C_target, C_start, *start map, *target map]: the exact linear map from ``start`` to the target."""
    shapes = [tuple(graph.nodes[s].meta["shape"][1:]) for s in starts]
    size = int(np.prod(shapes[starts.index(start)])) * int(np.prod(layer.shape))
    if size > LINEAR_LIMIT:
        raise UnsupportedOpError(
            f"the path into '{layer.name}' is not a convolution, and written as a dense map it would hold {size:,} "
            "numbers; a program cannot write it readably (circuits/program/terms.py)"
        )
    zeros = [torch.zeros(1, *shape, dtype=graph.dtype) for shape in shapes]
    i = starts.index(start)

    def only(x):
        return fn(*zeros[:i], x, *zeros[i + 1 :])[0]

    jac = torch.autograd.functional.jacobian(only, zeros[i].clone(), vectorize=True)  # [*target, 1, *start]
    if not jac.any():
        return None
    target_dims, start_dims = len(layer.shape), len(shapes[i])
    jac = jac.reshape(*layer.shape, *shapes[i])
    # -> [C_t, C_s, *start map, *target map]
    order = [0, target_dims, *range(target_dims + 1, target_dims + start_dims), *range(1, target_dims)]
    return jac.permute(*order).detach().double().numpy()


def _gate(graph, layer) -> LayerTerms:
    """A multiplicative gate (a squeeze-excite ``x * s``): the product of two layers, channel by channel."""
    node = graph.nodes[layer.node]
    by_node = {info.node: info.name for info in graph.layers.values()}
    args = [a for a in node.args if hasattr(a, "name")]
    factors = [by_node.get(a.name) for a in args]
    shapes = [graph.layers[f].shape if f else None for f in factors]
    concat = [f for f in factors if f and graph.layers[f].kind == "concat"]
    if len(args) != 2 or None in factors or concat or any(s[0] != layer.shape[0] or len(s) != len(layer.shape)
                                                          for s in shapes):  # fmt: skip
        raise UnsupportedOpError(
            f"the gate '{layer.name}' multiplies something other than two neuron layers of its channels (a reshape "
            "or a concat between them?); a program writes only a plain product of two layers"
        )
    return LayerTerms(layer=layer.name, kind="gate", shape=tuple(layer.shape), factors=factors,
                      activations=[None] * layer.channels)  # fmt: skip
