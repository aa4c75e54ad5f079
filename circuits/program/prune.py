"""Which inputs each neuron of the program keeps, and what stands in for the ones it drops.

A neuron keeps its ``top_k`` inputs whose dropping would cost most on probe images (``rank="data"``: what
is dropped is replaced by its mean, so what varies least costs least; left out as zero, what is smallest
on average costs least), or its ``top_k`` strongest (by
|signed strength|, the sum of the kernel, ties to the larger kernel: how ``circuits extract`` ranks them),
or the fewest strongest that carry ``keep_strength`` of its total |strength|, or all of them. An input whose kernel is zero (a depthwise conv's other channels) is
no connection and never counts. A dropped input is zero (``dropped="zero"``) or replaced by its mean
contribution on probe images (``"mean"``, the default where there are images): the term it would have
added, averaged over the images, per position, computed on the model's own activations.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from circuits import arguments
from circuits.errors import UsageError

DROPPED = ("mean", "zero")
RANKS = ("data", "weight")
NEGLIGIBLE = 1e-4  # ranked by data, an input whose contribution carries less of the neuron's variance is dropped


def kept_inputs(layer_terms, top_k: int | None = None, keep_strength: float | None = None,
                spread: list[np.ndarray] | None = None, mean_filled: bool = True) -> list[np.ndarray]:  # fmt: skip
    """Per term of the layer, a boolean mask [C_target, C_source]: the inputs each neuron keeps.

    spread: :func:`contribution_spread` of the layer; the inputs whose dropping costs most on the data
    are kept first (ties to the stronger); without it, the strongest first, ties to the larger kernel.
    mean_filled: dropped inputs get their mean, so one that barely varies is not kept even within top_k
    (left out as zero instead, every input within top_k is kept)."""
    if not layer_terms.terms:
        return []
    strength = np.concatenate([t.strength for t in layer_terms.terms], axis=1)
    magnitude = np.concatenate([t.magnitude for t in layer_terms.terms], axis=1)
    live = magnitude > 0
    if spread is not None:
        varies = np.concatenate(spread, axis=1)
        order = np.lexsort((-np.abs(strength), -varies), axis=1)
        if mean_filled:  # what barely varies, its mean stands in for
            live &= varies > NEGLIGIBLE * varies.sum(1, keepdims=True)
    else:
        order = np.lexsort((-magnitude, -np.abs(strength)), axis=1)  # strongest first, ties to the larger kernel
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None].repeat(len(order), 0), axis=1)
    keep = live.copy()
    if top_k is not None:
        live_rank = np.cumsum(np.take_along_axis(live, order, 1), axis=1) - 1  # rank among live inputs
        keep &= np.take_along_axis(live_rank, rank, 1) < top_k
    elif keep_strength is not None and keep_strength < 1:
        size = np.abs(np.take_along_axis(strength * live, order, 1))
        total = size.sum(1, keepdims=True)
        before = np.cumsum(size, axis=1) - size  # strength carried by the stronger inputs
        enough = before < keep_strength * total - 1e-12 * total  # keep until the share is reached
        keep &= np.take_along_axis(enough, rank, 1)
    splits = np.cumsum([t.kernels.shape[1] for t in layer_terms.terms])[:-1]
    return np.split(keep, splits, axis=1)


def check_pruning(top_k, keep_strength) -> tuple[int | None, float | None]:
    """``--top-k`` and ``--keep-strength`` checked: at most one, a positive count or a share in (0, 1]."""
    if top_k is not None and keep_strength is not None:
        raise UsageError("give --top-k or --keep-strength, not both: each says on its own how much a neuron keeps")
    if top_k is not None:
        top_k = arguments.integer(top_k, "--top-k", minimum=1)
    if keep_strength is not None:
        keep_strength = arguments.number(keep_strength, "--keep-strength")
        if not 0 < keep_strength <= 1:
            raise UsageError(f"--keep-strength is a share of each neuron's input strength, in (0, 1]; got {keep_strength}")
    return top_k, keep_strength


def dropped_means(graph, network, kept, data: torch.Tensor, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per layer with dropped inputs, [C, *map]: the mean over ``data`` of what its dropped inputs add."""
    from circuits.graph.run import check_data, node_values

    data = check_data(graph, data)
    wanted = [(lt, masks) for lt, masks in zip(network, kept) if any((~m).any() for m in masks)]
    sums = {lt.layer: np.zeros(lt.shape) for lt, _ in wanted}
    starts = {t.start for lt, _ in wanted for t in lt.terms}
    for first in range(0, len(data) if wanted else 0, batch_size):
        values = node_values(graph, data[first : first + batch_size], starts)
        for lt, masks in wanted:
            for term, mask in zip(lt.terms, masks):
                if not mask.all():
                    x = values[term.start][:, term.offset : term.offset + term.kernels.shape[1]].to(torch.float64)
                    sums[lt.layer] += apply_term(term, x, lt.shape, ~mask).sum(0).numpy()
    return {name: total / len(data) for name, total in sums.items()}


