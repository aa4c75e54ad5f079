"""Why a pair of neurons was, or was not, reported as transformed copies: every gate, with its numbers.

    explain(model, "conv2:3", "conv2:7", data="toyworld:256") -> dict

The equivariance detector (:mod:`circuits.motifs.families`) accepts a pair only when each kind of evidence
that can speak passes its own gate and the score beats the neurons' self-similarity. When a pair a
researcher expected is missing (or a pair is reported that should not be), the answer is one of those
numbers; this module lays them out per transform, in the order the detector applies them.
"""

from __future__ import annotations

from circuits.errors import UsageError
from circuits.motifs import families
from circuits.motifs.context import as_context
from circuits.motifs.families import (
    DETAIL_THRESHOLD,
    FIDELITY,
    LED_MARGIN,
    LED_THRESHOLD,
    MARGIN,
    THRESHOLD,
    group_map,
)


def explain(model, a: str, b: str, data=None, *, transforms=None, threshold: float = THRESHOLD,
            margin: float = MARGIN) -> dict:  # fmt: skip
    """The evidence and gates for each transform mapping neuron ``a`` to neuron ``b``.

    Returns ``{"a", "b", "layer", "transforms": [{"transform", "angle", "reported", "passes", "carried_by",
    "reason", "weights": {...}, "activations": {...}, "margin": {...}}]}``. ``reported`` is whether the
    one-to-one matching kept the pair (a pair can pass every gate and still lose to a better partner:
    ``matched_instead`` names it).
    """
    ctx = as_context(model, data)
    (part_a, name_a), (part_b, name_b) = (_resolve(ctx, n) for n in (a, b))
    group = _group(ctx, part_a)
    if part_b not in group:
        raise UsageError(f"'{a}' and '{b}' are in different layers ({part_a}, {part_b}); transformed copies are "
                         "looked for within one layer (or one concat): name two neurons of the same layer")  # fmt: skip
    neurons = ctx.neurons(group)
    i, j = neurons.index(name_a), neurons.index(name_b)
    layer_a = group[0] if len(group) == 1 else ",".join(group)
    out = []
    for transform in families._transforms(transforms, families.ANGLES):
        result = group_map(ctx, group, transform, threshold=threshold, margin=margin)
        if result is None:
            out.append({"transform": transform.name, "reported": False, "passes": False,
                        "reason": "the transform cannot act on these maps (a rotation of a non-square map)"})  # fmt: skip
            continue
        out.append(_one(result, i, j, threshold, margin))
    return {"a": a, "b": b, "layer": layer_a, "data": ctx.data_spec, "transforms": out}


def _one(result, i: int, j: int, threshold: float, margin: float) -> dict:
    gates = result.gates  # each kind's verdict, as group_map's matching saw it
    involution = families._is_involution(result.transform)
    entry = {"transform": result.transform.name, "angle": getattr(result.transform, "angle", None)}
    weights = None
    if result.weights is not None:
        weights = {"cosine": _num(result.weights[i, j]), "detail": _num(result.detail[i, j]),
                   "chance": result.chance, "threshold": max(threshold, result.chance),
                   "detail_threshold": DETAIL_THRESHOLD, "passes": bool(gates["weights"][i, j]),
                   "speak": bool(gates["speak"][i, j]),
                   "fidelity": None if result.fidelity is None else [_num(result.fidelity[i]), _num(result.fidelity[j])],
                   "fidelity_threshold": FIDELITY}  # fmt: skip
    activations = None
    if result.activations is not None:
        activations = {"correlation": _num(result.activations[i, j]), "threshold": threshold,
                       "led_threshold": LED_THRESHOLD, "led_margin": LED_MARGIN,
                       "passes": bool(gates["activations"][i, j])}  # fmt: skip
    m = result.combined
    score = (float(m[i, j]) + float(m[j, i])) / 2 if involution else float(m[i, j])
    selves = [_num(m[i, i]), _num(m[j, j])]
    same = None if result.untransformed is None else _num(result.untransformed[i, j])
    baseline = max(v for v in [*selves, same] if v is not None)
    entry.update(weights=weights, activations=activations,
                 margin={"score": score, "self": selves, "untransformed": same, "needed": margin,
                         "passes": score - baseline >= margin})  # fmt: skip
    entry["passes"] = (i, j) in result.relation  # every pair that passed the gates
    entry["reported"] = result.image.get(i) == j
    entry["matched_instead"] = None
    if entry["passes"] and not entry["reported"]:
        other = result.image.get(i)
        entry["matched_instead"] = None if other is None else result.neurons[other]
    entry["carried_by"] = result.carried_by(i, j) if entry["passes"] else None
    entry["reason"] = _reason(entry)
    return entry


def _reason(e: dict) -> str:
    w, a, m = e["weights"], e["activations"], e["margin"]
    if e["reported"]:
        return f"reported, carried by {e['carried_by']}"
    if e["passes"]:
        return f"passes every gate, but the one-to-one matching paired it with {e['matched_instead'] or 'another neuron'}"
    if a is not None and not a["passes"]:
        if a["correlation"] is None:
            return "a neuron of the pair is silent on the data: no activation evidence"
        return f"activations {a['correlation']:.3f} below {a['threshold']}"
    if a is not None and w is not None and not w["passes"]:
        if w["speak"]:
            return (f"the weights refute it: cosine {w['cosine']:.2f} (needs {w['threshold']:.2f}) and they "
                    "describe both neurons (fidelity >= {:.2f})".format(w["fidelity_threshold"]))  # fmt: skip
        if a["correlation"] < a["led_threshold"]:
            return (f"the weights cannot speak, and activations {a['correlation']:.3f} are below the "
                    f"{a['led_threshold']} that activation-led pairs need")
        return (f"the weights cannot speak, and activations alone must beat self-similarity {m['self']} and "
                f"untransformed {m['untransformed']} by {a['led_margin']}")
    if a is None and w is not None and not w["passes"]:
        return f"weights {w['cosine']:.2f} / detail {w['detail']:.2f} below {w['threshold']:.2f} / {w['detail_threshold']}"
    if not m["passes"]:
        return (f"score {m['score']:.2f} does not beat self-similarity {m['self']} or untransformed "
                f"{m['untransformed']} by {m['needed']}")  # fmt: skip
    return "not reported"


def _resolve(ctx, neuron: str) -> tuple[str, str]:
    """``(layer that computes it, LAYER:CHANNEL there)``, concat aliases followed."""
    from circuits.errors import UnknownNeuronError

    layer, _, channel = str(neuron).rpartition(":")
    if not layer or not channel.isdigit():
        raise UnknownNeuronError(f"'{neuron}' is not a neuron: write LAYER:CHANNEL, e.g. conv2:3")
    info = ctx.graph.layer(layer)
    if int(channel) >= info.channels:
        raise UnknownNeuronError(f"layer '{layer}' has {info.channels} channels; '{neuron}' is out of range")
    part, c = ctx.graph.resolve(info.name, int(channel))
    return part, f"{part}:{c}"


def _group(ctx, part: str) -> list[str]:
    """The layers the detector analyses together with ``part`` (a concat's parts, or the layer alone)."""
    for name in ctx.analysable():
        if part in ctx.parts(name):
            return ctx.parts(name)
    return [part]


def _num(value):
    v = float(value)
    return None if v != v else v
