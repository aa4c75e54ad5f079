"""The result of every detector: a :class:`Motif`, and the JSON object ``circuits motifs --json`` prints.

A motif names its ``kind`` (``equivariance``, ``union``, ``and``, ``inhibition``, ``polysemantic``,
``network``), the ``transform`` it is about (``reflect``, ``rotate90``, ``rotate`` or ``None``), the neuron
it is read at (``target``, ``LAYER:CHANNEL`` or ``None``), the neurons that make it up (``members``), a
``score`` in [0, 1] and the ``evidence`` behind it (weights and activations reported apart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

KINDS = ("equivariance", "union", "inhibition", "polysemantic", "network")
KIND_ORDER = {k: i for i, k in enumerate(("equivariance", "union", "and", "inhibition", "polysemantic", "network"))}


@dataclass(frozen=True)
class Motif:
    """One motif instance.

    For an ``equivariance`` family, ``members`` are in transform order (``T`` maps ``members[k]`` to
    ``members[k + 1]``); for a ``union`` (or ``and``), ``target`` is the invariant neuron and ``members`` are
    its cases; for ``inhibition``, ``target`` is the opponent neuron and ``members`` are ``[excitatory
    case, inhibitory case]``; for ``polysemantic``, ``target`` is the neuron and ``members`` is empty; for a
    ``network`` motif, ``members`` are the neurons of its listed instances.
    """

    kind: str
    transform: str | None
    target: str | None
    members: tuple[str, ...]
    score: float
    evidence: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "transform": self.transform,
            "target": self.target,
            "members": list(self.members),
            "score": _round(self.score),
            "evidence": _plain(self.evidence),
        }


def sort_motifs(motifs: list[Motif]) -> list[Motif]:
    """A stable order, so JSON diffs stay small: by kind, transform, target, members."""
    return sorted(
        motifs,
        key=lambda m: (KIND_ORDER.get(m.kind, 99), m.kind, m.transform or "", _neuron_key(m.target),
                       [_neuron_key(x) for x in m.members]),
    )  # fmt: skip


def to_json(model: str, motifs: list[Motif]) -> dict:
    """The ``circuits motifs --json`` payload: ``{"model": ..., "motifs": [...]}`` (empty list if none)."""
    return {"model": model, "motifs": [m.to_dict() for m in sort_motifs(motifs)]}


def _neuron_key(neuron: str | None):
    if neuron is None:
        return ("", -1)
    layer, _, channel = neuron.rpartition(":")
    return (layer, int(channel)) if channel.isdigit() else (neuron, -1)


def _round(value: float) -> float:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else value


def _plain(value):
    """Evidence as plain JSON: floats rounded to 6 digits, tensors and arrays as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return _round(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)
