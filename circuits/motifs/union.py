"""Union over cases: an invariant neuron built from transformed copies, ``U = A OR T·A``.

Olah et al., "Naturally Occurring Equivariance in Neural Networks" (Distill, 2020), section "Equivariant
Behavior", and Cammarata et al., "Curve Circuits" (Distill, 2021): networks build invariance by adding up an
equivariant family — a left-facing and a right-facing dog head feed one "dog head, either way" neuron.

A neuron ``U`` of a target layer is reported as a **union** over transform ``T`` when

1. ``U`` is invariant under ``T``: its expanded weights satisfy ``cos(T K_U, K_U) >= threshold`` and, with
   data, ``corr(act_U(T x), T act_U(x)) >= threshold`` (the diagonal of its own equivariance map);
2. among its ``top_k`` strongest positive direct inputs are two or more neurons that ``T`` maps one onto
   the next (a mirror pair, or quarter-turned copies), by every gate of
   :func:`circuits.motifs.families.group_map` (its ``relation``: a trained layer often holds several
   redundant copies of one feature, so a case need not be the one-to-one family partner);
3. the cases have comparable strengths: the weakest is at least ``balance`` times the strongest.

The motif's ``evidence["logic"]`` says how the cases combine. Weights alone decide ``or`` only when ``U``'s
bias is not negative (then any single case fires it), and say ``unknown`` otherwise: a negative bias may
turn the sum into an AND, depending on how strongly the cases fire. With probe data the cases are checked
directly (:func:`circuits.motifs.inputs.case_responses`): ``U`` responds to each case alone (``or``), or
only where the cases meet (``and``, e.g. an X built from '<' and '>'); a ``U`` that responds to one case
alone but not the other is not a union and is dropped. Where the data never show a case alone, the logic
stays as the weights said.
"""

from __future__ import annotations

from circuits.motifs.context import as_context
from circuits.motifs.families import LED_THRESHOLD, MARGIN, THRESHOLD, group_map, group_maps
from circuits.motifs.inputs import Inputs, case_responses, inputs
from circuits.motifs.report import Motif
from circuits.motifs.transforms import Transform, parse

TOP_K = 4
BALANCE = 0.5
ALONE_MIN = 0.2  # an OR responds to each case alone at >= this share of its 99th-percentile peak
ALONE_MAX_AND = 0.05  # an AND responds to no case alone above this


def unions(model, layer: str | None = None, data=None, *, transforms=("reflect", "rotate90"),
           top_k: int = TOP_K, balance: float = BALANCE, threshold: float = THRESHOLD,
           margin: float = MARGIN) -> list[Motif]:  # fmt: skip
    """Union-over-cases neurons in ``layer`` (default: every layer with neuron inputs).

    Parameters
    ----------
    model : a spec, module, LoadedModel, NeuronGraph or :class:`~circuits.motifs.context.Context`.
    data : probe images (tensor or spec) to confirm invariance and the OR/AND logic; weights alone without.
    transforms : transforms to look for unions over (names or Transform values).
    top_k : the cases must be among this many strongest positive inputs.
    balance : the weakest case's strength over the strongest's, at least.
    threshold, margin : as in :func:`circuits.motifs.families.equivariance`, for the source families
        and for ``U``'s own invariance.

    Returns
    -------
    Motifs of kind ``union`` (or ``and``): ``target`` is ``U``, ``members`` its cases in transform order.

    Examples
    --------
    >>> [(m.target, m.members) for m in unions("planted:union")][:1]
    [('union:0', ('wedges:0', 'wedges:1'))]
    """
    ctx = as_context(model, data)
    transforms = [t if isinstance(t, Transform) else parse(t) for t in transforms]
    motifs = []
    for target in ctx.scan(ctx.targets(layer), "union motifs", lambda t: [ctx.sources(t), ctx.parts(t)]):
        feeds = inputs(ctx, target)
        if feeds is None:
            continue
        group_maps(ctx, [feeds.layers, ctx.parts(target)], transforms, threshold=threshold, margin=margin)
        for transform in transforms:
            motifs.extend(_layer_unions(ctx, feeds, transform, top_k, balance, threshold, margin))
    return motifs


