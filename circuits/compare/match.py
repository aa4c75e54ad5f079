"""Which neuron of model B is which neuron of model A: layer by layer, on the same probe images.

Two models of one architecture name their layers alike, but not their neurons: a copy whose channels were
permuted computes the same function with every index changed, and two seeds of one recipe learn the same
features in a different order (Li et al., "Convergent Learning", ICLR 2016). A fine-tuned copy, in turn,
keeps its indices while every neuron drifts a little. So per layer:

- the **identity** is kept where it holds: every neuron's activation correlates best with its own index
  in the other model (a fine-tune, a planted edit of a few neurons);
- otherwise the **optimal one-to-one assignment** (:func:`circuits.compare.assignment.assign`) on the sum
  of two similarities: the activation correlation on the same images (maps position by position), and
  the cosine of the neurons' direct input kernels, read through the matching already made for the
  layers they read. The weights decide for neurons silent on the data (a dead ReLU correlates with
  nothing), the activations for the rest;
- unless the **readers** disagree: a permuted copy permutes the layers that read a layer too, so their
  kernels line up with A's only through the permutation, while two neurons that traded functions (a
  swapped pair, a graft, in a layer too small for the identity share) are still read in their old
  places. The assignment is kept only where it lines the readers' kernels up with A's better than the
  identity does (each reader row against its most similar row in A, so the readers' own order does not
  matter).

Layers are matched in the order given (inputs before the layers that read them). Kernels come from the
neuron graph, not from parameter names, so two different specs of one architecture match too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from circuits.compare.assignment import assign, neuron_correlation
from circuits.errors import UsageError

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
          kernels_a: dict | None = None, kernels_b: dict | None = None, parts: dict | None = None,
          ) -> dict[str, Matching]:  # fmt: skip
    """The matching of every layer in ``layers`` from the two models' activations on the same images and,
    where given, their direct kernels (``{layer: [(source, kernels [C_target, C_source, ...])]}``);
    ``parts`` (``{concat: [(layer, start, stop)]}``) says which channels of a concat a layer is, so its
    readers through the concat are found."""
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
        b_to_a = list(range(len(own)))
        if not identity:
            rows, cols = assign(corr)
            candidate = [0] * len(own)
            for r, c in zip(rows, cols):
                candidate[r] = c
            if kernels_a is None or kernels_b is None or _readers_agree(layer, candidate, kernels_a, kernels_b,
                                                                        parts or {}):  # fmt: skip
                b_to_a = candidate
            else:
                identity = True
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


def _readers_agree(layer: str, b_to_a: list[int], kernels_a: dict, kernels_b: dict, parts: dict) -> bool:
    """Whether the layers reading ``layer`` (directly or through a concat) line up with A's better through
    ``b_to_a`` than through the identity (True when nothing reads it: the activations alone decide)."""
    pairs = [(ka, kb) for reader in kernels_b if reader in kernels_a
             for ka, kb in zip(_read(kernels_a[reader], layer, parts), _read(kernels_b[reader], layer, parts))]  # fmt: skip
    if not pairs:
        return True
    order = torch.argsort(torch.tensor(b_to_a))  # A's channel i is B's order[i]

    def fit(permuted: bool) -> float:
        total = 0.0
        for ka, kb in pairs:
            kb = kb[:, order] if permuted else kb
            total += float((_unit(kb.flatten(1)) @ _unit(ka.flatten(1)).T).amax(1).sum())
        return total

    return fit(True) > fit(False)


def _read(kernels: list, layer: str, parts: dict) -> list[torch.Tensor]:
    """The kernels of one reader over ``layer``'s channels: from ``layer`` itself or from a concat of it."""
    out = []
    for source, k in kernels:
        if source == layer:
            out.append(k)
        for part, start, stop in parts.get(source, ()):
            if part == layer:
                out.append(k[:, start:stop])
    return out


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
