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
from torch import fx

from circuits.errors import UnsupportedOpError
from circuits.graph import ops
from circuits.graph.ir import concat_offset
from circuits.graph.ops import MAXPOOL, NONLINEAR, NotTranslationEquivariant, Zero
from circuits.graph.ops.base import as_pair, positive_value
from circuits.graph.ops.pooling import returns_pair

__all__ = [
    "NotTranslationEquivariant", "as_pair", "entry_pool", "make_path_function", "path_inputs", "path_nodes",
    "pooled_entry",
]  # fmt: skip


def path_nodes(graph, source_nodes: list[str], target_node: str, held=()) -> list[fx.Node]:
    """Nodes that depend on a source and feed the target, in topological order (sources excluded).

    ``held`` nodes are walls: a path does not run through them (their values come from elsewhere), so what
    a source reaches only by way of a held node is not on its path.
    """
    nodes = list(graph.gm.graph.nodes)
    target = graph.nodes[target_node]
    walls = set(source_nodes) | set(held)
    ancestors = {target.name}
    for n in reversed(nodes):  # stop at sources: what lies behind one is replaced by its value
        if n.name in ancestors and n.name not in walls:
            ancestors.update(a.name for a in n.all_input_nodes)
    reached = set(source_nodes)
    for n in nodes:
        if n.name not in reached and n.name not in walls and any(a.name in reached for a in n.all_input_nodes):
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
    held=(),
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
    held: nodes the path does not run through (:func:`path_nodes`); they read their ``context`` values.
    Each op is evaluated as its family says (``circuits.graph.ops``): max pooling, for instance, is read as
    average pooling of the same window (Distill's convention for weights), except on data (``context``
    without ``linearise``), where the path is the model's own: max pooling is real.
    """
    steps = path_nodes(graph, sources, target_node, held)
    modules = graph.modules
    if not any(s.name == target_node for s in steps) and target_node not in sources:
        raise UnsupportedOpError(f"node '{target_node}' does not depend on {sources}: there is no path")
    families = {n.name: ops.family(n, modules) for n in steps}
    _check_path(graph, steps, families, sources, target_node, linearise, context)
    on_data = context is not None and not linearise

    def run(*values):
        env: dict[str, object] = dict(zip(sources, values, strict=True))

        def value_of(a):
            if isinstance(a, fx.Node):
                if a.name in env:
                    return env[a.name]
                if a.op == "get_attr":
                    return positive_value(_fetch_attr(graph.gm, a.target)) if positive else _fetch_attr(graph.gm, a.target)
                if context is not None and a.name in context:
                    return context[a.name]
                return Zero(a)
            if isinstance(a, (list, tuple)):
                return type(a)(value_of(x) for x in a)
            if isinstance(a, dict):
                return {k: value_of(v) for k, v in a.items()}
            return a

        for n in steps:
            args, kwargs, family = value_of(n.args), value_of(n.kwargs), families[n.name]
            if valid:
                env[n.name] = family.evaluate_valid(n, args, kwargs, modules, linearise=linearise)
            else:
                env[n.name] = family.evaluate(n, args, kwargs, modules, linearise=linearise, positive=positive,
                                              on_data=on_data)  # fmt: skip
            if n.name == target_node:
                break
        return env[target_node]

    return run


def _check_path(graph, steps, families, sources, target_node, linearise, context) -> None:
    """Refuse, before any evaluation, a path that has no weights: a nonlinearity not linearised, or a gate,
    without data to evaluate it on."""
    if context is not None:
        return
    on_path = {n.name for n in steps} | set(sources)
    layer_of = {layer.node: layer.name for layer in graph.layers.values()}
    for n in steps:
        if n.name == target_node:
            break
        if families[n.name].kind == NONLINEAR and not linearise:
            raise UnsupportedOpError(f"the path passes the nonlinearity '{layer_of.get(n.name, n.name)}'")
        if families[n.name].gates(n, on_path):
            raise UnsupportedOpError(
                f"the path passes the multiplicative gate '{layer_of.get(n.name, n.name)}', which has no weights; "
                "trace from the gate's layer or after it, or use attribution on data"
            )


def path_inputs(graph, sources: list[str], target_node: str, held=()) -> set[str]:
    """Nodes off the path that the path reads: what ``context`` must hold to evaluate it on data."""
    steps = path_nodes(graph, sources, target_node, held)
    on_path = {n.name for n in steps} | set(sources)
    return {a.name for n in steps for a in n.all_input_nodes if a.name not in on_path and a.op != "get_attr"}


def _fetch_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def pooled_entry(graph, source: str, target: str) -> tuple[str, dict] | None:
    """The max pool that every path from layer ``source`` to ``target``'s pre-activation starts with.

    Returns ``(node name of the pooled map, pool description)`` or None. Faithful code applies the real
    max pool to the source and then the linear part, whose kernels are taken at the pooled map.
    """
    on_path = _on_path(graph, target)
    return _pool_after(graph, graph.layers[source].node, on_path)


def entry_pool(graph, source: str, target: str) -> tuple[str, list[dict], int] | None:
    """The max pools every path from ``source`` to ``target`` starts with, one after another (Inception's
    pool branch pools a pooled map again), also where the path first joins ``source`` to other layers in a
    channel concat (a per-channel pool commutes with the concat).

    Returns ``(node name of the pooled map, the pools in the order applied, the source's first channel in
    that map)``, or None.
    """
    on_path = _on_path(graph, target)
    node, offset = graph.layers[source].node, 0
    users = [u for u in graph.nodes[node].users if u.name in on_path]
    if len(users) == 1 and ops.family(users[0], graph.modules).concat_dim(users[0]) == 1:
        parts = [a.name for a in users[0].args[0] if isinstance(a, fx.Node)] if users[0].args else []
        if not _plain_concat(graph, users[0], parts, on_path):
            return None  # the pool then lies inside some path: it is read as average pooling, as anywhere
        offset = concat_offset(users[0], graph.nodes[node])
        node = users[0].name
    pools = []
    while (found := _pool_after(graph, node, on_path)) is not None:
        node, spec = found
        pools.append(spec)
    if not pools:
        return None
    return node, pools, offset


def _plain_concat(graph, cat, parts: list[str], on_path: set[str]) -> bool:
    """A concat whose every part is a different neuron layer that reaches the target through it alone: a
    pool after it then starts every path through it, and reads each part's channels and nothing else."""
    layer_nodes = {layer.node for layer in graph.layers.values()}
    return (len(set(parts)) == len(parts) == len(cat.args[0]) and all(p in layer_nodes for p in parts)
            and all([u.name for u in graph.nodes[p].users if u.name in on_path] == [cat.name] for p in parts))  # fmt: skip


def _on_path(graph, target: str) -> set[str]:
    t_layer = graph.layers[target]
    bounds = [graph.layers[x].node for x in t_layer.sources]
    return {n.name for n in path_nodes(graph, bounds, t_layer.preact)}


def _pool_after(graph, node: str, on_path: set[str]) -> tuple[str, dict] | None:
    """The max pool that is ``node``'s only user on the path: (node name of the pooled values, its description)."""
    users = [u for u in graph.nodes[node].users if u.name in on_path]
    if len(users) != 1:
        return None
    pool = users[0]
    family = ops.family(pool, graph.modules)
    spec = family.describe(pool, graph.modules) if family.kind == MAXPOOL else None
    if spec is None:
        return None
    if returns_pair(pool):  # aten's (values, indices): the entry is the values
        values = [u for u in pool.users if u.target is operator.getitem and u.args[1] == 0]
        if len(values) != 1:
            return None
        return values[0].name, spec
    return pool.name, spec
