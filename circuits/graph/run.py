"""Run the model on a batch and keep the layers asked for: the one home of activation capture.

    run(graph, x, layers=None, *, grad=False, device=None, batch_size=256, preact=False) -> {layer: tensor}

The model of the API is TransformerLens' ``run_with_cache(names_filter=, device=)``: activations keyed by the
names users type (the IR's layer names, as ``circuits layers`` prints them), plain tensors in a dict. The
forward runs on the graph's private eval-mode FX copy (:func:`circuits.graph.build_graph` deep-copies the
model), through an ``fx.Interpreter``: no hooks are registered on any module, only the ancestors of the
asked nodes are computed, and the forward stops after the last of them. Every captured value is cloned the
moment its node runs, so an in-place op later in the model (``ReLU(inplace=True)``) cannot overwrite it.
The copy's train/eval mode is set to eval for the run and restored in ``finally``; the caller's model is
never touched.

``device`` is explicit (never a module-level global): ``None`` runs where the graph lives (the CPU).
Another device gets its own copy of the graph's module, made once and kept with the graph.
"""

from __future__ import annotations

import contextlib
import copy
import weakref

import torch
from torch import fx

from circuits.errors import DataError, UsageError

# Run image batches in channels-last memory order (the values returned are contiguous either way): about
# 1.7x faster for conv nets on CPU, same values up to float rounding.
CHANNELS_LAST = True
_NCHW_ONLY: weakref.WeakSet = weakref.WeakSet()  # graphs whose channels-last run failed once
_ON_DEVICE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # graph -> {device: its module there}


