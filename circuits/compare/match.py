"""Which neuron of model B is which neuron of model A: layer by layer, on the same probe images.

Two models of one architecture name their layers alike, but not their neurons: a copy whose channels were
permuted computes the same function with every index changed, and two seeds of one recipe learn the same
features in a different order (Li et al., "Convergent Learning", ICLR 2016). A fine-tuned copy, in turn,
keeps its indices while every neuron drifts a little. So per layer:

- the **identity** is kept where it holds: every neuron's activation correlates best with its own index
  in the other model (a fine-tune, a planted edit of a few neurons);
- otherwise the **optimal one-to-one assignment** (:func:`circuits.motifs.matching.assign`) on the sum
  of two similarities: the activation correlation on the same images (maps position by position), and
  the cosine of the neurons' direct input kernels, read through the matching already made for the
  layers they read. The weights decide for neurons silent on the data (a dead ReLU correlates with
  nothing), the activations for the rest.

Layers are matched in the order given (inputs before the layers that read them). Kernels come from the
neuron graph, not from parameter names, so two different specs of one architecture match too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from circuits.errors import UsageError
from circuits.motifs.matching import assign, neuron_correlation

IDENTITY_SHARE = 0.9  # the identity holds when this share of neurons correlates best with its own index


@dataclass
class Matching:
    """``b_to_a[j]`` is the neuron of A that neuron ``j`` of B matches, with ``similarity[j]`` their
    activation correlation; ``identity`` says the layer kept its indices; ``corr`` is the score the
    assignment maximised ``[C_b, C_a]``."""

    layer: str
    b_to_a: list[int]
    similarity: list[float]
    identity: bool
    corr: torch.Tensor = field(repr=False)

    @property
    def a_to_b(self) -> dict[int, int]:
        return {a: b for b, a in enumerate(self.b_to_a)}


def match(acts_a: dict[str, torch.Tensor], acts_b: dict[str, torch.Tensor], layers: list[str],
          kernels_a: dict | None = None, kernels_b: dict | None = None) -> dict[str, Matching]:  # fmt: skip
    """The matching of every layer in ``layers`` from the two models' activations on the same images and,
    where given, their direct kernels (``{layer: [(source, kernels [C_target, C_source, ...])]}``)."""
    out = {}
    for layer in layers:
        a, b = acts_a[layer], acts_b[layer]
        if a.shape[1:] != b.shape[1:]:
            raise UsageError(f"layer '{layer}' has shape {tuple(a.shape[1:])} in model A and {tuple(b.shape[1:])} "
                             "in model B: diff compares models of one architecture")  # fmt: skip
        acts = torch.nan_to_num(neuron_correlation(b, a), nan=0.0)  # [C_b, C_a]
        corr = acts
        if kernels_a is not None and kernels_b is not None:
            wa = flat(kernels_a[layer])
            wb = aligned(kernels_b[layer], out)
            if wa.shape == wb.shape:
                corr = corr + _unit(wb) @ _unit(wa).T
        own = torch.diagonal(corr)
        identity = float((corr.argmax(1) == torch.arange(len(own))).float().mean()) >= IDENTITY_SHARE
        if identity:
            b_to_a = list(range(len(own)))
        else:
            rows, cols = assign(corr)
            b_to_a = [0] * len(own)
            for r, c in zip(rows, cols):
                b_to_a[r] = c
        similarity = [float(acts[j, i]) for j, i in enumerate(b_to_a)]
        out[layer] = Matching(layer, b_to_a, similarity, identity, corr)
    return out


def flat(kernels: list) -> torch.Tensor:
    """One row per target neuron: its direct kernels from every source, flattened."""
    return torch.cat([k.flatten(1) for _, k in kernels], dim=1)


def aligned(kernels: list, matchings: dict[str, Matching]) -> torch.Tensor:
    """Model B's direct kernels (rows in B's order) with each source's channels put in A's order, by the
    matchings known so far (a source not matched, such as the input, keeps its order)."""
    parts = []
    for source, k in kernels:
        m = matchings.get(source)
        if m is not None and not m.identity:
            k = k[:, torch.tensor([m.a_to_b[i] for i in range(len(m.b_to_a))])]
        parts.append(k.flatten(1))
    return torch.cat(parts, dim=1)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