def _layer_unions(ctx, feeds: Inputs, transform, top_k, balance, threshold, margin) -> list[Motif]:
    sources = group_map(ctx, feeds.layers, transform, threshold=threshold, margin=margin)
    own = group_map(ctx, ctx.parts(feeds.target), transform, threshold=threshold, margin=margin)
    if sources is None or own is None:
        return []
    found = []
    for u in range(feeds.strength.shape[0]):
        if not invariant(own, u, threshold):
            continue
        strong = feeds.top_positive(u, top_k)
        for cases in _case_sets(sources, strong):
            strengths = [float(feeds.strength[u, c]) for c in cases]
            ratio = min(strengths) / max(strengths)
            if ratio < balance:
                continue
            motif = _union(ctx, feeds, sources, own, transform, u, cases, strengths, ratio, threshold)
            if motif is not None:
                found.append(motif)
                break  # one union per neuron and transform: its best case set
    return found


def _case_sets(sources, strong: list[int]) -> list[list[int]]:
    """Chains ``a, T a, T^2 a, ...`` within ``strong`` (by the relation ``T`` maps a to b), longest and
    best-scored first. For a reflection these are the mirror pairs among the strong inputs."""
    rel = {(a, b): s for (a, b), s in sources.relation.items() if a in strong and b in strong}
    chains = []
    for (a, b), score in rel.items():
        chain, scores = [a, b], [score]
        while True:
            nxt = [(s, c) for (x, c), s in rel.items() if x == chain[-1] and c not in chain]
            if not nxt:
                break
            s, c = max(nxt)
            chain.append(c)
            scores.append(s)
        chains.append((len(chain), sum(scores) / len(scores), chain))
    chains.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return [c for _, _, c in chains]


def invariant(own, u: int, threshold: float) -> bool:
    """``U`` is its own copy under the transform, by the evidence that can speak: the weights without
    data; with data the activations (a silent ``U`` is not), and the weights too where they can speak."""
    inv = own.invariance(u)
    weights, activations = inv["weights"], inv["activations"]
    if own.activations is None:
        return weights is not None and weights >= threshold
    if activations is None or activations < threshold:
        return False
    if weights is not None and weights >= threshold:
        return True
    return not inv["weights_speak"] and activations >= max(threshold, LED_THRESHOLD)


def invariance_carried_by(own, u: int, threshold: float) -> str:
    """Which evidence shows ``U``'s invariance (see :meth:`~circuits.motifs.families.GroupMap.carried_by`)."""
    inv = own.invariance(u)
    if own.activations is None:
        return "weights"
    return "weights+activations" if inv["weights"] is not None and inv["weights"] >= threshold else "activations"


def motif_carried_by(parts: list[str]) -> str:
    """A motif is activation-led when any of its parts is."""
    if "activations" in parts:
        return "activations"
    return "weights+activations" if "weights+activations" in parts else "weights"


def _union(ctx, feeds, sources, own, transform, u, cases, strengths, ratio, threshold) -> Motif | None:
    invariance = own.invariance(u)
    steps = [sources.step(a, b) for a, b in zip(cases, cases[1:])]
    pair_score = sum(s["combined"] for s in steps) / len(steps)
    bias = None if feeds.bias is None else float(feeds.bias[u])
    scale = max(abs(x) for x in strengths)
    logic = "or" if bias is not None and bias >= -1e-6 * scale else "unknown"  # BN folding leaves ~1e-8
    check = case_responses(ctx, feeds, u, cases)
    if check is not None and all(a is not None for a in check["alone"]):
        if all(a >= ALONE_MIN for a in check["alone"]):
            logic = "or"
        elif all(a <= ALONE_MAX_AND for a in check["alone"]) and (check["together"] or 0.0) >= ALONE_MIN:
            logic = "and"
        else:
            return None  # the data contradict a union: one case alone does not drive U
    target = own.neurons[u]
    evidence = {
        "layer": feeds.target,
        "invariance": invariance,
        "cases": {feeds.neurons[c]: s for c, s in zip(cases, strengths)},
        "balance": ratio,
        "pair": steps,
        "bias": bias,
        "logic": logic,
        "activations": check,
        "carried_by": motif_carried_by([invariance_carried_by(own, u, threshold), *(s["carried_by"] for s in steps)]),
    }
    score = max(0.0, min(1.0, invariance["combined"])) * max(0.0, min(1.0, pair_score))
    return Motif("union", transform.name, target, tuple(feeds.neurons[c] for c in cases), score, evidence)