def apply_term(term, x: torch.Tensor, shape, mask=None) -> torch.Tensor:
    """The term on source values ``x`` [N, C_source, ...] (already pooled), only the inputs in ``mask``
    [C_target, C_source]: [N, *shape]. The torch twin of the emitted ``_conv`` / ``_linear``."""
    kernels = torch.from_numpy(term.kernels)
    if mask is not None:
        kernels = kernels * torch.from_numpy(mask).reshape(*mask.shape, *[1] * (kernels.dim() - 2)).to(kernels.dtype)
    if term.kind == "linear":
        source_dims = x.dim() - 2
        flat = kernels.reshape(kernels.shape[0], -1, *kernels.shape[2 + source_dims :])
        out = torch.tensordot(x.reshape(len(x), -1), flat.transpose(0, 1), dims=1)
        return out.reshape(len(x), *shape)
    return _conv_term(term, x, shape, kernels)


def contribution_spread(graph, network, data: torch.Tensor, dropped: str = "mean",
                        batch_size: int = 32) -> list[list[np.ndarray]]:  # fmt: skip
    """Per layer, per term, [C_target, C_source]: what dropping each input costs in squared error on
    ``data``, summed over positions: its contribution's variance over the images when a dropped input is
    replaced by its mean (``dropped="mean"``), its mean square when it is left out (``"zero"``). The
    inputs to keep are those it is largest for.

    A contribution is linear in its source, so its mean over the images is the kernel applied to the
    source's mean map: one pass takes the means, a second the mean squares, and nothing per position is
    kept. Only connected pairs are computed (a depthwise layer's other channels cost nothing), a few at a
    time (:data:`CHUNK_BYTES`)."""
    from circuits.graph.run import check_data, node_values

    data = check_data(graph, data)
    starts = {t.start for lt in network for t in lt.terms}
    pairs = [[np.nonzero(t.magnitude > 0) for t in lt.terms] for lt in network]
    sums: dict[str, torch.Tensor] = {}
    squares = [[0.0 for _ in lt.terms] for lt in network]
    for first in range(0, len(data), batch_size):
        values = node_values(graph, data[first : first + batch_size], starts)
        for name in starts:
            sums[name] = sums.get(name, 0.0) + values[name].to(torch.float64).sum(0)
        for i, lt in enumerate(network):
            for j, term in enumerate(lt.terms):
                squares[i][j] = squares[i][j] + _square_sums(term, _read(term, values[term.start]), lt.shape, pairs[i][j])
    n = len(data)
    out = []
    for i, lt in enumerate(network):
        row = []
        for j, term in enumerate(lt.terms):
            cost = np.zeros(term.kernels.shape[:2])
            t, c = pairs[i][j]
            if len(t):
                spread = squares[i][j] / n
                if dropped == "mean":  # minus the square of the mean contribution, position by position
                    spread = spread - _square_sums(term, _read(term, sums[term.start][None] / n), lt.shape, pairs[i][j])
                cost[t, c] = spread.clamp(min=0).numpy()
            row.append(cost)
        out.append(row)
    return out


def _read(term, value: torch.Tensor) -> torch.Tensor:
    """The channels of ``value`` (a start node's map) that ``term`` reads, in float64."""
    return value[:, term.offset : term.offset + term.kernels.shape[1]].to(torch.float64)


CHUNK_BYTES = 2**28  # one batch of contributions is computed a few input pairs at a time


def _square_sums(term, x: torch.Tensor, shape, pairs) -> torch.Tensor:
    """Each connected pair's contribution squared, summed over the images and positions, [pairs]; computed
    in slices of pairs so that no more than ``CHUNK_BYTES`` of contributions exist at once."""
    targets, sources = pairs
    positions = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    step = max(1, CHUNK_BYTES // max(len(x) * positions * 8, 1))
    parts = [torch.zeros(0, dtype=torch.float64)]
    for start in range(0, len(targets), step):
        each = _each_pair(term, x, shape, targets[start : start + step], sources[start : start + step])
        parts.append((each**2).sum((0, 2)))
    return torch.cat(parts)


def _each_pair(term, x: torch.Tensor, shape, targets, sources) -> torch.Tensor:
    """Each (target, source) pair's own contribution, [N, pairs, positions]: source channel ``sources[k]``
    read through the kernel ``kernels[targets[k], sources[k]]``."""
    kernels = torch.from_numpy(term.kernels[targets, sources])  # [P, *window]
    picked = x[:, torch.from_numpy(sources)]  # [N, P, *source map]
    if term.kind == "linear":
        source_dims = x.dim() - 2
        flat = kernels.reshape(len(targets), -1, int(np.prod(kernels.shape[1 + source_dims :], dtype=int)))
        return torch.einsum("npq,pqr->npr", picked.reshape(len(x), len(targets), -1), flat)
    out = _conv_term(term, picked, shape, kernels[:, None], groups=len(targets))  # [N, P, H, W]
    return out.reshape(len(x), len(targets), -1)


def _conv_term(term, x, shape, kernels, groups=1):
    (top, left), (sy, sx) = term.pad, term.stride
    (kh, kw), (oh, ow) = kernels.shape[2:], shape[1:]
    x = x[:, :, max(-top, 0) :, max(-left, 0) :]
    top, left = max(top, 0), max(left, 0)
    h, w = x.shape[2:]
    bottom = max(0, (oh - 1) * sy + kh - top - h)
    right = max(0, (ow - 1) * sx + kw - left - w)
    out = F.conv2d(F.pad(x, (left, right, top, bottom)), kernels, stride=(sy, sx), groups=groups)
    return out[:, :, :oh, :ow]
