"""Run the model on data and keep what the tools need: node values, layer activations.

The capture itself lives in :mod:`circuits.graph.run` (one home); these names are kept for the trace code
and for notebooks that import them from here.
"""

from __future__ import annotations

import torch

from circuits.graph.run import check_data, node_values, run

__all__ = ["check_data", "layer_activations", "node_values"]


def layer_activations(graph, data: torch.Tensor, layers: list[str], batch_size: int = 256,
                      device=None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Activations of the named layers on ``data`` (concat aliases included), batched, on the CPU:
    :func:`circuits.graph.run.run` with ``grad=False``."""
    return run(graph, data, layers, batch_size=batch_size, device=device)
