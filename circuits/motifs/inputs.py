"""The direct inputs of a target layer, as the union and inhibition detectors read them.

A target's inputs are the channels of all its direct source layers (concat parts and residual skips
included, docs/neuron-graph.md), in one *group* whose equivariance map under a transform is known from
:func:`circuits.motifs.families.group_map`. An input's **strength** is the signed sum of its direct
kernel. The probe-data check at the end asks what a target does when only one case of a pair is present.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from circuits.motifs.context import Context


@dataclass
class Inputs:
    """The direct inputs of ``target``: the source group's layers and ``strength[target_ch, source_ch]``."""

    target: str
    layers: list[str]
    neurons: list[str]
    strength: torch.Tensor
    bias: torch.Tensor | None
    kernel_sets: dict = field(default_factory=dict)  # source layer -> KernelSet (direct weights)

    def ranked(self, channel: int) -> list[int]:
        """Source channels by |strength|, strongest first (ties: lower channel first)."""
        row = self.strength[channel]
        return sorted(range(row.shape[0]), key=lambda c: (-abs(float(row[c])), c))

    def top_positive(self, channel: int, k: int) -> list[int]:
        """The ``k`` strongest positive inputs."""
        row = self.strength[channel]
        return [c for c in self.ranked(channel) if float(row[c]) > 0][:k]


def inputs(ctx: Context, target: str) -> Inputs | None:
    """The spatial direct sources of ``target`` as one group (``None`` if it reads only the input)."""
    key = ("inputs", target)
    if key in ctx.memo:
        return ctx.memo[key]
    info = ctx.graph.layer(target)
    layers = ctx.sources(target)
    shapes = {ctx.graph.layers[s].shape[1:] for s in layers}
    result = None
    if layers and len(shapes) == 1:
        weights = ctx.direct(target)
        parts, bias, sets = [], None, {}
        for name in layers:
            ks = next((k for k in weights.kernel_sets if k.source == name), None)
            if ks is None:
                parts.append(torch.zeros(info.channels, ctx.graph.layers[name].channels))
            else:
                parts.append(ks.kernels.flatten(2).sum(-1).float())
                bias = ks.bias if ks.bias is not None else bias
                sets[name] = ks
        strength = torch.cat(parts, dim=1)
        bias = None if bias is None else bias.float()
        result = Inputs(target, layers, ctx.neurons(layers), strength, bias, sets)
    ctx.memo[key] = result
    return result


def peaks(acts: torch.Tensor) -> torch.Tensor:
    """``[N, C]``: each neuron's strongest response per image (max over positions)."""
    return acts.flatten(2).amax(-1) if acts.dim() > 2 else acts


def case_responses(ctx: Context, feeds: Inputs, channel: int, cases: list[int], present: float = 0.5,
                   absent: float = 0.1, min_samples: int = 3) -> dict | None:  # fmt: skip
    """What ``feeds.target:channel`` does where exactly one case is in its receptive field, and where all are.

    A case's *presence* at a target position is the sum of its activation over the target's receptive
    field there (the direct kernel's window, read with the kernel set's own geometry). Target responses and
    presences are scaled by their 99th percentile over all images and positions. A position shows case
    ``k`` *alone* when its presence is at least ``present`` and every other case's at most ``absent``.
    Returns ``{"alone": [mean target response per case], "together": ..., "positions": [...counts]}``
    (None where fewer than ``min_samples`` positions qualify), or ``None`` without probe data.
    """
    if ctx.data is None:
        return None
    target = ctx.activations([feeds.target])[:, channel]
    starts = {}
    offset = 0
    for name in feeds.layers:
        starts[name] = offset
        offset += ctx.graph.layers[name].channels
    presence = []
    for c in cases:
        name = next(n for n in reversed(feeds.layers) if starts[n] <= c)
        ks = feeds.kernel_sets.get(name)
        if ks is None:
            return None
        source = ctx.activations([name])[:, c - starts[name] : c - starts[name] + 1]
        box = replace(ks, kernels=torch.ones(1, 1, *ks.kernels.shape[2:], dtype=source.dtype))
        presence.append(_scaled(box.apply(source).reshape(-1)))
    target = _scaled(target.reshape(-1))
    presence = torch.stack(presence, dim=1)
    if presence.shape[0] != target.shape[0]:
        return None
    alone, counts = [], []
    for k in range(len(cases)):
        others = torch.cat([presence[:, :k], presence[:, k + 1 :]], dim=1)
        mask = (presence[:, k] >= present) & (others <= absent).all(1)
        counts.append(int(mask.sum()))
        alone.append(float(target[mask].mean()) if mask.sum() >= min_samples else None)
    both = (presence >= present).all(1)
    together = float(target[both].mean()) if both.sum() >= min_samples else None
    return {"alone": alone, "together": together, "positions": counts, "positions_together": int(both.sum())}


def _scaled(x: torch.Tensor) -> torch.Tensor:
    """``x`` over the 99th percentile of its positive values (sparse features fire at few positions)."""
    positive = x[x > 0]
    if positive.numel() == 0:
        return torch.zeros_like(x)
    top = torch.quantile(positive.double()[: 2**24], 0.99).item()
    return (x / top).float() if top > 1e-12 else torch.zeros_like(x)