def run(graph, x: torch.Tensor, layers=None, *, grad: bool = False, device=None, batch_size: int = 256,
        preact: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """Activations of ``layers`` on the batch ``x``, keyed by layer name.

    Parameters
    ----------
    graph : a :class:`~circuits.graph.NeuronGraph` (or anything :func:`~circuits.graph.build_graph` takes).
    x : ``N x C x H x W`` (the model's input shape), converted to the model's dtype.
    layers : layer names (a list, or one name), concat aliases included; ``None`` means every layer.
    grad : keep the autograd graph: the tensors are differentiable functions of ``x`` (give an ``x`` that
        requires grad) and stay on ``device``. Without it they are detached and come back on the CPU.
    device : where the forward runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``); ``None``:
        where the graph lives (the CPU). A CUDA device that torch does not see is a :class:`UsageError`.
    batch_size : images per forward pass; the results are concatenated (so GPU memory holds one batch).
    preact : the layers' pre-activations instead (layers without one, such as the input, are refused).

    Returns
    -------
    ``{layer: tensor}`` in the order asked, each ``N x C x ...`` and contiguous.

    Examples
    --------
    >>> acts = graph.run(images, ["conv2", "conv3"])          # doctest: +SKIP
    >>> acts["conv3"][:, 5].amax((1, 2))                       # doctest: +SKIP
    """
    from circuits.graph.ir import build_graph

    graph = build_graph(graph)
    names = _layer_names(graph, layers)
    nodes = {name: _node(graph, name, preact) for name in names}
    target = resolve_device(device)
    x = check_data(graph, x)
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for first in range(0, len(x), batch_size):
        values = node_values(graph, x[first : first + batch_size], set(nodes.values()), grad=grad, device=target)
        for name, node in nodes.items():
            chunks[name].append(values[node] if grad else values[node].cpu())
    return {name: parts[0] if len(parts) == 1 else torch.cat(parts) for name, parts in chunks.items()}


def _layer_names(graph, layers) -> list[str]:
    if layers is None:
        return list(graph.layers)
    if isinstance(layers, str):
        layers = [layers]
    return [graph.layer(name).name for name in dict.fromkeys(layers)]


def _node(graph, name: str, preact: bool) -> str:
    layer = graph.layer(name)
    if not preact:
        return layer.node
    if layer.preact is None:
        raise UsageError(f"layer '{name}' ({layer.kind}) has no pre-activation; ask for its activation instead")
    return layer.preact


INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def check_data(graph, data: torch.Tensor) -> torch.Tensor:
    """``data`` in the model's dtype, after checking it is a batch of the model's input shape."""
    if not isinstance(data, torch.Tensor):
        raise DataError(f"probe data must be a tensor N x {'x'.join(map(str, graph.input_shape))}, got {type(data).__name__}")
    if tuple(data.shape[1:]) != tuple(graph.input_shape):
        raise DataError(
            f"probe images have shape {tuple(data.shape[1:])} but the model takes {tuple(graph.input_shape)}; "
            "give data of the model's input shape"
        )
    if len(data) == 0:
        raise DataError("no probe images (an empty batch): give at least one image")
    if data.is_complex() or not (data.is_floating_point() or data.dtype in INTEGER_DTYPES):
        raise DataError(f"probe data is {str(data.dtype).removeprefix('torch.')}: give real-valued images "
                        "(float, or integers such as uint8 pixels)")  # fmt: skip
    data = data.to(graph.dtype)
    if not torch.isfinite(data).all():
        raise DataError("probe data holds NaN or infinite values (after conversion to the model's dtype): give "
                        "finite images")  # fmt: skip
    return data


def resolve_device(device) -> torch.device:
    """``device`` as a ``torch.device`` (``None``: the CPU), or a one-sentence :class:`UsageError` naming the fix."""
    if device is None:
        return torch.device("cpu")
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown device '{device}': use cpu, cuda or cuda:N") from None
    if found.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: torch sees no CUDA device (torch.cuda.is_available() is False); use --device cpu"
            )
        count = torch.cuda.device_count()
        if found.index is not None and found.index >= count:
            raise UsageError(f"--device {device}: torch sees {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif found.type != "cpu" and not _available(found):
        raise UsageError(f"--device {device}: torch cannot run on '{found.type}' here; use --device cpu")
    return found


def _available(device: torch.device) -> bool:
    backend = getattr(torch.backends, device.type, None) or getattr(torch, device.type, None)
    return bool(backend is not None and getattr(backend, "is_available", lambda: False)())


def module_on(graph, device: torch.device | None) -> fx.GraphModule:
    """The graph's FX module on ``device``: the graph's own on its device, else a copy made once and kept."""
    gm = graph.gm
    home = next((t.device for t in [*gm.parameters(), *gm.buffers()]), torch.device("cpu"))
    if device is None or _same(torch.device(device), home):
        return gm
    copies = _ON_DEVICE.setdefault(graph, {})
    key = str(device)
    if key not in copies:
        copies[key] = copy.deepcopy(gm).to(device)
    return copies[key]


def graph_on(graph, device: torch.device | None):
    """``graph`` as seen from ``device``: the same layers over the module copy :func:`module_on` keeps there,
    for code that walks the graph's own nodes and modules (a path function) rather than calling run()."""
    gm = module_on(graph, device)
    if gm is graph.gm:
        return graph
    view = copy.copy(graph)
    view.gm, view.nodes, view.modules = gm, {n.name: n for n in gm.graph.nodes}, dict(gm.named_modules())
    return view


def _same(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """Every submodule in eval mode for the block; each one's own mode restored in ``finally``."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def node_values(graph, x: torch.Tensor, keep: set[str] | None = None, stop_at: str | None = None, *,
                grad: bool = False, device=None) -> dict[str, torch.Tensor]:  # fmt: skip
    """FX node outputs on ``x`` (node names, not layer names: :func:`run` is the layer-level API), cloned
    so in-place ops cannot overwrite them.

    keep: the node names wanted. Only their ancestors are run, and the forward stops after the last of
        them: nothing past the deepest kept node, and no branch that feeds none of them, is computed.
        Without ``keep`` every node's tensor output is returned.
    stop_at: (without ``keep``) run no node after this one.
    grad: keep the autograd graph (values are differentiable functions of ``x``); else detached.
    device: where the forward runs (``None``: where the graph lives); the values stay there.
    """
    values: dict[str, object] = {}
    needed: set[str] | None = None
    order = {n.name: i for i, n in enumerate(graph.gm.graph.nodes)}
    if keep is not None:
        keep = set(keep)
        unknown = sorted(keep - order.keys())
        if unknown:
            raise KeyError(f"no node named {', '.join(unknown)} in the model's graph")
        needed, stack = set(), list(keep)
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(a.name for a in graph.nodes[name].all_input_nodes)
        stop_at = max(keep, key=order.__getitem__) if keep else None
    elif stop_at is not None and stop_at not in order:
        raise KeyError(f"no node named {stop_at} in the model's graph")
    gm = module_on(graph, device)
    if device is not None:
        x = x.to(device)

    def _kept(result):  # a contiguous copy: in-place ops cannot overwrite it, views of it work
        result = result if grad else result.detach()
        return result.clone(memory_format=torch.contiguous_format)

    class _Keeper(fx.Interpreter):
        # Nodes after ``stop_at`` are passed over, not stopped with an exception: torch formats the whole
        # module into the message of any exception raised in a node (seconds on a large model).
        done = False

        def run_node(self, n):
            if self.done or (needed is not None and n.name not in needed and n.op != "placeholder"):
                return None  # past the last kept node, or feeds none: skipped (its users are skipped too)
            result = super().run_node(n)
            if keep is None:
                if isinstance(result, torch.Tensor):
                    values[n.name] = _kept(result)
            elif n.name in keep:
                values[n.name] = _kept(result) if isinstance(result, torch.Tensor) else result
            self.done = n.name == stop_at
            return result

    def forward(inp):
        values.clear()
        _Keeper(gm).run(inp)

    with torch.set_grad_enabled(grad), eval_mode(gm):
        if x.dim() == 4 and CHANNELS_LAST and graph not in _NCHW_ONLY:
            try:  # images in channels-last order: the CPU convolutions run much faster
                forward(x.contiguous(memory_format=torch.channels_last))
                return values  # type: ignore[return-value]
            except torch.OutOfMemoryError:
                raise  # not a layout problem: retrying would only hide it
            except RuntimeError:  # e.g. a .view() that needs the NCHW layout: run as given from now on
                _NCHW_ONLY.add(graph)
        forward(x)
    return values  # type: ignore[return-value]


__all__ = ["check_data", "eval_mode", "graph_on", "node_values", "resolve_device", "run"]
