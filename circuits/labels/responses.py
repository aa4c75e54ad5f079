"""One pass over the data for many layers: each neuron's score per image, and its map overlaps with masks.

A neuron's score on an image is its strongest pre-activation anywhere in the image (the pre-activation: after
a ReLU most images tie at zero and ranks would be arbitrary). Maps are thresholded for IoU at each channel's
top ``QUANTILE`` of positions, estimated on the first ``THRESHOLD_IMAGES`` images.
"""

from __future__ import annotations

import numpy as np
import torch

from circuits.labels.selectivity import OverlapCounts, map_thresholds

QUANTILE = 0.005  # Network Dissection's top 0.5% of activations
THRESHOLD_IMAGES = 512


def target_layers(graph, layers=None) -> list[str]:
    """``layers`` (a name or a list) checked against the graph, or every layer with weights into it."""
    if layers is None:
        return [layer.name for layer in graph.targets()]
    if isinstance(layers, str):
        layers = [layers]
    return [graph.layer(name).name for name in layers]


def responses(graph, images: torch.Tensor, layers: list[str], masks: np.ndarray | None = None,
              batch_size: int = 256, device=None, progress=None):  # fmt: skip
    """``(scores, overlaps)``: ``scores[layer]`` is N x C numpy; ``overlaps[layer]`` an
    :class:`OverlapCounts` for spatial layers when ``masks`` is given (else absent)."""
    preact = {name: graph.layer(name).preact is not None for name in layers}
    overlaps: dict[str, OverlapCounts] = {}
    if masks is not None:  # one pass over the first images sets every spatial layer's threshold
        sample = _run(graph, images[:THRESHOLD_IMAGES], layers, preact, device)
        overlaps = {name: OverlapCounts(map_thresholds(act.numpy(), QUANTILE))
                    for name, act in sample.items() if act.dim() == 4}  # fmt: skip
    scores = {name: [] for name in layers}
    for first in range(0, len(images), batch_size):
        batch = images[first : first + batch_size]
        for name, act in _run(graph, batch, layers, preact, device).items():
            flat = act.flatten(2) if act.dim() > 2 else act[..., None]
            scores[name].append(flat.amax(dim=2).numpy())
            if name in overlaps:
                overlaps[name].add(act, masks[first : first + len(batch)])
        if progress is not None:
            progress(len(batch))
    return {name: np.concatenate(parts) for name, parts in scores.items()}, overlaps


def _run(graph, batch, layers, preact, device) -> dict[str, torch.Tensor]:
    out = {}
    with_pre = [n for n in layers if preact[n]]
    without = [n for n in layers if not preact[n]]
    if with_pre:
        out.update(graph.run(batch, with_pre, device=device, preact=True, batch_size=len(batch)))
    if without:
        out.update(graph.run(batch, without, device=device, batch_size=len(batch)))
    return {name: out[name].detach().float().cpu() for name in layers}
