"""Weight tracing: which neurons feed which, with what sign and spatial kernel.

    weights(model, source, target, expanded=False) -> Weights      direct or expanded kernels
    attribution(model, source, target, data)        -> Attribution  edge attributions on data

Both take ``(model, source, target)`` in that order, or by keyword; ``source=None`` in ``weights`` means
every direct source of ``target``, so ``weights(model, target="conv3")`` reads all its inputs.

``model`` is anything :func:`circuits.graph.build_graph` takes (a spec string, nn.Module, LoadedModel) or a
NeuronGraph you already built (reuse it: building traces the model).
"""

from __future__ import annotations

from circuits import arguments
from circuits.errors import UsageError
from circuits.graph import NeuronGraph, build_graph
from circuits.trace import cache
from circuits.trace.kernels import KernelSet, compute_kernels
from circuits.trace.result import Attribution, Edge, Weights


def weights(model, source: str | list[str] | None = None, target: str | None = None, *, expanded: bool = False,
            at_entry: bool = False, input_shape=None, use_cache: bool = True) -> Weights:  # fmt: skip
    """Kernels into layer ``target`` from ``source`` (None: all its direct sources).

    With ``expanded=True`` the source may be any earlier layer: nonlinearities between are read as the
    identity and max pooling as average pooling (Distill's expanded weights), and every path counts.
    With ``at_entry=True`` a source that is max-pooled first is traced from the pooled map (for faithful
    code: see KernelSet.entry).
    """
    if target is None:
        raise UsageError("weights(model, source, target) needs a target layer: pass target=LAYER "
                         "(and source=None for every direct source)")  # fmt: skip
    graph = build_graph(model, input_shape)
    t_layer = graph.layer(target)
    if source is None:
        sources = list(t_layer.sources)
    else:
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if not sources:
            raise UsageError("weights(model, source, target): source is an empty list; give a layer or None")
        for s in sources:
            graph.layer(s)
    key = {"target": target, "sources": sources, "expanded": expanded, "at_entry": at_entry}
    kernel_sets = cache.load(graph.weights_hash, **key) if use_cache else None
    if kernel_sets is None:
        kernel_sets = compute_kernels(graph, sources, target, expanded=expanded, at_entry=at_entry)
        if not kernel_sets and source is not None:
            raise UsageError(f"no path from '{sources[0]}' to '{target}': it does not feed that layer")
        if use_cache:
            cache.store(kernel_sets, graph.weights_hash, **key)
    return Weights(kernel_sets, t_layer.name, t_layer.channels)


def attribution(model, source: str, target: str, data, *, batch_size: int = 64, route: str = "auto",
                direct: bool = False) -> Attribution:  # fmt: skip
    """Edge attributions ``source -> target`` on images ``data`` (see circuits.trace.edges for ``route``).

    ``direct=True`` holds ``target``'s other direct sources at their values, so each edge is the neuron
    graph's direct edge (what ``extract --method attribution`` ranks); the default is the total effect of
    ``source``, through every path, and ``source`` may be any earlier layer.
    """
    from circuits.trace.edges import attribute

    batch_size = arguments.integer(batch_size, "batch_size", minimum=1)
    direct = arguments.flag(direct, "direct")
    return attribute(build_graph(model), source, target, data, batch_size=batch_size, route=route, direct=direct)


__all__ = ["Attribution", "Edge", "KernelSet", "NeuronGraph", "Weights", "attribution", "compute_kernels", "weights"]
