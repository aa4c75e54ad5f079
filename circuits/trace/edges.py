"""Edge attribution on data, and its causal check by ablation (NEURON-GRAPH.md, "Attribution").

attribution[k, c] = mean over images of  sum over positions of  act_S[c] * d(sum of T:k) / d act_S[c].

All target channels come from one batched backward per chunk (``is_grads_batched``), so the cost is a
constant number of forward/backward passes, not one per edge.
"""

from __future__ import annotations

import torch

from circuits.graph.paths import make_path_function
from circuits.trace.activations import check_data, node_values
from circuits.trace.result import Attribution

CHUNK_ELEMENTS = 2**25


def _path(graph, source: str, target: str, x: torch.Tensor):
    s_layer, t_layer = graph.layer(source), graph.layer(target)
    context = node_values(graph, x)
    fn = make_path_function(graph, [s_layer.node], t_layer.node, context=context)
    return s_layer, t_layer, context[s_layer.node], fn


def attribute(graph, source: str, target: str, data: torch.Tensor, batch_size: int = 64) -> Attribution:
    """Attribution of every edge ``source:c -> target:k`` on ``data`` (N images)."""
    data = check_data(graph, data)
    total = None
    for first in range(0, len(data), batch_size):
        x = data[first : first + batch_size]
        s_layer, t_layer, s_act, fn = _path(graph, source, target, x)
        part = _attribute_batch(fn, s_act, t_layer.channels)
        total = part if total is None else total + part
    result = Attribution(total / len(data), s_layer.name, t_layer.name, len(data))
    return result


def _attribute_batch(fn, s_act: torch.Tensor, n_targets: int) -> torch.Tensor:
    s = s_act.clone().requires_grad_(True)
    out = fn(s)
    summed = out.flatten(2).sum(-1) if out.dim() > 2 else out  # [N, C_T]
    per_target = s.numel()
    chunk = max(1, min(n_targets, CHUNK_ELEMENTS // max(per_target, 1)))
    rows = []
    for first in range(0, n_targets, chunk):
        ks = torch.arange(first, min(first + chunk, n_targets))
        cotangents = summed.new_zeros(len(ks), *summed.shape)
        cotangents[torch.arange(len(ks)), :, ks] = 1.0
        (grads,) = torch.autograd.grad(summed, s, cotangents, is_grads_batched=True, retain_graph=True)
        contrib = grads * s.detach().unsqueeze(0)  # [k, N, C_S, *spatial]
        contrib = contrib.flatten(3).sum(-1) if contrib.dim() > 3 else contrib
        rows.append(contrib.sum(1))
    return torch.cat(rows).detach()


def ablate(graph, source: str, target: str, data: torch.Tensor, mode: str = "zero", batch_size: int = 64) -> torch.Tensor:
    """effect[k, c] = mean over images of (sum of T:k) - (sum of T:k with S:c ablated to zero or its mean)."""
    data = check_data(graph, data)
    total = None
    s_mean = None
    if mode == "mean":
        from circuits.trace.activations import layer_activations

        acts = layer_activations(graph, data, [source])[source]
        s_mean = acts.transpose(0, 1).flatten(1).mean(1)
    for first in range(0, len(data), batch_size):
        x = data[first : first + batch_size]
        s_layer, t_layer, s_act, fn = _path(graph, source, target, x)
        with torch.no_grad():
            base = _summed(fn(s_act))
            rows = []
            for c in range(s_layer.channels):
                ablated = s_act.clone()
                ablated[:, c] = 0.0 if s_mean is None else s_mean[c]
                rows.append((base - _summed(fn(ablated))).sum(0))
        part = torch.stack(rows, 1)  # [C_T, C_S]
        total = part if total is None else total + part
    return total / len(data)


def _summed(out: torch.Tensor) -> torch.Tensor:
    return out.flatten(2).sum(-1) if out.dim() > 2 else out


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho between two score tensors (flattened), ties ranked by order."""
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denominator) if denominator else 0.0


def validate(graph, attribution: Attribution, data: torch.Tensor, mode: str = "zero") -> dict:
    """Ablation check of an attribution: per-target and overall rank correlations."""
    effect = ablate(graph, attribution.source, attribution.target, data, mode)
    per_target = [rank_correlation(attribution.tensor[k], effect[k]) for k in range(effect.shape[0])]
    report = {
        "mode": mode,
        "rank_correlation": rank_correlation(attribution.tensor, effect),
        "per_target_median": float(torch.tensor(per_target).median()),
        "ablation": effect,
    }
    attribution.validation = report
    return report
