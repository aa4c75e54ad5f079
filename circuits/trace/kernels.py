"""The Jacobian engine: weights between neuron layers as spatial kernels, all channel pairs at once.

A direct weight is the Jacobian of a target's pre-activation at one output position with respect to a
source layer, cropped to the receptive field (docs/neuron-graph.md). Expanded weights are the same Jacobian
through the *linearised* path (nonlinearities replaced by the identity). The path is linear, so one
batched backward pass over all target channels gives every kernel exactly: no per-neuron autograd loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from circuits.errors import UsageError
from circuits.graph.paths import NotTranslationEquivariant, make_path_function, path_nodes, pooled_entry
from circuits.trace.compose import NO_PATH, compose

CHUNK_ELEMENTS = 2**25  # elements per batched backward (~128 MB of float32): bounds memory on big layers


@dataclass
class KernelSet:
    """Kernels from one source layer into one target layer's pre-activation.

    kernels: [target_channels, source_channels, *window] — window is (kh, kw) for a spatial source, the
        whole (H, W) map for a dense target reading a spatial source, and (1, 1) for a dense source.
    origin: source coordinates of ``kernels[..., 0, 0]`` when the target sits at ``position``.
    stride: source pixels per target pixel, measured (None where the map is too small to tell).
    bias: the pre-activation at ``position`` with every source at zero (direct weights only).
    clipped: the receptive field reaches past the source map's border (kernels are cut there).
    """

    source: str
    target: str
    kernels: torch.Tensor
    origin: tuple[int, ...]
    position: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    bias: torch.Tensor | None
    clipped: bool
    expanded: bool
    target_spatial: tuple[int, ...] = ()
    entry: dict | None = None  # the max pool applied to the source first (at_entry=True), else None

    @property
    def strength(self) -> torch.Tensor:
        """Signed sum of each kernel: the response to a spatially constant input. [target, source]"""
        return self.kernels.flatten(2).sum(-1)

    @property
    def magnitude(self) -> torch.Tensor:
        """L2 norm of each kernel. [target, source]"""
        return self.kernels.flatten(2).norm(dim=-1)

    def apply(self, source: torch.Tensor, out_size: tuple[int, ...] | None = None) -> torch.Tensor:
        """Convolve source activations [N, C_S, H, W] with the kernels: this layer pair's contribution,
        on the target's own map size unless ``out_size`` says otherwise.

        Exact wherever the real path is a zero-padded strided convolution (conv, BatchNorm, padding,
        concat, add); border pixels differ where the path pools with padding.
        """
        if self.position is None:  # dense target: a plain matrix product over the whole source map
            return source.flatten(1) @ self.kernels.flatten(1).T
        if source.dim() != 4 or self.stride is None:
            raise UsageError(f"cannot apply kernels {self.source} -> {self.target}: need a 2-D conv path")
        (py, px), (y0, x0), (sy, sx) = self.position, self.origin, self.stride
        kh, kw = self.kernels.shape[-2:]
        top, left = py * sy - y0, px * sx - x0
        out_h, out_w = out_size or self.target_spatial or (None, None)
        h, w = source.shape[-2:]
        out_h = out_h or (h + top - kh) // sy + 1
        out_w = out_w or (w + left - kw) // sx + 1
        bottom = max(0, (out_h - 1) * sy + kh - top - h)
        right = max(0, (out_w - 1) * sx + kw - left - w)
        padded = F.pad(source, (max(left, 0), right, max(top, 0), bottom))
        padded = padded[..., max(-top, 0) :, max(-left, 0) :]
        return F.conv2d(padded, self.kernels.to(source.dtype), stride=(sy, sx))[..., :out_h, :out_w]


def compute_kernels(
    graph, sources: list[str], target: str, *, expanded: bool = False, at_entry: bool = False
) -> list[KernelSet]:
    """Kernels from each layer in ``sources`` into ``target``'s pre-activation, in one batched pass.

    With ``expanded=False`` the sources must be ``target``'s direct sources (a subset is fine: the others
    are held at zero). With ``expanded=True`` each source may lie any number of layers back.
    With ``at_entry=True`` a source whose every path starts with a max pool is traced from the pooled map
    instead (``KernelSet.entry`` describes the pool): the kernels faithful code applies after the real pool.
    """
    t_layer = graph.layer(target)
    if t_layer.preact is None:
        raise UsageError(
            f"layer '{target}' is a {t_layer.kind} layer with no weights into it; pick one of its sources "
            f"({', '.join(t_layer.sources) or 'none'}) or a later layer"
        )
    requested = list(sources)
    indirect = [s for s in requested if s not in t_layer.sources]
    if indirect and not expanded:
        raise UsageError(
            f"'{indirect[0]}' is not a direct source of '{target}' (its direct sources: "
            f"{', '.join(t_layer.sources) or 'none'}); use expanded weights to reach further back"
        )
    if not expanded:  # every direct source bounds the path, even those not asked for (held at zero)
        sources = requested + [s for s in t_layer.sources if s not in requested]
    s_layers = [_Source.of(graph, s, target if at_entry and not expanded else None) for s in sources]
    s_nodes = [s.node for s in s_layers]
    spatial = tuple(t_layer.shape[1:])
    position = tuple(d // 2 for d in spatial) if spatial else None

    fn = make_path_function(graph, s_nodes, t_layer.preact, linearise=expanded)
    bias = _bias(fn, s_layers, position, graph.dtype) if not expanded else None
    support_fn = make_path_function(graph, s_nodes, t_layer.preact, linearise=True, positive=True)
    windows = [_window(support_fn, s_layers, position, graph.dtype)]
    composed = None  # a receptive field that reaches the border is cut there, which contraction cannot
    if not any(box is not None and box[2] for box in windows[0]):  # express: skip its wasted gigabytes
        composed = _composed(graph, s_layers, s_nodes, t_layer, position, expanded)
    if composed is not None:
        return [
            KernelSet(source=s.name, target=t_layer.name, kernels=kernel, origin=origin, position=position,
                      stride=stride, bias=bias, clipped=clipped, expanded=expanded, target_spatial=spatial,
                      entry=s.entry)  # fmt: skip
            for s, (kernel, origin, stride, clipped) in zip(s_layers, composed)
            if kernel is not None and s.name in requested
        ]

    if position and all(p > 0 for p in position):
        before = tuple(p - 1 for p in position)
        windows.append(_window(support_fn, s_layers, before, graph.dtype))

    kernels = _receptive_field_kernels(graph, s_layers, s_nodes, t_layer, windows[0], expanded, fn, position)
    if kernels is None:
        kernels = _batched_jacobian(
            fn, _shapes(s_layers), range(t_layer.channels), position, windows[0], dtype=graph.dtype,
            largest=_largest_map(graph, s_nodes, t_layer.preact),
        )
    results = []
    for i, s in enumerate(s_layers):
        box = windows[0][i]
        if box is None or s.name not in requested:
            continue
        start, stop, clipped = box
        stride = None
        if len(windows) > 1 and windows[1][i] is not None:
            prev_start, prev_stop, _ = windows[1][i]
            same_size = all(b - a == d - c for a, b, c, d in zip(start, stop, prev_start, prev_stop))
            if same_size and len(start) == 2:  # a window cut by the border would have shrunk
                stride = tuple(a - b for a, b in zip(start, prev_start))
                if any(v <= 0 for v in stride):
                    stride = None
        results.append(
            KernelSet(
                source=s.name, target=t_layer.name, kernels=kernels[i], origin=tuple(start), position=position,
                stride=stride, bias=bias, clipped=clipped, expanded=expanded, target_spatial=spatial,
                entry=s.entry,
            )
        )  # fmt: skip
    return results


def receptive_field(graph, layer: str, position=None):
    """The input box that ``layer``'s neuron at ``position`` (default: the map's centre) can see:
    ``(start, stop, clipped)`` in input pixels, from one backward pass of the positive linearised path (no
    kernels are made). Pictures are jittered and dataset examples cropped by it."""
    info = graph.layer(layer)
    source = _Source.of(graph, graph.input_layer, None)
    if info.kind == "input":
        spatial = tuple(source.shape[1:])
        return (0,) * len(spatial), spatial, False
    node = info.preact or info.node
    spatial = tuple(info.shape[1:])
    position = tuple(position) if position is not None else tuple(d // 2 for d in spatial)
    support_fn = make_path_function(graph, [source.node], node, linearise=True, positive=True)
    (box,) = _window(support_fn, [source], position or None, graph.dtype)
    return box


def _window(support_fn, s_layers, position, dtype):
    """Per source: (start, stop, clipped) of the receptive field of ``position``, or None (no path)."""
    xs = [torch.ones(1, *s.shape, dtype=dtype, requires_grad=True) for s in s_layers]
    out = support_fn(*xs)
    picked = out[0][(slice(None), *position)] if position else out[0]
    grads = torch.autograd.grad(picked.sum(), xs, allow_unused=True)
    boxes = []
    for s, g in zip(s_layers, grads):
        if g is None or not (g != 0).any():
            boxes.append(None)
            continue
        spatial = s.shape[1:]
        if not spatial or not position:  # dense source, or dense target: the whole map
            boxes.append(((0,) * len(spatial), tuple(spatial), False))
            continue
        mask = (g[0] != 0).any(0)
        start, stop, clipped = [], [], False
        for dim in range(mask.dim()):
            other = tuple(d for d in range(mask.dim()) if d != dim)
            hits = mask.any(other) if other else mask
            idx = hits.nonzero().flatten()
            lo, hi = int(idx.min()), int(idx.max()) + 1
            clipped |= lo == 0 or hi == spatial[dim]  # touching the border: the field may extend past it
            start.append(lo)
            stop.append(hi)
        boxes.append((tuple(start), tuple(stop), clipped))
    return boxes


def _bias(fn, s_layers, position, dtype) -> torch.Tensor:
    """The pre-activation at ``position`` with every source at zero."""
    with torch.no_grad():
        zero_out = fn(*[torch.zeros(1, *s.shape, dtype=dtype) for s in s_layers])
    bias = zero_out[0][(slice(None), *position)] if position else zero_out[0]
    return bias.detach().clone()


def _composed(graph, s_layers, s_nodes, t_layer, position, expanded):
    """Kernels by direct contraction (circuits.trace.compose) when every source's path is a conv path and
    its receptive field lies inside the map; None to fall back to the Jacobian engine."""
    if position is None or len(position) != 2 or any(len(s.shape) != 3 for s in s_layers):
        return None
    results = []
    for s in s_layers:
        linear_map = compose(graph, s_nodes, s.node, t_layer.preact, linearise=expanded)
        if linear_map is None:
            return None
        if linear_map is NO_PATH:
            results.append((None, None, None, None))
            continue
        start = [p * st + off for p, st, off in zip(position, linear_map.stride, linear_map.offset)]
        extent = linear_map.kernel.shape[2:]
        if any(a < 0 or a + e > n for a, e, n in zip(start, extent, s.shape[1:])):
            return None  # cut by the border: the Jacobian engine reproduces the crop exactly
        clipped = any(a == 0 or a + e == n for a, e, n in zip(start, extent, s.shape[1:]))
        results.append((linear_map.kernel.detach(), tuple(start), tuple(linear_map.stride), clipped))
    return results


@dataclass
class _Source:
    """A source layer as the Jacobian sees it: its own map, or the max-pooled map every path starts with."""

    name: str
    node: str
    shape: tuple[int, ...]
    entry: dict | None = None

    @property
    def channels(self) -> int:
        return self.shape[0]

    @classmethod
    def of(cls, graph, name: str, pooled_for: str | None) -> _Source:
        layer = graph.layer(name)
        found = pooled_entry(graph, name, pooled_for) if pooled_for else None
        if found is None:
            return cls(layer.name, layer.node, tuple(layer.shape))
        node, spec = found
        return cls(layer.name, node, tuple(graph.nodes[node].meta["shape"][1:]), spec)


def _shapes(s_layers) -> list[tuple[int, ...]]:
    return [tuple(s.shape) for s in s_layers]


def _receptive_field_kernels(graph, s_layers, s_nodes, t_layer, window, expanded, fn, position):
    """The fast path: evaluate only on each source's receptive-field crop, with unpadded convolutions.

    Translation-equivariant paths (conv, BN, pooling, concat, add) then produce the target at exactly one
    position, and the backward pass costs about as much as contracting the kernels directly. The result is
    checked against the full-map Jacobian on two target channels; on any doubt the caller falls back.
    """
    if position is None or len(position) != 2 or any(box is None or box[2] for box in window):
        return None
    valid_fn = make_path_function(graph, s_nodes, t_layer.preact, linearise=expanded, valid=True)
    crops = [(s.channels, *(b - a for a, b in zip(box[0], box[1]))) for s, box in zip(s_layers, window)]
    full_boxes = [((0, 0), crop[1:], False) for crop in crops]
    try:
        kernels = _batched_jacobian(
            valid_fn, crops, range(t_layer.channels), (0, 0), full_boxes, expect=(1, 1), dtype=graph.dtype
        )
    except (NotTranslationEquivariant, RuntimeError):
        return None
    check = sorted({0, t_layer.channels - 1})
    reference = _batched_jacobian(fn, _shapes(s_layers), check, position, window, dtype=graph.dtype)
    for fast, slow in zip(kernels, reference):
        scale = float(slow.abs().max()) or 1.0
        if not torch.allclose(fast[check], slow, rtol=1e-4, atol=1e-5 * scale):
            return None
    return kernels


def _largest_map(graph, s_nodes, target_node) -> int:
    """Elements of the largest map on the path: a batched backward holds a few of them per row."""
    shapes = [n.meta.get("shape") for n in path_nodes(graph, s_nodes, target_node)]
    sizes = [_numel(shape[1:]) for shape in shapes if isinstance(shape, tuple | list | torch.Size)]
    return max(sizes, default=0)


def _batched_jacobian(fn, shapes, rows, position, window, expect=None, dtype=torch.float32, largest=0):
    """Rows of the Jacobian of ``fn`` at ``position`` for the target channels ``rows``.

    One forward pass at batch 1 (the map is linear, so the point does not matter), then the backward pass
    vmapped over one-hot cotangents (``is_grads_batched``), in chunks that bound memory: each row holds
    its gradients of the sources and of the path's maps, the largest of which (``largest`` elements, on a
    224-pixel MobileNetV2 an early 96 x 112 x 112 map) a few times over.
    """
    rows = list(rows)
    xs = [torch.zeros(1, *shape, dtype=dtype, requires_grad=True) for shape in shapes]
    out = fn(*xs)
    if expect is not None and tuple(out.shape[2:]) != expect:
        raise NotTranslationEquivariant(f"output {tuple(out.shape)}")
    per_row = sum(_numel(shape) for shape in shapes) + _numel(out.shape[1:]) + 4 * largest
    chunk = max(1, min(len(rows), CHUNK_ELEMENTS // max(per_row, 1)))
    out_kernels = [None] * len(shapes)  # filled chunk by chunk: concatenating at the end would double the peak
    for first in range(0, len(rows), chunk):
        part = torch.tensor(rows[first : first + chunk])
        index = torch.arange(len(part))
        cotangents = out.new_zeros(len(part), *out.shape)
        at = [torch.full_like(index, p) for p in position] if position else []
        cotangents[(index, torch.zeros_like(index), part, *at)] = 1.0
        grads = torch.autograd.grad(out, xs, cotangents, allow_unused=True, retain_graph=True, is_grads_batched=True)
        for i, (shape, g, box) in enumerate(zip(shapes, grads, window)):
            if box is None:
                continue
            g = out.new_zeros(len(part), 1, *shape) if g is None else g
            g = g[:, 0]
            if len(shape) == 1:  # dense source: 1x1 kernels
                kernel = g.reshape(len(part), shape[0], 1, 1)
            else:
                start, stop, _ = box
                kernel = g[(slice(None), slice(None), *[slice(a, b) for a, b in zip(start, stop)])]
            if out_kernels[i] is None:
                out_kernels[i] = kernel.new_empty(len(rows), *kernel.shape[1:])
            out_kernels[i][first : first + len(part)] = kernel.detach()
    return out_kernels


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
