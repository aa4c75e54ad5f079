"""Universality: the same neurons, and the same motifs, in different models.

Olah et al., "Zoom In: An Introduction to Circuits" (Distill, 2020), claim 3: analogous features and
circuits form across models; Li et al., "Convergent Learning: Do Different Neural Networks Learn the Same
Representations?" (ICLR 2016) match neurons across networks by activation correlation with an optimal
one-to-one assignment. Both are done here:

1. :func:`match_layer` correlates every neuron of a layer of model A with every neuron of a layer of model
   B on the same probe images (activation maps position by position when their sizes agree, per-image peaks
   otherwise) and solves the assignment that maximises the total correlation
   (``scipy.optimize.linear_sum_assignment`` when scipy is installed, else
   :func:`circuits.compare.assignment.hungarian`, shared with the diff);
2. :func:`universality` runs the motif detectors on every model and groups instances from different models
   into one **motif family** when they have the same kind and transform and their neurons correspond
   under the matching (the target maps to the target, and at least half the members to members).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from circuits.compare.assignment import assign, neuron_correlation
from circuits.errors import UsageError
from circuits.motifs.context import Context, as_context
from circuits.motifs.report import Motif

MIN_CORR = 0.5
MEMBER_OVERLAP = 0.5


@dataclass
class LayerMatch:
    """The optimal one-to-one matching of ``layer_a``'s neurons (model A) to ``layer_b``'s (model B)."""

    layer_a: str
    layer_b: str
    pairs: list[tuple[int, int, float]]  # (row in A, row in B, correlation): rows index ``names``
    corr: torch.Tensor = field(repr=False)
    names: tuple[list[str], list[str]] = ((), ())  # resolved neuron names of the rows, in A and in B

    def mapping(self, min_corr: float = MIN_CORR) -> dict[str, str]:
        """``{"A_layer:ch": "B_layer:ch"}`` for the pairs correlated at least ``min_corr``."""
        return {self.names[0][a]: self.names[1][b] for a, b, c in self.pairs if c >= min_corr}

    @property
    def mean_corr(self) -> float:
        return sum(c for _, _, c in self.pairs) / len(self.pairs) if self.pairs else 0.0

    def to_dict(self, min_corr: float = MIN_CORR) -> dict:
        return {
            "layer_a": self.layer_a, "layer_b": self.layer_b, "mean_corr": self.mean_corr,
            "pairs": [{"a": self.names[0][a], "b": self.names[1][b], "corr": c}
                      for a, b, c in self.pairs if c >= min_corr],
        }  # fmt: skip


def match_layer(ctx_a: Context, ctx_b: Context, layer_a: str, layer_b: str | None = None) -> LayerMatch:
    """The optimal neuron matching between ``layer_a`` of A and ``layer_b`` (default: the same name) of B."""
    layer_b = layer_b or layer_a
    parts_a, parts_b = ctx_a.parts(layer_a), ctx_b.parts(layer_b)
    corr = neuron_correlation(ctx_a.activations(parts_a), ctx_b.activations(parts_b))
    rows, cols = assign(corr)
    names_a, names_b = ctx_a.neurons(parts_a), ctx_b.neurons(parts_b)
    pairs = [(r, c, float(corr[r, c])) for r, c in zip(rows, cols)]
    return LayerMatch(layer_a, layer_b, pairs, corr, (names_a, names_b))


def shared_layers(ctx_a: Context, ctx_b: Context) -> list[str]:
    """Scanned layers both models have, by name (the zoo's seeds share their architecture)."""
    b = set(ctx_b.analysable())
    return [name for name in ctx_a.analysable() if name in b]


def match_models(ctx_a: Context, ctx_b: Context, layers: list[str] | None = None) -> dict[str, str]:
    """``{"A neuron": "B neuron"}`` over the shared layers (resolved names), correlated >= ``MIN_CORR``."""
    layers = layers or shared_layers(ctx_a, ctx_b)
    if not layers:
        raise UsageError("the models share no layer names to match; pass layers explicitly")
    mapping = {}
    for layer in layers:
        mapping.update(match_layer(ctx_a, ctx_b, layer).mapping())
    return mapping


def families(motifs: dict[str, list[Motif]], mappings: dict[tuple[str, str], dict[str, str]],
             overlap: float = MEMBER_OVERLAP) -> list[dict]:  # fmt: skip
    """Group motif instances of different models into families.

    ``motifs`` maps a model name to its motifs; ``mappings[(a, b)]`` maps model a's neurons to model b's.
    The first model's instances seed the families; an instance of another model joins the first family of
    the same kind and transform whose seed maps onto it (each instance joins one family at most). Families with instances from one model only are
    dropped. Returns ``[{"kind", "transform", "score", "instances": [{"model", "target", "members", "score"}]}]``
    with ``score`` the share of models the family reaches.
    """
    models = list(motifs)
    if not models:
        return []
    out, used = [], set()
    for seed_motif in motifs[models[0]]:
        family = [(models[0], seed_motif)]
        for other in models[1:]:
            mapping = mappings.get((models[0], other), {})
            for k, candidate in enumerate(motifs[other]):
                if (other, k) not in used and _corresponds(seed_motif, candidate, mapping, overlap):
                    family.append((other, candidate))
                    used.add((other, k))
                    break
        if len({m for m, _ in family}) < 2:
            continue
        out.append({
            "kind": seed_motif.kind,
            "transform": seed_motif.transform,
            "score": len({m for m, _ in family}) / len(models),
            "instances": [{"model": m, "target": x.target, "members": list(x.members), "score": x.score}
                          for m, x in family],
        })  # fmt: skip
    return out


def _corresponds(a: Motif, b: Motif, mapping: dict[str, str], overlap: float) -> bool:
    if a.kind != b.kind or a.transform != b.transform:
        return False
    if a.target is not None and mapping.get(a.target) != b.target:
        return False
    if not a.members:
        return a.target is not None
    mapped = {mapping.get(m) for m in a.members} - {None}
    return len(mapped & set(b.members)) >= overlap * len(a.members)


def universality(models: list, data, *, kinds=("equivariance", "union", "inhibition"), min_corr: float = MIN_CORR,
                 layers: list[str] | None = None, device=None) -> dict:  # fmt: skip
    """Match neurons of every model to the first one's on shared probe ``data``, and group their motifs.

    Returns ``{"models": [...], "matches": [{"model_a", "model_b", "layers": [LayerMatch.to_dict()]}],
    "families": [...]}`` (see :func:`families`). ``device`` is where the models run on ``data``.
    """
    from circuits.motifs import find

    if len(models) < 2:
        raise UsageError("universality compares models: give at least two")
    contexts = [as_context(m, data, device=device) for m in models]
    names = _unique_names([c.name for c in contexts])
    matches, mappings = [], {}
    reference = contexts[0]
    for name, ctx in zip(names[1:], contexts[1:]):
        shared = layers or shared_layers(reference, ctx)
        if not shared:
            raise UsageError(f"'{names[0]}' and '{name}' share no layer names; pass --layer to pick layers")
        layer_matches = [match_layer(reference, ctx, layer) for layer in shared]
        mapping = {}
        for match in layer_matches:
            mapping.update(match.mapping(min_corr))
        mappings[(names[0], name)] = mapping
        matches.append({"model_a": names[0], "model_b": name,
                        "layers": [m.to_dict(min_corr) for m in layer_matches]})  # fmt: skip
    found = {name: [m for kind in kinds for m in find(ctx, kind=kind)] for name, ctx in zip(names, contexts)}
    return {"models": names, "matches": matches, "families": families(found, mappings)}


def _unique_names(names: list[str]) -> list[str]:
    out = []
    for name in names:
        candidate, k = name, 2
        while candidate in out:
            candidate = f"{name}#{k}"
            k += 1
        out.append(candidate)
    return out
