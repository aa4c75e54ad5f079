"""Kernel contraction: compose the kernels along a conv path directly, without autograd.

For paths made of convolutions (any stride and groups), BatchNorm, average (or average-read max)
pooling, channel concat, sums and linearised nonlinearities, the map from a source layer to a node is
a strided convolution ``node[p] = sum_d K[:, :, d] * source[p * stride + offset + d]``. Composing one
more convolution is a transposed convolution of the kernels, exactly the FLOPs of the contraction
itself (Distill's "Visualizing Weights" computes expanded weights the same way). Anything else
returns None and the caller falls back to the Jacobian engine, which handles every path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx

from circuits.graph import ops
from circuits.graph.ops import Uncomposable
from circuits.graph.ops.base import Box, Concat, Conv, Identity, NoPath, Scale, Sum
from circuits.graph.paths import path_nodes


@dataclass
class LinearMap:
    """``node[p] = sum_d kernel[:, :, d] * source[p * stride + offset + d]`` (2-D, per channel pair)."""

    kernel: torch.Tensor  # [C_node, C_source, kh, kw]
    stride: tuple[int, int]
    offset: tuple[int, int]
    identity: bool = False  # the source itself: the first conv's kernel is its own weight, no product


NO_PATH = object()


def compose(graph, sources: list[str], source: str, target_node: str, linearise: bool, uncut: bool = False):
    """The map from layer node ``source`` to ``target_node``, other ``sources`` held at zero.

    Returns a LinearMap, ``NO_PATH`` when the source does not feed the target, or None when the path has
    an op this contraction does not know (the caller then uses the Jacobian engine). ``uncut`` composes
    kernels wider than the source map too: code that applies them with zero padding (the whole-model
    program) is exact with them, where a kernel cut at the centre's receptive field is not.
    """
    steps = path_nodes(graph, sources, target_node)
    start = graph.nodes[source]
    channels = start.meta["shape"][1]
    eye = torch.eye(channels, dtype=graph.dtype).reshape(channels, channels, 1, 1)
    maps: dict[str, LinearMap | None] = {source: LinearMap(eye, (1, 1), (0, 0), identity=True)}
    last_use = {a.name: i for i, n in enumerate(steps) for a in n.all_input_nodes}
    try:
        for i, n in enumerate(steps):
            maps[n.name] = _step(graph, n, maps, linearise, uncut)
            if n.name == target_node:
                break
            if not uncut:
                _check_fits(maps[n.name], start.meta["shape"][2:])
            for a in n.all_input_nodes:  # a residual net's path holds hundreds of maps: keep the live ones
                if last_use.get(a.name) == i:
                    maps.pop(a.name, None)
    except Uncomposable:
        return None
    found = maps.get(target_node)
    return NO_PATH if found is None else found


def _check_fits(m: LinearMap | None, spatial) -> None:
    """Kernels only grow along a path, and one wider than the source map is cut by its border, which this
    contraction cannot express (the caller then uses the Jacobian engine): stop before composing further
    (on a 224-pixel MobileNetV2 the remaining steps cost minutes and gigabytes for nothing)."""
    if m is not None and m.kernel.dim() == 4 and any(k > s for k, s in zip(m.kernel.shape[2:], spatial)):
        raise Uncomposable("the receptive field is wider than the source map")


def _step(graph, n: fx.Node, maps, linearise, uncut: bool = False) -> LinearMap | None:
    """The map to ``n``: its family says which linear map the op is (``ops.base``'s steps), this applies it."""
    inputs = [a for a in n.all_input_nodes if a.op != "get_attr"]
    first = maps.get(inputs[0].name) if inputs else None
    if all(maps.get(a.name) is None for a in inputs):
        return None  # the source does not reach this node
    step = ops.family(n, graph.modules).step(n, graph.modules, linearise=linearise)
    if isinstance(step, Identity):
        return first
    if isinstance(step, NoPath) or first is None and isinstance(step, Conv | Box | Scale):
        return None
    if isinstance(step, Conv | Box) and uncut and any(step.padding) and not _pointwise(first):
        # zero padding of a map part-way along the path is not zero padding of the source: the composed
        # kernel would read the source where the model reads zeros (the border); only the Jacobian is exact
        raise Uncomposable(f"{n.name}: padding inside the path")
    if isinstance(step, Conv):
        return _conv(first, step.weight, step.stride, step.padding, step.groups)
    if isinstance(step, Box):  # average pooling is a depthwise box convolution
        c = first.kernel.shape[0]
        box = first.kernel.new_full((c, 1, *step.kernel), 1.0 / (step.kernel[0] * step.kernel[1]))
        return _conv(first, box, step.stride, step.padding, groups=c)
    if isinstance(step, Scale):
        return _scale(first, step.factor)
    if isinstance(step, Sum):
        return _add(n, maps, step.negate_second)
    if isinstance(step, Concat):
        return _cat(n, maps)
    raise Uncomposable(n.name)


def _conv(m: LinearMap | None, weight, stride, padding, groups) -> LinearMap | None:
    if m is None:
        return None
    c_out, c_in_group = weight.shape[:2]
    weight = weight.to(m.kernel.dtype)
    if m.identity:  # the first conv after the source: its weight is the kernel
        kernel = _dense_groups(weight, groups) if groups > 1 else weight.clone()
        return LinearMap(kernel, tuple(stride), (-padding[0], -padding[1]))
    if groups == c_out == m.kernel.shape[0] and c_in_group == 1:  # depthwise: one transposed conv per channel
        c, c_src = m.kernel.shape[:2]
        kernel = F.conv_transpose2d(weight.reshape(1, c, *weight.shape[2:]), m.kernel, stride=m.stride, groups=c)
        kernel = kernel.reshape(c, c_src, *kernel.shape[2:])
    else:
        if groups > 1:
            weight = _dense_groups(weight, groups)
        if m.kernel.shape[2:] == (1, 1):  # a 1x1 map so far: the product is one matrix multiply
            kernel = torch.einsum("oiab,ic->ocab", weight, m.kernel[:, :, 0, 0])
            if m.stride != (1, 1):  # spread the taps by the stride
                kernel = F.conv_transpose2d(kernel.reshape(-1, 1, *kernel.shape[2:]),
                                            kernel.new_ones(1, 1, 1, 1), stride=m.stride)
                kernel = kernel.reshape(weight.shape[0], m.kernel.shape[1], *kernel.shape[2:])
        elif weight.shape[2:] == (1, 1):
            kernel = torch.einsum("oi,icxy->ocxy", weight[:, :, 0, 0], m.kernel)
        else:
            kernel = F.conv_transpose2d(weight, m.kernel, stride=m.stride)
    stride = (m.stride[0] * stride[0], m.stride[1] * stride[1])
    offset = (m.offset[0] - padding[0] * m.stride[0], m.offset[1] - padding[1] * m.stride[1])
    return LinearMap(kernel, stride, offset)


def _pointwise(m: LinearMap | None) -> bool:
    """A map that reads each source pixel alone (the source itself, BatchNorm, a 1x1 conv): padding after
    it is padding of the source."""
    return m is None or m.identity or (tuple(m.kernel.shape[2:]) == (1, 1) and tuple(m.offset) == (0, 0))


def _dense_groups(weight, groups):
    c_out, c_in_group, kh, kw = weight.shape
    dense = weight.new_zeros(c_out, c_in_group * groups, kh, kw)
    per_group = c_out // groups
    for g in range(groups):
        dense[g * per_group : (g + 1) * per_group, g * c_in_group : (g + 1) * c_in_group] = weight[
            g * per_group : (g + 1) * per_group
        ]
    return dense


def _scale(m: LinearMap, factor) -> LinearMap:
    """A constant factor: a number, or a tensor of one per channel (BatchNorm)."""
    if isinstance(factor, torch.Tensor):
        factor = factor.to(m.kernel.dtype)[:, None, None, None]
    return LinearMap(m.kernel * factor, m.stride, m.offset)


def _cat(n, maps) -> LinearMap | None:
    parts = n.args[0]
    live = [maps.get(p.name) for p in parts]
    if all(m is None for m in live):
        return None
    frame = _frame([m for m in live if m is not None])
    blocks = []
    for p, m in zip(parts, live):
        if m is None:
            c_src = next(x for x in live if x is not None).kernel.shape[1]
            blocks.append(frame[0].new_zeros(p.meta["shape"][1], c_src, *frame[0].shape[2:]))
        else:
            blocks.append(_place(m, frame))
    return LinearMap(torch.cat(blocks), frame[1], frame[2])


def _add(n, maps, negate_second: bool) -> LinearMap | None:
    operands = [maps.get(a.name) if isinstance(a, fx.Node) else None for a in n.args[:2]]
    live = [m for m in operands if m is not None]
    if not live:
        return None
    frame = _frame(live)
    total = None
    for i, m in enumerate(operands):
        if m is None:
            continue
        placed = _place(m, frame) * (-1 if negate_second and i == 1 else 1)
        total = placed if total is None else total + placed
    return LinearMap(total, frame[1], frame[2])


def _frame(maps: list[LinearMap]):
    """A common (zero kernel, stride, offset) that every map fits in; sums and concats need one."""
    stride = maps[0].stride
    if any(m.stride != stride for m in maps):
        raise Uncomposable("branches with different strides")
    low = [min(m.offset[d] for m in maps) for d in range(2)]
    high = [max(m.offset[d] + m.kernel.shape[2 + d] for m in maps) for d in range(2)]
    zero = maps[0].kernel.new_zeros(1, maps[0].kernel.shape[1], high[0] - low[0], high[1] - low[1])
    return zero, stride, tuple(low)


def _place(m: LinearMap, frame) -> torch.Tensor:
    zero, _, (oy, ox) = frame
    out = zero.new_zeros(m.kernel.shape[0], *zero.shape[1:])
    dy, dx = m.offset[0] - oy, m.offset[1] - ox
    out[:, :, dy : dy + m.kernel.shape[2], dx : dx + m.kernel.shape[3]] = m.kernel
    return out
