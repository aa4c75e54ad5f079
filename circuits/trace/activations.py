"""Run the model on data and keep what the tools need: node values, layer activations."""

from __future__ import annotations

import torch
from torch import fx

from circuits.errors import DataError


def check_data(graph, data: torch.Tensor) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise DataError(f"probe data must be a tensor N x {'x'.join(map(str, graph.input_shape))}, got {type(data).__name__}")
    if tuple(data.shape[1:]) != tuple(graph.input_shape):
        raise DataError(
            f"probe images have shape {tuple(data.shape[1:])} but the model takes {tuple(graph.input_shape)}; "
            "give data of the model's input shape"
        )
    return data.to(graph.dtype)


def node_values(graph, x: torch.Tensor, keep: set[str] | None = None) -> dict[str, torch.Tensor]:
    """Every node's output on ``x`` (or those in ``keep``), cloned so in-place ops cannot overwrite them."""
    values: dict[str, torch.Tensor] = {}

    class _Keeper(fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if isinstance(result, torch.Tensor) and (keep is None or n.name in keep):
                values[n.name] = result.detach().clone()
            return result

    with torch.no_grad():
        _Keeper(graph.gm).run(x)
    return values


def layer_activations(graph, data: torch.Tensor, layers: list[str], batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Activations of the named layers on ``data`` (concat aliases included), batched."""
    data = check_data(graph, data)
    nodes = {name: graph.layer(name).node for name in layers}
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for first in range(0, len(data), batch_size):
        values = node_values(graph, data[first : first + batch_size], set(nodes.values()))
        for name, node in nodes.items():
            chunks[name].append(values[node])
    return {name: torch.cat(parts) for name, parts in chunks.items()}
