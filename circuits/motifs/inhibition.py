"""Inhibition and opponents: a neuron excited by a feature and inhibited by its mirror or complement.

Olah et al., "An Overview of Early Vision in InceptionV1" (Distill, 2020) and Cammarata et al., "Curve
Circuits" (Distill, 2021) describe neurons whose strongest negative weights come from the transformed copy
of their strongest positive input: a curve detector inhibited by the curve of opposite orientation, a
left-facing detector suppressed by right-facing evidence (``U = A - B``). Such a neuron is not invariant:
its pre-activation flips sign under the transform (an *opponent* channel).

A neuron ``U`` of a target layer is reported as **inhibition** over transform ``T`` when, among its
``top_k`` inputs by |strength|, a positive one ``A`` and a negative one ``B`` are related by ``T``
(``B = T A`` or ``A = T B``, by every gate of :func:`circuits.motifs.families.group_map`), with
comparable magnitudes (``|s_B| >= balance * s_A`` and the reverse). For a reflection the complement is the
mirror image; for a quarter turn it is the orthogonal orientation. The evidence also reports how much
``U`` itself is anti-invariant (``cos(T K_U, K_U)`` near -1 for a pure opponent).

With probe data, ``U`` must respond where ``A`` is present without ``B`` and respond less where ``B`` is
present without ``A``; data that show the opposite drop the motif, data that never separate them leave it
as the weights say.
"""

from __future__ import annotations

from circuits.motifs.context import as_context
from circuits.motifs.families import MARGIN, THRESHOLD, group_map, group_maps
from circuits.motifs.inputs import case_responses, inputs
from circuits.motifs.report import Motif
from circuits.motifs.transforms import Transform, parse

TOP_K = 4
BALANCE = 0.5


def inhibitions(model, layer: str | None = None, data=None, *, transforms=("reflect", "rotate90"),
                top_k: int = TOP_K, balance: float = BALANCE, threshold: float = THRESHOLD,
                margin: float = MARGIN) -> list[Motif]:  # fmt: skip
    """Opponent neurons in ``layer`` (default: every layer with neuron inputs).

    Parameters
    ----------
    model : a spec, module, LoadedModel, NeuronGraph or :class:`~circuits.motifs.context.Context`.
    data : probe images (tensor or spec) to confirm that ``A`` excites and ``B`` inhibits.
    transforms : the transforms that relate a feature to its complement.
    top_k : both inputs must be among this many strongest (by |strength|).
    balance : the weaker of the two magnitudes over the stronger, at least.
    threshold, margin : as in :func:`circuits.motifs.families.equivariance`, for the pair.

    Returns
    -------
    Motifs of kind ``inhibition``: ``target`` is ``U``, ``members`` are ``[A (excites), B (inhibits)]``.
    """
    ctx = as_context(model, data)
    transforms = [t if isinstance(t, Transform) else parse(t) for t in transforms]
    motifs = []
    for target in ctx.scan(ctx.targets(layer), "inhibition motifs", lambda t: [ctx.sources(t), ctx.parts(t)]):
        feeds = inputs(ctx, target)
        if feeds is None:
            continue
        group_maps(ctx, [feeds.layers, ctx.parts(target)], transforms, threshold=threshold, margin=margin)
        for transform in transforms:
            sources = group_map(ctx, feeds.layers, transform, threshold=threshold, margin=margin)
            own = group_map(ctx, ctx.parts(target), transform, threshold=threshold, margin=margin)
            if sources is None:
                continue
            for u in range(feeds.strength.shape[0]):
                motif = _opponent(ctx, feeds, sources, own, transform, u, top_k, balance)
                if motif is not None:
                    motifs.append(motif)
    return motifs


def _opponent(ctx, feeds, sources, own, transform, u, top_k, balance) -> Motif | None:
    row = feeds.strength[u]
    top = feeds.ranked(u)[:top_k]
    best = None
    for a in top:
        for b in top:
            sa, sb = float(row[a]), float(row[b])
            if not (sa > 0 > sb):
                continue
            score = max(sources.relation.get((a, b), -1.0), sources.relation.get((b, a), -1.0))
            ratio = min(sa, -sb) / max(sa, -sb)
            if score < 0 or ratio < balance:
                continue
            if best is None or (score * ratio, sa - sb) > (best[0] * best[1], best[4]):
                best = (score, ratio, a, b, sa - sb)
    if best is None:
        return None
    score, ratio, a, b, _ = best
    check = case_responses(ctx, feeds, u, [a, b])
    if check is not None and all(x is not None for x in check["alone"]):
        excite, inhibit = check["alone"]
        if inhibit >= excite:
            return None  # the data say B drives U at least as much as A: not an opponent
    step = sources.step(a, b) if (a, b) in sources.relation else sources.step(b, a)
    evidence = {
        "layer": feeds.target,
        "excite": feeds.neurons[a],
        "inhibit": feeds.neurons[b],
        "strengths": {feeds.neurons[a]: float(row[a]), feeds.neurons[b]: float(row[b])},
        "balance": ratio,
        "pair": step,
        "anti_invariance": None if own is None else own.invariance(u),
        "activations": check,
        "carried_by": step["carried_by"],
    }
    return Motif("inhibition", transform.name, own.neurons[u] if own is not None else f"{feeds.target}:{u}",
                 (feeds.neurons[a], feeds.neurons[b]), max(0.0, min(1.0, score)) * ratio, evidence)  # fmt: skip
